/* SPDX-License-Identifier: MIT */
/*
 * Decoding of packets from a peer. Everything here treats its input as
 * hostile: the header must fit, its length must be sane and equal to what
 * arrived, and every count, length and record must fit in what is left.
 * Layout-level checks (dtype, shape and strides overflow) are done here as
 * well, so a decoded message is structurally sound; whether its tensors fit
 * their buffers is the channel's check, as only it knows the buffers.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

#define BAD(...) tfd_fail(err, errlen, -EBADMSG, __VA_ARGS__)

void wire_hdr_init(struct wire_hdr *h, uint16_t type, uint32_t len)
{
	memset(h, 0, sizeof(*h));
	h->magic = WIRE_MAGIC;
	h->type = type;
	h->version = WIRE_VERSION;
	h->len = len;
}

size_t wire_tensor_size(int ndim, size_t name_len)
{
	return sizeof(struct wire_tensor) + ((name_len + 7) & ~(size_t)7) +
	       2 * (size_t)ndim * sizeof(int64_t);
}

int wire_check_header(const void *pkt, size_t len, char *err, size_t errlen)
{
	struct wire_hdr h;

	if (len < sizeof(h))
		return BAD("packet of %zu bytes is shorter than a header", len);
	memcpy(&h, pkt, sizeof(h));
	if (h.magic != WIRE_MAGIC)
		return tfd_fail(err, errlen, -EPROTO, "bad magic 0x%08x: not a tensorfd peer",
				h.magic);
	if (h.version != WIRE_VERSION)
		return tfd_fail(err, errlen, -EPROTO, "peer speaks protocol version %u, not %u",
				h.version, WIRE_VERSION);
	if (h.len > WIRE_MAX_PACKET || h.len < sizeof(h))
		return BAD("header claims an insane length of %u bytes", h.len);
	if (h.len != len)
		return BAD("header claims %u bytes but the packet has %zu", h.len, len);
	if (h.reserved)
		return BAD("reserved header field is not zero");
	switch (h.type) {
	case WIRE_HELLO:
	case WIRE_MSG:
	case WIRE_RELEASE:
	case WIRE_FORGET:
	case WIRE_REFUSE:
	case WIRE_INFO_REQUEST:
	case WIRE_INFO:
		return h.type;
	default:
		return BAD("unknown packet type %u", h.type);
	}
}

int wire_decode_hello(const void *pkt, size_t len, struct wire_hello *out, char *err,
		      size_t errlen)
{
	if (len != sizeof(*out))
		return BAD("hello of %zu bytes, expected %zu", len, sizeof(*out));
	memcpy(out, pkt, sizeof(*out));
	if (out->max_packet < 4096)
		return BAD("peer accepts packets of only %u bytes", out->max_packet);
	return 0;
}

int wire_decode_ids(const void *pkt, size_t len, const uint64_t **ids, uint32_t *count,
		    char *err, size_t errlen)
{
	struct wire_ids w;

	if (len < sizeof(w))
		return BAD("id list of %zu bytes is shorter than its header", len);
	memcpy(&w, pkt, sizeof(w));
	if (w.pad)
		return BAD("id list padding is not zero");
	if (w.count == 0 || w.count > WIRE_MAX_IDS)
		return BAD("id list claims %u ids", w.count);
	if (len != sizeof(w) + (size_t)w.count * sizeof(uint64_t))
		return BAD("id list claims %u ids in %zu bytes", w.count, len);
	*ids = (const uint64_t *)((const char *)pkt + sizeof(w));
	*count = w.count;
	return 0;
}

int wire_decode_refuse(const void *pkt, size_t len, int *error, char *reason, size_t reason_len,
		       char *err, size_t errlen)
{
	struct wire_refuse w;
	size_t i, n;

	if (len < sizeof(w))
		return BAD("refusal of %zu bytes is shorter than its header", len);
	memcpy(&w, pkt, sizeof(w));
	if (len != sizeof(w) + w.reason_len)
		return BAD("refusal claims %u bytes of reason in %zu", w.reason_len, len);
	/* only the refusals the protocol knows; anything else is a plain error */
	*error = w.error == EACCES || w.error == EPROTO || w.error == ENOBUFS ? w.error : EPROTO;
	n = w.reason_len < reason_len - 1 ? w.reason_len : reason_len - 1;
	for (i = 0; i < n; i++) {
		char c = ((const char *)pkt)[sizeof(w) + i];

		reason[i] = c >= ' ' && c <= '~' ? c : '?';
	}
	reason[n] = '\0';
	return 0;
}

