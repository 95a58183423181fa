/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-bench: options, what every measuring process shares (pinning,
 * real-time setup, touching payloads, CPU time, RssAnon), and the order of
 * the sections. See tensorfd-bench(1).
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <tensorfd.h>

#include "bench.h"

struct row bench_rows[BENCH_MAX_ROWS];
unsigned int bench_n_rows;

struct row *row_add(void)
{
	static struct row spare;

	if (bench_n_rows == BENCH_MAX_ROWS) {
		memset(&spare, 0, sizeof(spare));
		return &spare;
	}
	memset(&bench_rows[bench_n_rows], 0, sizeof(bench_rows[0]));
	bench_rows[bench_n_rows].rss_growth_kib = -1;
	return &bench_rows[bench_n_rows++];
}

/* --- what measuring processes share ----------------------------------------- */

uint64_t cpu_time_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* RssAnon of this process in KiB, -1 if unknown. */
long rss_anon_kib(void)
{
	char line[128];
	long v = -1;
	FILE *f;

	f = fopen("/proc/self/status", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

const char *touch_name(enum touch t)
{
	return t == TOUCH_ALL ? "all" : "ends";
}

/* The producer's work: the ends, or one byte in every cache line. */
void touch_write(uint8_t *p, uint64_t size, uint8_t mark, enum touch t)
{
	uint64_t i;

	if (!size)
		return;
	if (t == TOUCH_ALL)
		for (i = 0; i < size; i += 64)
			p[i] = mark;
	p[0] = p[size - 1] = mark;
}

/* The consumer's work: reads what touch_write() wrote; false if any is stale. */
bool touch_read(const uint8_t *p, uint64_t size, uint8_t mark, enum touch t)
{
	const volatile uint8_t *v = p;
	uint8_t bad = 0;
	uint64_t i;

	if (!size)
		return true;
	if (t == TOUCH_ALL)
		for (i = 0; i < size; i += 64)
			bad |= (uint8_t)(v[i] ^ mark);
	bad |= (uint8_t)(v[0] ^ mark) | (uint8_t)(v[size - 1] ^ mark);
	return !bad;
}

/*
 * Rounds per size. Transports whose cost grows with the size (copies, or
 * touching every cache line) get fewer rounds above 1 MiB: about 4 GiB of
 * payload per series (64 MiB with --quick), at least 5 rounds.
 */
unsigned int bench_iters(const struct options *opt, uint64_t size, enum touch touch)
{
	uint64_t budget = opt->quick ? 64 * MiB : 4 * GiB, n;

	n = opt->iters ? opt->iters : size <= MiB ? 5000 : 1000;
	if (touch == TOUCH_ALL && size > MiB && budget / size < n)
		n = budget / size < 5 ? 5 : budget / size;
	return (unsigned int)n;
}

int bench_cpu(const struct options *opt, unsigned int who)
{
	if (!opt->n_cpus)
		return -1;
	if (who == 0 || opt->n_cpus == 1)
		return opt->cpus[0];
	return opt->cpus[1 + (who - 1) % (opt->n_cpus - 1)];
}

/* Can procs processes each spin on a CPU of its own? */
bool bench_can_spin(const struct options *opt, unsigned int procs)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int i, j, distinct = 0;

	if (!opt->n_cpus)
		return online > 0 && (unsigned long)online >= procs;
	for (i = 0; i < opt->n_cpus; i++) {
		for (j = 0; j < i && opt->cpus[j] != opt->cpus[i]; j++)
			;
		distinct += j == i;
	}
	return distinct >= procs && opt->n_cpus >= procs;
}

/*
 * In every measuring process: its CPU, SCHED_FIFO, mlockall as asked. A
 * child forked by a real-time parent starts as an ordinary task (reset on
 * fork) and is moved to its CPU by the parent at once (bench_place()):
 * otherwise it would wait behind its parent spinning at the same priority
 * on the parent's CPU, for ever.
 */
int bench_proc_setup(const struct options *opt, unsigned int who)
{
	struct sched_param sp = { .sched_priority = opt->fifo };

	if (pin_cpu("tensorfd-bench", bench_cpu(opt, who)) < 0)
		return -1;
	if (opt->fifo && sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0) {
		fprintf(stderr, "tensorfd-bench: SCHED_FIFO %d: %s\n", opt->fifo, strerror(errno));
		return -1;
	}
	if (opt->mlock && mlockall(MCL_CURRENT | MCL_FUTURE) < 0) {
		fprintf(stderr, "tensorfd-bench: mlockall: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/* The parent moves a child it just forked to the child's CPU. */
void bench_place(const struct options *opt, unsigned int who, pid_t pid)
{
	int cpu = bench_cpu(opt, who);
	cpu_set_t set;

	if (cpu < 0 || pid <= 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(pid, sizeof(set), &set);	/* the child pins itself too */
}

/* --- options ------------------------------------------------------------ */

static int parse_uint(const char *s, unsigned long long min, unsigned long long max,
		      unsigned long long *ret)
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

/* Calls one() on each comma-separated item of arg, at most max of them. */
static int parse_list(const char *arg, unsigned int max, unsigned int *n,
		      int (*one)(const char *item, unsigned int idx, void *ctx), void *ctx)
{
	char *copy, *tok, *save;
	int r = 0;

	copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	*n = 0;
	for (tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save))
		r = *n == max ? -E2BIG : one(tok, (*n)++, ctx);
	free(copy);
	return r == 0 && *n == 0 ? -EINVAL : r;
}

static int one_size(const char *s, unsigned int i, void *ctx)
{
	return parse_size(s, &((struct options *)ctx)->sizes[i]);
}

static int one_sub(const char *s, unsigned int i, void *ctx)
{
	unsigned long long v;
	int r = parse_uint(s, 1, BENCH_MAX_SUBS, &v);

	((struct options *)ctx)->subs[i] = (unsigned int)v;
	return r;
}

/* A CPU this process may run on. */
static int one_cpu(const char *s, unsigned int i, void *ctx)
{
	unsigned long long v;
	cpu_set_t set;
	int r;

	r = parse_uint(s, 0, CPU_SETSIZE - 1, &v);
	if (r == 0 && (sched_getaffinity(0, sizeof(set), &set) < 0 || !CPU_ISSET(v, &set)))
		r = -EINVAL;
	((struct options *)ctx)->cpus[i] = (int)v;
	return r;
}

/* A word of names[] to its bit in *bits. */
static int one_word(const char *s, const char *const *names, unsigned int *bits)
{
	unsigned int i;

	for (i = 0; names[i]; i++) {
		if (strcmp(s, names[i]) == 0) {
			*bits |= 1u << i;
			return 0;
		}
	}
	return -EINVAL;
}

static int one_wait(const char *s, unsigned int i, void *ctx)
{
	static const char *const names[] = { "block", "spin", NULL };

	return one_word(s, names, &((struct options *)ctx)->waits);
}

static int one_touch(const char *s, unsigned int i, void *ctx)
{
	static const char *const names[] = { "ends", "all", NULL };

	return one_word(s, names, &((struct options *)ctx)->touches);
}

static int one_section(const char *s, unsigned int i, void *ctx)
{
	/* "none": measure nothing, report (and plot) what --include brought */
	static const char *const names[] = { "floors", "tensorfd", "baselines", "throughput",
					     "none", NULL };

	return one_word(s, names, &((struct options *)ctx)->sections);
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
		"usage: tensorfd-bench [OPTIONS]\n"
		"  --sizes LIST     payload sizes, suffixes K, M, G\n"
		"                   (default 64,4K,1M,16M,256M,1G where memory allows)\n"
		"  --subs LIST      subscriber counts (default 1,4)\n"
		"  --cpus LIST      pin the publisher (or pinger) to the first CPU, the\n"
		"                   other processes to the others in turn (default: not pinned)\n"
		"  --wait LIST      receivers: block,spin (default both)\n"
		"  --touch LIST     ends,all: touch the first and last byte, or every cache\n"
		"                   line (default both)\n"
		"  --only LIST      sections: floors,tensorfd,baselines,throughput (default all);\n"
		"                   none: only report and plot what --include brought\n"
		"  --iters N        rounds per size (default 5000 up to 1 MiB, 1000 above;\n"
		"                   fewer for copies and touch all of big sizes)\n"
		"  --spin-us N      a spinning receiver spins this long, then sleeps\n"
		"                   (default 100000)\n"
		"  --seconds S      length of each throughput run (default 2)\n"
		"  --messages N     each throughput run publishes N messages instead\n"
		"  --depth N        throughput queue depth (default 1024)\n"
		"  --rate-size SIZE throughput payload (default 64)\n"
		"  --backend NAME   uring or poll: the library's notification backend\n"
		"  --fifo PRIO      run every process SCHED_FIFO at PRIO\n"
		"  --mlock          mlockall() every process\n"
		"  --quick          few rounds, small sizes, short runs (for CI)\n"
		"  --include FILE   merge result rows from FILE (tensorfd-bench --json, or\n"
		"                   tools/bench-torch-mp.py); may be repeated\n"
		"  --json           print JSON instead of a table\n"
		"  --json-file FILE write the JSON to FILE as well\n"
		"  --plot FILE.svg  write latency against size, log-log, as SVG\n");
}

enum {
	OPT_SPIN_US = 256,
	OPT_RATE_SIZE,
	OPT_BACKEND,
	OPT_FIFO,
	OPT_MLOCK,
	OPT_QUICK,
	OPT_INCLUDE,
	OPT_PLOT,
	OPT_JSON_FILE,
	OPT_MESSAGES,
};

static int parse_opt(int c, const char *arg, struct options *opt)
{
	unsigned long long v = 0;
	unsigned int n;
	int r = 0;

	switch (c) {
	case 's':
		return parse_list(arg, BENCH_MAX_SIZES, &opt->n_sizes, one_size, opt);
	case 'S':
		return parse_list(arg, BENCH_MAX_SIZES, &opt->n_subs, one_sub, opt);
	case 'c':
		return parse_list(arg, BENCH_MAX_CPUS, &opt->n_cpus, one_cpu, opt);
	case 'w':
		opt->waits = 0;
		return parse_list(arg, 2, &n, one_wait, opt);
	case 't':
		opt->touches = 0;
		return parse_list(arg, 2, &n, one_touch, opt);
	case 'o':
		opt->sections = 0;
		return parse_list(arg, 5, &n, one_section, opt);
	case 'n':
		r = parse_uint(arg, 1, 10000000, &v);
		opt->iters = (unsigned int)v;
		return r;
	case OPT_SPIN_US:
		r = parse_uint(arg, 0, 60000000, &v);
		opt->spin_us = (unsigned int)v;
		return r;
	case 'T':
		return parse_seconds(arg, &opt->seconds);
	case 'd':
		r = parse_uint(arg, 1, 65536, &v);
		opt->depth = (unsigned int)v;
		return r;
	case OPT_RATE_SIZE:
		return parse_size(arg, &opt->rate_size);
	case OPT_BACKEND:
		if (strcmp(arg, "uring") != 0 && strcmp(arg, "poll") != 0)
			return -EINVAL;
		opt->backend = arg;
		return 0;
	case OPT_FIFO:
		r = parse_uint(arg, 1, 99, &v);
		opt->fifo = (int)v;
		return r;
	case OPT_INCLUDE:
		if (opt->n_includes == 8)
			return -E2BIG;
		opt->includes[opt->n_includes++] = arg;
		return 0;
	case OPT_PLOT:
		opt->plot = arg;
		return 0;
	case OPT_JSON_FILE:
		opt->json_file = arg;
		return 0;
	case OPT_MESSAGES:
		r = parse_uint(arg, 1, 1000000000, &v);
		opt->rate_messages = v;
		return r;
	}
	return -EINVAL;
}

/* 0: go on; 1: exit 0 (help); -1: usage error, already said. */
static int parse_args(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
		{ "sizes", required_argument, NULL, 's' },
		{ "subs", required_argument, NULL, 'S' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "wait", required_argument, NULL, 'w' },
		{ "touch", required_argument, NULL, 't' },
		{ "only", required_argument, NULL, 'o' },
		{ "iters", required_argument, NULL, 'n' },
		{ "spin-us", required_argument, NULL, OPT_SPIN_US },
		{ "seconds", required_argument, NULL, 'T' },
		{ "messages", required_argument, NULL, OPT_MESSAGES },
		{ "depth", required_argument, NULL, 'd' },
		{ "rate-size", required_argument, NULL, OPT_RATE_SIZE },
		{ "backend", required_argument, NULL, OPT_BACKEND },
		{ "fifo", required_argument, NULL, OPT_FIFO },
		{ "mlock", no_argument, NULL, OPT_MLOCK },
		{ "quick", no_argument, NULL, OPT_QUICK },
		{ "include", required_argument, NULL, OPT_INCLUDE },
		{ "json", no_argument, NULL, 'j' },
		{ "plot", required_argument, NULL, OPT_PLOT },
		{ "json-file", required_argument, NULL, OPT_JSON_FILE },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool sized = false;
	int c, r = 0;

	*opt = (struct options){
		.sizes = { 64, 4 * KiB, MiB, 16 * MiB, 256 * MiB, GiB }, .n_sizes = 6,
		.subs = { 1, 4 }, .n_subs = 2, .waits = WAIT_BLOCK | WAIT_SPIN,
		.touches = 1u << TOUCH_ENDS | 1u << TOUCH_ALL, .sections = SEC_ALL,
		.spin_us = 100000, .depth = 1024, .rate_size = 64, .seconds = 2,
	};
	while (r == 0 && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == '?') {
			usage(stderr);
			return -1;
		}
		if (c == 'j')
			opt->json = true;
		else if (c == OPT_MLOCK)
			opt->mlock = true;
		else if (c == OPT_QUICK)
			opt->quick = true;
		else
			r = parse_opt(c, optarg, opt);
		sized |= c == 's';
		if (r < 0)
			fprintf(stderr, "tensorfd-bench: bad option value '%s'\n", optarg);
	}
	if (r == 0 && optind < argc) {
		usage(stderr);
		r = -1;
	}
	if (r == 0 && opt->quick) {
		if (!sized) {
			opt->sizes[0] = 64, opt->sizes[1] = 64 * KiB, opt->sizes[2] = 4 * MiB;
			opt->n_sizes = 3;
		}
		if (!opt->iters)
			opt->iters = 50;
		opt->seconds = 0.2;
		opt->depth = opt->depth > 64 ? 64 : opt->depth;
	}
	return r < 0 ? -1 : 0;
}

/* Drops sizes that this machine cannot hold three times (a copy baseline
 * holds a sender's and a receiver's copy, and the kernel's). */
static void fit_sizes(struct options *opt)
{
	long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	uint64_t avail = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
	unsigned int i, n = 0;
	char buf[32];

	for (i = 0; i < opt->n_sizes; i++) {
		if (avail && opt->sizes[i] > avail / 3) {
			fprintf(stderr, "tensorfd-bench: skipping %s: %llu MiB of memory available\n",
				fmt_size(buf, sizeof(buf), opt->sizes[i]),
				(unsigned long long)(avail >> 20));
			continue;
		}
		opt->sizes[n++] = opt->sizes[i];
	}
	opt->n_sizes = n;
}

/* The library's errors, from whichever process, to stderr (not its warnings:
 * every run ends with subscribers that leave, which the publisher warns of). */
static void log_stderr(int level, const char *msg, void *userdata)
{
	if (level <= TFD_LOG_ERR)
		fprintf(stderr, "tensorfd-bench[%d]: libtensorfd: %s\n", (int)getpid(), msg);
}

static int run_sections(const struct options *opt)
{
	int r = 0;

	if (opt->sections & SEC_FLOORS)
		r = run_floors(opt);
	if (r == 0 && (opt->sections & SEC_TENSORFD))
		r = run_tensorfd(opt);
	if (r == 0 && (opt->sections & SEC_BASELINES))
		r = run_baselines(opt);
	if (r == 0 && (opt->sections & SEC_THROUGHPUT))
		r = run_throughput(opt);
	return r;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tensorfd-bench-XXXXXX";
	struct options opt;
	unsigned int i;
	int r, e;

	r = parse_args(argc, argv, &opt);
	if (r)
		return r < 0 ? 2 : 0;
	if (opt.backend && setenv("TENSORFD_NOTIFY", opt.backend, 1) < 0)
		return 1;
	fit_sizes(&opt);
	if (!opt.n_sizes) {
		fprintf(stderr, "tensorfd-bench: no size fits in memory\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);	/* a peer that died is an error return, not a kill */
	tfd_set_log_fn(log_stderr, NULL);
	for (i = 0; i < opt.n_includes; i++) {
		r = report_include(opt.includes[i]);
		if (r < 0) {
			fprintf(stderr, "tensorfd-bench: --include %s: %s\n", opt.includes[i],
				strerror(-r));
			return 1;
		}
	}
	/* a private runtime directory: nobody else's topics, none left behind */
	if (!mkdtemp(dir) || setenv("TENSORFD_RUNTIME_DIR", dir, 1) < 0) {
		perror("tensorfd-bench: runtime directory");
		return 1;
	}
	r = bench_proc_setup(&opt, 0);
	if (r == 0) {
		report_head(&opt);
		r = run_sections(&opt);
		e = report_end(&opt);
		r = r ? r : e;
	}
	if (r == 0 && opt.plot)
		r = report_plot(&opt, opt.plot);
	if (rmdir(dir) < 0)
		fprintf(stderr, "tensorfd-bench: cannot remove %s: %s\n", dir, strerror(errno));
	return r < 0 ? 1 : 0;
}
