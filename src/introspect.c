/* SPDX-License-Identifier: MIT */
/*
 * The asking side of introspection: connect to a topic's socket, send
 * WIRE_INFO_REQUEST before anything else, read the publisher's hello and
 * its one WIRE_INFO (or refusal), close. The publisher's packets are
 * checked like any peer's, and fds it sends along are closed at once.
 * The publisher's side is in topic.c.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "peerfd.h"
#include "wire.h"

/*
 * One packet: its length, 0 at the end of the stream, or a negative errno.
 * Nothing in this conversation carries fds: any that come are closed
 * without letting the publisher block us, and end it (-EBADMSG).
 */
static ssize_t recv_pkt(int fd, char *buf, size_t cap, uint64_t deadline)
{
	char err[256];
	struct pollfd pfd;
	ssize_t n;
	int ms;

	for (;;) {
		n = peerfd_recv_bare(fd, buf, cap, err, sizeof(err));
		if (n == -EBADMSG)
			return tfd_fail(NULL, 0, -EBADMSG, "the publisher sent: %s", err);
		if (n != -EAGAIN)
			return n;
		ms = ms_left(deadline, -1);
		if (ms == 0)
			return -ETIMEDOUT;
		pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
			return -errno;
	}
}

/* A full listener queue is waited for until the query's deadline. */
static int connect_topic(const char *topic, const char *path, uint64_t deadline)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd, pathfd, r;

	/* the socket itself, reached without links through a tree we trust */
	pathfd = topic_socket_open(topic, 0, NULL, 0, &sa, &len, NULL);
	if (pathfd < 0)
		return pathfd == -ENOENT ? tfd_fail(NULL, 0, -ENOENT, "no topic %s (no socket %s)",
						    topic, path)
					 : pathfd;
	/* the same address, with the query's deadline for a full listener queue */
	fd = unix_connect(sa.sun_path, deadline);
	close(pathfd);
	if (fd >= 0)
		return fd;
	r = fd;
	switch (r) {
	case -ENOENT:
		return tfd_fail(NULL, 0, r, "no topic %s (no socket %s)", topic, path);
	case -ECONNREFUSED:
		return tfd_fail(NULL, 0, r, "the publisher of %s is gone (stale socket %s)", topic,
				path);
	case -EACCES:
	case -EPERM:
		return tfd_fail(NULL, 0, -EACCES, "permission denied on %s", path);
	case -EAGAIN:
	case -ETIMEDOUT:
		return tfd_fail(NULL, 0, r, "the publisher of %s does not accept connections now "
				"(its queue of pending connections is full)", topic);
	default:
		return tfd_fail(NULL, 0, r, "connecting to %s: %s", path, strerror(-r));
	}
}

static int info_build(const struct wire_info *w, const struct wire_info_sub *subs,
		      const struct ucred *uc, struct tfd_topic_info **ret)
{
	struct tfd_topic_info *info;
	struct wire_info_sub s;
	unsigned int i;

	info = calloc(1, sizeof(*info));
	if (!info)
		return fail_nomem();
	if (w->n_records) {
		info->subscribers = calloc(w->n_records, sizeof(*info->subscribers));
		if (!info->subscribers) {
			free(info);
			return fail_nomem();
		}
	}
	info->pid = uc->pid;
	info->uid = uc->uid;
	info->gid = uc->gid;
	info->flags = w->flags;
	memcpy(info->comm, w->comm, sizeof(info->comm));
	info->depth = w->depth;
	info->policy = (enum tfd_drop_policy)w->policy;
	info->uptime_ns = w->uptime_ns;
	info->stats = (struct tfd_publisher_stats){
		.published = w->published,
		.copied_tensors = w->copied_tensors,
		.dropped = w->dropped,
		.subscribers = w->n_subscribers,
		.attached_total = w->attached_total,
		.refused = w->refused,
		.pool_buffers = w->pool_buffers,
		.pool_bytes = w->pool_bytes,
		.pool_buffers_busy = w->pool_buffers_busy,
		.pool_bytes_busy = w->pool_bytes_busy,
	};
	info->n_subscribers = w->n_records;
	for (i = 0; i < w->n_records; i++) {
		memcpy(&s, &subs[i], sizeof(s));
		info->subscribers[i] = (struct tfd_subscriber_info){
			.pid = s.pid, .uid = s.uid, .gid = s.gid, .queued = s.queued,
			.in_flight = s.in_flight, .delivered = s.delivered, .dropped = s.dropped,
		};
	}
	*ret = info;
	return 0;
}

