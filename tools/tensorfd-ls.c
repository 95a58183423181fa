/* SPDX-License-Identifier: MIT */
/*
 * tensorfd-ls: the topics in the runtime directory and what their
 * publishers say about themselves (tfd_topic_query). There is no daemon:
 * a topic is a socket file, its state comes from asking its publisher.
 * A socket nobody listens on is a dead publisher's; --clean removes those.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cliutil.h"
#include "toolutil.h"

const char *prog = "tensorfd-ls";

struct entry {
	char *topic;
	char path[PATH_MAX];
	int err;			/* 0: info is set */
	char why[256];
	struct tfd_topic_info *info;
	bool removed;
};

static struct entry *entries;
static size_t n_entries, cap_entries;
static size_t dir_len;

static int add_entry(const char *topic, const char *path)
{
	struct entry *e;

	if (n_entries == cap_entries) {
		size_t cap = cap_entries ? cap_entries * 2 : 16;

		e = realloc(entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		entries = e;
		cap_entries = cap;
	}
	e = &entries[n_entries];
	memset(e, 0, sizeof(*e));
	e->topic = strdup(topic);
	if (!e->topic)
		return -ENOMEM;
	snprintf(e->path, sizeof(e->path), "%s", path);
	n_entries++;
	return 0;
}

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char topic[PATH_MAX];
	size_t n = strlen(path);

	(void)type;
	(void)ftw;
	if (!S_ISSOCK(st->st_mode) || n < dir_len + 6 || strcmp(path + n - 5, ".sock") != 0)
		return 0;
	snprintf(topic, sizeof(topic), "%.*s", (int)(n - dir_len - 6), path + dir_len + 1);
	return add_entry(topic, path) < 0 ? -1 : 0;
}

static int by_topic(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->topic, ((const struct entry *)b)->topic);
}

/*
 * Remove a dead publisher's socket: only if connecting is refused (nobody
 * listens) and the file is still the one we tried, so a publisher that
 * just started on the same name keeps its socket.
 */
