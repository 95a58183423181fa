/* SPDX-License-Identifier: MIT */
/*
 * Hostile peers of a topic. Connections that never say hello are never
 * taken for subscribers and cost the others nothing; subscribers that say
 * hello and then never read cannot make the publisher's loans fail or the
 * others miss a frame; a squatter's unreadable buffer is that connection's
 * failure, not a refusal, so the subscriber attaches to the real publisher
 * next; sequence numbers going backwards (or wrapping) count no drops.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "internal.h"
#include "tap.h"
#include "tensorfd.h"

#define SILENT_N	6	/* silent connections: more than the pool outlasts before */
#define SILENT_EVERY_MS	300	/* one after the other: each would pin frames of its own */
#define PINNERS		6
#define PIN_EVERY	40	/* messages between two pinners' attaches */
#define PIN_MESSAGES	400

static const struct tfd_dtype u64 = { TFD_UINT, 64, 1 };

/* A loaned uint64 holding value; the loan must succeed at once. */
static int publish_now(struct tfd_publisher *pub, uint64_t value)
{
	const int64_t n = 1;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	int r;

	r = tfd_publisher_loan_tensor(pub, u64, 1, &n, &b, &l);
	if (r < 0)
		return r;
	*(uint64_t *)tfd_buffer_data(b) = value;
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "n", b, &l);
	tfd_buffer_unref(b);
	r = tfd_publisher_publish(pub, m);
	tfd_message_unref(m);
	return r;
}

/* Pinners let go leave: count those that came. */
static int wait_attached_total(struct tfd_publisher *pub, uint64_t n)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + 5000;

	for (;;) {
		tfd_publisher_get_stats(pub, &st);
		if (st.attached_total == n)
			return 0;
		if (now_ms() > end)
			return -ETIMEDOUT;
		tfd_publisher_dispatch(pub, 10);
	}
}

/* What a subscriber keeping up sees: every message, each holding its own sequence number. */
struct reader {
	struct tfd_subscriber *sub;
	uint64_t received, bad;
};

static void read_all(struct reader *rd, int timeout_ms)
{
	struct tfd_message *m;

	while (tfd_subscriber_recv(rd->sub, timeout_ms, &m) == 0) {
		const uint64_t *p = tfd_message_data(m, 0);

		rd->received++;
		rd->bad += !p || *p != tfd_message_seq(m);
		tfd_message_unref(m);
	}
}

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Whether the publisher hung up on fd: its hello (and anything else) read, then EOF. */
static bool hung_up(int fd)
{
	char buf[512];
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		;
	return n == 0;
}

/*
 * Silent connections, one every 300 ms: each would have become a
 * subscriber after a second and pinned a window of frames of its own.
 */
static void silent_connections(void)
{
	int silent[SILENT_N], n_silent = 0, i, loan_fail = 0, fds0 = count_fds(), gone, r;
	struct tfd_publisher_stats st;
	struct tfd_subscriber_stats ss;
	struct tfd_publisher *pub;
	struct reader rd = { 0 };
	uint64_t start, end, published = 0, next_connect, peak = 0;

	if (tfd_publisher_new("silent", 0, &pub) < 0 || tfd_subscriber_new("silent", 0, &rd.sub) < 0 ||
	    tfd_publisher_wait_subscribers(pub, 1, 5000) < 0) {
		printf("Bail out! cannot set up the topic: %s\n", tfd_last_error());
		exit(1);
	}
	start = now_ms();
	next_connect = start;
	end = start + SILENT_N * SILENT_EVERY_MS + 1500;
	while (now_ms() < end) {
		if (n_silent < SILENT_N && now_ms() >= next_connect) {
			silent[n_silent] = raw_connect(tfd_publisher_path(pub));
			if (silent[n_silent] >= 0)
				n_silent++;
			next_connect += SILENT_EVERY_MS;
		}
		r = publish_now(pub, published + 1);
		if (r < 0) {
			if (loan_fail++ < 3)
				diag("publish: %s", tfd_publisher_strerror(pub));
		} else {
			published++;
		}
		tfd_publisher_dispatch(pub, 0);
		read_all(&rd, 0);
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers > peak)
			peak = st.subscribers;
		usleep(5000);
	}
	for (i = 0; i < 100 && rd.received < published; i++) {
		tfd_publisher_dispatch(pub, 0);
		read_all(&rd, 10);
	}
	tfd_subscriber_get_stats(rd.sub, &ss);
	ok(n_silent == SILENT_N, "%d silent connections made", n_silent);
	ok(loan_fail == 0, "every loan among silent connections succeeded (%d of %llu failed)",
	   loan_fail, (unsigned long long)(published + (uint64_t)loan_fail));
	ok(rd.received == published && ss.dropped == 0 && rd.bad == 0,
	   "the real subscriber got all %llu messages, no gap, intact (%llu, dropped %llu, bad %llu)",
	   (unsigned long long)published, (unsigned long long)rd.received,
	   (unsigned long long)ss.dropped, (unsigned long long)rd.bad);
	ok(peak == 1, "no silent connection became a subscriber (peak %llu subscribers)",
	   (unsigned long long)peak);
	/* the publisher drops them; wait for it a while */
	for (i = 0, gone = 0; i < 500 && gone < n_silent; i++) {
		int k;

		tfd_publisher_dispatch(pub, 10);
		for (k = 0, gone = 0; k < n_silent; k++)
			gone += hung_up(silent[k]);
	}
	ok(gone == n_silent, "the publisher hung up on every silent connection (%d of %d)", gone,
	   n_silent);
	tfd_publisher_get_stats(pub, &st);
	ok(st.attached_total == 1, "attached_total counts only the real subscriber (%llu)",
	   (unsigned long long)st.attached_total);
	for (i = 0; i < n_silent; i++)
		close(silent[i]);
	tfd_subscriber_unref(rd.sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "silent: fds back to %d (%d)", fds0, count_fds());
}

