/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-pub: publish test tensors on a topic, so a subscriber can be
 * tried without writing a publisher: generated ones (shape, dtype, random,
 * ramp or constant values) or the arrays of .npy files, at a given rate.
 * Tensors are loaned from the publisher's pool and written in place.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cliutil.h"
#include "npy.h"
#include "toolutil.h"

const char *prog = "tensorfd-pub";

#define MAX_NPY TFD_MAX_TENSORS

enum fill { FILL_RANDOM, FILL_RAMP, FILL_CONST };

struct npy_src {
	const char *path;
	char name[TFD_NAME_MAX];
	struct npy n;
	int fd;
};

static struct npy_src npys[MAX_NPY];
static unsigned int n_npys;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint16_t double_to_half(double v)
{
	uint16_t sign = signbit(v) ? 0x8000 : 0;
	int e;
	double m;

	if (isnan(v))
		return 0x7e00;
	v = fabs(v);
	if (v >= 65520.0)
		return sign | 0x7c00;
	if (v < ldexp(1, -24))
		return sign;
	m = frexp(v, &e);	/* v = m * 2^e, 0.5 <= m < 1 */
	if (e < -13)		/* subnormal */
		return sign | (uint16_t)lrint(ldexp(v, 24));
	return sign | (uint16_t)(((e + 14) << 10) + lrint((m * 2 - 1) * 1024));
}

static void put_element(struct tfd_dtype d, unsigned char *p, double v)
{
	union {
		int8_t i8; int16_t i16; int32_t i32; int64_t i64;
		uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
		float f32; double f64;
	} u;
	size_t n = d.bits / 8;

	switch (d.code) {
	case TFD_INT:
		if (d.bits == 8) u.i8 = (int8_t)v;
		else if (d.bits == 16) u.i16 = (int16_t)v;
		else if (d.bits == 32) u.i32 = (int32_t)v;
		else u.i64 = (int64_t)v;
		break;
	case TFD_UINT:
	case TFD_BOOL:
		if (d.code == TFD_BOOL) v = v != 0;
		if (d.bits == 8) u.u8 = (uint8_t)v;
		else if (d.bits == 16) u.u16 = (uint16_t)v;
		else if (d.bits == 32) u.u32 = (uint32_t)v;
		else u.u64 = (uint64_t)v;
		break;
	case TFD_FLOAT:
		if (d.bits == 16) u.u16 = double_to_half(v);
		else if (d.bits == 32) u.f32 = (float)v;
		else u.f64 = v;
		break;
	case TFD_BFLOAT: {
		float f = (float)v;
		uint32_t w;

		memcpy(&w, &f, sizeof(w));
		u.u16 = (uint16_t)(w >> 16);
		break;
	}
	default: /* complex: the real part, imaginary zero */
		memset(p, 0, n);
		if (d.bits == 64) {
			float f = (float)v;

			memcpy(p, &f, sizeof(f));
		} else {
			memcpy(p, &v, sizeof(v));
		}
		return;
	}
	memcpy(p, &u, n);
}

static void fill(const struct tfd_layout *l, void *data, enum fill how, double value)
{
	size_t esz = l->dtype.bits / 8, i, count = tensor_bytes(l) / (esz ? esz : 1);
	unsigned char *p = data;
	bool is_float = l->dtype.code == TFD_FLOAT || l->dtype.code == TFD_BFLOAT ||
			l->dtype.code == TFD_COMPLEX;

	if (how == FILL_CONST && count) {
		/* one element, then doubling copies: memcpy speed for big tensors */
		put_element(l->dtype, p, value);
		for (i = 1; i < count; i *= 2)
			memcpy(p + i * esz, p, (i < count - i ? i : count - i) * esz);
		return;
	}
	for (i = 0; i < count; i++, p += esz) {
		double v = value;

		if (how == FILL_RAMP)
			v = (double)i;
		else if (how == FILL_RANDOM)
			v = is_float ? (next_random() >> 11) * 0x1.0p-53 : (double)(next_random() & 0x7f);
		put_element(l->dtype, p, v);
	}
}

struct gen {
	const char *name;
	struct tfd_dtype dtype;
	int ndim;
	int64_t shape[TFD_MAX_NDIM];
	int n_strides;			/* -1: C order */
	int64_t strides[TFD_MAX_NDIM];
	enum fill how;
	double value;
};