static int clean(struct entry *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat before, after;
	int fd, r;

	if (lstat(e->path, &before) < 0 || !S_ISSOCK(before.st_mode))
		return -ENOENT;
	if (strlen(e->path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, e->path, strlen(e->path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	close(fd);
	if (r != -ECONNREFUSED)
		return r == 0 ? -EBUSY : r;
	if (lstat(e->path, &after) < 0 || after.st_dev != before.st_dev ||
	    after.st_ino != before.st_ino)
		return -EBUSY;
	return unlink(e->path) < 0 ? -errno : 0;
}

static const char *state_of(const struct entry *e)
{
	switch (-e->err) {
	case 0:
		return "live";
	case ECONNREFUSED:
		return e->removed ? "removed" : "stale";
	case EACCES:
		return "denied";
	case ENOENT:
		return "missing";
	default:
		return "error";
	}
}

static const char *policy_name(enum tfd_drop_policy p)
{
	return p == TFD_BLOCK ? "block" : "drop-oldest";
}

static void print_text(const struct entry *e)
{
	const struct tfd_topic_info *i = e->info;
	const struct tfd_publisher_stats *s;
	char a[32], b[32];
	unsigned int k;

	if (!i) {
		printf("%s  %s: %s\n", e->topic, state_of(e), e->why);
		return;
	}
	s = &i->stats;
	printf("%s  publisher pid %d uid %u (%s), up %.1f s%s%s\n", e->topic, i->pid, i->uid,
	       i->comm, i->uptime_ns / 1e9, i->flags & TFD_PUBLISHER_LATCHED ? ", latched" : "",
	       i->flags & TFD_PUBLISHER_ZERO_COPY ? ", zero-copy" : "");
	printf("  published %llu, dropped %llu, copied tensors %llu, queue depth %u %s\n",
	       (unsigned long long)s->published, (unsigned long long)s->dropped,
	       (unsigned long long)s->copied_tensors, i->depth, policy_name(i->policy));
	printf("  pool %llu buffers %s, in use %llu buffers %s\n",
	       (unsigned long long)s->pool_buffers, fmt_bytes(a, sizeof(a), (double)s->pool_bytes),
	       (unsigned long long)s->pool_buffers_busy, fmt_bytes(b, sizeof(b), (double)s->pool_bytes_busy));
	printf("  subscribers %llu (attached ever %llu, refused %llu)\n",
	       (unsigned long long)s->subscribers, (unsigned long long)s->attached_total,
	       (unsigned long long)s->refused);
	for (k = 0; k < i->n_subscribers; k++) {
		const struct tfd_subscriber_info *si = &i->subscribers[k];

		/* two bounds, each the depth: messages sent and not yet released
		 * (held by the subscriber), and messages waiting at the publisher */
		printf("    pid %d uid %u: holds %llu/%u, waiting %u/%u, delivered %llu, dropped %llu\n",
		       si->pid, si->uid, (unsigned long long)si->in_flight, i->depth, si->queued,
		       i->depth, (unsigned long long)si->delivered,
		       (unsigned long long)si->dropped);
	}
	if (i->n_subscribers < s->subscribers)
		printf("    (%llu more not listed)\n",
		       (unsigned long long)(s->subscribers - i->n_subscribers));
}

static void print_json(const struct entry *e, bool last)
{
	const struct tfd_topic_info *i = e->info;
	const struct tfd_publisher_stats *s;
	unsigned int k;

	printf("    {\"topic\": ");
	json_string(stdout, e->topic);
	printf(", \"path\": ");
	json_string(stdout, e->path);
	printf(", \"state\": \"%s\"", state_of(e));
	if (!i) {
		printf(", \"error\": ");
		json_string(stdout, e->why);
		printf("}%s\n", last ? "" : ",");
		return;
	}
	s = &i->stats;
	printf(",\n     \"publisher\": {\"pid\": %d, \"uid\": %u, \"gid\": %u, \"command\": ", i->pid,
	       i->uid, i->gid);
	json_string(stdout, i->comm);
	printf(", \"uptime_s\": %.3f, \"latched\": %s, \"zero_copy\": %s},\n", i->uptime_ns / 1e9,
	       i->flags & TFD_PUBLISHER_LATCHED ? "true" : "false",
	       i->flags & TFD_PUBLISHER_ZERO_COPY ? "true" : "false");
	printf("     \"published\": %llu, \"dropped\": %llu, \"copied_tensors\": %llu, "
	       "\"queue_depth\": %u, \"policy\": \"%s\",\n",
	       (unsigned long long)s->published, (unsigned long long)s->dropped,
	       (unsigned long long)s->copied_tensors, i->depth, policy_name(i->policy));
	printf("     \"pool\": {\"buffers\": %llu, \"bytes\": %llu, \"buffers_in_use\": %llu, "
	       "\"bytes_in_use\": %llu},\n",
	       (unsigned long long)s->pool_buffers, (unsigned long long)s->pool_bytes,
	       (unsigned long long)s->pool_buffers_busy, (unsigned long long)s->pool_bytes_busy);
	printf("     \"subscriber_count\": %llu, \"attached_total\": %llu, \"refused\": %llu, "
	       "\"subscribers\": [",
	       (unsigned long long)s->subscribers, (unsigned long long)s->attached_total,
	       (unsigned long long)s->refused);
	for (k = 0; k < i->n_subscribers; k++) {
		const struct tfd_subscriber_info *si = &i->subscribers[k];

		printf("%s\n       {\"pid\": %d, \"uid\": %u, \"gid\": %u, \"queued\": %u, "
		       "\"in_flight\": %llu, \"delivered\": %llu, \"dropped\": %llu}",
		       k ? "," : "", si->pid, si->uid, si->gid, si->queued,
		       (unsigned long long)si->in_flight, (unsigned long long)si->delivered,
		       (unsigned long long)si->dropped);
	}
	printf("]}%s\n", last ? "" : ",");
}

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [--json] [--clean] [--timeout MS] [TOPIC...]\n"
		   "List the topics in the runtime directory with their publishers and subscribers.\n"
		   "  -j, --json        one JSON document instead of text\n"
		   "  -c, --clean       remove sockets of publishers that are gone\n"
		   "  -t, --timeout MS  how long to wait for each publisher's answer (1000)\n"
		   "  -h, --help        this text\n"
		   "Exit: 0 listed, 2 usage, 3 a named topic does not exist, 1 other errors.\n",
		prog);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "clean", no_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char dir[PATH_MAX], path[PATH_MAX];
	bool json = false, do_clean = false;
	uint64_t timeout = 1000;
	int c, r, i, rc = EXIT_OK;
	size_t k;

	while ((c = getopt_long(argc, argv, "jct:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'c':
			do_clean = true;
			break;
		case 't':
			if (uint_opt("timeout", optarg, 0, INT_MAX, &timeout) < 0)
				return EXIT_USAGE;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	r = tfd_runtime_dir(dir, sizeof(dir));
	if (r < 0)
		return report(r, "runtime directory");
	dir_len = (size_t)r;
	if (optind < argc) {
		for (i = optind; i < argc; i++) {
			r = tfd_topic_path(argv[i], path, sizeof(path));
			if (r < 0) {
				fprintf(stderr, "%s: %s\n", prog, tfd_last_error());
				return EXIT_USAGE;
			}
			if (add_entry(argv[i], path) < 0)
				return EXIT_FAIL;
		}
	} else {
		if (nftw(dir, visit, 16, FTW_PHYS) < 0) {
			fprintf(stderr, "%s: reading %s: %s\n", prog, dir, strerror(errno));
			return EXIT_FAIL;
		}
		if (n_entries)
			qsort(entries, n_entries, sizeof(*entries), by_topic);
	}
	for (k = 0; k < n_entries; k++) {
		struct entry *e = &entries[k];

		e->err = tfd_topic_query(e->topic, (int)timeout, &e->info);
		if (e->err < 0)
			snprintf(e->why, sizeof(e->why), "%s", tfd_last_error());
		if (e->err == -ECONNREFUSED && do_clean) {
			r = clean(e);
			e->removed = r == 0;
			if (r < 0 && !json)
				fprintf(stderr, "%s: not removing %s: %s\n", prog, e->path,
					strerror(-r));
		}
		if (e->err == -ENOENT && optind < argc)
			rc = EXIT_NOTOPIC;
	}
	if (json) {
		printf("{\"runtime_dir\": ");
		json_string(stdout, dir);
		printf(",\n  \"topics\": [\n");
	}
	for (k = 0; k < n_entries; k++) {
		if (json)
			print_json(&entries[k], k + 1 == n_entries);
		else
			print_text(&entries[k]);
		tfd_topic_info_free(entries[k].info);
		free(entries[k].topic);
	}
	if (json)
		printf("  ]}\n");
	else if (!n_entries)
		printf("no topics in %s\n", dir);
	free(entries);
	if (fflush(stdout) != 0)
		return EXIT_FAIL;
	return rc;
}
