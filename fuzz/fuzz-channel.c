/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: a channel whose peer is hostile. One end of a socketpair is
 * a real channel (channel_new()); the fuzzer writes raw packets into the
 * other end, some with fds attached, and the channel receives until it
 * ends. Checked: nothing crashes, every tensor handed out lies inside its
 * buffer's mapping, a channel that ended stays ended with the same error,
 * and when it is all closed no fd is left open.
 *
 * Input: one mode byte, then records of { u8 flags, u16 len, len bytes }.
 *   mode bit 0: poll(2) backend (else io_uring)
 *   mode bit 1: keep received messages until a release record (else drop at once)
 *   mode bit 2: the channel is a publisher's end (it only sends): it must
 *               never hand out a message, whatever arrives
 *   flags bit 0: attach a sealed 64 KiB memfd (a valid buffer)
 *   flags bit 1: attach an unsealed memfd
 *   flags bit 2: attach /dev/null
 *   flags bit 3: fix the header (magic, version, length, reserved)
 *   flags bit 4: tfd_channel_dispatch() before receiving
 *   flags bit 5: release the messages kept so far
 *   flags bit 6: the channel sends a message first (a fresh buffer and a shared one)
 *   flags bit 7: attach the sealed memfd a second time (two buffers from one file)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "internal.h"
#include "wire.h"

#define KEEP_MAX 64

enum {
	ATTACH_SEALED = 1 << 0,
	ATTACH_UNSEALED = 1 << 1,
	ATTACH_DEVNULL = 1 << 2,
	FIX_HEADER = 1 << 3,
	DISPATCH = 1 << 4,
	RELEASE = 1 << 5,
	SEND_FIRST = 1 << 6,
	ATTACH_SEALED_AGAIN = 1 << 7,
};

static struct tfd_buffer *sealed;	/* its fd is what ATTACH_SEALED sends */
static struct tfd_buffer *shared;	/* named by every SEND_FIRST message */
static int sealed_fd = -1, unsealed_fd = -1, null_fd = -1;

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	FUZZ_CHECK(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	FUZZ_CHECK(tfd_buffer_new(65536, 0, &sealed) == 0);
	sealed_fd = tfd_buffer_fd(sealed);
	FUZZ_CHECK(tfd_buffer_new(4096, 0, &shared) == 0);
	unsealed_fd = memfd_create("fuzz-unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	FUZZ_CHECK(unsealed_fd >= 0 && ftruncate(unsealed_fd, 65536) == 0);
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	FUZZ_CHECK(null_fd >= 0);
	return 0;
}

/* What the channel sent us (hello, releases, messages): read and drop, closing fds. */
static void drain(int fd)
{
	static char buf[WIRE_MAX_PACKET + 8];
	char cbuf[CMSG_SPACE(sizeof(int) * TFD_MAX_TENSORS)] __attribute__((aligned(8)));
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh;
	struct cmsghdr *c;
	int i, n, got;

	for (;;) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		if (recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0)
			return;
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (i = 0; i < n; i++) {
				memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				close(got);
			}
		}
	}
}

