/* SPDX-License-Identifier: MIT */
/*
 * Buffer reuse: thousands of messages over two buffers pass two fds in
 * all; loans come back when the consumer drops its messages; buffers the
 * producer drops are forgotten, and the consumer unmaps them.
 */
#include "tap.h"
#include "tensorfd.h"

#define MESSAGES 5000
#define SHORT_LIVED 200

struct report {
	uint64_t fds_received;
	uint64_t mapped_before_forget;
	uint64_t mapped_after_forget;
	uint64_t bad;
};

static int consumer(struct tfd_channel *ch)
{
	struct tfd_channel_stats st;
	struct report rep = { 0 };
	struct tfd_message *m;
	uint64_t want;
	int i;

	for (i = 0; i < MESSAGES; i++) {
		if (tfd_channel_recv(ch, 10000, &m) < 0)
			return 10;
		want = tfd_message_seq(m);
		if (*(const uint64_t *)tfd_message_data(m, 0) != want)
			rep.bad++;
		tfd_message_unref(m);
	}
	tfd_channel_get_stats(ch, &st);
	rep.fds_received = st.fds_received;
	for (i = 0; i < SHORT_LIVED; i++) {
		if (tfd_channel_recv(ch, 10000, &m) < 0)
			return 11;
		tfd_message_unref(m);
	}
	tfd_channel_get_stats(ch, &st);
	rep.mapped_before_forget = st.buffers_mapped;
	/* the producer's next send carries the forget */
	if (tfd_channel_recv(ch, 10000, &m) < 0)
		return 12;
	tfd_message_unref(m);
	tfd_channel_get_stats(ch, &st);
	rep.mapped_after_forget = st.buffers_mapped;
	if (tfd_message_new(&m) < 0 || tfd_message_set_user_data(m, &rep, sizeof(rep)) < 0 ||
	    tfd_channel_send(ch, m) < 0)
		return 13;
	tfd_message_unref(m);
	return 0;
}

static struct tfd_message *message_of(struct tfd_buffer *b)
{
	const int64_t n = 512;
	struct tfd_message *m;
	struct tfd_layout l;

	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "x", b, &l);
	return m;
}

/* Wait until the consumer gave everything back. */
static int drain(struct tfd_channel *ch)
{
	struct tfd_channel_stats st;
	int tries;

	for (tries = 0; tries < 1000; tries++) {
		tfd_channel_get_stats(ch, &st);
		if (st.messages_in_flight == 0)
			return 0;
		if (tfd_channel_dispatch(ch, 100) < 0)
			return -1;
	}
	return -1;
}

int main(void)
{
	struct tfd_buffer *b[2], *tmp;
	struct tfd_channel *ch[2];
	struct tfd_channel_stats st;
	const struct report *rep;
	struct tfd_message *m;
	unsigned int max_loans = 0;
	int fds0, i;
	pid_t pid;

	tap_init(120);
	fds0 = count_fds();
	tfd_channel_pair(&ch[0], &ch[1]);
	pid = fork();
	if (pid == 0) {
		tfd_channel_unref(ch[0]);
		_exit(consumer(ch[1]));
	}
	tfd_channel_unref(ch[1]);
	tfd_buffer_new(4096, 0, &b[0]);
	tfd_buffer_new(4096, 0, &b[1]);
	for (i = 0; i < MESSAGES; i++) {
		struct tfd_buffer *cur = b[i % 2];

		/* reuse a buffer only once the consumer released it */
		while (tfd_buffer_loans(cur) && tfd_channel_dispatch(ch[0], 1000) >= 0)
			;
		*(uint64_t *)tfd_buffer_data(cur) = (uint64_t)i + 1;
		m = message_of(cur);
		if (tfd_channel_send(ch[0], m) < 0)
			break;
		tfd_message_unref(m);
		if (tfd_buffer_loans(cur) > max_loans)
			max_loans = tfd_buffer_loans(cur);
	}
	ok(i == MESSAGES, "%d messages sent over two buffers", MESSAGES);
	ok(max_loans == 1, "a buffer was on loan to one message at a time");
	ok(drain(ch[0]) == 0 && tfd_buffer_loans(b[0]) == 0 && tfd_buffer_loans(b[1]) == 0,
	   "every loan came back");
	for (i = 0; i < SHORT_LIVED; i++) {
		tfd_buffer_new(4096, 0, &tmp);
		m = message_of(tmp);
		tfd_channel_send(ch[0], m);
		tfd_message_unref(m);
		tfd_buffer_unref(tmp);
	}
	drain(ch[0]);
	m = message_of(b[0]);
	ok(tfd_channel_send(ch[0], m) == 0, "a send after the short-lived buffers died");
	tfd_message_unref(m);
	tfd_channel_get_stats(ch[0], &st);
	ok(st.fds_sent == 2 + SHORT_LIVED, "fds sent: %llu", (unsigned long long)st.fds_sent);
	ok(tfd_channel_recv(ch[0], 10000, &m) == 0, "consumer's report arrived");
	rep = tfd_message_get_user_data(m, NULL);
	ok(rep && rep->bad == 0, "consumer saw the right value in every message");
	ok(rep && rep->fds_received == 2, "consumer received 2 fds for %d messages", MESSAGES);
	ok(rep && rep->mapped_after_forget == 2,
	   "dead buffers were forgotten: %llu mapped after %d short-lived, %llu at the end",
	   rep ? (unsigned long long)rep->mapped_before_forget : 0, SHORT_LIVED,
	   rep ? (unsigned long long)rep->mapped_after_forget : 0);
	tfd_message_unref(m);
	ok(wait_child(pid) == 0, "consumer exited cleanly");
	tfd_buffer_unref(b[0]);
	tfd_buffer_unref(b[1]);
	tfd_channel_unref(ch[0]);
	ok(count_fds() == fds0, "no fd leaked");
	return done_testing();
}
