/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the wire decoder, the first code to see a peer's bytes. The
 * input is one packet, checked and decoded the way the channel does it
 * (header, then the decoder for its type). Beyond "no crash, no read out of
 * bounds", a packet the decoder accepts must re-encode to exactly the bytes
 * that arrived: every field is either carried or checked, so a decoder that
 * drops or misreads a field shows up here.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "internal.h"
#include "wire.h"

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* An encoder written from the protocol description, independent of channel.c's. */
static size_t encode_msg(const struct wire_msg_info *m, uint8_t *out, size_t cap)
{
	struct wire_msg w;
	size_t len = sizeof(w);
	unsigned int i;

	memset(&w, 0, sizeof(w));
	w.seq = m->seq;
	w.timestamp = m->timestamp;
	w.n_tensors = (uint16_t)m->n_tensors;
	w.n_newbufs = (uint16_t)m->n_newbufs;
	w.user_len = (uint32_t)m->user_len;
	for (i = 0; i < m->n_newbufs; i++) {
		FUZZ_CHECK(len + sizeof(m->newbufs[i]) <= cap);
		memcpy(out + len, &m->newbufs[i], sizeof(m->newbufs[i]));
		len += sizeof(m->newbufs[i]);
		/* a GPU buffer's record follows it at once */
		if (m->newbufs[i].kind >= WIRE_BUF_CUDA_VMM) {
			FUZZ_CHECK(len + sizeof(m->cuda[i]) <= cap);
			memcpy(out + len, &m->cuda[i], sizeof(m->cuda[i]));
			len += sizeof(m->cuda[i]);
		}
	}
	for (i = 0; i < m->n_tensors; i++) {
		const struct wire_tensor_info *t = &m->tensors[i];
		const struct tfd_layout *l = &t->layout;
		size_t name_len = strlen(t->name), dims = (size_t)l->ndim * sizeof(int64_t);
		struct wire_tensor wt = {
			.buf_id = t->buf_id,
			.byte_offset = l->byte_offset,
			.code = l->dtype.code,
			.bits = l->dtype.bits,
			.lanes = l->dtype.lanes,
			.ndim = l->ndim,
			.device_type = l->device.type,
			.device_id = l->device.id,
			.name_len = (uint16_t)name_len,
			.flags = (uint16_t)t->flags,
		};

		FUZZ_CHECK(len + wire_tensor_size(l->ndim, name_len) <= cap);
		memcpy(out + len, &wt, sizeof(wt));
		len += sizeof(wt);
		memset(out + len, 0, pad8(name_len));
		memcpy(out + len, t->name, name_len);
		len += pad8(name_len);
		memcpy(out + len, l->shape, dims);
		len += dims;
		memcpy(out + len, l->strides, dims);
		len += dims;
	}
	FUZZ_CHECK(len + m->user_len <= cap);
	if (m->user_len)
		memcpy(out + len, m->user, m->user_len);
	len += m->user_len;
	wire_hdr_init(&w.h, WIRE_MSG, (uint32_t)len);
	memcpy(out, &w, sizeof(w));
	return len;
}

static void check_msg(const uint8_t *data, size_t size, const struct wire_msg_info *m)
{
	static uint8_t again[WIRE_MAX_PACKET];
	unsigned int i, j;
	uint64_t lo, hi;

	FUZZ_CHECK(m->n_tensors <= TFD_MAX_TENSORS);
	FUZZ_CHECK(m->n_newbufs <= m->n_tensors);
	FUZZ_CHECK(m->user_len <= TFD_MAX_USER_DATA);
	FUZZ_CHECK(m->user_len ? (const uint8_t *)m->user + m->user_len == data + size
			       : m->user == NULL);
	for (i = 0; i < m->n_newbufs; i++) {
		FUZZ_CHECK(m->newbufs[i].kind >= WIRE_BUF_MEMFD &&
			   m->newbufs[i].kind <= WIRE_BUF_CUDA_EXTMEM && !m->newbufs[i].flags);
		if (m->newbufs[i].kind >= WIRE_BUF_CUDA_VMM) {
			const struct wire_cudabuf *c = &m->cuda[i];

			FUZZ_CHECK(!c->pad && !(c->flags & ~WIRE_CUDA_FLAGS));
			FUZZ_CHECK(c->alloc_size >= m->newbufs[i].size &&
				   c->alloc_size <= (uint64_t)INT64_MAX);
		}
		FUZZ_CHECK(m->newbufs[i].size && m->newbufs[i].size <= (uint64_t)INT64_MAX);
		for (j = 0; j < i; j++)
			FUZZ_CHECK(m->newbufs[j].id != m->newbufs[i].id);
	}
	for (i = 0; i < m->n_tensors; i++) {
		const struct wire_tensor_info *t = &m->tensors[i];
		size_t n = strnlen(t->name, sizeof(t->name));

		FUZZ_CHECK(n > 0 && n < TFD_NAME_MAX);
		FUZZ_CHECK(!(t->flags & ~WIRE_TENSOR_FLAGS));
		FUZZ_CHECK(t->layout.ndim >= 0 && t->layout.ndim <= TFD_MAX_NDIM);
		FUZZ_CHECK(tfd_layout_span(&t->layout, &lo, &hi) == 0 && lo <= hi);
		for (j = 0; j < (unsigned int)t->layout.ndim; j++)
			FUZZ_CHECK(t->layout.shape[j] >= 0);
		for (j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(m->tensors[j].name, t->name) != 0);
	}
	FUZZ_CHECK(encode_msg(m, again, sizeof(again)) == size);
	FUZZ_CHECK(memcmp(again, data, size) == 0);
}

