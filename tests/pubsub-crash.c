/* SPDX-License-Identifier: MIT */
/*
 * Crashes: a subscriber SIGKILLed while it holds messages gives every
 * loan back to the publisher (twenty times over, the publisher's fds
 * flat); a publisher SIGKILLed while a subscriber holds its messages
 * leaves them readable, the subscriber hears -ECONNRESET and re-attaches
 * to the next publisher, and drops back to its baseline fds and mappings;
 * a publisher that exits right after publishing loses none of it.
 */
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

#include "tap.h"
#include "tensorfd.h"

#define ROUNDS		20
#define SUBS		3
#define HOLD		5	/* messages each subscriber keeps */
#define WORDS		512	/* uint64 per message */

static void on_sigbus(int sig)
{
	static const char msg[] = "not ok - SIGBUS reading a message\n";

	if (write(1, msg, sizeof(msg) - 1) < 0)
		_exit(99);
	_exit(99);
}

static uint64_t pattern(uint64_t tag, unsigned int j)
{
	return tag * 0x9e3779b97f4a7c15ull + j;
}

/* Every word of a message as it was written for tag. */
static bool intact(const struct tfd_message *m, uint64_t tag, uint64_t words)
{
	const uint64_t *p = tfd_message_data(m, 0);
	uint64_t j;

	if (!p)
		return false;
	for (j = 0; j < words; j++)
		if (p[j] != pattern(tag, (unsigned int)j))
			return false;
	return true;
}

static int publish_tagged(struct tfd_publisher *pub, uint64_t tag, uint64_t words)
{
	const int64_t n = (int64_t)words;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	uint64_t *p, j, end = now_ms() + 5000;
	int r;

	while ((r = tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n, &b,
					      &l)) == -ENOBUFS &&
	       now_ms() < end)
		tfd_publisher_dispatch(pub, 10);
	if (r < 0)
		return r;
	p = tfd_buffer_data(b);
	for (j = 0; j < words; j++)
		p[j] = pattern(tag, (unsigned int)j);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "x", b, &l);
	tfd_message_set_user_data(m, &tag, sizeof(tag));
	tfd_buffer_unref(b);
	r = tfd_publisher_publish(pub, m);
	tfd_message_unref(m);
	return r;
}

static uint64_t tag_of(const struct tfd_message *m)
{
	const uint64_t *t = tfd_message_get_user_data(m, NULL);

	return t ? *t : UINT64_MAX;
}

static int wait_stat(struct tfd_publisher *pub, uint64_t subscribers, bool idle, int timeout_ms)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == subscribers && (!idle || st.pool_buffers_busy == 0))
			return 0;
		if (now_ms() > end)
			return -ETIMEDOUT;
		tfd_publisher_dispatch(pub, 10);
	}
}

/* --- subscribers killed --- */

struct counters {
	volatile uint64_t received[SUBS];
	volatile uint64_t held[SUBS];
};

/* Receive, keep the last HOLD messages, check them again as they go; until stop closes. */
static int holding_subscriber(struct counters *c, int k, int stop)
{
	struct tfd_message *held[HOLD] = { NULL };
	struct pollfd pfd = { .fd = stop, .events = POLLIN };
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	unsigned int slot = 0, i;
	int r, bad = 0;

	if (tfd_subscriber_new("crash/sub", 0, &sub) < 0)
		return 2;
	for (;;) {
		r = tfd_subscriber_recv(sub, 20, &m);
		if (r == 0) {
			bad += !intact(m, tag_of(m), WORDS);
			if (held[slot]) {
				/* the pool must not have reused a buffer we still hold */
				bad += !intact(held[slot], tag_of(held[slot]), WORDS);
				tfd_message_unref(held[slot]);
			}
			held[slot] = m;
			slot = (slot + 1) % HOLD;
			c->received[k]++;
			c->held[k] = c->received[k] < HOLD ? c->received[k] : HOLD;
		} else if (r != -ETIMEDOUT && r != -EAGAIN && r != -EINTR) {
			return 3;
		}
		if (poll(&pfd, 1, 0) > 0)
			break;
	}
	for (i = 0; i < HOLD; i++) {
		if (held[i])
			bad += !intact(held[i], tag_of(held[i]), WORDS);
		tfd_message_unref(held[i]);
	}
	tfd_subscriber_unref(sub);
	return bad ? 4 : 0;
}

