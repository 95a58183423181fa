/* SPDX-License-Identifier: MIT */
/*
 * Where topics live: the runtime directory ($TENSORFD_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/tensorfd, else /tmp/tensorfd-<uid>, a directory created
 * 0700 and checked to be ours), topic name rules, the path of a topic's
 * socket in it, and the walk to that socket: every directory below the
 * runtime directory opened without following links and checked, so that
 * nobody but its owner (and root) can put a socket where a topic's is.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/*
 * chmod through a descriptor: fchmod, or for an O_PATH one the file it
 * names through /proc, or without /proc a directory reopened as "." (no
 * link is resolved again in any of them).
 */
int fd_chmod(int fd, mode_t mode)
{
	char proc[32];
	int dir, r;

	if (fchmod(fd, mode) == 0)
		return 0;
	if (errno != EBADF)
		return -errno;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (chmod(proc, mode) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	dir = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -errno;
	r = fchmod(dir, mode) < 0 ? -errno : 0;
	close(dir);
	return r;
}

/*
 * Make dir in dirfd with mode, or find it there: a directory, not a link
 * (never followed); the umask does not make one we made narrower. The
 * descriptor of the directory, or a negative errno with the reason.
 */
static int dir_open(int dirfd, const char *dir, const char *shown, mode_t mode, bool create,
		    char *err, size_t errlen)
{
	bool made = false;
	struct stat st;
	int fd, r;

	if (create) {
		if (mkdirat(dirfd, dir, mode) == 0)
			made = true;
		else if (errno != EEXIST)
			return tfd_fail(err, errlen, -errno, "cannot create %s: %s", shown,
					strerror(errno));
	}
	fd = openat(dirfd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r != -ENOTDIR && r != -ELOOP)
			return tfd_fail(err, errlen, r, "%s: %s", shown, strerror(-r));
		r = fstatat(dirfd, dir, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
		return tfd_fail(err, errlen, -ENOTDIR, "%s is %s, not a directory%s", shown,
				r ? "a symbolic link" : "something else",
				r ? " (links are not followed)" : "");
	}
	/* ours, just made: a descriptor, so whatever took its name meanwhile is left alone */
	if (made && (fstat(fd, &st) < 0 || st.st_uid != geteuid() || fd_chmod(fd, mode) < 0)) {
		close(fd);
		return tfd_fail(err, errlen, -EPERM, "cannot set the mode of %s, just made", shown);
	}
	return fd;
}

/* Create dir with mode if missing; refuse one that is not a directory (of ours). */
static int ensure_dir(const char *dir, mode_t mode, bool private_check)
{
	struct stat st;
	int fd;

	fd = dir_open(AT_FDCWD, dir, dir, mode, true, NULL, 0);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return tfd_fail(NULL, 0, -errno, "%s: %s", dir, strerror(errno));
	}
	close(fd);
	if (private_check && (st.st_uid != getuid() || (st.st_mode & 077)))
		return tfd_fail(NULL, 0, -EPERM,
				"%s is not a private directory of uid %u (owner %u, mode 0%o)", dir,
				getuid(), st.st_uid, st.st_mode & 07777);
	return 0;
}

/* The runtime directory, made if missing; shared_tmp: the /tmp fallback. */
static int runtime_dir(char *buf, size_t len, bool *shared_tmp)
{
	const char *env;
	int n, r;

	*shared_tmp = false;
	env = getenv("TENSORFD_RUNTIME_DIR");
	if (env && *env) {
		n = snprintf(buf, len, "%s", env);
	} else if ((env = getenv("XDG_RUNTIME_DIR")) && *env) {
		n = snprintf(buf, len, "%s/tensorfd", env);
	} else {
		/* /tmp is shared: the directory must be ours and private */
		n = snprintf(buf, len, "/tmp/tensorfd-%u", getuid());
		*shared_tmp = true;
	}
	if (n < 0 || (size_t)n >= len)
		return tfd_fail(NULL, 0, -ENAMETOOLONG, "runtime directory path too long");
	r = ensure_dir(buf, 0700, *shared_tmp);
	return r < 0 ? r : n;
}

