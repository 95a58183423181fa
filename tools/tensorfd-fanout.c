/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-fanout: what a topic costs. This process publishes, N forked
 * processes subscribe, on topics under a fresh runtime directory.
 *
 * Latency: one message in flight at a time, a tensor loaned from the
 * publisher's pool with its first and last byte written. A subscriber
 * takes CLOCK_MONOTONIC when tfd_subscriber_recv() returns and subtracts
 * two stamps: the publisher's clock just before tfd_publisher_publish()
 * (in the user bytes) and the message's timestamp, which the library takes
 * just before its sendmsg() to that subscriber. It then touches the first
 * and last byte and drops the message; the publisher dispatches until no
 * pool buffer is busy (every subscriber released) before the next one, so
 * every sample is unloaded. A subscriber sleeps in the library ("block")
 * or polls it with a zero timeout ("spin", only where every process gets a
 * CPU of its own), which takes the scheduler's wake-up out of the path; with
 * the io_uring backend the completion still waits for the subscriber's task
 * work, which the kernel forces with an IPI to a task that runs in user space.
 *
 * Baseline: the same ping over a plain SOCK_SEQPACKET socketpair, 64 bytes
 * one way and 8 back, blocking or spinning: the kernel without tensorfd.
 *
 * Throughput: 64-byte tensors to one subscriber, published as fast as
 * publish returns, with a deep queue, once with TFD_BLOCK (nothing may be
 * dropped) and once with TFD_DROP_OLDEST. Rates, and CPU time and context
 * switches per message on both sides (getrusage).
 *
 * Subscribers report through a shared anonymous mapping made before the
 * fork, never through the library.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorfd.h>

#include "toolutil.h"

#define MAX_LIST	16
#define MAX_SUBS	64
#define TIMEOUT_MS	30000
#define WARMUP		20	/* unmeasured messages per size: fds pass, pages fault */
#define PING_BYTES	64
#define RATE_SIZE	64
#define KiB		(1ull << 10)
#define MiB		(1ull << 20)
#define GiB		(1ull << 30)

enum {
	PHASE_LAT = 1u << 0,
	PHASE_BASE = 1u << 1,
	PHASE_RATE = 1u << 2,
};

struct options {
	uint64_t sizes[MAX_LIST];
	unsigned int n_sizes;
	uint64_t subs[MAX_LIST];
	unsigned int n_subs;
	uint64_t cpus[MAX_LIST];	/* publisher, then subscribers in turn */
	unsigned int n_cpus;		/* 0: not pinned */
	unsigned int iters;		/* 0: by size */
	unsigned int depth;
	double seconds;
	unsigned int phases;
	bool json;
};

enum probe_kind {
	PROBE_WARMUP,
	PROBE_DATA,
	PROBE_END,
};

/* The user bytes of every message. */
struct probe {
	uint32_t kind;
	uint32_t size_idx;
	uint32_t slot;		/* sample index of a PROBE_DATA message */
	uint32_t mark;		/* the value of the tensor's first and last byte */
	uint64_t t_pub;		/* the publisher's clock just before publish */
};

struct sample {
	uint64_t from_pub, from_send;
};

struct cost {
	uint64_t cpu_ns;	/* user + system */
	uint64_t vcsw, ivcsw;	/* voluntary (sleeps) and involuntary context switches */
};

/* What one subscriber reports, in memory shared with the publisher. */
struct sub_report {
	uint64_t stale;		/* messages whose marked bytes were not the published ones */
	uint64_t received;	/* PROBE_DATA messages */
	uint64_t dropped;	/* sequence gaps the library counted */
	uint64_t t_first, t_last;
	struct cost cost;	/* from the first PROBE_DATA message to PROBE_END */
};

/* One topic, its subscribers and their reports. */
struct run {
	const struct options *opt;
	char topic[32];
	unsigned int n;
	bool spin;
	bool rate;		/* count messages, keep no samples */
	unsigned int iters_max;
	struct sub_report *rep;
	struct sample *samples;	/* [subscriber][size][slot] */
	size_t map_len;
	pid_t pid[MAX_SUBS];
	unsigned int forked;
};

struct lat_result {
	unsigned int subs;
	bool spin;
	uint64_t size;
	unsigned int iters;
	struct summary from_pub, from_send, call, idle;
};

struct ping_result {
	bool spin;
	struct summary oneway, rtt, call;	/* call: send()'s duration */
};

struct rate_result {
	const char *policy;
	double seconds;		/* the publisher's window */
	double recv_seconds;	/* first to last message received */
	uint64_t published, received, dropped, pool_buffers;
	struct cost pub, sub;
};

static bool json_first = true;

static struct cost cost_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (struct cost){
		.cpu_ns = ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
				  1000000000ull +
			  ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000,
		.vcsw = (uint64_t)ru.ru_nvcsw,
		.ivcsw = (uint64_t)ru.ru_nivcsw,
	};
}

static struct cost cost_since(struct cost c0)
{
	struct cost c = cost_now();

	return (struct cost){ c.cpu_ns - c0.cpu_ns, c.vcsw - c0.vcsw, c.ivcsw - c0.ivcsw };
}

/* --- options ------------------------------------------------------------ */

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < min || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_sub_count(const char *s, uint64_t *ret)
{
	return parse_uint(s, 1, MAX_SUBS, ret);
}

/* A CPU this process may run on. */
static int parse_cpu(const char *s, uint64_t *ret)
{
	cpu_set_t set;
	int r;

	r = parse_uint(s, 0, CPU_SETSIZE - 1, ret);
	if (r == 0 && (sched_getaffinity(0, sizeof(set), &set) < 0 || !CPU_ISSET(*ret, &set)))
		r = -EINVAL;
	return r;
}

