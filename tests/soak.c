/* SPDX-License-Identifier: MIT */
/*
 * Soak: one publisher and four subscriber processes at a high rate for
 * SOAK_SECONDS (default 10). About once a second one subscriber is
 * SIGKILLed and a new one forked in its place; half-way the publisher is
 * closed and a new one opened on the same topic, and every subscriber
 * re-attaches. Each message carries a checksum of its tensor: every
 * message a subscriber receives must match it. At the end the survivors
 * report what they received and dropped and their fds, which must be
 * flat; the publisher's fds are flat and every loan came back.
 */
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

#include "tap.h"
#include "tensorfd.h"

#define TOPIC		"soak/t"
#define SUBS		4
#define WORDS		1024	/* uint64 per message: 8 KiB */
#define POOL_MAX	64	/* buffers; a subscriber keeps an fd for each it has seen */
#define SUB_FDS		6	/* a subscriber's own fds besides buffers, with slack */

struct tag {
	uint64_t id;
	uint64_t words;
	uint64_t sum;
};

struct report {
	uint64_t received;
	uint64_t dropped;
	uint64_t attaches;
	uint64_t bad;		/* checksum failures */
	int32_t fds_start;	/* attached, at the first message */
	int32_t fds_end;	/* before unref; negative if detached then */
	int32_t fds_base;	/* before tfd_subscriber_new */
	int32_t fds_after;	/* after tfd_subscriber_unref */
};

struct slot {
	pid_t pid;
	int stop;		/* write end: closed to stop it */
	int report;		/* read end */
	bool before_restart;	/* lived through the publisher restart */
};

static uint64_t checksum(const uint64_t *p, uint64_t words)
{
	uint64_t h = 0xcbf29ce484222325ull, j;

	for (j = 0; j < words; j++)
		h = (h ^ p[j]) * 0x100000001b3ull;
	return h;
}

static bool intact(const struct tfd_message *m)
{
	const struct tag *t;
	const struct tfd_layout *l;
	size_t len = 0;
	const uint64_t *p;

	t = tfd_message_get_user_data(m, &len);
	p = tfd_message_data(m, 0);
	l = tfd_message_layout(m, 0);
	if (!t || len != sizeof(*t) || !p || !l || l->ndim != 1 || (uint64_t)l->shape[0] != t->words)
		return false;
	return checksum(p, t->words) == t->sum;
}

/* Close every fd inherited from the parent (its publisher's included) but ours. */
static void close_inherited(int keep1, int keep2)
{
	int fd, max = (int)sysconf(_SC_OPEN_MAX);

	for (fd = 3; fd < max && fd < 65536; fd++)
		if (fd != keep1 && fd != keep2)
			close(fd);
}

