/* SPDX-License-Identifier: MIT */
/*
 * Buffers are sealed memfds: the owner writes through its mapping, nobody
 * can resize the memfd or map it writable again, and received fds are
 * checked before they are mapped.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "internal.h"
#include "tap.h"
#include "wire.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static void sealed(void)
{
	struct tfd_buffer *b;
	char path[64];
	void *p;
	int fd, seals;

	ok(tfd_buffer_new(1 << 20, TFD_BUFFER_POPULATE, &b) == 0, "1 MiB buffer, prefaulted");
	seals = fcntl(tfd_buffer_fd(b), F_GET_SEALS);
	ok(seals == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL),
	   "sealed shrink|grow|future_write|seal (0x%x)", seals);
	memset(tfd_buffer_data(b), 0xab, 1 << 20);
	ok(((unsigned char *)tfd_buffer_data(b))[12345] == 0xab && tfd_buffer_is_writable(b),
	   "the owner writes through its mapping");
	ok(ftruncate(tfd_buffer_fd(b), 1 << 10) < 0 && errno == EPERM, "cannot shrink");
	ok(ftruncate(tfd_buffer_fd(b), 1 << 21) < 0 && errno == EPERM, "cannot grow");
	ok(pwrite(tfd_buffer_fd(b), "x", 1, 0) < 0 && errno == EPERM, "cannot write(2)");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", tfd_buffer_fd(b));
	fd = open(path, O_RDWR | O_CLOEXEC);
	p = fd >= 0 ? mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
	ok(p == MAP_FAILED && errno == EPERM, "a reopened fd cannot be mapped writable");
	if (fd >= 0)
		close(fd);
	ok(fcntl(tfd_buffer_fd(b), F_ADD_SEALS, 0) < 0 && errno == EPERM, "seals are final");
	ok(tfd_buffer_ref(b) == b && tfd_buffer_unref(b) == NULL && tfd_buffer_size(b) == 1 << 20,
	   "ref and unref");
	tfd_buffer_unref(b);
}

static void arguments(void)
{
	struct tfd_buffer *b = NULL;

	ok(tfd_buffer_new(0, 0, &b) == -EINVAL && !b, "size 0 refused, output untouched");
	ok(tfd_buffer_new(4096, 1u << 7, &b) == -EINVAL, "unknown flags refused");
	ok(tfd_buffer_new(4096, 0, NULL) == -EINVAL, "NULL output refused");
	ok(tfd_buffer_new(1ull << 62, 0, &b) < 0 && *tfd_last_error(), "absurd size fails: %s",
	   tfd_last_error());
	ok(tfd_buffer_unref(NULL) == NULL && tfd_buffer_data(NULL) == NULL, "NULL is accepted");
}

/* buffer_import() is what a receiver runs on each fd from a peer. */
static void import(void)
{
	char err[256];
	struct tfd_buffer *src, *b;
	int fd;

	tfd_buffer_new(8192, 0, &src);
	memcpy(tfd_buffer_data(src), "hello", 6);
	ok(buffer_import(dup(tfd_buffer_fd(src)), 8192, WIRE_BUF_MEMFD, err, sizeof(err), &b) == 0,
	   "a sealed memfd is imported");
	ok(!tfd_buffer_is_writable(b) && memcmp(tfd_buffer_data(b), "hello", 6) == 0,
	   "read-only, same pages");
	tfd_buffer_unref(b);
	ok(buffer_import(dup(tfd_buffer_fd(src)), 8193, WIRE_BUF_MEMFD, err, sizeof(err), &b) == -EOVERFLOW,
	   "a memfd smaller than claimed: -EOVERFLOW (%s)", err);
	fd = memfd_create("unsealed", MFD_CLOEXEC);
	ftruncate(fd, 4096);
	ok(buffer_import(fd, 4096, WIRE_BUF_MEMFD, err, sizeof(err), &b) == -EPERM, "unsealed memfd: -EPERM (%s)",
	   err);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ok(buffer_import(fd, 4096, WIRE_BUF_MEMFD, err, sizeof(err), &b) == -EBADFD, "/dev/null: -EBADFD (%s)",
	   err);
	tfd_buffer_unref(src);
}

int main(void)
{
	int fds;

	tap_init(30);
	fds = count_fds();
	sealed();
	arguments();
	import();
	ok(count_fds() == fds, "no fd leaked");
	return done_testing();
}