/* A comma-separated list, each item read by one(). */
static int parse_list(const char *arg, int (*one)(const char *, uint64_t *), uint64_t *v,
		      unsigned int *n)
{
	char *copy, *tok, *save;
	int r = 0;

	copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	*n = 0;
	for (tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save))
		r = *n == MAX_LIST ? -E2BIG : one(tok, &v[(*n)++]);
	free(copy);
	return r == 0 && *n == 0 ? -EINVAL : r;
}

static int parse_phases(const char *arg, unsigned int *phases)
{
	static const char *const names[] = { "lat", "base", "rate" };
	char *copy, *tok, *save;
	unsigned int i;
	int r = 0;

	copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	*phases = 0;
	for (tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < 3 && strcmp(tok, names[i]) != 0; i++)
			;
		if (i == 3)
			r = -EINVAL;
		else
			*phases |= 1u << i;
	}
	free(copy);
	return r == 0 && !*phases ? -EINVAL : r;
}

static int parse_seconds(const char *arg, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno || end == arg || *end || !(v >= 0.05 && v <= 600))
		return -EINVAL;
	*ret = v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tensorfd-fanout [--subs LIST] [--sizes LIST] [--iters N] [--seconds S]\n"
		"                       [--depth N] [--cpus LIST] [--only PHASES] [--json]\n"
		"  --subs LIST    subscriber counts for the latency runs (default 1,8)\n"
		"  --sizes LIST   tensor sizes, suffixes K, M, G (default 64,64M)\n"
		"  --iters N      messages per size (default 2000 up to 1 MiB, 200 above)\n"
		"  --seconds S    length of each throughput run (default 2)\n"
		"  --depth N      throughput queue depth (default 1024)\n"
		"  --cpus LIST    pin the publisher to the first CPU, subscribers to the others\n"
		"  --only PHASES  some of lat,base,rate (default all)\n"
		"  --json         print JSON instead of a table\n");
}

