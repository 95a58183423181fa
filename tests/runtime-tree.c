/* SPDX-License-Identifier: MIT */
/*
 * The runtime tree under attack: a shared (1777) runtime directory where
 * another user owns a topic's directory and swaps the new socket for a
 * symbolic link to the victim's file; directories writable by others
 * without the sticky bit; links and other files where a topic's socket
 * should be, for the publisher and for the subscriber. As root the other
 * user is a child that drops to uid/gid 65534.
 */
#include <fcntl.h>
#include <grp.h>
#include <stdint.h>
#include <sys/stat.h>

#include "tap.h"
#include "tensorfd.h"

#define NOBODY 65534

static char rundir[] = "/tmp/tfd-tree-XXXXXX";

static mode_t mode_of(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? st.st_mode : 0;
}

static int become_nobody(void)
{
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		return -1;
	return 0;
}

/* As nobody: make dir (mode 0777, no sticky bit), then exit. */
static void nobody_mkdir(const char *dir)
{
	pid_t pid = fork();

	if (pid == 0) {
		umask(0);
		_exit(become_nobody() < 0 || mkdir(dir, 0777) < 0 ? 1 : 0);
	}
	if (wait_child(pid) != 0)
		diag("nobody could not make %s", dir);
}

/*
 * The attack of the issue: nobody owns cam/ in a 1777 runtime directory and
 * swaps cam/front.sock for a symbolic link to the victim's 0600 file the
 * moment the victim's publisher makes it. The victim's file keeps its mode:
 * the publisher refuses the tree, and never changes a mode through a path.
 */
static void symlink_race(void)
{
	char cam[PATH_MAX], sock[PATH_MAX], tmp[PATH_MAX], victim[PATH_MAX];
	struct tfd_publisher *pub;
	int fds0 = count_fds(), i, r = 0, created = 0, fd;
	pid_t pid;

	snprintf(cam, sizeof(cam), "%s/cam", rundir);
	snprintf(sock, sizeof(sock), "%s/cam/front.sock", rundir);
	snprintf(tmp, sizeof(tmp), "%s/cam/tmp", rundir);
	snprintf(victim, sizeof(victim), "%s/victim", rundir);
	fd = open(victim, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	chmod(victim, 0600);
	nobody_mkdir(cam);

	pid = fork();
	if (pid == 0) {
		struct stat st;

		if (become_nobody() < 0)
			_exit(1);
		/* swap every socket that appears for a link to the victim's file */
		for (;;) {
			if (lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode)) {
				unlink(tmp);
				if (symlink(victim, tmp) == 0)
					rename(tmp, sock);
			}
		}
	}
	for (i = 0; i < 300 && (mode_of(victim) & 07777) == 0600; i++) {
		pub = NULL;
		r = tfd_publisher_new("cam/front", 0, &pub);
		if (r == 0)
			created++;
		tfd_publisher_unref(pub);
		/* what the racer left behind, so the next try binds afresh */
		unlink(sock);
	}
	kill(pid, SIGKILL);
	wait_child(pid);
	ok((mode_of(victim) & 07777) == 0600,
	   "the victim's 0600 file keeps its mode (0%o) after %d publishers in nobody's cam/",
	   mode_of(victim) & 07777, i);
	ok(created == 0 && r == -EPERM && strstr(tfd_last_error(), "uid 65534"),
	   "the publisher refuses a directory another user owns: %d created, %d (%s)", created,
	   r, tfd_last_error());
	ok(count_fds() == fds0, "no fd leaked");
	unlink(tmp);
	rmdir(cam);
	unlink(victim);
}

/*
 * A subscriber trusts one other user's topic tree, not a socket a third
 * user put into it: uid 4242 listens in nobody's sticky cam2/.
 */
