/* SPDX-License-Identifier: MIT */
/*
 * The decoder on real packets: a message produced by a channel decodes to
 * what was sent, and a hundred thousand mutations of it (bit flips, byte
 * changes, truncations) are either accepted or refused, never crash,
 * never read out of bounds (run it under ASan: make check-asan).
 */
#include <stdint.h>
#include <sys/socket.h>

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

int main(void)
{
	static struct wire_msg_info info;
	static uint8_t pkt[WIRE_MAX_PACKET], mut[WIRE_MAX_PACKET];
	uint64_t x = 0x2545f4914f6cdd1dull;
	int accepted = 0, refused = 0, i, r;
	char err[256];
	size_t len, mlen;

	tap_init(60);
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
		if (r == 0 || r == WIRE_HELLO || r == WIRE_RELEASE || r == WIRE_FORGET)
			accepted++;
		else if (r < 0)
			refused++;
	}
	ok(accepted + refused == 100000, "100000 mutations: %d accepted, %d refused", accepted,
	   refused);
	ok(refused > 50000, "most mutations are refused");
	return done_testing();
}
