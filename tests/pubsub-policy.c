/* SPDX-License-Identifier: MIT */
/*
 * Falling behind: under the default policy a stuck, slow or dead
 * subscriber never holds up the publisher or the others; what is dropped
 * for it is the oldest, counted on both ends, and it sees the newest when
 * it reads again. The queue depth bounds what waits; TFD_BLOCK makes
 * publish wait, with a timeout; the queue is set before anyone attaches.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "tap.h"
#include "tensorfd.h"

#define MESSAGES	1000
#define DEPTH		16	/* the default */

static int wait_subscribers(struct tfd_publisher *pub, uint64_t n, int timeout_ms)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == n)
			return 0;
		if (now_ms() > end)
			return -ETIMEDOUT;
		tfd_publisher_dispatch(pub, 10);
	}
}

/* One loaned uint64 holding the sequence number it will be published as. */
static int publish_counter(struct tfd_publisher *pub, uint64_t value)
{
	const int64_t n = 1;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	uint64_t end = now_ms() + 5000;
	int r;

	while ((r = tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n, &b,
					      &l)) == -ENOBUFS &&
	       now_ms() < end)
		tfd_publisher_dispatch(pub, 10);
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

static bool counter_ok(const struct tfd_message *m)
{
	const uint64_t *p = tfd_message_data(m, 0);

	return p && *p == tfd_message_seq(m);
}

static int find_pid(struct tfd_publisher *pub, pid_t pid, struct tfd_subscriber_info *info)
{
	unsigned int i;

	for (i = 0; tfd_publisher_get_subscriber(pub, i, info) == 0; i++)
		if (info->pid == pid)
			return 0;
	return -ENOENT;
}

/* --- stuck, slow, dead and live subscribers --- */

enum role { LIVE, STUCK, SLOW, DEAD, ROLES };

struct report {
	uint64_t received, bad, dropped, last_seq;
	uint64_t first[DEPTH * 2 + 4];
	volatile int attached, done;
};

static int subscriber_proc(enum role role, struct report *rep, int unstick, int quit)
{
	struct tfd_subscriber *sub;
	struct tfd_subscriber_stats st;
	struct tfd_message *m, *keep[16];
	unsigned int nkeep = 0;
	char c;
	int r;

	if (tfd_subscriber_new("policy", 0, &sub) < 0)
		return 2;
	tfd_subscriber_get_stats(sub, &st);
	if (!st.connected)
		return 3;
	rep->attached = 1;
	if (role == STUCK && read(unstick, &c, 1) < 0)
		return 4;
	for (;;) {
		r = tfd_subscriber_recv(sub, 20000, &m);
		if (r < 0)
			return 5;
		if (rep->received < sizeof(rep->first) / sizeof(rep->first[0]))
			rep->first[rep->received] = tfd_message_seq(m);
		rep->received++;
		rep->bad += !counter_ok(m);
		rep->last_seq = tfd_message_seq(m);
		if (role == DEAD) {
			/* hold ten, then die holding them */
			keep[nkeep++] = m;
			if (nkeep == 10)
				raise(SIGKILL);
			continue;
		}
		tfd_message_unref(m);
		if (role == SLOW)
			usleep(2000);
		if (rep->last_seq == MESSAGES)
			break;
	}
	while (nkeep)
		tfd_message_unref(keep[--nkeep]);
	tfd_subscriber_get_stats(sub, &st);
	rep->dropped = st.dropped;
	rep->done = 1;
	while (read(quit, &c, 1) < 0 && errno == EINTR)
		;
	tfd_subscriber_unref(sub);
	return 0;
}