static int subscriber_proc(int stop, int report)
{
	struct pollfd pfd = { .fd = stop, .events = POLLIN };
	struct tfd_subscriber *sub;
	struct tfd_subscriber_stats ss;
	struct tfd_message *m, *prev = NULL;
	struct report rep = { 0 };
	int r;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	rep.fds_base = count_fds();
	rep.fds_start = -1;
	if (tfd_subscriber_new(TOPIC, 0, &sub) < 0)
		return 2;
	for (;;) {
		r = tfd_subscriber_recv(sub, 20, &m);
		if (r == 0) {
			rep.bad += !intact(m);
			if (rep.fds_start < 0)
				rep.fds_start = count_fds();
			/* the one held meanwhile must not have been reused */
			if (prev) {
				rep.bad += !intact(prev);
				tfd_message_unref(prev);
			}
			prev = m;
		} else if (r != -ETIMEDOUT && r != -EAGAIN && r != -EINTR && r != -ECONNRESET) {
			fprintf(stderr, "# subscriber %d: recv %d (%s)\n", (int)getpid(), r,
				tfd_subscriber_strerror(sub));
			return 3;
		}
		if (poll(&pfd, 1, 0) > 0)
			break;
	}
	if (prev) {
		rep.bad += !intact(prev);
		tfd_message_unref(prev);
	}
	tfd_subscriber_get_stats(sub, &ss);
	rep.received = ss.received;
	rep.dropped = ss.dropped;
	rep.attaches = ss.attaches;
	rep.fds_end = count_fds();
	if (!ss.connected)
		rep.fds_end = -rep.fds_end;	/* detached: not comparable, flagged */
	tfd_subscriber_unref(sub);
	rep.fds_after = count_fds();
	if (write(report, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		return 4;
	return 0;
}

static int spawn(struct slot *s)
{
	int stop[2], rep[2];

	if (pipe2(stop, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(rep, O_CLOEXEC) < 0) {
		close(stop[0]);
		close(stop[1]);
		return -errno;
	}
	s->pid = fork();
	if (s->pid == 0) {
		close_inherited(stop[0], rep[1]);
		_exit(subscriber_proc(stop[0], rep[1]));
	}
	close(stop[0]);
	close(rep[1]);
	if (s->pid < 0) {
		close(stop[1]);
		close(rep[0]);
		return -errno;
	}
	s->stop = stop[1];
	s->report = rep[0];
	s->before_restart = false;
	return 0;
}

static void reap(struct slot *s)
{
	close(s->stop);
	close(s->report);
	s->pid = -1;
}

static int publish_one(struct tfd_publisher *pub, uint64_t id)
{
	const int64_t n = WORDS;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	struct tag t = { .id = id, .words = WORDS };
	uint64_t *p, j, end = now_ms() + 5000;
	int r;

	while ((r = tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n, &b,
					      &l)) == -ENOBUFS &&
	       now_ms() < end)
		tfd_publisher_dispatch(pub, 5);
	if (r < 0)
		return r;
	p = tfd_buffer_data(b);
	for (j = 0; j < WORDS; j++)
		p[j] = id * 0x9e3779b97f4a7c15ull + j * 0x2545f4914f6cdd1dull;
	t.sum = checksum(p, WORDS);
	r = tfd_message_new(&m);
	if (r < 0) {
		tfd_buffer_unref(b);
		return r;
	}
	tfd_message_add_tensor(m, "x", b, &l);
	tfd_message_set_user_data(m, &t, sizeof(t));
	tfd_buffer_unref(b);
	r = tfd_publisher_publish(pub, m);
	tfd_message_unref(m);
	return r;
}

static int wait_stat(struct tfd_publisher *pub, uint64_t subscribers, bool idle, int timeout_ms,
		     uint64_t *id)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == subscribers && (!idle || st.pool_buffers_busy == 0))
			return 0;
		if (now_ms() > end)
			return -ETIMEDOUT;
		/* keep the traffic going while we wait, unless draining */
		if (id)
			publish_one(pub, ++*id);
		tfd_publisher_dispatch(pub, id ? 0 : 10);
	}
}

