/* SPDX-License-Identifier: MIT */
/*
 * What tensorfd-bench prints: the table (rows as they are measured), JSON
 * (one result per line, which --include reads back), the targets
 * computed from the rows, and an SVG plot of latency against size.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <tensorfd.h>

#include "bench.h"

static const struct row *last_printed;

static double us(double ns)
{
	return ns / 1e3;
}

static const char *size_str(char *buf, size_t len, uint64_t size)
{
	if (!size)
		return "-";
	return fmt_size(buf, len, size);
}

static void cpu_model(char *buf, size_t len)
{
	char line[256], *p;
	FILE *f;

	snprintf(buf, len, "unknown CPU");
	f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) != 0 || !(p = strchr(line, ':')))
			continue;
		for (p++; *p == ' '; p++)
			;
		p[strcspn(p, "\n")] = '\0';
		snprintf(buf, len, "%s", p);
		break;
	}
	fclose(f);
}

static const char *backend_name(void)
{
	struct tfd_channel *a, *b;
	static char name[32];

	if (name[0])
		return name;
	snprintf(name, sizeof(name), "unknown");
	if (tfd_channel_pair(&a, &b) == 0) {
		if (tfd_channel_backend(a))
			snprintf(name, sizeof(name), "%s", tfd_channel_backend(a));
		tfd_channel_unref(a);
		tfd_channel_unref(b);
	}
	return name;
}

static void cpus_str(const struct options *opt, char *buf, size_t len)
{
	size_t off = 0;
	unsigned int i;

	snprintf(buf, len, "not pinned");
	for (i = 0; i < opt->n_cpus && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%d", i ? "," : "", opt->cpus[i]);
}

void report_head(const struct options *opt)
{
	char model[128], cpus[96];
	struct utsname u;

	if (opt->json)
		return;
	cpu_model(model, sizeof(model));
	cpus_str(opt, cpus, sizeof(cpus));
	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "unknown");
	printf("tensorfd-bench: latency in microseconds, one process to another\n"
	       "  machine: %s, %ld CPUs online, Linux %s\n"
	       "  notification backend: %s; cpus: %s (producer first, then consumers)%s%s\n"
	       "  one-way: the producer's clock (CLOCK_MONOTONIC) as it starts producing to the\n"
	       "    consumer's once it has consumed; rtt/2: the round trip halved, the answer\n"
	       "    being the release (tensorfd) or a minimal message (others)\n"
	       "  touch ends: producer writes and consumer reads the first and last byte (the\n"
	       "    transport); touch all: one byte of every 64-byte cache line (real work)\n"
	       "  spin: the receiver polls without sleeping for up to %u us, then sleeps\n",
	       model, sysconf(_SC_NPROCESSORS_ONLN), u.release, backend_name(), cpus,
	       opt->fifo ? "; SCHED_FIFO" : "", opt->mlock ? "; mlockall" : "", opt->spin_us);
	fflush(stdout);
}

static void print_lat_head(void)
{
	printf("\n%-8s %-18s %-5s %-5s %4s %5s | %5s %9s %9s %9s %9s | %9s | %9s %7s\n", "group",
	       "latency", "wait", "touch", "subs", "size", "iters", "p50", "p99", "p99.9", "max",
	       "rtt/2 p50", "first", "rss KiB");
}

static void print_rate_head(void)
{
	printf("\n%-8s %-18s %-5s %4s %5s | %7s %9s %10s | %11s %11s\n", "group", "throughput",
	       "wait", "subs", "size", "seconds", "messages", "msg/s", "pub us/msg", "sub us/msg");
}

static void json_row(FILE *out, const struct row *r, bool last)
{
	if (!strcmp(r->kind, "throughput")) {
		fprintf(out, "  {\"kind\": \"throughput\", \"group\": \"%s\", \"name\": \"%s\", "
		       "\"wait\": \"%s\", \"touch\": \"%s\", \"subs\": %u, \"size\": %llu, "
		       "\"seconds\": %.3f, \"messages\": %llu, \"msgs_per_s\": %.0f, "
		       "\"publisher_cpu_us_per_msg\": %.3f, \"subscriber_cpu_us_per_msg\": %.3f}%s\n",
		       r->group, r->name, r->wait, r->touch, r->subs, (unsigned long long)r->size,
		       r->seconds, (unsigned long long)r->messages, r->msgs_per_s,
		       us(r->pub_cpu_ns), us(r->sub_cpu_ns), last ? "" : ",");
		return;
	}
	fprintf(out, "  {\"kind\": \"latency\", \"group\": \"%s\", \"name\": \"%s\", \"wait\": \"%s\", "
	       "\"touch\": \"%s\", \"subs\": %u, \"size\": %llu, \"iters\": %u, "
	       "\"samples\": %u, \"oneway\": {\"p50\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}, "
	       "\"rtt_half\": {\"p50\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}, "
	       "\"first\": %.3f, \"rss_growth_kib\": %ld}%s\n",
	       r->group, r->name, r->wait, r->touch, r->subs, (unsigned long long)r->size,
	       r->half.n, r->oneway.n, us((double)r->oneway.p50), us((double)r->oneway.p99),
	       us((double)r->oneway.p999), us((double)r->oneway.max), us((double)r->half.p50),
	       us((double)r->half.p99), us((double)r->half.p999), us((double)r->half.max),
	       us((double)r->first_ns), r->rss_growth_kib, last ? "" : ",");
}

/* Microseconds in at most 9 columns, with the digits that matter. */
static const char *num(char buf[32], uint64_t ns)
{
	double v = us((double)ns);

	snprintf(buf, 32, v < 100 ? "%.2f" : v < 10000 ? "%.1f" : "%.0f", v);
	return buf;
}