static void subscribers_killed(void)
{
	struct tfd_publisher *pub = NULL;
	struct tfd_publisher_stats st;
	struct tfd_subscriber_info info;
	struct counters *c;
	pid_t pid[SUBS];
	int fds0, base = -1, round, k, stop[2], victim, want, status;
	int killed_ok = 0, others_ok = 0, idle_ok = 0, flat_ok = 0, held_ok = 0;
	uint64_t tag = 0, end;
	unsigned int idx;

	c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED) {
		ok(0, "mmap: %s", strerror(errno));
		return;
	}
	fds0 = count_fds();
	ok(tfd_publisher_new("crash/sub", 0, &pub) == 0, "publisher of crash/sub");
	srand(12345);
	for (round = 0; round < ROUNDS; round++) {
		memset((void *)c, 0, sizeof(*c));
		if (pipe2(stop, O_CLOEXEC) < 0)
			break;
		for (k = 0; k < SUBS; k++) {
			pid[k] = fork();
			if (pid[k] == 0) {
				close(stop[1]);
				_exit(holding_subscriber(c, k, stop[0]));
			}
		}
		close(stop[0]);
		if (wait_stat(pub, SUBS, false, 10000) < 0) {
			diag("round %d: subscribers did not attach", round);
			close(stop[1]);
			break;
		}
		victim = rand() % SUBS;
		want = 3 + rand() % 40;
		/* publish until the victim holds messages and has had `want` */
		end = now_ms() + 10000;
		while ((c->received[victim] < (uint64_t)want || c->held[victim] < 3) &&
		       now_ms() < end) {
			if (publish_tagged(pub, ++tag, WORDS) < 0)
				diag("round %d: publish: %s", round, tfd_publisher_strerror(pub));
			tfd_publisher_dispatch(pub, 0);
			if (rand() % 4 == 0)
				usleep((useconds_t)(rand() % 2000));
		}
		/* held by it, as the publisher sees it too */
		for (idx = 0; tfd_publisher_get_subscriber(pub, idx, &info) == 0; idx++)
			if (info.pid == pid[victim])
				break;
		held_ok += c->held[victim] >= 3 && info.pid == pid[victim] && info.in_flight > 0;
		kill(pid[victim], SIGKILL);
		status = wait_child(pid[victim]);
		killed_ok += status == 128 + SIGKILL;
		/* the others go on receiving meanwhile */
		for (k = 0; k < 5; k++)
			publish_tagged(pub, ++tag, WORDS);
		wait_stat(pub, SUBS - 1, false, 5000);
		close(stop[1]);
		for (k = 0; k < SUBS; k++) {
			if (k == victim)
				continue;
			status = wait_child(pid[k]);
			others_ok += status == 0;
			if (status)
				diag("round %d: subscriber %d exited %d", round, k, status);
		}
		idle_ok += wait_stat(pub, 0, true, 5000) == 0;
		tfd_publisher_get_stats(pub, &st);
		/* each pool buffer is an fd of ours; everything else must be flat */
		if (base < 0)
			base = count_fds() - (int)st.pool_buffers;
		if (count_fds() - (int)st.pool_buffers == base)
			flat_ok++;
		else
			diag("round %d: %d fds, %llu pool buffers, base %d", round, count_fds(),
			     (unsigned long long)st.pool_buffers, base);
	}
	ok(round == ROUNDS, "%d rounds of 3 subscribers, one SIGKILLed", round);
	ok(held_ok == ROUNDS, "each victim held messages when killed (%d/%d)", held_ok, ROUNDS);
	ok(killed_ok == ROUNDS, "each victim died of SIGKILL (%d/%d)", killed_ok, ROUNDS);
	ok(others_ok == ROUNDS * (SUBS - 1),
	   "the others read intact messages throughout and exited cleanly (%d/%d)", others_ok,
	   ROUNDS * (SUBS - 1));
	ok(idle_ok == ROUNDS, "every loan came back each round: pool_buffers_busy 0 (%d/%d)",
	   idle_ok, ROUNDS);
	tfd_publisher_get_stats(pub, &st);
	ok(flat_ok == ROUNDS, "publisher fds flat across rounds (%d/%d; pool %llu buffers)",
	   flat_ok, ROUNDS, (unsigned long long)st.pool_buffers);
	ok(st.attached_total == ROUNDS * SUBS && st.subscribers == 0,
	   "attached %llu times in all, none left", (unsigned long long)st.attached_total);
	ok(st.pool_buffers <= 64, "pool bounded: %llu buffers", (unsigned long long)st.pool_buffers);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "no fd leaked");
	munmap((void *)c, sizeof(*c));
}

