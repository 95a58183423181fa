/* SPDX-License-Identifier: MIT */
/*
 * Where topics live: the runtime directory ($TENSORFD_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/tensorfd, else /tmp/tensorfd-<uid>, a directory created
 * 0700 and checked to be ours), topic name rules, and the path of a
 * topic's socket in it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Create dir with mode if missing; refuse one that is not a directory (of ours). */
static int ensure_dir(const char *dir, mode_t mode, bool private_check)
{
	struct stat st;

	if (mkdir(dir, mode) == 0) {
		/* the umask must not make it narrower than asked */
		if (chmod(dir, mode) < 0)
			return tfd_fail(NULL, 0, -errno, "chmod %s: %s", dir, strerror(errno));
	} else if (errno != EEXIST) {
		return tfd_fail(NULL, 0, -errno, "cannot create %s: %s", dir, strerror(errno));
	}
	if (lstat(dir, &st) < 0)
		return tfd_fail(NULL, 0, -errno, "%s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return tfd_fail(NULL, 0, -ENOTDIR, "%s is not a directory", dir);
	if (private_check && (st.st_uid != getuid() || (st.st_mode & 077)))
		return tfd_fail(NULL, 0, -EPERM,
				"%s is not a private directory of uid %u (owner %u, mode 0%o)", dir,
				getuid(), st.st_uid, st.st_mode & 07777);
	return 0;
}

TFD_EXPORT int tfd_runtime_dir(char *buf, size_t len)
{
	const char *env;
	bool shared_tmp = false;
	int n, r;

	if (!buf || !len)
		return -EINVAL;
	env = getenv("TENSORFD_RUNTIME_DIR");
	if (env && *env) {
		n = snprintf(buf, len, "%s", env);
	} else if ((env = getenv("XDG_RUNTIME_DIR")) && *env) {
		n = snprintf(buf, len, "%s/tensorfd", env);
	} else {
		/* /tmp is shared: the directory must be ours and private */
		n = snprintf(buf, len, "/tmp/tensorfd-%u", getuid());
		shared_tmp = true;
	}
	if (n < 0 || (size_t)n >= len)
		return tfd_fail(NULL, 0, -ENAMETOOLONG, "runtime directory path too long");
	r = ensure_dir(buf, 0700, shared_tmp);
	return r < 0 ? r : n;
}

/*
 * Topic names are relative paths of [A-Za-z0-9_.-] components separated by
 * single slashes, none of them "." or "..": they name files under the
 * runtime directory and must not escape it.
 */
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

	r = topic_check(topic);
	if (r < 0)
		return r;
	if (!buf)
		return -EINVAL;
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
 * Create the directories between the runtime directory and the socket,
 * with the runtime directory's mode: in a shared one, others must reach
 * the socket (the publisher's credential checks decide who subscribes).
 */
int topic_make_dirs(const char *path)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	mode_t mode = 0700;
	struct stat st;
	size_t base;
	char *p;
	int r;

	r = tfd_runtime_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	base = (size_t)r;
	if (stat(dir, &st) == 0)
		mode = st.st_mode & 01777;
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (p = tmp + base + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		r = ensure_dir(tmp, mode, false);
		if (r < 0)
			return r;
		*p = '/';
	}
	return 0;
}