static void third_user(void)
{
	char cam[PATH_MAX], sock[PATH_MAX];
	struct tfd_subscriber *sub = NULL;
	struct tfd_subscriber_stats st = { .connected = true };
	int fds0 = count_fds(), ctl[2], r;
	pid_t pid;
	char c;

	snprintf(cam, sizeof(cam), "%s/cam2", rundir);
	tfd_topic_path("cam2/front", sock, sizeof(sock));
	nobody_mkdir(cam);
	chmod(cam, 01777);
	if (pipe2(ctl, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		struct tfd_listener *l = NULL;

		close(ctl[0]);
		if (setgroups(0, NULL) < 0 || setgid(4242) < 0 || setuid(4242) < 0 ||
		    tfd_listener_new(sock, &l) < 0)
			_exit(1);
		if (write(ctl[1], "r", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	close(ctl[1]);
	r = read(ctl[0], &c, 1) == 1 ? tfd_subscriber_new("cam2/front", 0, &sub) : -1;
	tfd_subscriber_get_stats(sub, &st);
	ok(r == 0 && !st.connected && strstr(tfd_subscriber_strerror(sub), "uid 4242"),
	   "a socket of uid 4242 in a directory of uid %d is not trusted: connected %d (%s)",
	   NOBODY, st.connected, sub ? tfd_subscriber_strerror(sub) : "no subscriber");
	tfd_subscriber_unref(sub);
	kill(pid, SIGKILL);
	wait_child(pid);
	close(ctl[0]);
	unlink(sock);
	rmdir(cam);
	ok(count_fds() == fds0, "no fd leaked");
}

/* Directories that others can write without the sticky bit, and links on the way. */
static void unsafe_trees(void)
{
	char path[PATH_MAX], real[PATH_MAX];
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_subscriber_stats st;
	int fds0 = count_fds(), r;
	mode_t old_umask;

	chmod(rundir, 0777);
	r = tfd_publisher_new("open", 0, &pub);
	ok(r == -EPERM && !pub && strstr(tfd_last_error(), "sticky"),
	   "a 0777 runtime directory is refused: %d (%s)", r, tfd_last_error());
	tfd_publisher_unref(pub);
	pub = NULL;
	chmod(rundir, 01777);
	/* the mode is set on the socket and through a descriptor: a umask does not narrow it */
	old_umask = umask(027);
	r = tfd_publisher_new("open", 0, &pub);
	umask(old_umask);
	ok(r == 0 && (mode_of(tfd_publisher_path(pub)) & 0777) == 0666,
	   "a 1777 one is shared: socket mode 0%o under umask 027",
	   mode_of(pub ? tfd_publisher_path(pub) : "/") & 0777);
	tfd_publisher_unref(pub);
	pub = NULL;
	r = tfd_publisher_new("team/x", 0, &pub);
	snprintf(path, sizeof(path), "%s/team", rundir);
	ok(r == 0 && (mode_of(path) & 07777) == 01777,
	   "its topic directories are made 1777 (0%o)", mode_of(path) & 07777);
	/* the sticky bit goes while the publisher runs: subscribers stay away */
	chmod(rundir, 0777);
	r = tfd_subscriber_new("team/x", 0, &sub);
	tfd_subscriber_get_stats(sub, &st);
	ok(r == 0 && !st.connected && strstr(tfd_subscriber_strerror(sub), "sticky"),
	   "a subscriber refuses a 0777 runtime directory too (%s)", tfd_subscriber_strerror(sub));
	tfd_subscriber_unref(sub);
	sub = NULL;
	chmod(rundir, 01777);
	tfd_publisher_unref(pub);
	pub = NULL;
	chmod(path, 0777);
	r = tfd_publisher_new("team/y", 0, &pub);
	ok(r == -EPERM && !pub && strstr(tfd_last_error(), "sticky"),
	   "a 0777 topic directory is refused: %d (%s)", r, tfd_last_error());
	tfd_publisher_unref(pub);
	pub = NULL;

	/* a topic directory that is a link, even to one of ours */
	snprintf(real, sizeof(real), "%s/real", rundir);
	snprintf(path, sizeof(path), "%s/link", rundir);
	mkdir(real, 0700);
	if (symlink("real", path) < 0)
		diag("symlink: %s", strerror(errno));
	r = tfd_publisher_new("link/x", 0, &pub);
	ok(r == -ENOTDIR && !pub && strstr(tfd_last_error(), "symbolic link"),
	   "a topic directory that is a symbolic link is not followed: %d (%s)", r,
	   tfd_last_error());
	tfd_publisher_unref(pub);
	pub = NULL;
	r = tfd_publisher_new("real/x", 0, &pub);
	sub = NULL;
	if (r == 0)
		r = tfd_subscriber_new("link/x", 0, &sub);
	tfd_subscriber_get_stats(sub, &st);
	tfd_publisher_dispatch(pub, 0);
	ok(r == 0 && !st.connected && strstr(tfd_subscriber_strerror(sub), "symbolic link"),
	   "nor by a subscriber: connected %d (%s)", st.connected, tfd_subscriber_strerror(sub));
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	unlink(path);
	rmdir(real);
	ok(count_fds() == fds0, "no fd leaked");
}

/* What is at the socket's path, said precisely; links neither followed nor removed. */
static void squatted_path(void)
{
	char path[PATH_MAX], real[PATH_MAX];
	struct tfd_publisher *pub = NULL, *live = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_subscriber_stats st;
	int fds0 = count_fds(), r, fd;

	tfd_topic_path("file", path, sizeof(path));
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	r = tfd_publisher_new("file", 0, &pub);
	ok(r == -EEXIST && !pub && strstr(tfd_last_error(), "regular file") &&
	   !strstr(tfd_last_error(), "live publisher"),
	   "a regular file at the socket path: %d (%s)", r, tfd_last_error());
	ok(S_ISREG(mode_of(path)), "and it is left alone");
	pub = NULL;
	unlink(path);

	/* a link to a live publisher's socket */
	r = tfd_publisher_new("real", 0, &live);
	tfd_topic_path("real", real, sizeof(real));
	tfd_topic_path("link", path, sizeof(path));
	if (symlink(real, path) < 0)
		diag("symlink: %s", strerror(errno));
	r = tfd_publisher_new("link", 0, &pub);
	ok(r == -EEXIST && !pub && strstr(tfd_last_error(), "symbolic link"),
	   "a symbolic link at the socket path: %d (%s)", r, tfd_last_error());
	ok(S_ISLNK(mode_of(path)) && S_ISSOCK(mode_of(real)),
	   "neither the link nor its target is removed");
	r = tfd_subscriber_new("link", 0, &sub);
	tfd_subscriber_get_stats(sub, &st);
	ok(r == 0 && !st.connected && strstr(tfd_subscriber_strerror(sub), "symbolic link"),
	   "a subscriber does not follow it: connected %d (%s)", st.connected,
	   tfd_subscriber_strerror(sub));
	tfd_subscriber_unref(sub);
	unlink(path);
	tfd_publisher_unref(live);

	/* a dangling link: the publisher does not create its target */
	snprintf(real, sizeof(real), "%s/elsewhere.sock", rundir);
	if (symlink(real, path) < 0)
		diag("symlink: %s", strerror(errno));
	pub = NULL;
	r = tfd_publisher_new("link", 0, &pub);
	ok(r == -EEXIST && !pub && !mode_of(real) && S_ISLNK(mode_of(path)),
	   "a dangling link: %d, its target not made (%s)", r, tfd_last_error());
	unlink(path);
	ok(count_fds() == fds0, "no fd leaked");
}

int main(void)
{
	int fds0;

	tap_init(60);
	fds0 = count_fds();
	if (!mkdtemp(rundir))
		skip_all("mkdtemp failed");
	setenv("TENSORFD_RUNTIME_DIR", rundir, 1);
	squatted_path();
	if (getuid() != 0) {
		skip("not root: cannot play another user");
		skip("not root: cannot play another user");
		skip("not root: cannot play another user");
		skip("not root: cannot play another user");
		skip("not root: cannot play another user");
	} else {
		chmod(rundir, 01777);
		symlink_race();
		third_user();
	}
	unsafe_trees();
	rm_tree(rundir);
	ok(count_fds() == fds0, "no fd leaked overall");
	return done_testing();
}