void report_row(const struct options *opt, const struct row *r)
{
	bool rate = !strcmp(r->kind, "throughput");
	char buf[32], first[32] = "-", rss[32] = "-", n[5][32];
	const char *sz;

	if (opt->json)
		return;
	if (!last_printed || strcmp(last_printed->kind, r->kind) ||
	    strcmp(last_printed->group, r->group)) {
		if (rate)
			print_rate_head();
		else
			print_lat_head();
	}
	last_printed = r;
	sz = size_str(buf, sizeof(buf), r->size);
	if (rate) {
		printf("%-8s %-18.18s %-5s %4u %5s | %7.2f %9llu %10.0f | %11.3f %11.3f\n", r->group,
		       r->name, r->wait, r->subs, sz, r->seconds, (unsigned long long)r->messages,
		       r->msgs_per_s, us(r->pub_cpu_ns), us(r->sub_cpu_ns));
	} else {
		if (r->first_ns)
			num(first, r->first_ns);
		if (r->rss_growth_kib >= 0)
			snprintf(rss, sizeof(rss), "%+ld", r->rss_growth_kib);
		printf("%-8s %-18.18s %-5s %-5s %4u %5s | %5u %9s %9s %9s %9s | %9s | %9s %7s\n",
		       r->group, r->name, r->wait, r->touch, r->subs, sz, r->half.n,
		       num(n[0], r->oneway.p50), num(n[1], r->oneway.p99),
		       num(n[2], r->oneway.p999), num(n[3], r->oneway.max), num(n[4], r->half.p50),
		       first, rss);
	}
	fflush(stdout);
}

/* --- the targets, from the rows -------------------------------------------- */

static const struct row *find(const char *name, const char *wait, const char *touch,
			      unsigned int subs, uint64_t size)
{
	unsigned int i;

	for (i = 0; i < bench_n_rows; i++) {
		const struct row *r = &bench_rows[i];

		if (!strcmp(r->kind, "latency") && !strcmp(r->name, name) &&
		    (!wait || !strcmp(r->wait, wait)) && (!touch || !strcmp(r->touch, touch)) &&
		    r->subs == subs && r->size == size && r->oneway.n)
			return r;
	}
	return NULL;
}

static const struct row *find_rate(const char *wait, unsigned int subs)
{
	unsigned int i;

	for (i = 0; i < bench_n_rows; i++)
		if (!strcmp(bench_rows[i].kind, "throughput") &&
		    !strcmp(bench_rows[i].name, "tensorfd topic") &&
		    !strcmp(bench_rows[i].wait, wait) && bench_rows[i].subs == subs)
			return &bench_rows[i];
	return NULL;
}

