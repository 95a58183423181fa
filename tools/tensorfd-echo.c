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
	if (ulen)
		printf(" user_data %zu bytes", ulen);
	printf("\n");
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
