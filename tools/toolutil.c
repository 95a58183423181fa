/* SPDX-License-Identifier: MIT */
/* Helpers shared by tensorfd-pingpong and tensorfd-bench; see toolutil.h. */
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toolutil.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* "1G", "64M", "4096": bytes, with binary K/M/G suffixes. */
int parse_size(const char *s, uint64_t *ret)
{
	static const char units[] = "KMG";
	unsigned int shift = 0;
	unsigned long long v;
	const char *u;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
	if (u) {
		shift = 10 * (unsigned int)(u - units + 1);
		end++;
	}
	if (*end || v == 0 || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*ret = (uint64_t)v << shift;
	return 0;
}

const char *fmt_size(char *buf, size_t len, uint64_t size)
{
	if (size % GiB == 0)
		snprintf(buf, len, "%lluG", (unsigned long long)(size / GiB));
	else if (size % MiB == 0)
		snprintf(buf, len, "%lluM", (unsigned long long)(size / MiB));
	else if (size % KiB == 0)
		snprintf(buf, len, "%lluK", (unsigned long long)(size / KiB));
	else
		snprintf(buf, len, "%llu", (unsigned long long)size);
	return buf;
}

/* A negative cpu means "leave it to the scheduler". */
int pin_cpu(const char *prog, int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		fprintf(stderr, "%s: cannot pin to CPU %d: %s\n", prog, cpu, strerror(errno));
		return -errno;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples; permille: 500 is the median. */
static uint64_t percentile(const uint64_t *v, unsigned int n, unsigned int permille)
{
	unsigned int rank = (unsigned int)(((uint64_t)n * permille + 999) / 1000);

	return v[rank ? rank - 1 : 0];
}

/* Sorts v in place. */
struct summary summarize(uint64_t *v, unsigned int n)
{
	if (!n)
		return (struct summary){ 0 };
	qsort(v, n, sizeof(*v), cmp_u64);
	return (struct summary){
		.n = n,
		.p50 = percentile(v, n, 500),
		.p99 = percentile(v, n, 990),
		.p999 = percentile(v, n, 999),
		.max = v[n - 1],
	};
}