struct target {
	int no;
	char what[96];
	double value, limit;
	bool at_most;		/* value <= limit to meet it */
	bool measured;
	char unit[8];
};

static struct target targets[16];
static unsigned int n_targets;

static void target(int no, const char *what, double value, double limit, bool at_most,
		   bool measured, const char *unit)
{
	struct target *t;

	if (n_targets == sizeof(targets) / sizeof(targets[0]))
		return;
	t = &targets[n_targets++];
	*t = (struct target){ .no = no, .value = value, .limit = limit, .at_most = at_most,
			      .measured = measured };
	snprintf(t->what, sizeof(t->what), "%s", what);
	snprintf(t->unit, sizeof(t->unit), "%s", unit);
}

static bool met(const struct target *t)
{
	return t->measured && (t->at_most ? t->value <= t->limit : t->value >= t->limit);
}

/* Target 1: p50 at 256 MiB and above against p50 at the smallest size. */
static void target_constant(const struct options *opt, const char *wait)
{
	const struct row *small = find("tensorfd topic", wait, "ends", 1, opt->sizes[0]), *big;
	double worst = 0;
	bool any = false;
	unsigned int s;
	char what[96];

	for (s = 1; small && s < opt->n_sizes; s++) {
		big = opt->sizes[s] >= 256 * MiB ? find("tensorfd topic", wait, "ends", 1,
							  opt->sizes[s]) : NULL;
		if (!big)
			continue;
		any = true;
		if ((double)big->oneway.p50 / (double)small->oneway.p50 > worst)
			worst = (double)big->oneway.p50 / (double)small->oneway.p50;
	}
	snprintf(what, sizeof(what), "constant time, %s: p50 at >= 256M / p50 at smallest", wait);
	target(1, what, worst, 1.25, true, any, "x");
}

/* The cheapest blocking wake-up of the floors. */
static const struct row *best_block_floor(void)
{
	static const char *const names[] = { "futex", "eventfd", "seqpacket 1 B" };
	const struct row *best = NULL, *r;
	unsigned int i;

	for (i = 0; i < 3; i++) {
		r = find(names[i], "block", "-", 1, 0);
		if (r && (!best || r->oneway.p50 < best->oneway.p50))
			best = r;
	}
	return best;
}

/* Worst p50 (or p99) of tensorfd, 1 subscriber, touch ends, over the sizes. */
static double worst_tfd(const struct options *opt, const char *wait, bool p99, bool *any)
{
	const struct row *r;
	double worst = 0, v;
	unsigned int s;

	*any = false;
	for (s = 0; s < opt->n_sizes; s++) {
		r = find("tensorfd topic", wait, "ends", 1, opt->sizes[s]);
		if (!r)
			continue;
		*any = true;
		v = (double)(p99 ? r->oneway.p99 : r->oneway.p50);
		worst = v > worst ? v : worst;
	}
	return worst;
}

/* Target 5: socket copy against tensorfd at the biggest size >= 256 MiB; torch. */
static void target_baselines(const struct options *opt)
{
	const struct row *tfd = NULL, *sock = NULL, *torch, *mine;
	double worst = 0;
	bool any = false;
	unsigned int s, i;

	for (s = 0; s < opt->n_sizes; s++) {
		if (opt->sizes[s] < 256 * MiB)
			continue;
		tfd = find("tensorfd topic", "block", "ends", 1, opt->sizes[s]);
		sock = find("unix socket copy", "block", "ends", 1, opt->sizes[s]);
		break;
	}
	target(5, "socket copy p50 / tensorfd p50 at 256M (block, ends)",
	       tfd && sock ? (double)sock->oneway.p50 / (double)tfd->oneway.p50 : 0, 1000, false,
	       tfd && sock, "x");
	for (i = 0; i < bench_n_rows; i++) {
		torch = &bench_rows[i];
		if (!torch->from_include || strncmp(torch->name, "torch", 5) != 0)
			continue;
		mine = find("tensorfd python", "block", "ends", 1, torch->size);
		if (!mine)
			mine = find("tensorfd topic", "block", "ends", 1, torch->size);
		if (!mine)
			continue;
		if (!any || (double)torch->oneway.p50 / (double)mine->oneway.p50 < worst)
			worst = (double)torch->oneway.p50 / (double)mine->oneway.p50;
		any = true;
	}
	target(5, "torch.multiprocessing p50 / tensorfd p50, worst size", worst, 15, false, any,
	       "x");
}

