/* SPDX-License-Identifier: MIT */
/*
 * Channels: the point-to-point protocol over a SOCK_SEQPACKET socket.
 *
 * Sender side: tx_known holds the buffers whose fd this peer already has
 * (one reference each); inflight maps a message's sequence number to the
 * buffers it named, each with a loan, until the peer releases it. Buffers
 * that only tx_known still holds are forgotten (WIRE_FORGET) on a later send.
 *
 * Receiver side: rx_bufs maps the peer's buffer ids to read-only mappings;
 * every received message is on the rx list until it dies, when its id is
 * released back to the sender.
 *
 * Anything malformed from the peer ends the channel: the call that met it
 * returns the specific error, the reason is in tfd_channel_strerror(), every
 * fd that arrived is closed, and later calls return the same error.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "gpu.h"
#include "internal.h"
#include "notify.h"
#include "peerfd.h"
#include "wire.h"

#define RXQ_MAX		4096	/* messages queued while the caller was sending */
#define RX_BUFS_MAX	4096	/* buffers one peer may have us map */
/*
 * Messages one peer may have in flight to us: alive here (queued or held
 * by the application) or dead with their release not yet sent. This bounds
 * the releases we owe it (a peer that never reads them cannot make us
 * remember more); a publisher never has more in flight than its queue depth.
 */
#define RX_INFLIGHT_MAX	65536
/*
 * Bytes of memfds and dma-bufs one peer may have us map at once
 * (TENSORFD_PEER_MAX_BYTES overrides). GPU buffers are not counted: they
 * take no host memory or address space here.
 */
#define RX_BYTES_MAX	(64ull << 30)

struct inflight {
	unsigned int n;
	struct tfd_buffer *bufs[];
};

struct tfd_channel {
	unsigned int refs;
	int sockfd;
	bool notify_open;
	struct notify notify;
	bool peer_hello;
	bool send_only;		/* the peer may only release what we send (a publisher's end) */
	int dead;		/* 0, or the error that ended the channel */
	int peer_refused;	/* the error of the peer's REFUSE, if that ended it */
	int send_timeout_ms;
	uint64_t next_seq;

	struct idmap tx_known;
	unsigned long swept_gen;	/* buffer_orphan_gen at the last complete sweep */
	struct idmap inflight;

	struct idmap rx_bufs;
	uint64_t rx_bytes;	/* the sizes of rx_bufs' host buffers */
	struct tfd_message *rx_live;
	size_t rx_live_n;	/* messages on rx_live */

	struct tfd_message **rxq;
	size_t rxq_head, rxq_len, rxq_cap;

	uint64_t *rel;
	size_t rel_len, rel_cap;

	struct tfd_channel_stats stats;
	struct wire_msg_info *scratch;
	char *txbuf;
	char err[256];
};

static int ch_fail(struct tfd_channel *ch, int err, const char *fmt, ...) TFD_PRINTF(3, 4);

static int ch_fail(struct tfd_channel *ch, int err, const char *fmt, ...)
{
	va_list ap;
	char line[256];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	return tfd_fail(ch->err, sizeof(ch->err), err, "%s", line);
}

/* The peer's fds of a packet: never closed where the peer could block us. */
static void close_fds(struct rx_packet *pkt)
{
	peerfd_close_many(pkt->fds, pkt->nfds);
	pkt->nfds = 0;
}

static void inflight_free(struct inflight *f)
{
	unsigned int i;

	for (i = 0; i < f->n; i++) {
		f->bufs[i]->loans--;
		tfd_buffer_unref(f->bufs[i]);
	}
	free(f);
}

static void known_drop(struct tfd_buffer *b)
{
	b->known--;
	tfd_buffer_unref(b);
}

/* Only channels' tables hold it: no message can name it again. */
static bool buffer_is_orphan(const struct tfd_buffer *b)
{
	return b->refs == b->known;
}

/* Drop every table: the peer will never release or name anything again. */
static void ch_drop_state(struct tfd_channel *ch)
{
	struct idmap_slot *s;

	idmap_foreach(&ch->inflight, s) inflight_free(s->val);
	idmap_free(&ch->inflight);
	idmap_foreach(&ch->tx_known, s) known_drop(s->val);
	idmap_free(&ch->tx_known);
	idmap_foreach(&ch->rx_bufs, s) tfd_buffer_unref(s->val);
	idmap_free(&ch->rx_bufs);
	ch->rx_bytes = 0;
	/* nobody to tell: the releases owed (up to 512 KiB of them) go now */
	free(ch->rel);
	ch->rel = NULL;
	ch->rel_len = ch->rel_cap = 0;
}

/* The peer broke the protocol or went away: end the channel with err. */
static int ch_break(struct tfd_channel *ch, int err)
{
	if (ch->dead)
		return ch->dead;
	ch->dead = err;
	shutdown(ch->sockfd, SHUT_RDWR);
	/* fds already received behind the bad packet are closed now */
	if (ch->notify_open) {
		struct rx_packet pkt;

		while (notify_next(&ch->notify, 0, &pkt) == 1)
			close_fds(&pkt);
	}
	ch_drop_state(ch);
	tfd_log(TFD_LOG_WARNING, "channel ended: %s", ch->err);
	return err;
}

static int ch_notify(struct tfd_channel *ch)
{
	int r;

	if (ch->notify_open)
		return 0;
	r = notify_open(&ch->notify, ch->sockfd);
	if (r < 0)
		return ch_fail(ch, r, "cannot set up the notification channel: %s", strerror(-r));
	ch->notify_open = true;
	return 0;
}

static int ch_process(struct tfd_channel *ch, struct rx_packet *pkt, struct tfd_message **ret);
static int ch_sweep(struct tfd_channel *ch, uint64_t deadline);

