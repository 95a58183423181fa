/* SPDX-License-Identifier: MIT */
/*
 * Topics: one publisher, any number of subscribers, no broker.
 *
 * The publisher listens on the topic's socket and keeps one channel per
 * subscriber. A published message goes to every subscriber that has room
 * (fewer than `depth` messages in flight); for one that has none it waits
 * in that subscriber's queue, where the drop policy keeps the newest
 * `depth` and drops the oldest, or publish waits for room (TFD_BLOCK).
 * Sends never block on a subscriber: a full socket queues too. Messages
 * carry the topic's sequence number, the same for every subscriber, so a
 * subscriber counts what was dropped for it from the gaps.
 *
 * A connection is a subscriber once its first packet is a HELLO; one that
 * asks for introspection (WIRE_INFO_REQUEST) gets the publisher's state in
 * one packet and is closed, without counting it anywhere. Until the first
 * packet arrives a connection waits in a short pending table and owes
 * nothing: one that sends anything else first, says nothing for
 * PENDING_MS, or is the oldest when the table is full, is closed.
 *
 * What subscribers pin is bounded: when a loan finds the pool full, the
 * oldest messages waiting in queues are dropped (drop-oldest), then the
 * subscriber holding the oldest message more than two windows behind the
 * topic is let go (REFUSE, ENOBUFS), until the loan fits. So the messages
 * subscribers hold are among the newest 2 * depth, however many there are.
 *
 * A subscriber connects when the publisher's socket appears, retrying
 * every ATTACH_RETRY_MS, and again after the publisher went away. Its fd
 * is an epoll set holding the channel's fd while attached and a timer
 * while not, so an event loop sees one stable fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "internal.h"
#include "gpu.h"
#include "pool.h"
#include "wire.h"

#define DEFAULT_DEPTH 16
#define ATTACH_RETRY_MS 20
#define PENDING_MAX 16		/* connections whose first packet has not come */
#define PENDING_MS 1000		/* then they are closed */

struct peer {
	struct tfd_channel *ch;
	struct tfd_subscriber_info info;
	struct tfd_message **q;		/* waiting for room, oldest first */
	unsigned int q_head, q_len;
};

struct pending {
	struct tfd_channel *ch;
	uint64_t since;
};

struct tfd_publisher {
	unsigned int refs;
	unsigned int flags;
	char topic[TFD_TOPIC_MAX + 1];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct tfd_listener *listener;
	int epfd;
	struct pool pool;
	struct peer **peers;
	size_t n_peers, cap_peers;
	unsigned int depth;
	enum tfd_drop_policy policy;
	int block_timeout_ms;
	uint32_t *uids, *gids;
	size_t n_uids, n_gids;
	uint64_t seq;
	uint64_t accept_paused_until;	/* out of fds: the listener rests */
	uint64_t next_accept_look;	/* publish and loan look at most every ms */
	pid_t owner;
	uint64_t created;
	struct pending pending[PENDING_MAX];
	unsigned int n_pending;
	struct tfd_message *latched;
	struct tfd_publisher_stats stats;
	char err[256];
};

struct tfd_subscriber {
	unsigned int refs;
	char topic[TFD_TOPIC_MAX + 1];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct tfd_channel *ch;
	int epfd, timerfd;
	uint64_t next_attempt;
	int refused;		/* sticky: the publisher will not serve us, or we not it */
	unsigned int flags;	/* TFD_SUBSCRIBER_* */
	pid_t owner;		/* a forked child shares epfd and timerfd: hands off */
	struct io_uring *wait_ring;
	struct tfd_subscriber_stats stats;
	char err[256];
	/* why a wait ends empty (tfd_subscriber_recv's -ETIMEDOUT says it) */
	int why_err;		/* the last attach's failure; 0 once attached */
	char why[512];		/* its reason */
	uint64_t gone_ns;	/* when the publisher went, 0: never attached */
	pid_t pub_pid;		/* the publisher attached to (SO_PEERCRED) */
};

static int pub_fail(struct tfd_publisher *pub, int err, const char *what)
{
	return tfd_fail(pub->err, sizeof(pub->err), err, "%s: %s", what, tfd_last_error());
}

/* --- publisher: subscribers --- */

/*
 * A message waiting in a subscriber's queue, or kept latched, will still be
 * read from its buffers: it lends them as a send does (once per buffer),
 * so that "rewrite it when tfd_buffer_loans() is 0" holds for buffers that
 * pass through without a copy.
 */
static void lend(struct tfd_message *m, int delta)
{
	unsigned int i, j;

	for (i = 0; i < m->n; i++) {
		for (j = 0; j < i && m->t[j].buf != m->t[i].buf; j++)
			;
		if (j == i)
			m->t[i].buf->loans += (unsigned int)delta;
	}
}

/* Take the oldest message off a subscriber's queue; the caller owns its reference. */
static struct tfd_message *peer_dequeue(struct tfd_publisher *pub, struct peer *p)
{
	struct tfd_message *m = p->q[p->q_head];

	p->q_head = (p->q_head + 1) % pub->depth;
	p->q_len--;
	lend(m, -1);
	return m;
}

/* Keep m (or nothing) for subscribers that attach later; it lends its buffers meanwhile. */
static void latch(struct tfd_publisher *pub, struct tfd_message *m)
{
	if (pub->latched) {
		lend(pub->latched, -1);
		tfd_message_unref(pub->latched);
	}
	pub->latched = tfd_message_ref(m);
	if (m)
		lend(m, 1);
}

static void peer_free(struct tfd_publisher *pub, struct peer *p)
{
	/* a forked child shares the epoll set with its parent: hands off */
	int fd = pub->owner == getpid() ? tfd_channel_get_fd(p->ch) : -1;

	if (fd >= 0)
		epoll_ctl(pub->epfd, EPOLL_CTL_DEL, fd, NULL);
	while (p->q_len)
		tfd_message_unref(peer_dequeue(pub, p));
	/* the channel returns every loan of this subscriber as it goes */
	tfd_channel_unref(p->ch);
	free(p->q);
	free(p);
}

static void peer_remove(struct tfd_publisher *pub, size_t i, int err)
{
	struct peer *p = pub->peers[i];

	tfd_log(TFD_LOG_INFO, "topic %s: subscriber pid %d left (%s)", pub->topic, p->info.pid,
		strerror(-err));
	pub->peers[i] = pub->peers[--pub->n_peers];
	peer_free(pub, p);
}

static bool peer_has_room(const struct tfd_publisher *pub, const struct peer *p)
{
	return channel_in_flight(p->ch) < pub->depth;
}

/* Send queued messages while there is room. < 0: the subscriber is gone. */
static int peer_flush(struct tfd_publisher *pub, struct peer *p)
{
	struct tfd_message *m;
	int r;

	while (p->q_len && peer_has_room(pub, p)) {
		m = p->q[p->q_head];
		r = channel_send_seq(p->ch, m, m->seq, m->timestamp);
		if (r == -ETIMEDOUT)
			return 0;	/* its socket is full: later */
		if (r < 0)
			return r;
		/* sent: the channel's loan has taken over from the queue's */
		tfd_message_unref(peer_dequeue(pub, p));
		p->info.delivered++;
	}
	return 0;
}

static void peer_enqueue(struct tfd_publisher *pub, struct peer *p, struct tfd_message *m)
{
	if (p->q_len == pub->depth) {
		/* keep the newest: the oldest waiting message goes */
		tfd_message_unref(peer_dequeue(pub, p));
		p->info.dropped++;
		pub->stats.dropped++;
	}
	lend(m, 1);
	p->q[(p->q_head + p->q_len++) % pub->depth] = tfd_message_ref(m);
}

