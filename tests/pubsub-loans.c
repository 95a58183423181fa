/* SPDX-License-Identifier: MIT */
/*
 * "Rewrite it when tfd_buffer_loans() is 0", taken literally. A producer
 * keeps a ring of buffers that pass through the publisher without a copy
 * (pool buffers it keeps, and dma-bufs where the machine has a source),
 * writes the next frame into a buffer the moment its loans are 0, as a
 * camera driver does with a buffer given back to it, and publishes it a
 * step later. A subscriber with queue depth 1 that reads late, and a late
 * subscriber of a latched topic, must never see a frame rewritten: a
 * message waiting in a queue or kept latched holds its buffers' loans.
 */
#include <stdint.h>

#include "tap.h"
#include "tensorfd.h"

#define RING	3
#define SIZE	4096
#define STEPS	600

static const struct tfd_dtype u64 = { TFD_UINT, 64, 1 };

enum source { POOL, DMABUF };

struct ring {
	struct tfd_buffer *b[RING];
	uint64_t frame[RING];	/* the frame written into it and not yet published; 0: none */
};

static int ring_get(struct ring *rg, struct tfd_publisher *pub, enum source src)
{
	unsigned int i;
	int r = 0;

	for (i = 0; i < RING && r == 0; i++) {
		rg->frame[i] = 0;
		r = src == POOL ? tfd_publisher_loan(pub, SIZE, &rg->b[i])
				: tfd_dmabuf_new(SIZE, TFD_DMABUF_ANY, 0, &rg->b[i]);
	}
	if (r < 0)
		while (--i > 0)
			tfd_buffer_unref(rg->b[i - 1]);
	return r;
}

static void ring_put(struct ring *rg)
{
	unsigned int i;

	for (i = 0; i < RING; i++)
		tfd_buffer_unref(rg->b[i]);
}

/* The whole buffer holds the frame number. */
static void write_frame(struct tfd_buffer *b, uint64_t frame)
{
	uint64_t *p = tfd_buffer_data(b);
	unsigned int i;

	tfd_buffer_begin_access(b, TFD_ACCESS_WRITE);
	for (i = 0; i < SIZE / 8; i++)
		p[i] = frame;
	tfd_buffer_end_access(b, TFD_ACCESS_WRITE);
}

/* The camera: every buffer it has back (loans 0, not filled) gets the next frame at once. */
static void camera(struct ring *rg, uint64_t *next_frame)
{
	unsigned int i;

	for (i = 0; i < RING; i++)
		if (!rg->frame[i] && tfd_buffer_loans(rg->b[i]) == 0) {
			rg->frame[i] = ++*next_frame;
			write_frame(rg->b[i], rg->frame[i]);
		}
}

/* Publish the oldest filled buffer, its frame number in the user data. */
static int publish_oldest(struct tfd_publisher *pub, struct ring *rg)
{
	const int64_t n = SIZE / 8;
	unsigned int i, o = RING;
	struct tfd_message *m;
	struct tfd_layout l;
	int r;

	for (i = 0; i < RING; i++)
		if (rg->frame[i] && (o == RING || rg->frame[i] < rg->frame[o]))
			o = i;
	if (o == RING)
		return 0;
	tfd_layout_init(&l, u64, 1, &n);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "frame", rg->b[o], &l);
	tfd_message_set_user_data(m, &rg->frame[o], sizeof(rg->frame[o]));
	r = tfd_publisher_publish(pub, m);
	tfd_message_unref(m);
	rg->frame[o] = 0;
	return r < 0 ? r : 1;
}

/* Whether every word of a received frame is the frame number it was published with. */
static bool intact(struct tfd_message *m)
{
	struct tfd_buffer *b = tfd_message_buffer(m, 0);
	const uint64_t *p = tfd_message_data(m, 0), *tag;
	bool good = p && b;
	unsigned int i;
	size_t len;

	tag = tfd_message_get_user_data(m, &len);
	if (!good || len != sizeof(*tag))
		return false;
	tfd_buffer_begin_access(b, TFD_ACCESS_READ);
	for (i = 0; i < SIZE / 8; i++)
		good = good && p[i] == *tag;
	tfd_buffer_end_access(b, TFD_ACCESS_READ);
	return good;
}

static int wait_attached(struct tfd_publisher *pub)
{
	struct tfd_publisher_stats st;
	int i;

	for (i = 0; i < 500; i++) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == 1)
			return 0;
		tfd_publisher_dispatch(pub, 10);
	}
	return -ETIMEDOUT;
}

/*
 * Depth 1: a message for a subscriber whose window is full waits in its
 * queue; the subscriber reads late, on a fixed pseudo-random schedule.
 */
