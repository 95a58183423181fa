/* SPDX-License-Identifier: MIT */
/*
 * Internal declarations shared by the library's source files: the object
 * structs, the error-reason helpers and the id map. Nothing here is
 * exported; see libtensorfd.sym for what is.
 */
#ifndef TFD_INTERNAL_H
#define TFD_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tensorfd.h"

#define TFD_EXPORT __attribute__((visibility("default")))
#define TFD_PRINTF(a, b) __attribute__((format(printf, a, b)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* --- errors and logging (log.c) --- */

/*
 * Record a reason for the failure about to be returned, in the calling
 * thread (tfd_last_error()) and, when errbuf is given, on the object.
 * Returns err so callers can write "return tfd_fail(...)".
 */
int tfd_fail(char *errbuf, size_t errlen, int err, const char *fmt, ...) TFD_PRINTF(4, 5);
/*
 * A failing public call leaves its own reason, never an older call's:
 * bad arguments and an allocation that failed say so, with the function.
 */
#define fail_args() tfd_fail(NULL, 0, -EINVAL, "bad arguments to %s()", __func__)
#define fail_nomem() tfd_fail(NULL, 0, -ENOMEM, "%s(): out of memory", __func__)
void tfd_log(int level, const char *fmt, ...) TFD_PRINTF(2, 3);

/* --- buffers (buffer.c) --- */

struct tfd_buffer {
	unsigned int refs;
	unsigned int loans;	/* sends not yet released by a receiver */
	unsigned int known;	/* channels whose peer has its fd (each holds a ref) */
	const void *pool;	/* the pool that owns it, if any */
	uint64_t id;		/* unique in this process, never reused */
	uint64_t size;
	int fd;
	void *map;
	bool writable;
	uint8_t kind;		/* enum tfd_buffer_kind */
	uint8_t source;		/* enum tfd_dmabuf_source, dma-bufs only */
	bool named;		/* DMA_BUF_SET_NAME done */
	struct cuda_buf *cuda;	/* GPU buffers and host registrations (cuda.c) */
};

/*
 * Moves whenever a buffer is left held by channels' tables only (an
 * orphan), so that a channel sweeps its tables for buffers to forget only
 * when one may be there, not on every send.
 */
extern atomic_ulong buffer_orphan_gen;	/* atomic: buffers of many threads */

/*
 * Check a received fd as the kind its record announced (WIRE_BUF_*) and map
 * it read-only; takes ownership of fd.
 */
int buffer_import(int fd, uint64_t size, unsigned int kind, char *errbuf, size_t errlen,
		  struct tfd_buffer **ret);
struct tfd_buffer *buffer_alloc(void);
void buffer_free(struct tfd_buffer *b);

/* --- dma-bufs (dmabuf.c) --- */

/* Check that fd is a dma-buf of at least size bytes, map it read-only; owns fd. */
int dmabuf_import(int fd, uint64_t size, char *errbuf, size_t errlen, struct tfd_buffer **ret);

/* --- messages (message.c) --- */

#define TENSOR_COPIED 0x1	/* = WIRE_TENSOR_COPIED */

struct tensor_entry {
	unsigned int flags;
	char name[TFD_NAME_MAX];
	struct tfd_layout layout;
	struct tfd_buffer *buf;
};

struct tfd_channel;

struct tfd_message {
	unsigned int refs;
	unsigned int n;
	unsigned int cap;
	struct tensor_entry *t;
	uint64_t seq;
	uint64_t timestamp;
	void *user;
	size_t user_len;
	bool received;		/* immutable: it came from a peer */
	bool published;		/* immutable: a publisher may still send it from a queue */
	/* received messages only: who to tell when the last reference dies */
	struct tfd_channel *rx_channel;
	uint64_t rx_id;
	struct tfd_message *rx_prev, *rx_next;
};

int message_new_received(unsigned int n, struct tfd_message **ret);
int message_check_mutable(const struct tfd_message *msg);
int message_check_tensor(const char *name, const struct tfd_buffer *buf,
			 const struct tfd_layout *layout);

/* --- channels (channel.c) --- */