static void compute_targets(const struct options *opt)
{
	const struct row *floor = best_block_floor(), *line = find("cache line", "spin", "-", 1, 0);
	const struct row *rate = find_rate("spin", 1);
	long rss = -1;
	double v;
	bool any;
	unsigned int i;

	n_targets = 0;
	target_constant(opt, "block");
	target_constant(opt, "spin");
	v = worst_tfd(opt, "block", false, &any);
	target(2, "blocking p50 / best blocking floor p50, worst size",
	       floor ? v / (double)floor->oneway.p50 : 0, 1.2, true, any && floor, "x");
	v = worst_tfd(opt, "spin", false, &any);
	target(3, "spinning p50 / cache-line floor p50, worst size",
	       line ? v / (double)line->oneway.p50 : 0, 3, true, any && line, "x");
	v = worst_tfd(opt, "spin", true, &any);
	target(3, "spinning p99, worst size", us(v), 5, true, any, "us");
	target(4, "64 B messages/s to 1 spinning subscriber", rate ? rate->msgs_per_s : 0, 1e6,
	       false, rate && rate->size == 64, "/s");
	target(4, "publisher CPU per message", rate ? us(rate->pub_cpu_ns) : 0, 1, true,
	       rate && rate->size == 64, "us");
	target_baselines(opt);
	for (i = 0; i < bench_n_rows; i++)
		if (!strcmp(bench_rows[i].group, "tensorfd") && bench_rows[i].rss_growth_kib > rss)
			rss = bench_rows[i].rss_growth_kib;
	target(6, "subscriber RssAnon growth over a series, worst", (double)rss, 1024, true,
	       rss >= 0, "KiB");
}

static void print_targets(void)
{
	const struct target *t;
	unsigned int i;

	printf("\nissue targets (from the rows above; a ratio is worst over the sizes):\n");
	for (i = 0; i < n_targets; i++) {
		t = &targets[i];
		if (!t->measured) {
			printf("  %d. %-58s not measured\n", t->no, t->what);
			continue;
		}
		printf("  %d. %-58s %12.3f %-3s (%s %g): %s\n", t->no, t->what, t->value, t->unit,
		       t->at_most ? "<=" : ">=", t->limit, met(t) ? "met" : "missed");
	}
	printf("  6. publisher system calls per message: measure with strace -c -f (see the "
	       "man page)\n");
}

static void json_targets(FILE *out)
{
	const struct target *t;
	unsigned int i;

	fprintf(out, "\"targets\": [\n");
	for (i = 0; i < n_targets; i++) {
		t = &targets[i];
		fprintf(out, "  {\"target\": %d, \"what\": \"%s\", \"measured\": %s, \"value\": %.4f, "
		       "\"unit\": \"%s\", \"limit\": %g, \"at_most\": %s, \"met\": %s}%s\n",
		       t->no, t->what, t->measured ? "true" : "false", t->value, t->unit, t->limit,
		       t->at_most ? "true" : "false", met(t) ? "true" : "false",
		       i + 1 < n_targets ? "," : "");
	}
	fprintf(out, "]");
}