/* Keep a message that arrived while the caller was doing something else. */
static int ch_enqueue(struct tfd_channel *ch, struct tfd_message *m)
{
	if (ch->rxq_len == ch->rxq_cap) {
		/* never drop a message silently: the channel ends, loudly */
		tfd_message_unref(m);
		ch_fail(ch, -ENOBUFS, "more than %d messages queued unread: call tfd_channel_recv()",
			RXQ_MAX);
		return ch_break(ch, -ENOBUFS);
	}
	ch->rxq[(ch->rxq_head + ch->rxq_len++) % ch->rxq_cap] = m;
	return 0;
}

/* Wait until the socket takes more, handling what arrives meanwhile. */
static int ch_wait_writable(struct tfd_channel *ch, uint64_t deadline)
{
	struct pollfd pfd[2];
	struct rx_packet pkt;
	struct tfd_message *m;
	int r, ms;

	r = ch_notify(ch);
	if (r < 0)
		return r;
	pfd[0] = (struct pollfd){ .fd = ch->sockfd, .events = POLLOUT };
	pfd[1] = (struct pollfd){ .fd = notify_fd(&ch->notify), .events = POLLIN };
	ms = ms_left(deadline, -1);
	if (ms == 0)
		return ch_fail(ch, -ETIMEDOUT, "peer does not take messages (send timeout)");
	r = poll(pfd, 2, ms);
	if (r < 0)
		return -errno;
	if (r == 0)
		return ch_fail(ch, -ETIMEDOUT, "peer does not take messages (send timeout)");
	if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
		r = notify_next(&ch->notify, 0, &pkt);
		if (r == 1) {
			m = NULL;
			r = ch_process(ch, &pkt, &m);
			if (r < 0)
				return r;
			if (m)
				return ch_enqueue(ch, m);
		} else if (r == -ECONNRESET) {
			ch_fail(ch, r, "peer closed the channel");
			return ch_break(ch, r);
		} else if (r < 0 && r != -EAGAIN) {
			return r;
		}
	}
	return 0;
}

