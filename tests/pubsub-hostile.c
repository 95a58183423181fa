/* SPDX-License-Identifier: MIT */
/*
 * Hostile subscribers against a publisher (forked, so its fds can be
 * counted in /proc). A subscriber's connection only carries releases back:
 * an attacker that speaks the protocol correctly but sends messages (with
 * fresh memfds each) or forgets is refused with a reason at its first
 * such packet, and the publisher keeps neither its buffers nor its fds,
 * however many attackers flood it at once.
 */
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
	for (i = 0; i < ATTACKERS; i++)
		refused += ch[i] && refusal(ch[i]) == -EPROTO;
	diag("flood: %d messages sent, publisher fds peaked at %d (baseline %d)", sent, peak,
	     before);
	ok(refused == ATTACKERS, "every flooding attacker is refused (%d of %d)", refused,
	   ATTACKERS);
	/* its own sockets, and at most the fds of one packet each while it refuses */
	ok(peak <= before + ATTACKERS * 2, "the publisher's fds stay bounded during the flood "
	   "(peak %d, baseline %d)", peak, before);
	ok(settle(pub, before) == before,
	   "the publisher is back to its fds, the attackers still connected (%d, %d)",
	   fds_of(pub), before);
	for (i = 0; i < ATTACKERS; i++)
		tfd_channel_unref(ch[i]);
}

int main(void)
{
	char dir[] = "/tmp/tfd-pubsub-hostile-XXXXXX";
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
	ok(count_fds() == fds, "no fd leaked in the attackers");
	rm_tree(dir);
	return done_testing();
}
