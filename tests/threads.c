/* SPDX-License-Identifier: MIT */
/*
 * Threads: what tensorfd(7) promises to multi-threaded programs. Distinct
 * objects are used by distinct threads at once: channel pairs, publishers
 * and subscribers, each thread with its own; buffers are created from all
 * threads at once and get distinct ids; the last-error text is kept per
 * thread; the log callback may be called from any thread. `make check-tsan`
 * runs this program under ThreadSanitizer, which reports any data race in
 * the library between such threads.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"
#include "tap.h"
#include "tensorfd.h"

#define THREADS		4
#define MESSAGES	1000
#define BUFFERS		64

struct worker {
	pthread_t thread;
	unsigned int index;
	uint64_t ids[BUFFERS];
	unsigned int received, bad, published, failed_step;
	char error[256];	/* tfd_last_error() after the barrier */
	char expected[64];	/* what this thread's own failure names */
};

static pthread_barrier_t barrier;
static atomic_uint log_calls;

static void count_log(int level, const char *msg, void *userdata)
{
	(void)level;
	(void)msg;
	(void)userdata;
	atomic_fetch_add(&log_calls, 1);
}

static struct tfd_message *message_of(struct tfd_buffer *b, uint64_t value)
{
	const int64_t n = 1;
	struct tfd_message *m;
	struct tfd_layout l;

	*(uint64_t *)tfd_buffer_data(b) = value;
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n);
	if (tfd_message_new(&m) < 0)
		return NULL;
	if (tfd_message_add_tensor(m, "n", b, &l) < 0)
		return tfd_message_unref(m);
	return m;
}

/* A channel pair of this thread's own: messages over two buffers, released as they go. */
static int channel_traffic(struct worker *w)
{
	struct tfd_channel *a, *b;
	struct tfd_buffer *buf[2];
	struct tfd_message *m, *got;
	unsigned int i;
	int r = -1;

	if (tfd_channel_pair(&a, &b) < 0)
		return -1;
	if (tfd_buffer_new(4096, 0, &buf[0]) < 0)
		goto out_pair;
	if (tfd_buffer_new(4096, 0, &buf[1]) < 0)
		goto out_buf0;
	for (i = 0; i < MESSAGES; i++) {
		/* a buffer is written only when the reader gave it back */
		while (tfd_buffer_loans(buf[i % 2]))
			if (tfd_channel_dispatch(a, 1000) < 0)
				goto out_bufs;
		m = message_of(buf[i % 2], (uint64_t)w->index << 32 | i);
		if (!m || tfd_channel_send(a, m) < 0) {
			tfd_message_unref(m);
			goto out_bufs;
		}
		tfd_message_unref(m);
		if (tfd_channel_recv(b, 5000, &got) < 0)
			goto out_bufs;
		w->received++;
		w->bad += *(const uint64_t *)tfd_message_data(got, 0) != ((uint64_t)w->index << 32 | i);
		tfd_message_unref(got);
	}
	r = 0;
out_bufs:
	tfd_buffer_unref(buf[1]);
out_buf0:
	tfd_buffer_unref(buf[0]);
out_pair:
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	return r;
}

