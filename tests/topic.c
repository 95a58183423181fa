/* SPDX-License-Identifier: MIT */
/*
 * Topics by name: which names are valid, where the runtime directory is
 * ($TENSORFD_RUNTIME_DIR, $XDG_RUNTIME_DIR/tensorfd, a private
 * /tmp/tensorfd-<uid>), the socket's mode, one live publisher per topic, a
 * subscriber that comes before its publisher and survives its restart, a
 * stable pollable fd, and tfd_subscriber_wait() over several topics.
 */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "tap.h"
#include "tensorfd.h"

static char rundir[64];

/* A string with its control and non-ASCII bytes escaped, fit for one TAP line. */
static const char *shown(const char *s)
{
	static char out[2][512];
	static int k;
	char *o = out[k++ % 2];
	size_t n = 0;

	for (; *s && n < 500; s++)
		n += (size_t)snprintf(o + n, 512 - n, *s >= ' ' && *s < 0x7f ? "%c" : "\\x%02x",
				      (unsigned char)*s);
	o[n] = '\0';
	return o;
}

static void names(void)
{
	static const char *const bad[] = {
		"", "//abs", "/", "a/../b", "..", ".", "a//b", "a/", "./a", "a/..", "a/./b",
		"a b", "a\tb", "a:b", "a\\b", "a*", "cam\xc3\xa9ra", "a\nb",
	};
	char path[PATH_MAX], expect[PATH_MAX], name[TFD_TOPIC_MAX + 2], cwd[PATH_MAX];
	struct stat st;
	unsigned int i;
	int r;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = tfd_topic_path(bad[i], path, sizeof(path));
		ok(r == -EINVAL, "topic \"%s\" refused: %d (%s)", shown(bad[i]), r,
		   shown(tfd_last_error()));
	}
	ok(tfd_topic_path(NULL, path, sizeof(path)) == -EINVAL, "NULL topic: -EINVAL");
	memset(name, 'a', TFD_TOPIC_MAX + 1);
	name[TFD_TOPIC_MAX + 1] = '\0';
	ok(tfd_topic_path(name, path, sizeof(path)) == -EINVAL, "a %d-byte topic: -EINVAL (%s)",
	   TFD_TOPIC_MAX + 1, tfd_last_error());

	snprintf(expect, sizeof(expect), "%s/camera/front.sock", rundir);
	r = tfd_topic_path("camera/front", path, sizeof(path));
	ok(r == (int)strlen(expect) && strcmp(path, expect) == 0, "camera/front -> %s (%d)",
	   r >= 0 ? path : "?", r);
	ok(stat(path, &st) < 0 && errno == ENOENT, "resolving a path creates nothing");
	r = tfd_topic_path("/camera/front", path, sizeof(path));
	ok(r == (int)strlen(expect) && strcmp(path, expect) == 0,
	   "ROS-style /camera/front is the same topic (%s)", r >= 0 ? path : tfd_last_error());
	ok(tfd_topic_path("v1.2/left-eye/raw_0", path, sizeof(path)) > 0,
	   "dots, dashes and underscores inside components are fine");

	/* the name limit itself: a 96-byte name fits under a short directory */
	name[TFD_TOPIC_MAX] = '\0';
	if (getcwd(cwd, sizeof(cwd)) && chdir(rundir) == 0) {
		setenv("TENSORFD_RUNTIME_DIR", ".", 1);
		r = tfd_topic_path(name, path, sizeof(path));
		ok(r == 2 + TFD_TOPIC_MAX + 5, "a %d-byte topic is valid (%d: %s)", TFD_TOPIC_MAX, r,
		   r < 0 ? tfd_last_error() : "ok");
		setenv("TENSORFD_RUNTIME_DIR", rundir, 1);
		r = tfd_topic_path(name, path, sizeof(path));
		ok(r == -ENAMETOOLONG, "... but too long for a socket under %s: -ENAMETOOLONG",
		   rundir);
		if (chdir(cwd) < 0)
			diag("chdir back: %s", strerror(errno));
	} else {
		skip("cannot chdir to %s", rundir);
		skip("cannot chdir to %s", rundir);
	}
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? st.st_mode : 0;
}

