/* SPDX-License-Identifier: MIT */
/*
 * The ways to receive: a non-blocking try, a timeout, a pollable fd that
 * an event loop waits on, and dispatch, which takes in releases without
 * consuming messages.
 */
#include <poll.h>
#include <stdlib.h>
#include <time.h>

#include "tap.h"
#include "tensorfd.h"

static void send_bytes(struct tfd_channel *ch, const char *s)
{
	struct tfd_message *m;

	tfd_message_new(&m);
	tfd_message_set_user_data(m, s, strlen(s));
	tfd_channel_send(ch, m);
	tfd_message_unref(m);
}

static void try_and_timeout(struct tfd_channel *a, struct tfd_channel *b)
{
	struct tfd_message *m = NULL;
	uint64_t t0;
	int r;

	ok(tfd_channel_recv(b, 0, &m) == -EAGAIN && !m, "try on an empty channel: -EAGAIN");
	t0 = now_ms();
	r = tfd_channel_recv(b, 50, &m);
	ok(r == -ETIMEDOUT && now_ms() - t0 >= 50, "timeout of 50 ms: -ETIMEDOUT");
	send_bytes(a, "one");
	ok(tfd_channel_recv(b, 1000, &m) == 0 && m, "a message within the timeout");
	tfd_message_unref(m);
}

static void pollable(struct tfd_channel *a, struct tfd_channel *b)
{
	struct pollfd pfd = { .fd = tfd_channel_get_fd(b), .events = POLLIN };
	struct tfd_message *m;
	int n = 0;

	ok(pfd.fd >= 0, "channel fd %d (%s backend)", pfd.fd, tfd_channel_backend(b));
	ok(poll(&pfd, 1, 0) == 0, "not readable when nothing was sent");
	send_bytes(a, "x");
	send_bytes(a, "y");
	send_bytes(a, "z");
	ok(poll(&pfd, 1, 1000) == 1 && (pfd.revents & POLLIN), "readable after a send");
	while (tfd_channel_recv(b, 0, &m) == 0) {
		n++;
		tfd_message_unref(m);
	}
	ok(n == 3, "drained three messages with timeout 0");
	ok(poll(&pfd, 1, 0) == 0, "not readable once drained");
}

static void dispatch(struct tfd_channel *a, struct tfd_channel *b)
{
	const int64_t n = 16;
	struct tfd_message *m, *got;
	struct tfd_buffer *buf;
	struct tfd_layout l;

	tfd_buffer_new(4096, 0, &buf);
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &n);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", buf, &l);
	tfd_channel_send(a, m);
	tfd_message_unref(m);
	ok(tfd_buffer_loans(buf) == 1, "on loan after the send");
	/* b also sends a message to a, which dispatch must keep for recv */
	send_bytes(b, "for a");
	ok(tfd_channel_recv(b, 1000, &got) == 0, "b received the tensor");
	tfd_message_unref(got);
	ok(tfd_channel_dispatch(a, 1000) >= 1 && tfd_buffer_loans(buf) == 0,
	   "dispatch took in the release");
	ok(tfd_channel_recv(a, 0, &got) == 0 &&
		   memcmp(tfd_message_get_user_data(got, NULL), "for a", 5) == 0,
	   "and kept b's message for recv");
	tfd_message_unref(got);
	ok(tfd_channel_dispatch(a, 0) == 0, "dispatch with nothing there returns 0");
	tfd_buffer_unref(buf);
}

static void arguments(struct tfd_channel *a)
{
	struct tfd_message *m;

	ok(tfd_channel_recv(NULL, 0, &m) == -EINVAL && tfd_channel_send(a, NULL) == -EINVAL,
	   "NULL arguments: -EINVAL");
	ok(tfd_channel_set_send_timeout(a, -2) == -EINVAL, "bad send timeout: -EINVAL");
	ok(tfd_channel_unref(NULL) == NULL, "unref(NULL)");
}

int main(void)
{
	struct tfd_channel *a, *b;
	const char *want = getenv("TENSORFD_NOTIFY");
	int fds0;

	tap_init(30);
	fds0 = count_fds();
	tfd_channel_pair(&a, &b);
	ok(strcmp(tfd_channel_backend(b), want && !strcmp(want, "poll") ? "poll" : "io_uring") == 0,
	   "backend is %s", tfd_channel_backend(b));
	try_and_timeout(a, b);
	pollable(a, b);
	dispatch(a, b);
	arguments(a);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	ok(count_fds() == fds0, "no fd leaked");
	return done_testing();
}
