/* SPDX-License-Identifier: MIT */
/*
 * Listeners: a SOCK_SEQPACKET socket bound to a filesystem path, from which
 * channels are accepted. A stale socket file (nobody listening) is
 * replaced; a live one is refused with -EADDRINUSE. The file is removed
 * when the listener goes, if it is still the one this listener made.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct tfd_listener {
	int fd;
	char *path;
	dev_t dev;
	ino_t ino;
	pid_t owner;	/* a forked child must not remove its parent's socket */
};

/* Is someone listening on path? A refused connect means a stale file. */
static bool socket_is_live(const struct sockaddr_un *sa, socklen_t len)
{
	int fd, r;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return true;
	r = connect(fd, (const struct sockaddr *)sa, len);
	if (r < 0 && errno == ECONNREFUSED) {
		close(fd);
		return false;
	}
	close(fd);
	return true;
}

TFD_EXPORT int tfd_listener_new(const char *path, struct tfd_listener **ret)
{
	struct tfd_listener *l;
	struct sockaddr_un sa;
	struct stat st;
	socklen_t len;
	int r;

	if (!ret)
		return -EINVAL;
	r = unix_address(path, &sa, &len);
	if (r < 0)
		return r;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->path = strdup(path);
	l->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (!l->path || l->fd < 0) {
		r = l->path ? tfd_fail(NULL, 0, -errno, "socket: %s", strerror(errno)) : -ENOMEM;
		goto fail;
	}
	if (bind(l->fd, (struct sockaddr *)&sa, len) < 0) {
		r = -errno;
		if (r == -EADDRINUSE && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    !socket_is_live(&sa, len)) {
			unlink(path);
			r = bind(l->fd, (struct sockaddr *)&sa, len) < 0 ? -errno : 0;
		}
		if (r < 0) {
			tfd_fail(NULL, 0, r, "binding %s: %s", path, strerror(-r));
			goto fail;
		}
	}
	if (listen(l->fd, 128) < 0 || stat(path, &st) < 0) {
		r = tfd_fail(NULL, 0, -errno, "listening on %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	l->owner = getpid();
	*ret = l;
	return 0;
fail:
	if (l->fd >= 0)
		close(l->fd);
	free(l->path);
	free(l);
	return r;
}

TFD_EXPORT struct tfd_listener *tfd_listener_unref(struct tfd_listener *l)
{
	struct stat st;

	if (!l)
		return NULL;
	if (l->owner == getpid() && stat(l->path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino)
		unlink(l->path);
	close(l->fd);
	free(l->path);
	free(l);
	return NULL;
}

TFD_EXPORT int tfd_listener_accept(struct tfd_listener *l, int timeout_ms, struct tfd_channel **ret)
{
	uint64_t deadline = timeout_ms > 0 ? tfd_now_ns() + (uint64_t)timeout_ms * 1000000 : 0;
	struct pollfd pfd;
	int fd, r, ms;

	if (!l || !ret)
		return -EINVAL;
	for (;;) {
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			r = channel_new(fd, ret);
			/* a client that left already (or a liveness probe): next one */
			if (r != -ECONNRESET)
				return r;
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN)
			return tfd_fail(NULL, 0, -errno, "accept: %s", strerror(errno));
		if (timeout_ms == 0)
			return -EAGAIN;
		ms = timeout_ms;
		if (timeout_ms > 0) {
			uint64_t now = tfd_now_ns();

			if (now >= deadline)
				return -ETIMEDOUT;
			ms = (int)((deadline - now + 999999) / 1000000);
		}
		pfd = (struct pollfd){ .fd = l->fd, .events = POLLIN };
		r = poll(&pfd, 1, ms);
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
	}
}

TFD_EXPORT int tfd_listener_get_fd(const struct tfd_listener *l)
{
	return l ? l->fd : -EINVAL;
}