/* Called by message.c when a received message dies. */
void channel_release(struct tfd_channel *ch, struct tfd_message *msg);
int channel_new(int sockfd, struct tfd_channel **ret);
int channel_send_seq(struct tfd_channel *ch, struct tfd_message *msg, uint64_t seq, uint64_t ts);
size_t channel_in_flight(const struct tfd_channel *ch);
uint64_t channel_oldest_in_flight(const struct tfd_channel *ch);
void channel_for_each_in_flight(const struct tfd_channel *ch,
				void (*fn)(struct tfd_buffer *b, void *ctx), void *ctx);
size_t channel_held(const struct tfd_channel *ch);
size_t channel_queued(const struct tfd_channel *ch);
int channel_sockfd(const struct tfd_channel *ch);
int channel_refuse(struct tfd_channel *ch, int error, const char *reason);
int channel_peer_refused(const struct tfd_channel *ch);
int unix_address(const char *path, struct sockaddr_un *sa, socklen_t *len);
int unix_connect(const char *path, uint64_t deadline);
int channel_connect(const char *path, uint64_t deadline, struct tfd_channel **ret);
/* This end only sends messages: the peer may only release them (a publisher's end). */
void channel_set_send_only(struct tfd_channel *ch);
ssize_t channel_recv_bare(struct tfd_channel *ch, void *buf, size_t cap, char *errbuf,
			  size_t errlen);
/* For tests: releases owed to the peer and not yet sent. */
size_t channel_releases_owed(const struct tfd_channel *ch);

/* --- id map (idmap.c): uint64 key to pointer, open addressing --- */

struct idmap_slot {
	uint64_t key;
	void *val;	/* NULL: empty */
};

struct idmap {
	struct idmap_slot *slots;
	size_t cap;	/* power of two, or 0 */
	size_t count;
};

void *idmap_get(const struct idmap *m, uint64_t key);
int idmap_put(struct idmap *m, uint64_t key, void *val);
int idmap_reserve(struct idmap *m, size_t extra);
void *idmap_del(struct idmap *m, uint64_t key);
void idmap_free(struct idmap *m);

#define idmap_foreach(m, s) \
	for ((s) = (m)->slots; (m)->slots && (s) < (m)->slots + (m)->cap; (s)++) \
		if ((s)->val)

/* --- topics (runtime.c) --- */
int topic_check(const char *topic);
const char *topic_name(const char *topic);
void topic_absent_hint(const char *topic, char *buf, size_t len);

/* How a walk to a topic's socket trusts the tree (topic_place_open). */
enum {
	TOPIC_CREATE = 1,	/* a publisher: our directories (or root's), made if missing */
	TOPIC_SAME_USER = 2,	/* a subscriber trusting only its own uid (and root) */
};

/* The checked directory of a topic's socket. */
struct topic_place {
	int dirfd;			/* O_PATH */
	char name[TFD_TOPIC_MAX + 8];	/* the socket's name in it */
	char path[PATH_MAX];		/* the socket's path, for messages */
	mode_t mode;			/* the runtime directory's */
	uid_t other;			/* the one other user owning directories, or -1 */
};

int topic_place_open(const char *topic, unsigned int how, char *err, size_t errlen,
		     struct topic_place *p);
const char *file_kind(mode_t mode);
int topic_socket_open(const char *topic, unsigned int how, char *err, size_t errlen,
		      struct sockaddr_un *via, socklen_t *vialen, bool *foreign);
int fd_address(int fd, const char *name, const char *path, struct sockaddr_un *sa,
	       socklen_t *len);
int fd_chmod(int fd, mode_t mode);
int listener_new_at(int dirfd, const char *name, const char *path, int mode,
		    struct tfd_listener **ret);

/* --- time --- */
/* size rounded up to whole pages */
static inline uint64_t page_round(uint64_t size)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	return (size + page - 1) / page * page;
}

uint64_t tfd_now_ns(void);
/* UINT64_MAX for a negative timeout (no deadline) */
uint64_t deadline_after(int timeout_ms);
/* ms a wait may take before deadline: cap_ms (-1: none) without one, 0 once passed */
int ms_left(uint64_t deadline, int cap_ms);

#endif
