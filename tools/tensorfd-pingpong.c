/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-pingpong: how long a tensor takes to reach another process, for a
 * few sizes, beside a plain Unix stream socket copy of the same bytes.
 *
 * tensorfd: for each size the producer allocates one buffer and sends it
 * again and again; the first send, which passes the fd, is reported apart.
 * The consumer takes CLOCK_MONOTONIC when tfd_channel_recv() returns and
 * subtracts the message's timestamp (taken in tfd_channel_send()): the
 * one-way latency. It then touches the first and last byte of the tensor
 * and nothing else (touch mode "transport": what is measured is the
 * handover, not reading the data), drops the message, which releases the
 * buffer, and answers with a message of user bytes only, the latency, on
 * which the producer paces itself; the producer also times that round trip.
 *
 * Socket copy: the producer writes an 8-byte timestamp and then the bytes
 * into a SOCK_STREAM socketpair; the consumer reads all of them into a
 * buffer of its own (faulted in beforehand) and answers with 8 bytes, the
 * one-way latency. Big sizes get fewer rounds.
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
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorfd.h>

#include "toolutil.h"

#define MAX_SIZES	32
#define TIMEOUT_MS	60000
#define KiB		(1ull << 10)
#define MiB		(1ull << 20)
#define GiB		(1ull << 30)

struct options {
	uint64_t sizes[MAX_SIZES];
	unsigned int n_sizes;
	unsigned int iters;	/* 0: by size */
	int cpu[2];		/* producer, consumer; -1: not pinned */
	bool json;
};

/* One side of the benchmark: the channel and the socket to the other. */
struct peer {
	struct tfd_channel *ch;
	int fd;
	const struct options *opt;
};

struct size_result {
	uint64_t size;
	uint64_t first_ns;	/* the send that passed the fd */
	struct summary tfd, rtt, sock;
};

/* --- options ------------------------------------------------------------ */

static int parse_sizes(const char *arg, struct options *opt)
{
	char *copy, *tok, *save;
	int r = 0;

	copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	opt->n_sizes = 0;
	for (tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save)) {
		if (opt->n_sizes == MAX_SIZES)
			r = -E2BIG;
		else
			r = parse_size(tok, &opt->sizes[opt->n_sizes++]);
	}
	free(copy);
	return r == 0 && opt->n_sizes == 0 ? -EINVAL : r;
}

static int parse_cpus(const char *arg, int cpu[2])
{
	char tail;

	if (sscanf(arg, "%d,%d%c", &cpu[0], &cpu[1], &tail) != 2 || cpu[0] < 0 || cpu[1] < 0)
		return -EINVAL;
	return 0;
}

static int parse_iters(const char *arg, unsigned int *iters)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < 1 || v > 10000000)
		return -EINVAL;
	*iters = (unsigned int)v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: tensorfd-pingpong [--sizes LIST] [--iters N] [--cpus A,B] [--json]\n"
		   "  --sizes LIST  comma-separated sizes, suffixes K, M, G (default 64,4K,1M,64M,1G)\n"
		   "  --iters N     sends per size (default 2000 up to 1 MiB, 200 above)\n"
		   "  --cpus A,B    pin the producer to CPU A and the consumer to CPU B\n"
		   "  --json        print JSON instead of a table\n");
}

