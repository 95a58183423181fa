/* SPDX-License-Identifier: MIT */
/*
 * Forged GPU descriptor messages for the CUDA tests: one new buffer of a
 * given wire kind with its struct wire_cudabuf, one uint8 tensor of the
 * buffer's size on device CUDA, as a hostile peer would write them.
 */
#ifndef TFD_CUDA_FORGE_H
#define TFD_CUDA_FORGE_H

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "wire.h"

struct gpu_forge {
	struct wire_newbuf nb;
	struct wire_cudabuf cb;
	bool with_cb;		/* append the record (false: truncated) */
	int device_type;
};

static inline void gpu_forge_init(struct gpu_forge *f, uint32_t kind, uint64_t size)
{
	memset(f, 0, sizeof(*f));
	f->nb.id = 7;
	f->nb.size = size;
	f->nb.kind = kind;
	memcpy(f->cb.uuid, "tfd-fake-cuda-x", 16);
	f->cb.alloc_size = 2u << 20;
	if (kind == WIRE_BUF_CUDA_IPC)
		memset(f->cb.mem_handle, 0x5a, sizeof(f->cb.mem_handle));
	f->with_cb = true;
	f->device_type = TFD_DEVICE_CUDA;
}

/* Encode into pkt (at least 1024 bytes); returns the length. */
static inline size_t gpu_forge_encode(const struct gpu_forge *f, char *pkt)
{
	struct wire_msg *w = (struct wire_msg *)pkt;
	struct wire_tensor t;
	char *p = pkt + sizeof(*w);
	int64_t shape = (int64_t)f->nb.size, stride = 1;

	memset(w, 0, sizeof(*w));
	w->seq = 1;
	w->n_tensors = 1;
	w->n_newbufs = 1;
	memcpy(p, &f->nb, sizeof(f->nb));
	p += sizeof(f->nb);
	if (f->with_cb) {
		memcpy(p, &f->cb, sizeof(f->cb));
		p += sizeof(f->cb);
	}
	memset(&t, 0, sizeof(t));
	t.buf_id = f->nb.id;
	t.code = TFD_UINT;
	t.bits = 8;
	t.lanes = 1;
	t.ndim = 1;
	t.device_type = f->device_type;
	t.name_len = 1;
	memcpy(p, &t, sizeof(t));
	p += sizeof(t);
	memcpy(p, "x\0\0\0\0\0\0\0", 8);
	p += 8;
	memcpy(p, &shape, 8);
	p += 8;
	memcpy(p, &stride, 8);
	p += 8;
	wire_hdr_init(&w->h, WIRE_MSG, (uint32_t)(p - pkt));
	return (size_t)(p - pkt);
}

/* Send a packet with up to one fd on a raw socket. */
static inline int gpu_forge_send(int sock, const void *pkt, size_t len, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] __attribute__((aligned(8)));
	struct iovec iov = { .iov_base = (void *)pkt, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (fd >= 0) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* A raw socket that has said hello, and a channel on the other end. */
static inline int gpu_forge_duel(int *raw, struct tfd_channel **ch)
{
	struct wire_hello h;
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	r = channel_new(sv[1], ch);
	if (r < 0) {
		close(sv[0]);
		return r;
	}
	memset(&h, 0, sizeof(h));
	wire_hdr_init(&h.h, WIRE_HELLO, sizeof(h));
	h.max_packet = WIRE_MAX_PACKET;
	h.pid = (uint64_t)getpid();
	gpu_forge_send(sv[0], &h, sizeof(h), -1);
	*raw = sv[0];
	return 0;
}

#endif
