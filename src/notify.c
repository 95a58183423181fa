/* SPDX-License-Identifier: MIT */
/*
 * The notification channel's two backends. io_uring keeps one RECVMSG
 * posted on the socket at all times, alternating between two receive
 * slots so that the packet handed to the caller stays intact while the
 * next one is already being received; the ring fd, or the socket with a
 * deferred ring, is what users poll.
 * The poll backend does the same with poll(2) and recvmsg(2) on the
 * socket itself.
 *
 * Where the kernel has it, the ring defers its task work (DEFER_TASKRUN):
 * completions run only when the thread that made the ring asks for them,
 * so a packet arriving for a channel never interrupts that thread's other
 * system calls (see uring_setup_flags()). Such a ring cannot be polled
 * (nothing wakes a poller when work is queued), and its receive is posted
 * poll-first, so it takes a packet from the socket only inside next():
 * users poll the socket itself, readable exactly while next() has work.
 * The ring belongs to one thread; another thread that takes the channel
 * over gets a ring of its own (uring_own()).
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "notify.h"
#include "peerfd.h"

/* room for every fd the kernel lets a peer attach: none is dropped in our task */
#define CMSG_BYTES CMSG_SPACE(sizeof(int) * PEER_CMSG_FDS)

struct rx_slot {
	struct msghdr mh;
	struct iovec iov;
	/* one byte more than the largest packet, so an oversized one shows MSG_TRUNC */
	char data[WIRE_MAX_PACKET + 8] __attribute__((aligned(8)));
	char cmsg[CMSG_BYTES] __attribute__((aligned(8)));
};

static void slot_reset(struct rx_slot *s)
{
	memset(&s->mh, 0, sizeof(s->mh));
	s->iov.iov_base = s->data;
	s->iov.iov_len = sizeof(s->data);
	s->mh.msg_iov = &s->iov;
	s->mh.msg_iovlen = 1;
	s->mh.msg_control = s->cmsg;
	s->mh.msg_controllen = sizeof(s->cmsg);
}

void notify_collect_fds(struct msghdr *mh, struct rx_packet *pkt)
{
	unsigned int dropped;

	pkt->nfds = peerfd_collect(mh, pkt->fds, NOTIFY_MAX_FDS, &dropped);
	if (dropped)
		pkt->msg_flags |= MSG_CTRUNC;
}

static void packet_from_slot(struct rx_slot *s, ssize_t len, struct rx_packet *pkt)
{
	pkt->data = s->data;
	pkt->len = (size_t)len;
	pkt->msg_flags = s->mh.msg_flags;
	notify_collect_fds(&s->mh, pkt);
}

/* --- io_uring --- */

/*
 * A ring's memory is shared with a child after fork(), and its requests
 * belong to the parent. A child that uses a channel whose ring the parent
 * had opened gets a ring of its own; it never submits on the parent's.
 */
static unsigned int fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_child(void)
{
	fork_generation++;
}

static void atfork_register(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
}

struct uring_priv {
	struct io_uring ring;
	struct rx_slot slot[2];
	unsigned int cur;	/* slot with the posted RECVMSG */
	bool armed;
	unsigned int generation;	/* fork_generation when the ring was made */
	bool reset_seen;	/* the socket reported ECONNRESET once already */
	bool deferred;		/* DEFER_TASKRUN: users poll the socket */
	pthread_t thread;	/* the thread a deferred ring belongs to */
	int stash_res;		/* a receive that completed on a ring left behind */
	bool stashed;		/* ... in slot[cur], returned by the next next() */
};

