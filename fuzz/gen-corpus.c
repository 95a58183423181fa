/* SPDX-License-Identifier: MIT */
/*
 * Writes the fuzz targets' seed corpora: well-formed packets of every type
 * and a few broken ones (fuzz/corpus/wire), layouts in fuzz-layout.c's
 * encoding (fuzz/corpus/layout) and short conversations in fuzz-channel.c's
 * encoding (fuzz/corpus/channel). The output is deterministic; the files
 * are checked in, and "make fuzz-corpus" rewrites them.
 *
 * Usage: gen-corpus DIR (DIR/wire, DIR/layout and DIR/channel are created)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "wire.h"
#include "../tests/cuda-forge.h"

struct pkt {
	uint8_t b[WIRE_MAX_PACKET];
	size_t len;
};

struct tensor_spec {
	const char *name;
	uint64_t buf;
	uint16_t flags;
	struct tfd_layout l;
};

static const char *outdir;

static void put(struct pkt *p, const void *data, size_t n)
{
	if (p->len + n > sizeof(p->b)) {
		fprintf(stderr, "gen-corpus: packet too large\n");
		exit(1);
	}
	memcpy(p->b + p->len, data, n);
	p->len += n;
}

static void set_len(struct pkt *p, uint16_t type)
{
	struct wire_hdr h;

	wire_hdr_init(&h, type, (uint32_t)p->len);
	memcpy(p->b, &h, sizeof(h));
}

static void write_file(const char *sub, const char *name, const void *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, sub);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void hello(struct pkt *p)
{
	struct wire_hello h;

	memset(&h, 0, sizeof(h));
	h.max_packet = WIRE_MAX_PACKET;
	h.pid = 4242;
	p->len = 0;
	put(p, &h, sizeof(h));
	set_len(p, WIRE_HELLO);
}

static void ids(struct pkt *p, uint16_t type, const uint64_t *id, uint32_t n)
{
	struct wire_ids w = { .count = n };

	p->len = 0;
	put(p, &w, sizeof(w));
	put(p, id, n * sizeof(*id));
	set_len(p, type);
}

static void refuse(struct pkt *p, int32_t error, const char *reason)
{
	struct wire_refuse w = { .error = error, .reason_len = (uint32_t)strlen(reason) };

	p->len = 0;
	put(p, &w, sizeof(w));
	put(p, reason, strlen(reason));
	set_len(p, WIRE_REFUSE);
}

static void msg(struct pkt *p, uint64_t seq, const struct wire_newbuf *nb, unsigned int n_nb,
		const struct tensor_spec *t, unsigned int n_t, const char *user)
{
	static const uint8_t zeros[8];
	struct wire_msg w;
	unsigned int i;

	memset(&w, 0, sizeof(w));
	w.seq = seq;
	w.timestamp = 1000000000ull * seq;
	w.n_tensors = (uint16_t)n_t;
	w.n_newbufs = (uint16_t)n_nb;
	w.user_len = user ? (uint32_t)strlen(user) : 0;
	p->len = 0;
	put(p, &w, sizeof(w));
	put(p, nb, n_nb * sizeof(*nb));
	for (i = 0; i < n_t; i++) {
		size_t name_len = strlen(t[i].name);
		/* an out-of-range ndim is sent without dimensions: it is refused before them */
		size_t dims = t[i].l.ndim >= 0 && t[i].l.ndim <= TFD_MAX_NDIM ?
				      (size_t)t[i].l.ndim * sizeof(int64_t) : 0;
		struct wire_tensor wt = {
			.buf_id = t[i].buf,
			.byte_offset = t[i].l.byte_offset,
			.code = t[i].l.dtype.code,
			.bits = t[i].l.dtype.bits,
			.lanes = t[i].l.dtype.lanes,
			.ndim = t[i].l.ndim,
			.device_type = t[i].l.device.type,
			.device_id = t[i].l.device.id,
			.name_len = (uint16_t)name_len,
			.flags = t[i].flags,
		};

		put(p, &wt, sizeof(wt));
		put(p, t[i].name, name_len);
		put(p, zeros, ((name_len + 7) & ~(size_t)7) - name_len);
		put(p, t[i].l.shape, dims);
		put(p, t[i].l.strides, dims);
	}
	if (user)
		put(p, user, strlen(user));
	set_len(p, WIRE_MSG);
}

static struct tfd_layout layout(uint8_t code, uint8_t bits, int ndim, const int64_t *shape,
				uint64_t offset)
{
	struct tfd_layout l;

	if (tfd_layout_init(&l, (struct tfd_dtype){ code, bits, 1 }, ndim, shape) < 0) {
		fprintf(stderr, "gen-corpus: %s\n", tfd_last_error());
		exit(1);
	}
	l.byte_offset = offset;
	return l;
}