TFD_EXPORT int tfd_runtime_dir(char *buf, size_t len)
{
	bool shared_tmp;

	if (!buf || !len)
		return fail_args();
	return runtime_dir(buf, len, &shared_tmp);
}

/*
 * Topic names are relative paths of [A-Za-z0-9_.-] components separated by
 * single slashes, none of them "." or "..": they name files under the
 * runtime directory and must not escape it.
 */
/*
 * The topic a name means: ROS-style names with one leading slash
 * ("/camera/front") are the same topic as without it. Every entry point
 * that takes a topic name goes through here first.
 */
const char *topic_name(const char *topic)
{
	return topic && topic[0] == '/' ? topic + 1 : topic;
}

int topic_check(const char *topic)
{
	size_t len, i, comp = 0;

	if (!topic)
		return tfd_fail(NULL, 0, -EINVAL, "topic is NULL");
	len = strnlen(topic, TFD_TOPIC_MAX + 1);
	if (len == 0 || len > TFD_TOPIC_MAX)
		return tfd_fail(NULL, 0, -EINVAL, "topic name must have 1 to %d bytes", TFD_TOPIC_MAX);
	for (i = 0; i <= len; i++) {
		char c = topic[i];

		if (c == '/' || c == '\0') {
			if (comp == 0)
				return tfd_fail(NULL, 0, -EINVAL,
						"topic '%s' has an empty component (leading, trailing or double slash)",
						topic);
			if ((comp == 1 && topic[i - 1] == '.') ||
			    (comp == 2 && topic[i - 1] == '.' && topic[i - 2] == '.'))
				return tfd_fail(NULL, 0, -EINVAL, "topic '%s' has a '.' or '..' component",
						topic);
			comp = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return tfd_fail(NULL, 0, -EINVAL, "topic '%s' has a byte 0x%02x outside [A-Za-z0-9_.-/]",
					topic, (unsigned char)c);
		comp++;
	}
	return 0;
}

TFD_EXPORT int tfd_topic_path(const char *topic, char *buf, size_t len)
{
	char dir[PATH_MAX];
	int n, r;

	topic = topic_name(topic);
	r = topic_check(topic);
	if (r < 0)
		return r;
	if (!buf)
		return fail_args();
	r = tfd_runtime_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	n = snprintf(buf, len, "%s/%s.sock", dir, topic);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return tfd_fail(NULL, 0, -ENAMETOOLONG,
				"socket path for topic '%s' under %s is too long for a Unix socket",
				topic, dir);
	return n;
}

/*
 * May a directory on the way to a topic's socket be trusted? Its owner and
 * anyone who may write it without the sticky bit can replace the socket,
 * so it must belong to us or root and, if others may write it, be sticky.
 * A subscriber without TOPIC_SAME_USER also trusts one more user, the
 * owner of another user's topic tree (*other, checked against the socket).
 */
static int dir_check(int fd, const char *shown, unsigned int how, struct topic_place *p,
		     char *err, size_t errlen)
{
	uid_t me = geteuid();
	struct stat st;

	if (fstat(fd, &st) < 0)
		return tfd_fail(err, errlen, -errno, "%s: %s", shown, strerror(errno));
	if (st.st_uid != me && st.st_uid != 0) {
		if (how & (TOPIC_CREATE | TOPIC_SAME_USER))
			return tfd_fail(err, errlen, -EPERM,
					"%s is owned by uid %u, not by this process's uid %u "
					"or root: its owner could replace the topic's socket",
					shown, st.st_uid, me);
		if (p->other != (uid_t)-1 && p->other != st.st_uid)
			return tfd_fail(err, errlen, -EPERM,
					"%s is owned by uid %u, a directory above it by uid %u: "
					"either could replace the other's sockets",
					shown, st.st_uid, p->other);
		p->other = st.st_uid;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
		return tfd_fail(err, errlen, -EPERM,
				"%s may be written by others (mode 0%o) without the sticky bit: "
				"anyone could replace the topic's socket (chmod +t)",
				shown, st.st_mode & 07777);
	if (!p->mode)
		p->mode = st.st_mode & 07777;
	return 0;
}

/*
 * Walk from the runtime directory to the directory of topic's socket, one
 * component at a time without following links, checking each (dir_check);
 * TOPIC_CREATE makes missing ones with the runtime directory's mode (in a
 * shared one, others must reach the socket; the publisher's credential
 * checks decide who subscribes).
 */
int topic_place_open(const char *topic, unsigned int how, char *err, size_t errlen,
		     struct topic_place *p)
{
	const char *comp, *slash;
	bool shared_tmp;
	int fd, next, r;
	size_t base;

	topic = topic_name(topic);
	r = topic_check(topic);
	if (r < 0)
		return tfd_fail(err, errlen, r, "%s", tfd_last_error());
	memset(p, 0, sizeof(*p));
	p->dirfd = -1;
	p->other = (uid_t)-1;
	r = runtime_dir(p->path, sizeof(p->path), &shared_tmp);
	if (r < 0)
		return tfd_fail(err, errlen, r, "%s", tfd_last_error());
	base = (size_t)r;
	/* the runtime directory itself as configured; links below it are never followed */
	fd = open(p->path, O_PATH | O_DIRECTORY | O_CLOEXEC | (shared_tmp ? O_NOFOLLOW : 0));
	if (fd < 0)
		return tfd_fail(err, errlen, -errno, "%s: %s", p->path, strerror(errno));
	r = dir_check(fd, p->path, how, p, err, errlen);
	for (comp = topic; r >= 0 && (slash = strchr(comp, '/')); comp = slash + 1) {
		char name[TFD_TOPIC_MAX + 1];

		snprintf(name, sizeof(name), "%.*s", (int)(slash - comp), comp);
		snprintf(p->path + base, sizeof(p->path) - base, "/%.*s", (int)(slash - topic),
			 topic);
		next = dir_open(fd, name, p->path, p->mode & 01777, how & TOPIC_CREATE, err,
				errlen);
		close(fd);
		fd = next;
		r = fd < 0 ? fd : dir_check(fd, p->path, how, p, err, errlen);
	}
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	snprintf(p->name, sizeof(p->name), "%s.sock", comp);
	snprintf(p->path + base, sizeof(p->path) - base, "/%s.sock", topic);
	p->dirfd = fd;
	return 0;
}

/* What a file is, for a reason: "a symbolic link". */
const char *file_kind(mode_t mode)
{
	if (S_ISLNK(mode))
		return "a symbolic link";
	if (S_ISREG(mode))
		return "a regular file";
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	return "a device node";
}

/*
 * An address reaching name in dirfd (name NULL: the file fd itself) through
 * /proc/self/fd, so nothing on the way is looked up again and the length
 * of the real path does not matter; the path itself where /proc is missing.
 */
int fd_address(int fd, const char *name, const char *path, struct sockaddr_un *sa,
	       socklen_t *len)
{
	char via[sizeof(sa->sun_path)];

	if (access("/proc/self/fd", X_OK) < 0)
		return unix_address(path, sa, len);
	if (snprintf(via, sizeof(via), "/proc/self/fd/%d%s%s", fd, name ? "/" : "",
		     name ? name : "") >= (int)sizeof(via))
		return tfd_fail(NULL, 0, -ENAMETOOLONG, "socket name %s is too long", name);
	return unix_address(via, sa, len);
}

/*
 * Open a topic's socket to connect to it: a socket (a link is not
 * followed) in a trusted tree, owned by us, root or the tree's one other
 * user (TOPIC_SAME_USER: by us, else -EACCES and *foreign, the answer
 * SO_PEERCRED would give after connecting). An O_PATH descriptor, and in
 * via an address that reaches exactly that file.
 */
int topic_socket_open(const char *topic, unsigned int how, char *err, size_t errlen,
		      struct sockaddr_un *via, socklen_t *vialen, bool *foreign)
{
	struct topic_place p;
	uid_t me = geteuid();
	struct stat st;
	int fd, r;

	r = topic_place_open(topic, how, err, errlen, &p);
	if (r < 0)
		return r;
	fd = openat(p.dirfd, p.name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = tfd_fail(err, errlen, -errno, "%s: %s", p.path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		r = tfd_fail(err, errlen, -errno, "%s: %s", p.path, strerror(errno));
	} else if (!S_ISSOCK(st.st_mode)) {
		r = tfd_fail(err, errlen, S_ISLNK(st.st_mode) ? -ELOOP : -ENOTSOCK,
			     "%s is %s of uid %u, not a socket%s", p.path, file_kind(st.st_mode),
			     st.st_uid, S_ISLNK(st.st_mode) ? " (links are not followed)" : "");
	} else if ((how & TOPIC_SAME_USER) && st.st_uid != me) {
		r = tfd_fail(err, errlen, -EACCES,
			     "%s belongs to uid %u, not to this process's uid %u "
			     "(TFD_SUBSCRIBER_SAME_USER)", p.path, st.st_uid, me);
		if (foreign)
			*foreign = true;
	} else if (st.st_uid != me && st.st_uid != 0 && p.other != (uid_t)-1 &&
		   st.st_uid != p.other) {
		r = tfd_fail(err, errlen, -EPERM,
			     "%s belongs to uid %u, its directory to uid %u: "
			     "either could have put it there", p.path, st.st_uid, p.other);
	} else {
		r = fd_address(fd, NULL, p.path, via, vialen);
	}
	if (r < 0)
		close(fd);
	else
		r = fd;
out:
	close(p.dirfd);
	return r;
}

/*
 * Why a topic has no socket, for a subscriber's wait to say: the path it
 * looked at, the topics that do live beside it (a misspelt name), and
 * another runtime directory where the topic lives (a publisher of another
 * user, or with another TENSORFD_RUNTIME_DIR). Best effort: only what this
 * process may see.
 */
void topic_absent_hint(const char *topic, char *buf, size_t len)
{
	char path[PATH_MAX], dir[PATH_MAX], other[PATH_MAX];
	static const char *const bases[] = { "/run/user", "/tmp" };
	const char *slash;
	struct dirent *e;
	struct stat st;
	size_t n, shown = 0;
	DIR *d;

	if (tfd_topic_path(topic, path, sizeof(path)) < 0) {
		snprintf(buf, len, "%s", tfd_last_error());
		return;
	}
	n = (size_t)snprintf(buf, len, "no socket at %s", path);
	/* neighbours: the .sock files in the topic's own directory */
	slash = strrchr(path, '/');
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	d = opendir(dir);
	while (d && (e = readdir(d)) && n < len && shown < 4) {
		size_t l = strlen(e->d_name);

		if (l <= 5 || strcmp(e->d_name + l - 5, ".sock"))
			continue;
		n += (size_t)snprintf(buf + n, len - n, "%s%.*s", shown ? ", " : "; topics there: ",
				      (int)(l - 5), e->d_name);
		shown++;
	}
	if (d)
		closedir(d);
	/* the same topic in other users' runtime directories */
	for (size_t b = 0; b < 2 && n < len; b++) {
		d = opendir(bases[b]);
		while (d && (e = readdir(d)) && n < len) {
			if (e->d_name[0] == '.' ||
			    (b == 1 && strncmp(e->d_name, "tensorfd-", 9)))
				continue;
			snprintf(other, sizeof(other), b == 0 ? "%s/%s/tensorfd/%s.sock" : "%s/%s/%s.sock",
				 bases[b], e->d_name, topic);
			if (strncmp(other, dir, strlen(dir)) == 0 && other[strlen(dir)] == '/')
				continue;	/* our own directory */
			if (lstat(other, &st) == 0 && S_ISSOCK(st.st_mode))
				n += (size_t)snprintf(buf + n, len - n,
						      "; %s has one (uid %u): another runtime "
						      "directory (TENSORFD_RUNTIME_DIR, tfd_runtime_dir(3))",
						      other, st.st_uid);
		}
		if (d)
			closedir(d);
	}
}