static int uring_arm(struct notify *n)
{
	struct uring_priv *u = n->priv;
	struct io_uring_sqe *sqe;
	struct rx_slot *s = &u->slot[u->cur];
	int r;

	slot_reset(s);
	sqe = io_uring_get_sqe(&u->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recvmsg(sqe, n->sockfd, &s->mh, MSG_CMSG_CLOEXEC);
	/* receive only when next() runs the task work, never at submission */
	if (u->deferred)
		sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	io_uring_sqe_set_data64(sqe, 1 + u->cur);
	r = io_uring_submit(&u->ring);
	if (r < 0)
		return r;
	u->armed = true;
	return 0;
}

/*
 * How completions reach the thread that posted the receive. The default
 * queues task work to it and notifies it like a signal (TIF_NOTIFY_SIGNAL):
 * its next interruptible sleep or lock ends early, which epoll_wait() shows
 * as EINTR and a driver as a failure of its own (a V4L2 camera's poll
 * returns POLLERR when mutex_lock_interruptible() fails; tests/no-interrupt
 * and tests/vm/v4l2-poll.c). Cooperative task work (COOP_TASKRUN, 5.19)
 * only spares the IPI: the flag is still set and seen at the next system
 * call. Deferred task work (DEFER_TASKRUN with SINGLE_ISSUER, 6.1) sets no
 * flag on the thread at all: the work waits on the ring until the thread
 * enters the kernel to get completions, which next() does. TASKRUN_FLAG
 * tells a peek that work is waiting. The cooperative flags measured, with
 * tensorfd-bench on the 2-core VM, 1 subscriber spinning, against a plain
 * ring: one-way p50 13.9 -> 4.3 us, p99 17 -> 4.5 us; pipelined 64 B:
 * 54-74k -> 87-93k msg/s. Kernels refuse flags they lack with EINVAL, and
 * the next set is tried, down to a plain ring.
 */
static const unsigned int uring_setup_flags[] = {
#ifdef IORING_SETUP_DEFER_TASKRUN
	IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_TASKRUN_FLAG,
#endif
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	0,
};

/* Make the ring, with the first set of flags the kernel takes. */
static int uring_make(struct uring_priv *u)
{
	unsigned int i;
	int r = -EINVAL;

	for (i = 0; i < sizeof(uring_setup_flags) / sizeof(uring_setup_flags[0]); i++) {
		r = io_uring_queue_init(8, &u->ring, uring_setup_flags[i]);
		if (r != -EINVAL)
			break;
	}
	if (r < 0) {
		u->ring.ring_fd = -1;
		return r;
	}
	u->deferred = u->ring.flags & IORING_SETUP_SINGLE_ISSUER;
	u->thread = pthread_self();
	return 0;
}

static int uring_open(struct notify *n)
{
	struct uring_priv *u;
	int r;

	pthread_once(&atfork_once, atfork_register);
	u = calloc(1, sizeof(*u));
	if (!u)
		return fail_nomem();
	r = uring_make(u);
	if (r < 0) {
		free(u);
		return r;
	}
	u->generation = fork_generation;
	n->priv = u;
	r = uring_arm(n);
	if (r < 0) {
		io_uring_queue_exit(&u->ring);
		free(u);
		n->priv = NULL;
	}
	return r;
}

/*
 * Another thread takes over a channel whose deferred ring belongs to the
 * thread before (a channel belongs to one thread at a time, not forever):
 * the ring refuses it (-EEXIST), so it gets a ring of its own. A receive
 * that completed on the old ring is kept for next(), read from the ring's
 * memory without a system call; one still posted is cancelled by the kernel
 * when the old ring goes, before it took anything from the socket (it is
 * posted poll-first, and its task work only runs in the old thread's
 * io_uring_enter()). Users poll the socket, so their fd does not change.
 */
static int uring_move(struct notify *n)
{
	struct uring_priv *u = n->priv;
	struct io_uring_cqe *cqe;
	int r;

	if (u->ring.ring_fd >= 0) {
		while (__io_uring_peek_cqe(&u->ring, &cqe, NULL) == 0 && cqe) {
			if (cqe->user_data && u->armed) {
				u->cur = (unsigned int)cqe->user_data - 1;
				u->stash_res = cqe->res;
				u->stashed = true;
				u->armed = false;
			}
			io_uring_cqe_seen(&u->ring, cqe);
		}
		io_uring_queue_exit(&u->ring);
		u->ring.ring_fd = -1;
		u->armed = false;
	}
	/* no ring (out of fds, say): the next call tries again */
	r = uring_make(u);
	if (r < 0)
		return r;
	if (!u->stashed)
		return uring_arm(n);
	return 0;
}

static void uring_close(struct notify *n);

/* In a forked child, drop the parent's ring (without touching it) and make one. */
static int uring_own(struct notify *n)
{
	struct uring_priv *u = n->priv;

	if (u && u->generation == fork_generation) {
		if (u->ring.ring_fd < 0 ||
		    (u->deferred && !pthread_equal(u->thread, pthread_self())))
			return uring_move(n);
		return 0;
	}
	uring_close(n);
	return uring_open(n);
}

static int uring_next(struct notify *n, int timeout_ms, struct rx_packet *pkt)
{
	struct uring_priv *u;
	struct io_uring_cqe *cqe;
	struct rx_slot *s;
	int r, res;

	r = uring_own(n);
	if (r < 0)
		return r;
	u = n->priv;

	if (u->stashed) {
		u->stashed = false;
		res = u->stash_res;
		s = &u->slot[u->cur];
		goto got;
	}
	if (!u->armed) {
		r = uring_arm(n);
		if (r < 0)
			return r;
	}
	if (timeout_ms == 0) {
		r = io_uring_peek_cqe(&u->ring, &cqe);
	} else if (timeout_ms < 0) {
		r = io_uring_wait_cqe(&u->ring, &cqe);
	} else {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};

		r = io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts);
		if (r == -ETIME)
			r = -ETIMEDOUT;
	}
	if (r < 0)
		return r;
	res = cqe->res;
	s = &u->slot[cqe->user_data - 1];
	io_uring_cqe_seen(&u->ring, cqe);