/* 0: go on; 1: exit 0 (help); -1: usage error, already said. */
static int parse_args(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
		{ "sizes", required_argument, NULL, 's' },
		{ "iters", required_argument, NULL, 'n' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c, r = 0;

	*opt = (struct options){ .sizes = { 64, 4 * KiB, MiB, 64 * MiB, GiB }, .n_sizes = 5,
				 .cpu = { -1, -1 } };
	while (r == 0 && (c = getopt_long(argc, argv, "s:n:c:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			r = parse_sizes(optarg, opt);
			break;
		case 'n':
			r = parse_iters(optarg, &opt->iters);
			break;
		case 'c':
			r = parse_cpus(optarg, opt->cpu);
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
			fprintf(stderr, "tensorfd-pingpong: bad option value '%s'\n", optarg);
	}
	if (r == 0 && optind < argc) {
		usage(stderr);
		r = -1;
	}
	return r < 0 ? -1 : 0;
}

static unsigned int tfd_iters(const struct options *opt, uint64_t size)
{
	if (opt->iters)
		return opt->iters;
	return size <= MiB ? 2000 : 200;
}

/* Copying big tensors takes long: fewer rounds above 64 MiB. */
static unsigned int sock_iters(const struct options *opt, uint64_t size)
{
	unsigned int n = tfd_iters(opt, size);

	return size > 64 * MiB && n > 20 ? 20 : n;
}

/* --- messages and socket I/O ---------------------------------------------- */

/* A message without tensors, its user bytes one number. */
static int send_u64(struct tfd_channel *ch, uint64_t v)
{
	struct tfd_message *m;
	int r;

	r = tfd_message_new(&m);
	if (r < 0)
		return r;
	r = tfd_message_set_user_data(m, &v, sizeof(v));
	if (r == 0)
		r = tfd_channel_send(ch, m);
	tfd_message_unref(m);
	return r;
}

/* when: the clock as the message arrived, before it is dropped (a release). */
static int recv_u64(struct tfd_channel *ch, uint64_t *v, uint64_t *when)
{
	struct tfd_message *m;
	const void *u;
	size_t len;
	int r;

	r = tfd_channel_recv(ch, TIMEOUT_MS, &m);
	if (r < 0)
		return r;
	*when = now_ns();
	u = tfd_message_get_user_data(m, &len);
	if (len == sizeof(*v) && tfd_message_count(m) == 0)
		memcpy(v, u, sizeof(*v));
	else
		r = -EBADMSG;
	tfd_message_unref(m);
	return r;
}

/* readv() or writev() all of iov, resuming after short transfers. */
static int xfer_all(int fd, struct iovec *iov, int n, bool out)
{
	ssize_t done;

	while (n > 0) {
		done = out ? writev(fd, iov, n) : readv(fd, iov, n);
		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			return -errno;
		if (done == 0)
			return -ECONNRESET;
		for (; n > 0 && (size_t)done >= iov->iov_len; iov++, n--)
			done -= (ssize_t)iov->iov_len;
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= (size_t)done;
		}
	}
	return 0;
}

/* An 8-byte header, then (when len) the bytes. */
static int sock_xfer(int fd, uint64_t *hdr, void *data, uint64_t len, bool out)
{
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(*hdr) },
		{ .iov_base = data, .iov_len = len },
	};

	return xfer_all(fd, iov, len ? 2 : 1, out);
}

/* --- statistics --------------------------------------------------------- */

/* --- producer ------------------------------------------------------------- */

/* A new value at both ends for every send, so the consumer sees fresh data. */
static void mark(struct tfd_buffer *buf, unsigned int round)
{
	uint8_t *p = tfd_buffer_data(buf);

	p[0] = p[tfd_buffer_size(buf) - 1] = (uint8_t)(round + 1);
}

static int tfd_rounds(struct peer *p, struct tfd_buffer *buf, struct size_result *res)
{
	unsigned int i, n = tfd_iters(p->opt, res->size);
	int64_t shape = (int64_t)res->size;
	uint64_t *lat, *rtt, t0, t1, oneway = 0;
	struct tfd_layout layout;
	struct tfd_message *m = NULL;
	int r;

	lat = calloc(n, sizeof(*lat));
	rtt = calloc(n, sizeof(*rtt));
	r = lat && rtt ? tfd_message_new(&m) : -ENOMEM;
	if (r == 0)
		r = tfd_layout_init(&layout, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &shape);
	if (r == 0)
		r = tfd_message_add_tensor(m, "tensor", buf, &layout);
	/* Round 0 passes the fd; rounds 1..n only name the buffer. */
	for (i = 0; r == 0 && i <= n; i++) {
		mark(buf, i);
		t0 = now_ns();
		r = tfd_channel_send(p->ch, m);
		if (r == 0)
			r = recv_u64(p->ch, &oneway, &t1);
		if (r < 0)
			break;
		if (i == 0) {
			res->first_ns = oneway;
			continue;
		}
		rtt[i - 1] = t1 - t0;
		lat[i - 1] = oneway;
	}
	if (r == 0) {
		res->tfd = summarize(lat, n);
		res->rtt = summarize(rtt, n);
	}
	tfd_message_unref(m);
	free(lat);
	free(rtt);
	return r;
}

static int sock_rounds(struct peer *p, void *data, struct size_result *res)
{
	unsigned int i, n = sock_iters(p->opt, res->size);
	uint64_t *lat, hdr;
	int r;

	lat = calloc(n, sizeof(*lat));
	if (!lat)
		return -ENOMEM;
	/* The consumer says when its buffer is ready. */
	r = sock_xfer(p->fd, &hdr, NULL, 0, false);
	for (i = 0; r == 0 && i < n; i++) {
		hdr = now_ns();
		r = sock_xfer(p->fd, &hdr, data, res->size, true);
		if (r == 0)
			r = sock_xfer(p->fd, &lat[i], NULL, 0, false);
	}
	if (r == 0)
		res->sock = summarize(lat, n);
	free(lat);
	return r;
}