static void falling_behind(void)
{
	struct tfd_publisher *pub = NULL;
	struct tfd_publisher_stats st;
	struct tfd_subscriber_info info, stuck_info = { 0 }, slow_info = { 0 };
	struct report *rep;
	pid_t pid[ROLES];
	int fds0 = count_fds(), unstick[2], quit[2], k, r = 0, n, i;
	uint64_t t0, t, worst = 0, elapsed, expect_drop, end;
	bool done;

	rep = mmap(NULL, sizeof(*rep) * ROLES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		   -1, 0);
	if (rep == MAP_FAILED || pipe2(unstick, O_CLOEXEC) < 0 || pipe2(quit, O_CLOEXEC) < 0) {
		ok(0, "mmap/pipe: %s", strerror(errno));
		return;
	}
	memset(rep, 0, sizeof(*rep) * ROLES);
	ok(tfd_publisher_new("policy", 0, &pub) == 0, "publisher with the default policy");
	for (k = 0; k < ROLES; k++) {
		pid[k] = fork();
		if (pid[k] == 0) {
			close(unstick[1]);
			close(quit[1]);
			_exit(subscriber_proc((enum role)k, &rep[k], unstick[0], quit[0]));
		}
	}
	close(unstick[0]);
	close(quit[0]);
	ok(wait_subscribers(pub, ROLES, 10000) == 0, "live, stuck, slow and dead subscribers");

	t0 = now_ms();
	for (i = 1; i <= MESSAGES; i++) {
		/* pace for the live one only: it must not fall behind by itself */
		end = now_ms() + 5000;
		while (find_pid(pub, pid[LIVE], &info) == 0 &&
		       info.in_flight + info.queued >= DEPTH / 2 && now_ms() < end)
			tfd_publisher_dispatch(pub, 5);
		t = now_ms();
		r = publish_counter(pub, (uint64_t)i);
		if (now_ms() - t > worst)
			worst = now_ms() - t;
		if (r < 0)
			break;
	}
	elapsed = now_ms() - t0;
	ok(r == 0 && i == MESSAGES + 1, "published %d messages in %llu ms (hang guard: < 10 s)",
	   i - 1, (unsigned long long)elapsed);
	ok(elapsed < 10000 && worst < 1000, "no publish waited on anyone: the longest took %llu ms",
	   (unsigned long long)worst);

	ok(wait_child(pid[DEAD]) == 128 + SIGKILL, "the dead one died holding 10 messages");
	wait_subscribers(pub, ROLES - 1, 5000);
	tfd_publisher_get_stats(pub, &st);
	ok(st.subscribers == ROLES - 1 && st.attached_total == ROLES,
	   "the publisher dropped it: %llu attached", (unsigned long long)st.subscribers);

	/* the stuck one: DEPTH in flight, the newest DEPTH queued, the rest dropped */
	r = find_pid(pub, pid[STUCK], &stuck_info);
	expect_drop = MESSAGES - 2 * DEPTH;
	ok(r == 0 && stuck_info.delivered == DEPTH && stuck_info.in_flight == DEPTH &&
		   stuck_info.queued == DEPTH && stuck_info.dropped == expect_drop,
	   "stuck: delivered %llu, in flight %llu, queued %u, dropped %llu (want %d/%d/%d/%llu)",
	   (unsigned long long)stuck_info.delivered, (unsigned long long)stuck_info.in_flight,
	   stuck_info.queued, (unsigned long long)stuck_info.dropped, DEPTH, DEPTH, DEPTH,
	   (unsigned long long)expect_drop);
	find_pid(pub, pid[SLOW], &slow_info);
	ok(find_pid(pub, pid[LIVE], &info) == 0 && info.dropped == 0,
	   "live: nothing dropped for it");
	ok(st.dropped >= stuck_info.dropped + slow_info.dropped,
	   "stats.dropped counts them all: %llu >= %llu + %llu (+ the dead one's)",
	   (unsigned long long)st.dropped, (unsigned long long)stuck_info.dropped,
	   (unsigned long long)slow_info.dropped);

	close(unstick[1]);
	t0 = now_ms();
	do {
		tfd_publisher_dispatch(pub, 10);
		done = rep[LIVE].done && rep[STUCK].done && rep[SLOW].done;
	} while (!done && now_ms() - t0 < 15000);
	ok(done, "live, stuck (unstuck) and slow all reached message %d", MESSAGES);

	ok(rep[LIVE].received == MESSAGES && rep[LIVE].dropped == 0 && rep[LIVE].bad == 0,
	   "live got all %d intact (received %llu, dropped %llu)", MESSAGES,
	   (unsigned long long)rep[LIVE].received, (unsigned long long)rep[LIVE].dropped);
	for (n = 0, k = 0; k < DEPTH; k++)
		n += rep[STUCK].first[k] == (uint64_t)k + 1 &&
		     rep[STUCK].first[DEPTH + k] == expect_drop + DEPTH + (uint64_t)k + 1;
	ok(rep[STUCK].received == 2 * DEPTH && n == DEPTH,
	   "stuck got the %d sent before it stuck, then the newest %d (%llu received)", DEPTH,
	   DEPTH, (unsigned long long)rep[STUCK].received);
	ok(rep[STUCK].dropped == stuck_info.dropped && rep[STUCK].last_seq == MESSAGES,
	   "stuck: its stats.dropped %llu equals the publisher's count %llu",
	   (unsigned long long)rep[STUCK].dropped, (unsigned long long)stuck_info.dropped);
	ok(rep[SLOW].received + rep[SLOW].dropped == MESSAGES && rep[SLOW].bad == 0,
	   "slow: received %llu + dropped %llu == %d", (unsigned long long)rep[SLOW].received,
	   (unsigned long long)rep[SLOW].dropped, MESSAGES);
	ok(rep[SLOW].dropped == slow_info.dropped,
	   "slow: both ends count the same drops (%llu, %llu)",
	   (unsigned long long)rep[SLOW].dropped, (unsigned long long)slow_info.dropped);

	close(quit[1]);
	for (k = 0, n = 0; k < ROLES; k++)
		if (k != DEAD)
			n += wait_child(pid[k]) == 0;
	ok(n == ROLES - 1, "they exited cleanly");
	t0 = now_ms();
	do {
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
	} while ((st.subscribers || st.pool_buffers_busy) && now_ms() - t0 < 5000);
	ok(st.subscribers == 0 && st.pool_buffers_busy == 0, "all gone, every loan back");
	tfd_publisher_unref(pub);
	munmap(rep, sizeof(*rep) * ROLES);
	ok(count_fds() == fds0, "no fd leaked");
}