static int peer_deliver(struct tfd_publisher *pub, struct peer *p, struct tfd_message *m)
{
	int r;

	if (!p->q_len && peer_has_room(pub, p)) {
		r = channel_send_seq(p->ch, m, m->seq, m->timestamp);
		if (r == 0) {
			p->info.delivered++;
			return 0;
		}
		if (r != -ETIMEDOUT)
			return r;
	}
	peer_enqueue(pub, p, m);
	return 0;
}

/*
 * The subscriber's supplementary groups, as SO_PEERGROUPS reports them for
 * the connected socket. At most `max`; 0 if the kernel does not say.
 */
static size_t peer_groups(int fd, gid_t *groups, size_t max)
{
	socklen_t len = (socklen_t)(max * sizeof(*groups));

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return 0;
	return len / sizeof(*groups);
}

/* Whether the allow lists admit this subscriber: its uid, gid or a supplementary group. */
static bool creds_allowed(const struct tfd_publisher *pub, int fd, const struct ucred *uc)
{
	gid_t groups[256];
	size_t i, j, n;

	if (!pub->n_uids && !pub->n_gids)
		return true;
	for (i = 0; i < pub->n_uids; i++)
		if (pub->uids[i] == uc->uid)
			return true;
	for (i = 0; i < pub->n_gids; i++)
		if (pub->gids[i] == uc->gid)
			return true;
	if (!pub->n_gids)
		return false;
	/* more than 256 groups: ERANGE, only the primary group counts (fail closed) */
	n = peer_groups(fd, groups, ARRAY_SIZE(groups));
	for (j = 0; j < n; j++)
		for (i = 0; i < pub->n_gids; i++)
			if (pub->gids[i] == groups[j])
				return true;
	return false;
}

