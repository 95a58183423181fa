/* SPDX-License-Identifier: MIT */
/*
 * Soak: one publisher and four subscriber processes at a high rate for
 * SOAK_SECONDS (default 10). About once a second one subscriber is
 * SIGKILLed and a new one forked in its place. The publisher changes
 * twice: after a third of the time this process closes its publisher and
 * a child process publishes on the topic; after two thirds the child is
 * SIGKILLed mid-stream and this process publishes again, replacing the
 * dead publisher's socket. Every subscriber re-attaches each time.
 *
 * Each message carries a checksum of its tensor: every message a
 * subscriber receives must match it. Each subscriber accounts for every
 * message it missed: in each attachment, messages received plus its drop
 * counter equal the sequence numbers it spans. At the end the survivors
 * report their fds, which must be bounded by the pool and back to base
 * after unref, and their anonymous memory (RssAnon), which must not grow
 * by 1 MiB; the publisher's fds are flat and every loan came back.
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
	uint64_t unaccounted;	/* attachments whose drops do not explain the gaps */
	int64_t rss_warm;	/* RssAnon in KiB after the first attachment warmed up */
	int64_t rss_end;	/* RssAnon in KiB before unref */
	int32_t fds_start;	/* attached, at the first message */
	int32_t fds_end;	/* before unref; negative if detached then */
	int32_t fds_base;	/* before tfd_subscriber_new */
	int32_t fds_after;	/* after tfd_subscriber_unref */
};

struct slot {
	pid_t pid;
	int stop;		/* write end: closed to stop it */
	int report;		/* read end */
	int born;		/* the publisher phase it was forked in: 0, 1 or 2 */
	bool initial;		/* attached to the first publisher before the soak began */
};

/* Who publishes: this process, then a child that is killed, then this process again. */
enum { PHASE_FIRST, PHASE_CHILD, PHASE_LAST, PHASES };

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

/* RssAnon of this process in KiB, from /proc/self/status; -1 if unknown. */
static int64_t rss_anon_kib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[128];
	long long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %lld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* The sequence numbers one attachment saw, and the drop counter when it began. */
struct attachment {
	uint64_t first, last, received, dropped0;
};

/* Close an attachment: received plus dropped must span first..last. */
static void account(struct attachment *a, struct tfd_subscriber *sub, struct report *rep)
{
	struct tfd_subscriber_stats ss;

	tfd_subscriber_get_stats(sub, &ss);
	if (a->received && a->received + (ss.dropped - a->dropped0) != a->last - a->first + 1) {
		fprintf(stderr, "# subscriber %d: seq %llu..%llu, received %llu, dropped %llu\n",
			(int)getpid(), (unsigned long long)a->first, (unsigned long long)a->last,
			(unsigned long long)a->received,
			(unsigned long long)(ss.dropped - a->dropped0));
		rep->unaccounted++;
	}
	*a = (struct attachment){ .dropped0 = ss.dropped };
}

