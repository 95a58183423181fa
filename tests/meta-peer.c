/* SPDX-License-Identifier: MIT */
/*
 * The C end of the metadata round trip C -> Python -> C
 * (bindings/python/tests/test_basic.py, test_metadata_c_python_c):
 *
 *   meta-peer pub TOPIC   publish one latched message with a value of every
 *                         type and a capture time; exit once a subscriber
 *                         attached (or after 30 s, status 1)
 *   meta-peer sub TOPIC   receive one message and check those values; exit 0
 *                         when all are there and right, else say what is not
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tensorfd.h"

#define CAPTURE_NS	1234567890123ull

static int publish(const char *topic)
{
	struct tfd_publisher_stats st = { 0 };
	struct tfd_publisher *pub;
	struct tfd_message *m;
	int i, r;

	r = tfd_publisher_new(topic, TFD_PUBLISHER_LATCHED, &pub);
	if (r < 0) {
		fprintf(stderr, "publisher: %s\n", tfd_last_error());
		return 1;
	}
	tfd_message_new(&m);
	if (tfd_message_set_int(m, "frame", -7) < 0 ||
	    tfd_message_set_float(m, "exposure_s", 0.0125) < 0 ||
	    tfd_message_set_bool(m, "keyframe", true) < 0 ||
	    tfd_message_set_string(m, "frame_id", "cam/\xc3\xa9") < 0 ||
	    tfd_message_set_bytes(m, "calib", "\0\1\2", 3) < 0 ||
	    tfd_message_set_null(m, "none") < 0 ||
	    tfd_message_set_capture_time(m, CAPTURE_NS) < 0 || tfd_publisher_publish(pub, m) < 0) {
		fprintf(stderr, "publish: %s\n", tfd_last_error());
		return 1;
	}
	tfd_message_unref(m);
	for (i = 0; i < 3000 && st.attached_total == 0; i++) {
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
	}
	/* let the latched message go out */
	for (i = 0; i < 50; i++)
		tfd_publisher_dispatch(pub, 10);
	tfd_publisher_unref(pub);
	return st.attached_total ? 0 : 1;
}

static int check(const char *topic)
{
	struct tfd_subscriber *sub;
	struct tfd_message *m = NULL;
	const char *s = "", *why = NULL;
	const void *b = NULL;
	size_t blen = 0;
	int64_t i = 0;
	double f = 0;
	bool t = false;
	int r, tries;

	if (tfd_subscriber_new(topic, 0, &sub) < 0) {
		fprintf(stderr, "subscriber: %s\n", tfd_last_error());
		return 1;
	}
	for (tries = 0; tries < 30; tries++)
		if ((r = tfd_subscriber_recv(sub, 1000, &m)) == 0)
			break;
	if (!m) {
		fprintf(stderr, "no message: %s\n", tfd_subscriber_strerror(sub));
		return 1;
	}
	if (tfd_message_get_int(m, "frame", &i) < 0 || i != -7)
		why = "frame";
	else if (tfd_message_get_float(m, "exposure_s", &f) < 0 || f != 0.0125)
		why = "exposure_s";
	else if (tfd_message_get_bool(m, "keyframe", &t) < 0 || !t)
		why = "keyframe";
	else if (tfd_message_get_string(m, "frame_id", &s) < 0 || strcmp(s, "cam/\xc3\xa9"))
		why = "frame_id";
	else if (tfd_message_get_bytes(m, "calib", &b, &blen) < 0 || blen != 3 ||
		 memcmp(b, "\0\1\2", 3))
		why = "calib";
	else if (tfd_message_meta_key(m, 5, &s) != TFD_META_NULL || strcmp(s, "none"))
		why = "none (the sixth entry, a null)";
	else if (tfd_message_meta_count(m) != 6)
		why = "the number of entries";
	if (why)
		fprintf(stderr, "metadata %s is missing or wrong (%s)\n", why, tfd_last_error());
	else
		printf("ok: 6 values, capture time %llu\n",
		       (unsigned long long)tfd_message_capture_time(m));
	tfd_message_unref(m);
	tfd_subscriber_unref(sub);
	return why ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "pub"))
		return publish(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "sub"))
		return check(argv[2]);
	fprintf(stderr, "usage: meta-peer pub|sub TOPIC\n");
	return 2;
}
