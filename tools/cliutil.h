/* SPDX-License-Identifier: MIT */
/*
 * What the topic tools (tensorfd-ls, -echo, -hz, -pub, -record, -play)
 * share: exit codes, error reports, dtype names, element access for
 * statistics, signals, and the record file format (safetensors blobs).
 */
#ifndef TFD_CLIUTIL_H
#define TFD_CLIUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <tensorfd.h>

/* Exit codes every tool's man page lists. */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,		/* anything else: I/O, protocol, out of memory */
	EXIT_USAGE = 2,		/* bad command line */
	EXIT_NOTOPIC = 3,	/* no such topic, or only a stale socket of a dead publisher */
	EXIT_DENIED = 4,	/* permission denied or refused by the publisher */
	EXIT_TIMEOUT = 5,	/* nothing arrived within --timeout */
	EXIT_GONE = 6,		/* the publisher went away */
};

extern const char *prog;

/* Map a negative errno from the library to an exit code. */
int exit_code_of(int err);
/* Print "prog: what: reason" (the library's last error) and return the exit code. */
int report(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Before subscribing: is there a live publisher? 0, or an exit code after
 * a message (no such topic, stale, denied). wait: a missing or stale topic
 * is fine, the tool waits for it.
 */
int topic_probe(const char *topic, bool wait);

/* SIGINT/SIGTERM set this; handlers installed without SA_RESTART. */
extern volatile int stop_requested;
void catch_signals(void);

/* "f32", "u8", "bf16", "c64", "bool", "f32x4"; NULL-free. */
const char *dtype_name(struct tfd_dtype d, char *buf, size_t len);
int dtype_parse(const char *s, struct tfd_dtype *d);
/* safetensors' dtype names ("F32"), NULL when it has none. */
const char *dtype_st_name(struct tfd_dtype d);
int dtype_st_parse(const char *s, struct tfd_dtype *d);

struct tensor_stats {
	double min, max, sum;
	uint64_t n, nan;
	uint64_t walked, total;	/* elements looked at (weighing broadcasts), in the tensor */
	bool numeric;
};

/*
 * Statistics of a host tensor; a broadcast (stride 0) costs what its
 * distinct elements cost, aliasing ones at most what its span holds, and
 * SIGINT/SIGTERM (stop_requested) cut the walk short: then walked < total.
 */
void tensor_stats(const struct tfd_layout *l, const void *data, struct tensor_stats *st);

/* The first max elements of a host tensor in index order, as doubles; 0 if not numeric. */
size_t tensor_values(const struct tfd_layout *l, const void *data, double *v, size_t max);

/* Bytes of a tensor's elements (contiguous size); 0 on overflow. */
uint64_t tensor_bytes(const struct tfd_layout *l);
/* Copy a (maybe strided) tensor to dst as a C-contiguous array. */
void tensor_gather(const struct tfd_layout *l, const void *base, void *dst);

/* "12.0 MiB" */
const char *fmt_bytes(char *buf, size_t len, double bytes);
/* s as a JSON string, quoted; json_chars: its characters only, escaped. */
void json_string(FILE *f, const char *s);
void json_chars(FILE *f, const char *s);
int parse_shape(const char *s, int64_t *shape, int *ndim);
int parse_double(const char *s, double *ret);
int parse_uint(const char *s, uint64_t *ret);
/* An option's unsigned value in [min, max]; says "bad <what>" and returns -1 if not. */
int uint_opt(const char *what, const char *arg, uint64_t min, uint64_t max, uint64_t *ret);

#endif
