/* SPDX-License-Identifier: MIT */
/*
 * A fuzz target's corpus as a test. Built with the normal compiler around
 * one target's LLVMFuzzerTestOneInput: every file in the directories (or
 * the files) named on the command line is fed to it in a child process,
 * one TAP line per file, so a seed or an input that once crashed fails
 * with its name rather than taking the whole run down. With no arguments
 * it replays $top_srcdir/fuzz/corpus/FUZZ_CORPUS, which is how make check
 * runs it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "../tests/tap.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay_file(const char *path)
{
	struct stat st;
	uint8_t *data;
	ssize_t n;
	pid_t pid;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return ok(0, "%s: %s", path, strerror(errno));
	/* exactly the file's size, so a sanitizer build sees any read past it */
	data = malloc(st.st_size ? (size_t)st.st_size : 1);
	n = data ? read(fd, data, (size_t)st.st_size) : -1;
	close(fd);
	if (n != st.st_size) {
		free(data);
		return ok(0, "%s: short read", path);
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		LLVMFuzzerTestOneInput(data, (size_t)n);
		_exit(0);
	}
	free(data);
	if (pid < 0)
		return ok(0, "%s: fork: %s", path, strerror(errno));
	r = wait_child(pid);
	if (r > 128)
		return ok(0, "%s (%zd bytes): crashed with signal %d", path, n, r - 128);
	return ok(r == 0, "%s (%zd bytes)%s", path, n, r ? ": child failed" : "");
}

static int only_files(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

static void replay_path(const char *path)
{
	struct dirent **names;
	char file[PATH_MAX];
	struct stat st;
	int i, n;

	if (stat(path, &st) < 0) {
		ok(0, "%s: %s", path, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		replay_file(path);
		return;
	}
	n = scandir(path, &names, only_files, alphasort);
	if (n < 0) {
		ok(0, "%s: %s", path, strerror(errno));
		return;
	}
	if (n == 0)
		ok(0, "%s holds no inputs", path);
	for (i = 0; i < n; i++) {
		snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
		replay_file(file);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	char dflt[PATH_MAX];
	const char *srcdir = getenv("top_srcdir");
	int i, fds;

	tap_init(300);
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	fds = count_fds();
	if (argc < 2) {
		snprintf(dflt, sizeof(dflt), "%s/fuzz/corpus/%s", srcdir ? srcdir : ".",
			 FUZZ_CORPUS);
		replay_path(dflt);
	}
	for (i = 1; i < argc; i++)
		replay_path(argv[i]);
	ok(count_fds() == fds, "no fd left open");
	return done_testing();
}
