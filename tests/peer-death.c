/* SPDX-License-Identifier: MIT */
/*
 * Peers that die: a consumer killed while it holds messages gives every
 * loan back; a producer that dies leaves the messages it sent readable;
 * a blocked receive or send wakes with a clear error. No SIGBUS, no leak.
 */
#include <signal.h>
#include <string.h>

#include "tap.h"
#include "tensorfd.h"

static struct tfd_message *message_of(struct tfd_buffer *b, uint64_t n)
{
	const int64_t shape = (int64_t)n;
	struct tfd_message *m;
	struct tfd_layout l;

	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &shape);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "x", b, &l);
	return m;
}

/* The consumer takes three messages, holds them, and is killed. */
static void consumer_killed(void)
{
	struct tfd_channel *ch[2];
	struct tfd_channel_stats st;
	struct tfd_message *m;
	struct tfd_buffer *b;
	int fds0 = count_fds(), i, r;
	pid_t pid;

	tfd_channel_pair(&ch[0], &ch[1]);
	pid = fork();
	if (pid == 0) {
		struct tfd_message *held[3];

		tfd_channel_unref(ch[0]);
		for (i = 0; i < 3; i++)
			if (tfd_channel_recv(ch[1], 5000, &held[i]) < 0)
				_exit(1);
		pause();
		_exit(0);
	}
	tfd_channel_unref(ch[1]);
	tfd_buffer_new(1 << 20, 0, &b);
	for (i = 0; i < 3; i++) {
		m = message_of(b, 1 << 20);
		tfd_channel_send(ch[0], m);
		tfd_message_unref(m);
	}
	ok(tfd_buffer_loans(b) == 3, "three messages on loan");
	usleep(100000);
	kill(pid, SIGKILL);
	ok(wait_child(pid) == 128 + SIGKILL, "consumer killed");
	do
		r = tfd_channel_dispatch(ch[0], 5000);
	while (r >= 0 && tfd_buffer_loans(b));
	ok(r == -ECONNRESET, "producer learns the peer is gone: %s", tfd_channel_strerror(ch[0]));
	tfd_channel_get_stats(ch[0], &st);
	ok(tfd_buffer_loans(b) == 0 && st.messages_in_flight == 0, "every loan came back");
	m = message_of(b, 16);
	ok(tfd_channel_send(ch[0], m) == -ECONNRESET, "sending to a dead peer: -ECONNRESET");
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	tfd_channel_unref(ch[0]);
	ok(count_fds() == fds0, "no fd leaked");
}

/* The producer sends, then dies; what the consumer holds stays readable. */
static void producer_dies(void)
{
	struct tfd_channel *ch[2];
	struct tfd_message *m, *m2;
	const uint8_t *p;
	int fds0 = count_fds(), maps0 = count_maps(), bad = 0, i;
	pid_t pid;

	tfd_channel_pair(&ch[0], &ch[1]);
	pid = fork();
	if (pid == 0) {
		struct tfd_buffer *b;

		tfd_channel_unref(ch[1]);
		tfd_buffer_new(8 << 20, 0, &b);
		memset(tfd_buffer_data(b), 0x5a, 8 << 20);
		m = message_of(b, 8 << 20);
		tfd_channel_send(ch[0], m);
		_exit(0);
	}
	tfd_channel_unref(ch[0]);
	ok(tfd_channel_recv(ch[1], 5000, &m) == 0, "received from the producer");
	ok(wait_child(pid) == 0, "producer exited");
	p = tfd_message_data(m, 0);
	for (i = 0; i < 8 << 20; i += 4096)
		bad += p[i] != 0x5a;
	ok(bad == 0, "the message outlives its producer, every page readable");
	ok(tfd_channel_recv(ch[1], 5000, &m2) == -ECONNRESET, "next receive: -ECONNRESET (%s)",
	   tfd_channel_strerror(ch[1]));
	ok(tfd_channel_recv(ch[1], 0, &m2) == -ECONNRESET, "and it stays so");
	tfd_channel_unref(ch[1]);
	ok(tfd_message_data(m, 0) == p && p[(8 << 20) - 1] == 0x5a,
	   "still readable after the channel is gone");
	tfd_message_unref(m);
	ok(count_fds() == fds0 && count_maps() == maps0, "no fd or mapping leaked");
}

/* A receive blocked forever wakes when the producer dies. */
static void blocked_receiver(void)
{
	struct tfd_channel *ch[2];
	struct tfd_message *m;
	pid_t pid;

	tfd_channel_pair(&ch[0], &ch[1]);
	pid = fork();
	if (pid == 0) {
		tfd_channel_unref(ch[1]);
		usleep(100000);
		_exit(0);
	}
	tfd_channel_unref(ch[0]);
	ok(tfd_channel_recv(ch[1], -1, &m) == -ECONNRESET, "blocked receive wakes: -ECONNRESET");
	wait_child(pid);
	tfd_channel_unref(ch[1]);
}

/* A sender whose peer never reads times out, then sees the peer die. */
static void stuck_consumer(void)
{
	struct tfd_channel *ch[2];
	struct tfd_message *m;
	struct tfd_buffer *b;
	int i, r = 0, fds0 = count_fds();
	pid_t pid;

	tfd_channel_pair(&ch[0], &ch[1]);
	pid = fork();
	if (pid == 0) {
		tfd_channel_unref(ch[0]);
		pause();
		_exit(0);
	}
	tfd_channel_unref(ch[1]);
	tfd_channel_set_send_timeout(ch[0], 100);
	tfd_buffer_new(4096, 0, &b);
	m = message_of(b, 4096);
	for (i = 0; i < 100000 && r == 0; i++)
		r = tfd_channel_send(ch[0], m);
	ok(r == -ETIMEDOUT, "a stuck consumer: send times out after %d messages", i - 1);
	kill(pid, SIGKILL);
	wait_child(pid);
	r = tfd_channel_send(ch[0], m);
	ok(r == -ECONNRESET, "then it dies: -ECONNRESET");
	ok(tfd_buffer_loans(b) == 0, "its loans came back");
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	tfd_channel_unref(ch[0]);
	ok(count_fds() == fds0, "no fd leaked");
}

int main(void)
{
	tap_init(60);
	signal(SIGPIPE, SIG_DFL);
	consumer_killed();
	producer_dies();
	blocked_receiver();
	stuck_consumer();
	return done_testing();
}