/*
 * Subscribers that say hello, then never read or release, attaching one
 * after another so that each would pin a window of frames of its own.
 */
static void pinning_subscribers(void)
{
	struct tfd_subscriber *pin[PINNERS];
	int n_pin = 0, i, loan_fail = 0, fds0 = count_fds(), r, dropped = 0;
	uint64_t pin_received = 0, pin_bad = 0;
	struct tfd_subscriber_stats ss;
	struct tfd_publisher *pub;
	struct tfd_message *m;
	struct reader rd = { 0 };
	uint64_t published = 0;

	if (tfd_publisher_new("pinned", 0, &pub) < 0 || tfd_subscriber_new("pinned", 0, &rd.sub) < 0 ||
	    tfd_publisher_wait_subscribers(pub, 1, 5000) < 0) {
		printf("Bail out! cannot set up the topic: %s\n", tfd_last_error());
		exit(1);
	}
	for (i = 1; i <= PIN_MESSAGES; i++) {
		if (i % PIN_EVERY == 0 && n_pin < PINNERS) {
			if (tfd_subscriber_new("pinned", 0, &pin[n_pin]) < 0 ||
			    wait_attached_total(pub, (uint64_t)n_pin + 2) < 0) {
				printf("Bail out! pinner %d: %s\n", n_pin, tfd_last_error());
				exit(1);
			}
			n_pin++;
		}
		r = publish_now(pub, published + 1);
		if (r < 0) {
			if (loan_fail++ < 3)
				diag("publish: %s", tfd_publisher_strerror(pub));
		} else {
			published++;
		}
		tfd_publisher_dispatch(pub, 0);
		read_all(&rd, 0);
	}
	for (i = 0; i < 100 && rd.received < published; i++) {
		tfd_publisher_dispatch(pub, 0);
		read_all(&rd, 10);
	}
	tfd_subscriber_get_stats(rd.sub, &ss);
	ok(loan_fail == 0, "%d subscribers that never release cannot make a loan fail (%d failed)",
	   PINNERS, loan_fail);
	ok(rd.received == published && ss.dropped == 0 && rd.bad == 0,
	   "the real subscriber got all %llu messages, no gap, intact (%llu, dropped %llu, bad %llu)",
	   (unsigned long long)published, (unsigned long long)rd.received,
	   (unsigned long long)ss.dropped, (unsigned long long)rd.bad);
	/* a pinner that was let go reads what it was sent, then why it lost the rest */
	for (i = 0; i < n_pin; i++) {
		while ((r = tfd_subscriber_recv(pin[i], 0, &m)) == 0) {
			const uint64_t *p = tfd_message_data(m, 0);

			pin_received++;
			pin_bad += !p || *p != tfd_message_seq(m);
			tfd_message_unref(m);
		}
		if (r == -ECONNRESET && strstr(tfd_subscriber_strerror(pin[i]), "pool")) {
			if (!dropped++)
				diag("a pinner hears: %s", tfd_subscriber_strerror(pin[i]));
		}
		tfd_subscriber_unref(pin[i]);
	}
	ok(dropped > 0, "the pinners furthest behind were let go with a reason (%d of %d)", dropped,
	   n_pin);
	ok(pin_received > 0 && pin_bad == 0,
	   "what they had received stays intact after they were let go (%llu read, %llu rewritten)",
	   (unsigned long long)pin_received, (unsigned long long)pin_bad);
	tfd_subscriber_unref(rd.sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "pinners: fds back to %d (%d)", fds0, count_fds());
}