static void late_reader(enum source src, const char *what)
{
	struct tfd_subscriber *sub;
	struct tfd_publisher *pub;
	struct tfd_message *m;
	struct ring rg;
	uint64_t next_frame = 0, received = 0, bad = 0, first_bad = 0, lcg = 1;
	int fds0 = count_fds(), step, r;
	char topic[32];

	snprintf(topic, sizeof(topic), "late/%s", what);
	if (tfd_publisher_new(topic, 0, &pub) < 0 ||
	    tfd_publisher_set_queue(pub, 1, TFD_DROP_OLDEST, 0) < 0 ||
	    tfd_subscriber_new(topic, 0, &sub) < 0 || wait_attached(pub) < 0) {
		printf("Bail out! %s: cannot set up the topic: %s\n", what, tfd_last_error());
		exit(1);
	}
	r = ring_get(&rg, pub, src);
	if (r < 0) {
		skip("%s: no buffers here (%s)", what, tfd_last_error());
		goto out;
	}
	camera(&rg, &next_frame);
	for (step = 0; step < STEPS; step++) {
		/* releases in, queue flushed; publish; the camera takes back what it may */
		tfd_publisher_dispatch(pub, 0);
		r = publish_oldest(pub, &rg);
		if (r < 0)
			break;
		camera(&rg, &next_frame);
		lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
		if ((lcg >> 33) % 3 == 0 && tfd_subscriber_recv(sub, 0, &m) == 0) {
			received++;
			if (!intact(m) && !bad++)
				first_bad = tfd_message_seq(m);
			tfd_message_unref(m);
		}
	}
	ok(r >= 0, "%s: %d steps published (%s)", what, step, r < 0 ? tfd_publisher_strerror(pub) : "ok");
	ok(received > STEPS / 10 && bad == 0,
	   "%s: a late reader at depth 1 never sees a frame rewritten (%llu received, %llu "
	   "rewritten, first at seq %llu)", what, (unsigned long long)received,
	   (unsigned long long)bad, (unsigned long long)first_bad);
	ring_put(&rg);
out:
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "%s: fds back to %d (%d)", what, fds0, count_fds());
}

/* The message a latched publisher keeps, rewritten before a late subscriber attaches? */
static void late_latched(enum source src, const char *what)
{
	struct tfd_subscriber *sub = NULL;
	struct tfd_publisher *pub;
	struct tfd_message *m;
	struct ring rg;
	uint64_t next_frame = 0;
	int fds0 = count_fds(), step, r;
	char topic[32];

	snprintf(topic, sizeof(topic), "latched/%s", what);
	if (tfd_publisher_new(topic, TFD_PUBLISHER_LATCHED, &pub) < 0) {
		printf("Bail out! %s: cannot set up the topic: %s\n", what, tfd_last_error());
		exit(1);
	}
	r = ring_get(&rg, pub, src);
	if (r < 0) {
		skip("%s: no buffers here (%s)", what, tfd_last_error());
		goto out;
	}
	for (step = 0; step < 5 && r >= 0; step++) {
		tfd_publisher_dispatch(pub, 0);
		camera(&rg, &next_frame);
		r = publish_oldest(pub, &rg);
	}
	/* the camera takes back what it may, then the late subscriber comes */
	camera(&rg, &next_frame);
	if (r < 0 || tfd_subscriber_new(topic, 0, &sub) < 0 || wait_attached(pub) < 0) {
		printf("Bail out! %s: %s\n", what, tfd_last_error());
		exit(1);
	}
	r = tfd_subscriber_recv(sub, 2000, &m);
	ok(r == 0, "%s: a late subscriber gets the kept message (%d)", what, r);
	if (r == 0) {
		ok(intact(m), "%s: the kept message was not rewritten (seq %llu)", what,
		   (unsigned long long)tfd_message_seq(m));
		tfd_message_unref(m);
	}
	ring_put(&rg);
out:
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "%s: fds back to %d (%d)", what, fds0, count_fds());
}

int main(void)
{
	char dir[] = "/tmp/tfd-pubsub-loans-XXXXXX";
	struct tfd_buffer *b;
	int r;

	tap_init(120);
	tap_runtime_dir(dir);
	late_reader(POOL, "pool");
	late_latched(POOL, "pool");
	r = tfd_dmabuf_new(SIZE, TFD_DMABUF_ANY, 0, &b);
	if (r == 0) {
		tfd_buffer_unref(b);
		late_reader(DMABUF, "dmabuf");
		late_latched(DMABUF, "dmabuf");
	} else {
		skip("no dma-buf source here (%s): the VM suite runs the dma-buf cases",
		     tfd_last_error());
	}
	rm_tree(dir);
	return done_testing();
}