int main(void)
{
	char dir[] = "/tmp/tfd-soak-XXXXXX";
	struct tfd_publisher *pub = NULL;
	struct tfd_publisher_stats st;
	struct slot slot[SUBS];
	struct report rep;
	const char *env = getenv("SOAK_SECONDS");
	int soak = env ? atoi(env) : 10;
	int fds0, base1, base2 = -1, k, status, kills = 0, kills_ok = 0, spawn_fail = 0, pub_err = 0;
	int reports = 0, reports_ok = 0, reattached = 0, before = 0, exits_ok = 0;
	uint64_t id = 0, start, end, next_kill, published = 0, total = 0;
	bool restarted = false;
	int restart_reattach = -1;

	if (soak < 1)
		soak = 1;
	tap_init((unsigned int)soak + 15);
	signal(SIGPIPE, SIG_IGN);
	fds0 = count_fds();
	tap_runtime_dir(dir);
	diag("soak for %d s (SOAK_SECONDS)", soak);

	if (!ok(tfd_publisher_new(TOPIC, 0, &pub) == 0, "publisher of %s", TOPIC))
		return done_testing();
	tfd_publisher_set_pool_limits(pub, POOL_MAX, 64u << 20);
	base1 = base2 = count_fds();
	for (k = 0; k < SUBS; k++)
		if (spawn(&slot[k]) < 0)
			return ok(0, "fork: %s", strerror(errno)), done_testing();
	ok(wait_stat(pub, SUBS, false, 10000, &id) == 0, "%d subscribers attached", SUBS);

	srand(4242);
	start = now_ms();
	end = start + (uint64_t)soak * 1000;
	next_kill = start + 700 + (uint64_t)(rand() % 600);
	while (now_ms() < end) {
		if (publish_one(pub, ++id) < 0 && pub_err++ < 5)
			diag("publish: %s", tfd_publisher_strerror(pub));
		tfd_publisher_dispatch(pub, 0);
		if (now_ms() >= next_kill) {
			k = rand() % SUBS;
			kill(slot[k].pid, SIGKILL);
			status = wait_child(slot[k].pid);
			kills++;
			kills_ok += status == 128 + SIGKILL;
			if (status != 128 + SIGKILL)
				diag("subscriber %d exited %d before its kill", k, status);
			reap(&slot[k]);
			if (spawn(&slot[k]) < 0)
				spawn_fail++;
			next_kill = now_ms() + 700 + (uint64_t)(rand() % 600);
		}
		if (!restarted && now_ms() >= start + (uint64_t)soak * 500) {
			tfd_publisher_get_stats(pub, &st);
			published += st.published;
			tfd_publisher_unref(pub);
			pub = NULL;
			for (k = 0; k < SUBS; k++)
				slot[k].before_restart = true;
			ok(count_fds() == fds0 + 2 * SUBS,
			   "publisher closed mid-soak: its fds all gone (%d, want %d)", count_fds(),
			   fds0 + 2 * SUBS);
			if (!ok(tfd_publisher_new(TOPIC, 0, &pub) == 0, "new publisher on %s", TOPIC))
				break;
			tfd_publisher_set_pool_limits(pub, POOL_MAX, 64u << 20);
			base2 = count_fds() - 2 * SUBS;
			ok(base2 == base1, "same fds as the first publisher (%d, %d)", base2, base1);
			restart_reattach = wait_stat(pub, SUBS, false, 5000, &id) == 0;
			ok(restart_reattach, "all %d subscribers re-attached to it", SUBS);
			restarted = true;
			/* kills stay away from the restart */
			next_kill = now_ms() + 300;
		}
	}
	ok(restarted, "the publisher was restarted");
	ok(kills > 0 && kills_ok == kills, "%d subscribers SIGKILLed and replaced (%d died of it)",
	   kills, kills_ok);
	ok(spawn_fail == 0, "every replacement forked");
	ok(pub_err == 0, "every publish succeeded");
	if (!pub)
		return done_testing();

	/* stop the survivors, collect their reports */
	for (k = 0; k < SUBS; k++)
		close(slot[k].stop);
	for (k = 0; k < SUBS; k++) {
		struct pollfd pfd = { .fd = slot[k].report, .events = POLLIN };
		ssize_t n = 0;

		/* our publisher must keep serving while they drain */
		while (poll(&pfd, 1, 0) == 0)
			tfd_publisher_dispatch(pub, 5);
		n = read(slot[k].report, &rep, sizeof(rep));
		status = wait_child(slot[k].pid);
		exits_ok += status == 0;
		close(slot[k].report);
		if (n != (ssize_t)sizeof(rep)) {
			diag("subscriber %d: no report (exit %d)", k, status);
			continue;
		}
		reports++;
		total += rep.received;
		diag("subscriber %d%s: received %llu, dropped %llu, attaches %llu, bad %llu, "
		     "fds %d..%d (base %d, after %d)",
		     k, slot[k].before_restart ? " (across the restart)" : "",
		     (unsigned long long)rep.received, (unsigned long long)rep.dropped,
		     (unsigned long long)rep.attaches, (unsigned long long)rep.bad, rep.fds_start,
		     rep.fds_end, rep.fds_base, rep.fds_after);
		if (slot[k].before_restart) {
			before++;
			reattached += rep.attaches >= 2;
		}
		/*
		 * While attached a subscriber keeps one fd per pool buffer it
		 * has seen (until the publisher forgets it), so its count is
		 * bounded by the pool, not flat; once closed it is exact.
		 */
		if (rep.received > 0 && rep.bad == 0 && rep.fds_start > rep.fds_base &&
		    rep.fds_end > rep.fds_base &&
		    rep.fds_end <= rep.fds_base + POOL_MAX + SUB_FDS &&
		    rep.fds_after == rep.fds_base)
			reports_ok++;
	}
	ok(exits_ok == SUBS, "the %d survivors exited cleanly (%d)", SUBS, exits_ok);
	ok(reports == SUBS && reports_ok == SUBS,
	   "each received intact messages only; fds bounded by the pool (%d), back to base "
	   "after unref (%d/%d reports good)", POOL_MAX, reports_ok, SUBS);
	ok(reattached == before, "those alive across the restart re-attached (%d/%d)", reattached,
	   before);

	ok(wait_stat(pub, 0, true, 5000, NULL) == 0, "after the final dispatch: no subscribers");
	tfd_publisher_get_stats(pub, &st);
	published += st.published;
	diag("published %llu, received by survivors %llu, %d kills, pool %llu buffers",
	     (unsigned long long)published, (unsigned long long)total, kills,
	     (unsigned long long)st.pool_buffers);
	ok(st.pool_buffers_busy == 0 && st.pool_bytes_busy == 0, "pool_buffers_busy %llu",
	   (unsigned long long)st.pool_buffers_busy);
	ok(count_fds() - (int)st.pool_buffers == base2,
	   "publisher fds flat: %d less %llu pool buffers, base %d", count_fds(),
	   (unsigned long long)st.pool_buffers, base2);
	ok(st.attached_total >= SUBS && st.refused == 0, "attached %llu in all, refused %llu",
	   (unsigned long long)st.attached_total, (unsigned long long)st.refused);
	tfd_publisher_unref(pub);
	rm_tree(dir);
	ok(count_fds() == fds0, "no fd leaked");
	return done_testing();
}