/* --- wire --- */

static const int64_t s35[] = { 3, 5 }, s4[] = { 4 }, s22[] = { 2, 2 };

static void info_request(struct pkt *p, uint32_t flags, uint32_t max_subscribers)
{
	struct wire_info_request w;

	memset(&w, 0, sizeof(w));
	w.flags = flags;
	w.max_subscribers = max_subscribers;
	p->len = 0;
	put(p, &w, sizeof(w));
	set_len(p, WIRE_INFO_REQUEST);
}

/* A publisher's answer with n subscriber records (of n_subs attached). */
static void info(struct pkt *p, uint32_t n, uint32_t n_subs, const char *comm)
{
	struct wire_info w;
	struct wire_info_sub s;
	uint32_t i;

	memset(&w, 0, sizeof(w));
	w.pid = 4242;
	w.flags = TFD_PUBLISHER_LATCHED;
	w.depth = 16;
	w.policy = TFD_DROP_OLDEST;
	w.n_subscribers = n_subs;
	w.n_records = n;
	memcpy(w.comm, comm, strnlen(comm, sizeof(w.comm)));
	w.uptime_ns = 12500000000ull;
	w.published = 375;
	w.dropped = 3;
	w.attached_total = n_subs + 1;
	w.pool_buffers = 4;
	w.pool_bytes = 4 * 921600;
	w.pool_buffers_busy = 1;
	w.pool_bytes_busy = 921600;
	p->len = 0;
	put(p, &w, sizeof(w));
	for (i = 0; i < n; i++) {
		memset(&s, 0, sizeof(s));
		s.pid = 5000 + (int32_t)i;
		s.uid = 1000;
		s.gid = 1000;
		s.in_flight = 1;
		s.delivered = 375;
		s.dropped = i;
		put(p, &s, sizeof(s));
	}
	set_len(p, WIRE_INFO);
}

static void one_tensor_msg(struct pkt *p, uint64_t seq)
{
	struct wire_newbuf nb = { .id = 1, .size = 4096, .kind = WIRE_BUF_MEMFD };
	struct tensor_spec t = { "x", 1, 0, layout(TFD_FLOAT, 32, 2, s35, 64) };

	msg(p, seq, &nb, 1, &t, 1, NULL);
}

/* GPU descriptors: each kind of GPU buffer, as tests/cuda-forge.h writes them. */
static void gen_wire_cuda(void)
{
	static const struct {
		const char *name;
		uint32_t kind;
		bool event;
	} k[] = {
		{ "msg-cuda-vmm", WIRE_BUF_CUDA_VMM, true },
		{ "msg-cuda-ipc", WIRE_BUF_CUDA_IPC, false },
		{ "msg-cuda-extmem", WIRE_BUF_CUDA_EXTMEM, true },
	};
	struct gpu_forge f;
	static char buf[1024];
	unsigned int i;

	for (i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		gpu_forge_init(&f, k[i].kind, 4096);
		if (k[i].event) {
			f.cb.flags = WIRE_CUDA_EVENT;
			memset(f.cb.event_handle, 0x33, sizeof(f.cb.event_handle));
		}
		write_file("wire", k[i].name, buf, gpu_forge_encode(&f, buf));
	}
}