/* --- publisher killed --- */

#define BIGWORDS (128 * 1024)	/* 1 MiB */

/* Publish `count` messages tagged first.. once a subscriber is there; then either
 * wait to be killed (ready gets a byte) or exit once they are all released. */
static int publisher_proc(uint64_t first, int count, int ready)
{
	struct tfd_publisher *pub;
	int i;

	/* it serves until killed: by us, or with us if we die first */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (tfd_publisher_new("crash/pub", 0, &pub) < 0)
		return 2;
	if (wait_stat(pub, 1, false, 10000) < 0)
		return 3;
	for (i = 0; i < count; i++)
		if (publish_tagged(pub, first + (uint64_t)i, BIGWORDS) < 0)
			return 4;
	if (ready >= 0) {
		if (write(ready, "x", 1) != 1)
			return 5;
		for (;;)
			tfd_publisher_dispatch(pub, -1);
	}
	if (wait_stat(pub, 1, true, 10000) < 0)
		return 6;
	tfd_publisher_unref(pub);
	return 0;
}

static void publisher_killed(void)
{
	struct tfd_subscriber *sub = NULL;
	struct tfd_subscriber_stats ss;
	struct tfd_message *held[3] = { NULL }, *m;
	int fds0, maps0, fds1, maps1, ready[2], i, r, got = 0, good = 0;
	pid_t pid;
	char c;

	fds0 = count_fds();
	maps0 = count_maps();
	ok(tfd_subscriber_new("crash/pub", 0, &sub) == 0, "subscriber of crash/pub (no publisher)");
	fds1 = count_fds();
	maps1 = count_maps();
	if (pipe2(ready, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		close(ready[0]);
		_exit(publisher_proc(100, 3, ready[1]));
	}
	close(ready[1]);
	for (i = 0; i < 3; i++)
		got += tfd_subscriber_recv(sub, 10000, &held[i]) == 0;
	ok(got == 3, "received 3 messages of 1 MiB, holding them");
	ok(read(ready[0], &c, 1) == 1, "the publisher is done publishing");
	close(ready[0]);
	kill(pid, SIGKILL);
	ok(wait_child(pid) == 128 + SIGKILL, "publisher SIGKILLed");

	for (i = 0; i < got; i++)
		good += intact(held[i], 100 + (uint64_t)i, BIGWORDS);
	ok(good == 3, "all 3 still readable, every word as published (no SIGBUS)");
	r = tfd_subscriber_recv(sub, 5000, &m);
	ok(r == -ECONNRESET, "recv: -ECONNRESET (%d)", r);
	ok(strstr(tfd_subscriber_strerror(sub), "gone") != NULL, "reason: %s",
	   tfd_subscriber_strerror(sub));
	tfd_subscriber_get_stats(sub, &ss);
	ok(!ss.connected && ss.received == 3, "disconnected, 3 received");
	for (i = 0, good = 0; i < got; i++)
		good += intact(held[i], 100 + (uint64_t)i, BIGWORDS);
	ok(good == 3, "still readable after the channel is gone");
	for (i = 0; i < got; i++)
		tfd_message_unref(held[i]);
	ok(count_fds() == fds1 && count_maps() == maps1,
	   "messages dropped: fds and mappings back to the detached baseline (%d/%d fds, %d/%d maps)",
	   count_fds(), fds1, count_maps(), maps1);

	/* the publisher comes back; its old socket file is stale */
	pid = fork();
	if (pid == 0)
		_exit(publisher_proc(200, 1, -1));
	r = tfd_subscriber_recv(sub, 10000, &m);
	ok(r == 0 && intact(m, 200, BIGWORDS) && tfd_message_seq(m) == 1,
	   "re-attached to the restarted publisher, got its message 1");
	tfd_message_unref(m);
	tfd_subscriber_get_stats(sub, &ss);
	ok(ss.attaches == 2 && ss.received == 4 && ss.dropped == 0,
	   "attaches %llu, received %llu, dropped %llu", (unsigned long long)ss.attaches,
	   (unsigned long long)ss.received, (unsigned long long)ss.dropped);
	r = tfd_subscriber_recv(sub, 10000, &m);
	ok(r == -ECONNRESET, "it exits once its loan is back: -ECONNRESET (%d)", r);
	ok(wait_child(pid) == 0, "restarted publisher exited cleanly");
	ok(count_fds() == fds1 && count_maps() == maps1,
	   "detached again: fds and mappings at the baseline (%d/%d fds, %d/%d maps)", count_fds(),
	   fds1, count_maps(), maps1);
	tfd_subscriber_unref(sub);
	ok(count_fds() == fds0 && count_maps() == maps0, "no fd or mapping leaked");
}

/* A publisher that publishes and exits at once: nothing it sent is lost. */
static void publisher_exits(void)
{
	struct tfd_subscriber *sub = NULL;
	struct tfd_message *m;
	int fds0 = count_fds(), go[2], r, i, good = 0;
	pid_t pid;

	tfd_subscriber_new("crash/exit", 0, &sub);
	if (!sub || pipe2(go, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		struct tfd_publisher *pub;
		char c;

		close(go[1]);
		if (tfd_publisher_new("crash/exit", 0, &pub) < 0 ||
		    wait_stat(pub, 1, false, 10000) < 0)
			_exit(2);
		for (i = 0; i < 3; i++)
			if (publish_tagged(pub, 300 + (uint64_t)i, WORDS) < 0)
				_exit(3);
		/* the subscriber's release of the first arrives; we leave without reading it */
		if (read(go[0], &c, 1) != 1)
			_exit(4);
		tfd_publisher_unref(pub);
		_exit(0);
	}
	close(go[0]);
	r = tfd_subscriber_recv(sub, 10000, &m);
	ok(r == 0 && intact(m, 300, WORDS), "a publisher sent 3 messages; the first arrived");
	tfd_message_unref(m);
	usleep(50000);
	ok(write(go[1], "x", 1) == 1, "it exits, our release of the first unread");
	close(go[1]);
	ok(wait_child(pid) == 0, "publisher exited cleanly");
	for (i = 1; i < 3; i++) {
		r = tfd_subscriber_recv(sub, 2000, &m);
		if (r == 0) {
			good += intact(m, 300 + (uint64_t)i, WORDS);
			tfd_message_unref(m);
		} else {
			diag("message %d: %d (%s)", i + 1, r, tfd_subscriber_strerror(sub));
			break;
		}
	}
	ok(good == 2, "the other two are still delivered after it left (%d of 2)", good);
	r = tfd_subscriber_recv(sub, 2000, &m);
	ok(r == -ECONNRESET || (good < 2 && r == -ETIMEDOUT), "then -ECONNRESET (%d)", r);
	tfd_subscriber_unref(sub);
	ok(count_fds() == fds0, "no fd leaked");
}

int main(void)
{
	char dir[] = "/tmp/tfd-crash-XXXXXX";
	int fds0;

	tap_init(60);
	signal(SIGBUS, on_sigbus);
	fds0 = count_fds();
	tap_runtime_dir(dir);
	subscribers_killed();
	publisher_killed();
	publisher_exits();
	rm_tree(dir);
	ok(count_fds() == fds0, "no fd leaked overall");
	return done_testing();
}
