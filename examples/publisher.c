/* SPDX-License-Identifier: MIT */
/*
 * publisher: publish a float32 [480, 640] "image" on a topic at a steady
 * rate. Each frame is drawn in place in a buffer loaned from the publisher's
 * pool, so subscribers map the very pages it wrote: nothing is copied.
 *
 *   publisher [-t TOPIC] [-n FRAMES] [-r FPS] [-w SUBSCRIBERS]
 *
 * Defaults: camera/front, 100 frames, 30 per second. -w waits up to 10 s for
 * that many subscribers before the first frame. See examples/subscriber.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tensorfd.h>

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Loan, fill, send: the frame's pages are the ones subscribers map. */
static int publish_frame(struct tfd_publisher *pub, uint64_t frame)
{
	const int64_t shape[2] = { 480, 640 };
	struct tfd_message *msg;
	float *px;
	int r, i, tries = 100;

	/* -ENOBUFS: subscribers still hold every pool buffer; take releases in, retry */
	while ((r = tfd_publisher_loan_message(pub, "image", (struct tfd_dtype){ TFD_FLOAT, 32, 1 },
					       2, shape, &msg)) == -ENOBUFS && tries--)
		tfd_publisher_dispatch(pub, 10);
	if (r < 0)
		return r;
	px = tfd_message_data(msg, 0);
	for (i = 0; i < 480 * 640; i++)
		px[i] = (float)((i / 640 + i % 640 + frame) % 256);
	r = tfd_message_set_int(msg, "frame", (int64_t)frame);
	if (r < 0) {
		tfd_message_unref(msg);
		return r;
	}
	/* publishes and lets go of msg; its buffer returns to the pool once released */
	return tfd_publisher_send(pub, msg);
}

int main(int argc, char **argv)
{
	const char *topic = "camera/front";
	long frames = 100, fps = 30, want = 0, f;
	struct tfd_publisher *pub;
	struct tfd_publisher_stats st;
	int64_t next, end, wait;
	int opt, r;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: publisher [-t TOPIC] [-n FRAMES] [-r FPS] [-w SUBSCRIBERS]\n"
		       "Publish a float32 [480, 640] \"image\" on TOPIC (camera/front), FRAMES\n"
		       "frames (100) at FPS (30) a second, after waiting up to 10 s for\n"
		       "SUBSCRIBERS (0). Run examples/subscriber beside it.\n");
		return 0;
	}
	while ((opt = getopt(argc, argv, "t:n:r:w:")) != -1) {
		if (opt == 't')
			topic = optarg;
		else if (opt == 'n')
			frames = atol(optarg);
		else if (opt == 'r')
			fps = atol(optarg);
		else if (opt == 'w')
			want = atol(optarg);
		else {
			fprintf(stderr, "usage: publisher [-t TOPIC] [-n FRAMES] [-r FPS] [-w SUBSCRIBERS]\n");
			return 2;
		}
	}
	if ((r = tfd_publisher_new(topic, 0, &pub)) < 0) {
		fprintf(stderr, "publisher of %s: %s\n", topic, tfd_last_error());
		return 1;
	}
	/* the publisher has no thread: dispatch accepts subscribers and takes releases in */
	if (want > 0 && tfd_publisher_wait_subscribers(pub, (unsigned int)want, 10000) < 0)
		fprintf(stderr, "%s; publishing anyway\n", tfd_publisher_strerror(pub));

	for (f = 0, next = now_ms(); f < frames && r >= 0; f++) {
		r = publish_frame(pub, (uint64_t)f);
		/* serve the subscribers until the next frame is due */
		next += 1000 / (fps > 0 ? fps : 1);
		while ((wait = next - now_ms()) > 0)
			tfd_publisher_dispatch(pub, (int)wait);
	}
	if (r < 0)
		fprintf(stderr, "frame %ld: %s (%s)\n", f - 1, strerror(-r), tfd_publisher_strerror(pub));
	/* before closing, let the subscribers release (and so receive) the last frames */
	for (end = now_ms() + 2000; now_ms() < end; tfd_publisher_dispatch(pub, 10))
		if (tfd_publisher_get_stats(pub, &st) < 0 || st.pool_buffers_busy == 0)
			break;
	printf("%s: published %llu frames to %llu subscribers, %llu dropped, %llu copied, "
	       "%llu pool buffers\n", topic, (unsigned long long)st.published,
	       (unsigned long long)st.attached_total, (unsigned long long)st.dropped,
	       (unsigned long long)st.copied_tensors, (unsigned long long)st.pool_buffers);
	tfd_publisher_unref(pub);
	return r < 0;
}