static int measure_size(struct peer *p, uint64_t size, struct size_result *res)
{
	struct tfd_buffer *buf;
	int r;

	*res = (struct size_result){ .size = size };
	/* Faulted in now, so that the producer's marks never fault in a round. */
	r = tfd_buffer_new(size, TFD_BUFFER_POPULATE, &buf);
	if (r < 0) {
		fprintf(stderr, "tensorfd-pingpong: %s\n", tfd_last_error());
		return r;
	}
	r = tfd_rounds(p, buf, res);
	if (r < 0)
		fprintf(stderr, "tensorfd-pingpong: tensorfd, %llu bytes: %s (%s)\n",
			(unsigned long long)size, strerror(-r), tfd_channel_strerror(p->ch));
	if (r == 0) {
		r = sock_rounds(p, tfd_buffer_data(buf), res);
		if (r < 0)
			fprintf(stderr, "tensorfd-pingpong: socket copy, %llu bytes: %s\n",
				(unsigned long long)size, strerror(-r));
	}
	tfd_buffer_unref(buf);
	return r;
}

/* --- consumer ------------------------------------------------------------- */

/* The transport touch: the first and last byte, which mark() set for this round. */
static bool touch_is_fresh(const struct tfd_message *m, uint64_t size, unsigned int round)
{
	const uint8_t *data = tfd_message_data(m, 0);
	uint8_t want = (uint8_t)(round + 1);

	return data && tfd_buffer_size(tfd_message_buffer(m, 0)) == size && data[0] == want &&
	       data[size - 1] == want;
}

static int tfd_serve(struct peer *p, uint64_t size)
{
	unsigned int i, n = tfd_iters(p->opt, size);
	struct tfd_message *m;
	uint64_t oneway;
	int r;

	for (i = 0; i <= n; i++) {
		r = tfd_channel_recv(p->ch, TIMEOUT_MS, &m);
		if (r < 0)
			return r;
		oneway = now_ns() - tfd_message_timestamp(m);
		r = touch_is_fresh(m, size, i) ? 0 : -EBADMSG;
		tfd_message_unref(m);	/* releases the buffer before the ack goes out */
		if (r == 0)
			r = send_u64(p->ch, oneway);
		if (r < 0)
			return r;
	}
	return 0;
}

static int sock_serve(struct peer *p, uint64_t size)
{
	unsigned int i, n = sock_iters(p->opt, size);
	uint64_t hdr = 0, oneway;
	void *copy;
	int r;

	copy = malloc(size);
	if (!copy)
		return -ENOMEM;
	/* Not 0: the compiler would make malloc + memset a calloc, unfaulted. */
	memset(copy, 0xa5, size);
	r = sock_xfer(p->fd, &hdr, NULL, 0, true);
	for (i = 0; r == 0 && i < n; i++) {
		r = sock_xfer(p->fd, &hdr, copy, size, false);
		oneway = now_ns() - hdr;
		if (r == 0)
			r = sock_xfer(p->fd, &oneway, NULL, 0, true);
	}
	free(copy);
	return r;
}

static int consumer(struct peer *p)
{
	unsigned int i;
	int r = 0;

	for (i = 0; r == 0 && i < p->opt->n_sizes; i++) {
		r = tfd_serve(p, p->opt->sizes[i]);
		if (r == 0)
			r = sock_serve(p, p->opt->sizes[i]);
	}
	if (r < 0)
		fprintf(stderr, "tensorfd-pingpong: consumer: %s (%s)\n", strerror(-r),
			tfd_channel_strerror(p->ch));
	return r < 0 ? 1 : 0;
}

/* --- output --------------------------------------------------------------- */

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

static double ratio(const struct size_result *res)
{
	return (double)res->sock.p50 / (double)(res->tfd.p50 ? res->tfd.p50 : 1);
}