static void json_all(FILE *out, const struct options *opt)
{
	char model[128], cpus[96];
	struct utsname u;
	unsigned int i;

	cpu_model(model, sizeof(model));
	cpus_str(opt, cpus, sizeof(cpus));
	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "unknown");
	fprintf(out, "{\"tool\": \"tensorfd-bench\", \"version\": \"%s\", \"unit\": \"us\",\n"
		     "\"machine\": {\"cpu\": \"%s\", \"cpus_online\": %ld, \"kernel\": \"%s\"},\n"
		     "\"backend\": \"%s\", \"cpus\": \"%s\", \"spin_us\": %u, \"fifo\": %d, "
		     "\"mlock\": %s, \"quick\": %s,\n\"results\": [\n",
		PACKAGE_VERSION, model, sysconf(_SC_NPROCESSORS_ONLN), u.release, backend_name(),
		cpus, opt->spin_us, opt->fifo, opt->mlock ? "true" : "false",
		opt->quick ? "true" : "false");
	for (i = 0; i < bench_n_rows; i++)
		json_row(out, &bench_rows[i], i + 1 == bench_n_rows);
	fprintf(out, "],\n");
	json_targets(out);
	fprintf(out, "}\n");
}

int report_end(const struct options *opt)
{
	unsigned int i;
	bool any = false;
	FILE *f;

	compute_targets(opt);
	if (opt->json)
		json_all(stdout, opt);
	if (!opt->json) {
		for (i = 0; i < bench_n_rows; i++) {
			if (!bench_rows[i].from_include)
				continue;
			if (!any)
				printf("\nincluded rows:");
			any = true;
			report_row(opt, &bench_rows[i]);
		}
		print_targets();
	}
	if (!opt->json_file)
		return 0;
	f = fopen(opt->json_file, "we");
	if (!f) {
		fprintf(stderr, "tensorfd-bench: %s: %s\n", opt->json_file, strerror(errno));
		return -errno;
	}
	json_all(f, opt);
	return fclose(f) == 0 ? 0 : -errno;
}

/* --- --include: rows from another run, one JSON object per line ------------------ */

static bool json_str(const char *line, const char *key, char *buf, size_t len)
{
	char pat[48];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\": \"", key);
	p = strstr(line, pat);
	if (!p)
		return false;
	p += strlen(pat);
	e = strchr(p, '"');
	if (!e || (size_t)(e - p) >= len)
		return false;
	memcpy(buf, p, (size_t)(e - p));
	buf[e - p] = '\0';
	return true;
}

static bool json_num(const char *line, const char *key, double *v)
{
	char pat[48], *end;
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	if (!p)
		return false;
	*v = strtod(p + strlen(pat), &end);
	return end != p + strlen(pat);
}

/* A {"p50": .., "p99": .., "p999": .., "max": ..} object after key, in us. */
static bool json_summary(const char *line, const char *key, struct summary *s)
{
	char pat[48];
	const char *p;
	double a, b, c, d;

	snprintf(pat, sizeof(pat), "\"%s\": {", key);
	p = strstr(line, pat);
	if (!p || !json_num(p, "p50", &a) || !json_num(p, "p99", &b) || !json_num(p, "max", &d))
		return false;
	if (!json_num(p, "p999", &c))
		c = b;
	s->p50 = (uint64_t)(a * 1e3), s->p99 = (uint64_t)(b * 1e3);
	s->p999 = (uint64_t)(c * 1e3), s->max = (uint64_t)(d * 1e3);
	return true;
}

static int include_line(const char *line)
{
	struct row tmp = { .rss_growth_kib = -1, .from_include = true }, *r;
	double v = 0;

	if (!json_str(line, "kind", tmp.kind, sizeof(tmp.kind)) ||
	    !json_str(line, "group", tmp.group, sizeof(tmp.group)) ||
	    !json_str(line, "name", tmp.name, sizeof(tmp.name)) ||
	    !json_str(line, "wait", tmp.wait, sizeof(tmp.wait)) ||
	    !json_str(line, "touch", tmp.touch, sizeof(tmp.touch)) || !json_num(line, "size", &v))
		return 0;	/* not a result row */
	tmp.size = (uint64_t)v;
	tmp.subs = json_num(line, "subs", &v) ? (unsigned int)v : 1;
	if (!strcmp(tmp.kind, "latency")) {
		if (!json_summary(line, "oneway", &tmp.oneway))
			return -EBADMSG;
		if (!json_summary(line, "rtt_half", &tmp.half))
			tmp.half = tmp.oneway;
		tmp.half.n = json_num(line, "iters", &v) ? (unsigned int)v : 1;
		tmp.oneway.n = json_num(line, "samples", &v) ? (unsigned int)v : tmp.half.n;
		if (json_num(line, "first", &v))
			tmp.first_ns = (uint64_t)(v * 1e3);
		if (json_num(line, "rss_growth_kib", &v))
			tmp.rss_growth_kib = (long)v;
	} else if (!strcmp(tmp.kind, "throughput")) {
		if (!json_num(line, "msgs_per_s", &tmp.msgs_per_s))
			return -EBADMSG;
		if (json_num(line, "publisher_cpu_us_per_msg", &v))
			tmp.pub_cpu_ns = v * 1e3;
		if (json_num(line, "subscriber_cpu_us_per_msg", &v))
			tmp.sub_cpu_ns = v * 1e3;
		tmp.messages = json_num(line, "messages", &v) ? (uint64_t)v : 0;
		tmp.seconds = json_num(line, "seconds", &v) ? v : 0;
	} else {
		return 0;
	}
	r = row_add();
	*r = tmp;
	return 1;
}