static void gen_wire(void)
{
	static struct pkt p;
	struct wire_newbuf nb[2] = {
		{ .id = 1, .size = 4096, .kind = WIRE_BUF_MEMFD },
		{ .id = 2, .size = 65536, .kind = WIRE_BUF_MEMFD },
	};
	struct tensor_spec t[2] = {
		{ "hidden_state", 1, 0, layout(TFD_FLOAT, 32, 2, s35, 64) },
		{ "image", 1, 0, layout(TFD_FLOAT, 32, 2, s35, 64) },
	};
	struct tensor_spec t2[2] = {
		{ "reversed", 1, 0, layout(TFD_FLOAT, 32, 1, s4, 12) },
		{ "pooled", 2, WIRE_TENSOR_COPIED, layout(TFD_BFLOAT, 16, 2, s22, 0) },
	};
	struct tensor_spec scalar = { "loss", 7, 0, layout(TFD_FLOAT, 64, 0, NULL, 8) };
	const uint64_t rel[] = { 1, 2, 3 }, one = 1;

	hello(&p);
	write_file("wire", "hello", p.b, p.len);
	one_tensor_msg(&p, 1);
	write_file("wire", "msg-1-tensor", p.b, p.len);
	msg(&p, 2, nb, 1, t, 2, "step=7");
	write_file("wire", "msg-2-tensors-user-data", p.b, p.len);
	t2[0].l.strides[0] = -1;	/* walks backwards from byte 12 */
	t2[1].l.dtype.lanes = 2;
	t2[1].l.strides[0] = 1;		/* transposed */
	t2[1].l.strides[1] = 2;
	msg(&p, 3, nb, 2, t2, 2, NULL);
	write_file("wire", "msg-2-buffers-strided", p.b, p.len);
	nb[1].kind = WIRE_BUF_DMABUF;
	msg(&p, 3, nb, 2, t2, 2, NULL);
	write_file("wire", "msg-memfd-and-dmabuf", p.b, p.len);
	nb[1].kind = WIRE_BUF_MEMFD;
	msg(&p, 4, NULL, 0, &scalar, 1, NULL);
	write_file("wire", "msg-known-buffer-scalar", p.b, p.len);
	ids(&p, WIRE_RELEASE, rel, 3);
	write_file("wire", "release", p.b, p.len);
	ids(&p, WIRE_FORGET, &one, 1);
	write_file("wire", "forget", p.b, p.len);
	refuse(&p, EACCES, "uid 1000 is not allowed");
	write_file("wire", "refuse", p.b, p.len);

	/* broken ones */
	hello(&p);
	p.b[0] ^= 0x20;
	write_file("wire", "bad-magic", p.b, p.len);
	hello(&p);
	p.b[6] = 2;
	write_file("wire", "bad-version", p.b, p.len);
	one_tensor_msg(&p, 1);
	write_file("wire", "short-header", p.b, 10);
	write_file("wire", "length-mismatch", p.b, p.len - 8);
	p.len -= 8;
	set_len(&p, WIRE_MSG);
	write_file("wire", "msg-truncated-tensor", p.b, p.len);
	ids(&p, WIRE_RELEASE, rel, 0);
	write_file("wire", "release-no-ids", p.b, p.len);
	t[1].name = "hidden_state";
	msg(&p, 5, nb, 1, t, 2, NULL);
	write_file("wire", "msg-duplicate-name", p.b, p.len);
	t[0].l.ndim = 33;
	msg(&p, 6, nb, 1, t, 1, NULL);
	write_file("wire", "msg-ndim-33", p.b, p.len);
	refuse(&p, 9999, "no\x01such\xff" "errno");
	write_file("wire", "refuse-odd", p.b, p.len);
	gen_wire_cuda();
	info_request(&p, 0, 1600);
	write_file("wire", "info-request", p.b, p.len);
	info_request(&p, 0x80, 0);
	write_file("wire", "info-request-flags", p.b, p.len);
	info(&p, 2, 2, "camera");
	write_file("wire", "info-2-subscribers", p.b, p.len);
	info(&p, 0, 0, "");
	write_file("wire", "info-empty", p.b, p.len);
	info(&p, 2, 1, "camera");
	write_file("wire", "info-more-records-than-subscribers", p.b, p.len);
	info(&p, 1, 1, "tab\there");
	write_file("wire", "info-comm-control-byte", p.b, p.len);
	info(&p, 1, 3, "camera");
	write_file("wire", "info-truncated-record", p.b, p.len - 4);
}

/* --- layout, in fuzz-layout.c's encoding --- */

struct lhead {
	uint8_t code, bits;
	uint16_t lanes;
	int8_t ndim;
	uint8_t device;
	uint16_t unused;
	uint64_t byte_offset;
};

_Static_assert(sizeof(struct lhead) == 16, "fuzz-layout header");

struct ldim {
	uint8_t ctl;
	int64_t shape, stride;
};

static void gen_layout(const char *name, uint8_t code, uint8_t bits, uint16_t lanes, int8_t ndim,
		       uint64_t offset, const struct ldim *d, int nd)
{
	static struct pkt p;
	struct lhead h = { code, bits, lanes, ndim, TFD_DEVICE_CPU, 0, offset };
	int8_t b;
	int i;

	p.len = 0;
	put(&p, &h, sizeof(h));
	for (i = 0; i < nd; i++) {
		put(&p, &d[i].ctl, 1);
		if (d[i].ctl & 1) {
			b = (int8_t)d[i].shape;
			put(&p, &b, 1);
		} else {
			put(&p, &d[i].shape, 8);
		}
		if (d[i].ctl & 4)
			continue;
		if (d[i].ctl & 2) {
			b = (int8_t)d[i].stride;
			put(&p, &b, 1);
		} else {
			put(&p, &d[i].stride, 8);
		}
	}
	write_file("layout", name, p.b, p.len);
}

