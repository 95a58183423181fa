/* SPDX-License-Identifier: MIT */
/*
 * tensorfd itself: a topic, this process publishing, N forked subscribers.
 *
 * Latency: one message in flight at a time. A round: the publisher takes
 * the clock (t0, carried in the user bytes), loans a pool buffer, produces
 * (touches it: the ends or every cache line), publishes, then dispatches
 * until every subscriber released it; that is the round trip. A subscriber
 * receives, consumes (reads the same bytes, checking they are this
 * round's), takes the clock and stores now - t0 (one-way) in a mapping
 * shared with the publisher, then drops the message, which releases it.
 * A subscriber blocks in the library, or spins on it with a zero timeout
 * for --spin-us, then blocks.
 *
 * Throughput: tensors of --rate-size bytes published as fast as publish
 * returns (TFD_BLOCK: nothing dropped), the CPU time of each side per
 * message from CLOCK_PROCESS_CPUTIME_ID.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tensorfd.h>

#include "bench.h"

enum probe_kind {
	PROBE_WARMUP,
	PROBE_DATA,
	PROBE_END,
};

/* The user bytes of every message. */
struct probe {
	uint32_t kind;
	uint32_t size_idx;
	uint32_t slot;		/* round of this size, warm-up rounds first */
	uint32_t mark;		/* the byte the producer wrote */
	uint64_t t0;		/* the publisher's clock at the start of the round */
};

struct sub_report {
	uint64_t received;	/* PROBE_DATA messages */
	uint64_t stale;		/* messages whose bytes were not this round's */
	uint64_t dropped;
	uint64_t cpu_ns;	/* from the first PROBE_DATA message to PROBE_END */
	long rss_kib[BENCH_MAX_SIZES][2];	/* after the warm-up, after the last round */
	int failed;
};

struct run {
	const struct options *opt;
	char topic[48];
	unsigned int n;		/* subscribers */
	bool spin;
	enum touch touch;
	bool rate;
	unsigned int rounds[BENCH_MAX_SIZES];	/* warm-up + measured, per size */
	unsigned int warm[BENCH_MAX_SIZES];
	unsigned int max_rounds;
	struct sub_report *rep;
	uint64_t *samples;	/* [subscriber][size][round] */
	size_t map_len;
	pid_t pid[BENCH_MAX_SUBS];
	unsigned int forked;
};

static uint64_t *sample_at(const struct run *run, unsigned int sub, unsigned int size_idx)
{
	return run->samples + ((size_t)sub * run->opt->n_sizes + size_idx) * run->max_rounds;
}

/* --- subscriber processes ------------------------------------------------------ */

static int sub_next(const struct run *run, struct tfd_subscriber *sub, struct tfd_message **m)
{
	uint64_t until = run->spin ? now_ns() + (uint64_t)run->opt->spin_us * 1000 : 0;
	uint64_t deadline = now_ns() + BENCH_TIMEOUT_MS * 1000000ull;
	int r;

	do
		r = tfd_subscriber_recv(sub, until && now_ns() < until ? 0 : 100, m);
	while ((r == -EAGAIN || r == -EINTR || r == -ETIMEDOUT) && now_ns() < deadline);
	return r;
}

static int read_probe(const struct tfd_message *m, struct probe *p)
{
	const void *u;
	size_t len;

	u = tfd_message_get_user_data(m, &len);
	if (!u || len != sizeof(*p))
		return -EBADMSG;
	memcpy(p, u, sizeof(*p));
	return 0;
}

static bool consume(const struct run *run, const struct tfd_message *m, const struct probe *p)
{
	const struct tfd_layout *l = tfd_message_layout(m, 0);
	const uint8_t *data = tfd_message_data(m, 0);
	uint64_t n;

	if (!l || !data || tfd_layout_nbytes(l, &n) < 0)
		return false;
	return touch_read(data, n, (uint8_t)p->mark, run->touch);
}