/* /tmp/tensorfd-<uid>: a fixed, shared path; whatever we change there is put back. */
static void tmp_fallback(void)
{
	char dir[64], buf[PATH_MAX];
	struct stat st0, st;
	bool existed, restore = false;
	int r, lock;

	snprintf(dir, sizeof(dir), "/tmp/tensorfd-%u", (unsigned int)getuid());
	/* another run of this test (another build's) would change it under us */
	lock = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lock >= 0)
		flock(lock, LOCK_EX);
	existed = lstat(dir, &st0) == 0;
	if (existed && (!S_ISDIR(st0.st_mode) || st0.st_uid != getuid() || (st0.st_mode & 077))) {
		r = tfd_runtime_dir(buf, sizeof(buf));
		ok(r == -EPERM || r == -ENOTDIR, "a foreign %s is refused: %d (%s)", dir, r,
		   tfd_last_error());
		skip("%s exists and is not ours to change", dir);
		goto out;
	}
	/* an empty one we may remove, to see the library create it */
	if (existed && rmdir(dir) == 0) {
		existed = false;
		restore = true;
	}
	r = tfd_runtime_dir(buf, sizeof(buf));
	ok(r == (int)strlen(dir) && strcmp(buf, dir) == 0, "neither variable set: %s (%d)",
	   r >= 0 ? buf : tfd_last_error(), r);
	r = lstat(dir, &st);
	ok(r == 0 && S_ISDIR(st.st_mode) && st.st_uid == getuid() && (st.st_mode & 07777) == 0700,
	   "it is a directory of ours, mode 0%o", st.st_mode & 07777);
	if (!existed) {
		ok(rmdir(dir) == 0 && symlink(rundir, dir) == 0, "plant a symlink at %s", dir);
		r = tfd_runtime_dir(buf, sizeof(buf));
		ok(r == -ENOTDIR, "a symlink there is refused: %d (%s)", r, tfd_last_error());
		unlink(dir);
		ok(tfd_runtime_dir(buf, sizeof(buf)) >= 0 && (mode_of(dir) & 07777) == 0700,
		   "re-created 0700 once the symlink is gone");
	}

	ok(chmod(dir, 0755) == 0, "chmod %s 0755", dir);
	r = tfd_runtime_dir(buf, sizeof(buf));
	ok(r == -EPERM, "a group- or world-readable one is refused: %d (%s)", r,
	   tfd_last_error());
	ok(tfd_topic_path("camera/front", buf, sizeof(buf)) == -EPERM,
	   "and so is every topic path in it");
	chmod(dir, 0700);
	if (getuid() == 0) {
		ok(chown(dir, 65534, (gid_t)-1) == 0, "chown %s to uid 65534", dir);
		r = tfd_runtime_dir(buf, sizeof(buf));
		ok(r == -EPERM, "one owned by another user is refused: %d (%s)", r,
		   tfd_last_error());
		if (chown(dir, 0, (gid_t)-1) < 0)
			diag("chown back: %s", strerror(errno));
	} else {
		skip("not root: cannot give %s another owner", dir);
		skip("not root: cannot give %s another owner", dir);
	}
	ok(tfd_runtime_dir(buf, sizeof(buf)) >= 0, "accepted again once private");
	unsetenv("XDG_RUNTIME_DIR");
	r = tfd_runtime_dir(buf, sizeof(buf));
	ok(r >= 0 && strcmp(buf, dir) == 0, "an unset $XDG_RUNTIME_DIR falls back the same way");
	if (existed)
		chmod(dir, st0.st_mode & 07777);
	else if (!restore)
		rmdir(dir);
out:
	if (lock >= 0)
		close(lock);
}

