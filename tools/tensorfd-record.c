/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-record: subscribe to topics and write every message, with its
 * arrival time, to a record file (safetensors documents, see recfile.h)
 * that tensorfd-play replays.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliutil.h"
#include "recfile.h"
#include "toolutil.h"

const char *prog = "tensorfd-record";

static void usage(FILE *f)
{
	fprintf(f, "usage: %s -o FILE [--count N] [--duration S] [--wait] [--verbose] TOPIC...\n"
		   "       %s --info FILE\n"
		   "Record the messages of the topics to FILE for tensorfd-play, or say what a\n"
		   "recording holds (--info: topics, messages, duration, rates, tensor layouts).\n"
		   "  -o, --output FILE   the record file (replaced)\n"
		   "  -n, --count N       stop after N messages, all topics together\n"
		   "  -d, --duration S    stop after S seconds\n"
		   "  -w, --wait          wait for topics to appear and outlive publisher restarts\n"
		   "  -v, --verbose       say how much was recorded, how fast\n"
		   "  -h, --help          this text\n"
		   "Exit: 0 done or interrupted, 2 usage, 3 no such topic, 4 permission denied,\n"
		   "6 every publisher went away, 1 other errors (writing the file).\n",
		prog, prog);
}

struct topic_info {
	uint64_t msgs, bytes, first_ns, last_ns;
	struct rec_msg first;	/* its layouts are the ones shown */
	bool seen;
};