/* Read the hello, then the answer. */
static int converse(int fd, const char *topic, uint64_t deadline, char *buf,
		    const struct ucred *uc, struct tfd_topic_info **ret)
{
	const struct wire_info_sub *subs;
	struct wire_hello hello;
	struct wire_info w;
	char err[256], reason[160];
	bool got_hello = false;
	int type, error, r;
	ssize_t n;

	for (;;) {
		n = recv_pkt(fd, buf, WIRE_MAX_PACKET, deadline);
		if (n == -ETIMEDOUT)
			return tfd_fail(NULL, 0, -ETIMEDOUT, "the publisher of %s did not answer",
					topic);
		if (n == 0 || n == -ECONNRESET)
			return tfd_fail(NULL, 0, got_hello ? -EPROTONOSUPPORT : -ECONNRESET,
					got_hello ? "the publisher of %s closed without answering (a tensorfd without introspection?)"
						  : "the publisher of %s closed the connection",
					topic);
		if (n < 0)
			return n;
		type = wire_check_header(buf, (size_t)n, err, sizeof(err));
		if (type < 0)
			return tfd_fail(NULL, 0, type, "publisher of %s: %s", topic, err);
		if (!got_hello) {
			if (type != WIRE_HELLO)
				return tfd_fail(NULL, 0, -EPROTO,
						"publisher of %s did not start with a hello", topic);
			r = wire_decode_hello(buf, (size_t)n, &hello, err, sizeof(err));
			if (r < 0)
				return tfd_fail(NULL, 0, r, "publisher of %s: %s", topic, err);
			got_hello = true;
			continue;
		}
		switch (type) {
		case WIRE_REFUSE:
			r = wire_decode_refuse(buf, (size_t)n, &error, reason, sizeof(reason), err,
					       sizeof(err));
			if (r < 0)
				return tfd_fail(NULL, 0, r, "publisher of %s: %s", topic, err);
			return tfd_fail(NULL, 0, -error, "the publisher of %s refused: %s", topic,
					reason);
		case WIRE_INFO:
			r = wire_decode_info(buf, (size_t)n, &w, &subs, err, sizeof(err));
			if (r < 0)
				return tfd_fail(NULL, 0, r, "publisher of %s: %s", topic, err);
			return info_build(&w, subs, uc, ret);
		case WIRE_MSG:
			return tfd_fail(NULL, 0, -EPROTONOSUPPORT,
					"the publisher of %s took us for a subscriber (a tensorfd without introspection?)",
					topic);
		default:
			return tfd_fail(NULL, 0, -EBADMSG, "publisher of %s sent packet type %d",
					topic, type);
		}
	}
}

TFD_EXPORT int tfd_topic_query(const char *topic, int timeout_ms, struct tfd_topic_info **ret)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct ucred uc = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t len = sizeof(uc);
	struct wire_info_request req;
	uint64_t deadline;
	char *buf;
	int fd, r;

	if (!ret || timeout_ms < -1)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_topic_query");
	deadline = deadline_after(timeout_ms);
	topic = topic_name(topic);
	r = tfd_topic_path(topic, path, sizeof(path));
	if (r < 0)
		return r;
	fd = connect_topic(topic, path, deadline);
	if (fd < 0)
		return fd;
	getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len);
	memset(&req, 0, sizeof(req));
	wire_hdr_init(&req.h, WIRE_INFO_REQUEST, sizeof(req));
	req.max_subscribers = WIRE_INFO_MAX_SUBS;
	buf = malloc(WIRE_MAX_PACKET);
	if (!buf) {
		r = -ENOMEM;
	} else if (send(fd, &req, sizeof(req), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		r = tfd_fail(NULL, 0, -ECONNRESET, "the publisher of %s is gone: %s", topic,
			     strerror(errno));
	} else {
		r = converse(fd, topic, deadline, buf, &uc, ret);
	}
	free(buf);
	close(fd);
	return r;
}

TFD_EXPORT void tfd_topic_info_free(struct tfd_topic_info *info)
{
	if (!info)
		return;
	free(info->subscribers);
	free(info);
}
