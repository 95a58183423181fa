/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-echo: subscribe to a topic and describe each message: sequence
 * number, timestamp, latency and every tensor's layout, with --stats the
 * min, max, mean and NaN count of its elements.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cliutil.h"
#include "toolutil.h"

const char *prog = "tensorfd-echo";

static const char *device_name(struct tfd_device d, char *buf, size_t len)
{
	const char *t = d.type == TFD_DEVICE_CPU	 ? "cpu"
			: d.type == TFD_DEVICE_CUDA	 ? "cuda"
			: d.type == TFD_DEVICE_CUDA_HOST ? "cuda_host"
							 : "device";

	snprintf(buf, len, "%s:%d", t, d.id);
	return buf;
}

static void print_dims(const char *label, const int64_t *v, int n)
{
	int i;

	printf(" %s[", label);
	for (i = 0; i < n; i++)
		printf("%s%lld", i ? ", " : "", (long long)v[i]);
	printf("]");
}

/* A string, printable: quotes and control bytes escaped, at most 80 bytes shown. */
static void print_string(const char *s, bool quoted)
{
	size_t i;

	if (quoted)
		putchar('"');
	for (i = 0; s[i] && i < 80; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	printf("%s%s", s[i] ? "..." : "", quoted ? "\"" : "");
}

/* The first few elements of a host tensor, as ros2 topic echo shows a message. */
static void print_values(const struct tfd_layout *l, const void *data)
{
	double v[9];
	size_t n = tensor_values(l, data, v, 9), i;

	if (!n)
		return;
	printf("    [");
	for (i = 0; i < n && i < 8; i++)
		printf("%s%.6g", i ? ", " : "", v[i]);
	printf("%s]\n", n > 8 ? ", ..." : "");
}

/* The typed metadata, one "key: value" a line, and the capture time's age. */
static void describe_meta(const struct tfd_message *m, uint64_t now)
{
	uint64_t cap = tfd_message_capture_time(m);
	int n = tfd_message_meta_count(m), i, type;
	const char *key, *s;
	const void *b;
	size_t len, k;
	int64_t iv;
	double f;
	bool t;

	if (cap)
		printf("  capture time %llu.%09llu age %.3f ms\n", (unsigned long long)(cap / 1000000000),
		       (unsigned long long)(cap % 1000000000), now > cap ? (now - cap) / 1e6 : 0.0);
	if (n < 0) {
		printf("  metadata: malformed (%s)\n", tfd_last_error());
		return;
	}
	for (i = 0; i < n; i++) {
		type = tfd_message_meta_key(m, (unsigned int)i, &key);
		printf("  ");
		print_string(key, false);
		printf(": ");
		if (type == TFD_META_NULL)
			printf("null");
		else if (type == TFD_META_BOOL && tfd_message_get_bool(m, key, &t) == 0)
			printf(t ? "true" : "false");
		else if (type == TFD_META_INT && tfd_message_get_int(m, key, &iv) == 0)
			printf("%lld", (long long)iv);
		else if (type == TFD_META_FLOAT && tfd_message_get_float(m, key, &f) == 0)
			printf("%.10g", f);
		else if (type == TFD_META_STRING && tfd_message_get_string(m, key, &s) == 0)
			print_string(s, true);
		else if (type == TFD_META_BYTES && tfd_message_get_bytes(m, key, &b, &len) == 0) {
			printf("<%zu bytes", len);
			for (k = 0; k < len && k < 16; k++)
				printf("%s%02x", k ? "" : ": ", ((const unsigned char *)b)[k]);
			printf(len > 16 ? "...>" : ">");
		}
		printf("\n");
	}
}

static void describe(const struct tfd_message *m, bool stats)
{
	uint64_t ts = tfd_message_timestamp(m), now = now_ns();
	int n = tfd_message_count(m), i;
	char a[32], b[32];
	const char *dt;
	size_t ulen = 0;

	tfd_message_get_user_data(m, &ulen);
	printf("seq %llu timestamp %llu.%09llu latency %.3f ms tensors %d", (unsigned long long)tfd_message_seq(m),
	       (unsigned long long)(ts / 1000000000), (unsigned long long)(ts % 1000000000),
	       now > ts ? (now - ts) / 1e6 : 0.0, n);
	if (ulen && tfd_message_meta_count(m) == 0 && !tfd_message_capture_time(m))
		printf(" user_data %zu bytes", ulen);
	printf("\n");
	describe_meta(m, now);
	for (i = 0; i < n; i++) {
		const struct tfd_layout *l = tfd_message_layout(m, (unsigned int)i);
		struct tensor_stats st;

		dt = dtype_name(l->dtype, a, sizeof(a));
		printf("  %s: %s", tfd_message_name(m, (unsigned int)i), dt);
		print_dims("shape ", l->shape, l->ndim);
		print_dims("strides ", l->strides, l->ndim);
		printf(" %s %llu bytes%s\n", device_name(l->device, b, sizeof(b)),
		       (unsigned long long)tensor_bytes(l),
		       tfd_message_copied(m, (unsigned int)i) ? " (copied)" : "");
		print_values(l, tfd_message_data(m, (unsigned int)i));
		if (!stats)
			continue;
		tensor_stats(l, tfd_buffer_data(tfd_message_buffer(m, (unsigned int)i)), &st);
		if (!st.numeric)
			printf("    (no statistics for %s)\n", dt);
		else if (st.n == 0)
			printf("    min - max - mean - nan %llu", (unsigned long long)st.nan);
		else
			printf("    min %.6g max %.6g mean %.6g nan %llu", st.min, st.max,
			       st.sum / (double)st.n, (unsigned long long)st.nan);
		if (st.numeric && st.walked < st.total)
			printf(" (over %llu of %llu elements)", (unsigned long long)st.walked,
			       (unsigned long long)st.total);
		if (st.numeric)
			printf("\n");
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [--count N | --once] [--stats] [--timeout MS] [--wait] TOPIC\n"
		   "Print each message of TOPIC: sequence, timestamp, latency, tensor layouts.\n"
		   "  -n, --count N      stop after N messages\n"
		   "  -1, --once         stop after one message\n"
		   "  -s, --stats        min, max, mean and NaN count of each tensor\n"
		   "  -t, --timeout MS   give up when no message came for MS milliseconds\n"
		   "  -w, --wait         wait for the topic to appear and outlive publisher restarts\n"
		   "  -h, --help         this text\n"
		   "Exit: 0 done, 2 usage, 3 no such topic, 4 permission denied, 5 timeout,\n"
		   "6 publisher gone, 1 other errors.\n",
		prog);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, '1' },
		{ "stats", no_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "wait", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t count = 0, timeout = 0, got = 0, last;
	bool stats = false, wait = false;
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	const char *topic;
	int c, r, rc = EXIT_OK;

	while ((c = getopt_long(argc, argv, "n:1st:wh", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (uint_opt("count", optarg, 1, UINT64_MAX, &count) < 0)
				return EXIT_USAGE;
			break;
		case '1':
			count = 1;
			break;
		case 's':
			stats = true;
			break;
		case 't':
			if (uint_opt("timeout", optarg, 1, UINT64_MAX, &timeout) < 0)
				return EXIT_USAGE;
			break;
		case 'w':
			wait = true;
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
	r = tfd_topic_path(topic, (char[PATH_MAX]){ 0 }, PATH_MAX);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", prog, tfd_last_error());
		return EXIT_USAGE;
	}
	r = topic_probe(topic, wait);
	if (r)
		return r;
	catch_signals();
	setvbuf(stdout, NULL, _IOLBF, 0);
	r = tfd_subscriber_new(topic, 0, &sub);
	if (r < 0)
		return report(r, "subscribing to %s", topic);
	last = now_ns();
	while (!stop_requested && (!count || got < count)) {
		r = tfd_subscriber_recv(sub, 200, &m);
		if (r == 0) {
			describe(m, stats);
			tfd_message_unref(m);
			got++;
			last = now_ns();
			continue;
		}
		if (r == -ETIMEDOUT || r == -EAGAIN || r == -EINTR) {
			if (timeout && now_ns() - last >= timeout * 1000000) {
				fprintf(stderr, "%s: no message on %s for %llu ms\n", prog, topic,
					(unsigned long long)timeout);
				rc = EXIT_TIMEOUT;
				break;
			}
			continue;
		}
		if (r == -ECONNRESET && wait) {
			fprintf(stderr, "%s: %s\n", prog, tfd_subscriber_strerror(sub));
			continue;
		}
		fprintf(stderr, "%s: %s\n", prog, tfd_subscriber_strerror(sub));
		rc = exit_code_of(r);
		break;
	}
	tfd_subscriber_unref(sub);
	if (fflush(stdout) != 0)
		return EXIT_FAIL;
	return rc;
}
