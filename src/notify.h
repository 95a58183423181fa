/* SPDX-License-Identifier: MIT */
/*
 * The notification channel: how a channel learns that a packet arrived and
 * gets it, with its fds. One interface, two backends: io_uring (a RECVMSG
 * kept posted on a ring, the default) and plain poll(2)+recvmsg(2), used
 * when io_uring is unavailable or TENSORFD_NOTIFY=poll. A faster backend
 * (a shared-memory ring with futex waits, say) slots in here without
 * touching the public API.
 */
#ifndef TFD_NOTIFY_H
#define TFD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tensorfd.h"
#include "wire.h"

#define NOTIFY_MAX_FDS TFD_MAX_TENSORS

/* One received packet; valid until the next notify_next() or notify_close(). */
struct rx_packet {
	const void *data;
	size_t len;
	int msg_flags;		/* MSG_TRUNC, MSG_CTRUNC */
	int fds[NOTIFY_MAX_FDS];
	unsigned int nfds;	/* fds now owned by the caller */
};

struct notify;

struct notify_ops {
	const char *name;
	int (*open)(struct notify *n);
	/* 1: a packet; -EAGAIN: none yet (timeout 0); -ETIMEDOUT; -ECONNRESET: peer
	 * closed; other negative errno: failure. */
	int (*next)(struct notify *n, int timeout_ms, struct rx_packet *pkt);
	int (*fd)(struct notify *n);
	/* A packet was already received and next() will return it without
	 * waiting (NULL: the backend cannot tell cheaply). */
	bool (*pending)(struct notify *n);
	void (*close)(struct notify *n);
};

struct notify {
	const struct notify_ops *ops;
	int sockfd;		/* borrowed */
	void *priv;
};

extern const struct notify_ops notify_uring_ops;
extern const struct notify_ops notify_poll_ops;

/* Picks io_uring unless TENSORFD_NOTIFY=poll or io_uring cannot be set up. */
int notify_open(struct notify *n, int sockfd);
void notify_close(struct notify *n);

static inline int notify_next(struct notify *n, int timeout_ms, struct rx_packet *pkt)
{
	return n->ops->next(n, timeout_ms, pkt);
}

static inline int notify_fd(struct notify *n)
{
	return n->ops->fd(n);
}

static inline bool notify_pending(struct notify *n)
{
	return n->ops && n->ops->pending && n->ops->pending(n);
}

/* Shared by the backends: the fds of SCM_RIGHTS cmsgs into pkt, closing any
 * beyond NOTIFY_MAX_FDS (and flagging MSG_CTRUNC). */
struct msghdr;
void notify_collect_fds(struct msghdr *mh, struct rx_packet *pkt);

#endif
