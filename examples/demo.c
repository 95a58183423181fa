/* SPDX-License-Identifier: MIT */
/*
 * demo: hand a big tensor (1 GiB unless --size says otherwise) from one
 * process to another with tensorfd, then copy the same bytes through a Unix
 * stream socket, and show how long each took.
 *
 * tensorfd: the producer fills a buffer once and sends it; the first send
 * passes the memfd and the consumer maps it, later sends of the same buffer
 * only name it. Each is timed from the send's CLOCK_MONOTONIC timestamp to
 * the consumer's clock when tfd_channel_recv() returns. The consumer then
 * reads and checks every 64-bit word: that is reading 1 GiB, not transport,
 * so it is shown apart.
 *
 * Socket copy: the producer write()s the same bytes into a SOCK_STREAM
 * socketpair, the consumer read()s them into its own (prefaulted) buffer;
 * timed from the first write to the last byte read, then checked too.
 *
 * The consumer measures; its numbers come back in the user bytes of a last
 * message. Exit status 0 only when both copies of the content are right.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorfd.h>

#define REPEATS		100	/* steady-state sends of the same buffer */
#define TIMEOUT_MS	60000
#define SEED		0x74656e736f726664ull
#define MiB		(1ull << 20)
#define GiB		(1ull << 30)

