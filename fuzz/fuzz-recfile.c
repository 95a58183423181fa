/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the record file reader of tensorfd-play (tools/recfile.c),
 * which reads files from anywhere. The input is a whole file, put in a
 * memfd; it is read the way tensorfd-play reads it, document by document.
 * What the reader accepts must be sound: names terminated and non-empty,
 * each tensor's byte range exactly its dtype times its shape (or, for a
 * strided one, exactly the span the library computes, from the range's
 * first byte), the ranges tiling the data section, the position moving
 * forward.
 *
 * The tools are not part of the library: their two source files are
 * compiled into this target.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "../tools/cliutil.c"
#include "../tools/recfile.c"

const char *prog = "fuzz-recfile";

static void check_msg(const struct rec_msg *m, uint64_t before, uint64_t pos)
{
	uint64_t sum = 0, nbytes, lo;
	struct tfd_layout l;
	unsigned int i;

	FUZZ_CHECK(m->n <= TFD_MAX_TENSORS);
	FUZZ_CHECK(m->topic[0] && strnlen(m->topic, sizeof(m->topic)) < sizeof(m->topic));
	FUZZ_CHECK(m->user_len <= TFD_MAX_USER_DATA);
	FUZZ_CHECK(m->data_pos > before && pos == m->data_pos + m->data_len);
	for (i = 0; i < m->n; i++) {
		const struct rec_tensor *t = &m->t[i];
		size_t n = strnlen(t->name, sizeof(t->name));

		FUZZ_CHECK(n > 0 && n < sizeof(t->name));
		FUZZ_CHECK(t->ndim >= 0 && t->ndim <= TFD_MAX_NDIM);
		rec_layout(t, &l);
		if (t->strided)
			FUZZ_CHECK(tfd_layout_span(&l, &lo, &nbytes) == 0 && lo == 0);
		else
			FUZZ_CHECK(tfd_layout_nbytes(&l, &nbytes) == 0);
		FUZZ_CHECK(t->end - t->begin == nbytes);
		FUZZ_CHECK(t->end <= m->data_len);
		sum += nbytes;
	}
	FUZZ_CHECK(sum == m->data_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rec_file_info info;
	static struct rec_msg m;
	static int fd = -1;
	uint64_t pos = 0, before;
	char err[256];
	int r, i;

	if (fd < 0)
		fd = memfd_create("fuzz-recfile", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(ftruncate(fd, 0) == 0);
	FUZZ_CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
	r = rec_read_start(fd, &pos, &info, err, sizeof(err));
	if (r < 0) {
		FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
		return 0;
	}
	FUZZ_CHECK(info.n_topics <= REC_MAX_TOPICS);
	FUZZ_CHECK(pos > 8 && pos <= size);
	for (i = 0; i < 1000; i++) {
		before = pos;
		r = rec_read_msg(fd, &pos, &m, err, sizeof(err));
		if (r <= 0) {
			FUZZ_CHECK(r == 0 || strnlen(err, sizeof(err)) < sizeof(err));
			break;
		}
		check_msg(&m, before, pos);
	}
	return 0;
}
