/* SPDX-License-Identifier: MIT */
/*
 * Round trips across fork()ed processes: tensors from 1 byte to 1 GiB, the
 * content written by the producer checked by the consumer, whose checksum
 * comes back and is checked against the producer's own; then a message of
 * several named tensors sharing one buffer, with user bytes.
 */
#include <string.h>
#include <sys/mman.h>

#include "tap.h"
#include "tensorfd.h"

static const uint64_t sizes[] = {
	1, 64, 4096, 1 << 20, 64 << 20, 1ull << 30,
};

static void fill(uint8_t *p, uint64_t n, uint64_t seed)
{
	uint64_t i, w;

	for (i = 0; i + 8 <= n; i += 8) {
		w = (i * 0x9e3779b97f4a7c15ull) ^ seed;
		memcpy(p + i, &w, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)(i ^ seed);
}

/* Checks the pattern and returns a checksum, or 0 with *bad set. */
static uint64_t check(const uint8_t *p, uint64_t n, uint64_t seed, int *bad)
{
	uint64_t i, w, sum = 0;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		if (w != ((i * 0x9e3779b97f4a7c15ull) ^ seed))
			(*bad)++;
		sum = sum * 31 + w;
	}
	for (; i < n; i++) {
		if (p[i] != (uint8_t)(i ^ seed))
			(*bad)++;
		sum = sum * 31 + p[i];
	}
	return sum;
}

static int consumer(struct tfd_channel *ch)
{
	struct tfd_message *m, *reply;
	const struct tfd_layout *l;
	uint64_t sum, n;
	size_t ulen;
	const void *u;
	int bad = 0, i;

	for (i = 0; i < (int)(sizeof(sizes) / sizeof(sizes[0])); i++) {
		if (tfd_channel_recv(ch, 30000, &m) < 0)
			return 10;
		l = tfd_message_layout(m, 0);
		if (!l || tfd_layout_nbytes(l, &n) < 0 || n != sizes[i])
			return 11;
		if (tfd_buffer_is_writable(tfd_message_buffer(m, 0)))
			return 12;
		sum = check(tfd_message_data(m, 0), n, tfd_message_seq(m), &bad);
		if (bad)
			return 13;
		tfd_message_unref(m);
		if (tfd_message_new(&reply) < 0 ||
		    tfd_message_set_user_data(reply, &sum, sizeof(sum)) < 0 ||
		    tfd_channel_send(ch, reply) < 0)
			return 14;
		tfd_message_unref(reply);
	}
	/* several named tensors in one buffer, plus user bytes */
	if (tfd_channel_recv(ch, 30000, &m) < 0)
		return 20;
	if (tfd_message_count(m) != 2 || tfd_message_find(m, "image") != 1 ||
	    strcmp(tfd_message_name(m, 0), "hidden_state") != 0)
		return 21;
	l = tfd_message_layout(m, 1);
	if (l->ndim != 3 || l->shape[0] != 2 || l->shape[2] != 4 || l->strides[0] != 12 ||
	    l->byte_offset != 128 || l->dtype.code != TFD_UINT)
		return 22;
	if (((const float *)tfd_message_data(m, 0))[31] != 31.0f ||
	    ((const uint8_t *)tfd_message_data(m, 1))[23] != 23)
		return 23;
	u = tfd_message_get_user_data(m, &ulen);
	if (ulen != 6 || memcmp(u, "step=7", 6) != 0)
		return 24;
	tfd_message_unref(m);
	return 0;
}

static void named_tensors(struct tfd_channel *ch)
{
	const int64_t hs[] = { 4, 8 }, is[] = { 2, 3, 4 };
	struct tfd_layout lh, li;
	struct tfd_message *m;
	struct tfd_buffer *b;
	float *f;
	uint8_t *img;
	int i;

	ok(tfd_buffer_new(4096, 0, &b) == 0, "buffer for two tensors");
	f = tfd_buffer_data(b);
	for (i = 0; i < 32; i++)
		f[i] = (float)i;
	img = (uint8_t *)tfd_buffer_data(b) + 128;
	for (i = 0; i < 24; i++)
		img[i] = (uint8_t)i;
	tfd_layout_init(&lh, (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 2, hs);
	tfd_layout_init(&li, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 3, is);
	li.byte_offset = 128;
	tfd_message_new(&m);
	ok(tfd_message_add_tensor(m, "hidden_state", b, &lh) == 0 &&
		   tfd_message_add_tensor(m, "image", b, &li) == 0,
	   "two named tensors in one buffer");
	ok(tfd_message_add_tensor(m, "image", b, &li) == -EEXIST, "duplicate name refused");
	tfd_message_set_user_data(m, "step=7", 6);
	ok(tfd_channel_send(ch, m) == 0, "message with two tensors and user data sent");
	tfd_message_unref(m);
	tfd_buffer_unref(b);
}

int main(void)
{
	struct tfd_channel *ch[2];
	struct tfd_channel_stats st;
	struct tfd_message *m, *reply;
	struct tfd_buffer *b;
	struct tfd_layout l;
	const uint64_t *sum;
	uint64_t expect;
	size_t ulen;
	int fds0, bad, i, r;
	pid_t pid;

	tap_init(240);
	fds0 = count_fds();
	if (tfd_channel_pair(&ch[0], &ch[1]) < 0)
		skip_all("no channel");
	pid = fork();
	if (pid == 0) {
		tfd_channel_unref(ch[0]);
		_exit(consumer(ch[1]));
	}
	tfd_channel_unref(ch[1]);
	for (i = 0; i < (int)(sizeof(sizes) / sizeof(sizes[0])); i++) {
		int64_t shape = (int64_t)sizes[i];

		r = tfd_buffer_new(sizes[i], 0, &b);
		if (!ok(r == 0, "buffer of %llu bytes", (unsigned long long)sizes[i])) {
			diag("%s", tfd_last_error());
			break;
		}
		tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &shape);
		tfd_message_new(&m);
		tfd_message_add_tensor(m, "data", b, &l);
		/* the sequence number is the seed: the next one is i + 1 */
		fill(tfd_buffer_data(b), sizes[i], (uint64_t)i + 1);
		r = tfd_channel_send(ch[0], m);
		ok(r == 0 && tfd_message_seq(m) == (uint64_t)i + 1, "sent %llu bytes",
		   (unsigned long long)sizes[i]);
		r = tfd_channel_recv(ch[0], 30000, &reply);
		if (!ok(r == 0, "checksum came back")) {
			diag("%s", tfd_channel_strerror(ch[0]));
			break;
		}
		sum = tfd_message_get_user_data(reply, &ulen);
		bad = 0;
		expect = check(tfd_buffer_data(b), sizes[i], (uint64_t)i + 1, &bad);
		ok(ulen == 8 && *sum == expect && !bad, "consumer read what the producer wrote (%llu B)",
		   (unsigned long long)sizes[i]);
		tfd_message_unref(reply);
		tfd_message_unref(m);
		tfd_buffer_unref(b);
	}
	named_tensors(ch[0]);
	ok(wait_child(pid) == 0, "consumer verified every tensor");
	tfd_channel_get_stats(ch[0], &st);
	ok(st.fds_sent == sizeof(sizes) / sizeof(sizes[0]) + 1, "one fd per buffer (%llu)",
	   (unsigned long long)st.fds_sent);
	tfd_channel_unref(ch[0]);
	ok(count_fds() == fds0, "no fd leaked");
	return done_testing();
}