/*
 * With --strides the tensor is a view (a broadcast when a stride is 0): the
 * buffer holds its span, filled as if it were a dense vector.
 */
static int add_generated(struct tfd_publisher *pub, struct tfd_message *m, const struct gen *g)
{
	struct tfd_layout l, dense;
	struct tfd_buffer *b;
	uint64_t lo, hi;
	int64_t n;
	int r;

	if (g->n_strides < 0) {
		r = tfd_publisher_loan_tensor(pub, g->dtype, g->ndim, g->shape, &b, &l);
		if (r < 0)
			return report(r, "loaning a tensor");
		fill(&l, tfd_buffer_data(b), g->how, g->value);
	} else {
		r = tfd_layout_init(&l, g->dtype, g->ndim, g->shape);
		if (r == 0) {
			memcpy(l.strides, g->strides, sizeof(l.strides));
			r = tfd_layout_span(&l, &lo, &hi);
		}
		if (r < 0)
			return report(r, "shape and strides");
		r = tfd_publisher_loan(pub, hi ? hi : 1, &b);
		if (r < 0)
			return report(r, "loaning %llu bytes", (unsigned long long)hi);
		n = (int64_t)(hi / ((uint64_t)g->dtype.bits * g->dtype.lanes / 8));
		tfd_layout_init(&dense, g->dtype, 1, &n);
		fill(&dense, tfd_buffer_data(b), g->how, g->value);
	}
	r = tfd_message_add_tensor(m, g->name, b, &l);
	tfd_buffer_unref(b);
	return r < 0 ? report(r, "adding tensor %s", g->name) : 0;
}

static int add_npy(struct tfd_publisher *pub, struct tfd_message *m, const struct npy_src *s)
{
	uint64_t done = 0;
	struct tfd_buffer *b;
	struct tfd_layout l;
	ssize_t n;
	int r;

	r = tfd_publisher_loan(pub, s->n.data_bytes ? s->n.data_bytes : 1, &b);
	if (r < 0)
		return report(r, "loaning %llu bytes", (unsigned long long)s->n.data_bytes);
	while (done < s->n.data_bytes) {
		n = pread(s->fd, (char *)tfd_buffer_data(b) + done, s->n.data_bytes - done,
			  (off_t)(s->n.data_offset + done));
		if (n <= 0) {
			tfd_buffer_unref(b);
			fprintf(stderr, "%s: reading %s: %s\n", prog, s->path,
				n < 0 ? strerror(errno) : "file shrank");
			return EXIT_FAIL;
		}
		done += (uint64_t)n;
	}
	npy_layout(&s->n, &l);
	r = tfd_message_add_tensor(m, s->name, b, &l);
	tfd_buffer_unref(b);
	return r < 0 ? report(r, "adding tensor %s from %s", s->name, s->path) : 0;
}

static int open_npy(const char *arg)
{
	struct npy_src *s = &npys[n_npys];
	const char *eq = strchr(arg, '='), *base;
	char err[256];
	size_t len;
	int r;

	if (n_npys == MAX_NPY) {
		fprintf(stderr, "%s: at most %d tensors per message\n", prog, MAX_NPY);
		return EXIT_USAGE;
	}
	/* NAME=FILE, or FILE named after its base name without .npy */
	if (eq) {
		len = (size_t)(eq - arg);
		s->path = eq + 1;
		base = arg;
	} else {
		s->path = arg;
		base = strrchr(arg, '/') ? strrchr(arg, '/') + 1 : arg;
		len = strlen(base);
		if (len > 4 && strcmp(base + len - 4, ".npy") == 0)
			len -= 4;
	}
	if (len == 0 || len >= TFD_NAME_MAX) {
		fprintf(stderr, "%s: tensor name for %s is empty or too long\n", prog, arg);
		return EXIT_USAGE;
	}
	memcpy(s->name, base, len);
	s->name[len] = '\0';
	r = npy_open(s->path, &s->n, &s->fd, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return r == -ENOENT ? EXIT_FAIL : EXIT_USAGE;
	}
	n_npys++;
	return 0;
}