static void runtime_dirs(void)
{
	char buf[PATH_MAX], xdg[128], expect[192], sub[128], *old_xdg, longdir[6000];
	int r;

	old_xdg = getenv("XDG_RUNTIME_DIR") ? strdup(getenv("XDG_RUNTIME_DIR")) : NULL;
	snprintf(xdg, sizeof(xdg), "%s/xdg", rundir);
	mkdir(xdg, 0700);
	setenv("XDG_RUNTIME_DIR", xdg, 1);

	r = tfd_runtime_dir(buf, sizeof(buf));
	ok(r == (int)strlen(rundir) && strcmp(buf, rundir) == 0,
	   "$TENSORFD_RUNTIME_DIR comes first: %s", buf);
	snprintf(sub, sizeof(sub), "%s/fresh", rundir);
	setenv("TENSORFD_RUNTIME_DIR", sub, 1);
	r = tfd_runtime_dir(buf, sizeof(buf));
	ok(r > 0 && S_ISDIR(mode_of(sub)) && (mode_of(sub) & 077) == 0,
	   "a missing $TENSORFD_RUNTIME_DIR is created, mode 0%o", mode_of(sub) & 07777);

	snprintf(expect, sizeof(expect), "%s/tensorfd", xdg);
	setenv("TENSORFD_RUNTIME_DIR", "", 1);
	r = tfd_runtime_dir(buf, sizeof(buf));
	ok(r == (int)strlen(expect) && strcmp(buf, expect) == 0,
	   "an empty $TENSORFD_RUNTIME_DIR falls through to $XDG_RUNTIME_DIR/tensorfd: %s", buf);
	ok(S_ISDIR(mode_of(expect)) && (mode_of(expect) & 07777) == 0700, "created 0%o",
	   mode_of(expect) & 07777);
	unsetenv("TENSORFD_RUNTIME_DIR");
	r = tfd_runtime_dir(buf, sizeof(buf));
	ok(r == (int)strlen(expect) && strcmp(buf, expect) == 0,
	   "unset $TENSORFD_RUNTIME_DIR: $XDG_RUNTIME_DIR/tensorfd");

	setenv("XDG_RUNTIME_DIR", "", 1);
	tmp_fallback();

	if (old_xdg)
		setenv("XDG_RUNTIME_DIR", old_xdg, 1);
	free(old_xdg);
	setenv("TENSORFD_RUNTIME_DIR", rundir, 1);

	/* too long, at each place a length is checked */
	ok(tfd_runtime_dir(buf, 8) == -ENAMETOOLONG, "a buffer too small: -ENAMETOOLONG");
	ok(tfd_topic_path("camera/front", buf, 16) == -ENAMETOOLONG,
	   "a topic path buffer too small: -ENAMETOOLONG");
	memset(longdir, 'x', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';
	setenv("TENSORFD_RUNTIME_DIR", longdir, 1);
	ok(tfd_runtime_dir(buf, sizeof(buf)) == -ENAMETOOLONG,
	   "a runtime directory longer than PATH_MAX: -ENAMETOOLONG");
	snprintf(longdir, sizeof(longdir), "%s/%0100d", rundir, 0);
	setenv("TENSORFD_RUNTIME_DIR", longdir, 1);
	{
		struct tfd_publisher *pub = NULL;
		struct tfd_subscriber *s = NULL;

		r = tfd_topic_path("t", buf, sizeof(buf));
		ok(r == -ENAMETOOLONG, "a socket path over 107 bytes: -ENAMETOOLONG (%s)",
		   tfd_last_error());
		ok(tfd_publisher_new("t", 0, &pub) == -ENAMETOOLONG && !pub,
		   "tfd_publisher_new: -ENAMETOOLONG, output untouched");
		ok(tfd_subscriber_new("t", 0, &s) == -ENAMETOOLONG && !s,
		   "tfd_subscriber_new: -ENAMETOOLONG, output untouched");
	}
	setenv("TENSORFD_RUNTIME_DIR", rundir, 1);
}

static void socket_modes(void)
{
	struct tfd_publisher *pub = NULL, *pub2 = NULL;
	char path[PATH_MAX], dir[PATH_MAX];
	struct stat st;
	int r;

	ok(tfd_publisher_new("camera/front", 0, &pub) == 0, "publisher of camera/front");
	tfd_topic_path("camera/front", path, sizeof(path));
	ok(pub && strcmp(tfd_publisher_path(pub), path) == 0, "it listens on %s", path);
	r = stat(path, &st);
	ok(r == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600,
	   "0700 runtime directory: socket mode 0%o", st.st_mode & 0777);
	snprintf(dir, sizeof(dir), "%s/camera", rundir);
	ok(S_ISDIR(mode_of(dir)), "the topic's directory was made");

	r = tfd_publisher_new("/camera/front", 0, &pub2);
	snprintf(dir, sizeof(dir), "pid %d", (int)getpid());
	ok(r == -EADDRINUSE && !pub2 && strstr(tfd_last_error(), dir),
	   "a second publisher of the topic, as /camera/front: -EADDRINUSE naming the first's pid "
	   "(%s)", tfd_last_error());
	ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode), "the first one's socket is still there");
	tfd_publisher_unref(pub);
	ok(stat(path, &st) < 0 && errno == ENOENT, "the socket goes with its publisher");
	ok(tfd_publisher_new("camera/front", 0, &pub2) == 0, "then the topic is free again");
	tfd_publisher_unref(pub2);

	/* a shared runtime directory: everyone may connect (credentials decide) */
	chmod(rundir, 01777);
	pub = NULL;
	r = tfd_publisher_new("shared", 0, &pub);
	if (r == 0)
		r = stat(tfd_publisher_path(pub), &st);
	ok(r == 0 && (st.st_mode & 0777) == 0666, "1777 runtime directory: socket mode 0%o",
	   st.st_mode & 0777);
	tfd_publisher_unref(pub);
	pub = NULL;
	snprintf(dir, sizeof(dir), "%s/shared2", rundir);
	r = tfd_publisher_new("shared2/x", 0, &pub);
	ok(r == 0 && (mode_of(dir) & 0011) == 0011,
	   "1777 runtime directory: the topic's subdirectory lets others reach the socket (0%o)",
	   mode_of(dir) & 07777);
	tfd_publisher_unref(pub);
	chmod(rundir, 0700);
}