/* What the consumer measured, sent back as the user bytes of a message. */
struct result {
	uint64_t first_ns;	/* first send: fd passing + mmap */
	uint64_t repeat_ns;	/* median of the sends of the same buffer again */
	uint64_t check_ns;	/* reading and checking the shared tensor */
	uint64_t bad_words;
	uint64_t copy_ns;	/* socket: first write to last byte read */
	uint64_t copy_check_ns;
	uint64_t copy_bad_words;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* "1G", "64M", "4096": bytes, with binary K/M/G suffixes. */
static int parse_size(const char *s, uint64_t *ret)
{
	static const char units[] = "KMG";
	const char *u;
	unsigned long long v;
	unsigned int shift = 0;
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
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*ret = (uint64_t)v << shift;
	return 0;
}

static const char *fmt_time(char *buf, size_t len, uint64_t ns)
{
	if (ns < 1000000)
		snprintf(buf, len, "%8.1f us", (double)ns / 1e3);
	else if (ns < 10000000000ull)
		snprintf(buf, len, "%8.1f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%8.2f s ", (double)ns / 1e9);
	return buf;
}

static const char *fmt_size(char *buf, size_t len, uint64_t size)
{
	if (size % GiB == 0)
		snprintf(buf, len, "%llu GiB", (unsigned long long)(size / GiB));
	else if (size % MiB == 0)
		snprintf(buf, len, "%llu MiB", (unsigned long long)(size / MiB));
	else
		snprintf(buf, len, "%llu bytes", (unsigned long long)size);
	return buf;
}

static uint64_t pattern(uint64_t i)
{
	return (i * 0x9e3779b97f4a7c15ull) ^ SEED;
}

static void fill(uint64_t *w, uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		w[i] = pattern(i);
}

static uint64_t count_bad(const uint64_t *w, uint64_t n)
{
	uint64_t i, bad = 0;

	for (i = 0; i < n; i++)
		bad += w[i] != pattern(i);
	return bad;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A message without tensors: an acknowledgement, or the results. */
static int send_note(struct tfd_channel *ch, const void *data, size_t len)
{
	struct tfd_message *m;
	int r;

	r = tfd_message_new(&m);
	if (r < 0)
		return r;
	r = tfd_message_set_user_data(m, data, len);
	if (r == 0)
		r = tfd_channel_send(ch, m);
	tfd_message_unref(m);
	return r;
}

static int recv_note(struct tfd_channel *ch, void *data, size_t len)
{
	struct tfd_message *m;
	const void *u;
	size_t ulen;
	int r;

	r = tfd_channel_recv(ch, TIMEOUT_MS, &m);
	if (r < 0)
		return r;
	u = tfd_message_get_user_data(m, &ulen);
	if (ulen == len && tfd_message_count(m) == 0)
		memcpy(data, u, len);
	else
		r = -EBADMSG;
	tfd_message_unref(m);
	return r;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	ssize_t n;

	while (len) {
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Receive the tensor and note how long it took since the send. */
static int recv_tensor(struct tfd_channel *ch, uint64_t size, struct tfd_message **ret,
		       uint64_t *lat)
{
	struct tfd_message *m;
	int r;

	r = tfd_channel_recv(ch, TIMEOUT_MS, &m);
	if (r < 0)
		return r;
	*lat = now_ns() - tfd_message_timestamp(m);
	if (tfd_message_count(m) != 1 || tfd_buffer_size(tfd_message_buffer(m, 0)) != size) {
		tfd_message_unref(m);
		return -EBADMSG;
	}
	*ret = m;
	return 0;
}

/* Dropping the message releases the buffer; that goes out before the ack. */
static int release_and_ack(struct tfd_channel *ch, struct tfd_message *m)
{
	uint64_t ack = 1;

	tfd_message_unref(m);
	return send_note(ch, &ack, sizeof(ack));
}

/* Consumer, tensorfd: the first send, the content check, then the repeats. */
static int consume_shared(struct tfd_channel *ch, uint64_t size, struct result *res)
{
	uint64_t lat[REPEATS], t;
	struct tfd_message *m;
	int i, r;

	r = recv_tensor(ch, size, &m, &res->first_ns);
	if (r < 0)
		return r;
	t = now_ns();
	res->bad_words = count_bad(tfd_message_data(m, 0), size / 8);
	res->check_ns = now_ns() - t;
	r = release_and_ack(ch, m);
	for (i = 0; r == 0 && i < REPEATS; i++) {
		r = recv_tensor(ch, size, &m, &lat[i]);
		if (r == 0)
			r = release_and_ack(ch, m);
	}
	if (r < 0)
		return r;
	qsort(lat, REPEATS, sizeof(lat[0]), cmp_u64);
	res->repeat_ns = lat[REPEATS / 2];
	return 0;
}

/* Consumer, socket copy: into a buffer of its own, faulted in beforehand. */
static int consume_copy(int fd, uint64_t *copy, uint64_t size, struct result *res)
{
	uint64_t t0, t1;
	int r;

	r = read_all(fd, &t0, sizeof(t0));
	if (r == 0)
		r = read_all(fd, copy, size);
	if (r < 0)
		return r;
	t1 = now_ns();
	res->copy_ns = t1 - t0;
	res->copy_bad_words = count_bad(copy, size / 8);
	res->copy_check_ns = now_ns() - t1;
	return 0;
}

/*
 * The buffer for the socket copy is faulted in while the producer fills its
 * tensor; "ready" then tells the producer that the consumer waits.
 */
static int consumer(struct tfd_channel *ch, int fd, uint64_t size)
{
	struct result res = { 0 };
	uint64_t *copy;
	char ready = 1;
	int r;

	copy = malloc(size);
	if (!copy) {
		fprintf(stderr, "demo: consumer: no memory for a copy of %llu bytes\n",
			(unsigned long long)size);
		return 1;
	}
	/* Not 0: the compiler would turn malloc + memset into calloc, leaving it unfaulted. */
	memset(copy, 0xa5, size);
	r = write_all(fd, &ready, 1);
	if (r == 0)
		r = consume_shared(ch, size, &res);
	if (r == 0)
		r = consume_copy(fd, copy, size, &res);
	if (r == 0)
		r = send_note(ch, &res, sizeof(res));
	if (r < 0)
		fprintf(stderr, "demo: consumer: %s\n", strerror(-r));
	free(copy);
	return r < 0 ? 1 : 0;
}

/* Producer, tensorfd: one buffer, sent 1 + REPEATS times, each acknowledged. */
static int produce_shared(struct tfd_channel *ch, struct tfd_buffer *buf)
{
	int64_t words = (int64_t)(tfd_buffer_size(buf) / 8);
	struct tfd_layout layout;
	struct tfd_message *m;
	uint64_t ack;
	int i, r;

	r = tfd_layout_init(&layout, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &words);
	if (r < 0)
		return r;
	r = tfd_message_new(&m);
	if (r < 0)
		return r;
	r = tfd_message_add_tensor(m, "data", buf, &layout);
	for (i = 0; r == 0 && i < 1 + REPEATS; i++) {
		r = tfd_channel_send(ch, m);
		if (r == 0)
			r = recv_note(ch, &ack, sizeof(ack));
	}
	tfd_message_unref(m);
	return r;
}

/* Producer, socket copy: a timestamp, then the bytes. */
static int produce_copy(int fd, const void *data, uint64_t size)
{
	uint64_t t0 = now_ns();
	int r;

	r = write_all(fd, &t0, sizeof(t0));
	if (r == 0)
		r = write_all(fd, data, size);
	return r;
}

static void row(const char *what, uint64_t ns)
{
	char t[32];

	printf("  %-56s %s\n", what, fmt_time(t, sizeof(t), ns));
}

static void report(const struct result *res, uint64_t size, const char *backend,
		   uint64_t fds_sent)
{
	char s[32], what[80];

	printf("tensorfd demo: %s handed to another process (notification backend %s)\n\n",
	       fmt_size(s, sizeof(s), size), backend ? backend : "?");
	row("tensorfd, first send (fd passing + mmap)", res->first_ns);
	snprintf(what, sizeof(what), "tensorfd, same buffer again (median of %d)", REPEATS);
	row(what, res->repeat_ns);
	row("Unix socket copy (first write to last byte read)", res->copy_ns);
	printf("\n  not transport, the consumer reading every word:\n");
	row("check of the shared tensor (incl. page faults, 1st touch)", res->check_ns);
	row("check of the socket copy", res->copy_check_ns);
	printf("  (the first read of the shared tensor maps its pages into the consumer one\n"
	       "   page fault at a time; the copy's buffer was prefaulted before the clock\n"
	       "   started. Later reads of the shared tensor run at memory speed.)\n");
	printf("\n  socket copy / tensorfd first send:        %10.1fx\n",
	       (double)res->copy_ns / (double)(res->first_ns ? res->first_ns : 1));
	printf("  socket copy / tensorfd same buffer again: %10.1fx\n",
	       (double)res->copy_ns / (double)(res->repeat_ns ? res->repeat_ns : 1));
	printf("  the buffer's fd crossed %llu time(s) in %d sends\n", (unsigned long long)fds_sent,
	       1 + REPEATS);
	printf("  content check: tensorfd %s, socket copy %s (%llu words each)\n",
	       res->bad_words ? "FAILED" : "ok", res->copy_bad_words ? "FAILED" : "ok",
	       (unsigned long long)(size / 8));
}

static int producer(struct tfd_channel *ch, int fd, uint64_t size)
{
	struct tfd_channel_stats st;
	struct tfd_buffer *buf;
	struct result res;
	char ready;
	int r;

	r = tfd_buffer_new(size, TFD_BUFFER_POPULATE, &buf);
	if (r < 0) {
		fprintf(stderr, "demo: %s\n", tfd_last_error());
		return r;
	}
	fill(tfd_buffer_data(buf), size / 8);
	r = read_all(fd, &ready, 1);
	if (r == 0)
		r = produce_shared(ch, buf);
	if (r == 0)
		r = produce_copy(fd, tfd_buffer_data(buf), size);
	if (r == 0)
		r = recv_note(ch, &res, sizeof(res));
	tfd_buffer_unref(buf);
	if (r < 0) {
		fprintf(stderr, "demo: producer: %s (%s)\n", strerror(-r), tfd_channel_strerror(ch));
		return r;
	}
	tfd_channel_get_stats(ch, &st);
	report(&res, size, tfd_channel_backend(ch), st.fds_sent);
	return res.bad_words || res.copy_bad_words ? -EBADMSG : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: demo [--size BYTES]   (default 1G; suffixes K, M, G; a multiple of 8)\n");
}

/* 0: go on; 1: exit 0 (help); -1: usage error. */
static int parse_args(int argc, char **argv, uint64_t *size)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_size(optarg, size) < 0 || *size < 8 || *size % 8) {
				fprintf(stderr, "demo: bad size '%s'\n", optarg);
				return -1;
			}
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct tfd_channel *ch[2];
	uint64_t size = GiB;
	int sv[2], status, r;
	pid_t pid;

	r = parse_args(argc, argv, &size);
	if (r)
		return r < 0 ? 2 : 0;
	signal(SIGPIPE, SIG_IGN);	/* a peer that died is an error return, not a kill */
	r = tfd_channel_pair(&ch[0], &ch[1]);
	if (r < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		fprintf(stderr, "demo: cannot make the channel and the socket: %s\n",
			r < 0 ? tfd_last_error() : strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("demo: fork");
		return 1;
	}
	if (pid == 0) {
		tfd_channel_unref(ch[0]);
		close(sv[0]);
		r = consumer(ch[1], sv[1], size);
		tfd_channel_unref(ch[1]);
		close(sv[1]);
		return r;
	}
	tfd_channel_unref(ch[1]);
	close(sv[1]);
	r = producer(ch[0], sv[0], size);
	/* Closing first wakes a consumer still waiting for something. */
	close(sv[0]);
	tfd_channel_unref(ch[0]);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "demo: the consumer failed\n");
		return 1;
	}
	return r < 0 ? 1 : 0;
}
