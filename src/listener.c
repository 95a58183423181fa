/* SPDX-License-Identifier: MIT */
/*
 * Listeners: a SOCK_SEQPACKET socket bound to a filesystem path, from which
 * channels are accepted. The socket is made relative to its directory's
 * descriptor, so no link on the way is followed after the caller opened
 * it. A stale socket file (nobody listening) is replaced; a live one is
 * refused with -EADDRINUSE; anything else there (a link, a file) is named
 * and left alone. The file is removed when the listener goes, if it is
 * still the one this listener made.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct tfd_listener {
	int fd;
	int dirfd;	/* the socket's directory */
	char *name;	/* the socket's name in it */
	char *path;
	dev_t dev;
	ino_t ino;
	pid_t owner;	/* a forked child must not remove its parent's socket */
};

/*
 * Is someone listening on the socket file fd (O_PATH)? A refused connect
 * means a stale file. *pid: the listener's pid when the connection got
 * through (SO_PEERCRED of a listening socket is its creator's), else 0.
 */
static bool socket_is_live(int fd, const char *path, pid_t *pid)
{
	struct ucred uc = { 0 };
	socklen_t uclen = sizeof(uc);
	struct sockaddr_un sa;
	socklen_t len;
	int s, r;

	*pid = 0;
	if (fd_address(fd, NULL, path, &sa, &len) < 0)
		return true;
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return true;
	r = connect(s, (const struct sockaddr *)&sa, len);
	if (r < 0 && errno == ECONNREFUSED) {
		close(s);
		return false;
	}
	if (r == 0 && getsockopt(s, SOL_SOCKET, SO_PEERCRED, &uc, &uclen) == 0)
		*pid = uc.pid;
	close(s);
	return true;
}

/*
 * bind() found name taken. A stale socket is removed (0: bind again); a
 * live one is -EADDRINUSE; anything else is named, neither followed nor
 * removed.
 */