int report_include(const char *path)
{
	char line[4096];
	int r = 0, n = 0;
	FILE *f;

	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (r >= 0 && fgets(line, sizeof(line), f)) {
		r = include_line(line);
		n += r > 0;
	}
	fclose(f);
	return r < 0 ? r : n ? 0 : -ENODATA;
}

/* --- --plot: latency against size, log-log, SVG -------------------------------------- */

#define PLOT_W		960
#define PLOT_H		600
#define PLOT_L		80
#define PLOT_R		300
#define PLOT_T		40
#define PLOT_B		60

static const char *const colors[] = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
				      "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
				      "#000000", "#aec7e8", "#98df8a", "#ff9896" };

/* What is plotted: one subscriber, touch ends, blocking receivers, and tensorfd's
 * spinning one; the floors as horizontal lines. */
static bool plotted(const struct row *r)
{
	if (strcmp(r->kind, "latency") || r->subs != 1 || !r->oneway.n)
		return false;
	if (!r->size)
		return true;	/* a floor */
	if (strcmp(r->touch, "ends"))
		return false;
	return !strcmp(r->wait, "block") || !strcmp(r->group, "tensorfd");
}

static bool same_series(const struct row *a, const struct row *b)
{
	return !strcmp(a->name, b->name) && !strcmp(a->wait, b->wait) &&
	       !strcmp(a->touch, b->touch) && a->subs == b->subs && !a->size == !b->size;
}

struct axes {
	double x0, x1, y0, y1;	/* log10 of the ranges */
};

static double px(const struct axes *ax, double size)
{
	return PLOT_L + (log10(size) - ax->x0) / (ax->x1 - ax->x0) * (PLOT_W - PLOT_L - PLOT_R);
}

static double py(const struct axes *ax, double usec)
{
	return PLOT_H - PLOT_B - (log10(usec) - ax->y0) / (ax->y1 - ax->y0) * (PLOT_H - PLOT_T - PLOT_B);
}

static void plot_axes(FILE *f, const struct options *opt, const struct axes *ax)
{
	unsigned int s;
	char sz[32];
	int d;

	fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='black'/>\n",
		PLOT_L, PLOT_T, PLOT_W - PLOT_L - PLOT_R, PLOT_H - PLOT_T - PLOT_B);
	for (s = 0; s < opt->n_sizes; s++)
		fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%s</text>\n",
			px(ax, (double)opt->sizes[s]), PLOT_H - PLOT_B + 18,
			fmt_size(sz, sizeof(sz), opt->sizes[s]));
	for (d = (int)ax->y0; d <= (int)ax->y1; d++) {
		fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#ddd'/>\n", PLOT_L,
			PLOT_W - PLOT_R, py(ax, pow(10, d)), py(ax, pow(10, d)));
		fprintf(f, "<text x='%d' y='%.1f' text-anchor='end'>%g</text>\n", PLOT_L - 6,
			py(ax, pow(10, d)) + 4, pow(10, d));
	}
	fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>payload size</text>\n",
		(PLOT_L + PLOT_W - PLOT_R) / 2, PLOT_H - 15);
	fprintf(f, "<text x='20' y='%d' transform='rotate(-90 20 %d)' text-anchor='middle'>"
		   "one-way latency p50, microseconds</text>\n",
		(PLOT_T + PLOT_H - PLOT_B) / 2, (PLOT_T + PLOT_H - PLOT_B) / 2);
}

