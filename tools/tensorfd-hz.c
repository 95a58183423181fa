/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-hz: how fast a topic flows. Over a sliding window of the last
 * --window seconds: message rate, latency percentiles (arrival minus the
 * message's timestamp, both CLOCK_MONOTONIC) and bandwidth (bytes of the
 * tensors' elements). Reported every --interval seconds, rewritten in place
 * on a terminal, one line per report otherwise.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliutil.h"
#include "toolutil.h"

const char *prog = "tensorfd-hz";

struct sample {
	uint64_t t, latency, bytes;
};

static struct sample *samples;
static size_t head, len, cap;
static uint64_t *scratch;

static int push(struct sample s)
{
	if (head + len == cap) {
		if (head > cap / 2) {
			memmove(samples, samples + head, len * sizeof(*samples));
			head = 0;
		} else {
			size_t n = cap ? cap * 2 : 1024;
			struct sample *v = realloc(samples, n * sizeof(*v));
			uint64_t *w = realloc(scratch, n * sizeof(*w));

			if (w)
				scratch = w;
			if (!v || !w)
				return -ENOMEM;
			samples = v;
			cap = n;
		}
	}
	samples[head + len++] = s;
	return 0;
}

static void expire(uint64_t now, uint64_t window)
{
	while (len && now - samples[head].t > window) {
		head++;
		len--;
	}
}

static void report_window(uint64_t now, uint64_t start, uint64_t window, bool tty)
{
	uint64_t span = now - start < window ? now - start : window, bytes = 0;
	struct summary s;
	char sz[32];
	size_t i;

	for (i = 0; i < len; i++) {
		scratch[i] = samples[head + i].latency;
		bytes += samples[head + i].bytes;
	}
	s = summarize(scratch, (unsigned int)len);
	if (span == 0)
		span = 1;
	printf("%srate %.2f Hz  latency p50 %.3f ms p99 %.3f ms max %.3f ms  bandwidth %s/s  "
	       "(%zu messages in %.1f s)%s",
	       tty ? "\r\033[K" : "", len * 1e9 / (double)span, s.p50 / 1e6, s.p99 / 1e6,
	       s.max / 1e6, fmt_bytes(sz, sizeof(sz), bytes * 1e9 / (double)span), len,
	       span / 1e9, tty ? "" : "\n");
	fflush(stdout);
}

static uint64_t message_bytes(const struct tfd_message *m)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < tfd_message_count(m); i++)
		n += tensor_bytes(tfd_message_layout(m, (unsigned int)i));
	return n;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [--window S] [--interval S] [--count N] [--wait] TOPIC\n"
		   "Report the rate, latency percentiles and bandwidth of TOPIC.\n"
		   "  -W, --window S     statistics over the last S seconds (1)\n"
		   "  -i, --interval S   report every S seconds (1)\n"
		   "  -n, --count N      stop after N reports\n"
		   "  -w, --wait         wait for the topic to appear and outlive publisher restarts\n"
		   "  -h, --help         this text\n"
		   "Exit: 0 done, 2 usage, 3 no such topic, 4 permission denied, 6 publisher gone,\n"
		   "1 other errors.\n",
		prog);
}

static int seconds_opt(const char *s, uint64_t *ns)
{
	double v;

	if (parse_double(s, &v) < 0 || v < 0.01 || v > 86400) {
		fprintf(stderr, "%s: bad number of seconds '%s'\n", prog, s);
		return -EINVAL;
	}
	*ns = (uint64_t)(v * 1e9);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "window", required_argument, NULL, 'W' },
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "wait", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t window = 1000000000, interval = 1000000000, count = 0, reports = 0;
	uint64_t start, next, now;
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	bool wait = false, tty;
	const char *topic;
	int c, r, rc = EXIT_OK, ms;

	while ((c = getopt_long(argc, argv, "W:i:n:wh", longopts, NULL)) != -1) {
		switch (c) {
		case 'W':
			if (seconds_opt(optarg, &window) < 0)
				return EXIT_USAGE;
			break;
		case 'i':
			if (seconds_opt(optarg, &interval) < 0)
				return EXIT_USAGE;
			break;
		case 'n':
			if (uint_opt("count", optarg, 1, UINT64_MAX, &count) < 0)
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
	if (tfd_topic_path(topic, (char[PATH_MAX]){ 0 }, PATH_MAX) < 0) {
		fprintf(stderr, "%s: %s\n", prog, tfd_last_error());
		return EXIT_USAGE;
	}
	r = topic_probe(topic, wait);
	if (r)
		return r;
	catch_signals();
	tty = isatty(STDOUT_FILENO);
	r = tfd_subscriber_new(topic, 0, &sub);
	if (r < 0)
		return report(r, "subscribing to %s", topic);
	start = now_ns();
	next = start + interval;
	while (!stop_requested) {
		now = now_ns();
		if (now >= next) {
			expire(now, window);
			report_window(now, start, window, tty);
			next += interval;
			if (count && ++reports == count)
				break;
			continue;
		}
		ms = (int)((next - now + 999999) / 1000000);
		r = tfd_subscriber_recv(sub, ms, &m);
		if (r == 0) {
			now = now_ns();
			r = push((struct sample){ now,
						  now > tfd_message_timestamp(m)
							  ? now - tfd_message_timestamp(m)
							  : 0,
						  message_bytes(m) });
			tfd_message_unref(m);
			if (r < 0) {
				rc = report(r, "keeping samples");
				break;
			}
			continue;
		}
		if (r == -ETIMEDOUT || r == -EAGAIN || r == -EINTR)
			continue;
		if (r == -ECONNRESET && wait)
			continue;
		fprintf(stderr, "%s%s: %s\n", tty ? "\n" : "", prog, tfd_subscriber_strerror(sub));
		rc = exit_code_of(r);
		break;
	}
	if (tty)
		printf("\n");
	tfd_subscriber_unref(sub);
	free(samples);
	free(scratch);
	return rc;
}