/* What a recording holds, as ros2 bag info shows a bag. */
static int info(const char *path)
{
	static struct topic_info ti[REC_MAX_TOPICS];
	static struct rec_msg m;
	struct rec_file_info fi;
	uint64_t pos = 0, total = 0, last = 0, size;
	unsigned int i, k;
	char err[256], a[32], b[32];
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		return EXIT_FAIL;
	}
	r = rec_read_start(fd, &pos, &fi, err, sizeof(err));
	while (r >= 0 && (r = rec_read_msg(fd, &pos, &m, err, sizeof(err))) == 1) {
		for (i = 0; i < fi.n_topics && strcmp(fi.topics[i], m.topic); i++)
			;
		if (i == fi.n_topics)
			continue;	/* the reader checked it; a topic not announced is skipped */
		if (!ti[i].seen) {
			ti[i].seen = true;
			ti[i].first_ns = m.t_ns;
			ti[i].first = m;
		}
		ti[i].msgs++;
		ti[i].bytes += m.data_len;
		ti[i].last_ns = m.t_ns;
		total++;
		last = m.t_ns > last ? m.t_ns : last;
	}
	size = (uint64_t)lseek(fd, 0, SEEK_END);
	close(fd);
	if (r < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, err);
		return EXIT_FAIL;
	}
	printf("file:      %s (%s)\n", path, fmt_bytes(a, sizeof(a), (double)size));
	printf("duration:  %.3f s\n", last / 1e9);
	printf("messages:  %llu\n", (unsigned long long)total);
	printf("topics:    %u\n", fi.n_topics);
	for (i = 0; i < fi.n_topics; i++) {
		double span = (ti[i].last_ns - ti[i].first_ns) / 1e9;

		printf("  %s: %llu messages, %s", fi.topics[i], (unsigned long long)ti[i].msgs,
		       fmt_bytes(b, sizeof(b), (double)ti[i].bytes));
		if (ti[i].msgs > 1 && span > 0)
			printf(", %.2f Hz", (double)(ti[i].msgs - 1) / span);
		printf("\n");
		for (k = 0; ti[i].seen && k < ti[i].first.n; k++) {
			const struct rec_tensor *t = &ti[i].first.t[k];

			printf("    %s: %s [", t->name, dtype_name(t->dtype, a, sizeof(a)));
			for (int d = 0; d < t->ndim; d++)
				printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
			printf("]%s\n", t->strided ? " (strided)" : "");
		}
	}
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "count", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "wait", no_argument, NULL, 'w' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "info", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tfd_subscriber *subs[REC_MAX_TOPICS] = { NULL };
	bool ready[REC_MAX_TOPICS], wait = false, verbose = false;
	uint64_t count = 0, got = 0, skipped = 0, bytes = 0, b, start, end = UINT64_MAX, now;
	const char *out = NULL, *topics[REC_MAX_TOPICS];
	unsigned int n = 0, n_live = 0, i;
	struct tfd_message *m;
	int c, r, fd, rc = EXIT_OK, rc_lost = 0;
	double secs;
	char sz[32], sz2[32], why[256];

	while ((c = getopt_long(argc, argv, "o:n:d:wvhi:", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			return info(optarg);
		case 'o':
			out = optarg;
			break;
		case 'n':
			if (uint_opt("count", optarg, 1, UINT64_MAX, &count) < 0)
				return EXIT_USAGE;
			break;
		case 'd':
			if (parse_double(optarg, &secs) < 0 || secs <= 0) {
				fprintf(stderr, "%s: bad duration '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			end = (uint64_t)(secs * 1e9);
			break;
		case 'w':
			wait = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!out || optind == argc || argc - optind > REC_MAX_TOPICS) {
		if (argc - optind > REC_MAX_TOPICS)
			fprintf(stderr, "%s: at most %d topics\n", prog, REC_MAX_TOPICS);
		usage(stderr);
		return EXIT_USAGE;
	}
	for (i = 0; optind + (int)i < argc; i++) {
		topics[i] = argv[optind + (int)i];
		if (tfd_topic_path(topics[i], (char[PATH_MAX]){ 0 }, PATH_MAX) < 0) {
			fprintf(stderr, "%s: %s\n", prog, tfd_last_error());
			return EXIT_USAGE;
		}
		r = topic_probe(topics[i], wait);
		if (r)
			return r;
	}
	n = i;
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, out, strerror(errno));
		return EXIT_FAIL;
	}
	r = rec_write_start(fd, topics, n);
	if (r < 0) {
		fprintf(stderr, "%s: writing %s: %s\n", prog, out, strerror(-r));
		close(fd);
		return EXIT_FAIL;
	}
	catch_signals();
	n_live = n;
	for (i = 0; i < n; i++) {
		r = tfd_subscriber_new(topics[i], 0, &subs[i]);
		if (r < 0) {
			rc = report(r, "subscribing to %s", topics[i]);
			goto out;
		}
	}
	start = now_ns();
	if (end != UINT64_MAX)
		end += start;
	while (!stop_requested && n_live && (!count || got < count) && (now = now_ns()) < end) {
		r = tfd_subscriber_wait(subs, n_live, end == UINT64_MAX ? 200 : (int)((end - now) / 1000000 + 1), ready);
		if (r == -ETIMEDOUT || r == -EAGAIN || r == -EINTR)
			continue;
		if (r < 0) {
			rc = report(r, "waiting for messages");
			break;
		}
		for (i = 0; i < n_live && rc == EXIT_OK && (!count || got < count); i++) {
			if (!ready[i])
				continue;
			r = tfd_subscriber_recv(subs[i], 0, &m);
			if (r == -EAGAIN || r == -EINTR || r == -ETIMEDOUT)
				continue;
			if (r == -ECONNRESET && wait)
				continue;
			if (r < 0 && wait) {
				/* the subscriber attaches again */
				fprintf(stderr, "%s: %s: %s\n", prog, topics[i],
					tfd_subscriber_strerror(subs[i]));
				continue;
			}
			if (r < 0) {
				/* what it sent is recorded; the other topics go on */
				fprintf(stderr, "%s: %s: %s\n", prog, topics[i],
					tfd_subscriber_strerror(subs[i]));
				if (r != -ECONNRESET)
					rc_lost = exit_code_of(r);
				tfd_subscriber_unref(subs[i]);
				n_live--;
				subs[i] = subs[n_live];
				topics[i] = topics[n_live];
				ready[i] = ready[n_live];
				subs[n_live] = NULL;
				i--;
				continue;
			}
			r = rec_write_msg(fd, topics[i], now_ns() - start, m, &b, why, sizeof(why));
			if (r == 1) {
				/* one message the format cannot hold does not end the recording */
				fprintf(stderr, "%s: %s: skipped message %llu: %s\n", prog, topics[i],
					(unsigned long long)tfd_message_seq(m), why);
				tfd_message_unref(m);
				skipped++;
				continue;
			}
			tfd_message_unref(m);
			if (r < 0) {
				fprintf(stderr, "%s: writing %s: %s\n", prog, out, strerror(-r));
				rc = EXIT_FAIL;
				break;
			}
			got++;
			bytes += b;
		}
		if (rc != EXIT_OK)
			break;
	}
	/* every publisher left (or failed) before the count or duration was reached */
	if (rc == EXIT_OK && !n_live)
		rc = rc_lost ? rc_lost : EXIT_GONE;
	if (skipped)
		fprintf(stderr, "%s: skipped %llu messages\n", prog, (unsigned long long)skipped);
	if (verbose) {
		secs = (now_ns() - start) / 1e9;
		fprintf(stderr, "%s: %llu messages, %s of tensors in %.3f s (%s/s)\n", prog,
			(unsigned long long)got, fmt_bytes(sz, sizeof(sz), (double)bytes), secs,
			fmt_bytes(sz2, sizeof(sz2), secs > 0 ? bytes / secs : 0));
	}
out:
	for (i = 0; i < n; i++)
		tfd_subscriber_unref(subs[i]);
	if (close(fd) < 0 && rc == EXIT_OK) {
		fprintf(stderr, "%s: closing %s: %s\n", prog, out, strerror(errno));
		rc = EXIT_FAIL;
	}
	return rc;
}