static int name_taken(struct tfd_listener *l)
{
	struct stat st, now;
	pid_t pid;
	int fd, r;

	fd = openat(l->dirfd, l->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : tfd_fail(NULL, 0, -errno, "%s: %s", l->path,
							strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = tfd_fail(NULL, 0, -errno, "%s: %s", l->path, strerror(errno));
	} else if (!S_ISSOCK(st.st_mode)) {
		r = tfd_fail(NULL, 0, -EEXIST,
			     "%s is %s of uid %u, not a socket: left alone%s", l->path,
			     file_kind(st.st_mode), st.st_uid,
			     S_ISLNK(st.st_mode) ? " (links are neither followed nor removed)"
						 : "");
	} else if (socket_is_live(fd, l->path, &pid)) {
		r = pid ? tfd_fail(NULL, 0, -EADDRINUSE,
				   "%s is the socket of a live listener, pid %d (uid %u)", l->path,
				   (int)pid, st.st_uid)
			: tfd_fail(NULL, 0, -EADDRINUSE,
				   "%s is the socket of a live listener (uid %u)", l->path,
				   st.st_uid);
	} else if (fstatat(l->dirfd, l->name, &now, AT_SYMLINK_NOFOLLOW) < 0 ||
		   now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
		r = 0;	/* replaced meanwhile: bind again and see */
	} else {
		r = unlinkat(l->dirfd, l->name, 0) < 0 && errno != ENOENT
			    ? tfd_fail(NULL, 0, -errno, "%s is the stale socket of uid %u: %s",
				       l->path, st.st_uid, strerror(errno))
			    : 0;
	}
	close(fd);
	return r;
}

/*
 * The socket file just bound: still a socket of ours (O_PATH descriptor),
 * its mode as asked even where the umask took some away.
 */
static int bound_check(struct tfd_listener *l, int mode)
{
	struct stat st;
	int fd, r = 0;

	fd = openat(l->dirfd, l->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		r = tfd_fail(NULL, 0, -errno, "%s: %s", l->path, strerror(errno));
	else if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
		r = tfd_fail(NULL, 0, -EEXIST, "%s was replaced by %s of uid %u", l->path,
			     file_kind(st.st_mode), st.st_uid);
	else if (mode >= 0 && (st.st_mode & 07777) != (mode_t)mode &&
		 fd_chmod(fd, (mode_t)mode) < 0 &&
		 /* no /proc: by name, still never through a link */
		 fchmodat(l->dirfd, l->name, (mode_t)mode, AT_SYMLINK_NOFOLLOW) < 0)
		r = tfd_fail(NULL, 0, -errno, "setting the mode of %s: %s", l->path,
			     strerror(errno));
	if (fd >= 0)
		close(fd);
	if (r == 0) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	return r;
}

/*
 * A listener on name in dirfd (taken: closed on failure too); path names it
 * in messages. mode >= 0: the socket file's mode, set on the socket before
 * bind() (Linux makes the file with it less the umask, never wider), then
 * widened through a descriptor where the umask narrowed it.
 */
int listener_new_at(int dirfd, const char *name, const char *path, int mode,
		    struct tfd_listener **ret)
{
	struct tfd_listener *l;
	struct sockaddr_un sa;
	socklen_t len;
	int r, tries;

	l = calloc(1, sizeof(*l));
	if (!l) {
		close(dirfd);
		return fail_nomem();
	}
	l->dirfd = dirfd;
	l->path = strdup(path);
	l->name = strdup(name);
	l->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (!l->path || !l->name || l->fd < 0) {
		r = l->fd < 0 ? tfd_fail(NULL, 0, -errno, "socket: %s", strerror(errno)) : -ENOMEM;
		goto fail;
	}
	/* where the kernel ignores it, bound_check() still sets the mode */
	if (mode >= 0)
		(void)fchmod(l->fd, (mode_t)mode);
	r = fd_address(dirfd, name, path, &sa, &len);
	if (r < 0)
		goto fail;
	/* a stale socket goes once; more tries only if someone races us */
	for (tries = 0;; tries++) {
		if (bind(l->fd, (struct sockaddr *)&sa, len) == 0)
			break;
		r = -errno;
		if (r == -EADDRINUSE && tries < 3)
			r = name_taken(l);
		else
			tfd_fail(NULL, 0, r, "binding %s: %s", path, strerror(-r));
		if (r < 0)
			goto fail;
	}
	if (listen(l->fd, 128) < 0) {
		r = tfd_fail(NULL, 0, -errno, "listening on %s: %s", path, strerror(errno));
		unlinkat(dirfd, name, 0);
		goto fail;
	}
	r = bound_check(l, mode);
	if (r < 0) {
		if (r != -EEXIST)
			unlinkat(dirfd, name, 0);
		goto fail;
	}
	l->owner = getpid();
	*ret = l;
	return 0;
fail:
	if (l->fd >= 0)
		close(l->fd);
	close(l->dirfd);
	free(l->name);
	free(l->path);
	free(l);
	return r;
}

TFD_EXPORT int tfd_listener_new(const char *path, struct tfd_listener **ret)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)], base[sizeof(dir)];
	struct sockaddr_un sa;
	socklen_t len;
	int dirfd, r;

	if (!ret)
		return fail_args();
	r = unix_address(path, &sa, &len);
	if (r < 0)
		return r;
	snprintf(dir, sizeof(dir), "%s", path);
	snprintf(base, sizeof(base), "%s", path);
	snprintf(base, sizeof(base), "%s", basename(base));
	if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || path[strlen(path) - 1] == '/')
		return tfd_fail(NULL, 0, -EINVAL, "socket path %s names no file", path);
	/* the directory as the caller names it; the socket's name in it is not followed */
	dirfd = open(dirname(dir), O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return tfd_fail(NULL, 0, -errno, "binding %s: %s", path, strerror(errno));
	return listener_new_at(dirfd, base, path, -1, ret);
}

TFD_EXPORT struct tfd_listener *tfd_listener_unref(struct tfd_listener *l)
{
	struct stat st;

	if (!l)
		return NULL;
	if (l->owner == getpid() && fstatat(l->dirfd, l->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_dev == l->dev && st.st_ino == l->ino)
		unlinkat(l->dirfd, l->name, 0);
	close(l->fd);
	close(l->dirfd);
	free(l->name);
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
		return fail_args();
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
			ms = ms_left(deadline, -1);
			if (ms == 0)
				return -ETIMEDOUT;
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
