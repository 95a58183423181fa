/* SPDX-License-Identifier: MIT */
/*
 * What the timing tools share: the clock, size and CPU options, and
 * percentile summaries of latency samples.
 */
#ifndef TFD_TOOLUTIL_H
#define TFD_TOOLUTIL_H

#include <stddef.h>
#include <stdint.h>

struct summary {
	unsigned int n;
	uint64_t p50, p99, p999, max;	/* ns; p999: the 99.9th percentile */
};

uint64_t now_ns(void);
int parse_size(const char *s, uint64_t *ret);
const char *fmt_size(char *buf, size_t len, uint64_t size);
int pin_cpu(const char *prog, int cpu);
struct summary summarize(uint64_t *v, unsigned int n);

#endif