static void gen_layouts(void)
{
	const struct ldim c35[] = { { 5, 3, 0 }, { 5, 5, 0 } };
	const struct ldim t234[] = { { 3, 2, 1 }, { 3, 3, 2 }, { 3, 4, 6 } };
	const struct ldim rev[] = { { 3, 4, -1 } };
	const struct ldim bcast[] = { { 0, 1000, 0 }, { 5, 3, 0 } };
	const struct ldim empty[] = { { 5, 0, 0 }, { 5, 7, 0 } };
	const struct ldim big[] = { { 4, INT64_MAX, 0 }, { 5, 2, 0 } };
	const struct ldim neg[] = { { 3, -2, 1 } };
	const struct ldim wide[] = { { 0, 1 << 20, 1 << 20 }, { 0, 1 << 20, 1 } };
	struct ldim many[32];
	int i;

	gen_layout("f32-3x5", TFD_FLOAT, 32, 1, 2, 0, c35, 2);
	gen_layout("u8-scalar", TFD_UINT, 8, 1, 0, 100, NULL, 0);
	gen_layout("f16-transposed", TFD_FLOAT, 16, 1, 3, 0, t234, 3);
	gen_layout("f32-reversed", TFD_FLOAT, 32, 1, 1, 12, rev, 1);
	gen_layout("i64-broadcast", TFD_INT, 64, 1, 2, 0, bcast, 2);
	gen_layout("f32-empty", TFD_FLOAT, 32, 1, 2, 4096, empty, 2);
	gen_layout("bool", TFD_BOOL, 8, 1, 2, 0, c35, 2);
	gen_layout("c64", TFD_COMPLEX, 64, 1, 2, 8, c35, 2);
	gen_layout("bf16x4", TFD_BFLOAT, 16, 4, 1, 0, rev, 1);
	gen_layout("overflow-count", TFD_FLOAT, 32, 1, 2, 0, big, 2);
	gen_layout("overflow-bytes", TFD_FLOAT, 64, 1, 2, 0, wide, 2);
	gen_layout("ndim-33", TFD_FLOAT, 32, 1, 33, 0, c35, 2);
	gen_layout("ndim-negative", TFD_FLOAT, 32, 1, -1, 0, NULL, 0);
	gen_layout("bad-code", 3, 32, 1, 2, 0, c35, 2);
	gen_layout("bits-not-bytes", TFD_INT, 4, 1, 2, 0, c35, 2);
	gen_layout("offset-too-large", TFD_FLOAT, 32, 1, 1, (uint64_t)INT64_MAX + 1, rev, 1);
	gen_layout("negative-extent", TFD_FLOAT, 32, 1, 1, 0, neg, 1);
	for (i = 0; i < 32; i++)
		many[i] = (struct ldim){ 5, 2, 0 };
	gen_layout("f32-32-dims", TFD_FLOAT, 32, 1, 32, 0, many, 32);
}

/* --- channel, in fuzz-channel.c's encoding --- */

enum {
	ATTACH_SEALED = 1 << 0,
	ATTACH_UNSEALED = 1 << 1,
	ATTACH_DEVNULL = 1 << 2,
	FIX_HEADER = 1 << 3,
	DISPATCH = 1 << 4,
	RELEASE = 1 << 5,
	SEND_FIRST = 1 << 6,
	ATTACH_SEALED_AGAIN = 1 << 7,
};

static struct pkt conv;

static void conv_start(uint8_t mode)
{
	conv.len = 0;
	put(&conv, &mode, 1);
}

static void conv_add(uint8_t flags, const struct pkt *p)
{
	uint16_t len = (uint16_t)p->len;

	put(&conv, &flags, 1);
	put(&conv, &len, 2);
	put(&conv, p->b, p->len);
}

static void conv_hello(void)
{
	static struct pkt p;

	hello(&p);
	conv_add(0, &p);
}

