/* SPDX-License-Identifier: MIT */
/* Shared by the topic tools; see cliutil.h. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cliutil.h"

volatile int stop_requested;

int exit_code_of(int err)
{
	switch (-err) {
	case ENOENT:
	case ECONNREFUSED:
		return EXIT_NOTOPIC;
	case EACCES:
	case EPERM:
		return EXIT_DENIED;
	case ETIMEDOUT:
		return EXIT_TIMEOUT;
	case ECONNRESET:
	case EPIPE:
		return EXIT_GONE;
	default:
		return EXIT_FAIL;
	}
}

int report(int err, const char *fmt, ...)
{
	const char *why = tfd_last_error();
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", why && *why ? why : strerror(-err));
	return exit_code_of(err);
}

int topic_probe(const char *topic, bool wait)
{
	struct tfd_topic_info *info;
	int r;

	r = tfd_topic_query(topic, 2000, &info);
	if (r == 0) {
		tfd_topic_info_free(info);
		return 0;
	}
	if ((r == -ENOENT || r == -ECONNREFUSED) && wait)
		return 0;
	/* an older publisher or a slow one: subscribing will tell */
	if (r == -EPROTONOSUPPORT || r == -ETIMEDOUT)
		return 0;
	if (r == -ENOENT)
		return report(r, "no such topic %s", topic);
	if (r == -ECONNREFUSED)
		return report(r, "topic %s has no publisher", topic);
	if (r == -EACCES)
		return report(r, "topic %s: permission denied", topic);
	return report(r, "topic %s", topic);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

void catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

struct dtype_row {
	const char *name, *alias, *st;
	struct tfd_dtype d;
};

static const struct dtype_row dtypes[] = {
	{ "bool", "bool", "BOOL", { TFD_BOOL, 8, 1 } },
	{ "u8", "uint8", "U8", { TFD_UINT, 8, 1 } },
	{ "u16", "uint16", "U16", { TFD_UINT, 16, 1 } },
	{ "u32", "uint32", "U32", { TFD_UINT, 32, 1 } },
	{ "u64", "uint64", "U64", { TFD_UINT, 64, 1 } },
	{ "i8", "int8", "I8", { TFD_INT, 8, 1 } },
	{ "i16", "int16", "I16", { TFD_INT, 16, 1 } },
	{ "i32", "int32", "I32", { TFD_INT, 32, 1 } },
	{ "i64", "int64", "I64", { TFD_INT, 64, 1 } },
	{ "f16", "float16", "F16", { TFD_FLOAT, 16, 1 } },
	{ "f32", "float32", "F32", { TFD_FLOAT, 32, 1 } },
	{ "f64", "float64", "F64", { TFD_FLOAT, 64, 1 } },
	{ "bf16", "bfloat16", "BF16", { TFD_BFLOAT, 16, 1 } },
	{ "c64", "complex64", "C64", { TFD_COMPLEX, 64, 1 } },
	{ "c128", "complex128", "C128", { TFD_COMPLEX, 128, 1 } },
};

static bool same_dtype(struct tfd_dtype a, struct tfd_dtype b)
{
	return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes;
}

