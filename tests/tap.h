/* SPDX-License-Identifier: MIT */
/*
 * A tiny TAP producer for the test programs, plus the helpers every test
 * needs: an fd count, a watchdog, and fork-and-wait.
 */
#ifndef TFD_TAP_H
#define TFD_TAP_H

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int tap_count;
static int tap_failed;

static inline void tap_init(unsigned int timeout_s)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* a hung test dies instead of stalling the suite */
	alarm(timeout_s);
}

__attribute__((format(printf, 2, 3))) static inline int ok(int cond, const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	printf("%s %d - ", cond ? "ok" : "not ok", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		tap_failed++;
	return cond;
}

__attribute__((format(printf, 1, 2))) static inline void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

__attribute__((format(printf, 1, 2))) static inline void skip(const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	printf("ok %d # SKIP ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

__attribute__((noreturn)) static inline void skip_all(const char *reason)
{
	printf("1..0 # SKIP %s\n", reason);
	exit(0);
}

static inline int done_testing(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

/* Open fds of this process, not counting the one used to count them. */
static inline int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;
}

/* True when the test runs under valgrind, which maps memory of its own. */
static inline int under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "vgpreload");
}

/*
 * Mappings of this process: every line of /proc/self/maps. Under valgrind
 * or ASan, whose own mappings come and go, only the kinds the library makes
 * itself: buffers (memfd, dma-buf) and io_uring rings.
 */
static inline int count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
#ifdef __SANITIZE_ADDRESS__
	int only_ours = 1, n = 0;
#else
	int only_ours = under_valgrind(), n = 0;
#endif
	char line[512];

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!only_ours || strstr(line, "memfd:") || strstr(line, "dmabuf") ||
		    strstr(line, "io_uring"))
			n++;
		/* a path longer than the buffer: skip the rest of its line */
		while (!strchr(line, '\n') && fgets(line, sizeof(line), f))
			;
	}
	fclose(f);
	return n;
}

static inline uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

/* Remove a test's temporary directory tree (a runtime directory, say). */
static inline void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh runtime directory for topics, so tests never meet each other. */
static inline void tap_runtime_dir(char *dir_template)
{
	if (!mkdtemp(dir_template))
		skip_all("cannot make a runtime directory in /tmp");
	setenv("TENSORFD_RUNTIME_DIR", dir_template, 1);
}

/* Exit status of a child, or 128 + signal. */
static inline int wait_child(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

#endif