static int subscriber_proc(int stop, int report)
{
	struct pollfd pfd = { .fd = stop, .events = POLLIN };
	struct tfd_subscriber *sub;
	struct tfd_subscriber_stats ss;
	struct tfd_message *m, *prev = NULL;
	struct report rep = { .rss_warm = -1 };
	struct attachment a = { 0 };
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
			if (!a.received)
				a.first = tfd_message_seq(m);
			a.last = tfd_message_seq(m);
			if (++a.received == 2000 && rep.rss_warm < 0)
				rep.rss_warm = rss_anon_kib();
			/* the one held meanwhile must not have been reused */
			if (prev) {
				rep.bad += !intact(prev);
				tfd_message_unref(prev);
			}
			prev = m;
		} else if (r == -ECONNRESET) {
			account(&a, sub, &rep);
		} else if (r != -ETIMEDOUT && r != -EAGAIN && r != -EINTR) {
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
	account(&a, sub, &rep);
	rep.rss_end = rss_anon_kib();
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

/* The middle phase's publisher: publishes until it is killed. */
static int child_publisher(void)
{
	struct tfd_publisher *pub;
	uint64_t id = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	close_inherited(-1, -1);
	if (tfd_publisher_new(TOPIC, 0, &pub) < 0)
		return 2;
	tfd_publisher_set_pool_limits(pub, POOL_MAX, 64u << 20);
	for (;;) {
		publish_one(pub, ++id);
		tfd_publisher_dispatch(pub, 0);
	}
}

/* The publisher of this process, with its pool limits set. */
static struct tfd_publisher *own_publisher(void)
{
	struct tfd_publisher *pub = NULL;

	if (tfd_publisher_new(TOPIC, 0, &pub) < 0)
		return NULL;
	tfd_publisher_set_pool_limits(pub, POOL_MAX, 64u << 20);
	return pub;
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
	int reports = 0, reports_ok = 0, reattached = 0, veterans = 0, exits_ok = 0, phase;
	int unaccounted = 0, rss_ok = 0, rss_known = 0, child_status = -1;
	uint64_t id = 0, start, end, next_kill, published = 0, total = 0, quiet_end;
	pid_t child = -1;

	if (soak < 3)
		soak = 3;
	tap_init((unsigned int)soak + 30);
	signal(SIGPIPE, SIG_IGN);
	fds0 = count_fds();
	tap_runtime_dir(dir);
	diag("soak for %d s (SOAK_SECONDS)", soak);

	pub = own_publisher();
	if (!ok(pub != NULL, "publisher of %s", TOPIC))
		return done_testing();
	base1 = count_fds();
	for (k = 0; k < SUBS; k++) {
		if (spawn(&slot[k]) < 0)
			return ok(0, "fork: %s", strerror(errno)), done_testing();
		slot[k].born = PHASE_FIRST;
		slot[k].initial = true;
	}
	ok(wait_stat(pub, SUBS, false, 10000, &id) == 0, "%d subscribers attached", SUBS);

	srand(4242);
	start = now_ms();
	end = start + (uint64_t)soak * 1000;
	quiet_end = soak >= 8 ? 2000 : (uint64_t)soak * 250;
	next_kill = start + 700 + (uint64_t)(rand() % 600);
	phase = PHASE_FIRST;
	while (now_ms() < end) {
		if (pub) {
			if (publish_one(pub, ++id) < 0 && pub_err++ < 5)
				diag("publish: %s", tfd_publisher_strerror(pub));
			tfd_publisher_dispatch(pub, 0);
		} else {
			usleep(1000);
		}
		/* no kills at the very end: a replacement must get to receive something */
		if (now_ms() >= next_kill && now_ms() + quiet_end < end) {
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
			slot[k].born = phase;
			slot[k].initial = false;
			next_kill = now_ms() + 700 + (uint64_t)(rand() % 600);
		}
		if (phase == PHASE_FIRST && now_ms() >= start + (uint64_t)soak * 1000 / 3) {
			/* hand the topic to a child publisher */
			tfd_publisher_get_stats(pub, &st);
			published += st.published;
			pub = tfd_publisher_unref(pub);
			ok(count_fds() == fds0 + 2 * SUBS,
			   "publisher closed mid-soak: its fds all gone (%d, want %d)", count_fds(),
			   fds0 + 2 * SUBS);
			child = fork();
			if (child == 0)
				_exit(child_publisher());
			ok(child > 0, "a child process publishes on %s", TOPIC);
			phase = PHASE_CHILD;
		} else if (phase == PHASE_CHILD &&
			   now_ms() >= start + (uint64_t)soak * 2000 / 3) {
			/* kill it mid-stream, take over its topic */
			if (child > 0) {
				kill(child, SIGKILL);
				child_status = wait_child(child);
			}
			ok(child_status == 128 + SIGKILL, "the child publisher was SIGKILLed (%d)",
			   child_status);
			pub = own_publisher();
			if (!ok(pub != NULL, "a new publisher replaces the dead one's socket"))
				break;
			base2 = count_fds() - 2 * SUBS;
			ok(base2 == base1, "same fds as the first publisher (%d, %d)", base2, base1);
			ok(wait_stat(pub, SUBS, false, 5000, &id) == 0,
			   "all %d subscribers re-attached to it", SUBS);
			phase = PHASE_LAST;
			/* kills stay away from the hand-over */
			next_kill = now_ms() + 300;
		}
	}
	ok(phase == PHASE_LAST, "the publisher changed twice");
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
		diag("subscriber %d (born in phase %d): received %llu, dropped %llu, attaches %llu, "
		     "bad %llu, unaccounted %llu, fds %d..%d (base %d, after %d), "
		     "RssAnon %lld..%lld KiB",
		     k, slot[k].born, (unsigned long long)rep.received,
		     (unsigned long long)rep.dropped, (unsigned long long)rep.attaches,
		     (unsigned long long)rep.bad, (unsigned long long)rep.unaccounted,
		     rep.fds_start, rep.fds_end, rep.fds_base, rep.fds_after,
		     (long long)rep.rss_warm, (long long)rep.rss_end);
		/*
		 * One attachment per publisher it lived through: all three for
		 * the first subscribers, each publisher after the one it was
		 * born under for the others (it may not have reached that one).
		 */
		if (slot[k].born != PHASE_LAST) {
			uint64_t want = slot[k].initial ? PHASES : (uint64_t)(PHASES - 1 - slot[k].born);

			veterans++;
			reattached += rep.attaches >= want;
		}
		unaccounted += rep.unaccounted != 0;
		/* anonymous memory flat once warm: under 1 MiB of growth */
		if (rep.rss_warm >= 0 && rep.rss_end >= 0) {
			rss_known++;
			rss_ok += rep.rss_end - rep.rss_warm < 1024;
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
	ok(unaccounted == 0, "every message a survivor missed is in its drop counter "
	   "(%d with gaps unaccounted for)", unaccounted);
#ifdef __SANITIZE_ADDRESS__
	skip("RssAnon: ASan's quarantine holds freed memory, growth says nothing here");
#else
	if (under_valgrind())
		skip("RssAnon: valgrind's shadow memory grows with use, growth says nothing here");
	else
		ok(rss_ok == rss_known && rss_known > 0, "RssAnon grew by less than 1 MiB once "
		   "warm (%d/%d survivors measured)", rss_ok, rss_known);
#endif
	ok(reattached == veterans, "each re-attached to every new publisher (%d/%d)", reattached,
	   veterans);

	ok(wait_stat(pub, 0, true, 5000, NULL) == 0, "after the final dispatch: no subscribers");
	tfd_publisher_get_stats(pub, &st);
	published += st.published;
	diag("this process published %llu (the child more), survivors received %llu, %d kills, "
	     "pool %llu buffers", (unsigned long long)published, (unsigned long long)total, kills,
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