static int decode_tensor(const char **p, const char *end, struct wire_tensor_info *t, char *err,
			 size_t errlen)
{
	struct wire_tensor w;
	size_t need, i;
	int r;

	if ((size_t)(end - *p) < sizeof(w))
		return BAD("tensor record truncated");
	memcpy(&w, *p, sizeof(w));
	if (w.ndim < 0 || w.ndim > TFD_MAX_NDIM)
		return tfd_fail(err, errlen, -E2BIG, "tensor with ndim %d (limit %d)", w.ndim,
				TFD_MAX_NDIM);
	if (w.name_len == 0 || w.name_len >= TFD_NAME_MAX)
		return BAD("tensor name of %u bytes", w.name_len);
	if (w.pad[0] || w.pad[1])
		return BAD("tensor record padding is not zero");
	if (w.flags & ~WIRE_TENSOR_FLAGS)
		return BAD("tensor record with unknown flags 0x%x", w.flags);
	need = wire_tensor_size(w.ndim, w.name_len);
	if ((size_t)(end - *p) < need)
		return BAD("tensor record of %zu bytes truncated", need);
	*p += sizeof(w);
	for (i = w.name_len; i < ((w.name_len + 7) & ~7u); i++)
		if ((*p)[i])
			return BAD("tensor name padding is not zero");
	memcpy(t->name, *p, w.name_len);
	t->name[w.name_len] = '\0';
	if (strlen(t->name) != w.name_len)
		return BAD("tensor name holds a NUL byte");
	*p += (w.name_len + 7) & ~7u;
	memset(&t->layout, 0, sizeof(t->layout));
	t->buf_id = w.buf_id;
	t->flags = w.flags;
	t->layout.dtype.code = w.code;
	t->layout.dtype.bits = w.bits;
	t->layout.dtype.lanes = w.lanes;
	t->layout.ndim = w.ndim;
	t->layout.device.type = w.device_type;
	t->layout.device.id = w.device_id;
	t->layout.byte_offset = w.byte_offset;
	for (i = 0; i < (size_t)w.ndim; i++, *p += sizeof(int64_t))
		memcpy(&t->layout.shape[i], *p, sizeof(int64_t));
	for (i = 0; i < (size_t)w.ndim; i++, *p += sizeof(int64_t))
		memcpy(&t->layout.strides[i], *p, sizeof(int64_t));
	r = tfd_layout_validate(&t->layout);
	if (r < 0)
		return tfd_fail(err, errlen, r, "tensor '%s': %s", t->name, tfd_last_error());
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

/* What can be checked of a GPU buffer record without a driver. */
static int decode_cudabuf(const struct wire_newbuf *nb, const struct wire_cudabuf *c, char *err,
			  size_t errlen)
{
	if (c->pad || (c->flags & ~WIRE_CUDA_FLAGS))
		return BAD("GPU buffer record with unknown flags 0x%x or padding", c->flags);
	if (c->alloc_size < nb->size || c->alloc_size > (uint64_t)INT64_MAX)
		return BAD("GPU buffer of %llu bytes in an allocation of %llu",
			   (unsigned long long)nb->size, (unsigned long long)c->alloc_size);
	if (all_zero(c->uuid, sizeof(c->uuid)))
		return BAD("GPU buffer without a device UUID");
	if ((nb->kind == WIRE_BUF_CUDA_IPC) == all_zero(c->mem_handle, sizeof(c->mem_handle)))
		return BAD("GPU buffer of kind %u %s an IPC memory handle", nb->kind,
			   nb->kind == WIRE_BUF_CUDA_IPC ? "without" : "with");
	if (!(c->flags & WIRE_CUDA_EVENT) != all_zero(c->event_handle, sizeof(c->event_handle)))
		return BAD("GPU buffer event handle does not match its flags");
	return 0;
}

int wire_decode_msg(const void *pkt, size_t len, struct wire_msg_info *out, char *err,
		    size_t errlen)
{
	const char *p = pkt, *end = p + len;
	struct wire_msg w;
	unsigned int i, j;
	int r;

	if (len < sizeof(w))
		return BAD("message of %zu bytes is shorter than its header", len);
	memcpy(&w, p, sizeof(w));
	p += sizeof(w);
	if (w.n_tensors > TFD_MAX_TENSORS)
		return tfd_fail(err, errlen, -E2BIG, "message claims %u tensors (limit %d)",
				w.n_tensors, TFD_MAX_TENSORS);
	if (w.n_newbufs > w.n_tensors)
		return BAD("message brings %u buffers for %u tensors", w.n_newbufs, w.n_tensors);
	if (w.user_len > TFD_MAX_USER_DATA)
		return tfd_fail(err, errlen, -E2BIG, "message claims %u bytes of user data",
				w.user_len);
	if ((size_t)(end - p) < (size_t)w.n_newbufs * sizeof(struct wire_newbuf) + w.user_len)
		return BAD("message truncated");
	out->seq = w.seq;
	out->timestamp = w.timestamp;
	out->n_tensors = w.n_tensors;
	out->n_newbufs = w.n_newbufs;
	out->n_fds = 0;
	for (i = 0; i < w.n_newbufs; i++) {
		if ((size_t)(end - p) < sizeof(struct wire_newbuf) + w.user_len)
			return BAD("message truncated");
		memcpy(&out->newbufs[i], p, sizeof(struct wire_newbuf));
		p += sizeof(struct wire_newbuf);
		if (out->newbufs[i].kind < WIRE_BUF_MEMFD ||
		    out->newbufs[i].kind > WIRE_BUF_CUDA_EXTMEM)
			return BAD("buffer of unknown kind %u", out->newbufs[i].kind);
		if (out->newbufs[i].flags)
			return BAD("buffer record flags 0x%x are not zero", out->newbufs[i].flags);
		if (wire_buf_has_fd(out->newbufs[i].kind))
			out->n_fds++;
		if (wire_buf_is_cuda(out->newbufs[i].kind)) {
			if ((size_t)(end - p) < sizeof(struct wire_cudabuf) + w.user_len)
				return BAD("GPU buffer record truncated");
			memcpy(&out->cuda[i], p, sizeof(struct wire_cudabuf));
			p += sizeof(struct wire_cudabuf);
			r = decode_cudabuf(&out->newbufs[i], &out->cuda[i], err, errlen);
			if (r < 0)
				return r;
		}
		if (out->newbufs[i].size == 0 || out->newbufs[i].size > (uint64_t)INT64_MAX)
			return BAD("buffer of %llu bytes",
				   (unsigned long long)out->newbufs[i].size);
		for (j = 0; j < i; j++)
			if (out->newbufs[j].id == out->newbufs[i].id)
				return BAD("buffer id %llu announced twice",
					   (unsigned long long)out->newbufs[i].id);
	}
	for (i = 0; i < w.n_tensors; i++) {
		r = decode_tensor(&p, end - w.user_len, &out->tensors[i], err, errlen);
		if (r < 0)
			return r;
		for (j = 0; j < i; j++)
			if (strcmp(out->tensors[j].name, out->tensors[i].name) == 0)
				return BAD("tensor name '%s' appears twice", out->tensors[i].name);
	}
	if ((size_t)(end - p) != w.user_len)
		return BAD("message has %zu bytes after its tensors, user data is %u",
			   (size_t)(end - p), w.user_len);
	out->user = w.user_len ? p : NULL;
	out->user_len = w.user_len;
	return 0;
}

int wire_decode_info_request(const void *pkt, size_t len, struct wire_info_request *out,
			      char *err, size_t errlen)
{
	if (len != sizeof(*out))
		return BAD("info request of %zu bytes, expected %zu", len, sizeof(*out));
	memcpy(out, pkt, sizeof(*out));
	if (out->flags)
		return BAD("info request with unknown flags 0x%x", out->flags);
	return 0;
}

int wire_decode_info(const void *pkt, size_t len, struct wire_info *out,
		     const struct wire_info_sub **subs, char *err, size_t errlen)
{
	struct wire_info w;
	size_t i, n;

	if (len < sizeof(w))
		return BAD("info of %zu bytes is shorter than its header", len);
	memcpy(&w, pkt, sizeof(w));
	if (w.pad)
		return BAD("info padding is not zero");
	if (w.policy != TFD_DROP_OLDEST && w.policy != TFD_BLOCK)
		return BAD("info names an unknown drop policy %u", w.policy);
	if (w.n_records > w.n_subscribers || w.n_records > WIRE_INFO_MAX_SUBS)
		return BAD("info claims %u records of %u subscribers", w.n_records, w.n_subscribers);
	if (len != sizeof(w) + (size_t)w.n_records * sizeof(struct wire_info_sub))
		return BAD("info claims %u records in %zu bytes", w.n_records, len);
	n = strnlen(w.comm, sizeof(w.comm));
	if (n == sizeof(w.comm))
		return BAD("info command name is not terminated");
	for (i = 0; i < sizeof(w.comm); i++)
		if (i < n ? w.comm[i] < ' ' || w.comm[i] > '~' : w.comm[i] != 0)
			return BAD("info command name holds a byte 0x%02x", (unsigned char)w.comm[i]);
	if (w.pool_buffers_busy > w.pool_buffers || w.pool_bytes_busy > w.pool_bytes)
		return BAD("info claims more of the pool in use than there is");
	*out = w;
	*subs = w.n_records ? (const struct wire_info_sub *)((const char *)pkt + sizeof(w)) : NULL;
	return 0;
}