/* --- a publisher in a child process --- */

static struct tfd_message *value_message(struct tfd_publisher *pub, uint64_t value)
{
	const int64_t n = 512;
	struct tfd_message *m = NULL;
	struct tfd_buffer *b;
	struct tfd_layout l;
	uint64_t *p;
	int i;

	if (tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n, &b, &l) <
	    0)
		return NULL;
	p = tfd_buffer_data(b);
	for (i = 0; i < n; i++)
		p[i] = value + (uint64_t)i;
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "v", b, &l);
	tfd_buffer_unref(b);
	return m;
}

static bool value_ok(const struct tfd_message *m, uint64_t value)
{
	const uint64_t *p = tfd_message_data(m, 0);
	int i;

	if (!p || tfd_message_count(m) != 1 || tfd_message_layout(m, 0)->shape[0] != 512)
		return false;
	for (i = 0; i < 512; i++)
		if (p[i] != value + (uint64_t)i)
			return false;
	return true;
}

static int wait_subscribers(struct tfd_publisher *pub, uint64_t n, int timeout_ms)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers >= n)
			return 0;
		if (now_ms() > end)
			return -ETIMEDOUT;
		tfd_publisher_dispatch(pub, 10);
	}
}

/*
 * After delay_ms, publish topic with one message of value once a subscriber
 * attached, then serve until the parent closes ctl.
 */
