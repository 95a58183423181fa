/* SPDX-License-Identifier: MIT */
/*
 * The decoder on real packets: a message produced by a channel decodes to
 * what was sent, and a hundred thousand mutations of it (bit flips, byte
 * changes, truncations) are either accepted or refused, never crash,
 * never read out of bounds (run it under ASan: make check-asan). The same
 * for a publisher's answer to an introspection request.
 */
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "internal.h"
#include "tap.h"
#include "wire.h"

static size_t capture(uint8_t *pkt, size_t cap)
{
	const int64_t shape[] = { 3, 5 };
	struct tfd_channel *ch;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { pkt, cap };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int sv[2], fd;
	ssize_t n;

	socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
	channel_new(sv[0], &ch);
	recv(sv[1], pkt, cap, 0); /* its hello */
	tfd_buffer_new(4096, 0, &b);
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 2, shape);
	l.byte_offset = 64;
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "hidden_state", b, &l);
	tfd_message_add_tensor(m, "image", b, &l);
	tfd_message_set_user_data(m, "step=7", 6);
	tfd_channel_send(ch, m);
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	n = recvmsg(sv[1], &mh, MSG_CMSG_CLOEXEC);
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		memcpy(&fd, CMSG_DATA(c), sizeof(fd));
		close(fd);
	}
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	tfd_channel_unref(ch);
	close(sv[1]);
	return n > 0 ? (size_t)n : 0;
}

/* A real WIRE_INFO: a publisher with one subscriber answers a raw request. */
static size_t capture_info(uint8_t *pkt, size_t cap)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct wire_info_request req = { .max_subscribers = 8 };
	struct tfd_publisher_stats st = { 0 };
	struct tfd_publisher *pub;
	struct tfd_subscriber *sub;
	ssize_t n = 0;
	int fd, i;

	if (tfd_publisher_new("wire/info", 0, &pub) < 0)
		return 0;
	tfd_subscriber_new("wire/info", 0, &sub);
	for (i = 0; i < 100 && st.subscribers == 0; i++) {
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
	}
	tfd_topic_path("wire/info", sa.sun_path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	wire_hdr_init(&req.h, WIRE_INFO_REQUEST, sizeof(req));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    send(fd, &req, sizeof(req), 0) == sizeof(req)) {
		tfd_publisher_dispatch(pub, 100);
		recv(fd, pkt, cap, 0); /* its hello */
		n = recv(fd, pkt, cap, 0);
	}
	close(fd);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	return n > 0 ? (size_t)n : 0;
}

static void info_mutations(void)
{
	static uint8_t pkt[WIRE_MAX_PACKET], mut[WIRE_MAX_PACKET];
	const struct wire_info_sub *subs;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int accepted = 0, refused = 0, broken = 0, i, r;
	struct wire_info w;
	struct wire_info_sub s0;
	char err[256];
	size_t len, mlen;

	len = capture_info(pkt, sizeof(pkt));
	ok(len == sizeof(struct wire_info) + sizeof(struct wire_info_sub),
	   "captured a %zu-byte info answer with one record", len);
	if (!len)
		return;
	r = wire_check_header(pkt, len, err, sizeof(err));
	if (r == WIRE_INFO)
		r = wire_decode_info(pkt, len, &w, &subs, err, sizeof(err));
	memcpy(&s0, subs, sizeof(s0));
	ok(r == 0 && w.n_subscribers == 1 && w.n_records == 1 && s0.pid == getpid() &&
		   w.pid == (uint64_t)getpid(),
	   "decodes to one subscriber, ours");
	for (i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(mut, pkt, len);
		mlen = len;
		if (x % 3 == 0)
			mut[(x >> 8) % len] ^= (uint8_t)(1u << ((x >> 40) % 8));
		else if (x % 3 == 1)
			mut[(x >> 8) % len] = (uint8_t)(x >> 32);
		else
			mlen = (x >> 8) % len;
		r = wire_check_header(mut, mlen, err, sizeof(err));
		if (r == WIRE_INFO)
			r = wire_decode_info(mut, mlen, &w, &subs, err, sizeof(err));
		if (r == 0) {
			if (w.n_records > w.n_subscribers || memchr(w.comm, 0, sizeof(w.comm)) == NULL ||
			    mlen != sizeof(w) + w.n_records * sizeof(*subs))
				broken++;
		}
		if (r >= 0)
			accepted++;
		else
			refused++;
	}
	ok(accepted + refused == 100000 && broken == 0,
	   "100000 mutations of it: %d accepted, %d refused, none unsound", accepted, refused);
}

int main(void)
{
	static struct wire_msg_info info;
	static uint8_t pkt[WIRE_MAX_PACKET], mut[WIRE_MAX_PACKET];
	uint64_t x = 0x2545f4914f6cdd1dull;
	int accepted = 0, refused = 0, i, r;
	char err[256];
	size_t len, mlen;

	char dir[] = "/tmp/tfd-wire-XXXXXX";

	tap_init(60);
	tap_runtime_dir(dir);
	len = capture(pkt, sizeof(pkt));
	ok(len > sizeof(struct wire_msg), "captured a %zu-byte message packet", len);
	ok(wire_check_header(pkt, len, err, sizeof(err)) == WIRE_MSG, "header checks pass");
	r = wire_decode_msg(pkt, len, &info, err, sizeof(err));
	ok(r == 0 && info.n_tensors == 2 && info.n_newbufs == 1 && info.user_len == 6 &&
		   strcmp(info.tensors[1].name, "image") == 0 &&
		   info.tensors[1].layout.shape[1] == 5 && info.tensors[1].layout.byte_offset == 64,
	   "decodes to what was sent");
	ok(wire_check_header(pkt, len - 1, err, sizeof(err)) == -EBADMSG,
	   "one byte short: -EBADMSG (%s)", err);
	for (i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(mut, pkt, len);
		mlen = len;
		switch (x % 4) {
		case 0:
			mut[(x >> 8) % len] ^= (uint8_t)(1u << ((x >> 40) % 8));
			break;
		case 1:
			mut[(x >> 8) % len] = (uint8_t)(x >> 32);
			break;
		case 2:
			mlen = (x >> 8) % len;
			break;
		default:
			mut[(x >> 8) % len] = 0xff;
			mut[(x >> 24) % len] = 0x80;
			break;
		}
		/* the channel runs both checks in this order */
		r = wire_check_header(mut, mlen, err, sizeof(err));
		if (r == WIRE_MSG)
			r = wire_decode_msg(mut, mlen, &info, err, sizeof(err));
		/* another type's header passes here; its decoder is another's test */
		if (r >= 0)
			accepted++;
		else
			refused++;
	}
	ok(accepted + refused == 100000, "100000 mutations: %d accepted, %d refused", accepted,
	   refused);
	ok(refused > 50000, "most mutations are refused");
	info_mutations();
	rm_tree(dir);
	return done_testing();
}