static int peer_add(struct tfd_publisher *pub, struct tfd_channel *ch)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct ucred uc = { .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t len = sizeof(uc);
	struct peer *p, **peers;
	char reason[160];
	int fd, r;

	/* fail closed: unknown credentials must not pass as uid 0 */
	if (getsockopt(channel_sockfd(ch), SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0 ||
	    !creds_allowed(pub, channel_sockfd(ch), &uc)) {
		snprintf(reason, sizeof(reason), "uid %u gid %u may not subscribe to topic %s",
			 uc.uid, uc.gid, pub->topic);
		channel_refuse(ch, EACCES, reason);
		tfd_channel_unref(ch);
		pub->stats.refused++;
		tfd_fail(pub->err, sizeof(pub->err), -EACCES, "refused pid %d: %s", uc.pid, reason);
		tfd_log(TFD_LOG_WARNING, "%s", pub->err);
		return 0;
	}
	if (pub->n_peers == pub->cap_peers) {
		size_t cap = pub->cap_peers ? pub->cap_peers * 2 : 8;

		peers = realloc(pub->peers, cap * sizeof(*peers));
		if (!peers)
			goto nomem;
		pub->peers = peers;
		pub->cap_peers = cap;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		goto nomem;
	p->q = calloc(pub->depth, sizeof(*p->q));
	fd = tfd_channel_get_fd(ch);
	ev.data.ptr = p;
	if (!p->q || fd < 0 || epoll_ctl(pub->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		/* out of fds or memory: drop this one, it will try again */
		r = !p->q ? -ENOMEM : fd < 0 ? fd : -errno;
		free(p->q);
		free(p);
		tfd_channel_unref(ch);
		tfd_fail(pub->err, sizeof(pub->err), r, "cannot serve a new subscriber: %s",
			 strerror(-r));
		tfd_log(TFD_LOG_WARNING, "topic %s: %s", pub->topic, pub->err);
		return 0;
	}
	p->ch = ch;
	/* a subscriber only releases: a message or a forget from it is refused */
	channel_set_send_only(ch);
	p->info.pid = uc.pid;
	p->info.uid = uc.uid;
	p->info.gid = uc.gid;
	tfd_channel_set_send_timeout(ch, 0);
	pub->peers[pub->n_peers++] = p;
	pub->stats.attached_total++;
	tfd_log(TFD_LOG_INFO, "topic %s: subscriber pid %d uid %u attached", pub->topic, uc.pid,
		uc.uid);
	if (pub->latched) {
		r = peer_deliver(pub, p, pub->latched);
		if (r < 0)
			peer_remove(pub, pub->n_peers - 1, r);
	}
	return 1;
nomem:
	tfd_channel_unref(ch);
	return fail_nomem();
}

/* --- publisher: introspection and connections not yet classified --- */

enum first { FIRST_NONE, FIRST_INFO, FIRST_HELLO, FIRST_OTHER };

/* What the peer sent first, without taking it off the socket. */
static enum first first_packet(struct tfd_channel *ch)
{
	struct wire_hdr h;
	ssize_t n;

	/*
	 * A peek without control room drops no fd for good: the packet keeps
	 * its own reference, and the receive that takes it has room for all.
	 */
	n = recv(channel_sockfd(ch), &h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return FIRST_NONE;
	/* a request is answered, a hello makes a subscriber, anything else is closed */
	if (n == (ssize_t)sizeof(h) && h.magic == WIRE_MAGIC && h.type == WIRE_INFO_REQUEST)
		return FIRST_INFO;
	/* the channel checks the rest of the hello */
	if (n == (ssize_t)sizeof(h) && h.magic == WIRE_MAGIC && h.type == WIRE_HELLO)
		return FIRST_HELLO;
	return FIRST_OTHER;
}

static void info_fill(const struct tfd_publisher *pub, struct wire_info *w, size_t n_records)
{
	struct tfd_publisher_stats st;
	char comm[17] = "";
	size_t i;

	tfd_publisher_get_stats(pub, &st);
	memset(w, 0, sizeof(*w));
	wire_hdr_init(&w->h, WIRE_INFO,
		      (uint32_t)(sizeof(*w) + n_records * sizeof(struct wire_info_sub)));
	w->pid = (uint64_t)getpid();
	w->flags = pub->flags;
	w->depth = pub->depth;
	w->policy = pub->policy;
	w->n_subscribers = (uint32_t)pub->n_peers;
	w->n_records = (uint32_t)n_records;
	prctl(PR_GET_NAME, comm, 0, 0, 0);
	for (i = 0; i < sizeof(w->comm) - 1 && comm[i]; i++)
		w->comm[i] = comm[i] >= ' ' && comm[i] <= '~' ? comm[i] : '?';
	w->uptime_ns = tfd_now_ns() - pub->created;
	w->published = st.published;
	w->copied_tensors = st.copied_tensors;
	w->dropped = st.dropped;
	w->attached_total = st.attached_total;
	w->refused = st.refused;
	w->pool_buffers = st.pool_buffers;
	w->pool_bytes = st.pool_bytes;
	w->pool_buffers_busy = st.pool_buffers_busy;
	w->pool_bytes_busy = st.pool_bytes_busy;
}

/*
 * Answer an introspection request and close. One non-blocking send of at
 * most WIRE_MAX_PACKET bytes: an asker that does not read loses its answer,
 * the publisher never waits for it.
 */
static void introspect(struct tfd_publisher *pub, struct tfd_channel *ch)
{
	struct ucred uc = { .uid = (uid_t)-1, .gid = (gid_t)-1 };
	struct wire_info_request req;
	char in[sizeof(req)], err[256], reason[160];
	struct tfd_subscriber_info si;
	socklen_t len = sizeof(uc);
	struct wire_info_sub *sub;
	struct wire_info *w;
	size_t n_rec, i;
	ssize_t n;
	int r;

	/* fds sent along are a protocol error, closed where they cannot block us */
	n = channel_recv_bare(ch, in, sizeof(in), err, sizeof(err));
	if (n < 0 && n != -EBADMSG)
		goto out;
	r = n < 0 ? (int)n : wire_check_header(in, (size_t)n, err, sizeof(err));
	if (r >= 0)
		r = wire_decode_info_request(in, (size_t)n, &req, err, sizeof(err));
	if (r < 0) {
		tfd_log(TFD_LOG_WARNING, "topic %s: bad introspection request: %s", pub->topic, err);
		channel_refuse(ch, EPROTO, err);
		goto out;
	}
	if (getsockopt(channel_sockfd(ch), SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0 ||
	    !creds_allowed(pub, channel_sockfd(ch), &uc)) {
		snprintf(reason, sizeof(reason), "uid %u gid %u may not look at topic %s", uc.uid,
			 uc.gid, pub->topic);
		channel_refuse(ch, EACCES, reason);
		pub->stats.refused++;
		tfd_log(TFD_LOG_WARNING, "topic %s: refused introspection by pid %d: %s",
			pub->topic, uc.pid, reason);
		goto out;
	}
	n_rec = pub->n_peers < req.max_subscribers ? pub->n_peers : req.max_subscribers;
	if (n_rec > WIRE_INFO_MAX_SUBS)
		n_rec = WIRE_INFO_MAX_SUBS;
	w = malloc(sizeof(*w) + n_rec * sizeof(*sub));
	if (!w)
		goto out;
	info_fill(pub, w, n_rec);
	sub = (struct wire_info_sub *)(w + 1);
	for (i = 0; i < n_rec; i++) {
		tfd_publisher_get_subscriber(pub, (unsigned int)i, &si);
		sub[i] = (struct wire_info_sub){ .pid = si.pid, .uid = si.uid, .gid = si.gid,
						 .queued = si.queued, .in_flight = si.in_flight,
						 .delivered = si.delivered, .dropped = si.dropped };
	}
	if (send(channel_sockfd(ch), w, w->h.len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		tfd_log(TFD_LOG_DEBUG, "topic %s: introspection by pid %d: %s", pub->topic, uc.pid,
			strerror(errno));
	free(w);
out:
	tfd_channel_unref(ch);
}

static void pending_del(struct tfd_publisher *pub, unsigned int i)
{
	if (pub->owner == getpid())
		epoll_ctl(pub->epfd, EPOLL_CTL_DEL, channel_sockfd(pub->pending[i].ch), NULL);
	pub->pending[i] = pub->pending[--pub->n_pending];
}

/* A connection that did not start with a hello or a request: it owes nothing, it gets nothing. */
static void pending_drop(struct tfd_publisher *pub, struct tfd_channel *ch, const char *why)
{
	tfd_log(TFD_LOG_DEBUG, "topic %s: closed a connection that %s", pub->topic, why);
	tfd_channel_unref(ch);
}

static int pending_add(struct tfd_publisher *pub, struct tfd_channel *ch)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct tfd_channel *oldest;
	unsigned int i, o = 0;

	if (pub->n_pending == PENDING_MAX) {
		/* full: the one waiting longest goes (a real peer says hello at once) */
		for (i = 1; i < pub->n_pending; i++)
			if (pub->pending[i].since < pub->pending[o].since)
				o = i;
		oldest = pub->pending[o].ch;
		pending_del(pub, o);
		pending_drop(pub, oldest, "waited longest among too many silent ones");
	}
	if (epoll_ctl(pub->epfd, EPOLL_CTL_ADD, channel_sockfd(ch), &ev) < 0) {
		pending_drop(pub, ch, "could not be watched");
		return 0;
	}
	pub->pending[pub->n_pending++] = (struct pending){ .ch = ch, .since = tfd_now_ns() };
	return 0;
}

/* A new connection: a subscriber, an introspector, or not known yet. > 0: handled. */
static int serve_new(struct tfd_publisher *pub, struct tfd_channel *ch)
{
	switch (first_packet(ch)) {
	case FIRST_INFO:
		introspect(pub, ch);
		return 1;
	case FIRST_NONE:
		return pending_add(pub, ch);
	case FIRST_HELLO:
		return peer_add(pub, ch);
	default:
		pending_drop(pub, ch, "did not start with a hello");
		return 1;
	}
}

static int pending_process(struct tfd_publisher *pub)
{
	uint64_t now = tfd_now_ns();
	struct tfd_channel *ch;
	enum first f;
	unsigned int i;
	int n = 0, r;

	for (i = 0; i < pub->n_pending;) {
		ch = pub->pending[i].ch;
		f = first_packet(ch);
		if (f == FIRST_NONE && now - pub->pending[i].since < PENDING_MS * 1000000ull) {
			i++;
			continue;
		}
		pending_del(pub, i);
		if (f == FIRST_INFO) {
			introspect(pub, ch);
			n++;
			continue;
		}
		if (f != FIRST_HELLO) {
			pending_drop(pub, ch, f == FIRST_NONE ? "said nothing for a second"
							      : "did not start with a hello");
			n++;
			continue;
		}
		r = peer_add(pub, ch);
		if (r < 0)
			return r;
		n += r;
	}
	return n;
}

#define ACCEPT_PAUSE_MS 100

/*
 * Out of fds, a pending connection stays queued and the listener stays
 * readable: take it out of the epoll set for a while instead of spinning.
 */
static void accept_pause(struct tfd_publisher *pub, int err)
{
	if (pub->accept_paused_until)
		return;
	epoll_ctl(pub->epfd, EPOLL_CTL_DEL, tfd_listener_get_fd(pub->listener), NULL);
	pub->accept_paused_until = tfd_now_ns() + ACCEPT_PAUSE_MS * 1000000ull;
	tfd_log(TFD_LOG_WARNING, "topic %s: accept: %s; new subscribers wait %d ms", pub->topic,
		strerror(-err), ACCEPT_PAUSE_MS);
}

/*
 * Whether to look at the listener and the pending connections now: always
 * from dispatch; from publish and loan at most once a millisecond, since
 * a poll(2) or a peek per publish would be system calls on the hot path.
 */
static bool look_due(struct tfd_publisher *pub, bool always)
{
	uint64_t now = tfd_now_ns();

	if (!always && now < pub->next_accept_look)
		return false;
	pub->next_accept_look = now + 1000000;
	return true;
}

static bool listener_pending(struct tfd_publisher *pub)
{
	struct pollfd pfd = { .fd = tfd_listener_get_fd(pub->listener), .events = POLLIN };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	if (pub->accept_paused_until) {
		if (tfd_now_ns() < pub->accept_paused_until)
			return false;
		pub->accept_paused_until = 0;
		epoll_ctl(pub->epfd, EPOLL_CTL_ADD, pfd.fd, &ev);
	}
	return poll(&pfd, 1, 0) == 1;
}

/*
 * One pass over everything without waiting: returns events handled.
 * from_dispatch: the application waits for events, look at the listener
 * now; publish and loan look at it at most once a millisecond.
 */
static int pub_process(struct tfd_publisher *pub, bool from_dispatch)
{
	bool look = look_due(pub, from_dispatch);
	struct tfd_channel *ch;
	size_t i;
	int n = 0, r;

	/* a failing accept4() costs a socket allocation: look first */
	while (look && listener_pending(pub)) {
		r = tfd_listener_accept(pub->listener, 0, &ch);
		if (r == -EAGAIN)
			break;
		if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
			accept_pause(pub, r);
			break;
		}
		if (r < 0) {
			tfd_log(TFD_LOG_WARNING, "topic %s: accept: %s", pub->topic, strerror(-r));
			break;
		}
		/* one subscriber that cannot be added does not stop the others */
		if (serve_new(pub, ch) > 0)
			n++;
	}
	if (look && pub->n_pending) {
		r = pending_process(pub);
		if (r > 0)
			n += r;
	}
	for (i = 0; i < pub->n_peers;) {
		struct peer *p = pub->peers[i];

		r = tfd_channel_dispatch(p->ch, 0);
		/* a full socket delayed a FORGET: the subscriber is slow, not gone */
		if (r == -ETIMEDOUT || r == -EINTR)
			r = 0;
		if (r >= 0) {
			n += r;
			r = peer_flush(pub, p);
		}
		if (r < 0) {
			peer_remove(pub, i, r);
			n++;
			continue;
		}
		i++;
	}
	return n;
}

static int pub_wait(struct tfd_publisher *pub, int timeout_ms)
{
	struct epoll_event ev[16];
	int r;

	/*
	 * EINTR is a wake-up, not a failure: io_uring task work for the
	 * channels' posted receives interrupts epoll_wait() (TIF_NOTIFY_SIGNAL)
	 * without any signal; the caller processes and returns, as for one.
	 */
	/* a resting listener is looked at again when its pause ends */
	if (pub->accept_paused_until && (timeout_ms < 0 || timeout_ms > ACCEPT_PAUSE_MS))
		timeout_ms = ACCEPT_PAUSE_MS;
	/* and a pending connection when it has waited long enough */
	if (pub->n_pending && (timeout_ms < 0 || timeout_ms > PENDING_MS))
		timeout_ms = PENDING_MS;
	r = epoll_wait(pub->epfd, ev, 16, timeout_ms);
	if (r < 0 && errno != EINTR)
		return -errno;
	return 0;
}

TFD_EXPORT int tfd_publisher_dispatch(struct tfd_publisher *pub, int timeout_ms)
{
	int n, r;

	if (!pub)
		return fail_args();
	n = pub_process(pub, true);
	if (n != 0 || timeout_ms == 0)
		return n;
	r = pub_wait(pub, timeout_ms);
	if (r < 0)
		return r;
	return pub_process(pub, true);
}

/* TFD_BLOCK: wait until every subscriber has room, or the timeout passes. */
static int pub_wait_room(struct tfd_publisher *pub)
{
	uint64_t deadline = deadline_after(pub->block_timeout_ms);
	size_t i;
	int r, ms;

	for (;;) {
		for (i = 0; i < pub->n_peers; i++)
			if (pub->peers[i]->q_len || !peer_has_room(pub, pub->peers[i]))
				break;
		if (i == pub->n_peers)
			return 0;
		ms = ms_left(deadline, -1);
		if (ms == 0)
			return tfd_fail(pub->err, sizeof(pub->err), -ETIMEDOUT,
					"subscriber pid %d has no room (blocking policy, %d ms)",
					pub->peers[i]->info.pid, pub->block_timeout_ms);
		r = pub_wait(pub, ms);
		if (r < 0)
			return r;
		r = pub_process(pub, true);
		if (r < 0)
			return r;
	}
}

/* --- publisher: lifecycle and settings --- */

TFD_EXPORT int tfd_publisher_new(const char *topic, unsigned int flags, struct tfd_publisher **ret)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct tfd_publisher *pub;
	struct topic_place place;
	int r;

	if (!ret || (flags & ~(TFD_PUBLISHER_LATCHED | TFD_PUBLISHER_ZERO_COPY |
			       TFD_PUBLISHER_READONLY_DMABUF)))
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_publisher_new");
	pub = calloc(1, sizeof(*pub));
	if (!pub)
		return fail_nomem();
	pub->refs = 1;
	pub->owner = getpid();
	pub->created = tfd_now_ns();
	pub->flags = flags;
	pub->epfd = -1;
	pub->depth = DEFAULT_DEPTH;
	pub->policy = TFD_DROP_OLDEST;
	pub->block_timeout_ms = 1000;
	pool_init(&pub->pool);
	topic = topic_name(topic);
	r = tfd_topic_path(topic, pub->path, sizeof(pub->path));
	if (r < 0)
		goto fail;
	snprintf(pub->topic, sizeof(pub->topic), "%s", topic);
	/* directories we or root own, not links; the socket's mode is the runtime directory's */
	r = topic_place_open(topic, TOPIC_CREATE, NULL, 0, &place);
	if (r < 0)
		goto fail;
	r = listener_new_at(place.dirfd, place.name, pub->path, (int)(place.mode & 0666),
			    &pub->listener);
	if (r < 0) {
		if (r == -EADDRINUSE)
			tfd_fail(NULL, 0, r, "topic %s already has a live publisher: %s", topic,
				 tfd_last_error());
		goto fail;
	}
	pub->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (pub->epfd < 0 ||
	    epoll_ctl(pub->epfd, EPOLL_CTL_ADD, tfd_listener_get_fd(pub->listener), &ev) < 0) {
		r = tfd_fail(NULL, 0, -errno, "epoll: %s", strerror(errno));
		goto fail;
	}
	*ret = pub;
	return 0;
fail:
	tfd_publisher_unref(pub);
	return r;
}

TFD_EXPORT struct tfd_publisher *tfd_publisher_ref(struct tfd_publisher *pub)
{
	if (pub)
		pub->refs++;
	return pub;
}

TFD_EXPORT struct tfd_publisher *tfd_publisher_unref(struct tfd_publisher *pub)
{
	if (!pub || --pub->refs > 0)
		return NULL;
	/* first the listener, so no subscriber re-attaches to a dying publisher */
	pub->listener = tfd_listener_unref(pub->listener);
	while (pub->n_pending) {
		struct tfd_channel *ch = pub->pending[0].ch;

		pending_del(pub, 0);
		tfd_channel_unref(ch);
	}
	while (pub->n_peers)
		peer_remove(pub, pub->n_peers - 1, -ESHUTDOWN);
	free(pub->peers);
	latch(pub, NULL);
	pool_free(&pub->pool);
	if (pub->epfd >= 0)
		close(pub->epfd);
	free(pub->uids);
	free(pub->gids);
	free(pub);
	return NULL;
}

TFD_EXPORT int tfd_publisher_set_pool_limits(struct tfd_publisher *pub, unsigned int max_buffers,
					     uint64_t max_bytes)
{
	if (!pub || !max_buffers || !max_bytes)
		return fail_args();
	pub->pool.max_buffers = max_buffers;
	pub->pool.max_bytes = max_bytes;
	return 0;
}

TFD_EXPORT int tfd_publisher_set_queue(struct tfd_publisher *pub, unsigned int depth,
				       enum tfd_drop_policy policy, int block_timeout_ms)
{
	if (!pub || depth == 0 || depth > 65536 || block_timeout_ms < -1 ||
	    (policy != TFD_DROP_OLDEST && policy != TFD_BLOCK))
		return fail_args();
	if (pub->n_peers)
		return tfd_fail(pub->err, sizeof(pub->err), -EBUSY,
				"the queue depth is set before the first subscriber attaches");
	pub->depth = depth;
	pub->policy = policy;
	pub->block_timeout_ms = block_timeout_ms;
	return 0;
}

static int id_append(uint32_t **ids, size_t *n, uint32_t id)
{
	uint32_t *v = realloc(*ids, (*n + 1) * sizeof(*v));

	if (!v)
		return fail_nomem();
	v[(*n)++] = id;
	*ids = v;
	return 0;
}

TFD_EXPORT int tfd_publisher_allow_uid(struct tfd_publisher *pub, uint32_t uid)
{
	return pub ? id_append(&pub->uids, &pub->n_uids, uid) : -EINVAL;
}

TFD_EXPORT int tfd_publisher_allow_gid(struct tfd_publisher *pub, uint32_t gid)
{
	return pub ? id_append(&pub->gids, &pub->n_gids, gid) : -EINVAL;
}

/*
 * The pool is full: under drop-oldest, the oldest message still waiting in
 * any subscriber's queue goes first, counted as dropped for that
 * subscriber, as a full queue would drop it. Nobody has it yet, so this
 * costs no connection. Returns whether one was dropped.
 */
static bool drop_queued(struct tfd_publisher *pub)
{
	struct peer *p, *worst = NULL;
	size_t i;

	if (pub->policy != TFD_DROP_OLDEST)
		return false;
	for (i = 0; i < pub->n_peers; i++) {
		p = pub->peers[i];
		if (p->q_len && (!worst || p->q[p->q_head]->seq < worst->q[worst->q_head]->seq))
			worst = p;
	}
	if (!worst)
		return false;
	tfd_message_unref(peer_dequeue(pub, worst));
	worst->info.dropped++;
	pub->stats.dropped++;
	return true;
}

static void disown(struct tfd_buffer *b, void *pool)
{
	pool_disown(pool, b);
}

/*
 * The pool is full: let go of the subscriber furthest behind, if it holds
 * a message more than two windows older than the topic's newest (one that
 * keeps up holds newer ones, and its queue holds the newest depth). It
 * may still read what it holds: those buffers leave the pool rather than
 * be lent and rewritten, and the pool makes new ones in their place.
 * Returns whether one was let go.
 */
static bool reclaim(struct tfd_publisher *pub)
{
	uint64_t oldest, worst = UINT64_MAX, behind = 2ull * pub->depth;
	size_t i, w = SIZE_MAX;
	char reason[160];

	for (i = 0; i < pub->n_peers; i++) {
		oldest = channel_oldest_in_flight(pub->peers[i]->ch);
		if (oldest && oldest + behind <= pub->seq && oldest < worst) {
			worst = oldest;
			w = i;
		}
	}
	if (w == SIZE_MAX)
		return false;
	snprintf(reason, sizeof(reason),
		 "the publisher's pool is full and message %llu, %llu behind, is not released yet",
		 (unsigned long long)worst, (unsigned long long)(pub->seq - worst));
	tfd_log(TFD_LOG_WARNING, "topic %s: let subscriber pid %d go: %s", pub->topic,
		pub->peers[w]->info.pid, reason);
	channel_for_each_in_flight(pub->peers[w]->ch, disown, &pub->pool);
	channel_refuse(pub->peers[w]->ch, ENOBUFS, reason);
	peer_remove(pub, w, -ENOBUFS);
	return true;
}

/*
 * A pool buffer, releases already taken in by the caller's entry point:
 * publish's copies and the loan calls each process subscribers once, not
 * once per buffer.
 */
static int loan_buffer(struct tfd_publisher *pub, uint64_t size, struct tfd_buffer **ret)
{
	int r;

	r = pool_loan(&pub->pool, size, ret);
	/* a subscriber far behind does not make the loan fail for the others:
	 * waiting messages go first, then the subscriber furthest behind */
	while (r == -ENOBUFS && size <= pub->pool.max_bytes && (drop_queued(pub) || reclaim(pub)))
		r = pool_loan(&pub->pool, size, ret);
	if (r < 0)
		return pub_fail(pub, r, "loan");
	return 0;
}

TFD_EXPORT int tfd_publisher_loan(struct tfd_publisher *pub, uint64_t size, struct tfd_buffer **ret)
{
	if (!pub || !ret)
		return fail_args();
	/* buffers come back through releases: take them in first */
	pub_process(pub, false);
	return loan_buffer(pub, size, ret);
}

/* A pool buffer laid out for one dense tensor. */
static int loan_layout(struct tfd_publisher *pub, struct tfd_dtype dtype, int ndim,
		       const int64_t *shape, struct tfd_buffer **buf, struct tfd_layout *layout)
{
	struct tfd_layout l;
	uint64_t n;
	int r;

	r = tfd_layout_init(&l, dtype, ndim, shape);
	if (r < 0)
		return pub_fail(pub, r, "layout");
	r = tfd_layout_nbytes(&l, &n);
	if (r < 0)
		return pub_fail(pub, r, "layout");
	r = tfd_publisher_loan(pub, n ? n : 1, buf);
	if (r < 0)
		return r;
	*layout = l;
	return 0;
}

TFD_EXPORT int tfd_publisher_loan_tensor(struct tfd_publisher *pub, struct tfd_dtype dtype,
					 int ndim, const int64_t *shape, struct tfd_buffer **buf,
					 struct tfd_layout *layout)
{
	if (!pub || !buf || !layout)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_publisher_loan_tensor");
	return loan_layout(pub, dtype, ndim, shape, buf, layout);
}

TFD_EXPORT int tfd_publisher_loan_message(struct tfd_publisher *pub, const char *name,
					  struct tfd_dtype dtype, int ndim, const int64_t *shape,
					  struct tfd_message **ret)
{
	struct tfd_message *m = NULL;
	struct tfd_buffer *b;
	struct tfd_layout l;
	int r;

	if (!pub || !ret)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_publisher_loan_message");
	r = loan_layout(pub, dtype, ndim, shape, &b, &l);
	if (r < 0)
		return r;
	r = tfd_message_new(&m);
	if (r == 0)
		r = tfd_message_add_tensor(m, name, b, &l);
	/* the message holds the buffer now; the pool takes it back after the last release */
	tfd_buffer_unref(b);
	if (r < 0) {
		tfd_message_unref(m);
		return pub_fail(pub, r, "loan_message");
	}
	*ret = m;
	return 0;
}

TFD_EXPORT int tfd_publisher_add_copy(struct tfd_publisher *pub, struct tfd_message *msg,
				      const char *name, const void *data,
				      const struct tfd_layout *layout)
{
	struct tfd_buffer *b;
	struct tfd_layout l;
	uint64_t lo, hi;
	int r;

	if (!pub || !msg || !data || !layout)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_publisher_add_copy");
	r = message_check_mutable(msg);
	if (r < 0)
		return r;
	if (layout->device.type != TFD_DEVICE_CPU)
		return tfd_fail(NULL, 0, -EINVAL, "tensor '%s': only host memory is copied",
				name ? name : "");
	if (pub->flags & TFD_PUBLISHER_ZERO_COPY)
		return tfd_fail(pub->err, sizeof(pub->err), -EXDEV,
				"tensor '%s': the publisher requires zero-copy", name ? name : "");
	/* the bytes the tensor reaches from data, strides kept */
	r = tfd_layout_span(layout, &lo, &hi);
	if (r < 0)
		return r;
	r = tfd_publisher_loan(pub, hi > lo ? hi - lo : 1, &b);
	if (r < 0)
		return r;
	memcpy(b->map, (const char *)data + lo, hi - lo);
	l = *layout;
	l.byte_offset -= lo;
	r = tfd_message_add_tensor(msg, name, b, &l);
	tfd_buffer_unref(b);
	if (r < 0)
		return r;
	msg->t[msg->n - 1].flags |= TENSOR_COPIED;
	pub->stats.copied_tensors++;
	return 0;
}

TFD_EXPORT int tfd_publisher_send(struct tfd_publisher *pub, struct tfd_message *msg)
{
	int r;

	if (!pub || !msg)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_publisher_send");
	r = tfd_publisher_publish(pub, msg);
	tfd_message_unref(msg);
	return r;
}

TFD_EXPORT int tfd_publisher_wait_subscribers(struct tfd_publisher *pub, unsigned int n,
					      int timeout_ms)
{
	uint64_t deadline;
	int r, ms;

	if (!pub || timeout_ms < -1)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_publisher_wait_subscribers");
	deadline = deadline_after(timeout_ms);
	for (;;) {
		r = pub_process(pub, true);
		if (r < 0)
			return r;
		if (pub->n_peers >= n)
			return 0;
		ms = ms_left(deadline, -1);
		if (ms == 0)
			return tfd_fail(pub->err, sizeof(pub->err), -ETIMEDOUT,
					"%zu of %u subscribers of %s attached within %d ms",
					pub->n_peers, n, pub->topic, timeout_ms);
		r = pub_wait(pub, ms);
		if (r < 0)
			return r;
	}
}

/* Travels as it is: a pool buffer, or a dma-buf (device memory is never copied). */
static bool passes_through(const struct tfd_publisher *pub, const struct tfd_buffer *b)
{
	return pool_owns(&pub->pool, b) || b->kind == TFD_BUFFER_DMABUF || buffer_is_gpu(b);
}

/*
 * Name a published dma-buf "topic/tensor" once, so the kernel's dma-buf
 * accounting (debugfs bufinfo, fdinfo) shows who owns it. Best effort:
 * the kernel keeps 31 bytes, and a buffer the caller named keeps its name.
 */
static void name_dmabuf(const struct tfd_publisher *pub, struct tfd_buffer *b, const char *tensor)
{
	char name[TFD_TOPIC_MAX + TFD_NAME_MAX + 2];

	if (b->kind != TFD_BUFFER_DMABUF || b->named)
		return;
	snprintf(name, sizeof(name), "%s/%s", pub->topic, tensor);
	name[TFD_DMABUF_NAME_MAX - 1] = 0;
	if (tfd_dmabuf_set_name(b, name) < 0)
		b->named = true;	/* do not try on every publish */
}

/*
 * Every fd of a dma-buf shares the file mode it was exported with, and a
 * subscriber that receives an O_RDWR one can map it writable and change
 * the frames every other subscriber reads: with
 * TFD_PUBLISHER_READONLY_DMABUF such a message is refused.
 */
static int check_dmabuf_modes(struct tfd_publisher *pub, const struct tfd_message *msg)
{
	unsigned int i;
	int mode;

	if (!(pub->flags & TFD_PUBLISHER_READONLY_DMABUF))
		return 0;
	for (i = 0; i < msg->n; i++) {
		if (msg->t[i].buf->kind != TFD_BUFFER_DMABUF)
			continue;
		mode = fcntl(msg->t[i].buf->fd, F_GETFL);
		if (mode < 0 || (mode & O_ACCMODE) != O_RDONLY)
			return tfd_fail(pub->err, sizeof(pub->err), -EPERM,
					"tensor '%s': its dma-buf was exported writable (%s), any "
					"subscriber could map it writable, and the publisher "
					"publishes read-only dma-bufs only",
					msg->t[i].name, mode < 0 ? strerror(errno)
					: (mode & O_ACCMODE) == O_WRONLY ? "O_WRONLY" : "O_RDWR");
	}
	return 0;
}

/*
 * The message that goes out: always a new message object (the caller may
 * publish msg again while this one still waits in a queue), naming the
 * same pool buffers and dma-bufs, with other foreign tensors copied once
 * into pool buffers (their strides kept) and marked as copied.
 */
static int outgoing(struct tfd_publisher *pub, struct tfd_message *msg, struct tfd_message **ret)
{
	struct tfd_message *out;
	struct tfd_buffer *b;
	uint64_t lo, hi;
	unsigned int i;
	size_t ulen;
	const void *u;
	int r;

	r = check_dmabuf_modes(pub, msg);
	if (r < 0)
		return r;
	for (i = 0; i < msg->n && passes_through(pub, msg->t[i].buf); i++)
		;
	if (i < msg->n && (pub->flags & TFD_PUBLISHER_ZERO_COPY))
		return tfd_fail(pub->err, sizeof(pub->err), -EXDEV,
				"tensor '%s' is not loaned from the pool and the publisher requires zero-copy",
				msg->t[i].name);
	r = tfd_message_new(&out);
	if (r < 0)
		return r;
	for (i = 0; i < msg->n && r >= 0; i++) {
		struct tfd_layout l = msg->t[i].layout;

		if (passes_through(pub, msg->t[i].buf)) {
			name_dmabuf(pub, msg->t[i].buf, msg->t[i].name);
			r = tfd_message_add_tensor(out, msg->t[i].name, msg->t[i].buf, &l);
			/* a copy made by tfd_publisher_add_copy() says so at the receiver */
			if (r >= 0)
				out->t[out->n - 1].flags |= msg->t[i].flags & TENSOR_COPIED;
			continue;
		}
		r = tfd_layout_span(&l, &lo, &hi);
		if (r >= 0)
			r = loan_buffer(pub, hi > lo ? hi - lo : 1, &b);
		if (r < 0)
			break;
		memcpy(b->map, (char *)msg->t[i].buf->map + lo, hi - lo);
		l.byte_offset -= lo;
		r = tfd_message_add_tensor(out, msg->t[i].name, b, &l);
		if (r >= 0)
			out->t[out->n - 1].flags |= TENSOR_COPIED;
		tfd_buffer_unref(b);
		pub->stats.copied_tensors++;
	}
	u = tfd_message_get_user_data(msg, &ulen);
	if (r >= 0)
		r = tfd_message_set_user_data(out, u, ulen);
	if (r < 0) {
		tfd_message_unref(out);
		return r;
	}
	*ret = out;
	return 0;
}

TFD_EXPORT int tfd_publisher_publish(struct tfd_publisher *pub, struct tfd_message *msg)
{
	struct tfd_message *out;
	size_t i;
	int r;

	if (!pub || !msg)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_publisher_publish");
	if (msg->published)
		return tfd_fail(pub->err, sizeof(pub->err), -EBUSY,
				"the message was published already (seq %llu): make a new message "
				"for each publish", (unsigned long long)msg->seq);
	r = pub_process(pub, false);
	if (r < 0)
		return r;
	if (pub->policy == TFD_BLOCK) {
		r = pub_wait_room(pub);
		if (r < 0)
			return r;
	}
	r = outgoing(pub, msg, &out);
	if (r < 0)
		return r;
	out->seq = ++pub->seq;
	out->timestamp = tfd_now_ns();
	if (out != msg && !msg->received) {
		msg->seq = out->seq;
		msg->timestamp = out->timestamp;
	}
	for (i = 0; i < pub->n_peers;) {
		r = peer_deliver(pub, pub->peers[i], out);
		if (r < 0) {
			peer_remove(pub, i, r);
			continue;
		}
		i++;
	}
	if (pub->flags & TFD_PUBLISHER_LATCHED)
		latch(pub, out);
	tfd_message_unref(out);
	pub->stats.published++;
	msg->published = true;
	return 0;
}

TFD_EXPORT int tfd_publisher_get_fd(const struct tfd_publisher *pub)
{
	return pub ? pub->epfd : -EINVAL;
}

TFD_EXPORT int tfd_publisher_get_stats(const struct tfd_publisher *pub,
				       struct tfd_publisher_stats *stats)
{
	if (!pub || !stats)
		return fail_args();
	*stats = pub->stats;
	stats->subscribers = pub->n_peers;
	pool_stats(&pub->pool, &stats->pool_buffers, &stats->pool_bytes, &stats->pool_buffers_busy,
		   &stats->pool_bytes_busy);
	return 0;
}

TFD_EXPORT int tfd_publisher_get_subscriber(const struct tfd_publisher *pub, unsigned int index,
					    struct tfd_subscriber_info *info)
{
	const struct peer *p;

	if (!pub || !info)
		return fail_args();
	if (index >= pub->n_peers)
		return -ENOENT;
	p = pub->peers[index];
	*info = p->info;
	info->queued = p->q_len;
	info->in_flight = channel_in_flight(p->ch);
	return 0;
}

TFD_EXPORT const char *tfd_publisher_path(const struct tfd_publisher *pub)
{
	return pub ? pub->path : NULL;
}

TFD_EXPORT const char *tfd_publisher_strerror(const struct tfd_publisher *pub)
{
	return pub ? pub->err : NULL;
}

/* --- subscriber --- */

static void timer_arm(struct tfd_subscriber *sub, bool on)
{
	struct itimerspec its = { 0 };

	if (on) {
		its.it_value.tv_nsec = ATTACH_RETRY_MS * 1000000L;
		its.it_interval.tv_nsec = ATTACH_RETRY_MS * 1000000L;
	}
	timerfd_settime(sub->timerfd, 0, &its, NULL);
}

static void sub_detach(struct tfd_subscriber *sub)
{
	int fd;

	if (!sub->ch)
		return;
	fd = tfd_channel_get_fd(sub->ch);
	if (fd >= 0)
		epoll_ctl(sub->epfd, EPOLL_CTL_DEL, fd, NULL);
	/* messages already received stay valid: they hold their own mappings */
	sub->ch = tfd_channel_unref(sub->ch);
	sub->stats.connected = false;
	sub->gone_ns = tfd_now_ns();
	timer_arm(sub, true);
}

static pid_t sock_peer_pid(int fd)
{
	struct ucred uc = { 0 };
	socklen_t len = sizeof(uc);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0 ? 0 : uc.pid;
}

/*
 * A wait that ends with nothing says why, as precisely as the subscriber
 * knows: it holds every message the publisher will send it unreleased;
 * the publisher is there and quiet; it went away; there is no socket (and
 * what is there instead); or the last attach failed for a reason of its own.
 */
static int sub_empty(struct tfd_subscriber *sub, int r, int timeout_ms)
{
	size_t held;

	if (sub->ch) {
		held = channel_held(sub->ch);
		if (held)
			return tfd_fail(sub->err, sizeof(sub->err), r,
					"no message of %s within %d ms: this subscriber holds %zu "
					"unreleased messages of it, and its publisher (pid %d) sends "
					"no more than its queue depth (16 by default) unreleased: "
					"release them (tfd_message_unref; in Python, let go of the "
					"message and its tensors, or .clone() what you keep)",
					sub->topic, timeout_ms, held, (int)sub->pub_pid);
		return tfd_fail(sub->err, sizeof(sub->err), r,
				"no message of %s within %d ms: its publisher (pid %d) is attached "
				"and published nothing for this subscriber", sub->topic, timeout_ms,
				(int)sub->pub_pid);
	}
	if (sub->gone_ns && sub->why_err == -ENOENT)
		return tfd_fail(sub->err, sizeof(sub->err), r,
				"publisher of %s (pid %d) gone %.1f s ago; waiting for a new one: %s",
				sub->topic, (int)sub->pub_pid,
				(double)(tfd_now_ns() - sub->gone_ns) / 1e9, sub->why);
	if (sub->why_err == -ENOENT || !sub->why_err)
		return tfd_fail(sub->err, sizeof(sub->err), r, "no publisher of %s: %s",
				sub->topic, sub->why_err ? sub->why : "not attached yet");
	return tfd_fail(sub->err, sizeof(sub->err), r, "publisher of %s not reached: %s",
			sub->topic, sub->why);
}

static int sub_attach(struct tfd_subscriber *sub)
{
	struct epoll_event ev = { .events = EPOLLIN };
	uint64_t now = tfd_now_ns(), drain;
	struct tfd_channel *ch;
	struct sockaddr_un via;
	socklen_t vialen;
	bool foreign = false;
	char err[256];
	int r, fd;

	if (now < sub->next_attempt)
		return -ENOENT;
	sub->next_attempt = now + ATTACH_RETRY_MS * 1000000ull;
	/* the socket itself, reached without links through a tree we trust */
	fd = topic_socket_open(sub->topic,
			       sub->flags & TFD_SUBSCRIBER_SAME_USER ? TOPIC_SAME_USER : 0, err,
			       sizeof(err), &via, &vialen, &foreign);
	if (fd < 0) {
		if (fd != -ENOENT)
			snprintf(sub->err, sizeof(sub->err), "%s", err);
		/* the hint looks around the directory: once per change of cause */
		if (fd == -ENOENT && sub->why_err != -ENOENT)
			topic_absent_hint(sub->topic, sub->why, sizeof(sub->why));
		else if (fd != -ENOENT)
			snprintf(sub->why, sizeof(sub->why), "%s", err);
		sub->why_err = fd;
		/* a socket of another user: as final as SO_PEERCRED's answer below */
		if (foreign)
			sub->refused = -EACCES;
		return fd;
	}
	/* never waits: a full listener queue is tried again, within recv's timeout */
	r = channel_connect(via.sun_path, 0, &ch);
	close(fd);
	if (r < 0) {
		sub->why_err = r;
		snprintf(sub->why, sizeof(sub->why), "%s", tfd_last_error());
		return r;
	}
	if (sub->flags & TFD_SUBSCRIBER_SAME_USER) {
		struct ucred uc = { .uid = (uid_t)-1 };
		socklen_t len = sizeof(uc);

		/* the credentials of the process that created the socket; fail closed */
		if (getsockopt(channel_sockfd(ch), SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0 ||
		    uc.uid != geteuid()) {
			tfd_fail(sub->err, sizeof(sub->err), -EACCES,
				 "publisher of %s (pid %d) runs as uid %u, not as this process's "
				 "uid %u (TFD_SUBSCRIBER_SAME_USER)", sub->topic, uc.pid, uc.uid,
				 geteuid());
			tfd_channel_unref(ch);
			sub->refused = -EACCES;
			return -EACCES;
		}
	}
	fd = tfd_channel_get_fd(ch);
	if (fd < 0 || epoll_ctl(sub->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		tfd_channel_unref(ch);
		return fd < 0 ? fd : -errno;
	}
	sub->ch = ch;
	sub->why_err = 0;
	sub->pub_pid = sock_peer_pid(channel_sockfd(ch));
	sub->stats.connected = true;
	sub->stats.attaches++;
	/* a new publisher counts from 1 again */
	sub->stats.last_seq = 0;
	timer_arm(sub, false);
	while (read(sub->timerfd, &drain, sizeof(drain)) > 0)
		;
	return 0;
}

TFD_EXPORT int tfd_subscriber_new(const char *topic, unsigned int flags,
				  struct tfd_subscriber **ret)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct tfd_subscriber *sub;
	int r;

	if (!ret || (flags & ~TFD_SUBSCRIBER_SAME_USER))
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_subscriber_new");
	sub = calloc(1, sizeof(*sub));
	if (!sub)
		return fail_nomem();
	sub->refs = 1;
	sub->epfd = -1;
	sub->timerfd = -1;
	sub->owner = getpid();
	sub->flags = flags;
	topic = topic_name(topic);
	r = tfd_topic_path(topic, sub->path, sizeof(sub->path));
	if (r < 0)
		goto fail;
	snprintf(sub->topic, sizeof(sub->topic), "%s", topic);
	sub->epfd = epoll_create1(EPOLL_CLOEXEC);
	sub->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	ev.data.fd = sub->timerfd;
	if (sub->epfd < 0 || sub->timerfd < 0 ||
	    epoll_ctl(sub->epfd, EPOLL_CTL_ADD, sub->timerfd, &ev) < 0) {
		r = tfd_fail(NULL, 0, -errno, "epoll/timerfd: %s", strerror(errno));
		goto fail;
	}
	timer_arm(sub, true);
	sub_attach(sub);
	*ret = sub;
	return 0;
fail:
	tfd_subscriber_unref(sub);
	return r;
}

TFD_EXPORT struct tfd_subscriber *tfd_subscriber_ref(struct tfd_subscriber *sub)
{
	if (sub)
		sub->refs++;
	return sub;
}

TFD_EXPORT struct tfd_subscriber *tfd_subscriber_unref(struct tfd_subscriber *sub)
{
	if (!sub || --sub->refs > 0)
		return NULL;
	/* epoll set and timer are shared with the process we were forked from */
	if (sub->owner == getpid())
		sub_detach(sub);
	else
		sub->ch = tfd_channel_unref(sub->ch);
	if (sub->wait_ring) {
		io_uring_queue_exit(sub->wait_ring);
		free(sub->wait_ring);
	}
	if (sub->timerfd >= 0)
		close(sub->timerfd);
	if (sub->epfd >= 0)
		close(sub->epfd);
	free(sub);
	return NULL;
}

TFD_EXPORT int tfd_subscriber_recv(struct tfd_subscriber *sub, int timeout_ms,
				   struct tfd_message **ret)
{
	uint64_t deadline;
	struct tfd_message *m;
	struct pollfd pfd;
	uint64_t drain;
	bool refused;
	int r;

	if (!sub || !ret)
		return fail_args();
	deadline = deadline_after(timeout_ms);
	for (;;) {
		if (sub->refused)
			return sub->refused;
		if (!sub->ch) {
			/* the retry timer made the fd readable: that is consumed here */
			while (read(sub->timerfd, &drain, sizeof(drain)) > 0)
				;
			sub_attach(sub);
		}
		if (sub->ch) {
			r = tfd_channel_recv(sub->ch, ms_left(deadline, -1), &m);
			if (r == 0) {
				uint64_t seq = tfd_message_seq(m);

				/*
				 * A gap is counted only going forwards; a number at or
				 * below the last (a wrap, or a hostile publisher) starts
				 * the count again from it, as a new publisher does.
				 */
				if (sub->stats.last_seq && seq > sub->stats.last_seq)
					sub->stats.dropped += seq - sub->stats.last_seq - 1;
				sub->stats.last_seq = seq;
				sub->stats.received++;
				*ret = m;
				return 0;
			}
			if (r == -ETIMEDOUT)
				return sub_empty(sub, r, timeout_ms);
			if (r == -EAGAIN || r == -EINTR)
				return r;
			snprintf(sub->err, sizeof(sub->err), "%s", tfd_channel_strerror(sub->ch));
			/*
			 * Only the publisher's REFUSE for access is final: a buffer
			 * we could not map (EACCES from mmap(), say) or a REFUSE
			 * for falling behind ends this connection, not the next.
			 */
			refused = channel_peer_refused(sub->ch) == EACCES;
			sub_detach(sub);
			if (refused) {
				sub->refused = -EACCES;
				return -EACCES;
			}
			/* the publisher went away (or broke the protocol): say so once */
			tfd_fail(NULL, 0, -ECONNRESET, "publisher of %s gone: %s", sub->topic,
				 sub->err);
			snprintf(sub->err, sizeof(sub->err), "%s", tfd_last_error());
			return -ECONNRESET;
		}
		if (timeout_ms == 0)
			return -EAGAIN;
		if (ms_left(deadline, -1) == 0)
			return sub_empty(sub, -ETIMEDOUT, timeout_ms);
		pfd = (struct pollfd){ .fd = sub->timerfd, .events = POLLIN };
		if (poll(&pfd, 1, ms_left(deadline, ATTACH_RETRY_MS)) < 0 && errno == EINTR)
			return -EINTR;
	}
}

TFD_EXPORT int tfd_subscriber_get_fd(const struct tfd_subscriber *sub)
{
	return sub ? sub->epfd : -EINVAL;
}

TFD_EXPORT int tfd_subscriber_get_stats(const struct tfd_subscriber *sub,
					struct tfd_subscriber_stats *stats)
{
	if (!sub || !stats)
		return fail_args();
	*stats = sub->stats;
	return 0;
}

TFD_EXPORT const char *tfd_subscriber_strerror(const struct tfd_subscriber *sub)
{
	return sub ? sub->err : NULL;
}

static bool sub_ready_now(const struct tfd_subscriber *sub)
{
	return sub->refused || (sub->ch && channel_queued(sub->ch));
}

/* Wait with io_uring: one POLL_ADD per subscriber's epoll fd. */
static int wait_uring(struct tfd_subscriber *const *subs, unsigned int n, int timeout_ms,
		      bool *ready)
{
	struct io_uring *ring = subs[0]->wait_ring;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	unsigned int i, pending = 0;
	int r, count = 0;

	for (i = 0; i < n; i++) {
		sqe = io_uring_get_sqe(ring);
		if (!sqe) {
			io_uring_submit(ring);
			sqe = io_uring_get_sqe(ring);
		}
		io_uring_prep_poll_add(sqe, subs[i]->epfd, POLLIN);
		io_uring_sqe_set_data64(sqe, i + 1);
		pending++;
	}
	io_uring_submit(ring);
	if (timeout_ms < 0) {
		r = io_uring_wait_cqe(ring, &cqe);
	} else {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};

		r = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	}
	/* cancel the polls still armed, then reap every completion */
	for (i = 0; i < n; i++) {
		sqe = io_uring_get_sqe(ring);
		if (!sqe) {
			io_uring_submit(ring);
			sqe = io_uring_get_sqe(ring);
		}
		io_uring_prep_poll_remove(sqe, i + 1);
		io_uring_sqe_set_data64(sqe, 0);
	}
	io_uring_submit(ring);
	while (pending) {
		if (io_uring_wait_cqe(ring, &cqe) < 0)
			break;
		if (cqe->user_data) {
			pending--;
			if (cqe->res > 0 && !ready[cqe->user_data - 1]) {
				ready[cqe->user_data - 1] = true;
				count++;
			}
		}
		io_uring_cqe_seen(ring, cqe);
	}
	/* removals that found nothing to remove still complete */
	while (io_uring_peek_cqe(ring, &cqe) == 0)
		io_uring_cqe_seen(ring, cqe);
	if (count)
		return count;
	if (r == -ETIME)
		return timeout_ms == 0 ? -EAGAIN : -ETIMEDOUT;
	return r < 0 ? r : -ETIMEDOUT;
}

TFD_EXPORT int tfd_subscriber_wait(struct tfd_subscriber *const *subs, unsigned int n,
				   int timeout_ms, bool *ready)
{
	struct pollfd *pfd;
	unsigned int i;
	int count = 0, r;

	if (!subs || !n || !ready || n > 1024)
		return fail_args();
	for (i = 0; i < n; i++) {
		if (!subs[i])
			return fail_args();
		/* one that waits for its publisher may attach now */
		if (!subs[i]->ch && !subs[i]->refused)
			sub_attach(subs[i]);
		ready[i] = sub_ready_now(subs[i]);
		count += ready[i];
	}
	if (count)
		return count;
	if (!subs[0]->wait_ring) {
		struct io_uring *ring = calloc(1, sizeof(*ring));

		if (ring && io_uring_queue_init(64, ring, 0) == 0)
			subs[0]->wait_ring = ring;
		else
			free(ring);
	}
	if (subs[0]->wait_ring)
		return wait_uring(subs, n, timeout_ms, ready);
	/* io_uring unavailable: the same wait with poll(2) */
	pfd = calloc(n, sizeof(*pfd));
	if (!pfd)
		return fail_nomem();
	for (i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = subs[i]->epfd, .events = POLLIN };
	r = poll(pfd, n, timeout_ms);
	for (i = 0; r > 0 && i < n; i++)
		if (pfd[i].revents & POLLIN) {
			ready[i] = true;
			count++;
		}
	free(pfd);
	if (r < 0)
		return -errno;
	return count ? count : (timeout_ms == 0 ? -EAGAIN : -ETIMEDOUT);
}