/* A fake publisher: a listening socket at the topic's path and the channel it accepts. */
struct fake {
	char path[108];
	int lfd;
	struct tfd_channel *ch;
};

static int fake_listen(struct fake *f, const char *topic)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (tfd_topic_path(topic, f->path, sizeof(f->path)) < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	f->ch = NULL;
	f->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(f->lfd, 4) < 0)
		return -1;
	return 0;
}

/* Take the subscriber's connection; the channel says hello for the fake. */
static int fake_accept(struct fake *f)
{
	int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);

	return fd < 0 ? -1 : channel_new(fd, &f->ch);
}

static void fake_close(struct fake *f)
{
	tfd_channel_unref(f->ch);
	close(f->lfd);
	unlink(f->path);
}

static struct tfd_message *message_over(struct tfd_buffer *b)
{
	const int64_t n = 1;
	struct tfd_message *m;
	struct tfd_layout l;

	tfd_layout_init(&l, u64, 1, &n);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "n", b, &l);
	return m;
}

/*
 * A squatter on the topic's socket sends a buffer the subscriber cannot
 * map (a write-only reopening of a sealed memfd): that connection fails,
 * with a reason; it is no refusal, and the real publisher is attached next.
 */
static void squatter(void)
{
	struct tfd_subscriber *sub;
	struct tfd_publisher *pub;
	struct tfd_message *m, *got;
	struct tfd_buffer *b;
	char proc[64];
	struct fake f;
	int fds0 = count_fds(), wfd, r, i;

	if (fake_listen(&f, "squat") < 0 || tfd_subscriber_new("squat", 0, &sub) < 0 ||
	    fake_accept(&f) < 0 || tfd_buffer_new(4096, 0, &b) < 0) {
		printf("Bail out! the squatter: %s\n", strerror(errno));
		exit(1);
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", tfd_buffer_fd(b));
	wfd = open(proc, O_WRONLY | O_CLOEXEC);
	if (wfd < 0) {
		skip("cannot reopen a memfd write-only: %s", strerror(errno));
		tfd_buffer_unref(b);
		fake_close(&f);
		tfd_subscriber_unref(sub);
		return;
	}
	close(b->fd);
	b->fd = wfd;
	m = message_over(b);
	tfd_buffer_unref(b);
	r = tfd_channel_send(f.ch, m);
	tfd_message_unref(m);
	ok(r == 0, "the squatter sends a write-only memfd (%d)", r);
	r = tfd_subscriber_recv(sub, 2000, &got);
	ok(r == -ECONNRESET, "the subscriber drops that connection: -ECONNRESET, not a refusal (%d: %s)",
	   r, tfd_subscriber_strerror(sub));
	ok(strstr(tfd_subscriber_strerror(sub), "write-only") != NULL,
	   "the reason names the unreadable buffer (%s)", tfd_subscriber_strerror(sub));
	if (r == 0)
		tfd_message_unref(got);
	fake_close(&f);
	if (tfd_publisher_new("squat", 0, &pub) < 0) {
		printf("Bail out! the real publisher: %s\n", tfd_last_error());
		exit(1);
	}
	for (i = 0, r = -1; i < 300 && r != 0; i++) {
		publish_now(pub, i + 1);
		tfd_publisher_dispatch(pub, 0);
		r = tfd_subscriber_recv(sub, 10, &got);
	}
	ok(r == 0, "then it attaches to the real publisher and receives (%d: %s)", r,
	   tfd_subscriber_strerror(sub));
	if (r == 0)
		tfd_message_unref(got);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "squatter: fds back to %d (%d)", fds0, count_fds());
}

/* Send one message numbered seq from the fake; the subscriber takes it. */
static int seq_step(struct fake *f, struct tfd_subscriber *sub, struct tfd_buffer *b, uint64_t seq)
{
	struct tfd_message *m = message_over(b), *got;
	int r;

	r = channel_send_seq(f->ch, m, seq, 0);
	tfd_message_unref(m);
	if (r < 0)
		return r;
	r = tfd_subscriber_recv(sub, 2000, &got);
	if (r < 0)
		return r;
	r = tfd_message_seq(got) == seq ? 0 : -EBADMSG;
	tfd_message_unref(got);
	/* the fake takes the release in */
	tfd_channel_dispatch(f->ch, 0);
	return r;
}