/* A topic of this thread's own, publisher and subscriber both here. */
static int topic_traffic(struct worker *w)
{
	struct tfd_publisher *pub;
	struct tfd_subscriber *sub;
	struct tfd_publisher_stats st;
	struct tfd_message *m, *got;
	struct tfd_buffer *b;
	char topic[32];
	unsigned int i;
	int r = -1;

	snprintf(topic, sizeof(topic), "threads/%u", w->index);
	if (tfd_publisher_new(topic, 0, &pub) < 0)
		return -1;
	if (tfd_subscriber_new(topic, 0, &sub) < 0)
		goto out_pub;
	do {
		if (tfd_publisher_dispatch(pub, 100) < 0)
			goto out;
		tfd_publisher_get_stats(pub, &st);
	} while (!st.subscribers);
	for (i = 0; i < MESSAGES / 4; i++) {
		while ((r = tfd_publisher_loan(pub, 4096, &b)) == -ENOBUFS)
			tfd_publisher_dispatch(pub, 10);
		if (r < 0)
			goto out;
		m = message_of(b, i);
		tfd_buffer_unref(b);
		r = m ? tfd_publisher_publish(pub, m) : -ENOMEM;
		tfd_message_unref(m);
		if (r < 0)
			goto out;
		w->published++;
		r = tfd_subscriber_recv(sub, 5000, &got);
		if (r < 0)
			goto out;
		w->received++;
		w->bad += *(const uint64_t *)tfd_message_data(got, 0) != i;
		tfd_message_unref(got);
	}
	r = 0;
out:
	tfd_subscriber_unref(sub);
out_pub:
	tfd_publisher_unref(pub);
	return r;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct tfd_channel *ch;
	struct tfd_buffer *b;
	unsigned int i;

	/* all threads create buffers at once */
	pthread_barrier_wait(&barrier);
	for (i = 0; i < BUFFERS; i++) {
		if (tfd_buffer_new(4096, 0, &b) < 0) {
			w->failed_step = 1;
			return NULL;
		}
		w->ids[i] = b->id;
		tfd_buffer_unref(b);
	}

	/* each fails in its own way; each then reads its own reason */
	snprintf(w->expected, sizeof(w->expected), "/nonexistent/tfd-thread-%u", w->index);
	if (tfd_channel_connect(w->expected, &ch) != -ENOENT) {
		w->failed_step = 2;
		return NULL;
	}
	pthread_barrier_wait(&barrier);
	snprintf(w->error, sizeof(w->error), "%s", tfd_last_error());

	if (channel_traffic(w) < 0)
		w->failed_step = 3;
	else if (topic_traffic(w) < 0)
		w->failed_step = 4;
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(void)
{
	static struct worker w[THREADS];
	static uint64_t ids[THREADS * BUFFERS];
	unsigned int i, dups = 0, received = 0, bad = 0;
	char dir[] = "/tmp/tfd-threads-XXXXXX";
	int fds0;

	tap_init(120);
	if (!mkdtemp(dir))
		skip_all("mkdtemp failed");
	setenv("TENSORFD_RUNTIME_DIR", dir, 1);
	tfd_set_log_fn(count_log, NULL);
	fds0 = count_fds();
	pthread_barrier_init(&barrier, NULL, THREADS);
	for (i = 0; i < THREADS; i++) {
		w[i].index = i;
		if (pthread_create(&w[i].thread, NULL, work, &w[i]) != 0)
			skip_all("pthread_create failed");
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(w[i].thread, NULL);
	pthread_barrier_destroy(&barrier);

	for (i = 0; i < THREADS; i++) {
		ok(!w[i].failed_step, "thread %u ran every step (failed at %u)", i,
		   w[i].failed_step);
		ok(strstr(w[i].error, w[i].expected) != NULL,
		   "thread %u reads its own last error: \"%s\"", i, w[i].error);
		memcpy(ids + i * BUFFERS, w[i].ids, sizeof(w[i].ids));
		received += w[i].received;
		bad += w[i].bad;
	}
	qsort(ids, THREADS * BUFFERS, sizeof(ids[0]), cmp_u64);
	for (i = 1; i < THREADS * BUFFERS; i++)
		dups += ids[i] == ids[i - 1] || !ids[i];
	ok(dups == 0, "%d buffers made by %d threads at once have distinct ids",
	   THREADS * BUFFERS, THREADS);
	ok(received == THREADS * (MESSAGES + MESSAGES / 4) && bad == 0,
	   "%u messages over per-thread channels and topics arrived intact (%u bad)",
	   received, bad);
	diag("log callback called %u times", atomic_load(&log_calls));
	ok(count_fds() == fds0, "no fd leaked");
	tfd_set_log_fn(NULL, NULL);
	rm_tree(dir);
	return done_testing();
}