/* 0: go on; 1: exit 0 (help); -1: usage error, already said. */
static int parse_args(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
		{ "subs", required_argument, NULL, 'S' },
		{ "sizes", required_argument, NULL, 's' },
		{ "iters", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 't' },
		{ "depth", required_argument, NULL, 'd' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "only", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t v;
	int c, r = 0;

	*opt = (struct options){ .sizes = { 64, 64 * MiB }, .n_sizes = 2, .subs = { 1, 8 },
				 .n_subs = 2, .depth = 1024, .seconds = 2,
				 .phases = PHASE_LAT | PHASE_BASE | PHASE_RATE };
	while (r == 0 && (c = getopt_long(argc, argv, "S:s:n:t:d:c:o:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'S':
			r = parse_list(optarg, parse_sub_count, opt->subs, &opt->n_subs);
			break;
		case 's':
			r = parse_list(optarg, parse_size, opt->sizes, &opt->n_sizes);
			break;
		case 'n':
			r = parse_uint(optarg, 1, 10000000, &v);
			opt->iters = (unsigned int)v;
			break;
		case 't':
			r = parse_seconds(optarg, &opt->seconds);
			break;
		case 'd':
			r = parse_uint(optarg, 1, 65536, &v);
			opt->depth = (unsigned int)v;
			break;
		case 'c':
			r = parse_list(optarg, parse_cpu, opt->cpus, &opt->n_cpus);
			break;
		case 'o':
			r = parse_phases(optarg, &opt->phases);
			break;
		case 'j':
			opt->json = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
		if (r < 0)
			fprintf(stderr, "tensorfd-fanout: bad option value '%s'\n", optarg);
	}
	if (r == 0 && optind < argc) {
		usage(stderr);
		r = -1;
	}
	return r < 0 ? -1 : 0;
}

static unsigned int iters_for(const struct options *opt, uint64_t size)
{
	if (opt->iters)
		return opt->iters;
	return size <= MiB ? 2000 : 200;
}

/* -1: not pinned. The publisher is 0, subscriber i is 1 + i. */
static int cpu_of(const struct options *opt, unsigned int who)
{
	if (!opt->n_cpus)
		return -1;
	if (who == 0 || opt->n_cpus == 1)
		return (int)opt->cpus[0];
	return (int)opt->cpus[1 + (who - 1) % (opt->n_cpus - 1)];
}

/* Spinning is measured only where every process has a CPU to spin on. */
static bool can_spin(const struct options *opt, unsigned int subs)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int i, j, distinct = 0;

	if (!opt->n_cpus)
		return online > 0 && (unsigned long)online > subs;
	for (i = 0; i < opt->n_cpus; i++) {
		for (j = 0; j < i && opt->cpus[j] != opt->cpus[i]; j++)
			;
		distinct += j == i;
	}
	return distinct == opt->n_cpus && distinct > subs;
}

/* --- statistics --------------------------------------------------------- */

/* --- subscriber processes ----------------------------------------------- */

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

/* The transport touch: the tensor's first and last byte, which the publisher marked. */
static bool touch_is_fresh(const struct tfd_message *m, const struct probe *p)
{
	const struct tfd_layout *l = tfd_message_layout(m, 0);
	const volatile uint8_t *data = tfd_message_data(m, 0);
	uint64_t n;

	if (!l || !data || tfd_layout_nbytes(l, &n) < 0 || !n)
		return false;
	return data[0] == (uint8_t)p->mark && data[n - 1] == (uint8_t)p->mark;
}

static int sub_next(struct tfd_subscriber *sub, bool spin, struct tfd_message **m)
{
	uint64_t deadline;
	int r;

	deadline = now_ns() + TIMEOUT_MS * 1000000ull;
	do
		r = tfd_subscriber_recv(sub, spin ? 0 : TIMEOUT_MS, m);
	while ((r == -EAGAIN || r == -EINTR) && now_ns() < deadline);
	return r == -EAGAIN || r == -EINTR ? -ETIMEDOUT : r;
}

/* Book one message that arrived at t. */
static int sub_take(struct run *run, unsigned int idx, const struct tfd_message *m,
		    const struct probe *p, uint64_t t)
{
	struct sub_report *rep = &run->rep[idx];
	struct sample *s;

	if (p->kind == PROBE_DATA && !run->rate) {
		if (p->size_idx >= run->opt->n_sizes || p->slot >= run->iters_max)
			return -EBADMSG;
		s = &run->samples[((size_t)idx * run->opt->n_sizes + p->size_idx) * run->iters_max +
				  p->slot];
		s->from_pub = t - p->t_pub;
		s->from_send = t - tfd_message_timestamp(m);
	}
	if (!touch_is_fresh(m, p))
		rep->stale++;
	if (p->kind == PROBE_DATA) {
		if (!rep->received)
			rep->t_first = t;
		rep->t_last = t;
		rep->received++;
	}
	return 0;
}

static int subscriber_loop(struct run *run, unsigned int idx, struct tfd_subscriber *sub)
{
	struct sub_report *rep = &run->rep[idx];
	struct cost c0 = { 0 };
	struct tfd_message *m;
	struct probe p;
	uint64_t t;
	int r;

	for (;;) {
		r = sub_next(sub, run->spin, &m);
		t = now_ns();
		if (r < 0)
			return r;
		r = read_probe(m, &p);
		if (r == 0 && p.kind == PROBE_END) {
			tfd_message_unref(m);
			break;
		}
		if (r == 0 && p.kind == PROBE_DATA && !rep->received)
			c0 = cost_now();
		if (r == 0)
			r = sub_take(run, idx, m, &p, t);
		tfd_message_unref(m);
		if (r < 0)
			return r;
	}
	if (rep->received)
		rep->cost = cost_since(c0);
	return 0;
}

static int subscriber(struct run *run, unsigned int idx)
{
	struct sub_report *rep = &run->rep[idx];
	struct tfd_subscriber_stats st;
	struct tfd_subscriber *sub;
	int r;

	r = pin_cpu("tensorfd-fanout", cpu_of(run->opt, 1 + idx));
	if (r < 0)
		return 1;
	r = tfd_subscriber_new(run->topic, 0, &sub);
	if (r < 0) {
		fprintf(stderr, "tensorfd-fanout: subscriber %u: %s\n", idx, tfd_last_error());
		return 1;
	}
	r = subscriber_loop(run, idx, sub);
	if (tfd_subscriber_get_stats(sub, &st) == 0)
		rep->dropped = st.dropped;
	if (r < 0)
		fprintf(stderr, "tensorfd-fanout: subscriber %u of %s: %s (%s)\n", idx, run->topic,
			strerror(-r), tfd_subscriber_strerror(sub));
	tfd_subscriber_unref(sub);
	return r < 0 ? 1 : 0;
}

/* --- runs: a topic and its subscriber processes ---------------------------- */

static int run_start(struct run *run)
{
	size_t n_samples = run->rate ? 0 : (size_t)run->n * run->opt->n_sizes * run->iters_max;
	void *map;
	pid_t pid;

	run->map_len = run->n * sizeof(*run->rep) + n_samples * sizeof(*run->samples);
	map = mmap(NULL, run->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return -errno;
	run->rep = map;
	run->samples = (struct sample *)(run->rep + run->n);
	/* a child must not write out what this process buffered */
	fflush(stdout);
	for (run->forked = 0; run->forked < run->n; run->forked++) {
		pid = fork();
		if (pid < 0) {
			fprintf(stderr, "tensorfd-fanout: fork: %s\n", strerror(errno));
			return -ECHILD;
		}
		if (pid == 0)
			_exit(subscriber(run, run->forked));
		run->pid[run->forked] = pid;
	}
	return 0;
}

/* Has subscriber i exited? Looks without reaping it. */
static bool run_lost(const struct run *run, unsigned int i)
{
	siginfo_t si = { .si_pid = 0 };

	return waitid(P_PID, (id_t)run->pid[i], &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	       si.si_pid;
}

static bool run_lost_all(const struct run *run)
{
	unsigned int i;

	for (i = 0; i < run->forked && run_lost(run, i); i++)
		;
	return i == run->forked;
}

/* Did subscriber i succeed? Says how it ended, unless we ended it (killed). */
static bool exit_ok(const struct run *run, unsigned int i, int status, bool killed)
{
	if (WIFEXITED(status) && !WEXITSTATUS(status))
		return true;
	if (!killed || !WIFSIGNALED(status) || WTERMSIG(status) != SIGTERM)
		fprintf(stderr, "tensorfd-fanout: subscriber %u of %s %s %d\n", i, run->topic,
			WIFSIGNALED(status) ? "killed by signal" : "exited with",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	return false;
}

/* Reap every subscriber (ending them first after a failure); 0 if all exited 0. */
static int run_end(struct run *run, bool failed)
{
	unsigned int i;
	int status, r = 0;

	/* after a failure, give them a moment to say why before ending them */
	for (i = 0; failed && i < 100 && !run_lost_all(run); i++)
		usleep(10000);
	for (i = 0; i < run->forked; i++) {
		if (failed && !run_lost(run, i))
			kill(run->pid[i], SIGTERM);
		if (waitpid(run->pid[i], &status, 0) < 0 || !exit_ok(run, i, status, failed))
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

/* --- publisher ----------------------------------------------------------- */

static int pub_fail(struct tfd_publisher *pub, const char *what, int r)
{
	fprintf(stderr, "tensorfd-fanout: %s: %s (%s)\n", what, strerror(-r),
		pub ? tfd_publisher_strerror(pub) : tfd_last_error());
	return r;
}

static bool all_attached(struct tfd_publisher *pub, unsigned int n)
{
	struct tfd_publisher_stats st;

	return tfd_publisher_get_stats(pub, &st) == 0 && st.subscribers >= n;
}

/*
 * Dispatch until every one of the n subscribers released everything (no
 * pool buffer is busy), or, when gone_ok, until all of them left (they exit
 * after PROBE_END); fails when one left otherwise, or after TIMEOUT_MS.
 */
static int wait_released_or_gone(struct tfd_publisher *pub, unsigned int n, bool gone_ok)
{
	uint64_t deadline = now_ns() + TIMEOUT_MS * 1000000ull;
	struct tfd_publisher_stats st;
	int r;

	for (;;) {
		r = tfd_publisher_get_stats(pub, &st);
		if (r < 0)
			return r;
		if (st.pool_buffers_busy == 0 || (gone_ok && st.subscribers == 0))
			return 0;
		if (st.subscribers < n && !gone_ok)
			return -ECONNRESET;
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		r = tfd_publisher_dispatch(pub, 100);
		/* io_uring's task work interrupts the epoll_wait() inside: no signal */
		if (r < 0 && r != -EINTR)
			return r;
	}
}

static int wait_released(struct tfd_publisher *pub, unsigned int n)
{
	return wait_released_or_gone(pub, n, false);
}

/* Has a subscriber exited already? Looks without reaping it. */
static bool run_lost_one(const struct run *run)
{
	unsigned int i;

	for (i = 0; i < run->forked; i++)
		if (run_lost(run, i))
			return true;
	return false;
}

static int wait_attached(struct run *run, struct tfd_publisher *pub)
{
	uint64_t deadline = now_ns() + TIMEOUT_MS * 1000000ull;
	int r;

	while (!all_attached(pub, run->n)) {
		if (run_lost_one(run)) {
			fprintf(stderr, "tensorfd-fanout: a subscriber of %s exited early\n",
				run->topic);
			return -ECHILD;
		}
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		r = tfd_publisher_dispatch(pub, 20);
		if (r < 0 && r != -EINTR)
			return r;
	}
	return 0;
}

static int pub_open(struct run *run, unsigned int depth, enum tfd_drop_policy policy,
		    struct tfd_publisher **ret)
{
	struct tfd_publisher *pub;
	unsigned int bufs = 2 * depth + 16;
	int r;

	r = tfd_publisher_new(run->topic, TFD_PUBLISHER_ZERO_COPY, &pub);
	if (r < 0)
		return pub_fail(NULL, "tfd_publisher_new", r);
	r = tfd_publisher_set_queue(pub, depth, policy, 1000);
	/* in flight, queued and one loaned: the default 64 would bound a deep queue */
	if (r == 0 && bufs > 64)
		r = tfd_publisher_set_pool_limits(pub, bufs, 4 * GiB);
	if (r == 0)
		r = wait_attached(run, pub);
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
	uint64_t deadline = now_ns() + TIMEOUT_MS * 1000000ull;
	int r;

	for (;;) {
		r = tfd_publisher_loan(pub, size, buf);
		if (r != -ENOBUFS || now_ns() > deadline)
			return r;
		/* every buffer is out: wait for releases */
		r = tfd_publisher_dispatch(pub, 100);
		if (r < 0 && r != -EINTR)
			return r;
	}
}

/*
 * Publish one probe, with a loaned tensor of size bytes (none when 0) whose
 * first and last byte are p->mark. t_done: the clock when publish returned.
 */
static int publish_probe(struct tfd_publisher *pub, uint64_t size, struct probe *p,
			 uint64_t *t_done)
{
	const struct tfd_dtype u8 = { TFD_UINT, 8, 1 };
	int64_t shape = (int64_t)size;
	struct tfd_buffer *buf = NULL;
	struct tfd_message *m = NULL;
	struct tfd_layout layout;
	uint8_t *data;
	int r = 0;

	if (size) {
		r = loan(pub, size, &buf);
		if (r == 0) {
			data = tfd_buffer_data(buf);
			data[0] = data[size - 1] = (uint8_t)p->mark;
		}
	}
	if (r == 0)
		r = tfd_message_new(&m);
	if (r == 0 && buf)
		r = tfd_layout_init(&layout, u8, 1, &shape);
	if (r == 0 && buf)
		r = tfd_message_add_tensor(m, "tensor", buf, &layout);
	if (r == 0) {
		p->t_pub = now_ns();
		r = tfd_message_set_user_data(m, p, sizeof(*p));
	}
	if (r == 0)
		r = tfd_publisher_publish(pub, m);
	if (t_done)
		*t_done = now_ns();
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	return r;
}

static int publish_end(struct run *run, struct tfd_publisher *pub)
{
	struct probe p = { .kind = PROBE_END };
	int r;

	r = publish_probe(pub, 0, &p, NULL);
	if (r == 0)
		r = wait_released_or_gone(pub, run->n, true);
	return r;
}

/* --- latency --------------------------------------------------------------- */

/* Gather every subscriber's samples of one size into v. */
static unsigned int gather(const struct run *run, unsigned int size_idx, unsigned int iters,
			   bool from_pub, uint64_t *v)
{
	const struct sample *s;
	unsigned int i, j, n = 0;

	for (i = 0; i < run->n; i++) {
		s = &run->samples[((size_t)i * run->opt->n_sizes + size_idx) * run->iters_max];
		for (j = 0; j < iters; j++)
			v[n++] = from_pub ? s[j].from_pub : s[j].from_send;
	}
	return n;
}

/* One message at a time; call and idle: publish()'s duration, publish to all released. */
static int lat_rounds(struct run *run, struct tfd_publisher *pub, unsigned int size_idx,
		      uint64_t *call, uint64_t *idle)
{
	unsigned int i, n = iters_for(run->opt, run->opt->sizes[size_idx]);
	struct probe p;
	uint64_t t_done;
	int r = 0;

	for (i = 0; r == 0 && i < WARMUP + n; i++) {
		p = (struct probe){ .kind = i < WARMUP ? PROBE_WARMUP : PROBE_DATA,
				    .size_idx = size_idx, .slot = i - WARMUP, .mark = i + 1 };
		r = publish_probe(pub, run->opt->sizes[size_idx], &p, &t_done);
		if (r == 0)
			r = wait_released(pub, run->n);
		if (r == 0 && i >= WARMUP) {
			call[i - WARMUP] = t_done - p.t_pub;
			idle[i - WARMUP] = now_ns() - p.t_pub;
		}
	}
	return r;
}

static int lat_size(struct run *run, struct tfd_publisher *pub, unsigned int size_idx,
		    struct lat_result *res)
{
	unsigned int n = iters_for(run->opt, run->opt->sizes[size_idx]);
	uint64_t *call, *idle;
	int r = -ENOMEM;

	call = calloc(n, sizeof(*call));
	idle = calloc(n, sizeof(*idle));
	if (call && idle)
		r = lat_rounds(run, pub, size_idx, call, idle);
	/* the subscribers' samples are read once they exited: lat_finish() */
	if (r == 0) {
		*res = (struct lat_result){ .subs = run->n, .spin = run->spin,
					    .size = run->opt->sizes[size_idx], .iters = n };
		res->call = summarize(call, n);
		res->idle = summarize(idle, n);
	}
	free(call);
	free(idle);
	return r;
}

static void print_lat(const struct options *opt, const struct lat_result *res);

/* After the subscribers exited: check their counts and print a row per size. */
static int lat_finish(struct run *run, struct lat_result *res)
{
	unsigned int i, want = 0, n;
	uint64_t *v;
	int r = 0;

	for (i = 0; i < run->opt->n_sizes; i++)
		want += iters_for(run->opt, run->opt->sizes[i]);
	for (i = 0; i < run->n; i++) {
		const struct sub_report *rep = &run->rep[i];

		if (rep->received != want || rep->stale || rep->dropped) {
			fprintf(stderr,
				"tensorfd-fanout: %s subscriber %u: %llu of %u messages, "
				"%llu stale, %llu dropped\n",
				run->topic, i, (unsigned long long)rep->received, want,
				(unsigned long long)rep->stale, (unsigned long long)rep->dropped);
			r = -EPROTO;
		}
	}
	v = calloc((size_t)run->n * run->iters_max, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (i = 0; r == 0 && i < run->opt->n_sizes; i++) {
		n = gather(run, i, res[i].iters, true, v);
		res[i].from_pub = summarize(v, n);
		n = gather(run, i, res[i].iters, false, v);
		res[i].from_send = summarize(v, n);
		print_lat(run->opt, &res[i]);
	}
	free(v);
	fflush(stdout);
	return r;
}

static int lat_run(const struct options *opt, unsigned int subs, bool spin)
{
	struct lat_result res[MAX_LIST];
	struct tfd_publisher *pub = NULL;
	struct run run = { .opt = opt, .n = subs, .spin = spin };
	unsigned int i;
	int r, e;

	snprintf(run.topic, sizeof(run.topic), "lat-%u-%s", subs, spin ? "spin" : "block");
	for (i = 0; i < opt->n_sizes; i++)
		if (iters_for(opt, opt->sizes[i]) > run.iters_max)
			run.iters_max = iters_for(opt, opt->sizes[i]);
	r = run_start(&run);
	if (r == 0)
		r = pub_open(&run, 16, TFD_DROP_OLDEST, &pub);
	for (i = 0; r == 0 && i < opt->n_sizes; i++) {
		r = lat_size(&run, pub, i, &res[i]);
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
		r = lat_finish(&run, res);
	run_free(&run);
	return r;
}

/* --- kernel baseline: a socketpair ping ------------------------------------ */

static int ping_echo(int fd, bool spin)
{
	char buf[PING_BYTES];
	uint64_t ts, lat;
	ssize_t n;

	for (;;) {
		do
			n = recv(fd, buf, sizeof(buf), spin ? MSG_DONTWAIT : 0);
		while (n < 0 && (errno == EAGAIN || errno == EINTR));
		lat = now_ns();
		if (n == 0)
			return 0;	/* the pinger is done */
		if (n != sizeof(buf))
			return 1;
		memcpy(&ts, buf, sizeof(ts));
		lat -= ts;
		if (send(fd, &lat, sizeof(lat), MSG_NOSIGNAL) != sizeof(lat))
			return 1;
	}
}

/* v: one-way, round trip and send() duration of every round, n each. */
static int ping_rounds(int fd, unsigned int n, uint64_t *v)
{
	char buf[PING_BYTES] = { 0 };
	uint64_t t0, t1, lat;
	unsigned int i, k;

	for (i = 0; i < WARMUP + n; i++) {
		t0 = now_ns();
		memcpy(buf, &t0, sizeof(t0));
		errno = EPROTO;
		if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != sizeof(buf))
			return -errno;
		t1 = now_ns();
		if (recv(fd, &lat, sizeof(lat), 0) != sizeof(lat))
			return -errno;
		if (i < WARMUP)
			continue;
		k = i - WARMUP;
		v[k] = lat;
		v[n + k] = now_ns() - t0;
		v[2 * n + k] = t1 - t0;
	}
	return 0;
}

static int ping_run(const struct options *opt, bool spin, struct ping_result *res)
{
	unsigned int n = iters_for(opt, PING_BYTES);
	int sv[2], status, r;
	uint64_t *v;
	pid_t pid;

	v = calloc(3 * (size_t)n, sizeof(*v));
	if (!v || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		free(v);
		return -ENOMEM;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		_exit(pin_cpu("tensorfd-fanout", cpu_of(opt, 1)) < 0 ? 1 : ping_echo(sv[1], spin));
	}
	close(sv[1]);
	r = pid < 0 ? -errno : ping_rounds(sv[0], n, v);
	/* closing ends the echo */
	close(sv[0]);
	if (pid > 0 && (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)))
		r = r ? r : -ECHILD;
	if (r == 0) {
		res->spin = spin;
		res->oneway = summarize(v, n);
		res->rtt = summarize(v + n, n);
		res->call = summarize(v + 2 * n, n);
	} else {
		fprintf(stderr, "tensorfd-fanout: socketpair ping: %s\n", strerror(-r));
	}
	free(v);
	return r;
}

/* --- throughput ------------------------------------------------------------ */

/* Pass the pool's buffers to the subscriber once, without dropping anything. */
static int rate_warmup(struct tfd_publisher *pub, unsigned int depth)
{
	struct tfd_subscriber_info info;
	struct probe p = { .kind = PROBE_WARMUP };
	unsigned int i;
	int r = 0;

	for (i = 0; r == 0 && i < 2 * depth; i++) {
		p.mark = i + 1;
		r = publish_probe(pub, RATE_SIZE, &p, NULL);
		if (r == 0 && tfd_publisher_get_subscriber(pub, 0, &info) == 0 &&
		    info.queued >= (depth + 1) / 2)
			r = wait_released(pub, 1);
	}
	return r == 0 ? wait_released(pub, 1) : r;
}

static int rate_window(const struct options *opt, struct tfd_publisher *pub,
		       struct rate_result *res)
{
	uint64_t t0, t = 0, dur = (uint64_t)(opt->seconds * 1e9);
	struct probe p = { .kind = PROBE_DATA };
	struct cost c0;
	int r = 0;

	c0 = cost_now();
	t0 = now_ns();
	while (r == 0 && (t = now_ns()) - t0 < dur) {
		p.slot = (uint32_t)res->published;
		p.mark = p.slot + 1;
		r = publish_probe(pub, RATE_SIZE, &p, NULL);
		if (r == 0)
			res->published++;
	}
	res->pub = cost_since(c0);
	res->seconds = (double)(now_ns() - t0) / 1e9;
	return r;
}

static void print_rate(const struct options *opt, const struct rate_result *res);

static int rate_run(const struct options *opt, enum tfd_drop_policy policy)
{
	struct run run = { .opt = opt, .n = 1, .rate = true };
	struct tfd_publisher *pub = NULL;
	struct tfd_publisher_stats st0, st;
	struct rate_result res = { .policy = policy == TFD_BLOCK ? "block" : "drop-oldest" };
	int r, e;

	snprintf(run.topic, sizeof(run.topic), "rate-%s", res.policy);
	r = run_start(&run);
	if (r == 0)
		r = pub_open(&run, opt->depth, policy, &pub);
	if (r == 0)
		r = rate_warmup(pub, opt->depth);
	if (r == 0)
		r = tfd_publisher_get_stats(pub, &st0);
	if (r == 0)
		r = rate_window(opt, pub, &res);
	if (r == 0)
		r = publish_end(&run, pub);
	if (r == 0)
		r = tfd_publisher_get_stats(pub, &st);
	if (r < 0)
		pub_fail(pub, run.topic, r);
	e = run_end(&run, r < 0);
	tfd_publisher_unref(pub);
	if (r == 0)
		r = e;
	if (r == 0) {
		res.received = run.rep[0].received;
		res.recv_seconds = (double)(run.rep[0].t_last - run.rep[0].t_first) / 1e9;
		res.dropped = st.dropped - st0.dropped;
		res.pool_buffers = st.pool_buffers;
		res.sub = run.rep[0].cost;
		if (res.received + res.dropped != res.published || run.rep[0].stale ||
		    (policy == TFD_BLOCK && res.dropped)) {
			fprintf(stderr,
				"tensorfd-fanout: %s: published %llu, received %llu, dropped %llu "
				"(publisher) / %llu (subscriber), %llu stale\n",
				run.topic, (unsigned long long)res.published,
				(unsigned long long)res.received, (unsigned long long)res.dropped,
				(unsigned long long)run.rep[0].dropped,
				(unsigned long long)run.rep[0].stale);
			r = -EPROTO;
		}
		print_rate(opt, &res);
		fflush(stdout);
	}
	run_free(&run);
	return r;
}

/* --- output --------------------------------------------------------------- */

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

static double per(uint64_t v, uint64_t n)
{
	return n ? (double)v / (double)n : 0;
}

static const char *json_sep(void)
{
	const char *s = json_first ? "" : ",";

	json_first = false;
	return s;
}

static void print_head(const struct options *opt)
{
	char cpus[128] = "not pinned";
	const char *backend = NULL;
	struct tfd_channel *a, *b;
	unsigned int i;
	size_t len = 0;

	/* the backend every channel of this process gets */
	if (tfd_channel_pair(&a, &b) == 0) {
		backend = tfd_channel_backend(a);
		tfd_channel_unref(a);
		tfd_channel_unref(b);
	}
	if (!backend)
		backend = "unknown";
	for (i = 0; i < opt->n_cpus && len < sizeof(cpus); i++)
		len += (size_t)snprintf(cpus + len, sizeof(cpus) - len, "%s%llu", i ? "," : "",
					(unsigned long long)opt->cpus[i]);
	if (opt->json) {
		printf("{\"backend\": \"%s\", \"cpus\": \"%s\", \"cpus_online\": %ld, "
		       "\"unit\": \"us\", \"results\": [",
		       backend, cpus, sysconf(_SC_NPROCESSORS_ONLN));
		return;
	}
	printf("tensorfd-fanout: topic latency and throughput, microseconds\n"
	       "  notification backend: %s; %ld CPUs online; cpus: %s%s\n",
	       backend, sysconf(_SC_NPROCESSORS_ONLN), cpus,
	       opt->n_cpus ? " (publisher first, then subscribers in turn)" : "");
}

static void print_lat_head(const struct options *opt)
{
	if (opt->json)
		return;
	printf("\nlatency: one message at a time, every subscriber releases before the next;\n"
	       "  from publish: publisher's clock before tfd_publisher_publish() to recv return\n"
	       "  from send: the library's timestamp (just before its sendmsg() to that\n"
	       "    subscriber) to recv return; all subscribers' samples together\n"
	       "  publish(): the call's duration; released: publish to every buffer back\n\n");
	printf("%4s %-5s %5s | %5s %7s | %8s %8s %8s | %8s %8s | %8s %8s | %8s\n", "", "", "",
	       "", "", "from", "publish", "", "from", "send", "publish()", "", "released");
	printf("%4s %-5s %5s | %5s %7s | %8s %8s %8s | %8s %8s | %8s %8s | %8s\n", "subs", "wait",
	       "size", "iters", "samples", "p50", "p99", "max", "p50", "p99", "p50", "p99", "p50");
}

static void print_lat(const struct options *opt, const struct lat_result *res)
{
	char size[32];

	fmt_size(size, sizeof(size), res->size);
	if (opt->json) {
		printf("%s\n  {\"kind\": \"latency\", \"subs\": %u, \"wait\": \"%s\", "
		       "\"size\": %llu, \"iters\": %u, \"samples\": %u, "
		       "\"from_publish\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
		       "\"from_send\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
		       "\"publish_call\": {\"p50\": %.3f, \"p99\": %.3f}, "
		       "\"all_released_p50\": %.3f}",
		       json_sep(), res->subs, res->spin ? "spin" : "block",
		       (unsigned long long)res->size, res->iters, res->from_pub.n,
		       us(res->from_pub.p50), us(res->from_pub.p99), us(res->from_pub.max),
		       us(res->from_send.p50), us(res->from_send.p99), us(res->from_send.max),
		       us(res->call.p50), us(res->call.p99), us(res->idle.p50));
		return;
	}
	printf("%4u %-5s %5s | %5u %7u | %8.1f %8.1f %8.1f | %8.1f %8.1f | %8.1f %8.1f | %8.1f\n",
	       res->subs, res->spin ? "spin" : "block", size, res->iters, res->from_pub.n,
	       us(res->from_pub.p50), us(res->from_pub.p99), us(res->from_pub.max),
	       us(res->from_send.p50), us(res->from_send.p99), us(res->call.p50),
	       us(res->call.p99), us(res->idle.p50));
}

static void print_ping(const struct options *opt, const struct ping_result *res, bool head)
{
	if (opt->json) {
		printf("%s\n  {\"kind\": \"baseline\", "
		       "\"transport\": \"socketpair SOCK_SEQPACKET\", \"bytes\": %d, "
		       "\"wait\": \"%s\", \"iters\": %u, "
		       "\"oneway\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
		       "\"rtt_half_p50\": %.3f, "
		       "\"send_call\": {\"p50\": %.3f, \"p99\": %.3f}}",
		       json_sep(), PING_BYTES, res->spin ? "spin" : "block", res->oneway.n,
		       us(res->oneway.p50), us(res->oneway.p99), us(res->oneway.max),
		       us(res->rtt.p50) / 2, us(res->call.p50), us(res->call.p99));
		return;
	}
	if (head) {
		printf("\nkernel baseline: %d-byte ping over a SOCK_SEQPACKET socketpair, "
		       "no tensorfd;\n  the receiver blocks in recv() (block) or polls with "
		       "MSG_DONTWAIT (spin)\n\n",
		       PING_BYTES);
		printf("%-5s | %5s | %8s %8s %8s | %8s %8s | %9s\n", "", "", "one-way", "", "",
		       "send()", "", "rtt/2");
		printf("%-5s | %5s | %8s %8s %8s | %8s %8s | %9s\n", "wait", "iters", "p50", "p99",
		       "max", "p50", "p99", "p50");
	}
	printf("%-5s | %5u | %8.1f %8.1f %8.1f | %8.1f %8.1f | %9.1f\n",
	       res->spin ? "spin" : "block", res->oneway.n, us(res->oneway.p50),
	       us(res->oneway.p99), us(res->oneway.max), us(res->call.p50), us(res->call.p99),
	       us(res->rtt.p50) / 2);
}

static void print_rate_head(const struct options *opt)
{
	if (opt->json)
		return;
	printf("\nthroughput: %d-byte tensors to 1 subscriber, publishing as fast as publish\n"
	       "  returns for %.1f s, queue depth %u; CPU time (user+sys) and context switches\n"
	       "  from getrusage, per message: publisher per published, subscriber per\n"
	       "  received\n\n",
	       RATE_SIZE, opt->seconds, opt->depth);
	printf("%-11s | %9s %9s %9s %5s | %9s %9s | %7s %7s | %6s %6s %6s %6s\n", "", "", "", "",
	       "pool", "pub", "recv", "pub CPU", "sub CPU", "pub", "pub", "sub", "sub");
	printf("%-11s | %9s %9s %9s %5s | %9s %9s | %7s %7s | %6s %6s %6s %6s\n", "policy",
	       "published", "received", "dropped", "bufs", "msg/s", "msg/s", "us/msg", "us/msg",
	       "vcsw", "ivcsw", "vcsw", "ivcsw");
}

static void print_rate(const struct options *opt, const struct rate_result *res)
{
	double pub_rate = (double)res->published / res->seconds;
	double recv_rate = res->recv_seconds > 0 ? (double)(res->received - 1) / res->recv_seconds
						  : 0;

	if (opt->json) {
		printf("%s\n  {\"kind\": \"throughput\", \"policy\": \"%s\", \"size\": %d, "
		       "\"depth\": %u, \"seconds\": %.3f, \"published\": %llu, \"received\": %llu, "
		       "\"dropped\": %llu, \"pool_buffers\": %llu, \"published_per_s\": %.0f, "
		       "\"received_per_s\": %.0f, \"publisher_cpu_us_per_msg\": %.3f, "
		       "\"subscriber_cpu_us_per_msg\": %.3f, \"publisher_vcsw_per_msg\": %.4f, "
		       "\"publisher_ivcsw_per_msg\": %.4f, \"subscriber_vcsw_per_msg\": %.4f, "
		       "\"subscriber_ivcsw_per_msg\": %.4f}",
		       json_sep(), res->policy, RATE_SIZE, opt->depth, res->seconds,
		       (unsigned long long)res->published, (unsigned long long)res->received,
		       (unsigned long long)res->dropped, (unsigned long long)res->pool_buffers,
		       pub_rate, recv_rate, per(res->pub.cpu_ns, res->published) / 1e3,
		       per(res->sub.cpu_ns, res->received) / 1e3,
		       per(res->pub.vcsw, res->published), per(res->pub.ivcsw, res->published),
		       per(res->sub.vcsw, res->received), per(res->sub.ivcsw, res->received));
		return;
	}
	printf("%-11s | %9llu %9llu %9llu %5llu | %9.0f %9.0f | %7.2f %7.2f | %6.3f %6.3f %6.3f "
	       "%6.3f\n",
	       res->policy, (unsigned long long)res->published, (unsigned long long)res->received,
	       (unsigned long long)res->dropped, (unsigned long long)res->pool_buffers, pub_rate,
	       recv_rate, per(res->pub.cpu_ns, res->published) / 1e3,
	       per(res->sub.cpu_ns, res->received) / 1e3, per(res->pub.vcsw, res->published),
	       per(res->pub.ivcsw, res->published), per(res->sub.vcsw, res->received),
	       per(res->sub.ivcsw, res->received));
}

/* --- main ------------------------------------------------------------------ */

/* The library's warnings and errors, from whichever process, to stderr. */
static void log_stderr(int level, const char *msg, void *userdata)
{
	if (level <= TFD_LOG_WARNING)
		fprintf(stderr, "tensorfd-fanout[%d]: libtensorfd: %s\n", (int)getpid(), msg);
}

static int run_phases(const struct options *opt)
{
	struct ping_result ping;
	unsigned int i;
	int r = 0;

	if (opt->phases & PHASE_LAT) {
		print_lat_head(opt);
		for (i = 0; r == 0 && i < opt->n_subs; i++) {
			r = lat_run(opt, (unsigned int)opt->subs[i], false);
			if (r == 0 && can_spin(opt, (unsigned int)opt->subs[i]))
				r = lat_run(opt, (unsigned int)opt->subs[i], true);
		}
	}
	for (i = 0; r == 0 && (opt->phases & PHASE_BASE) && i < 2; i++) {
		r = ping_run(opt, i == 1, &ping);
		if (r == 0)
			print_ping(opt, &ping, i == 0);
	}
	if (r == 0 && (opt->phases & PHASE_RATE)) {
		print_rate_head(opt);
		r = rate_run(opt, TFD_BLOCK);
		if (r == 0)
			r = rate_run(opt, TFD_DROP_OLDEST);
	}
	return r;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tensorfd-fanout-XXXXXX";
	struct options opt;
	int r;

	r = parse_args(argc, argv, &opt);
	if (r)
		return r < 0 ? 2 : 0;
	signal(SIGPIPE, SIG_IGN);	/* a peer that died is an error return, not a kill */
	tfd_set_log_fn(log_stderr, NULL);
	/* a private runtime directory: nobody else's topics, none left behind */
	if (!mkdtemp(dir) || setenv("TENSORFD_RUNTIME_DIR", dir, 1) < 0) {
		perror("tensorfd-fanout: runtime directory");
		return 1;
	}
	r = pin_cpu("tensorfd-fanout", cpu_of(&opt, 0));
	if (r == 0) {
		print_head(&opt);
		r = run_phases(&opt);
		if (opt.json)
			printf("\n]}\n");
	}
	if (rmdir(dir) < 0)
		fprintf(stderr, "tensorfd-fanout: cannot remove %s: %s\n", dir, strerror(errno));
	return r < 0 ? 1 : 0;
}