static void print_head(const struct options *opt, const char *backend)
{
	char cpus[64] = "not pinned", json_cpus[32] = "null";

	if (opt->cpu[0] >= 0) {
		snprintf(cpus, sizeof(cpus), "producer on CPU %d, consumer on CPU %d", opt->cpu[0],
			 opt->cpu[1]);
		snprintf(json_cpus, sizeof(json_cpus), "[%d, %d]", opt->cpu[0], opt->cpu[1]);
	}
	if (opt->json) {
		printf("{\"backend\": \"%s\", \"touch\": \"transport\", \"cpus\": %s, "
		       "\"unit\": \"us\", \"results\": [",
		       backend, json_cpus);
		return;
	}
	printf("tensorfd-pingpong: one-way latency, producer to consumer, in microseconds\n"
	       "  notification backend: %s\n"
	       "  touch mode: transport (the consumer reads only the first and last byte)\n"
	       "  cpus: %s\n\n",
	       backend, cpus);
	printf("%6s | %-50s | %-26s | %s\n", "", "tensorfd", "socket copy", "ratio");
	printf("%6s | %5s %8s %8s %8s %8s %9s | %5s %9s %10s | %s\n", "size", "iters", "first",
	       "p50", "p99", "max", "rtt/2 p50", "iters", "p50", "p99", "p50/p50");
}

static void print_row(const struct options *opt, const struct size_result *res, bool first)
{
	char size[32];

	if (opt->json) {
		printf("%s\n  {\"size\": %llu, \"tensorfd\": {\"iters\": %u, \"first_send\": %.3f, "
		       "\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f, \"rtt_half_p50\": %.3f}, "
		       "\"socket_copy\": {\"iters\": %u, \"p50\": %.3f, \"p99\": %.3f, "
		       "\"max\": %.3f}, \"ratio_p50\": %.2f}",
		       first ? "" : ",", (unsigned long long)res->size, res->tfd.n,
		       us(res->first_ns), us(res->tfd.p50), us(res->tfd.p99), us(res->tfd.max),
		       us(res->rtt.p50) / 2, res->sock.n, us(res->sock.p50), us(res->sock.p99),
		       us(res->sock.max), ratio(res));
		return;
	}
	printf("%6s | %5u %8.1f %8.1f %8.1f %8.1f %9.1f | %5u %9.1f %10.1f | %.1fx\n",
	       fmt_size(size, sizeof(size), res->size), res->tfd.n, us(res->first_ns),
	       us(res->tfd.p50), us(res->tfd.p99), us(res->tfd.max), us(res->rtt.p50) / 2,
	       res->sock.n, us(res->sock.p50), us(res->sock.p99), ratio(res));
}

static void print_tail(const struct options *opt)
{
	if (opt->json)
		printf("\n]}\n");
}

static int producer(struct peer *p)
{
	struct size_result res;
	const char *backend;
	unsigned int i;
	int r = 0;

	backend = tfd_channel_backend(p->ch);
	print_head(p->opt, backend ? backend : "unknown");
	for (i = 0; r == 0 && i < p->opt->n_sizes; i++) {
		r = measure_size(p, p->opt->sizes[i], &res);
		if (r == 0)
			print_row(p->opt, &res, i == 0);
		fflush(stdout);
	}
	print_tail(p->opt);
	return r;
}

int main(int argc, char **argv)
{
	struct options opt;
	struct tfd_channel *ch[2];
	struct peer p;
	int sv[2], status, r;
	pid_t pid;

	r = parse_args(argc, argv, &opt);
	if (r)
		return r < 0 ? 2 : 0;
	signal(SIGPIPE, SIG_IGN);	/* a peer that died is an error return, not a kill */
	r = tfd_channel_pair(&ch[0], &ch[1]);
	if (r < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		fprintf(stderr, "tensorfd-pingpong: cannot make the channel and the socket: %s\n",
			r < 0 ? tfd_last_error() : strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("tensorfd-pingpong: fork");
		return 1;
	}
	if (pid == 0) {
		tfd_channel_unref(ch[0]);
		close(sv[0]);
		p = (struct peer){ .ch = ch[1], .fd = sv[1], .opt = &opt };
		r = pin_cpu("tensorfd-pingpong", opt.cpu[1]) < 0 ? 1 : consumer(&p);
		tfd_channel_unref(ch[1]);
		close(sv[1]);
		return r;
	}
	tfd_channel_unref(ch[1]);
	close(sv[1]);
	p = (struct peer){ .ch = ch[0], .fd = sv[0], .opt = &opt };
	r = pin_cpu("tensorfd-pingpong", opt.cpu[0]);
	if (r == 0)
		r = producer(&p);
	/* Closing first wakes a consumer still waiting for something. */
	close(sv[0]);
	tfd_channel_unref(ch[0]);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "tensorfd-pingpong: the consumer failed\n");
		r = -ECHILD;
	}
	return r < 0 ? 1 : 0;
}