static void check_ids(const uint8_t *data, size_t size, const uint64_t *ids, uint32_t count)
{
	uint64_t id, sum = 0;
	uint32_t i;

	FUZZ_CHECK(count > 0 && count <= WIRE_MAX_IDS);
	FUZZ_CHECK((const uint8_t *)ids == data + sizeof(struct wire_ids));
	FUZZ_CHECK(sizeof(struct wire_ids) + (size_t)count * sizeof(id) == size);
	/* read them the way the channel does, unaligned-safe */
	for (i = 0; i < count; i++) {
		memcpy(&id, &ids[i], sizeof(id));
		sum += id;
	}
	(void)sum;
}

static void check_refuse(size_t size, int error, const char *reason, size_t cap)
{
	size_t i, n = strnlen(reason, cap);

	FUZZ_CHECK(n < cap);
	FUZZ_CHECK(n <= size - sizeof(struct wire_refuse));
	FUZZ_CHECK(error == EACCES || error == EPROTO || error == ENOBUFS);
	for (i = 0; i < n; i++)
		FUZZ_CHECK(reason[i] >= ' ' && reason[i] <= '~');
}

static void check_info_request(const uint8_t *data, size_t size,
			       const struct wire_info_request *w)
{
	FUZZ_CHECK(size == sizeof(*w) && w->flags == 0);
	FUZZ_CHECK(memcmp(w, data, size) == 0);
}

static void check_info(const uint8_t *data, size_t size, const struct wire_info *w,
		       const struct wire_info_sub *subs)
{
	static uint8_t again[WIRE_MAX_PACKET];
	size_t i, n = strnlen(w->comm, sizeof(w->comm));
	struct wire_info e = *w;

	FUZZ_CHECK(w->n_records <= w->n_subscribers && w->n_records <= WIRE_INFO_MAX_SUBS);
	FUZZ_CHECK(size == sizeof(*w) + (size_t)w->n_records * sizeof(*subs));
	FUZZ_CHECK(w->n_records ? (const uint8_t *)subs == data + sizeof(*w) : subs == NULL);
	FUZZ_CHECK(n < sizeof(w->comm));
	for (i = 0; i < n; i++)
		FUZZ_CHECK(w->comm[i] >= ' ' && w->comm[i] <= '~');
	FUZZ_CHECK(w->policy == TFD_DROP_OLDEST || w->policy == TFD_BLOCK);
	FUZZ_CHECK(w->pool_buffers_busy <= w->pool_buffers && w->pool_bytes_busy <= w->pool_bytes);
	/* every field is carried or checked: it encodes back to the same bytes */
	wire_hdr_init(&e.h, WIRE_INFO, (uint32_t)size);
	memcpy(again, &e, sizeof(e));
	if (w->n_records)
		memcpy(again + sizeof(e), subs, size - sizeof(e));
	FUZZ_CHECK(memcmp(again, data, size) == 0);
}

/* What a refusal may return: the decoder's own errors and the layout checks'. */
static void check_error(int r, const char *err, size_t errlen)
{
	FUZZ_CHECK(r == -EBADMSG || r == -EPROTO || r == -E2BIG || r == -EINVAL ||
		   r == -EOVERFLOW || r == -ERANGE);
	FUZZ_CHECK(strnlen(err, errlen) < errlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct wire_msg_info info;
	const struct wire_info_sub *subs;
	struct wire_info_request req;
	struct wire_hello hello;
	struct wire_info winfo;
	const uint64_t *ids;
	char err[256], reason[160];
	uint32_t count;
	int type, r, error;

	memset(err, 0, sizeof(err));
	type = wire_check_header(data, size, err, sizeof(err));
	if (type < 0) {
		check_error(type, err, sizeof(err));
		return 0;
	}
	FUZZ_CHECK(size >= sizeof(struct wire_hdr) && size <= WIRE_MAX_PACKET);
	switch (type) {
	case WIRE_HELLO:
		r = wire_decode_hello(data, size, &hello, err, sizeof(err));
		if (r == 0)
			FUZZ_CHECK(size == sizeof(hello) && hello.max_packet >= 4096);
		break;
	case WIRE_MSG:
		r = wire_decode_msg(data, size, &info, err, sizeof(err));
		if (r == 0)
			check_msg(data, size, &info);
		break;
	case WIRE_RELEASE:
	case WIRE_FORGET:
		r = wire_decode_ids(data, size, &ids, &count, err, sizeof(err));
		if (r == 0)
			check_ids(data, size, ids, count);
		break;
	case WIRE_REFUSE:
		r = wire_decode_refuse(data, size, &error, reason, sizeof(reason), err,
				       sizeof(err));
		if (r == 0)
			check_refuse(size, error, reason, sizeof(reason));
		break;
	case WIRE_INFO_REQUEST:
		r = wire_decode_info_request(data, size, &req, err, sizeof(err));
		if (r == 0)
			check_info_request(data, size, &req);
		break;
	case WIRE_INFO:
		r = wire_decode_info(data, size, &winfo, &subs, err, sizeof(err));
		if (r == 0)
			check_info(data, size, &winfo, subs);
		break;
	default:
		FUZZ_CHECK(!"wire_check_header returned an unknown type");
		return 0;
	}
	if (r < 0)
		check_error(r, err, sizeof(err));
	else
		FUZZ_CHECK(r == 0);
	return 0;
}