static void seq_backwards(void)
{
	static const uint64_t seqs[] = { UINT64_MAX, UINT64_MAX - 4, 10, 11, 5 };
	struct tfd_subscriber_stats ss;
	struct tfd_subscriber *sub;
	struct tfd_buffer *b;
	struct fake f;
	int fds0 = count_fds(), r = 0;
	size_t i;

	if (fake_listen(&f, "backwards") < 0 || tfd_subscriber_new("backwards", 0, &sub) < 0 ||
	    fake_accept(&f) < 0 || tfd_buffer_new(4096, 0, &b) < 0) {
		printf("Bail out! the fake publisher: %s\n", strerror(errno));
		exit(1);
	}
	for (i = 0; i < ARRAY_SIZE(seqs) && r == 0; i++)
		r = seq_step(&f, sub, b, seqs[i]);
	tfd_subscriber_get_stats(sub, &ss);
	ok(r == 0 && ss.dropped == 0 && ss.last_seq == 5 && ss.received == ARRAY_SIZE(seqs),
	   "sequence numbers that wrap or go back count no drops and restart the count "
	   "(%d, dropped %llu, last %llu)", r, (unsigned long long)ss.dropped,
	   (unsigned long long)ss.last_seq);
	r = seq_step(&f, sub, b, 7);
	tfd_subscriber_get_stats(sub, &ss);
	ok(r == 0 && ss.dropped == 1, "a gap after the new start counts (dropped %llu)",
	   (unsigned long long)ss.dropped);
	tfd_buffer_unref(b);
	fake_close(&f);
	tfd_subscriber_unref(sub);
	ok(count_fds() == fds0, "backwards: fds back to %d (%d)", fds0, count_fds());
}

/*
 * A full pool with messages still waiting in a queue: the waiting ones go
 * first (drop-oldest, counted), and a subscriber that holds no more than
 * its window stays attached, its held messages intact.
 */
static void queued_go_first(void)
{
	struct tfd_publisher_stats st = { 0 };
	struct tfd_subscriber_stats ss = { 0 };
	struct tfd_message *held[4] = { NULL };
	struct tfd_subscriber *sub = NULL;
	struct tfd_publisher *pub = NULL;
	int fds0 = count_fds(), r = 0, i, n = 0, intact = 0;

	if (tfd_publisher_new("queued", 0, &pub) < 0 ||
	    tfd_publisher_set_queue(pub, 4, TFD_DROP_OLDEST, 0) < 0 ||
	    tfd_publisher_set_pool_limits(pub, 8, 1 << 20) < 0 ||
	    tfd_subscriber_new("queued", 0, &sub) < 0 ||
	    tfd_publisher_wait_subscribers(pub, 1, 5000) < 0) {
		printf("Bail out! queued: %s\n", tfd_last_error());
		exit(1);
	}
	/* 4 sent and held, 4 waiting: the pool of 8 is full */
	for (i = 1; i <= 8 && r == 0; i++)
		r = publish_now(pub, (uint64_t)i);
	for (i = 0; i < 4 && r == 0; i++)
		r = tfd_subscriber_recv(sub, 2000, &held[i]);
	ok(r == 0, "8 published, the subscriber holds the first 4 (%d)", r);
	for (i = 9; i <= 40 && r == 0; i++, n++)
		r = publish_now(pub, (uint64_t)i);
	tfd_publisher_dispatch(pub, 0);
	tfd_publisher_get_stats(pub, &st);
	ok(r == 0 && n == 32, "32 more loans succeed with the pool full (%d: %s)", r,
	   r ? tfd_publisher_strerror(pub) : "");
	ok(st.subscribers == 1 && st.dropped == 32,
	   "by dropping waiting messages (%llu dropped), not the subscriber (%llu attached)",
	   (unsigned long long)st.dropped, (unsigned long long)st.subscribers);
	for (i = 0; i < 4; i++)
		intact += held[i] && *(const uint64_t *)tfd_message_data(held[i], 0) == (uint64_t)i + 1;
	ok(intact == 4, "the held messages are intact (%d of 4)", intact);
	for (i = 0; i < 4; i++)
		tfd_message_unref(held[i]);
	/* the releases reach the publisher, which sends what waits */
	for (i = 0, r = -ETIMEDOUT; i < 200 && r == -ETIMEDOUT; i++) {
		tfd_publisher_dispatch(pub, 10);
		r = tfd_subscriber_recv(sub, 10, &held[0]);
	}
	tfd_subscriber_get_stats(sub, &ss);
	ok(r == 0 && tfd_message_seq(held[0]) == 37 && ss.dropped == 32,
	   "its next message is the oldest still waiting (seq %llu), the drops counted (%llu)",
	   r == 0 ? (unsigned long long)tfd_message_seq(held[0]) : 0ull,
	   (unsigned long long)ss.dropped);
	if (r == 0)
		tfd_message_unref(held[0]);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "no fd left over (%d, were %d)", count_fds(), fds0);
}

int main(void)
{
	char dir[] = "/tmp/tfd-pubsub-hostile-XXXXXX";

	tap_init(120);
	tap_runtime_dir(dir);
	silent_connections();
	pinning_subscribers();
	squatter();
	seq_backwards();
	queued_go_first();
	rm_tree(dir);
	return done_testing();
}
