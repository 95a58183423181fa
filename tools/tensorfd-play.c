/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-play: publish the messages of a record file (tensorfd-record)
 * again, at the recorded pace, a multiple of it, or as fast as possible.
 * Each tensor is read from the file straight into a buffer loaned from
 * the topic's pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliutil.h"
#include "recfile.h"
#include "toolutil.h"

const char *prog = "tensorfd-play";

static struct rec_file_info info;
static struct tfd_publisher *pubs[REC_MAX_TOPICS];
static unsigned int n_pubs;

/* Serve every publisher until the deadline. */
static void serve_until(uint64_t deadline)
{
	struct pollfd pfd[REC_MAX_TOPICS];
	uint64_t now;
	unsigned int i;

	for (;;) {
		for (i = 0; i < n_pubs; i++)
			tfd_publisher_dispatch(pubs[i], 0);
		now = now_ns();
		if (stop_requested || now >= deadline)
			return;
		for (i = 0; i < n_pubs; i++)
			pfd[i] = (struct pollfd){ .fd = tfd_publisher_get_fd(pubs[i]), .events = POLLIN };
		poll(pfd, n_pubs, (int)((deadline - now + 999999) / 1000000));
	}
}

static bool all_have(uint64_t want)
{
	struct tfd_publisher_stats st;
	unsigned int i;

	for (i = 0; i < n_pubs; i++) {
		tfd_publisher_get_stats(pubs[i], &st);
		if (st.subscribers < want)
			return false;
	}
	return true;
}

static bool queues_empty(void)
{
	struct tfd_subscriber_info si;
	unsigned int i, k;

	for (i = 0; i < n_pubs; i++)
		for (k = 0; tfd_publisher_get_subscriber(pubs[i], k, &si) == 0; k++)
			if (si.queued)
				return false;
	return true;
}

/* The exit codes tensorfd-play(1) lists: denied, or any other failure. */
static int play_exit(int code)
{
	return code == EXIT_DENIED ? EXIT_DENIED : EXIT_FAIL;
}

/*
 * A message goes out whole or not at all: EXIT_OK, or the exit code after
 * saying what failed.
 */
