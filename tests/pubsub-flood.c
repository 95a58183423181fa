/* SPDX-License-Identifier: MIT */
/*
 * Hostile subscribers against a publisher (forked, so its fds can be
 * counted in /proc). A subscriber's connection only carries releases back:
 * an attacker that speaks the protocol correctly but sends messages (with
 * fresh memfds each) or forgets is refused with a reason at its first
 * such packet, and the publisher keeps neither its buffers nor its fds,
 * however many attackers flood it at once.
 *
 * And a publisher that stops accepting: its listener's queue of pending
 * connections full, a subscriber's calls still return within their
 * timeouts, with -ETIMEDOUT and a reason, as does an introspection query.
 */
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "internal.h"
#include "tap.h"
#include "wire.h"

#define TOPIC		"hostile/pub"
#define ATTACKERS	4
#define FLOOD		500	/* messages per attacker, each with a new memfd */

struct child {
	pid_t pid;
	int ctl;	/* closed: the publisher exits */
};

static int publisher_main(int ctl)
{
	struct tfd_publisher *pub;
	struct pollfd pfd[2];

	if (tfd_publisher_new(TOPIC, 0, &pub) < 0)
		return 10;
	if (write(ctl, "r", 1) != 1)
		return 11;
	for (;;) {
		pfd[0] = (struct pollfd){ .fd = tfd_publisher_get_fd(pub), .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = ctl, .events = POLLIN };
		poll(pfd, 2, 100);
		tfd_publisher_dispatch(pub, 0);
		if (pfd[1].revents)
			break;
	}
	tfd_publisher_unref(pub);
	return 0;
}

static struct child spawn(void)
{
	struct child ch = { -1, -1 };
	int sv[2];
	char c;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return ch;
	ch.pid = fork();
	if (ch.pid == 0) {
		close(sv[0]);
		_exit(publisher_main(sv[1]));
	}
	close(sv[1]);
	ch.ctl = sv[0];
	if (read(ch.ctl, &c, 1) != 1)
		diag("publisher did not get ready");
	return ch;
}

static int fds_of(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The publisher's fd count once it settles at want (or what it is after 3 s). */
static int settle(pid_t pid, int want)
{
	uint64_t end = now_ms() + 3000;
	int n;

	while ((n = fds_of(pid)) != want && now_ms() < end)
		usleep(20000);
	return n;
}

/* An attacker: a real channel of ours on a connection to the topic. */
static struct tfd_channel *attacker(void)
{
	struct tfd_channel *ch = NULL;
	char path[108];

	if (tfd_topic_path(TOPIC, path, sizeof(path)) < 0 ||
	    tfd_channel_connect(path, &ch) < 0)
		return NULL;
	/* a full socket is the publisher's refusal arriving, not a wait */
	tfd_channel_set_send_timeout(ch, 0);
	return ch;
}

/* A valid message over a new memfd: what a publisher sends, the wrong way round. */
static int send_msg(struct tfd_channel *ch)
{
	const int64_t n = 4096;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	int r;

	if (tfd_buffer_new(4096, 0, &b) < 0 || tfd_message_new(&m) < 0)
		return -ENOMEM;
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &n);
	tfd_message_add_tensor(m, "x", b, &l);
	r = tfd_channel_send(ch, m);
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	return r;
}

/* What the publisher told the attacker: its error (the REFUSE), or 0. */
static int refusal(struct tfd_channel *ch)
{
	struct tfd_message *m = NULL;
	int r;

	do {
		r = tfd_channel_recv(ch, 2000, &m);
		tfd_message_unref(m);
		m = NULL;
	} while (r == 0);
	return r;
}

static void one_message(pid_t pub, int before)
{
	struct tfd_channel *ch = attacker();
	int r;

	r = ch ? send_msg(ch) : -ENOENT;
	ok(r == 0, "an attacker sends a valid message to the publisher");
	r = refusal(ch);
	ok(r == -EPROTO, "the publisher refuses it: -EPROTO (got %d)", r);
	ok(strstr(tfd_channel_strerror(ch), "only sends") != NULL, "with a reason: %s",
	   tfd_channel_strerror(ch));
	ok(settle(pub, before) == before,
	   "the publisher keeps no buffer or fd of it, the attacker still connected (%d, %d)",
	   fds_of(pub), before);
	tfd_channel_unref(ch);
}

static void one_forget(pid_t pub, int before)
{
	struct tfd_channel *ch = attacker();
	char pkt[sizeof(struct wire_ids) + sizeof(uint64_t)];
	struct wire_ids *w = (struct wire_ids *)pkt;
	const uint64_t id = 1;
	int r;

	if (!ch) {
		ok(0, "an attacker connects");
		return;
	}
	wire_hdr_init(&w->h, WIRE_FORGET, sizeof(pkt));
	w->count = 1;
	w->pad = 0;
	memcpy(w + 1, &id, sizeof(id));
	ok(send(channel_sockfd(ch), pkt, sizeof(pkt), MSG_NOSIGNAL) == (ssize_t)sizeof(pkt),
	   "an attacker sends a FORGET to the publisher");
	r = refusal(ch);
	ok(r == -EPROTO, "the publisher refuses it: -EPROTO (got %d)", r);
	ok(strstr(tfd_channel_strerror(ch), "only sends") != NULL, "with a reason: %s",
	   tfd_channel_strerror(ch));
	ok(settle(pub, before) == before, "the publisher is back to its fds (%d, %d)",
	   fds_of(pub), before);
	tfd_channel_unref(ch);
}