static void gen_channel(void)
{
	static struct pkt p;
	struct wire_newbuf nb[2] = {
		{ .id = 1, .size = 4096, .kind = WIRE_BUF_MEMFD },
		{ .id = 2, .size = 4096, .kind = WIRE_BUF_MEMFD },
	};
	struct tensor_spec t[2] = {
		{ "a", 1, 0, layout(TFD_FLOAT, 32, 2, s35, 64) },
		{ "b", 2, 0, layout(TFD_FLOAT, 32, 1, s4, 0) },
	};
	const uint64_t one = 1;
	int mode;

	for (mode = 0; mode < 2; mode++) {
		conv_start((uint8_t)mode);
		conv_hello();
		one_tensor_msg(&p, 1);
		conv_add(ATTACH_SEALED, &p);
		msg(&p, 2, NULL, 0, t, 1, "again");
		conv_add(0, &p);
		write_file("channel", mode ? "poll-two-messages" : "uring-two-messages", conv.b,
			   conv.len);
	}

	conv_start(2 | 1);
	conv_hello();
	msg(&p, 1, nb, 2, t, 2, NULL);
	conv_add(ATTACH_SEALED | ATTACH_SEALED_AGAIN | DISPATCH, &p);
	msg(&p, 2, NULL, 0, t, 2, NULL);
	conv_add(DISPATCH, &p);
	ids(&p, WIRE_FORGET, &one, 1);
	conv_add(RELEASE, &p);
	msg(&p, 3, NULL, 0, t, 1, NULL);
	conv_add(0, &p);
	write_file("channel", "kept-forget-then-name", conv.b, conv.len);

	conv_start(0);
	conv_hello();
	ids(&p, WIRE_RELEASE, &one, 1);
	conv_add(SEND_FIRST, &p);
	ids(&p, WIRE_RELEASE, &one, 1);
	conv_add(SEND_FIRST, &p);
	write_file("channel", "release-ours", conv.b, conv.len);

	conv_start(1);
	conv_hello();
	msg(&p, 1, nb, 2, t, 2, NULL);
	conv_add(ATTACH_SEALED, &p);
	write_file("channel", "fewer-fds-than-buffers", conv.b, conv.len);

	conv_start(1);
	one_tensor_msg(&p, 1);
	conv_add(ATTACH_SEALED, &p);
	write_file("channel", "no-hello", conv.b, conv.len);

	conv_start(0);
	conv_hello();
	one_tensor_msg(&p, 1);
	conv_add(ATTACH_UNSEALED, &p);
	write_file("channel", "unsealed-memfd", conv.b, conv.len);

	conv_start(1);
	conv_hello();
	one_tensor_msg(&p, 1);
	conv_add(ATTACH_DEVNULL, &p);
	write_file("channel", "not-a-memfd", conv.b, conv.len);

	conv_start(0);
	conv_hello();
	nb[0].size = 65536 + 4096;
	msg(&p, 1, nb, 1, t, 1, NULL);
	nb[0].size = 4096;
	conv_add(ATTACH_SEALED, &p);
	write_file("channel", "buffer-larger-than-memfd", conv.b, conv.len);

	conv_start(1);
	conv_hello();
	one_tensor_msg(&p, 1);
	conv_add(ATTACH_SEALED | ATTACH_UNSEALED | ATTACH_DEVNULL, &p);
	write_file("channel", "three-fds", conv.b, conv.len);

	conv_start(0);
	conv_hello();
	refuse(&p, EACCES, "not you");
	conv_add(0, &p);
	write_file("channel", "refused", conv.b, conv.len);

	conv_start(1);
	conv_hello();
	p.len = 0;
	conv_add(0, &p);
	write_file("channel", "empty-packet", conv.b, conv.len);

	conv_start(0);
	conv_hello();
	one_tensor_msg(&p, 1);
	p.b[0] = 0;	/* broken magic, mended by FIX_HEADER */
	conv_add(ATTACH_SEALED | FIX_HEADER, &p);
	write_file("channel", "fixed-header", conv.b, conv.len);

	/* a buffer over the 64 GiB a peer may have mapped */
	conv_start(0);
	conv_hello();
	nb[0].size = 65ull << 30;
	msg(&p, 1, nb, 1, t, 1, NULL);
	nb[0].size = 4096;
	conv_add(ATTACH_SEALED, &p);
	write_file("channel", "bytes-over-limit", conv.b, conv.len);

	/* a publisher's end (mode bit 2) refuses a message and a forget */
	conv_start(4);
	conv_hello();
	one_tensor_msg(&p, 1);
	conv_add(ATTACH_SEALED, &p);
	write_file("channel", "send-only-msg", conv.b, conv.len);

	conv_start(4 | 1);
	conv_hello();
	ids(&p, WIRE_FORGET, &one, 1);
	conv_add(DISPATCH, &p);
	write_file("channel", "send-only-forget", conv.b, conv.len);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) < 0 && errno != EEXIST) {
		perror(outdir);
		return 1;
	}
	gen_wire();
	gen_layouts();
	gen_channel();
	return 0;
}
