/* SPDX-License-Identifier: MIT */
/*
 * The wire format. One SOCK_SEQPACKET packet is one protocol message:
 * a fixed header, then a type-specific body. Integers are in the host's
 * byte order (both ends share a machine); every struct has explicit
 * padding and a checked size. docs/design.md describes the protocol.
 */
#ifndef TFD_WIRE_H
#define TFD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "tensorfd.h"

#define WIRE_MAGIC	0x31444654u	/* "TFD1" in memory order */
#define WIRE_VERSION	1
#define WIRE_MAX_PACKET	(64 * 1024)

enum wire_type {
	WIRE_HELLO = 1,		/* first packet each way */
	WIRE_MSG = 2,		/* tensors; may carry new buffer fds */
	WIRE_RELEASE = 3,	/* receiver -> sender: these messages are done */
	WIRE_FORGET = 4,	/* sender -> receiver: these buffers will not be named again */
	WIRE_REFUSE = 5,	/* either way, then close: why the peer is not served */
	WIRE_INFO_REQUEST = 6,	/* introspector -> publisher, instead of a hello */
	WIRE_INFO = 7,		/* publisher -> introspector, then close: the topic's state */
};

struct wire_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t version;
	uint32_t len;		/* whole packet, header included */
	uint32_t reserved;	/* zero */
};

struct wire_hello {
	struct wire_hdr h;
	uint32_t max_packet;
	uint32_t flags;		/* zero */
	uint64_t pid;
};

struct wire_msg {
	struct wire_hdr h;
	uint64_t seq;
	uint64_t timestamp;
	uint16_t n_tensors;
	uint16_t n_newbufs;	/* = number of fds attached, in order */
	uint32_t user_len;
	/* then n_newbufs struct wire_newbuf, n_tensors struct wire_tensor
	 * (each followed by its name padded to 8 and shape[ndim], strides[ndim]),
	 * then user_len bytes */
};

struct wire_newbuf {
	uint64_t id;
	uint64_t size;
	uint32_t kind;		/* WIRE_BUF_MEMFD or WIRE_BUF_DMABUF */
	uint32_t flags;		/* zero */
};

#define WIRE_BUF_MEMFD 1
#define WIRE_BUF_DMABUF 2	/* a dma-buf: the receiver checks it as one, not as a memfd */
/*
 * GPU buffers (src/cuda.c). Each such wire_newbuf is followed at once by a
 * struct wire_cudabuf. CUDA_VMM and CUDA_EXTMEM bring an fd like a memfd;
 * CUDA_IPC brings none (its handle is in the record), so the fds attached
 * to a message are those of its other new buffers, in order.
 */
#define WIRE_BUF_CUDA_VMM 3	/* cuMemCreate memory, POSIX fd: cuMemImportFromShareableHandle */
#define WIRE_BUF_CUDA_IPC 4	/* cuIpcGetMemHandle of an allocation base: cuIpcOpenMemHandle */
#define WIRE_BUF_CUDA_EXTMEM 5	/* an OPAQUE_FD for cuImportExternalMemory */

struct wire_cudabuf {
	uint8_t uuid[16];	/* the device the memory lives on (cuDeviceGetUuid) */
	uint64_t alloc_size;	/* bytes of the whole allocation the receiver maps, >= size */
	uint32_t flags;		/* WIRE_CUDA_* */
	uint32_t pad;		/* zero */
	uint8_t mem_handle[64];	/* CUDA_IPC: CUipcMemHandle; otherwise zero */
	uint8_t event_handle[64];	/* WIRE_CUDA_EVENT: CUipcEventHandle; otherwise zero */
};

#define WIRE_CUDA_EVENT 0x1	/* the buffer comes with an interprocess event to wait on */
#define WIRE_CUDA_FLAGS WIRE_CUDA_EVENT

static inline int wire_buf_is_cuda(uint32_t kind)
{
	return kind >= WIRE_BUF_CUDA_VMM && kind <= WIRE_BUF_CUDA_EXTMEM;
}

static inline int wire_buf_has_fd(uint32_t kind)
{
	return kind != WIRE_BUF_CUDA_IPC;
}

struct wire_tensor {
	uint64_t buf_id;
	uint64_t byte_offset;
	uint8_t code;
	uint8_t bits;
	uint16_t lanes;
	int32_t ndim;
	int32_t device_type;
	int32_t device_id;
	uint16_t name_len;
	uint16_t flags;		/* WIRE_TENSOR_* */
	uint16_t pad[2];
};

#define WIRE_TENSOR_COPIED 0x1	/* copied into the sender's pool: not the producer's memory */
#define WIRE_TENSOR_FLAGS WIRE_TENSOR_COPIED

struct wire_ids {
	struct wire_hdr h;
	uint32_t count;
	uint32_t pad;
	/* then count uint64_t ids */
};

struct wire_refuse {
	struct wire_hdr h;
	int32_t error;		/* positive errno: EACCES */
	uint32_t reason_len;
	/* then reason_len bytes of text, no NUL */
};