/* Book one message; t: the clock once it was consumed. */
static int sub_take(struct run *run, unsigned int idx, const struct probe *p, uint64_t t)
{
	struct sub_report *rep = &run->rep[idx];

	if (p->kind == PROBE_DATA)
		rep->received++;
	if (run->rate)
		return 0;
	if (p->size_idx >= run->opt->n_sizes || p->slot >= run->rounds[p->size_idx])
		return -EBADMSG;
	sample_at(run, idx, p->size_idx)[p->slot] = t - p->t0;
	return 0;
}

/* RssAnon after the last warm-up round and after the last round of a size. */
static void sub_rss(struct run *run, unsigned int idx, const struct probe *p)
{
	unsigned int s = p->size_idx;

	if (run->rate || s >= run->opt->n_sizes)
		return;
	if (p->slot + 1 == run->warm[s])
		run->rep[idx].rss_kib[s][0] = rss_anon_kib();
	else if (p->slot + 1 == run->rounds[s])
		run->rep[idx].rss_kib[s][1] = rss_anon_kib();
}

static int sub_loop(struct run *run, unsigned int idx, struct tfd_subscriber *sub)
{
	struct sub_report *rep = &run->rep[idx];
	struct tfd_message *m;
	uint64_t c0 = 0, t;
	struct probe p;
	int r;

	for (;;) {
		r = sub_next(run, sub, &m);
		if (r < 0)
			return r;
		r = read_probe(m, &p);
		if (r == 0 && p.kind == PROBE_END) {
			tfd_message_unref(m);
			break;
		}
		if (r == 0 && p.kind == PROBE_DATA && !rep->received)
			c0 = cpu_time_ns();
		if (r == 0 && !consume(run, m, &p))
			rep->stale++;
		t = now_ns();
		if (r == 0)
			r = sub_take(run, idx, &p, t);
		tfd_message_unref(m);	/* the release */
		if (r < 0)
			return r;
		sub_rss(run, idx, &p);
	}
	rep->cpu_ns = rep->received ? cpu_time_ns() - c0 : 0;
	return 0;
}

static int subscriber(struct run *run, unsigned int idx)
{
	struct tfd_subscriber_stats st;
	struct tfd_subscriber *sub;
	int r;

	if (bench_proc_setup(run->opt, 1 + idx) < 0)
		return 1;
	r = tfd_subscriber_new(run->topic, 0, &sub);
	if (r < 0) {
		fprintf(stderr, "tensorfd-bench: subscriber %u: %s\n", idx, tfd_last_error());
		return 1;
	}
	r = sub_loop(run, idx, sub);
	if (tfd_subscriber_get_stats(sub, &st) == 0)
		run->rep[idx].dropped = st.dropped;
	if (r < 0)
		fprintf(stderr, "tensorfd-bench: subscriber %u of %s: %s (%s)\n", idx, run->topic,
			strerror(-r), tfd_subscriber_strerror(sub));
	tfd_subscriber_unref(sub);
	return r < 0 ? 1 : 0;
}

/* --- runs: a topic and its subscriber processes ------------------------------------ */