const char *dtype_name(struct tfd_dtype d, char *buf, size_t len)
{
	struct tfd_dtype one = d;
	size_t i;

	one.lanes = 1;
	for (i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (same_dtype(dtypes[i].d, one)) {
			if (d.lanes == 1)
				return dtypes[i].name;
			snprintf(buf, len, "%sx%u", dtypes[i].name, d.lanes);
			return buf;
		}
	snprintf(buf, len, "code%u:%u:%u", d.code, d.bits, d.lanes);
	return buf;
}

/* A name of the table, or one with "xN" after it for N lanes (as dtype_name writes it). */
int dtype_parse(const char *s, struct tfd_dtype *d)
{
	const char *x = strrchr(s, 'x');
	char one[16];
	uint64_t lanes = 1;
	size_t i, len = strlen(s);

	if (x && x[1] >= '0' && x[1] <= '9') {
		if (parse_uint(x + 1, &lanes) < 0 || lanes == 0 || lanes > UINT16_MAX)
			return -EINVAL;
		len = (size_t)(x - s);
	}
	if (len >= sizeof(one))
		return -EINVAL;
	memcpy(one, s, len);
	one[len] = '\0';
	for (i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (strcmp(one, dtypes[i].name) == 0 || strcmp(one, dtypes[i].alias) == 0) {
			*d = dtypes[i].d;
			d->lanes = (uint16_t)lanes;
			return 0;
		}
	return -EINVAL;
}

const char *dtype_st_name(struct tfd_dtype d)
{
	size_t i;

	for (i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (same_dtype(dtypes[i].d, d))
			return dtypes[i].st;
	return NULL;
}

int dtype_st_parse(const char *s, struct tfd_dtype *d)
{
	size_t i;

	for (i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (strcmp(s, dtypes[i].st) == 0) {
			*d = dtypes[i].d;
			return 0;
		}
	return -EINVAL;
}

static double half_to_double(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v;

	if (e == 0)
		v = ldexp(m, -24);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(m + 1024, e - 25);
	return h & 0x8000 ? -v : v;
}

/*
 * One element as a double; false if the dtype has no such reading. Only
 * the widths read below are copied: a peer's dtype may claim any width.
 */
static bool element(struct tfd_dtype d, const unsigned char *p, double *v)
{
	union {
		int8_t i8; int16_t i16; int32_t i32; int64_t i64;
		uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
		float f32; double f64;
	} u;

	if (d.lanes != 1 || (d.bits != 8 && d.bits != 16 && d.bits != 32 && d.bits != 64))
		return false;
	memcpy(&u, p, d.bits / 8);
	switch (d.code) {
	case TFD_INT:
		*v = d.bits == 8 ? u.i8 : d.bits == 16 ? u.i16 : d.bits == 32 ? u.i32 : (double)u.i64;
		return true;
	case TFD_UINT:
	case TFD_BOOL:
		*v = d.bits == 8 ? u.u8 : d.bits == 16 ? u.u16 : d.bits == 32 ? u.u32 : (double)u.u64;
		return true;
	case TFD_FLOAT:
		if (d.bits == 16)
			*v = half_to_double(u.u16);
		else if (d.bits == 32)
			*v = u.f32;
		else if (d.bits == 64)
			*v = u.f64;
		else
			return false;
		return true;
	case TFD_BFLOAT: {
		uint32_t w = (uint32_t)u.u16 << 16;
		float f;

		memcpy(&f, &w, sizeof(f));
		*v = f;
		return d.bits == 16;
	}
	default:
		return false;
	}
}

static uint64_t count_of(const struct tfd_layout *l)
{
	uint64_t n = 1;
	int i;

	for (i = 0; i < l->ndim; i++)
		n *= (uint64_t)l->shape[i];
	return n;
}

/*
 * Visit the elements in C order, fn(base + its byte offset), at most max of
 * them; with interruptible, stop early when a signal asked the tool to
 * stop. Returns how many were visited.
 */
static uint64_t for_each(const struct tfd_layout *l, const void *base, uint64_t max,
			 bool interruptible, void (*fn)(const unsigned char *p, void *arg),
			 void *arg)
{
	int64_t idx[TFD_MAX_NDIM] = { 0 };
	size_t esz = (size_t)l->dtype.bits * l->dtype.lanes / 8;
	uint64_t n = count_of(l), k;
	int64_t off;
	int i;

	if (n > max)
		n = max;
	for (k = 0; k < n; k++) {
		if (interruptible && (k & 0xffff) == 0xffff && stop_requested)
			return k;
		off = 0;
		for (i = 0; i < l->ndim; i++)
			off += idx[i] * l->strides[i];
		fn((const unsigned char *)base + l->byte_offset + off * (int64_t)esz, arg);
		for (i = l->ndim - 1; i >= 0; i--) {
			if (++idx[i] < l->shape[i])
				break;
			idx[i] = 0;
		}
	}
	return n;
}

struct stats_arg {
	struct tfd_dtype d;
	struct tensor_stats *st;
};

static void stats_one(const unsigned char *p, void *arg)
{
	struct stats_arg *a = arg;
	double v;

	if (!element(a->d, p, &v))
		return;
	if (isnan(v)) {
		a->st->nan++;
		return;
	}
	if (a->st->n == 0 || v < a->st->min)
		a->st->min = v;
	if (a->st->n == 0 || v > a->st->max)
		a->st->max = v;
	a->st->sum += v;
	a->st->n++;
}

/*
 * A dimension of stride 0 repeats the same elements: it is dropped from the
 * walk and its extent multiplies what the walk counted, so a broadcast of
 * 2^60 elements costs one. What still aliases (overlapping strides) is
 * walked only as far as a dense tensor of the same span would be.
 */
void tensor_stats(const struct tfd_layout *l, const void *data, struct tensor_stats *st)
{
	struct stats_arg a = { l->dtype, st };
	struct tfd_layout w = *l;
	uint64_t lo, hi, esz, times = 1, walk, max;
	unsigned char zero[16] = { 0 };
	double v;
	int i, k;

	memset(st, 0, sizeof(*st));
	st->numeric = data && element(l->dtype, zero, &v) && tfd_layout_span(l, &lo, &hi) == 0;
	st->total = count_of(l);
	if (!st->numeric || st->total == 0)
		return;
	for (i = 0, k = 0; i < l->ndim; i++) {
		if (l->strides[i] == 0) {
			times *= (uint64_t)l->shape[i];
			continue;
		}
		w.shape[k] = l->shape[i];
		w.strides[k++] = l->strides[i];
	}
	w.ndim = k;
	esz = (uint64_t)l->dtype.bits / 8;
	max = (hi - lo) / esz;
	walk = count_of(&w);
	st->walked = for_each(&w, data, max, true, stats_one, &a);
	if (st->walked == walk) {
		st->walked = st->total;
		st->n *= times;
		st->nan *= times;
		st->sum *= (double)times;
	}
}
struct values_arg {
	struct tfd_dtype d;
	double *v;
	size_t n;
};

static void value_one(const unsigned char *p, void *arg)
{
	struct values_arg *a = arg;

	element(a->d, p, &a->v[a->n++]);
}

size_t tensor_values(const struct tfd_layout *l, const void *data, double *v, size_t max)
{
	struct values_arg a = { l->dtype, v, 0 };
	unsigned char zero[16] = { 0 };
	uint64_t lo, hi;
	double x;

	if (!data || !element(l->dtype, zero, &x) || tfd_layout_span(l, &lo, &hi) < 0)
		return 0;
	/* the first max elements in index order: never more than were asked for */
	for_each(l, data, max, false, value_one, &a);
	return a.n;
}

uint64_t tensor_bytes(const struct tfd_layout *l)
{
	uint64_t n = 0;

	return tfd_layout_nbytes(l, &n) < 0 ? 0 : n;
}

struct gather_arg {
	unsigned char *dst;
	size_t esz;
};

static void gather_one(const unsigned char *p, void *arg)
{
	struct gather_arg *a = arg;

	memcpy(a->dst, p, a->esz);
	a->dst += a->esz;
}

void tensor_gather(const struct tfd_layout *l, const void *base, void *dst)
{
	struct gather_arg a = { dst, (size_t)l->dtype.bits * l->dtype.lanes / 8 };

	if (tfd_layout_is_contiguous(l)) {
		memcpy(dst, (const char *)base + l->byte_offset, tensor_bytes(l));
		return;
	}
	/* bounded by the caller: a dense copy no larger than the span */
	for_each(l, base, UINT64_MAX, false, gather_one, &a);
}

void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	json_chars(f, s);
	fputc('"', f);
}

void json_chars(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
}

int parse_shape(const char *s, int64_t *shape, int *ndim)
{
	char *end;
	int n = 0;

	if (strcmp(s, "") == 0 || strcmp(s, "scalar") == 0) {
		*ndim = 0;
		return 0;
	}
	for (;;) {
		long long v;

		if (n == TFD_MAX_NDIM)
			return -E2BIG;
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno || end == s || v < 0)
			return -EINVAL;
		shape[n++] = v;
		if (*end == '\0')
			break;
		if (*end != ',' && *end != 'x')
			return -EINVAL;
		s = end + 1;
	}
	*ndim = n;
	return 0;
}

int parse_double(const char *s, double *ret)
{
	char *end;

	errno = 0;
	*ret = strtod(s, &end);
	return errno || end == s || *end ? -EINVAL : 0;
}

int uint_opt(const char *what, const char *arg, uint64_t min, uint64_t max, uint64_t *ret)
{
	uint64_t v;

	if (parse_uint(arg, &v) < 0 || v < min || v > max) {
		fprintf(stderr, "%s: bad %s '%s'\n", prog, what, arg);
		return -1;
	}
	*ret = v;
	return 0;
}

int parse_uint(const char *s, uint64_t *ret)
{
	char *end;

	if (*s == '-')
		return -EINVAL;
	errno = 0;
	*ret = strtoull(s, &end, 10);
	return errno || end == s || *end ? -EINVAL : 0;
}

const char *fmt_bytes(char *buf, size_t len, double bytes)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned int i = 0;

	while (bytes >= 1024 && i < 4) {
		bytes /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%.0f B", bytes);
	else
		snprintf(buf, len, "%.1f %s", bytes, unit[i]);
	return buf;
}