/*
 * Introspection. A client that only wants to look at a topic connects and
 * sends WIRE_INFO_REQUEST as its first packet; the publisher, which sees
 * that packet before it takes the connection for a subscriber, answers
 * with its hello and one WIRE_INFO (or a WIRE_REFUSE) and closes. The
 * answer is one packet, so it is bounded by WIRE_MAX_PACKET: at most
 * WIRE_INFO_MAX_SUBS subscriber records, n_subscribers says how many exist.
 */
struct wire_info_request {
	struct wire_hdr h;
	uint32_t flags;			/* zero */
	uint32_t max_subscribers;	/* records the asker wants, 0: none */
};

struct wire_info {
	struct wire_hdr h;
	uint64_t pid;			/* the publisher's own view */
	uint32_t flags;			/* TFD_PUBLISHER_* */
	uint32_t depth;
	uint32_t policy;		/* enum tfd_drop_policy */
	uint32_t n_subscribers;		/* attached now */
	uint32_t n_records;		/* struct wire_info_sub that follow */
	uint32_t pad;			/* zero */
	char comm[16];			/* printable, NUL-terminated, zero-padded */
	uint64_t uptime_ns;		/* since the publisher was made */
	uint64_t published;
	uint64_t copied_tensors;
	uint64_t dropped;
	uint64_t attached_total;
	uint64_t refused;
	uint64_t pool_buffers;
	uint64_t pool_bytes;
	uint64_t pool_buffers_busy;
	uint64_t pool_bytes_busy;
	/* then n_records struct wire_info_sub */
};

struct wire_info_sub {
	int32_t pid;
	uint32_t uid;
	uint32_t gid;
	uint32_t queued;
	uint64_t in_flight;
	uint64_t delivered;
	uint64_t dropped;
};

_Static_assert(sizeof(struct wire_info_request) == 24, "wire_info_request");
_Static_assert(sizeof(struct wire_info) == 144, "wire_info");
_Static_assert(sizeof(struct wire_info_sub) == 40, "wire_info_sub");

#define WIRE_INFO_MAX_SUBS ((WIRE_MAX_PACKET - sizeof(struct wire_info)) / sizeof(struct wire_info_sub))

_Static_assert(sizeof(struct wire_hdr) == 16, "wire_hdr");
_Static_assert(sizeof(struct wire_refuse) == 24, "wire_refuse");
_Static_assert(sizeof(struct wire_hello) == 32, "wire_hello");
_Static_assert(sizeof(struct wire_msg) == 40, "wire_msg");
_Static_assert(sizeof(struct wire_newbuf) == 24, "wire_newbuf");
_Static_assert(sizeof(struct wire_tensor) == 40, "wire_tensor");
_Static_assert(sizeof(struct wire_ids) == 24, "wire_ids");
_Static_assert(sizeof(struct wire_cudabuf) == 160, "wire_cudabuf");

#define WIRE_MAX_IDS ((WIRE_MAX_PACKET - sizeof(struct wire_ids)) / sizeof(uint64_t))

/* A decoded tensor record. */
struct wire_tensor_info {
	uint64_t buf_id;
	unsigned int flags;
	char name[TFD_NAME_MAX];
	struct tfd_layout layout;
};

struct wire_msg_info {
	uint64_t seq;
	uint64_t timestamp;
	unsigned int n_tensors;
	unsigned int n_newbufs;
	struct wire_newbuf newbufs[TFD_MAX_TENSORS];
	struct wire_cudabuf cuda[TFD_MAX_TENSORS];	/* for GPU kinds of newbufs[i] */
	unsigned int n_fds;	/* newbufs that bring an fd */
	struct wire_tensor_info tensors[TFD_MAX_TENSORS];
	const void *user;
	size_t user_len;
};

/* Header checks; returns the packet type or a negative errno. */
int wire_check_header(const void *pkt, size_t len, char *err, size_t errlen);
int wire_decode_hello(const void *pkt, size_t len, struct wire_hello *out, char *err,
		      size_t errlen);
int wire_decode_msg(const void *pkt, size_t len, struct wire_msg_info *out, char *err,
		    size_t errlen);
int wire_decode_refuse(const void *pkt, size_t len, int *error, char *reason, size_t reason_len,
		       char *err, size_t errlen);
int wire_decode_ids(const void *pkt, size_t len, const uint64_t **ids, uint32_t *count,
		    char *err, size_t errlen);

int wire_decode_info_request(const void *pkt, size_t len, struct wire_info_request *out,
			      char *err, size_t errlen);
/* The records stay in pkt: *subs points at n_records of them, maybe unaligned. */
int wire_decode_info(const void *pkt, size_t len, struct wire_info *out,
		     const struct wire_info_sub **subs, char *err, size_t errlen);

void wire_hdr_init(struct wire_hdr *h, uint16_t type, uint32_t len);
size_t wire_tensor_size(int ndim, size_t name_len);

#endif