static int run_start(struct run *run)
{
	size_t n_samples = run->rate ? 0 : (size_t)run->n * run->opt->n_sizes * run->max_rounds;
	unsigned int i, s;
	void *map;
	pid_t pid;

	run->map_len = run->n * sizeof(*run->rep) + n_samples * sizeof(*run->samples);
	map = mmap(NULL, run->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return -errno;
	run->rep = map;
	run->samples = (uint64_t *)(run->rep + run->n);
	for (i = 0; i < run->n; i++)
		for (s = 0; s < BENCH_MAX_SIZES; s++)
			run->rep[i].rss_kib[s][0] = run->rep[i].rss_kib[s][1] = -1;
	fflush(stdout);
	for (run->forked = 0; run->forked < run->n; run->forked++) {
		pid = fork();
		if (pid < 0)
			return -errno;
		if (pid == 0)
			_exit(subscriber(run, run->forked));
		bench_place(run->opt, 1 + run->forked, pid);
		run->pid[run->forked] = pid;
	}
	return 0;
}

static int run_end(struct run *run, bool failed)
{
	unsigned int i;
	int status, r = 0;

	for (i = 0; i < run->forked; i++) {
		if (failed)
			kill(run->pid[i], SIGTERM);
		if (waitpid(run->pid[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			r = -ECHILD;
	}
	run->forked = 0;
	return r;
}

static void run_free(struct run *run)
{
	if (run->rep)
		munmap(run->rep, run->map_len);
	run->rep = NULL;
}

/* --- publisher ----------------------------------------------------------------- */

static int pub_fail(struct tfd_publisher *pub, const char *what, int r)
{
	fprintf(stderr, "tensorfd-bench: %s: %s (%s)\n", what, strerror(-r),
		pub ? tfd_publisher_strerror(pub) : tfd_last_error());
	return r;
}

/* Dispatch for up to timeout ms, spinning (a zero timeout) while allowed. */
static int pub_dispatch(const struct run *run, struct tfd_publisher *pub, uint64_t until)
{
	int r;

	r = tfd_publisher_dispatch(pub, until && now_ns() < until ? 0 : 100);
	/* io_uring's task work interrupts the epoll_wait() inside: no signal */
	return r < 0 && r != -EINTR && r != -EAGAIN ? r : 0;
}

/* Until every subscriber released everything (or, gone_ok, all left). */
static int wait_released(const struct run *run, struct tfd_publisher *pub, bool gone_ok)
{
	uint64_t until = run->spin ? now_ns() + (uint64_t)run->opt->spin_us * 1000 : 0;
	uint64_t deadline = now_ns() + BENCH_TIMEOUT_MS * 1000000ull;
	struct tfd_publisher_stats st;
	int r;

	for (;;) {
		r = tfd_publisher_get_stats(pub, &st);
		if (r < 0)
			return r;
		if (st.pool_buffers_busy == 0 || (gone_ok && st.subscribers == 0))
			return 0;
		if (st.subscribers < run->n && !gone_ok)
			return -ECONNRESET;
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		r = pub_dispatch(run, pub, until);
		if (r < 0)
			return r;
	}
}

static bool any_exited(const struct run *run)
{
	unsigned int i;
	siginfo_t si;

	for (i = 0; i < run->forked; i++) {
		si.si_pid = 0;
		if (waitid(P_PID, (id_t)run->pid[i], &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    si.si_pid)
			return true;
	}
	return false;
}

static int pub_open(struct run *run, unsigned int depth, struct tfd_publisher **ret)
{
	uint64_t deadline = now_ns() + BENCH_TIMEOUT_MS * 1000000ull;
	struct tfd_publisher_stats st;
	struct tfd_publisher *pub;
	int r;

	r = tfd_publisher_new(run->topic, TFD_PUBLISHER_ZERO_COPY, &pub);
	if (r < 0)
		return pub_fail(NULL, "tfd_publisher_new", r);
	r = tfd_publisher_set_queue(pub, depth, TFD_BLOCK, BENCH_TIMEOUT_MS);
	/* in flight, queued and one loaned: the default 64 would bound a deep queue */
	if (r == 0 && 2 * depth + 16 > 64)
		r = tfd_publisher_set_pool_limits(pub, 2 * depth + 16, 4 * GiB);
	while (r == 0 && (r = tfd_publisher_get_stats(pub, &st)) == 0 && st.subscribers < run->n) {
		if (any_exited(run) || now_ns() > deadline) {
			r = -ECHILD;
			break;
		}
		r = tfd_publisher_dispatch(pub, 20);
		r = r < 0 && r != -EINTR ? r : 0;
	}
	if (r < 0) {
		pub_fail(pub, "opening the topic", r);
		tfd_publisher_unref(pub);
		return r;
	}
	*ret = pub;
	return 0;
}

static int loan(struct tfd_publisher *pub, uint64_t size, struct tfd_buffer **buf)
{
	uint64_t deadline = now_ns() + BENCH_TIMEOUT_MS * 1000000ull;
	int r;

	for (;;) {
		r = tfd_publisher_loan(pub, size, buf);
		if (r != -ENOBUFS || now_ns() > deadline)
			return r;
		r = tfd_publisher_dispatch(pub, 100);	/* every buffer is out */
		if (r < 0 && r != -EINTR)
			return r;
	}
}

/* Loan, produce, publish one message; size 0: no tensor. */
static int publish(const struct run *run, struct tfd_publisher *pub, uint64_t size,
		   struct probe *p)
{
	const struct tfd_dtype u8 = { TFD_UINT, 8, 1 };
	int64_t shape = (int64_t)size;
	struct tfd_buffer *buf = NULL;
	struct tfd_message *m = NULL;
	struct tfd_layout layout;
	int r = 0;

	if (size) {
		r = loan(pub, size, &buf);
		if (r == 0)
			touch_write(tfd_buffer_data(buf), size, (uint8_t)p->mark, run->touch);
	}
	if (r == 0)
		r = tfd_message_new(&m);
	if (r == 0 && buf)
		r = tfd_layout_init(&layout, u8, 1, &shape);
	if (r == 0 && buf)
		r = tfd_message_add_tensor(m, "tensor", buf, &layout);
	if (r == 0)
		r = tfd_message_set_user_data(m, p, sizeof(*p));
	if (r == 0)
		r = tfd_publisher_publish(pub, m);
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	return r;
}

static int publish_end(struct run *run, struct tfd_publisher *pub)
{
	struct probe p = { .kind = PROBE_END };
	int r;

	r = publish(run, pub, 0, &p);
	return r == 0 ? wait_released(run, pub, true) : r;
}

/* --- latency --------------------------------------------------------------------- */

static int lat_size(struct run *run, struct tfd_publisher *pub, unsigned int s, uint64_t *rtt)
{
	struct probe p;
	unsigned int i;
	uint64_t t0;
	int r = 0;

	for (i = 0; r == 0 && i < run->rounds[s]; i++) {
		t0 = now_ns();
		p = (struct probe){ .kind = i < run->warm[s] ? PROBE_WARMUP : PROBE_DATA,
				    .size_idx = s, .slot = i, .mark = i * 7 + 1, .t0 = t0 };
		r = publish(run, pub, run->opt->sizes[s], &p);
		if (r == 0)
			r = wait_released(run, pub, false);
		rtt[i] = (now_ns() - t0) / 2;
	}
	return r;
}

static void lat_rows(struct run *run, uint64_t *const *rtt)
{
	unsigned int i, s, n, k;
	struct row *row;
	uint64_t *v;
	long *rss;

	v = calloc((size_t)run->n * run->max_rounds, sizeof(*v));
	for (s = 0; v && s < run->opt->n_sizes; s++) {
		row = row_add();
		snprintf(row->kind, sizeof(row->kind), "latency");
		snprintf(row->group, sizeof(row->group), "tensorfd");
		snprintf(row->name, sizeof(row->name), "tensorfd topic");
		snprintf(row->wait, sizeof(row->wait), "%s", run->spin ? "spin" : "block");
		snprintf(row->touch, sizeof(row->touch), "%s", touch_name(run->touch));
		row->subs = run->n;
		row->size = run->opt->sizes[s];
		row->first_ns = sample_at(run, 0, s)[0];
		n = run->rounds[s] - run->warm[s];
		for (i = k = 0; i < run->n; i++, k += n)
			memcpy(v + k, sample_at(run, i, s) + run->warm[s], n * sizeof(*v));
		row->oneway = summarize(v, k);
		row->half = summarize(rtt[s] + run->warm[s], n);
		rss = run->rep[0].rss_kib[s];
		row->rss_growth_kib = rss[0] >= 0 && rss[1] >= 0 ? rss[1] - rss[0] : -1;
		report_row(run->opt, row);
	}
	free(v);
}

static int lat_check(const struct run *run)
{
	unsigned int i, s, want = 0;
	int r = 0;

	for (s = 0; s < run->opt->n_sizes; s++)
		want += run->rounds[s] - run->warm[s];
	for (i = 0; i < run->n; i++) {
		if (run->rep[i].received == want && !run->rep[i].stale && !run->rep[i].dropped)
			continue;
		fprintf(stderr, "tensorfd-bench: %s subscriber %u: %llu of %u messages, %llu stale, "
				"%llu dropped\n",
			run->topic, i, (unsigned long long)run->rep[i].received, want,
			(unsigned long long)run->rep[i].stale,
			(unsigned long long)run->rep[i].dropped);
		r = -EPROTO;
	}
	return r;
}

static int lat_run(const struct options *opt, unsigned int subs, bool spin, enum touch touch)
{
	uint64_t *rtt[BENCH_MAX_SIZES] = { NULL };
	struct run run = { .opt = opt, .n = subs, .spin = spin, .touch = touch };
	struct tfd_publisher *pub = NULL;
	unsigned int s, n;
	int r = 0, e;

	snprintf(run.topic, sizeof(run.topic), "lat-%u-%s-%s", subs, spin ? "spin" : "block",
		 touch_name(touch));
	for (s = 0; r == 0 && s < opt->n_sizes; s++) {
		n = bench_iters(opt, opt->sizes[s], touch);
		run.warm[s] = n >= 100 ? BENCH_WARMUP : 2;
		run.rounds[s] = run.warm[s] + n;
		if (run.rounds[s] > run.max_rounds)
			run.max_rounds = run.rounds[s];
		rtt[s] = calloc(run.rounds[s], sizeof(uint64_t));
		r = rtt[s] ? 0 : -ENOMEM;
	}
	if (r == 0)
		r = run_start(&run);
	if (r == 0)
		r = pub_open(&run, 16, &pub);
	for (s = 0; r == 0 && s < opt->n_sizes; s++) {
		r = lat_size(&run, pub, s, rtt[s]);
		if (r < 0)
			pub_fail(pub, run.topic, r);
	}
	if (r == 0)
		r = publish_end(&run, pub);
	e = run_end(&run, r < 0);
	tfd_publisher_unref(pub);
	if (r == 0)
		r = e;
	if (r == 0)
		r = lat_check(&run);
	if (r == 0)
		lat_rows(&run, rtt);
	run_free(&run);
	for (s = 0; s < opt->n_sizes; s++)
		free(rtt[s]);
	return r;
}

int run_tensorfd(const struct options *opt)
{
	unsigned int i, w, t;
	int r = 0;

	for (t = TOUCH_ENDS; r == 0 && t <= TOUCH_ALL; t++)
		for (i = 0; r == 0 && i < opt->n_subs; i++)
			for (w = WAIT_BLOCK; r == 0 && w <= WAIT_SPIN; w <<= 1) {
				if (!(opt->touches & (1u << t)) || !(opt->waits & w))
					continue;
				if (w == WAIT_SPIN && !bench_can_spin(opt, 1 + opt->subs[i]))
					continue;
				r = lat_run(opt, opt->subs[i], w == WAIT_SPIN, t);
			}
	return r;
}

/* --- throughput ------------------------------------------------------------------- */

/* Pass the pool's buffers to the subscribers once, without dropping anything. */
static int rate_warmup(struct run *run, struct tfd_publisher *pub)
{
	struct probe p = { .kind = PROBE_WARMUP };
	unsigned int i;
	int r = 0;

	for (i = 0; r == 0 && i < 2 * run->opt->depth + 16; i++) {
		p.mark = i * 7 + 1;
		r = publish(run, pub, run->opt->rate_size, &p);
		if (r == 0 && i % 8 == 7)
			r = wait_released(run, pub, false);
	}
	return r == 0 ? wait_released(run, pub, false) : r;
}

static int rate_run(const struct options *opt, unsigned int subs, bool spin)
{
	struct run run = { .opt = opt, .n = subs, .spin = spin, .rate = true };
	uint64_t t0 = 0, t1 = 0, c0 = 0, c1 = 0, published = 0, sub_cpu = 0, recvd = 0;
	uint64_t dur = (uint64_t)(opt->seconds * 1e9);
	struct probe p = { .kind = PROBE_DATA };
	struct tfd_publisher *pub = NULL;
	struct row *row;
	unsigned int i;
	int r, e;

	snprintf(run.topic, sizeof(run.topic), "rate-%u-%s", subs, spin ? "spin" : "block");
	r = run_start(&run);
	if (r == 0)
		r = pub_open(&run, opt->depth, &pub);
	if (r == 0)
		r = rate_warmup(&run, pub);
	if (r == 0) {
		c0 = cpu_time_ns();
		t0 = now_ns();
	}
	while (r == 0 && ((t1 = now_ns()) - t0 < dur || opt->rate_messages) &&
	       (!opt->rate_messages || published < opt->rate_messages)) {
		p.slot = (uint32_t)published;
		p.mark = p.slot * 7 + 1;
		p.t0 = t1;
		r = publish(&run, pub, opt->rate_size, &p);
		published += r == 0;
	}
	c1 = cpu_time_ns();
	if (r == 0)
		r = publish_end(&run, pub);
	if (r < 0)
		pub_fail(pub, run.topic, r);
	e = run_end(&run, r < 0);
	tfd_publisher_unref(pub);
	r = r ? r : e;
	for (i = 0; r == 0 && i < subs; i++) {
		if (run.rep[i].received != published || run.rep[i].stale) {
			fprintf(stderr, "tensorfd-bench: %s: published %llu, subscriber %u received "
					"%llu, %llu stale\n",
				run.topic, (unsigned long long)published, i,
				(unsigned long long)run.rep[i].received,
				(unsigned long long)run.rep[i].stale);
			r = -EPROTO;
		}
		sub_cpu += run.rep[i].cpu_ns;
		recvd += run.rep[i].received;
	}
	if (r == 0) {
		row = row_add();
		snprintf(row->kind, sizeof(row->kind), "throughput");
		snprintf(row->group, sizeof(row->group), "tensorfd");
		snprintf(row->name, sizeof(row->name), "tensorfd topic");
		snprintf(row->wait, sizeof(row->wait), "%s", spin ? "spin" : "block");
		snprintf(row->touch, sizeof(row->touch), "ends");
		row->subs = subs;
		row->size = opt->rate_size;
		row->seconds = (double)(t1 - t0) / 1e9;
		row->messages = published;
		row->msgs_per_s = (double)published / row->seconds;
		row->pub_cpu_ns = published ? (double)(c1 - c0) / (double)published : 0;
		row->sub_cpu_ns = recvd ? (double)sub_cpu / (double)recvd : 0;
		report_row(opt, row);
	}
	run_free(&run);
	return r;
}

int run_throughput(const struct options *opt)
{
	unsigned int i, w;
	int r = 0;

	for (i = 0; r == 0 && i < opt->n_subs; i++)
		for (w = WAIT_BLOCK; r == 0 && w <= WAIT_SPIN; w <<= 1) {
			if (!(opt->waits & w))
				continue;
			if (w == WAIT_SPIN && !bench_can_spin(opt, 1 + opt->subs[i]))
				continue;
			r = rate_run(opt, opt->subs[i], w == WAIT_SPIN);
		}
	return r;
}