got:
	u->armed = false;
	/* a peer that closed with our packets unread: see poll_next() */
	if (res == -ECONNRESET && !u->reset_seen) {
		u->reset_seen = true;
		return uring_next(n, timeout_ms, pkt);
	}
	if (res < 0)
		return res == -EAGAIN ? -EIO : res;
	packet_from_slot(s, res, pkt);
	/* an empty packet that brought fds is a packet, not the end */
	if (res == 0 && !pkt->nfds && !(pkt->msg_flags & MSG_CTRUNC))
		return -ECONNRESET;
	/* Post the next receive into the other slot before handing this one out. */
	u->cur ^= 1;
	r = uring_arm(n);
	if (r < 0) {
		peerfd_close_many(pkt->fds, pkt->nfds);
		pkt->nfds = 0;
		return r;
	}
	return 1;
}

static int uring_fd(struct notify *n)
{
	struct uring_priv *u;
	int r = uring_own(n);

	if (r < 0)
		return r;
	u = n->priv;
	return u->deferred ? n->sockfd : u->ring.ring_fd;
}

/*
 * A completion in the ring is a packet that next() returns at once. Only
 * that counts: the TASKRUN flag alone may stand for work that ends in no
 * packet, and a caller that trusted it could wait with releases unsent.
 */
static bool uring_pending(struct notify *n)
{
	struct uring_priv *u = n->priv;

	return u && u->generation == fork_generation &&
	       (u->stashed || (u->ring.ring_fd >= 0 && io_uring_cq_ready(&u->ring) > 0));
}