/* Dispatch until the deadline (UINT64_MAX: until cond holds) or a signal. */
static int serve_until(struct tfd_publisher *pub, uint64_t deadline)
{
	uint64_t now;
	int r;

	while (!stop_requested && (now = now_ns()) < deadline) {
		r = tfd_publisher_dispatch(pub, (int)((deadline - now + 999999) / 1000000));
		if (r < 0 && r != -EINTR)
			return report(r, "serving subscribers");
	}
	return 0;
}

static uint64_t subscribers(struct tfd_publisher *pub)
{
	struct tfd_publisher_stats st;

	tfd_publisher_get_stats(pub, &st);
	return st.subscribers;
}

static bool queues_empty(struct tfd_publisher *pub)
{
	struct tfd_subscriber_info si;
	unsigned int i;

	for (i = 0; tfd_publisher_get_subscriber(pub, i, &si) == 0; i++)
		if (si.queued)
			return false;
	return true;
}

/* CPU time of this process (publishing, filling and serving) per message. */
static void say_cpu(uint64_t sent, uint64_t wall_ns)
{
	struct rusage ru;
	double user, sys;

	getrusage(RUSAGE_SELF, &ru);
	user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
	sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	fprintf(stderr, "%s: %llu messages in %.3f s, CPU %.2f us per message (user %.3f s, sys %.3f s)\n",
		prog, (unsigned long long)sent, wall_ns / 1e9,
		sent ? (user + sys) * 1e6 / (double)sent : 0.0, user, sys);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [options] TOPIC\n"
		   "Publish test tensors on TOPIC.\n"
		   "  -s, --shape DIMS       shape of the generated tensor, e.g. 480,640,3 (4)\n"
		   "  -t, --strides DIMS     element strides of the generated tensor, 0 to broadcast\n"
		   "  -d, --dtype TYPE       f32 f64 f16 bf16 i8..i64 u8..u64 bool c64 c128 (f32),\n"
		   "                         TYPExN for N lanes\n"
		   "  -f, --fill HOW         random, ramp (0, 1, 2, ...) or a number (random)\n"
		   "  -N, --name NAME        name of the generated tensor (data)\n"
		   "  -F, --npy [NAME=]FILE  publish the array of a .npy file instead (repeatable)\n"
		   "  -r, --rate HZ          messages per second, 0 for as fast as possible (10)\n"
		   "  -n, --count N          stop after N messages\n"
		   "  -1, --once             publish one message\n"
		   "  -l, --latched          a subscriber that attaches later gets the last message\n"
		   "  -S, --wait-subscribers N  wait for N subscribers before the first message\n"
		   "  -L, --linger MS        after the last message, serve subscribers so long (1000)\n"
		   "  -u, --allow-uid UID    only this uid may subscribe (repeatable)\n"
		   "  -B, --block            wait for slow subscribers instead of dropping for them\n"
		   "  -v, --verbose          at the end, messages sent and CPU time per message\n"
		   "  -h, --help             this text\n"
		   "Exit: 0 done or interrupted, 2 usage, 4 permission denied, 1 other errors.\n",
		prog);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "shape", required_argument, NULL, 's' },
		{ "strides", required_argument, NULL, 't' },
		{ "dtype", required_argument, NULL, 'd' },
		{ "fill", required_argument, NULL, 'f' },
		{ "name", required_argument, NULL, 'N' },
		{ "npy", required_argument, NULL, 'F' },
		{ "rate", required_argument, NULL, 'r' },
		{ "count", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, '1' },
		{ "latched", no_argument, NULL, 'l' },
		{ "wait-subscribers", required_argument, NULL, 'S' },
		{ "linger", required_argument, NULL, 'L' },
		{ "allow-uid", required_argument, NULL, 'u' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "block", no_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct gen g = { .name = "data", .dtype = { TFD_FLOAT, 32, 1 }, .ndim = 1,
			 .shape = { 4 }, .n_strides = -1, .how = FILL_RANDOM };
	uint64_t count = 0, sent = 0, want_subs = 0, linger = 1000, start, next, uid;
	uint32_t uids[16];
	unsigned int n_uids = 0;
	double rate = 10;
	unsigned int flags = 0, i;
	bool verbose = false, block = false;
	struct tfd_publisher *pub;
	struct tfd_message *m;
	const char *topic;
	int c, r, rc = EXIT_OK;

	while ((c = getopt_long(argc, argv, "s:t:d:f:N:F:r:n:1lS:L:u:Bvh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_shape(optarg, g.shape, &g.ndim) < 0) {
				fprintf(stderr, "%s: bad shape '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			break;
		case 't':
			if (parse_shape(optarg, g.strides, &g.n_strides) < 0) {
				fprintf(stderr, "%s: bad strides '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd':
			if (dtype_parse(optarg, &g.dtype) < 0) {
				fprintf(stderr, "%s: unknown dtype '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			break;
		case 'f':
			if (strcmp(optarg, "random") == 0) {
				g.how = FILL_RANDOM;
			} else if (strcmp(optarg, "ramp") == 0) {
				g.how = FILL_RAMP;
			} else if (parse_double(optarg, &g.value) == 0) {
				g.how = FILL_CONST;
			} else {
				fprintf(stderr, "%s: bad fill '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			break;
		case 'N':
			g.name = optarg;
			break;
		case 'F':
			r = open_npy(optarg);
			if (r)
				return r;
			break;
		case 'r':
			if (parse_double(optarg, &rate) < 0 || rate < 0 || rate > 1e7) {
				fprintf(stderr, "%s: bad rate '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			break;
		case 'n':
			if (uint_opt("count", optarg, 1, UINT64_MAX, &count) < 0)
				return EXIT_USAGE;
			break;
		case '1':
			count = 1;
			break;
		case 'l':
			flags |= TFD_PUBLISHER_LATCHED;
			break;
		case 'S':
			if (uint_opt("subscriber count", optarg, 0, UINT64_MAX, &want_subs) < 0)
				return EXIT_USAGE;
			break;
		case 'L':
			if (uint_opt("linger", optarg, 0, INT_MAX, &linger) < 0)
				return EXIT_USAGE;
			break;
		case 'u':
			if (parse_uint(optarg, &uid) < 0 || uid > UINT32_MAX || n_uids == 16) {
				fprintf(stderr, "%s: bad or too many uids '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			uids[n_uids++] = (uint32_t)uid;
			break;
		case 'v':
			verbose = true;
			break;
		case 'B':
			block = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	topic = argv[optind];
	if (g.n_strides >= 0 && (g.n_strides != g.ndim || n_npys)) {
		fprintf(stderr, "%s: --strides needs one stride per dimension of --shape\n", prog);
		return EXIT_USAGE;
	}
	catch_signals();
	r = tfd_publisher_new(topic, flags, &pub);
	if (r == -EINVAL) {
		fprintf(stderr, "%s: %s\n", prog, tfd_last_error());
		return EXIT_USAGE;
	}
	if (r < 0)
		return report(r, "publishing %s", topic);
	for (i = 0; i < n_uids; i++)
		tfd_publisher_allow_uid(pub, uids[i]);
	/* lossless: publish waits for the slowest subscriber */
	if (block)
		tfd_publisher_set_queue(pub, 16, TFD_BLOCK, -1);
	while (!stop_requested && subscribers(pub) < want_subs)
		tfd_publisher_dispatch(pub, 100);
	start = now_ns();
	next = start;
	while (!stop_requested && (!count || sent < count)) {
		r = tfd_message_new(&m);
		if (r < 0) {
			rc = report(r, "message");
			break;
		}
		for (i = 0; i < n_npys && rc == EXIT_OK; i++)
			rc = add_npy(pub, m, &npys[i]);
		if (!n_npys && rc == EXIT_OK)
			rc = add_generated(pub, m, &g);
		if (rc == EXIT_OK) {
			r = tfd_publisher_publish(pub, m);
			if (r < 0)
				rc = report(r, "publishing on %s", topic);
		}
		tfd_message_unref(m);
		if (rc != EXIT_OK)
			break;
		sent++;
		if (rate > 0) {
			next = start + (uint64_t)(sent * 1e9 / rate);
			if (!count || sent < count)
				rc = serve_until(pub, next);
		} else {
			tfd_publisher_dispatch(pub, 0);
		}
		if (rc != EXIT_OK)
			break;
	}
	if (verbose)
		say_cpu(sent, now_ns() - start);
	/* what still waits in a subscriber's queue goes out before we leave */
	next = now_ns() + linger * 1000000;
	while (!stop_requested && !queues_empty(pub) && now_ns() < next)
		tfd_publisher_dispatch(pub, 10);
	tfd_publisher_unref(pub);
	for (i = 0; i < n_npys; i++)
		close(npys[i].fd);
	return rc;
}