static int ch_sendmsg(struct tfd_channel *ch, const void *data, size_t len, const int *fds,
		      unsigned int nfds, uint64_t deadline)
{
	char cbuf[CMSG_SPACE(sizeof(int) * TFD_MAX_TENSORS)] __attribute__((aligned(8)));
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int r;

	if (nfds) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	for (;;) {
		if (sendmsg(ch->sockfd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return 0;
		switch (errno) {
		case EINTR:
			continue;
		case EAGAIN:
			r = ch_wait_writable(ch, deadline);
			if (r < 0)
				return r;
			if (ch->dead)
				return ch->dead;
			continue;
		case EPIPE:
		case ECONNRESET:
		case ENOTCONN:
			ch_fail(ch, -ECONNRESET, "peer closed the channel");
			return ch_break(ch, -ECONNRESET);
		default:
			return ch_fail(ch, -errno, "sendmsg: %s", strerror(errno));
		}
	}
}

static int send_ids(struct tfd_channel *ch, uint16_t type, const uint64_t *ids, size_t n,
		    uint64_t deadline)
{
	struct wire_ids *w = (struct wire_ids *)ch->txbuf;
	size_t chunk, len;
	int r;

	while (n) {
		chunk = n < WIRE_MAX_IDS ? n : WIRE_MAX_IDS;
		len = sizeof(*w) + chunk * sizeof(uint64_t);
		wire_hdr_init(&w->h, type, (uint32_t)len);
		w->count = (uint32_t)chunk;
		w->pad = 0;
		memcpy(w + 1, ids, chunk * sizeof(uint64_t));
		r = ch_sendmsg(ch, w, len, NULL, 0, deadline);
		if (r < 0)
			return r;
		ids += chunk;
		n -= chunk;
	}
	return 0;
}

/*
 * Releases wait while a received packet is already waiting to be handled
 * (the caller will be back for it: its fd is readable), up to RELEASE_BATCH
 * of them, so that a consumer working through a backlog tells the producer
 * with one packet instead of one per message. They go out as soon as
 * nothing is waiting: before any wait, and when the last message dies.
 */
#define RELEASE_BATCH 64

static bool ch_more_waiting(struct tfd_channel *ch)
{
	return ch->rxq_len || (ch->notify_open && notify_pending(&ch->notify));
}

/* Send the releases of messages that died; never blocks. */
static void ch_flush_releases(struct tfd_channel *ch)
{
	struct wire_ids *w;
	size_t chunk, len;
	char buf[sizeof(struct wire_ids) + 64 * sizeof(uint64_t)];

	w = (struct wire_ids *)buf;
	while (ch->rel_len && !ch->dead) {
		chunk = ch->rel_len < 64 ? ch->rel_len : 64;
		len = sizeof(*w) + chunk * sizeof(uint64_t);
		wire_hdr_init(&w->h, WIRE_RELEASE, (uint32_t)len);
		w->count = (uint32_t)chunk;
		w->pad = 0;
		memcpy(w + 1, ch->rel + ch->rel_len - chunk, chunk * sizeof(uint64_t));
		if (send(ch->sockfd, w, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
				/*
				 * The peer is gone: nobody to tell. What it sent
				 * before it went is still ours to read; the receive
				 * side ends the channel when it meets the end.
				 */
				ch->rel_len = 0;
			} else if (errno != EAGAIN && errno != EINTR) {
				ch_fail(ch, -ECONNRESET, "sending releases: %s", strerror(errno));
				ch_break(ch, -ECONNRESET);
			}
			return;
		}
		ch->rel_len -= chunk;
		ch->stats.releases_sent += chunk;
	}
}

void channel_release(struct tfd_channel *ch, struct tfd_message *msg)
{
	uint64_t *rel;

	if (msg->rx_prev)
		msg->rx_prev->rx_next = msg->rx_next;
	else
		ch->rx_live = msg->rx_next;
	if (msg->rx_next)
		msg->rx_next->rx_prev = msg->rx_prev;
	msg->rx_channel = NULL;
	ch->rx_live_n--;
	if (ch->dead)
		return;
	if (ch->rel_len == ch->rel_cap) {
		size_t cap = ch->rel_cap ? ch->rel_cap * 2 : 16;

		rel = realloc(ch->rel, cap * sizeof(*rel));
		if (!rel) {
			/* Cannot remember it: the sender would wait forever. */
			ch_fail(ch, -ENOMEM, "out of memory recording a release");
			ch_break(ch, -ENOMEM);
			return;
		}
		ch->rel = rel;
		ch->rel_cap = cap;
	}
	ch->rel[ch->rel_len++] = msg->rx_id;
	if (ch->rel_len >= RELEASE_BATCH || !ch_more_waiting(ch))
		ch_flush_releases(ch);
}

static int handle_hello(struct tfd_channel *ch, struct rx_packet *pkt)
{
	struct wire_hello h;
	int r;

	if (ch->peer_hello)
		return ch_fail(ch, -EBADMSG, "peer sent a second hello");
	r = wire_decode_hello(pkt->data, pkt->len, &h, ch->err, sizeof(ch->err));
	if (r < 0)
		return r;
	ch->peer_hello = true;
	return 0;
}

static int handle_release(struct tfd_channel *ch, struct rx_packet *pkt)
{
	const uint64_t *ids;
	struct inflight *f;
	uint32_t n, i;
	uint64_t id;
	int r;

	r = wire_decode_ids(pkt->data, pkt->len, &ids, &n, ch->err, sizeof(ch->err));
	if (r < 0)
		return r;
	for (i = 0; i < n; i++) {
		memcpy(&id, &ids[i], sizeof(id));
		f = idmap_del(&ch->inflight, id);
		if (!f)
			return ch_fail(ch, -EBADMSG, "peer released message %llu that it does not hold",
				       (unsigned long long)id);
		inflight_free(f);
		ch->stats.releases_received++;
	}
	return 0;
}

static int handle_forget(struct tfd_channel *ch, struct rx_packet *pkt)
{
	const uint64_t *ids;
	struct tfd_buffer *b;
	uint32_t n, i;
	uint64_t id;
	int r;

	r = wire_decode_ids(pkt->data, pkt->len, &ids, &n, ch->err, sizeof(ch->err));
	if (r < 0)
		return r;
	for (i = 0; i < n; i++) {
		memcpy(&id, &ids[i], sizeof(id));
		b = idmap_del(&ch->rx_bufs, id);
		if (!b)
			return ch_fail(ch, -EBADMSG, "peer forgot buffer %llu that it never sent",
				       (unsigned long long)id);
		if (!buffer_is_gpu(b))
			ch->rx_bytes -= b->size;
		/* Messages still holding it keep the mapping alive. */
		tfd_buffer_unref(b);
	}
	return 0;
}

static int handle_refuse(struct tfd_channel *ch, struct rx_packet *pkt)
{
	char reason[160];
	int error, r;

	r = wire_decode_refuse(pkt->data, pkt->len, &error, reason, sizeof(reason), ch->err,
			       sizeof(ch->err));
	if (r < 0)
		return r;
	ch->peer_refused = error;
	return ch_fail(ch, -error, "peer refused us: %s", reason);
}

/*
 * TENSORFD_PEER_MAX_BYTES: bytes, or with a K, M, G or T suffix (powers of
 * 1024). Read at each import of new buffers, which is rare (once per
 * buffer and peer), so a program may change it between channels.
 */
static uint64_t rx_bytes_max(void)
{
	uint64_t max = RX_BYTES_MAX;
	const char *env;
	char *end;
	unsigned long long v;
	int shift = 0;

	env = getenv("TENSORFD_PEER_MAX_BYTES");
	if (!env || !*env)
		return max;
	errno = 0;
	v = strtoull(env, &end, 10);
	if (*end && strchr("KMGT", *end)) {
		shift = 10 * (int)(strchr("KMGT", *end) - "KMGT" + 1);
		end++;
	}
	if (errno || *end || !v || v > (UINT64_MAX >> shift))
		tfd_log(TFD_LOG_WARNING, "TENSORFD_PEER_MAX_BYTES=%s is not a size; %llu bytes it is",
			env, (unsigned long long)max);
	else
		max = (uint64_t)v << shift;
	return max;
}

static int import_buffers(struct tfd_channel *ch, const struct wire_msg_info *w,
			  struct rx_packet *pkt)
{
	struct tfd_buffer *b;
	unsigned int i, k = 0;
	uint64_t bytes = ch->rx_bytes, max = w->n_newbufs ? rx_bytes_max() : 0;
	int r;

	if (pkt->nfds != w->n_fds)
		return ch_fail(ch, -EBADMSG, "message announces %u buffer fds but carries %u fds",
			       w->n_fds, pkt->nfds);
	if (ch->rx_bufs.count + w->n_newbufs > RX_BUFS_MAX)
		return ch_fail(ch, -ENOBUFS, "peer wants more than %d buffers mapped", RX_BUFS_MAX);
	/* checked before anything is mapped: the peer's sizes are its claims */
	for (i = 0; i < w->n_newbufs; i++) {
		if (wire_buf_is_cuda(w->newbufs[i].kind))
			continue;
		/* bytes > max: the limit was lowered since the peer's last buffers */
		if (bytes > max || w->newbufs[i].size > max - bytes)
			return ch_fail(ch, -ENOBUFS, "peer wants more than %llu bytes mapped "
				       "(TENSORFD_PEER_MAX_BYTES)", (unsigned long long)max);
		bytes += w->newbufs[i].size;
	}
	for (i = 0; i < w->n_newbufs; i++)
		if (idmap_get(&ch->rx_bufs, w->newbufs[i].id))
			return ch_fail(ch, -EBADMSG, "peer sent buffer %llu twice",
				       (unsigned long long)w->newbufs[i].id);
	r = idmap_reserve(&ch->rx_bufs, w->n_newbufs);
	if (r < 0)
		return ch_fail(ch, r, "out of memory");
	for (i = 0; i < w->n_newbufs; i++) {
		/* the import owns the fd from here, even when it fails */
		int fd = wire_buf_has_fd(w->newbufs[i].kind) ? pkt->fds[k] : -1;

		if (fd >= 0)
			pkt->fds[k++] = -1;
		if (wire_buf_is_cuda(w->newbufs[i].kind))
			r = cuda_import(fd, &w->newbufs[i], &w->cuda[i], ch->err, sizeof(ch->err),
					&b);
		else
			r = buffer_import(fd, w->newbufs[i].size, w->newbufs[i].kind, ch->err,
					  sizeof(ch->err), &b);
		if (r < 0) {
			peerfd_close_many(pkt->fds + k, pkt->nfds - k);
			pkt->nfds = 0;
			return r;
		}
		idmap_put(&ch->rx_bufs, w->newbufs[i].id, b);
		if (!buffer_is_gpu(b))
			ch->rx_bytes += b->size;
		if (fd >= 0)
			ch->stats.fds_received++;
	}
	pkt->nfds = 0;
	return 0;
}

static int handle_msg(struct tfd_channel *ch, struct rx_packet *pkt, struct tfd_message **ret)
{
	struct wire_msg_info *w = ch->scratch;
	struct tfd_message *m;
	struct tensor_entry *t;
	struct tfd_buffer *b;
	unsigned int i;
	int r;

	r = wire_decode_msg(pkt->data, pkt->len, w, ch->err, sizeof(ch->err));
	if (r < 0)
		return r;
	if (ch->rx_live_n + ch->rel_len >= RX_INFLIGHT_MAX)
		return ch_fail(ch, -ENOBUFS, "peer has more than %d messages in flight "
			       "(it does not read our releases)", RX_INFLIGHT_MAX);
	r = import_buffers(ch, w, pkt);
	if (r < 0)
		return r;
	r = message_new_received(w->n_tensors, &m);
	if (r < 0)
		return ch_fail(ch, r, "out of memory");
	for (i = 0; i < w->n_tensors; i++) {
		b = idmap_get(&ch->rx_bufs, w->tensors[i].buf_id);
		if (!b) {
			tfd_message_unref(m);
			return ch_fail(ch, -EBADMSG, "tensor '%s' names unknown buffer %llu",
				       w->tensors[i].name, (unsigned long long)w->tensors[i].buf_id);
		}
		r = message_check_tensor(w->tensors[i].name, b, &w->tensors[i].layout);
		if (r < 0) {
			tfd_message_unref(m);
			return ch_fail(ch, r, "%s", tfd_last_error());
		}
		t = &m->t[m->n++];
		t->flags = w->tensors[i].flags & WIRE_TENSOR_COPIED ? TENSOR_COPIED : 0;
		memcpy(t->name, w->tensors[i].name, sizeof(t->name));
		t->layout = w->tensors[i].layout;
		/* the peer's ordinal means nothing here (CUDA_VISIBLE_DEVICES): ours */
		if (buffer_is_gpu(b))
			t->layout.device.id = cuda_buffer_ordinal(b);
		t->buf = tfd_buffer_ref(b);
	}
	if (w->user_len) {
		m->user = malloc(w->user_len);
		if (!m->user) {
			tfd_message_unref(m);
			return ch_fail(ch, -ENOMEM, "out of memory");
		}
		memcpy(m->user, w->user, w->user_len);
		m->user_len = w->user_len;
	}
	m->seq = w->seq;
	m->timestamp = w->timestamp;
	m->rx_id = w->seq;
	m->rx_channel = ch;
	m->rx_next = ch->rx_live;
	if (ch->rx_live)
		ch->rx_live->rx_prev = m;
	ch->rx_live = m;
	ch->rx_live_n++;
	ch->stats.messages_received++;
	*ret = m;
	return 0;
}

/*
 * Control data arrives truncated when the peer sent more fds than we take,
 * or when the kernel could not install them because our own fd table is
 * full. Tell the two apart by asking for one more fd.
 */
static bool fd_table_full(int fd)
{
	int probe = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (probe >= 0) {
		close(probe);
		return false;
	}
	return errno == EMFILE || errno == ENFILE;
}

/*
 * Handle one packet. A message is returned in *ret; control packets are
 * consumed. Any error from the peer's data ends the channel.
 */
static int ch_process(struct tfd_channel *ch, struct rx_packet *pkt, struct tfd_message **ret)
{
	int type, r;

	if ((pkt->msg_flags & MSG_CTRUNC) && fd_table_full(ch->sockfd)) {
		r = ch_fail(ch, -EMFILE, "out of file descriptors (RLIMIT_NOFILE): the kernel "
			    "dropped buffer fds the peer sent");
		goto out;
	}
	if (pkt->msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		r = ch_fail(ch, -EBADMSG, "peer sent an oversized packet or too many fds%s",
			    pkt->msg_flags & MSG_CTRUNC ? " (control data truncated)" : "");
		goto out;
	}
	type = wire_check_header(pkt->data, pkt->len, ch->err, sizeof(ch->err));
	if (type < 0) {
		r = type;
		goto out;
	}
	if (!ch->peer_hello && type != WIRE_HELLO) {
		r = ch_fail(ch, -EPROTO, "peer did not start with a hello");
		goto out;
	}
	if (ch->send_only && (type == WIRE_MSG || type == WIRE_FORGET)) {
		/* a publisher maps nothing for a subscriber and holds no message of its */
		close_fds(pkt);
		return channel_refuse(ch, EPROTO, type == WIRE_MSG ?
				      "this end only sends: it takes no messages" :
				      "this end only sends: it was sent no buffers to forget");
	}
	if (type != WIRE_MSG && pkt->nfds) {
		r = ch_fail(ch, -EBADMSG, "control packet carries %u fds", pkt->nfds);
		goto out;
	}
	switch (type) {
	case WIRE_HELLO:
		r = handle_hello(ch, pkt);
		break;
	case WIRE_RELEASE:
		r = handle_release(ch, pkt);
		break;
	case WIRE_FORGET:
		r = handle_forget(ch, pkt);
		break;
	case WIRE_REFUSE:
		r = handle_refuse(ch, pkt);
		break;
	case WIRE_INFO_REQUEST:
	case WIRE_INFO:
		/* introspection happens before a channel exists, never on one */
		r = ch_fail(ch, -EBADMSG, "introspection packet (type %d) on a channel", type);
		break;
	default:
		r = handle_msg(ch, pkt, ret);
		break;
	}
out:
	close_fds(pkt);
	if (r < 0)
		return ch_break(ch, r);
	return 0;
}

/*
 * Receive and handle packets until a message arrives (want_msg) or, for
 * dispatch, until nothing more is there. Returns the packets handled or a
 * negative errno.
 */
static int ch_pump(struct tfd_channel *ch, int timeout_ms, struct tfd_message **ret)
{
	uint64_t deadline = deadline_after(timeout_ms);
	struct rx_packet pkt;
	struct tfd_message *m;
	int r, ms = timeout_ms, handled = 0;

	r = ch_notify(ch);
	if (r < 0)
		return r;
	for (;;) {
		if (ch->dead)
			return ch->dead;
		/* about to wait, or to find nothing: releases go first */
		if (ch->rel_len && !ch_more_waiting(ch))
			ch_flush_releases(ch);
		r = notify_next(&ch->notify, ms, &pkt);
		if (r == -ECONNRESET) {
			ch_fail(ch, r, "peer closed the channel");
			return ch_break(ch, r);
		}
		if (r == -EAGAIN || r == -ETIMEDOUT)
			return !ret && handled ? handled : r;
		if (r < 0)
			return ch_fail(ch, r, "receiving: %s", strerror(-r));
		m = NULL;
		r = ch_process(ch, &pkt, &m);
		if (r < 0)
			return r;
		handled++;
		if (m) {
			if (ret) {
				*ret = m;
				return handled;
			}
			r = ch_enqueue(ch, m);
			if (r < 0)
				return r;
		}
		/* dispatch drains without waiting once something was handled */
		ms = ret ? ms_left(deadline, -1) : 0;
		if (ret && ms == 0 && timeout_ms != 0)
			return -ETIMEDOUT;
	}
}

TFD_EXPORT int tfd_channel_recv(struct tfd_channel *ch, int timeout_ms, struct tfd_message **ret)
{
	struct tfd_message *m = NULL;
	int r;

	if (!ch || !ret)
		return fail_args();
	if (ch->rxq_len) {
		*ret = ch->rxq[ch->rxq_head];
		ch->rxq_head = (ch->rxq_head + 1) % ch->rxq_cap;
		ch->rxq_len--;
		return 0;
	}
	if (ch->dead)
		return ch->dead;
	/* releases held back while a packet waits go out in ch_pump() */
	r = ch_pump(ch, timeout_ms, &m);
	if (r < 0)
		return r;
	*ret = m;
	return 0;
}

TFD_EXPORT int tfd_channel_dispatch(struct tfd_channel *ch, int timeout_ms)
{
	int r;

	if (!ch)
		return fail_args();
	if (ch->dead)
		return ch->dead;
	ch_flush_releases(ch);
	r = ch_pump(ch, timeout_ms, NULL);
	if (r == -EAGAIN || r == -ETIMEDOUT)
		r = 0;
	if (r >= 0 && !ch->dead) {
		int s = ch_sweep(ch, deadline_after(ch->send_timeout_ms));

		if (s < 0)
			return s;
	}
	return r;
}

/*
 * Forget buffers that nobody but this channel holds any more, so their
 * memory goes as soon as the application drops them. Runs on every send
 * and dispatch: it walks only the buffers this peer knows, a handful for
 * a pool.
 */
static int ch_sweep(struct tfd_channel *ch, uint64_t deadline)
{
	struct idmap_slot *s;
	uint64_t *ids;
	unsigned long gen = atomic_load_explicit(&buffer_orphan_gen, memory_order_relaxed);
	size_t n = 0, i;
	int r;

	/* no buffer became an orphan since the last sweep: nothing to find */
	if (gen == ch->swept_gen)
		return 0;
	idmap_foreach(&ch->tx_known, s) if (buffer_is_orphan(s->val)) n++;
	if (!n) {
		ch->swept_gen = gen;
		return 0;
	}
	ids = malloc(n * sizeof(*ids));
	if (!ids)
		return fail_nomem();
	n = 0;
	idmap_foreach(&ch->tx_known, s) if (buffer_is_orphan(s->val)) ids[n++] = s->key;
	r = send_ids(ch, WIRE_FORGET, ids, n, deadline);
	if (r == 0) {
		for (i = 0; i < n; i++)
			known_drop(idmap_del(&ch->tx_known, ids[i]));
		ch->swept_gen = gen;
	}
	free(ids);
	return r;
}

static size_t encode_msg(struct tfd_channel *ch, const struct tfd_message *msg, uint64_t seq,
			 uint64_t ts, struct tfd_buffer **newbufs, const uint32_t *kinds,
			 const struct wire_cudabuf *cudarec, unsigned int n_new)
{
	char *p = ch->txbuf;
	struct wire_msg *w = (struct wire_msg *)p;
	unsigned int i;

	memset(w, 0, sizeof(*w));
	w->seq = seq;
	w->timestamp = ts;
	w->n_tensors = (uint16_t)msg->n;
	w->n_newbufs = (uint16_t)n_new;
	w->user_len = (uint32_t)msg->user_len;
	p += sizeof(*w);
	for (i = 0; i < n_new; i++) {
		struct wire_newbuf nb = {
			.id = newbufs[i]->id,
			.size = newbufs[i]->size,
			.kind = kinds[i],
		};

		memcpy(p, &nb, sizeof(nb));
		p += sizeof(nb);
		if (wire_buf_is_cuda(kinds[i])) {
			memcpy(p, &cudarec[i], sizeof(cudarec[i]));
			p += sizeof(cudarec[i]);
		}
	}
	for (i = 0; i < msg->n; i++) {
		const struct tensor_entry *t = &msg->t[i];
		size_t name_len = strlen(t->name), pad = ((name_len + 7) & ~(size_t)7) - name_len;
		size_t dims = (size_t)t->layout.ndim * sizeof(int64_t);
		struct wire_tensor wt = {
			.buf_id = t->buf->id,
			.byte_offset = t->layout.byte_offset,
			.code = t->layout.dtype.code,
			.bits = t->layout.dtype.bits,
			.lanes = t->layout.dtype.lanes,
			.ndim = t->layout.ndim,
			.device_type = t->layout.device.type,
			.device_id = t->layout.device.id,
			.name_len = (uint16_t)name_len,
			.flags = (uint16_t)(t->flags & TENSOR_COPIED),
		};

		memcpy(p, &wt, sizeof(wt));
		p += sizeof(wt);
		memcpy(p, t->name, name_len);
		memset(p + name_len, 0, pad);
		p += name_len + pad;
		memcpy(p, t->layout.shape, dims);
		p += dims;
		memcpy(p, t->layout.strides, dims);
		p += dims;
	}
	if (msg->user_len)
		memcpy(p, msg->user, msg->user_len);
	p += msg->user_len;
	wire_hdr_init(&w->h, WIRE_MSG, (uint32_t)(p - ch->txbuf));
	return (size_t)(p - ch->txbuf);
}

TFD_EXPORT int tfd_channel_send(struct tfd_channel *ch, struct tfd_message *msg)
{
	if (!ch)
		return fail_args();
	return channel_send_seq(ch, msg, ch->next_seq, 0);
}

/*
 * Send msg as message number seq, stamped ts (0: now); seq must not be in
 * flight on this channel. Topics pass their own sequence and the publish
 * time, the same for every subscriber.
 */
int channel_send_seq(struct tfd_channel *ch, struct tfd_message *msg, uint64_t seq, uint64_t ts)
{
	struct tfd_buffer *uniq[TFD_MAX_TENSORS], *newbufs[TFD_MAX_TENSORS];
	struct wire_cudabuf cudarec[TFD_MAX_TENSORS];
	uint32_t kinds[TFD_MAX_TENSORS];
	int fds[TFD_MAX_TENSORS];
	unsigned int n_uniq = 0, n_new = 0, n_fds = 0, i, j;
	uint64_t deadline;
	struct inflight *f;
	size_t len;
	int r;

	if (!ch || !msg)
		return fail_args();
	if (ch->dead)
		return ch->dead;
	deadline = deadline_after(ch->send_timeout_ms);
	ch_flush_releases(ch);
	/* Take in releases that arrived (no system call with io_uring). */
	r = ch_pump(ch, 0, NULL);
	if (r < 0 && r != -EAGAIN)
		return r;
	r = ch_sweep(ch, deadline);
	if (r < 0)
		return r;
	for (i = 0; i < msg->n; i++) {
		struct tfd_buffer *b = msg->t[i].buf;

		if (b->fd < 0 && !buffer_is_gpu(b))
			return ch_fail(ch, -EBADF, "tensor '%s' has no buffer fd", msg->t[i].name);
		for (j = 0; j < n_uniq && uniq[j] != b; j++)
			;
		if (j < n_uniq)
			continue;
		uniq[n_uniq++] = b;
		if (idmap_get(&ch->tx_known, b->id))
			continue;
		if (buffer_is_gpu(b)) {
			r = cuda_wire(b, &kinds[n_new], &cudarec[n_new], ch->err, sizeof(ch->err));
			if (r < 0)
				return r;
		} else {
			kinds[n_new] = b->kind == TFD_BUFFER_DMABUF ? WIRE_BUF_DMABUF : WIRE_BUF_MEMFD;
		}
		if (wire_buf_has_fd(kinds[n_new]))
			fds[n_fds++] = b->fd;
		newbufs[n_new++] = b;
	}
	f = malloc(sizeof(*f) + n_uniq * sizeof(f->bufs[0]));
	if (!f)
		return fail_nomem();
	r = idmap_reserve(&ch->tx_known, n_new);
	if (r == 0)
		r = idmap_reserve(&ch->inflight, 1);
	if (r < 0) {
		free(f);
		return ch_fail(ch, r, "out of memory");
	}
	if (idmap_get(&ch->inflight, seq)) {
		free(f);
		return ch_fail(ch, -EEXIST, "message %llu is already in flight",
			       (unsigned long long)seq);
	}
	if (!ts)
		ts = tfd_now_ns();
	len = encode_msg(ch, msg, seq, ts, newbufs, kinds, cudarec, n_new);
	r = ch_sendmsg(ch, ch->txbuf, len, fds, n_fds, deadline);
	if (r < 0) {
		free(f);
		return r;
	}
	if (seq >= ch->next_seq)
		ch->next_seq = seq + 1;
	for (i = 0; i < n_new; i++) {
		newbufs[i]->known++;
		idmap_put(&ch->tx_known, newbufs[i]->id, tfd_buffer_ref(newbufs[i]));
	}
	f->n = n_uniq;
	for (i = 0; i < n_uniq; i++) {
		f->bufs[i] = tfd_buffer_ref(uniq[i]);
		uniq[i]->loans++;
	}
	idmap_put(&ch->inflight, seq, f);
	if (!msg->received) {
		msg->seq = seq;
		msg->timestamp = ts;
	}
	ch->stats.messages_sent++;
	ch->stats.fds_sent += n_fds;
	return 0;
}

static int send_hello(struct tfd_channel *ch)
{
	struct wire_hello h;

	memset(&h, 0, sizeof(h));
	wire_hdr_init(&h.h, WIRE_HELLO, sizeof(h));
	h.max_packet = WIRE_MAX_PACKET;
	h.pid = (uint64_t)getpid();
	return ch_sendmsg(ch, &h, sizeof(h), NULL, 0, deadline_after(1000));
}

/* Takes ownership of sockfd, even on failure. */
int channel_new(int sockfd, struct tfd_channel **ret)
{
	struct tfd_channel *ch;
	int r;

	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		close(sockfd);
		return fail_nomem();
	}
	ch->refs = 1;
	ch->sockfd = sockfd;
	ch->send_timeout_ms = -1;
	ch->next_seq = 1;
	ch->rxq_cap = RXQ_MAX;
	ch->rxq = calloc(ch->rxq_cap, sizeof(*ch->rxq));
	ch->scratch = malloc(sizeof(*ch->scratch));
	ch->txbuf = malloc(WIRE_MAX_PACKET);
	if (!ch->rxq || !ch->scratch || !ch->txbuf) {
		tfd_channel_unref(ch);
		return fail_nomem();
	}
	r = send_hello(ch);
	if (r < 0) {
		tfd_fail(NULL, 0, r, "sending the hello: %s", ch->err);
		tfd_channel_unref(ch);
		return r;
	}
	*ret = ch;
	return 0;
}

TFD_EXPORT int tfd_channel_pair(struct tfd_channel **ret0, struct tfd_channel **ret1)
{
	struct tfd_channel *a;
	int sv[2], r;

	if (!ret0 || !ret1)
		return fail_args();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return tfd_fail(NULL, 0, -errno, "socketpair: %s", strerror(errno));
	r = channel_new(sv[0], &a);
	if (r < 0) {
		close(sv[1]);
		return r;
	}
	r = channel_new(sv[1], ret1);
	if (r < 0) {
		tfd_channel_unref(a);
		return r;
	}
	*ret0 = a;
	return 0;
}

int unix_address(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n;

	if (!path || !*path)
		return tfd_fail(NULL, 0, -EINVAL, "empty socket path");
	n = strlen(path);
	if (n >= sizeof(sa->sun_path))
		return tfd_fail(NULL, 0, -ENAMETOOLONG, "socket path of %zu bytes is too long", n);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, n);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

/* Under a connect's wait: SO_SNDTIMEO bounds it (an AF_UNIX connect honours it). */
static void set_send_timeout(int fd, uint64_t ns)
{
	struct timeval tv = { .tv_sec = (time_t)(ns / 1000000000),
			      .tv_usec = (suseconds_t)(ns % 1000000000 / 1000) };

	if (ns && !tv.tv_sec && !tv.tv_usec)
		tv.tv_usec = 1;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * A connected SOCK_SEQPACKET socket (blocking, close-on-exec) for path, or
 * a negative errno with a reason. A listener whose queue of pending
 * connections is full is waited for, woken by the kernel as soon as it has
 * room, until deadline (ns, CLOCK_MONOTONIC): deadline 0 tries once
 * (-EAGAIN), UINT64_MAX waits as long as it takes; a deadline that passes
 * is -ETIMEDOUT. Never longer: a publisher that stops accepting must not
 * hang a subscriber past its timeout.
 */
int unix_connect(const char *path, uint64_t deadline)
{
	struct sockaddr_un sa;
	socklen_t len;
	uint64_t now;
	int fd, r;

	r = unix_address(path, &sa, &len);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return tfd_fail(NULL, 0, -errno, "socket: %s", strerror(errno));
	while (connect(fd, (struct sockaddr *)&sa, len) < 0) {
		r = -errno;
		if (r == -EINTR)
			continue;
		now = tfd_now_ns();
		if (r != -EAGAIN || now >= deadline) {
			close(fd);
			if (r == -EAGAIN)
				r = deadline ? -ETIMEDOUT : -EAGAIN;
			if (r == -EAGAIN || r == -ETIMEDOUT)
				return tfd_fail(NULL, 0, r, "%s does not accept connections: its "
						"queue of pending connections is full", path);
			return tfd_fail(NULL, 0, r, "connecting to %s: %s", path, strerror(-r));
		}
		/* wait for room: the same connect, blocking, bounded by the deadline */
		set_send_timeout(fd, deadline == UINT64_MAX ? 0 : deadline - now);
		fcntl(fd, F_SETFL, 0);
	}
	fcntl(fd, F_SETFL, 0);
	set_send_timeout(fd, 0);
	return fd;
}

int channel_connect(const char *path, uint64_t deadline, struct tfd_channel **ret)
{
	int fd = unix_connect(path, deadline);

	if (fd < 0)
		return fd;
	return channel_new(fd, ret);
}

/* Documented to wait while the listener's queue is full: no deadline. */
TFD_EXPORT int tfd_channel_connect(const char *path, struct tfd_channel **ret)
{
	if (!ret)
		return fail_args();
	return channel_connect(path, UINT64_MAX, ret);
}

TFD_EXPORT struct tfd_channel *tfd_channel_ref(struct tfd_channel *ch)
{
	if (ch)
		ch->refs++;
	return ch;
}

TFD_EXPORT struct tfd_channel *tfd_channel_unref(struct tfd_channel *ch)
{
	struct tfd_message *m;

	if (!ch || --ch->refs > 0)
		return NULL;
	/* Received messages stay valid; they just have nobody to tell. */
	for (m = ch->rx_live; m; m = m->rx_next)
		m->rx_channel = NULL;
	while (ch->rxq_len) {
		m = ch->rxq[ch->rxq_head];
		ch->rxq_head = (ch->rxq_head + 1) % ch->rxq_cap;
		ch->rxq_len--;
		m->rx_channel = NULL;
		tfd_message_unref(m);
	}
	if (ch->notify_open)
		notify_close(&ch->notify);
	ch_drop_state(ch);
	close(ch->sockfd);
	free(ch->rxq);
	free(ch->rel);
	free(ch->scratch);
	free(ch->txbuf);
	free(ch);
	return NULL;
}

TFD_EXPORT int tfd_channel_get_fd(const struct tfd_channel *ch)
{
	struct tfd_channel *c = (struct tfd_channel *)ch;
	int r;

	if (!ch)
		return fail_args();
	r = ch_notify(c);
	if (r < 0)
		return r;
	return notify_fd(&c->notify);
}

TFD_EXPORT int tfd_channel_set_send_timeout(struct tfd_channel *ch, int timeout_ms)
{
	if (!ch || timeout_ms < -1)
		return fail_args();
	ch->send_timeout_ms = timeout_ms;
	return 0;
}

TFD_EXPORT int tfd_channel_get_stats(const struct tfd_channel *ch, struct tfd_channel_stats *stats)
{
	if (!ch || !stats)
		return fail_args();
	*stats = ch->stats;
	/* the tables are the truth; counters would only repeat them */
	stats->buffers_mapped = ch->rx_bufs.count;
	stats->messages_in_flight = ch->inflight.count;
	return 0;
}

TFD_EXPORT const char *tfd_channel_backend(const struct tfd_channel *ch)
{
	if (!ch)
		return NULL;
	if (!ch->notify_open && ch_notify((struct tfd_channel *)ch) < 0)
		return NULL;
	return ch->notify.ops->name;
}

TFD_EXPORT const char *tfd_channel_strerror(const struct tfd_channel *ch)
{
	return ch ? ch->err : NULL;
}

size_t channel_in_flight(const struct tfd_channel *ch)
{
	return ch->inflight.count;
}

/* Call fn on each buffer of each message in flight (a buffer once per message). */
void channel_for_each_in_flight(const struct tfd_channel *ch,
				void (*fn)(struct tfd_buffer *b, void *ctx), void *ctx)
{
	const struct idmap_slot *s;
	const struct inflight *f;
	unsigned int i;

	idmap_foreach(&ch->inflight, s) {
		f = s->val;
		for (i = 0; i < f->n; i++)
			fn(f->bufs[i], ctx);
	}
}

/* The lowest sequence number in flight, 0 if none: how far behind the peer is. */
uint64_t channel_oldest_in_flight(const struct tfd_channel *ch)
{
	const struct idmap_slot *s;
	uint64_t oldest = 0;

	idmap_foreach(&ch->inflight, s) if (!oldest || s->key < oldest) oldest = s->key;
	return oldest;
}

int channel_sockfd(const struct tfd_channel *ch)
{
	return ch->sockfd;
}

/* The error the peer's REFUSE named, 0 if it sent none: only that is a refusal. */
int channel_peer_refused(const struct tfd_channel *ch)
{
	return ch->peer_refused;
}

/* Tell the peer why it is not served, then end the channel. */
int channel_refuse(struct tfd_channel *ch, int error, const char *reason)
{
	char buf[sizeof(struct wire_refuse) + 160];
	struct wire_refuse *w = (struct wire_refuse *)buf;
	size_t n = strnlen(reason, 160);

	wire_hdr_init(&w->h, WIRE_REFUSE, (uint32_t)(sizeof(*w) + n));
	w->error = error;
	w->reason_len = (uint32_t)n;
	memcpy(w + 1, reason, n);
	send(ch->sockfd, buf, sizeof(*w) + n, MSG_DONTWAIT | MSG_NOSIGNAL);
	ch_fail(ch, -error, "refused the peer: %s", reason);
	return ch_break(ch, -error);
}

size_t channel_queued(const struct tfd_channel *ch)
{
	return ch->rxq_len;
}

/* Received messages the application holds: alive, and no longer queued here. */
size_t channel_held(const struct tfd_channel *ch)
{
	return ch->rx_live_n - ch->rxq_len;
}

void channel_set_send_only(struct tfd_channel *ch)
{
	ch->send_only = true;
}

size_t channel_releases_owed(const struct tfd_channel *ch)
{
	return ch->rel_len;
}

/* A packet on a connection not yet a channel (an introspection request): no fds allowed. */
ssize_t channel_recv_bare(struct tfd_channel *ch, void *buf, size_t cap, char *errbuf,
			  size_t errlen)
{
	return peerfd_recv_bare(ch->sockfd, buf, cap, errbuf, errlen);
}