static int publisher_child(const char *topic, int delay_ms, uint64_t value, int ctl)
{
	struct tfd_publisher *pub;
	struct tfd_message *m;
	struct pollfd pfd = { .fd = ctl, .events = POLLIN };
	char c;

	usleep((useconds_t)delay_ms * 1000);
	if (tfd_publisher_new(topic, 0, &pub) < 0)
		return 2;
	if (wait_subscribers(pub, 1, 10000) < 0)
		return 3;
	m = value_message(pub, value);
	if (!m || tfd_publisher_publish(pub, m) < 0)
		return 4;
	tfd_message_unref(m);
	for (;;) {
		tfd_publisher_dispatch(pub, 0);
		if (poll(&pfd, 1, 10) > 0 && read(ctl, &c, 1) <= 0)
			break;
	}
	tfd_publisher_unref(pub);
	return 0;
}

static pid_t spawn_publisher(const char *topic, int delay_ms, uint64_t value, int *ctl)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(p[1]);
		_exit(publisher_child(topic, delay_ms, value, p[0]));
	}
	close(p[0]);
	*ctl = p[1];
	return pid;
}

static int readable(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int r;

	while ((r = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	return r > 0 && (pfd.revents & POLLIN);
}

/* A subscriber made before its publisher; the publisher goes and comes back. */
static void attach_and_restart(void)
{
	struct tfd_subscriber *sub = NULL;
	struct tfd_subscriber_stats st;
	struct tfd_message *m = NULL, *m2;
	int fds0 = count_fds(), fd, ctl, r;
	uint64_t t0;
	pid_t pid, pid2;

	ok(tfd_subscriber_new("camera/front", 0, &sub) == 0, "subscriber before any publisher");
	tfd_subscriber_get_stats(sub, &st);
	ok(!st.connected && st.attaches == 0, "not connected yet");
	fd = tfd_subscriber_get_fd(sub);
	ok(fd >= 0, "its fd: %d", fd);
	ok(tfd_subscriber_recv(sub, 0, &m) == -EAGAIN, "recv(0) with no publisher: -EAGAIN");
	t0 = now_ms();
	r = tfd_subscriber_recv(sub, 50, &m);
	t0 = now_ms() - t0;
	ok(r == -ETIMEDOUT && t0 >= 45, "recv(50) with no publisher: -ETIMEDOUT after %llu ms",
	   (unsigned long long)t0);
	ok(readable(fd, 1000), "the fd wakes a poller while detached (to retry the attach)");

	t0 = now_ms();
	pid = spawn_publisher("camera/front", 200, 1, &ctl);
	r = tfd_subscriber_recv(sub, 10000, &m);
	ok(r == 0 && value_ok(m, 1), "the publisher appeared after %llu ms and we got its message",
	   (unsigned long long)(now_ms() - t0));
	ok(r == 0 && tfd_message_seq(m) == 1, "sequence number 1");
	tfd_message_unref(m);
	tfd_subscriber_get_stats(sub, &st);
	ok(st.connected && st.attaches == 1 && st.received == 1, "attached once, received 1");
	ok(tfd_subscriber_get_fd(sub) == fd, "same fd once attached");
	ok(tfd_subscriber_recv(sub, 0, &m) == -EAGAIN, "nothing more: -EAGAIN");
	ok(!readable(fd, 100), "an idle attached subscriber's fd is not readable");

	close(ctl);
	ok(readable(fd, 5000), "the fd wakes when the publisher goes");
	r = tfd_subscriber_recv(sub, 5000, &m);
	ok(r == -ECONNRESET, "publisher gone: -ECONNRESET (%d)", r);
	ok(strlen(tfd_subscriber_strerror(sub)) > 0, "with a reason: %s",
	   tfd_subscriber_strerror(sub));
	ok(wait_child(pid) == 0, "first publisher exited cleanly");
	tfd_subscriber_get_stats(sub, &st);
	ok(!st.connected, "stats say disconnected");
	r = tfd_subscriber_recv(sub, 0, &m);
	ok(r == -EAGAIN, "-ECONNRESET is said once; then -EAGAIN while waiting (%d)", r);
	ok(tfd_subscriber_get_fd(sub) == fd && readable(fd, 1000),
	   "same fd, pollable again while detached");

	pid = spawn_publisher("camera/front", 0, 2, &ctl);
	r = tfd_subscriber_recv(sub, 10000, &m);
	ok(r == 0 && value_ok(m, 2), "re-attached to the new publisher, got its message");
	ok(r == 0 && tfd_message_seq(m) == 1, "whose sequence starts at 1 again");
	tfd_subscriber_get_stats(sub, &st);
	ok(st.attaches == 2 && st.connected && st.received == 2 && st.dropped == 0,
	   "attaches %llu, received %llu, dropped %llu", (unsigned long long)st.attaches,
	   (unsigned long long)st.received, (unsigned long long)st.dropped);
	ok(tfd_subscriber_get_fd(sub) == fd, "still the same fd");
	/* a forked child that drops its copy must not disturb ours */
	pid2 = fork();
	if (pid2 == 0) {
		tfd_subscriber_unref(sub);
		_exit(0);
	}
	ok(wait_child(pid2) == 0 && !readable(fd, 200),
	   "a forked child dropping its copy of the subscriber leaves our fd quiet");
	close(ctl);
	ok(readable(fd, 5000), "and it still wakes when the publisher goes");
	ok(tfd_subscriber_recv(sub, 5000, &m2) == -ECONNRESET, "second publisher gone too");
	ok(value_ok(m, 2), "the message outlives its publisher");
	tfd_message_unref(m);
	ok(wait_child(pid) == 0, "second publisher exited cleanly");
	tfd_subscriber_unref(sub);
	ok(count_fds() == fds0, "no fd leaked");
}

/* io_uring task work may interrupt epoll_wait(): EINTR is not an answer */
static int ep_wait(int ep, struct epoll_event *ev, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int r;

	while ((r = epoll_wait(ep, ev, 1, timeout_ms)) < 0 && errno == EINTR)
		timeout_ms = now_ms() >= end ? 0 : (int)(end - now_ms());
	return r;
}

/* Three topics, one wait. */
static void wait_many(void)
{
	static const char *const topics[] = { "wait/a", "wait/b", "wait/c", "wait/none" };
	struct tfd_publisher *pub[3] = { NULL };
	struct tfd_subscriber *sub[4] = { NULL };
	struct epoll_event ev;
	struct tfd_message *m;
	bool ready[4];
	int fds0 = count_fds(), i, r, ep, n = 0;
	uint64_t t0;

	for (i = 0; i < 3; i++)
		n += tfd_publisher_new(topics[i], 0, &pub[i]) == 0;
	for (i = 0; i < 4; i++)
		n += tfd_subscriber_new(topics[i], 0, &sub[i]) == 0;
	ok(n == 7, "three publishers, four subscribers (one topic has no publisher)");
	for (i = 0; i < 3; i++)
		wait_subscribers(pub[i], 1, 5000);
	r = tfd_subscriber_wait(sub, 3, 0, ready);
	if (r > 0)
		diag("fresh subscribers reported ready with nothing to read (%d)", r);
	for (i = 0; i < 3; i++)
		tfd_subscriber_recv(sub[i], 0, &m);

	ep = epoll_create1(EPOLL_CLOEXEC);
	for (i = 0; i < 3; i++) {
		ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = (uint32_t)i };
		epoll_ctl(ep, EPOLL_CTL_ADD, tfd_subscriber_get_fd(sub[i]), &ev);
	}
	ok(ep_wait(ep, &ev, 50) == 0, "epoll over the three fds: nothing yet");

	m = value_message(pub[1], 7);
	ok(m && tfd_publisher_publish(pub[1], m) == 0, "publish on wait/b");
	tfd_message_unref(m);
	memset(ready, 0xff, sizeof(ready));
	r = tfd_subscriber_wait(sub, 3, 5000, ready);
	ok(r == 1 && !ready[0] && ready[1] && !ready[2],
	   "wait: 1 ready, and it is wait/b (%d: %d%d%d)",
	   r, ready[0], ready[1], ready[2]);
	ok(ep_wait(ep, &ev, 1000) == 1 && ev.data.u32 == 1, "epoll says the same");
	ok(tfd_subscriber_recv(sub[1], 0, &m) == 0 && value_ok(m, 7), "recv(0) gets it");
	tfd_message_unref(m);

	t0 = now_ms();
	r = tfd_subscriber_wait(sub, 3, 100, ready);
	t0 = now_ms() - t0;
	ok(r == -ETIMEDOUT && t0 >= 95, "nothing more: -ETIMEDOUT after %llu ms (%d)",
	   (unsigned long long)t0, r);
	ok(tfd_subscriber_wait(sub, 3, 0, ready) == -EAGAIN, "timeout 0: -EAGAIN");

	m = value_message(pub[2], 8);
	tfd_publisher_publish(pub[2], m);
	tfd_message_unref(m);
	r = tfd_subscriber_wait(sub, 4, 5000, ready);
	ok(r >= 1 && ready[2] && !ready[0] && !ready[1], "wait over four: wait/c ready (%d)", r);
	tfd_subscriber_recv(sub[2], 0, &m);
	tfd_message_unref(m);
	/* the one without a publisher wakes for its retry timer: a hint, as documented */
	t0 = now_ms();
	r = tfd_subscriber_wait(sub, 4, 300, ready);
	t0 = now_ms() - t0;
	ok((r == -ETIMEDOUT && t0 >= 295) || (r == 1 && ready[3]),
	   "then only the one without a publisher may wake the wait (%d after %llu ms, %d%d%d%d)", r,
	   (unsigned long long)t0, ready[0], ready[1], ready[2], ready[3]);
	ok(tfd_subscriber_recv(sub[3], 0, &m) == -EAGAIN, "its recv(0): -EAGAIN, as documented");

	ok(tfd_subscriber_wait(sub, 0, 0, ready) == -EINVAL &&
		   tfd_subscriber_wait(NULL, 1, 0, ready) == -EINVAL &&
		   tfd_subscriber_wait(sub, 1, 0, NULL) == -EINVAL,
	   "bad arguments: -EINVAL");
	close(ep);
	for (i = 0; i < 4; i++)
		tfd_subscriber_unref(sub[i]);
	for (i = 0; i < 3; i++)
		tfd_publisher_unref(pub[i]);
	ok(count_fds() == fds0, "no fd leaked");
}

/* A published message is done with: publishing it again, or changing it, is refused. */
static void misuse(void)
{
	const int64_t shape = 16;
	struct tfd_publisher *pub = NULL;
	struct tfd_message *m = NULL;
	struct tfd_buffer *buf = NULL;
	struct tfd_layout l;

	ok(tfd_publisher_new("misuse/once", 0, &pub) == 0, "publisher of misuse/once");
	tfd_buffer_new(4096, 0, &buf);
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &shape);
	tfd_message_new(&m);
	ok(pub && buf && m && tfd_message_add_tensor(m, "a", buf, &l) == 0 &&
		   tfd_publisher_publish(pub, m) == 0,
	   "a message is published once");
	ok(tfd_publisher_publish(pub, m) == -EBUSY &&
		   strstr(tfd_publisher_strerror(pub), "published already"),
	   "publishing it again: -EBUSY (%s)", tfd_publisher_strerror(pub));
	ok(tfd_message_add_tensor(m, "b", buf, &l) == -EBUSY &&
		   strstr(tfd_last_error(), "make a new message"),
	   "adding a tensor to it: -EBUSY (%s)", tfd_last_error());
	ok(tfd_message_set_user_data(m, "x", 1) == -EBUSY && tfd_message_set_int(m, "k", 1) == -EBUSY,
	   "changing its user data or metadata: -EBUSY");
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	tfd_publisher_unref(pub);
}