/* ATTACKERS at once, FLOOD messages each with its own memfd, as fast as they go. */
static void flood(pid_t pub, int before)
{
	struct tfd_channel *ch[ATTACKERS];
	int i, k, sent = 0, refused = 0, peak = before, n;

	for (i = 0; i < ATTACKERS; i++)
		ch[i] = attacker();
	for (k = 0; k < FLOOD; k++) {
		for (i = 0; i < ATTACKERS; i++)
			if (ch[i] && send_msg(ch[i]) == 0)
				sent++;
		n = fds_of(pub);
		if (n > peak)
			peak = n;
	}
	/*
	 * Refused, or (an attacker whose next send met the closed socket
	 * before it read the REFUSE) -ECONNRESET: either way its channel ended.
	 */
	for (i = 0; i < ATTACKERS; i++) {
		n = ch[i] ? refusal(ch[i]) : 0;
		refused += n == -EPROTO || n == -ECONNRESET;
	}
	diag("flood: %d messages sent, publisher fds peaked at %d (baseline %d)", sent, peak,
	     before);
	ok(refused == ATTACKERS, "every flooding attacker's connection is ended (%d of %d)",
	   refused, ATTACKERS);
	/*
	 * Per attacker: its socket, its channel's io_uring fd, and the memfds
	 * of the packets being refused (two receive slots). Without the
	 * refusal they were 2016 (one per message, to EMFILE).
	 */
	ok(peak <= before + ATTACKERS * 4, "the publisher's fds stay bounded during the flood "
	   "(peak %d, baseline %d)", peak, before);
	ok(settle(pub, before) == before,
	   "the publisher is back to its fds, the attackers still connected (%d, %d)",
	   fds_of(pub), before);
	for (i = 0; i < ATTACKERS; i++)
		tfd_channel_unref(ch[i]);
}

/* A listener at topic's socket path with its queue full; its fd and the queued ones. */
static int full_listener(const char *topic, int *queued, int max, int *n)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int l, c;

	*n = 0;
	tfd_topic_path(topic, sa.sun_path, sizeof(sa.sun_path));
	l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 0) < 0)
		return -1;
	while (*n < max) {
		c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(c);
			break;
		}
		queued[(*n)++] = c;
	}
	return l;
}

/* In a child: what a subscriber's calls return against a full listener. */
static int subscriber_main(const char *topic)
{
	struct tfd_subscriber *sub;
	struct tfd_message *m = NULL;
	int r;

	r = tfd_subscriber_new(topic, 0, &sub);
	if (r < 0)
		return 10;
	r = tfd_subscriber_recv(sub, 500, &m);
	printf("# recv(500 ms): %d: %s\n", r, tfd_last_error());
	if (r != -ETIMEDOUT)
		return 11;
	if (!strstr(tfd_last_error(), "pending connections is full"))
		return 12;
	tfd_subscriber_unref(sub);
	return 0;
}

/* The child's exit status, or -1 if it is still running after limit_ms (then killed). */
static int wait_limited(pid_t pid, int limit_ms)
{
	uint64_t end = now_ms() + (uint64_t)limit_ms;
	int st;

	while (now_ms() < end) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static void full_backlog(void)
{
	struct tfd_topic_info *info = NULL;
	int queued[64], n, l, i, r, fds0 = count_fds();
	uint64_t t;
	pid_t pid;

	l = full_listener("hostile/full", queued, 64, &n);
	if (l < 0 || n == 64) {
		ok(0, "a listener with a full queue (%d queued): %s", n, strerror(errno));
		return;
	}
	diag("%d connections fill the listener's queue", n);
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(subscriber_main("hostile/full"));
	r = wait_limited(pid, 10000);
	ok(r == 0, "tfd_subscriber_new() returns and recv(500 ms) gives -ETIMEDOUT with a reason, "
	   "the publisher's queue full (child: %d; -1: hung, killed after 10 s)", r);
	t = now_ms();
	r = tfd_topic_query("hostile/full", 300, &info);
	t = now_ms() - t;
	ok(r == -ETIMEDOUT, "tfd_topic_query(300 ms) waits for room, then -ETIMEDOUT (%d: %s)", r,
	   tfd_last_error());
	ok(t < 5000, "and returns (in %llu ms)", (unsigned long long)t);
	tfd_topic_info_free(info);
	for (i = 0; i < n; i++)
		close(queued[i]);
	close(l);
	ok(count_fds() == fds0, "nothing left open by the full-queue case");
}

int main(void)
{
	char dir[] = "/tmp/tfd-pubsub-flood-XXXXXX";
	struct child pub;
	int before, fds;

	tap_init(60);
	tap_runtime_dir(dir);
	fds = count_fds();
	pub = spawn();
	before = fds_of(pub.pid);
	one_message(pub.pid, before);
	one_forget(pub.pid, before);
	flood(pub.pid, before);
	close(pub.ctl);
	ok(wait_child(pub.pid) == 0, "the publisher exits cleanly");
	full_backlog();
	ok(count_fds() == fds, "no fd leaked in the attackers");
	rm_tree(dir);
	return done_testing();
}