/* --- depth 4, in one process --- */

static int attach(struct tfd_publisher *pub, struct tfd_subscriber *sub)
{
	struct tfd_message *m;

	if (wait_subscribers(pub, 1, 5000) < 0)
		return -ETIMEDOUT;
	tfd_subscriber_recv(sub, 0, &m);
	return 0;
}

static void depth_four(void)
{
	static const uint64_t want[] = { 1, 2, 3, 4, 17, 18, 19, 20 };
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_publisher_stats st;
	struct tfd_subscriber_info info;
	struct tfd_subscriber_stats ss;
	struct tfd_message *m;
	uint64_t got[8] = { 0 };
	int fds0 = count_fds(), i, n = 0, r;

	tfd_publisher_new("depth4", 0, &pub);
	ok(tfd_publisher_set_queue(pub, 4, TFD_DROP_OLDEST, 0) == 0, "queue depth 4, drop oldest");
	tfd_subscriber_new("depth4", 0, &sub);
	ok(attach(pub, sub) == 0, "a subscriber that does not read for a while");
	for (i = 1; i <= 20; i++)
		n += publish_counter(pub, (uint64_t)i) == 0;
	ok(n == 20, "20 published without waiting");
	tfd_publisher_get_subscriber(pub, 0, &info);
	tfd_publisher_get_stats(pub, &st);
	ok(info.delivered == 4 && info.in_flight == 4 && info.queued == 4 && info.dropped == 12 &&
		   st.dropped == 12,
	   "publisher: 4 sent, 4 queued, 12 dropped (%llu/%u/%llu, stats %llu)",
	   (unsigned long long)info.delivered, info.queued, (unsigned long long)info.dropped,
	   (unsigned long long)st.dropped);
	for (i = 0, n = 0; i < 8; i++) {
		r = tfd_subscriber_recv(sub, 100, &m);
		if (r == -ETIMEDOUT) {
			/* the queued ones go out as releases come in */
			tfd_publisher_dispatch(pub, 10);
			r = tfd_subscriber_recv(sub, 1000, &m);
		}
		if (r < 0)
			break;
		got[i] = tfd_message_seq(m);
		n += got[i] == want[i] && counter_ok(m);
		tfd_message_unref(m);
		tfd_publisher_dispatch(pub, 0);
	}
	ok(n == 8, "the subscriber sees 1-4 then the newest 17-20 (%llu %llu %llu %llu %llu %llu "
		   "%llu %llu)",
	   (unsigned long long)got[0], (unsigned long long)got[1], (unsigned long long)got[2],
	   (unsigned long long)got[3], (unsigned long long)got[4], (unsigned long long)got[5],
	   (unsigned long long)got[6], (unsigned long long)got[7]);
	tfd_subscriber_get_stats(sub, &ss);
	ok(ss.dropped == 12 && ss.received == 8, "its stats: dropped 12, received 8 (%llu, %llu)",
	   (unsigned long long)ss.dropped, (unsigned long long)ss.received);
	ok(tfd_subscriber_recv(sub, 50, &m) == -ETIMEDOUT, "nothing else");
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "no fd leaked");
}

/* --- TFD_BLOCK --- */

