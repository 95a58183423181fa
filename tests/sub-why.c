/* SPDX-License-Identifier: MIT */
/*
 * A subscriber's wait that ends empty says why (tfd_subscriber_strerror,
 * tfd_last_error), one reason per cause: a misspelt topic (no socket, and
 * the topics that are there), a publisher that went away, a topic in
 * another runtime directory, and a subscriber that holds every message
 * its publisher will send it; in that last case the drops the publisher
 * counted show in the subscriber's own stats once it lets go.
 */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tensorfd.h"

static char rundir[] = "/tmp/tfd-why-XXXXXX";

static int publish_one(struct tfd_publisher *pub, uint64_t v)
{
	struct tfd_message *m;
	int r;

	tfd_message_new(&m);
	tfd_message_set_int(m, "v", (int64_t)v);
	r = tfd_publisher_publish(pub, m);
	tfd_message_unref(m);
	return r;
}

/* Dispatch pub while waiting up to 2 s for one message on sub. */
static int recv_serving(struct tfd_publisher *pub, struct tfd_subscriber *sub,
			struct tfd_message **m)
{
	int i, r = -ETIMEDOUT;

	for (i = 0; i < 200 && r == -ETIMEDOUT; i++) {
		if (pub)
			tfd_publisher_dispatch(pub, 0);
		r = tfd_subscriber_recv(sub, 10, m);
	}
	return r;
}

static void misspelt(void)
{
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_message *m;
	const char *why;
	int r;

	tfd_publisher_new("why/front", 0, &pub);
	tfd_subscriber_new("why/frnt", 0, &sub);
	r = tfd_subscriber_recv(sub, 50, &m);
	why = sub ? tfd_subscriber_strerror(sub) : "";
	ok(r == -ETIMEDOUT && strstr(why, "no publisher of why/frnt") &&
		   strstr(why, "no socket at") && strstr(why, "topics there: front") &&
		   !strcmp(why, tfd_last_error()),
	   "a misspelt topic: %s", why);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
}

static void gone(void)
{
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_message *m = NULL;
	const char *why;
	int r;

	tfd_publisher_new("why/gone", 0, &pub);
	tfd_subscriber_new("why/gone", 0, &sub);
	for (r = 0; r < 100 && tfd_publisher_dispatch(pub, 10) >= 0; r++) {
		struct tfd_publisher_stats st;

		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers)
			break;
	}
	publish_one(pub, 1);
	r = recv_serving(pub, sub, &m);
	tfd_message_unref(m);
	tfd_publisher_unref(pub);
	ok(r == 0 && tfd_subscriber_recv(sub, 1000, &m) == -ECONNRESET,
	   "attached, received, then the publisher went: -ECONNRESET once");
	r = tfd_subscriber_recv(sub, 50, &m);
	why = tfd_subscriber_strerror(sub);
	ok(r == -ETIMEDOUT && strstr(why, "publisher of why/gone") && strstr(why, "gone") &&
		   strstr(why, "waiting for a new one"),
	   "a publisher that went away: %s", why);
	tfd_subscriber_unref(sub);
}

static void elsewhere(void)
{
	char other[] = "/tmp/tensorfd-why-XXXXXX";
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_message *m;
	const char *why;
	int r;

	if (!mkdtemp(other)) {
		skip("mkdtemp: %s", strerror(errno));
		return;
	}
	/* a publisher whose runtime directory is not this subscriber's */
	setenv("TENSORFD_RUNTIME_DIR", other, 1);
	r = tfd_publisher_new("why/other", 0, &pub);
	setenv("TENSORFD_RUNTIME_DIR", rundir, 1);
	tfd_subscriber_new("why/other", 0, &sub);
	r = r < 0 ? r : tfd_subscriber_recv(sub, 50, &m);
	why = sub ? tfd_subscriber_strerror(sub) : "";
	ok(r == -ETIMEDOUT && strstr(why, "no socket at") && strstr(why, other) &&
		   strstr(why, "another runtime directory"),
	   "a topic in another runtime directory: %s", why);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	rm_tree(other);
}

static void holding(void)
{
	struct tfd_message *held[16] = { NULL }, *m = NULL;
	struct tfd_subscriber_stats ss = { 0 };
	struct tfd_subscriber_info info = { 0 };
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_publisher_stats st;
	const char *why;
	int i, r = 0, got = 0;

	tfd_publisher_new("why/held", 0, &pub);
	tfd_subscriber_new("why/held", 0, &sub);
	for (i = 0; i < 100; i++) {
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers)
			break;
	}
	/* the subscriber takes and keeps 16, the publisher goes on to 60 */
	for (i = 1; i <= 16; i++)
		publish_one(pub, (uint64_t)i);
	for (i = 0; i < 16 && r == 0; i++, got++)
		r = recv_serving(pub, sub, &held[i]);
	for (i = 17; i <= 60; i++) {
		publish_one(pub, (uint64_t)i);
		tfd_publisher_dispatch(pub, 0);
	}
	r = tfd_subscriber_recv(sub, 50, &m);
	why = tfd_subscriber_strerror(sub);
	ok(got == 16 && r == -ETIMEDOUT && strstr(why, "holds 16 unreleased messages") &&
		   strstr(why, "tfd_message_unref"),
	   "a subscriber holding all it may: %s", why);
	for (i = 0; i < 16; i++)
		tfd_message_unref(held[i]);
	/* let go: the oldest waiting message comes, after the publisher's drops */
	r = recv_serving(pub, sub, &m);
	tfd_subscriber_get_stats(sub, &ss);
	tfd_publisher_get_subscriber(pub, 0, &info);
	ok(r == 0 && ss.dropped > 0 && ss.dropped == info.dropped,
	   "then its own stats show the publisher's drops (%llu, publisher counted %llu)",
	   (unsigned long long)ss.dropped, (unsigned long long)info.dropped);
	tfd_message_unref(m);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
}

int main(void)
{
	int fds;

	tap_init(60);
	tap_runtime_dir(rundir);
	fds = count_fds();
	misspelt();
	gone();
	elsewhere();
	holding();
	ok(count_fds() == fds, "no fd left over (%d, were %d)", count_fds(), fds);
	rm_tree(rundir);
	return done_testing();
}
