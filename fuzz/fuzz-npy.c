/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the .npy header reader of tensorfd-pub (tools/npy.c). The
 * input is a whole file, put in a memfd and opened by its /proc path the
 * way tensorfd-pub opens a file. What the reader accepts must be sound:
 * a known dtype, a shape within TFD_MAX_NDIM whose bytes fit the file,
 * and a layout tensorfd accepts.
 */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "../tools/npy.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	struct tfd_layout l;
	struct npy n;
	char path[64], err[256];
	uint64_t span_lo, span_hi;
	int got;

	if (fd < 0)
		fd = memfd_create("fuzz-npy", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(ftruncate(fd, 0) == 0);
	FUZZ_CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err[0] = '\0';
	if (npy_open(path, &n, &got, err, sizeof(err)) < 0) {
		FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
		return 0;
	}
	close(got);
	FUZZ_CHECK(n.ndim >= 0 && n.ndim <= TFD_MAX_NDIM);
	FUZZ_CHECK(n.data_offset + n.data_bytes <= size);
	npy_layout(&n, &l);
	FUZZ_CHECK(tfd_layout_validate(&l) == 0);
	FUZZ_CHECK(tfd_layout_span(&l, &span_lo, &span_hi) == 0);
	FUZZ_CHECK(span_hi - span_lo <= n.data_bytes || n.data_bytes == 0);
	return 0;
}