static void blocking(void)
{
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_publisher_stats st;
	struct tfd_message *held[2], *m;
	int fds0 = count_fds(), r;
	uint64_t t0, dt;
	pid_t pid;

	tfd_publisher_new("block", 0, &pub);
	ok(tfd_publisher_set_queue(pub, 2, TFD_BLOCK, 200) == 0, "depth 2, blocking, 200 ms");
	tfd_subscriber_new("block", 0, &sub);
	ok(attach(pub, sub) == 0, "a subscriber");
	ok(publish_counter(pub, 1) == 0 && publish_counter(pub, 2) == 0, "two published");
	ok(tfd_subscriber_recv(sub, 1000, &held[0]) == 0 &&
		   tfd_subscriber_recv(sub, 1000, &held[1]) == 0,
	   "the subscriber holds both");
	t0 = now_ms();
	r = publish_counter(pub, 3);
	dt = now_ms() - t0;
	ok(r == -ETIMEDOUT && dt >= 190 && dt < 2000, "a third: -ETIMEDOUT after %llu ms (%d)",
	   (unsigned long long)dt, r);
	ok(strstr(tfd_publisher_strerror(pub), "room") != NULL, "reason: %s",
	   tfd_publisher_strerror(pub));
	tfd_publisher_get_stats(pub, &st);
	ok(st.published == 2 && st.dropped == 0, "not published, nothing dropped");
	tfd_message_unref(held[0]);
	tfd_message_unref(held[1]);
	t0 = now_ms();
	r = publish_counter(pub, 3);
	ok(r == 0 && now_ms() - t0 < 150, "released: it goes at once");
	r = tfd_subscriber_recv(sub, 1000, &m);
	ok(r == 0 && tfd_message_seq(m) == 3 && counter_ok(m),
	   "as message 3 (the timed-out attempt took no number)");
	tfd_message_unref(m);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);

	/* a subscriber that dies while publish waits for it ends the wait */
	pub = NULL;
	tfd_publisher_new("block", 0, &pub);
	tfd_publisher_set_queue(pub, 2, TFD_BLOCK, 10000);
	pid = fork();
	if (pid == 0) {
		struct tfd_subscriber *s;
		struct tfd_message *h[2];

		if (tfd_subscriber_new("block", 0, &s) < 0 || tfd_subscriber_recv(s, 5000, &h[0]) < 0 ||
		    tfd_subscriber_recv(s, 5000, &h[1]) < 0)
			_exit(1);
		usleep(300000);
		raise(SIGKILL);
	}
	wait_subscribers(pub, 1, 5000);
	publish_counter(pub, 1);
	publish_counter(pub, 2);
	t0 = now_ms();
	r = publish_counter(pub, 3);
	dt = now_ms() - t0;
	ok(r == 0 && dt < 5000, "blocked on a subscriber that died: publish went on after %llu ms",
	   (unsigned long long)dt);
	ok(wait_child(pid) == 128 + SIGKILL, "(it was SIGKILLed)");
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "no fd leaked");
}

static void settings(void)
{
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	int fds0 = count_fds();

	tfd_publisher_new("settings", 0, &pub);
	ok(tfd_publisher_set_queue(pub, 0, TFD_DROP_OLDEST, 0) == -EINVAL, "depth 0: -EINVAL");
	ok(tfd_publisher_set_queue(pub, 4, (enum tfd_drop_policy)7, 0) == -EINVAL,
	   "unknown policy: -EINVAL");
	ok(tfd_publisher_set_queue(pub, 4, TFD_BLOCK, -2) == -EINVAL, "timeout -2: -EINVAL");
	ok(tfd_publisher_set_queue(pub, 4, TFD_BLOCK, -1) == 0, "depth 4, block forever: fine");
	tfd_subscriber_new("settings", 0, &sub);
	ok(attach(pub, sub) == 0, "a subscriber attached");
	ok(tfd_publisher_set_queue(pub, 8, TFD_DROP_OLDEST, 0) == -EBUSY,
	   "then set_queue: -EBUSY (%s)", tfd_publisher_strerror(pub));
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "no fd leaked");
}

int main(void)
{
	char dir[] = "/tmp/tfd-policy-XXXXXX";
	int fds0;

	tap_init(60);
	fds0 = count_fds();
	tap_runtime_dir(dir);
	falling_behind();
	depth_four();
	blocking();
	settings();
	rm_tree(dir);
	ok(count_fds() == fds0, "no fd leaked overall");
	return done_testing();
}
