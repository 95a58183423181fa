/* SPDX-License-Identifier: MIT */
/*
 * Listening on a path: accept with timeouts, connect from another
 * process, stale socket files replaced, live ones refused, paths checked,
 * a peer that is not tensorfd refused.
 */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "tap.h"
#include "tensorfd.h"

static char dir[] = "/tmp/tfd-listener-XXXXXX";
static char path[100];

static void basic(void)
{
	struct tfd_listener *l, *l2;
	struct tfd_channel *ch;
	struct tfd_message *m;
	struct stat st;
	pid_t pid;

	ok(tfd_listener_new(path, &l) == 0, "listening on %s", path);
	ok(tfd_listener_accept(l, 0, &ch) == -EAGAIN, "accept with nobody there: -EAGAIN");
	ok(tfd_listener_accept(l, 20, &ch) == -ETIMEDOUT, "accept timeout: -ETIMEDOUT");
	ok(tfd_listener_new(path, &l2) == -EADDRINUSE, "a second listener on a live path: -EADDRINUSE");
	pid = fork();
	if (pid == 0) {
		tfd_listener_unref(NULL);
		if (tfd_channel_connect(path, &ch) < 0 || tfd_message_new(&m) < 0 ||
		    tfd_message_set_user_data(m, "hi", 2) < 0 || tfd_channel_send(ch, m) < 0)
			_exit(1);
		/* wait for the listener side to close */
		_exit(tfd_channel_recv(ch, 5000, &m) == -ECONNRESET ? 0 : 2);
	}
	ok(tfd_listener_accept(l, 5000, &ch) == 0, "accepted a connection");
	ok(tfd_channel_recv(ch, 5000, &m) == 0 &&
		   memcmp(tfd_message_get_user_data(m, NULL), "hi", 2) == 0,
	   "received the client's message");
	tfd_message_unref(m);
	tfd_channel_unref(ch);
	ok(wait_child(pid) == 0, "client saw the close");
	ok(tfd_listener_get_fd(l) >= 0, "listener fd");
	tfd_listener_unref(l);
	ok(stat(path, &st) < 0 && errno == ENOENT, "socket file removed with the listener");
}

static void stale(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct tfd_listener *l;
	int fd;

	/* a socket file nobody listens on, as a crashed publisher leaves */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	ok(tfd_listener_new(path, &l) == 0, "a stale socket file is replaced");
	tfd_listener_unref(l);
}

static void refusals(void)
{
	char longpath[200];
	struct tfd_listener *l;
	struct tfd_channel *ch;

	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	ok(tfd_listener_new(longpath, &l) == -ENAMETOOLONG, "a path too long: -ENAMETOOLONG");
	ok(tfd_channel_connect(longpath, &ch) == -ENAMETOOLONG, "connect too: -ENAMETOOLONG");
	ok(tfd_listener_new("", &l) == -EINVAL, "empty path: -EINVAL");
	ok(tfd_channel_connect("/nonexistent/tfd.sock", &ch) == -ENOENT, "no such socket: -ENOENT");
}

/* A server that answers with something else than a tensorfd hello. */
static void not_tensorfd(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct tfd_channel *ch;
	struct tfd_message *m;
	int lfd, cfd;

	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	bind(lfd, (struct sockaddr *)&sa, sizeof(sa));
	listen(lfd, 1);
	ok(tfd_channel_connect(path, &ch) == 0, "connected to a foreign server");
	cfd = accept(lfd, NULL, NULL);
	send(cfd, "HTTP/1.1 200 OK\r\n\r\n", 19, 0);
	ok(tfd_channel_recv(ch, 1000, &m) == -EPROTO, "its answer: -EPROTO (%s)",
	   tfd_channel_strerror(ch));
	tfd_channel_unref(ch);
	close(cfd);
	close(lfd);
	unlink(path);
}

int main(void)
{
	int fds0;

	tap_init(30);
	if (!mkdtemp(dir))
		skip_all("cannot make a directory in /tmp");
	snprintf(path, sizeof(path), "%s/topic.sock", dir);
	fds0 = count_fds();
	basic();
	stale();
	refusals();
	not_tensorfd();
	ok(count_fds() == fds0, "no fd leaked");
	rmdir(dir);
	return done_testing();
}
