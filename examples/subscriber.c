/* SPDX-License-Identifier: MIT */
/*
 * subscriber: follow the "image" frames of examples/publisher.c. Start it
 * before or after the publisher: it waits for one, and waits again if the
 * publisher goes away. The frames are read in place, mapped read-only from
 * the publisher's pool.
 *
 *   subscriber [-t TOPIC] [-n MESSAGES] [-T SECONDS]
 *
 * Defaults: camera/front, 100 messages (received or dropped for us), and
 * failure after 10 s without a message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tensorfd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* The frame number the publisher put in the "frame" metadata, if the pixels agree. */
static int check_frame(const struct tfd_message *m, uint64_t *frame)
{
	const struct tfd_layout *l = tfd_message_layout(m, 0);
	const float *px = tfd_message_data(m, 0);
	int64_t n;

	if (tfd_message_find(m, "image") != 0 || tfd_message_get_int(m, "frame", &n) < 0 ||
	    l->ndim != 2 || l->shape[0] != 480 || l->shape[1] != 640 || l->dtype.code != TFD_FLOAT)
		return -EBADMSG;
	*frame = (uint64_t)n;
	/* pixel [r][c] is (r + c + frame) % 256: look at [2][3] */
	return px[2 * 640 + 3] == (float)((5 + *frame) % 256) ? 0 : -EBADMSG;
}

int main(int argc, char **argv)
{
	const char *topic = "camera/front";
	long want = 100, idle_s = 10;
	struct tfd_subscriber *sub;
	struct tfd_subscriber_stats st = { 0 };
	struct tfd_message *m;
	uint64_t frame = 0, lat, lat_sum = 0, lat_max = 0, last = now_ns();
	int opt, r = 0;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: subscriber [-t TOPIC] [-n MESSAGES] [-T IDLE_SECONDS]\n"
		       "Receive MESSAGES (100) frames of examples/publisher from TOPIC\n"
		       "(camera/front), check each frame's pixels, and give up after\n"
		       "IDLE_SECONDS (10) without a message.\n");
		return 0;
	}
	while ((opt = getopt(argc, argv, "t:n:T:")) != -1) {
		if (opt == 't')
			topic = optarg;
		else if (opt == 'n')
			want = atol(optarg);
		else if (opt == 'T')
			idle_s = atol(optarg);
		else {
			fprintf(stderr, "usage: subscriber [-t TOPIC] [-n MESSAGES] [-T IDLE_SECONDS]\n");
			return 2;
		}
	}
	if (tfd_subscriber_new(topic, 0, &sub) < 0) {
		fprintf(stderr, "subscriber of %s: %s\n", topic, tfd_last_error());
		return 1;
	}
	while (st.received + st.dropped < (uint64_t)want) {
		r = tfd_subscriber_recv(sub, 1000, &m);
		if (r == -ECONNRESET)	/* said once; the next publisher is picked up by itself */
			printf("%s\n", tfd_subscriber_strerror(sub));
		if (r == -ECONNRESET || r == -ETIMEDOUT) {
			if (now_ns() - last < (uint64_t)idle_s * 1000000000)
				continue;
			fprintf(stderr, "no message for %ld s\n", idle_s);
			break;
		}
		if (r < 0) {	/* -EACCES: the publisher refused us */
			fprintf(stderr, "%s: %s\n", strerror(-r), tfd_subscriber_strerror(sub));
			break;
		}
		last = now_ns();
		lat = last - tfd_message_timestamp(m);	/* same machine, same monotonic clock */
		lat_sum += lat;
		lat_max = lat > lat_max ? lat : lat_max;
		r = check_frame(m, &frame);
		tfd_subscriber_get_stats(sub, &st);
		if (st.received <= 5 || r < 0)
			printf("seq %llu frame %llu: latency %llu us, %llu dropped so far, %s%s\n",
			       (unsigned long long)tfd_message_seq(m), (unsigned long long)frame,
			       (unsigned long long)lat / 1000, (unsigned long long)st.dropped,
			       tfd_message_copied(m, 0) ? "copied" : "zero-copy",
			       r < 0 ? ", WRONG PIXELS" : "");
		tfd_message_unref(m);	/* releases the frame's buffer to the publisher */
		if (r < 0)
			break;
	}
	printf("%s: %llu received, %llu dropped, attached %llu times, latency avg %llu us, "
	       "max %llu us\n", topic, (unsigned long long)st.received,
	       (unsigned long long)st.dropped, (unsigned long long)st.attaches,
	       (unsigned long long)(st.received ? lat_sum / st.received / 1000 : 0),
	       (unsigned long long)lat_max / 1000);
	tfd_subscriber_unref(sub);
	return st.received + st.dropped >= (uint64_t)want && r >= 0 ? 0 : 1;
}
