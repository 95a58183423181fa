/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-bench: what the parts share. Options, the result rows every
 * measurement produces, the two process harnesses (a ping-pong between two
 * forked processes for floors and baselines, a topic with forked
 * subscribers for tensorfd), and the reports (table, JSON, SVG plot).
 */
#ifndef TFD_BENCH_H
#define TFD_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "toolutil.h"

#define BENCH_MAX_SIZES		16
#define BENCH_MAX_SUBS		64
#define BENCH_MAX_CPUS		16
#define BENCH_MAX_ROWS		1024
#define BENCH_TIMEOUT_MS	60000
#define BENCH_WARMUP		100

#define KiB	(1ull << 10)
#define MiB	(1ull << 20)
#define GiB	(1ull << 30)

enum touch {
	TOUCH_ENDS,	/* the first and last byte: the transport alone */
	TOUCH_ALL,	/* one byte of every 64-byte cache line: a real producer and consumer */
};

enum section {
	SEC_FLOORS = 1u << 0,
	SEC_TENSORFD = 1u << 1,
	SEC_BASELINES = 1u << 2,
	SEC_THROUGHPUT = 1u << 3,
	SEC_ALL = 0xf,
};

struct options {
	uint64_t sizes[BENCH_MAX_SIZES];
	unsigned int n_sizes;
	unsigned int subs[BENCH_MAX_SIZES];	/* subscriber counts */
	unsigned int n_subs;
	int cpus[BENCH_MAX_CPUS];		/* publisher first, then subscribers */
	unsigned int n_cpus;			/* 0: not pinned */
	unsigned int iters;			/* 0: by size */
	unsigned int waits;			/* bit 0: block, bit 1: spin */
	unsigned int touches;			/* bit per enum touch */
	unsigned int sections;
	unsigned int spin_us;			/* a spinning receiver's budget before it sleeps */
	unsigned int depth;			/* throughput queue depth */
	uint64_t rate_size;
	double seconds;				/* each throughput run */
	uint64_t rate_messages;			/* or this many messages; 0: by time */
	int fifo;				/* SCHED_FIFO priority, 0: not */
	bool mlock;
	bool quick;
	bool json;
	const char *plot;
	const char *json_file;			/* JSON here too, beside the table */
	const char *includes[8];
	unsigned int n_includes;
	const char *backend;			/* what TENSORFD_NOTIFY was set to, or NULL */
};

#define WAIT_BLOCK	1u
#define WAIT_SPIN	2u

/* Every number the tool reports is a row. Latencies in ns. */
struct row {
	char kind[12];		/* "latency" or "throughput" */
	char group[12];		/* "floor", "tensorfd", "baseline" */
	char name[64];
	char wait[8];		/* "block", "spin" */
	char touch[8];		/* "ends", "all", "-" */
	unsigned int subs;
	uint64_t size;		/* payload bytes; 0 for floors without one */
	struct summary oneway;	/* timestamped one-way */
	struct summary half;	/* round trip halved */
	uint64_t first_ns;	/* tensorfd: the first message of a size (fds pass, pages map) */
	long rss_growth_kib;	/* tensorfd: a subscriber's RssAnon over the size's messages; -1 */
	/* throughput */
	double seconds;
	uint64_t messages;
	double msgs_per_s;
	double pub_cpu_ns, sub_cpu_ns;	/* per message */
	bool from_include;
};

extern struct row bench_rows[BENCH_MAX_ROWS];
extern unsigned int bench_n_rows;

/* main.c */
unsigned int bench_iters(const struct options *opt, uint64_t size, enum touch touch);
int bench_cpu(const struct options *opt, unsigned int who);	/* 0: publisher; -1: free */
bool bench_can_spin(const struct options *opt, unsigned int procs);
int bench_proc_setup(const struct options *opt, unsigned int who);
void bench_place(const struct options *opt, unsigned int who, pid_t pid);
uint64_t cpu_time_ns(void);
long rss_anon_kib(void);
const char *touch_name(enum touch t);
void touch_write(uint8_t *p, uint64_t size, uint8_t mark, enum touch t);
bool touch_read(const uint8_t *p, uint64_t size, uint8_t mark, enum touch t);
struct row *row_add(void);

/* pingpong.c: floors and baselines between two forked processes */
int run_floors(const struct options *opt);
int run_baselines(const struct options *opt);

/* topic.c: tensorfd topics */
int run_tensorfd(const struct options *opt);
int run_throughput(const struct options *opt);

/* report.c */
void report_head(const struct options *opt);
void report_row(const struct options *opt, const struct row *r);
int report_end(const struct options *opt);
int report_include(const char *path);
int report_plot(const struct options *opt, const char *path);

#endif