static int send_raw(int fd, const void *data, size_t len, unsigned int flags)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)] __attribute__((aligned(8)));
	struct iovec iov = { (void *)data, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int fds[4];
	size_t n = 0;

	if (flags & ATTACH_SEALED)
		fds[n++] = sealed_fd;
	if (flags & ATTACH_UNSEALED)
		fds[n++] = unsealed_fd;
	if (flags & ATTACH_DEVNULL)
		fds[n++] = null_fd;
	if (flags & ATTACH_SEALED_AGAIN)
		fds[n++] = sealed_fd;
	if (n) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	return sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* The application's view of a received message: every tensor lies inside its mapping. */
static void consume(struct tfd_message *m)
{
	const volatile uint8_t *base;
	const struct tfd_layout *l;
	struct tfd_buffer *b;
	uint64_t lo, hi;
	size_t user_len;
	int i, j, n;

	n = tfd_message_count(m);
	FUZZ_CHECK(n >= 0 && n <= TFD_MAX_TENSORS);
	for (i = 0; i < n; i++) {
		l = tfd_message_layout(m, (unsigned int)i);
		b = tfd_message_buffer(m, (unsigned int)i);
		FUZZ_CHECK(l && b && tfd_message_name(m, (unsigned int)i));
		FUZZ_CHECK(!tfd_buffer_is_writable(b));
		FUZZ_CHECK(l->ndim >= 0 && l->ndim <= TFD_MAX_NDIM);
		for (j = 0; j < l->ndim; j++)
			FUZZ_CHECK(l->shape[j] >= 0);
		FUZZ_CHECK(tfd_layout_span(l, &lo, &hi) == 0);
		FUZZ_CHECK(lo <= hi && hi <= tfd_buffer_size(b));
		base = tfd_buffer_data(b);
		FUZZ_CHECK(base != NULL && base != MAP_FAILED);
		if (hi > lo) {
			/* a wrong bounds check faults here: the mapping is exactly the claimed size */
			(void)base[lo];
			(void)base[hi - 1];
		}
	}
	tfd_message_get_user_data(m, &user_len);
	FUZZ_CHECK(user_len <= TFD_MAX_USER_DATA);
}

static void send_one(struct tfd_channel *ch)
{
	const int64_t shape[] = { 16 };
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;

	if (tfd_buffer_new(4096, 0, &b) < 0)
		return;
	FUZZ_CHECK(tfd_layout_init(&l, (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 1, shape) == 0);
	FUZZ_CHECK(tfd_message_new(&m) == 0);
	FUZZ_CHECK(tfd_message_add_tensor(m, "fresh", b, &l) == 0);
	FUZZ_CHECK(tfd_message_add_tensor(m, "shared", shared, &l) == 0);
	/* may fail (the socket is full, the channel ended): the next records see to that */
	tfd_channel_send(ch, m);
	tfd_message_unref(m);
	/* only the channel holds it now: the next send or dispatch forgets it */
	tfd_buffer_unref(b);
}

static void release_all(struct tfd_message **kept, unsigned int *n)
{
	while (*n)
		tfd_message_unref(kept[--*n]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t pkt[WIRE_MAX_PACKET + 64];
	struct tfd_message *kept[KEEP_MAX], *m;
	struct tfd_channel *ch;
	unsigned int n_kept = 0, flags;
	int sv[2], before, r, dead = 0;
	uint8_t mode;
	uint16_t len;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	if (mode & 1)
		setenv("TENSORFD_NOTIFY", "poll", 1);
	else
		unsetenv("TENSORFD_NOTIFY");
	before = open_fds();
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	FUZZ_CHECK(channel_new(sv[0], &ch) == 0);
	FUZZ_CHECK(tfd_channel_set_send_timeout(ch, 0) == 0);
	if (mode & 4)
		channel_set_send_only(ch);
	drain(sv[1]);

	while (size >= 3 && !dead) {
		flags = data[0];
		memcpy(&len, data + 1, sizeof(len));
		data += 3;
		size -= 3;
		if (len > size)
			len = (uint16_t)size;
		memcpy(pkt, data, len);
		data += len;
		size -= len;
		if ((flags & FIX_HEADER) && len >= sizeof(struct wire_hdr)) {
			struct wire_hdr h;

			memcpy(&h, pkt, sizeof(h));
			h.magic = WIRE_MAGIC;
			h.version = WIRE_VERSION;
			h.len = len;
			h.reserved = 0;
			memcpy(pkt, &h, sizeof(h));
		}
		if (flags & SEND_FIRST)
			send_one(ch);
		if (flags & RELEASE)
			release_all(kept, &n_kept);
		if (send_raw(sv[1], pkt, len, flags) < 0)
			break;	/* the channel shut its socket down, or it is full */
		if (flags & DISPATCH) {
			r = tfd_channel_dispatch(ch, 0);
			FUZZ_CHECK(r >= 0 || r != -EAGAIN);
		}
		for (;;) {
			m = NULL;
			r = tfd_channel_recv(ch, 0, &m);
			if (r < 0)
				break;
			FUZZ_CHECK(r == 0 && m);
			FUZZ_CHECK(!(mode & 4));
			consume(m);
			if ((mode & 2) && n_kept < KEEP_MAX)
				kept[n_kept++] = m;
			else
				tfd_message_unref(m);
		}
		if (r != -EAGAIN && r != -ETIMEDOUT) {
			/* it ended: for good, with the same error and a reason */
			dead = r;
			FUZZ_CHECK(tfd_channel_recv(ch, 0, &m) == dead);
			FUZZ_CHECK(tfd_channel_strerror(ch)[0] != '\0');
		}
		drain(sv[1]);
	}
	/* messages may outlive their channel */
	tfd_channel_unref(ch);
	release_all(kept, &n_kept);
	close(sv[1]);
	FUZZ_CHECK(open_fds() == before);
	return 0;
}