static int publish(int fd, const char *file, const struct rec_msg *rm, struct tfd_publisher *pub,
		   const char *topic)
{
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	uint64_t size, done;
	unsigned int i;
	ssize_t n;
	int r, rc = EXIT_OK;

	r = tfd_message_new(&m);
	if (r < 0)
		return play_exit(report(r, "message"));
	for (i = 0; i < rm->n && rc == EXIT_OK; i++) {
		const struct rec_tensor *t = &rm->t[i];

		size = t->end - t->begin;
		r = tfd_publisher_loan(pub, size ? size : 1, &b);
		if (r < 0) {
			rc = play_exit(report(r, "loaning %llu bytes on %s", (unsigned long long)size,
					      topic));
			break;
		}
		for (done = 0; done < size; done += (uint64_t)n) {
			n = pread(fd, (char *)tfd_buffer_data(b) + done, size - done,
				  (off_t)(rm->data_pos + t->begin + done));
			if (n <= 0) {
				fprintf(stderr, "%s: %s: %s\n", prog, file,
					n < 0 ? strerror(errno) : "truncated");
				tfd_buffer_unref(b);
				tfd_message_unref(m);
				return EXIT_FAIL;
			}
		}
		rec_layout(t, &l);
		r = tfd_message_add_tensor(m, t->name, b, &l);
		tfd_buffer_unref(b);
		/* a tensor the library refuses is the file's fault: a broken file */
		if (r < 0)
			rc = play_exit(report(r, "%s: tensor '%s'", file, t->name));
	}
	if (rc == EXIT_OK && rm->user_len &&
	    (r = tfd_message_set_user_data(m, rm->user, rm->user_len)) < 0)
		rc = play_exit(report(r, "%s: user data", file));
	if (rc == EXIT_OK && (r = tfd_publisher_publish(pub, m)) < 0)
		rc = play_exit(report(r, "publishing on %s", topic));
	tfd_message_unref(m);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [options] FILE\n"
		   "Publish the messages recorded in FILE by tensorfd-record.\n"
		   "  -r, --rate X              X times the recorded pace (1)\n"
		   "  -f, --fast                as fast as possible\n"
		   "  -l, --loop                start again at the end\n"
		   "  -m, --remap [OLD=]NEW     publish OLD's messages on NEW (OLD may be left out\n"
		   "                            when the file has one topic); repeatable\n"
		   "  -S, --wait-subscribers N  wait for N subscribers on every topic first\n"
		   "  -L, --linger MS           after the last message, serve subscribers so long (1000)\n"
		   "  -B, --block               wait for slow subscribers instead of dropping for them\n"
		   "  -v, --verbose             say how much was played, how fast\n"
		   "  -h, --help                this text\n"
		   "Exit: 0 done or interrupted, 2 usage, 4 permission denied, 1 other errors\n"
		   "(a broken file).\n",
		prog);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "rate", required_argument, NULL, 'r' },
		{ "fast", no_argument, NULL, 'f' },
		{ "loop", no_argument, NULL, 'l' },
		{ "remap", required_argument, NULL, 'm' },
		{ "wait-subscribers", required_argument, NULL, 'S' },
		{ "linger", required_argument, NULL, 'L' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "block", no_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct rec_msg rm;
	const char *remap[REC_MAX_TOPICS], *names[REC_MAX_TOPICS], *file;
	uint64_t pos, first_pos, want_subs = 0, linger = 1000, start, t0 = 0, base = 0, played = 0;
	uint64_t bytes = 0, last_t = 0;
	unsigned int n_remap = 0, i, k;
	bool fast = false, loop = false, verbose = false, have_t0 = false, block = false;
	double rate = 1, secs;
	char err[256], sz[32], sz2[32];
	int c, r, fd, rc = EXIT_OK;

	while ((c = getopt_long(argc, argv, "r:flm:S:L:Bvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (parse_double(optarg, &rate) < 0 || rate <= 0) {
				fprintf(stderr, "%s: bad rate '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			break;
		case 'f':
			fast = true;
			break;
		case 'l':
			loop = true;
			break;
		case 'm':
			if (n_remap == REC_MAX_TOPICS)
				return EXIT_USAGE;
			remap[n_remap++] = optarg;
			break;
		case 'S':
			if (uint_opt("subscriber count", optarg, 0, UINT64_MAX, &want_subs) < 0)
				return EXIT_USAGE;
			break;
		case 'L':
			if (uint_opt("linger", optarg, 0, INT_MAX, &linger) < 0)
				return EXIT_USAGE;
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
	file = argv[optind];
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, file, strerror(errno));
		return EXIT_FAIL;
	}
	pos = 0;
	r = rec_read_start(fd, &pos, &info, err, sizeof(err));
	if (r < 0 || info.n_topics == 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, file, r < 0 ? err : "no topics");
		close(fd);
		return EXIT_FAIL;
	}
	first_pos = pos;
	for (i = 0; i < info.n_topics; i++)
		names[i] = info.topics[i];
	for (k = 0; k < n_remap; k++) {
		const char *eq = strchr(remap[k], '=');

		if (!eq && info.n_topics == 1) {
			names[0] = remap[k];
			continue;
		}
		for (i = 0; eq && i < info.n_topics; i++)
			if (strlen(info.topics[i]) == (size_t)(eq - remap[k]) &&
			    !strncmp(info.topics[i], remap[k], (size_t)(eq - remap[k])))
				break;
		if (!eq || i == info.n_topics) {
			fprintf(stderr, "%s: --remap %s names no topic of %s\n", prog, remap[k], file);
			close(fd);
			return EXIT_USAGE;
		}
		names[i] = eq + 1;
	}
	catch_signals();
	for (i = 0; i < info.n_topics; i++, n_pubs++) {
		r = tfd_publisher_new(names[i], 0, &pubs[i]);
		if (r < 0) {
			rc = r == -EINVAL ? EXIT_USAGE : report(r, "publishing %s", names[i]);
			if (r == -EINVAL)
				fprintf(stderr, "%s: %s\n", prog, tfd_last_error());
			goto out;
		}
		/* lossless: publish waits for the slowest subscriber */
		if (block)
			tfd_publisher_set_queue(pubs[i], 16, TFD_BLOCK, -1);
	}
	while (!stop_requested && !all_have(want_subs))
		serve_until(now_ns() + 50000000);
	start = now_ns();
	while (!stop_requested) {
		r = rec_read_msg(fd, &pos, &rm, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "%s: %s: %s\n", prog, file, err);
			rc = EXIT_FAIL;
			break;
		}
		if (r == 0) {
			if (!loop || played == 0)
				break;
			/* the next round starts where this one ended */
			base += last_t - t0 + 1000000;
			have_t0 = false;
			pos = first_pos;
			continue;
		}
		for (i = 0; i < info.n_topics && strcmp(info.topics[i], rm.topic); i++)
			;
		if (i == info.n_topics) {
			fprintf(stderr, "%s: %s: message on topic %s not in the file's list\n", prog,
				file, rm.topic);
			rc = EXIT_FAIL;
			break;
		}
		if (!have_t0) {
			t0 = rm.t_ns;
			have_t0 = true;
		}
		if (rm.t_ns < t0)
			rm.t_ns = t0;
		last_t = rm.t_ns;
		if (!fast)
			serve_until(start + (uint64_t)((base + rm.t_ns - t0) / rate));
		if (stop_requested)
			break;
		rc = publish(fd, file, &rm, pubs[i], names[i]);
		if (rc != EXIT_OK)
			break;
		played++;
		bytes += rm.data_len;
		if (fast)
			tfd_publisher_dispatch(pubs[i], 0);
	}
	if (verbose) {
		secs = (now_ns() - start) / 1e9;
		fprintf(stderr, "%s: %llu messages, %s of tensors in %.3f s (%s/s)\n", prog,
			(unsigned long long)played, fmt_bytes(sz, sizeof(sz), (double)bytes), secs,
			fmt_bytes(sz2, sizeof(sz2), secs > 0 ? bytes / secs : 0));
	}
	start = now_ns() + linger * 1000000;
	while (!stop_requested && !queues_empty() && now_ns() < start)
		serve_until(now_ns() + 10000000);
out:
	for (i = 0; i < n_pubs; i++)
		tfd_publisher_unref(pubs[i]);
	close(fd);
	return rc;
}