/* The short path: loan a message laid out, fill it, send (which lets go of it). */
static void short_path(void)
{
	const int64_t shape[2] = { 4, 8 };
	struct tfd_publisher_stats st = { 0 };
	struct tfd_subscriber *sub = NULL;
	struct tfd_publisher *pub = NULL;
	struct tfd_message *m = NULL, *got = NULL;
	const struct tfd_layout *l;
	float *px;
	int i, r;

	ok(tfd_publisher_new("short/path", 0, &pub) == 0, "publisher of short/path");
	r = tfd_publisher_wait_subscribers(pub, 1, 30);
	ok(r == -ETIMEDOUT && strstr(tfd_publisher_strerror(pub), "0 of 1 subscribers"),
	   "waiting for a subscriber that is not there: -ETIMEDOUT (%s)",
	   tfd_publisher_strerror(pub));
	tfd_subscriber_new("short/path", 0, &sub);
	/* the subscriber attaches inside its own calls: poke it while the publisher waits */
	tfd_subscriber_recv(sub, 0, &got);
	ok(tfd_publisher_wait_subscribers(pub, 1, 5000) == 0, "then one attaches: 0");
	r = tfd_publisher_loan_message(pub, "image", (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 2,
				       shape, &m);
	ok(r == 0 && m && tfd_message_count(m) == 1, "a message loaned with its tensor laid out");
	px = m ? tfd_message_data(m, 0) : NULL;
	for (i = 0; px && i < 32; i++)
		px[i] = (float)i;
	{
		/* and one from the caller's memory, which the library copies and flags */
		static const float mine[4] = { 1, 2, 3, 4 };
		const int64_t four = 4;
		struct tfd_layout cl;

		tfd_layout_init(&cl, (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 1, &four);
		ok(m && tfd_publisher_add_copy(pub, m, "mine", mine, &cl) == 0,
		   "a tensor in the caller's memory, copied into the pool by the library");
	}
	ok(m && tfd_publisher_send(pub, m) == 0, "sent in one call, which lets go of it");
	for (i = 0, r = -ETIMEDOUT; i < 200 && r == -ETIMEDOUT; i++) {
		tfd_publisher_dispatch(pub, 0);
		r = tfd_subscriber_recv(sub, 10, &got);
	}
	l = r == 0 ? tfd_message_layout(got, 0) : NULL;
	px = r == 0 ? tfd_message_data(got, 0) : NULL;
	ok(l && l->ndim == 2 && l->shape[1] == 8 && !tfd_message_copied(got, 0) && px[31] == 31.0f,
	   "the subscriber gets it, zero-copy, as filled");
	px = r == 0 ? tfd_message_data(got, 1) : NULL;
	ok(r == 0 && tfd_message_copied(got, 1) && px && px[3] == 4.0f,
	   "and the caller's tensor flagged as copied at the receiver");
	tfd_message_unref(got);
	for (i = 0; i < 100; i++) {
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
		if (!st.pool_buffers_busy)
			break;
	}
	ok(st.pool_buffers_busy == 0 && st.published == 1 && st.copied_tensors == 1,
	   "and its buffer is back in the pool once released (%llu busy)",
	   (unsigned long long)st.pool_buffers_busy);
	ok(tfd_publisher_loan_message(pub, "bad name", (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 2,
				      shape, &m) == -EINVAL,
	   "a bad tensor name is refused, nothing loaned");
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
}

int main(void)
{
	int fds0;

	tap_init(30);
	fds0 = count_fds();
	snprintf(rundir, sizeof(rundir), "/tmp/tfd-topic-XXXXXX");
	tap_runtime_dir(rundir);
	names();
	runtime_dirs();
	socket_modes();
	attach_and_restart();
	wait_many();
	misuse();
	short_path();
	rm_tree(rundir);
	ok(count_fds() == fds0, "no fd leaked overall");
	return done_testing();
}