static void plot_series(FILE *f, const struct options *opt, const struct axes *ax,
			const struct row *first, unsigned int idx, unsigned int legend)
{
	const char *color = colors[idx % (sizeof(colors) / sizeof(colors[0]))];
	const char *dash = first->size ? "" : " stroke-dasharray='6 4'";
	double ly = PLOT_T + 10 + 18.0 * legend;
	unsigned int i;

	if (!first->size) {
		fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='%s'%s/>\n", PLOT_L,
			PLOT_W - PLOT_R, py(ax, us((double)first->oneway.p50)),
			py(ax, us((double)first->oneway.p50)), color, dash);
	} else {
		fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='%s' points='", color,
			strcmp(first->group, "tensorfd") ? "2" : "4");
		for (i = 0; i < bench_n_rows; i++)
			if (plotted(&bench_rows[i]) && same_series(first, &bench_rows[i]))
				fprintf(f, "%.1f,%.1f ", px(ax, (double)bench_rows[i].size),
					py(ax, us((double)bench_rows[i].oneway.p50)));
		fprintf(f, "'/>\n");
	}
	fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='%s' stroke-width='2'%s/>\n",
		PLOT_W - PLOT_R + 15, PLOT_W - PLOT_R + 45, ly, ly, color, dash);
	fprintf(f, "<text x='%d' y='%.1f'>%s%s (%s)</text>\n", PLOT_W - PLOT_R + 52, ly + 4,
		first->size ? "" : "floor: ", first->name, first->wait);
}

int report_plot(const struct options *opt, const char *path)
{
	struct axes ax = { log10((double)opt->sizes[0]), log10((double)opt->sizes[0]), 99, -99 };
	unsigned int i, j, k, series = 0;
	double v;
	FILE *f;

	for (i = 0; i < opt->n_sizes; i++)
		ax.x1 = fmax(ax.x1, log10((double)opt->sizes[i]));
	for (i = 0; i < bench_n_rows; i++) {
		if (!plotted(&bench_rows[i]) || !bench_rows[i].oneway.p50)
			continue;
		v = log10(us((double)bench_rows[i].oneway.p50));
		ax.y0 = fmin(ax.y0, floor(v));
		ax.y1 = fmax(ax.y1, ceil(v));
	}
	if (ax.y0 > ax.y1)
		ax.y0 = -1, ax.y1 = 3;
	if (ax.y1 <= ax.y0)
		ax.y1 = ax.y0 + 1;
	if (ax.x1 <= ax.x0)
		ax.x0 -= 0.5, ax.x1 += 0.5;
	f = fopen(path, "we");
	if (!f) {
		fprintf(stderr, "tensorfd-bench: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
		   "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
		   "font-family='sans-serif' font-size='12'>\n"
		   "<rect width='100%%' height='100%%' fill='white'/>\n"
		   "<text x='%d' y='24' font-size='15'>tensorfd-bench: one-way latency p50 against "
		   "size (1 subscriber, touch ends)</text>\n",
		   PLOT_W, PLOT_H, PLOT_L);
	plot_axes(f, opt, &ax);
	/* this run's series first, then the included ones */
	for (k = 0; k < 2 * bench_n_rows; k++) {
		i = k % bench_n_rows;
		if (bench_rows[i].from_include != (k >= bench_n_rows) ||
		    !plotted(&bench_rows[i]) || !bench_rows[i].oneway.p50)
			continue;
		for (j = 0; j < i && !(plotted(&bench_rows[j]) &&
				       same_series(&bench_rows[j], &bench_rows[i]));
		     j++)
			;
		if (j < i)
			continue;	/* drawn with its first row */
		plot_series(f, opt, &ax, &bench_rows[i], series, series);
		series++;
	}
	fprintf(f, "</svg>\n");
	if (fclose(f) != 0)
		return -errno;
	return 0;
}