static void uring_close(struct notify *n)
{
	struct uring_priv *u = n->priv;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct rx_packet pkt;
	bool mine;

	if (!u)
		return;
	mine = u->generation == fork_generation;
	if (mine && u->stashed) {
		u->stashed = false;
		if (u->stash_res > 0) {
			packet_from_slot(&u->slot[u->cur], u->stash_res, &pkt);
			while (pkt.nfds)
				close(pkt.fds[--pkt.nfds]);
		}
	}
	/* another thread's deferred ring: take what completed; the kernel cancels the rest */
	if (mine && u->ring.ring_fd >= 0 && u->deferred &&
	    !pthread_equal(u->thread, pthread_self())) {
		while (__io_uring_peek_cqe(&u->ring, &cqe, NULL) == 0 && cqe) {
			if (cqe->user_data && cqe->res > 0) {
				packet_from_slot(&u->slot[cqe->user_data - 1], cqe->res, &pkt);
				while (pkt.nfds)
					close(pkt.fds[--pkt.nfds]);
			}
			io_uring_cqe_seen(&u->ring, cqe);
		}
		mine = false;
	}
	/* Cancel the posted receive; if it completed meanwhile, close what it brought. */
	if (u->armed && mine) {
		sqe = io_uring_get_sqe(&u->ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 1 + u->cur, 0);
			io_uring_sqe_set_data64(sqe, 0);
			io_uring_submit(&u->ring);
		}
		while (u->armed && io_uring_wait_cqe(&u->ring, &cqe) == 0) {
			if (cqe->user_data) {
				u->armed = false;
				if (cqe->res > 0) {
					packet_from_slot(&u->slot[cqe->user_data - 1], cqe->res, &pkt);
					peerfd_close_many(pkt.fds, pkt.nfds);
				}
			}
			io_uring_cqe_seen(&u->ring, cqe);
		}
	}
	if (u->ring.ring_fd >= 0)
		io_uring_queue_exit(&u->ring);
	free(u);
	n->priv = NULL;
}

const struct notify_ops notify_uring_ops = {
	.name = "io_uring",
	.open = uring_open,
	.next = uring_next,
	.fd = uring_fd,
	.pending = uring_pending,
	.close = uring_close,
};

/* --- poll(2) --- */

static int poll_open(struct notify *n)
{
	struct rx_slot *s = malloc(sizeof(*s));

	if (!s)
		return fail_nomem();
	n->priv = s;
	return 0;
}

static int poll_next(struct notify *n, int timeout_ms, struct rx_packet *pkt)
{
	struct rx_slot *s = n->priv;
	struct pollfd pfd = { .fd = n->sockfd, .events = POLLIN };
	unsigned int resets = 0;
	ssize_t len;
	int r;

	for (;;) {
		slot_reset(s);
		len = recvmsg(n->sockfd, &s->mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (len >= 0) {
			packet_from_slot(s, len, pkt);
			if (len == 0 && !pkt->nfds && !(pkt->msg_flags & MSG_CTRUNC))
				return -ECONNRESET;
			return 1;
		}
		/*
		 * A peer that closed a SEQPACKET socket with packets of ours
		 * unread makes our next receive fail with ECONNRESET once, before
		 * the packets it sent (unix_release_sock sets sk_err). Those are
		 * still to be read; the end of the stream follows them.
		 */
		if (errno == ECONNRESET && !resets++)
			continue;
		if (errno != EAGAIN)
			return -errno;
		if (timeout_ms == 0)
			return -EAGAIN;
		r = poll(&pfd, 1, timeout_ms);
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
	}
}

static int poll_fd(struct notify *n)
{
	return n->sockfd;
}

static void poll_close(struct notify *n)
{
	free(n->priv);
	n->priv = NULL;
}

const struct notify_ops notify_poll_ops = {
	.name = "poll",
	.open = poll_open,
	.next = poll_next,
	.fd = poll_fd,
	.close = poll_close,
};

int notify_open(struct notify *n, int sockfd)
{
	static bool warned;
	const char *env = getenv("TENSORFD_NOTIFY");
	int r;

	n->sockfd = sockfd;
	n->priv = NULL;
	if (!env || strcmp(env, "poll") != 0) {
		n->ops = &notify_uring_ops;
		r = n->ops->open(n);
		if (r == 0)
			return 0;
		/* blocked by seccomp or sysctl, or memlock-limited (before 5.12) */
		if (r != -EPERM && r != -ENOSYS && r != -EOPNOTSUPP && r != -EACCES && r != -ENOMEM)
			return r;
		if (!warned) {
			warned = true;
			tfd_log(TFD_LOG_WARNING, "io_uring unavailable (%s); using poll(2)",
				strerror(-r));
		}
	}
	n->ops = &notify_poll_ops;
	return n->ops->open(n);
}

void notify_close(struct notify *n)
{
	if (n->ops)
		n->ops->close(n);
	n->ops = NULL;
}
