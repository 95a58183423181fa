/* SPDX-License-Identifier: MIT */
/*
 * A hostile peer. The attacker holds one end of a socketpair and speaks the
 * wire protocol by hand; the other end is a channel, the victim. Every
 * violation must end the victim's channel with one specific error (written
 * next to each case in the tables below) and a reason, close every fd the
 * peer sent and drop every mapping at once, keep failing later calls
 * instead of crashing, and leave the process able to serve other peers.
 */
#include <fcntl.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/vfs.h>

#include "internal.h"
#include "linger.h"
#include "peerfd.h"
#include "tap.h"
#include "wire.h"

#define BUF_ID		7	/* the attacker's buffer id in a valid message */
#define BUF_SIZE	4096
#define MAX_FDS		80	/* more than a receiver takes in one packet */
#define MAX_RECS	2	/* records laid out, whatever the message header claims */
#define FLOOD		10000
#define SEALED		(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static const char *errname(int r)
{
	static char other[32];

	switch (-r) {
#define E(x) case x: return "-" #x
	E(EPERM); E(EINVAL); E(E2BIG); E(EBADFD); E(EBADMSG); E(EOVERFLOW); E(ERANGE);
	E(EPROTO); E(ECONNRESET); E(ETIMEDOUT); E(EAGAIN); E(EOPNOTSUPP); E(ENOBUFS);
#undef E
	}
	snprintf(other, sizeof(other), "%d", r);
	return other;
}

__attribute__((noreturn)) static void bail(const char *what)
{
	printf("Bail out! %s: %s\n", what, strerror(errno));
	exit(1);
}

/* --- the attacker's tools ------------------------------------------------- */

/* One packet with fds attached; 0 or a negative errno. */
static int send_pkt(int sock, const void *data, size_t len, const int *fds, unsigned int nfds,
		    int flags)
{
	char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)] __attribute__((aligned(8))) = { 0 };
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (nfds) {
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(sock, &mh, flags | MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static size_t put_ids(void *pkt, uint16_t type, const uint64_t *ids, uint32_t n, uint32_t pad)
{
	struct wire_ids w = { .count = n, .pad = pad };
	size_t len = sizeof(w) + n * sizeof(uint64_t);

	wire_hdr_init(&w.h, type, (uint32_t)len);
	memcpy(pkt, &w, sizeof(w));
	memcpy((char *)pkt + sizeof(w), ids, n * sizeof(uint64_t));
	return len;
}

/* A memfd of size bytes starting with "tensorfd", with the given seals. */
static int memfd_of(uint64_t size, unsigned int seals)
{
	int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
	    (size >= 8 && pwrite(fd, "tensorfd", 8, 0) != 8) ||
	    (seals && fcntl(fd, F_ADD_SEALS, seals) < 0))
		bail("memfd");
	return fd;
}

static int pipe_end(void)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	close(p[1]);
	return p[0];
}

/* An unlinked regular file of BUF_SIZE bytes in dir; *fs is its filesystem's magic. */
static int file_in(const char *dir, long *fs)
{
	char path[64];
	struct statfs sf;
	int fd;

	snprintf(path, sizeof(path), "%s/tfd-hostile-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -1;
	unlink(path);
	if (ftruncate(fd, BUF_SIZE) < 0 || fstatfs(fd, &sf) < 0) {
		close(fd);
		return -1;
	}
	*fs = (long)sf.f_type;
	return fd;
}

/*
 * A packet, field by field: by default a valid MSG announcing one sealed
 * memfd (BUF_ID) with one 1-d uint8 tensor "x" over all of it, preceded
 * by a valid hello. A case corrupts fields, or writes pkt/len itself.
 */
struct forge {
	struct wire_hello hello;
	struct wire_msg m;
	struct wire_newbuf nb[MAX_RECS];
	struct wire_tensor t[MAX_RECS];
	char name[MAX_RECS][TFD_NAME_MAX + 8];	/* as sent, padding included */
	int64_t shape[MAX_RECS][TFD_MAX_NDIM];
	int64_t strides[MAX_RECS][TFD_MAX_NDIM];
	char user[TFD_MAX_USER_DATA + 8];
	int fds[MAX_FDS];
	unsigned int nfds;
	bool no_hello;		/* the attacker never says hello */
	bool prelude;		/* a valid message announcing BUF_ID goes first */
	bool trailer;		/* a valid message with a new fd follows */
	bool hang_up;		/* the attacker closes its end instead of sending */
	bool timed;		/* an fd whose close blocks: the victim must not wait for it */
	bool reaped;		/* ... and only closing it on another thread helps */
	bool send_only;		/* the victim is a publisher's end: it takes only releases */
	const char *env_limit;	/* TENSORFD_PEER_MAX_BYTES for this case */
	int keep[2];		/* what keeps that close blocked (linger.h) */
	int expect;		/* nonzero: this machine's answer differs from the table's */
	const char *reason;	/* where set: the reason, word for word */
	const char *skip;	/* why this machine cannot run the case */
	long len;		/* -1: lay the fields out */
	char pkt[WIRE_MAX_PACKET + 4096] __attribute__((aligned(8)));
};

/* Add a buffer and a tensor over all of it ("x", then "y"). */
static void forge_add(struct forge *f, uint64_t id, int fd)
{
	unsigned int i = f->m.n_tensors;

	f->nb[i] = (struct wire_newbuf){ .id = id, .size = BUF_SIZE, .kind = WIRE_BUF_MEMFD };
	f->t[i] = (struct wire_tensor){
		.buf_id = id,
		.code = TFD_UINT,
		.bits = 8,
		.lanes = 1,
		.ndim = 1,
		.device_type = TFD_DEVICE_CPU,
		.name_len = 1,
	};
	memset(f->name[i], 0, sizeof(f->name[i]));
	f->name[i][0] = (char)('x' + i);
	f->shape[i][0] = BUF_SIZE;
	f->strides[i][0] = 1;
	f->m.n_tensors++;
	f->m.n_newbufs++;
	f->fds[f->nfds++] = fd;
}

static void forge_init(struct forge *f, uint64_t id)
{
	memset(f, 0, offsetof(struct forge, pkt));
	f->keep[0] = f->keep[1] = -1;
	wire_hdr_init(&f->hello.h, WIRE_HELLO, sizeof(f->hello));
	f->hello.max_packet = WIRE_MAX_PACKET;
	f->hello.pid = (uint64_t)getpid();
	f->len = -1;
	forge_add(f, id, memfd_of(BUF_SIZE, SEALED));
}

/* The attacker's copies, once sent. */
static void forge_close_fds(struct forge *f)
{
	while (f->nfds)
		if (f->fds[--f->nfds] >= 0)
			close(f->fds[f->nfds]);
}

/* Replace the fd of buffer i. */
static void forge_set_fd(struct forge *f, unsigned int i, int fd)
{
	if (fd < 0)
		f->skip = "cannot make that fd here";
	close(f->fds[i]);
	f->fds[i] = fd;
}

/* A valid message without tensors: for cases where what precedes it is wrong. */
static void forge_empty(struct forge *f)
{
	forge_close_fds(f);
	f->m.n_tensors = 0;
	f->m.n_newbufs = 0;
}

static char *put(char *p, const void *src, size_t n)
{
	memcpy(p, src, n);
	return p + n;
}

/* Lay the fields out as the header claims, as far as the records exist. */
static struct wire_hdr *forge_layout(struct forge *f)
{
	unsigned int nb = f->m.n_newbufs < MAX_RECS ? f->m.n_newbufs : MAX_RECS;
	unsigned int nt = f->m.n_tensors < MAX_RECS ? f->m.n_tensors : MAX_RECS;
	size_t user = f->m.user_len < sizeof(f->user) ? f->m.user_len : sizeof(f->user);
	char *p = put(f->pkt, &f->m, sizeof(f->m));
	unsigned int i;

	p = put(p, f->nb, nb * sizeof(f->nb[0]));
	for (i = 0; i < nt; i++) {
		int32_t ndim = f->t[i].ndim;
		size_t dims = (size_t)(ndim < 0 ? 0 : ndim > TFD_MAX_NDIM ? TFD_MAX_NDIM : ndim);
		size_t name = f->t[i].name_len < TFD_NAME_MAX ? f->t[i].name_len : TFD_NAME_MAX;

		p = put(p, &f->t[i], sizeof(f->t[i]));
		p = put(p, f->name[i], (name + 7) & ~(size_t)7);
		p = put(p, f->shape[i], dims * sizeof(int64_t));
		p = put(p, f->strides[i], dims * sizeof(int64_t));
	}
	p = put(p, f->user, user);
	f->len = p - f->pkt;
	wire_hdr_init((struct wire_hdr *)f->pkt, WIRE_MSG, (uint32_t)f->len);
	return (struct wire_hdr *)f->pkt;
}

/* --- the victim and its checks -------------------------------------------- */

struct duel {
	struct tfd_channel *ch;	/* the victim */
	int sock;		/* the attacker's end */
	int fds0, maps0;	/* before the case */
	int fds_ready, maps_ready;	/* with the channel up, before the attack */
};

static void attacker_send(struct duel *d, const void *pkt, size_t len, const int *fds,
			  unsigned int nfds)
{
	errno = -send_pkt(d->sock, pkt, len, fds, nfds, 0);
	if (errno)
		bail("the attacker cannot send");
}

static void attacker_send_forge(struct duel *d, struct forge *f)
{
	attacker_send(d, f->pkt, (size_t)f->len, f->fds, f->nfds);
	forge_close_fds(f);
}

static void attacker_hello(struct duel *d, const struct wire_hello *h)
{
	attacker_send(d, h, sizeof(*h), NULL, 0);
}

/* A valid message: one sealed memfd holding "tensorfd", tensor "x" over it. */
static void attacker_send_good(struct duel *d, uint64_t id)
{
	static struct forge g;

	forge_init(&g, id);
	forge_layout(&g);
	attacker_send_forge(d, &g);
}

/* A victim channel and an attacker that has read (and ignores) its hello. */
static void duel_open(struct duel *d, bool hello)
{
	struct wire_hello h;
	int sv[2];

	d->fds0 = count_fds();
	d->maps0 = count_maps();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		bail("socketpair");
	if (channel_new(sv[0], &d->ch) < 0)
		bail("channel_new");
	d->sock = sv[1];
	if (recv(d->sock, &h, sizeof(h), 0) != sizeof(h))
		bail("the victim's hello");
	/* sets up the notification ring now, so that the counts below include it */
	if (tfd_channel_get_fd(d->ch) < 0)
		bail("tfd_channel_get_fd");
	d->fds_ready = count_fds();
	d->maps_ready = count_maps();
	if (hello) {
		memset(&h, 0, sizeof(h));
		wire_hdr_init(&h.h, WIRE_HELLO, sizeof(h));
		h.max_packet = WIRE_MAX_PACKET;
		attacker_hello(d, &h);
	}
}

/* Both ends gone: every fd and mapping of the case is gone too. */
static void duel_close(struct duel *d, const char *what)
{
	tfd_channel_unref(d->ch);
	if (d->sock >= 0)
		close(d->sock);
	ok(count_fds() == d->fds0 && count_maps() == d->maps0,
	   "%s: no fd or mapping left after unref (fds %d/%d, maps %d/%d)", what, count_fds(),
	   d->fds0, count_maps(), d->maps0);
}

/* r is what the victim's call returned; expect what it must be. */
static void verdict(struct duel *d, const char *what, int expect, const char *reason, int r)
{
	const char *why = tfd_channel_strerror(d->ch);
	struct tfd_message *m = NULL, *empty;
	int later[3];

	if (!ok(r == expect, "%s: %s", what, errname(expect)))
		diag("got %s", errname(r));
	if (r >= 0 || r == -ETIMEDOUT) {
		diag("the victim took it: the channel did not end");
		duel_close(d, what);
		return;
	}
	diag("reason: %s", why ? why : "(null)");
	if (reason)
		ok(why && strcmp(why, reason) == 0, "%s: the reason reads \"%s\"", what, reason);
	else
		ok(why && *why, "%s: the channel says why", what);
	tfd_message_new(&empty);
	later[0] = tfd_channel_recv(d->ch, 0, &m);
	later[1] = tfd_channel_dispatch(d->ch, 0);
	later[2] = tfd_channel_send(d->ch, empty);
	tfd_message_unref(empty);
	tfd_message_unref(m);
	if (!ok(r < 0 && later[0] == r && later[1] == r && later[2] == r,
		"%s: later recv, dispatch and send fail the same way", what))
		diag("later: %s %s %s", errname(later[0]), errname(later[1]), errname(later[2]));
	ok(count_fds() == d->fds_ready && count_maps() == d->maps_ready,
	   "%s: fds the peer sent are closed and mappings dropped at once (fds %d/%d, maps %d/%d)",
	   what, count_fds(), d->fds_ready, count_maps(), d->maps_ready);
	duel_close(d, what);
}

/* --- receiver side: the attacker sends, the victim receives --------------- */

struct rx_case {
	const char *what;
	int expect;
	void (*mutate)(struct forge *f);
};

static void fd_unsealed(struct forge *f)
{
	forge_set_fd(f, 0, memfd_of(BUF_SIZE, 0));
}

static void fd_shrink_sealed_only(struct forge *f)
{
	forge_set_fd(f, 0, memfd_of(BUF_SIZE, F_SEAL_SHRINK | F_SEAL_SEAL));
}

static void fd_small(struct forge *f)
{
	forge_set_fd(f, 0, memfd_of(BUF_SIZE / 4, SEALED));
}

/* a sealed memfd reopened write-only: mmap() would say EACCES, as if refused */
static void fd_write_only(struct forge *f)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fds[0]);
	forge_set_fd(f, 0, open(proc, O_WRONLY | O_CLOEXEC));
	f->reason = "received fd is write-only: it cannot be mapped for reading";
}

static void fd_pipe(struct forge *f)
{
	forge_set_fd(f, 0, pipe_end());
}

static void fd_socket(struct forge *f)
{
	forge_set_fd(f, 0, socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
}

static void fd_directory(struct forge *f)
{
	forge_set_fd(f, 0, open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

static void fd_dev_zero(struct forge *f)
{
	forge_set_fd(f, 0, open("/dev/zero", O_RDWR | O_CLOEXEC));
}

static void fd_tmp_file(struct forge *f)
{
	long fs = 0;

	forge_set_fd(f, 0, file_in("/tmp", &fs));
	/* a tmpfs /tmp makes it a shmem file, sealable never: as /dev/shm below */
	if (fs == TMPFS_MAGIC)
		f->expect = -EPERM;
}

static void fd_dev_shm(struct forge *f)
{
	long fs = 0;

	forge_set_fd(f, 0, file_in("/dev/shm", &fs));
	if (!f->skip && fs != TMPFS_MAGIC)
		f->skip = "/dev/shm is not tmpfs";
}

static void fd_second_is_pipe(struct forge *f)
{
	forge_add(f, BUF_ID + 1, pipe_end());
}

/* dma-buf kind: the receiver checks the fd as a dma-buf, whatever it is */
static void dmabuf_memfd(struct forge *f)
{
	f->nb[0].kind = WIRE_BUF_DMABUF;
}

static void dmabuf_pipe(struct forge *f)
{
	f->nb[0].kind = WIRE_BUF_DMABUF;
	forge_set_fd(f, 0, pipe_end());
}

static void dmabuf_tmp_file(struct forge *f)
{
	long fs = 0;

	f->nb[0].kind = WIRE_BUF_DMABUF;
	forge_set_fd(f, 0, file_in("/tmp", &fs));
}

static void dmabuf_dev_zero(struct forge *f)
{
	f->nb[0].kind = WIRE_BUF_DMABUF;
	forge_set_fd(f, 0, open("/dev/zero", O_RDWR | O_CLOEXEC));
}

/* A real dma-buf, where the kernel has a source (the VM test's kernel does). */
static void forge_set_dmabuf(struct forge *f, uint64_t size)
{
	struct tfd_buffer *b;

	if (tfd_dmabuf_new(size, TFD_DMABUF_ANY, 0, &b) < 0) {
		f->skip = "no dma-buf source on this kernel";
		return;
	}
	forge_set_fd(f, 0, fcntl(tfd_buffer_fd(b), F_DUPFD_CLOEXEC, 0));
	tfd_buffer_unref(b);
}

static void dmabuf_small(struct forge *f)
{
	forge_set_dmabuf(f, BUF_SIZE);
	f->nb[0].kind = WIRE_BUF_DMABUF;
	f->nb[0].size = 2 * BUF_SIZE;
}

static void dmabuf_as_memfd(struct forge *f)
{
	forge_set_dmabuf(f, BUF_SIZE);
}

/* Mapped bytes per peer: 64 GiB by default. Sparse memfds cost nothing here. */
#define GIB		(1ull << 30)
#define BYTES_LIMIT	"peer wants more than 68719476736 bytes mapped (TENSORFD_PEER_MAX_BYTES)"

static void bytes_over_limit(struct forge *f)
{
	forge_set_fd(f, 0, memfd_of(65 * GIB, SEALED));
	f->nb[0].size = 65 * GIB;
	f->reason = BYTES_LIMIT;
}

static void bytes_over_limit_in_two(struct forge *f)
{
	bytes_over_limit(f);
	f->nb[0].size = 40 * GIB;
	forge_add(f, BUF_ID + 1, memfd_of(40 * GIB, SEALED));
	f->nb[1].size = 40 * GIB;
}

/* The limit is the environment's when set (read at each import): 1 MiB here. */
static void bytes_over_env_limit(struct forge *f)
{
	forge_set_fd(f, 0, memfd_of(2 << 20, SEALED));
	f->nb[0].size = 2 << 20;
	f->env_limit = "1M";
	f->reason = "peer wants more than 1048576 bytes mapped (TENSORFD_PEER_MAX_BYTES)";
}

static void kind_unknown(struct forge *f)
{
	f->nb[0].kind = 3;
}

static void fds_more(struct forge *f)
{
	f->fds[f->nfds++] = memfd_of(BUF_SIZE, SEALED);
}

static void fds_fewer(struct forge *f)
{
	forge_close_fds(f);
}

static void fds_70(struct forge *f)
{
	while (f->nfds < 70)
		f->fds[f->nfds++] = fcntl(f->fds[0], F_DUPFD_CLOEXEC, 0);
}

static void empty_packet(struct forge *f)
{
	f->len = 0;
}

static void tensors_65535(struct forge *f)
{
	f->m.n_tensors = 65535;
}

static void ndim_1000000(struct forge *f)
{
	f->t[0].ndim = 1000000;
}

static void shape_2d(struct forge *f, int64_t n, int64_t s0, int64_t s1)
{
	f->t[0].ndim = 2;
	f->shape[0][0] = f->shape[0][1] = n;
	f->strides[0][0] = s0;
	f->strides[0][1] = s1;
}

static void shape_overflow(struct forge *f)
{
	shape_2d(f, 1ll << 32, 1ll << 32, 1);
}

/* Touches one byte, but has 2^80 elements: no consumer can count them. */
static void shape_overflow_broadcast(struct forge *f)
{
	shape_2d(f, 1ll << 40, 0, 0);
}

static void strides_overflow(struct forge *f)
{
	f->shape[0][0] = 3;
	f->strides[0][0] = 1ll << 62;
	f->reason = "tensor 'x': shape and strides overflow 64 bits";
}

static void strides_out(struct forge *f)
{
	f->strides[0][0] = 2;
}

static void offset_huge(struct forge *f)
{
	f->t[0].byte_offset = 1ull << 63;
	f->reason = "tensor 'x': byte offset 9223372036854775808 too large";
}

static void strides_before(struct forge *f)
{
	f->shape[0][0] = 16;
	f->strides[0][0] = -1;
	f->reason = "tensor 'x': negative strides reach 15 bytes before the buffer";
}

static void dtype_unknown(struct forge *f)
{
	f->t[0].code = 99;
	f->reason = "tensor 'x': unknown dtype code 99";
}

static void device_cuda(struct forge *f)
{
	f->t[0].device_type = TFD_DEVICE_CUDA;
}

static void name_is(struct forge *f, const char *name, uint16_t len)
{
	memcpy(f->name[0], name, len);
	f->t[0].name_len = len;
}

static void name_nul(struct forge *f)
{
	name_is(f, "a\0b", 3);
}

static void name_space(struct forge *f)
{
	name_is(f, "a b", 3);
}

static void name_len_0(struct forge *f)
{
	f->t[0].name_len = 0;
}

static void name_len_64(struct forge *f)
{
	memset(f->name[0], 'n', TFD_NAME_MAX);
	f->t[0].name_len = TFD_NAME_MAX;
}

static void pad_tensor(struct forge *f)
{
	f->t[0].pad[1] = 1;
}

static void pad_name(struct forge *f)
{
	f->name[0][7] = 'p';
}

static void pad_newbuf_flags(struct forge *f)
{
	f->nb[0].flags = 1;
}

static void pad_header(struct forge *f)
{
	forge_layout(f)->reserved = 1;
}

static void len_claims_more(struct forge *f)
{
	forge_layout(f);
	f->len -= 8;
}

static void len_claims_less(struct forge *f)
{
	forge_layout(f)->len -= 8;
}

static void len_short(struct forge *f)
{
	forge_layout(f);
	f->len = sizeof(struct wire_hdr) - 6;
}

static void len_oversized(struct forge *f)
{
	forge_layout(f);
	memset(f->pkt + f->len, 0, sizeof(f->pkt) - (size_t)f->len);
	f->len = sizeof(f->pkt);
	((struct wire_hdr *)f->pkt)->len = (uint32_t)f->len;
}

static void user_too_long(struct forge *f)
{
	f->m.user_len = TFD_MAX_USER_DATA + 1;
}

static void buf_unknown(struct forge *f)
{
	f->t[0].buf_id = BUF_ID + 100;
}

static void buf_twice_in_one(struct forge *f)
{
	forge_add(f, BUF_ID, memfd_of(BUF_SIZE, SEALED));
}

static void buf_again_later(struct forge *f)
{
	f->prelude = true;
}

static void garbage(struct forge *f)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int i;

	for (i = 0; i < 200; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		f->pkt[i] = (char)x;
	}
	f->len = 200;
}

static void bad_magic(struct forge *f)
{
	forge_layout(f)->magic = 0xdeadbeef;
}

/*
 * io_uring posts the next receive as soon as a packet is handed out, so the
 * victim may already hold the next packet's fds when it meets a bad one:
 * those too must be closed when the channel ends, not when it is freed.
 */
static void fds_behind_bad_packet(struct forge *f)
{
	bad_magic(f);
	f->trailer = true;
}

static void version_wrong(struct forge *f)
{
	f->hello.h.version = WIRE_VERSION + 1;
	forge_empty(f);
}

static void hello_small_packets(struct forge *f)
{
	f->hello.max_packet = 1024;
	forge_empty(f);
}

static void no_hello(struct forge *f)
{
	f->no_hello = true;
}

static void hello_twice(struct forge *f)
{
	memcpy(f->pkt, &f->hello, sizeof(f->hello));
	f->len = sizeof(f->hello);
	forge_close_fds(f);
}

static void type_unknown(struct forge *f)
{
	forge_layout(f)->type = 99;
}

/* Introspection packets belong before a channel exists, never on one. */
static void info_request_on_channel(struct forge *f)
{
	struct wire_info_request w = { .max_subscribers = 1 };

	wire_hdr_init(&w.h, WIRE_INFO_REQUEST, sizeof(w));
	memcpy(f->pkt, &w, sizeof(w));
	f->len = sizeof(w);
	forge_close_fds(f);
}

static void info_answer_on_channel(struct forge *f)
{
	struct wire_info w = { .n_subscribers = 0 };

	wire_hdr_init(&w.h, WIRE_INFO, sizeof(w));
	memcpy(f->pkt, &w, sizeof(w));
	f->len = sizeof(w);
	forge_close_fds(f);
}

static void info_request_instead_of_hello(struct forge *f)
{
	info_request_on_channel(f);
	f->no_hello = true;
}

static void release_with_fd(struct forge *f)
{
	const uint64_t id = 1;

	f->len = (long)put_ids(f->pkt, WIRE_RELEASE, &id, 1, 0);
}

static void forget_unknown(struct forge *f)
{
	const uint64_t id = BUF_ID + 100;

	f->len = (long)put_ids(f->pkt, WIRE_FORGET, &id, 1, 0);
	forge_close_fds(f);
}

/*
 * Fds whose close() blocks for LINGER_S seconds, wherever the protocol has
 * them or has none: the victim's call returns at once all the same.
 */
static void fd_lingering(struct forge *f)
{
	forge_set_fd(f, 0, lingering_socket(f->keep));
	f->timed = true;
}

static void fd_nested_lingering(struct forge *f)
{
	forge_set_fd(f, 0, nested_lingering_socket(f->keep));
	f->timed = true;
	f->reaped = true;
}

static void release_with_lingering(struct forge *f)
{
	release_with_fd(f);
	fd_lingering(f);
}

static void forget_with_lingering(struct forge *f)
{
	const uint64_t id = BUF_ID;

	f->len = (long)put_ids(f->pkt, WIRE_FORGET, &id, 1, 0);
	fd_lingering(f);
}

static void hello_with_lingering(struct forge *f)
{
	memcpy(f->pkt, &f->hello, sizeof(f->hello));
	f->len = sizeof(f->hello);
	f->no_hello = true;
	fd_lingering(f);
}

static void info_request_with_lingering(struct forge *f)
{
	struct wire_info_request w = { .max_subscribers = 1 };

	wire_hdr_init(&w.h, WIRE_INFO_REQUEST, sizeof(w));
	memcpy(f->pkt, &w, sizeof(w));
	f->len = sizeof(w);
	fd_lingering(f);
}

/* A publisher's end takes releases only: a valid MSG or FORGET is refused. */
static void msg_to_send_only(struct forge *f)
{
	f->send_only = true;
	f->reason = "refused the peer: this end only sends: it takes no messages";
}

static void forget_to_send_only(struct forge *f)
{
	const uint64_t id = BUF_ID;

	f->len = (long)put_ids(f->pkt, WIRE_FORGET, &id, 1, 0);
	forge_close_fds(f);
	f->send_only = true;
	f->reason = "refused the peer: this end only sends: it was sent no buffers to forget";
}

static void hang_up(struct forge *f)
{
	f->hang_up = true;
	forge_close_fds(f);
}

static const struct rx_case rx_cases[] = {
	/* what the fds are */
	{ "an unsealed memfd", -EPERM, fd_unsealed },
	{ "a memfd sealed against shrinking only", -EPERM, fd_shrink_sealed_only },
	{ "a sealed memfd smaller than announced", -EOVERFLOW, fd_small },
	{ "a sealed memfd reopened write-only", -EBADFD, fd_write_only },
	{ "a pipe instead of a memfd", -EBADFD, fd_pipe },
	{ "a socket instead of a memfd", -EBADFD, fd_socket },
	{ "a directory instead of a memfd", -EBADFD, fd_directory },
	{ "/dev/zero instead of a memfd", -EBADFD, fd_dev_zero },
	{ "a regular file in /tmp instead of a memfd", -EBADFD, fd_tmp_file },
	{ "a tmpfs file from /dev/shm (F_SEAL_SEAL only)", -EPERM, fd_dev_shm },
	{ "a pipe as the second buffer, after a good one", -EBADFD, fd_second_is_pipe },
	{ "a sealed memfd announced as a dma-buf", -EBADFD, dmabuf_memfd },
	{ "a pipe announced as a dma-buf", -EBADFD, dmabuf_pipe },
	{ "a regular file in /tmp announced as a dma-buf", -EBADFD, dmabuf_tmp_file },
	{ "/dev/zero announced as a dma-buf", -EBADFD, dmabuf_dev_zero },
	{ "a dma-buf smaller than announced", -EOVERFLOW, dmabuf_small },
	{ "a dma-buf announced as a memfd", -EBADFD, dmabuf_as_memfd },
	{ "a buffer of unknown kind 3", -EBADMSG, kind_unknown },
	/* bytes mapped */
	{ "a sealed 65 GiB memfd: over the 64 GiB a peer may have mapped", -ENOBUFS,
	  bytes_over_limit },
	{ "two sealed 40 GiB memfds in one message", -ENOBUFS, bytes_over_limit_in_two },
	{ "a 2 MiB memfd under TENSORFD_PEER_MAX_BYTES=1M", -ENOBUFS, bytes_over_env_limit },
	/* how many fds */
	{ "more fds than announced", -EBADMSG, fds_more },
	{ "fewer fds than announced", -EBADMSG, fds_fewer },
	{ "70 fds, more than the receiver's cmsg space", -EBADMSG, fds_70 },
	{ "an empty packet carrying an fd", -EBADMSG, empty_packet },
	/* tensors and layouts */
	{ "a message claiming 65535 tensors", -E2BIG, tensors_65535 },
	{ "a tensor of ndim 1000000", -E2BIG, ndim_1000000 },
	{ "a shape whose element count overflows int64", -EOVERFLOW, shape_overflow },
	{ "a broadcast (strides 0) whose element count overflows int64", -EOVERFLOW,
	  shape_overflow_broadcast },
	{ "strides whose extent overflows int64", -EOVERFLOW, strides_overflow },
	{ "strides that walk out of the buffer", -ERANGE, strides_out },
	{ "a byte_offset above INT64_MAX", -ERANGE, offset_huge },
	{ "negative strides reaching before the buffer", -ERANGE, strides_before },
	{ "an unknown dtype code", -EINVAL, dtype_unknown },
	{ "a tensor on a CUDA device", -EOPNOTSUPP, device_cuda },
	{ "a name with an embedded NUL", -EBADMSG, name_nul },
	{ "a name with a space", -EINVAL, name_space },
	{ "a name_len of 0", -EBADMSG, name_len_0 },
	{ "a name_len of 64", -EBADMSG, name_len_64 },
	/* padding and reserved fields */
	{ "nonzero tensor record padding", -EBADMSG, pad_tensor },
	{ "nonzero padding after a tensor name", -EBADMSG, pad_name },
	{ "nonzero buffer record flags", -EBADMSG, pad_newbuf_flags },
	{ "a nonzero reserved header field", -EBADMSG, pad_header },
	/* lengths */
	{ "a truncated message (header len > packet)", -EBADMSG, len_claims_more },
	{ "header len < packet", -EBADMSG, len_claims_less },
	{ "a packet shorter than a header", -EBADMSG, len_short },
	{ "a packet over 64 KiB", -EBADMSG, len_oversized },
	{ "user_len above TFD_MAX_USER_DATA", -E2BIG, user_too_long },
	/* buffer ids */
	{ "a tensor naming a buffer never sent", -EBADMSG, buf_unknown },
	{ "a buffer id announced twice in one message", -EBADMSG, buf_twice_in_one },
	{ "a buffer id announced again in a later message", -EBADMSG, buf_again_later },
	/* the protocol */
	{ "garbage bytes", -EPROTO, garbage },
	{ "a bad magic", -EPROTO, bad_magic },
	{ "an fd queued behind a bad packet", -EPROTO, fds_behind_bad_packet },
	{ "a wrong protocol version", -EPROTO, version_wrong },
	{ "a MSG before any HELLO", -EPROTO, no_hello },
	{ "a HELLO accepting 1024-byte packets", -EBADMSG, hello_small_packets },
	{ "a second HELLO", -EBADMSG, hello_twice },
	{ "an unknown packet type", -EBADMSG, type_unknown },
	{ "an INFO_REQUEST on an open channel", -EBADMSG, info_request_on_channel },
	{ "an INFO answer on an open channel", -EBADMSG, info_answer_on_channel },
	{ "an INFO_REQUEST instead of a HELLO", -EPROTO, info_request_instead_of_hello },
	{ "a RELEASE carrying an fd", -EBADMSG, release_with_fd },
	{ "a FORGET of a buffer never sent", -EBADMSG, forget_unknown },
	{ "a peer that hangs up", -ECONNRESET, hang_up },
	/* to a publisher's end */
	{ "a valid MSG to an end that only sends", -EPROTO, msg_to_send_only },
	{ "a FORGET to an end that only sends", -EPROTO, forget_to_send_only },
	/* fds whose close blocks (linger.h) */
	{ "a lingering TCP socket as a buffer", -EBADFD, fd_lingering },
	{ "a Unix socket holding a lingering TCP socket as a buffer", -EBADFD,
	  fd_nested_lingering },
	{ "a RELEASE carrying a lingering TCP socket", -EBADMSG, release_with_lingering },
	{ "a FORGET carrying a lingering TCP socket", -EBADMSG, forget_with_lingering },
	{ "a HELLO carrying a lingering TCP socket", -EBADMSG, hello_with_lingering },
	{ "an INFO_REQUEST carrying a lingering TCP socket", -EBADMSG,
	  info_request_with_lingering },
};

static void rx_attack(const struct rx_case *c)
{
	static struct forge f;
	struct tfd_message *m = NULL;
	uint64_t t0;
	struct duel d;
	int r;

	duel_open(&d, false);
	forge_init(&f, BUF_ID);
	c->mutate(&f);
	if (f.skip) {
		skip("%s: %s", c->what, f.skip);
		lingering_end(f.keep);
		forge_close_fds(&f);
		tfd_channel_unref(d.ch);
		close(d.sock);
		return;
	}
	if (f.len < 0)
		forge_layout(&f);
	if (f.send_only)
		channel_set_send_only(d.ch);
	if (f.env_limit)
		setenv("TENSORFD_PEER_MAX_BYTES", f.env_limit, 1);
	if (!f.no_hello)
		attacker_hello(&d, &f.hello);
	if (f.prelude) {
		attacker_send_good(&d, BUF_ID);
		r = tfd_channel_recv(d.ch, 1000, &m);
		ok(r == 0, "%s: the first message is taken", c->what);
		m = tfd_message_unref(m);
	}
	if (f.hang_up) {
		close(d.sock);
		d.sock = -1;
		d.fds_ready--;
	} else {
		attacker_send_forge(&d, &f);
	}
	if (f.trailer)
		attacker_send_good(&d, BUF_ID + 1);
	t0 = now_ms();
	r = tfd_channel_recv(d.ch, 1000, &m);
	t0 = now_ms() - t0;
	tfd_message_unref(m);
	unsetenv("TENSORFD_PEER_MAX_BYTES");
	if (f.timed) {
		/* a generous bound: a blocked close would take LINGER_S seconds */
		if (f.reaped && under_valgrind())
			/* valgrind runs one thread at a time and keeps its lock through close() */
			skip("%s: the reaper cannot help under valgrind (recv took %llu ms)",
			     c->what, (unsigned long long)t0);
		else
			ok(t0 < PROMPT_MS,
			   "%s: recv(1000 ms) returns in %llu ms, not after the %d s linger",
			   c->what, (unsigned long long)t0, LINGER_S);
		lingering_end(f.keep);
		/* the reaper may still be in that close: the next case starts without it */
		t0 = now_ms();
		while (peerfd_outstanding() && now_ms() - t0 < 2 * LINGER_S * 1000)
			usleep(1000);
		ok(!peerfd_outstanding(), "%s: the reaper is done once the peer lets go (%llu ms)",
		   c->what, (unsigned long long)(now_ms() - t0));
	}
	verdict(&d, c->what, f.expect ? f.expect : c->expect, f.reason, r);
}

/* --- sender side: the victim sends, the attacker releases ----------------- */

struct tx_case {
	const char *what;
	int expect;
	/* returns the victim's first failing dispatch */
	int (*attack)(struct duel *d, uint64_t seq);
};

static int attacker_release(struct duel *d, uint64_t id, uint32_t count, uint32_t pad, int flags)
{
	char pkt[sizeof(struct wire_ids) + sizeof(id)];

	return send_pkt(d->sock, pkt, put_ids(pkt, WIRE_RELEASE, &id, count, pad), NULL, 0,
			flags);
}

/* The message's seq; the attacker closes the fd it brought. */
static uint64_t attacker_take(struct duel *d)
{
	static char pkt[WIRE_MAX_PACKET];
	char cbuf[CMSG_SPACE(sizeof(int) * TFD_MAX_TENSORS)] __attribute__((aligned(8)));
	struct iovec iov = { .iov_base = pkt, .iov_len = sizeof(pkt) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct wire_msg w;
	struct cmsghdr *c;
	int fd;
	size_t i;

	if (recvmsg(d->sock, &mh, MSG_CMSG_CLOEXEC) < (ssize_t)sizeof(w))
		bail("the victim's message");
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		for (i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			close(fd);
		}
	memcpy(&w, pkt, sizeof(w));
	return w.seq;
}

/* Dispatch until the victim fails or nothing comes for a second. */
static int victim_dispatch(struct duel *d)
{
	int r;

	do
		r = tfd_channel_dispatch(d->ch, 1000);
	while (r > 0);
	return r;
}

static int release_unknown(struct duel *d, uint64_t seq)
{
	attacker_release(d, seq + 1000, 1, 0, 0);
	return victim_dispatch(d);
}

static int release_twice(struct duel *d, uint64_t seq)
{
	attacker_release(d, seq, 1, 0, 0);
	attacker_release(d, seq, 1, 0, 0);
	return victim_dispatch(d);
}

static int release_none(struct duel *d, uint64_t seq)
{
	attacker_release(d, seq, 0, 0, 0);
	return victim_dispatch(d);
}

static int release_padded(struct duel *d, uint64_t seq)
{
	attacker_release(d, seq, 1, 1, 0);
	return victim_dispatch(d);
}

/*
 * As fast as the socket takes them, the victim dispatching whenever it is
 * full: the first unknown id ends the channel, the rest meet a closed door.
 */
static int release_flood(struct duel *d, uint64_t seq)
{
	int sent = 0, first = 0, r, s;

	while (sent < FLOOD) {
		s = attacker_release(d, seq + 1 + (uint64_t)sent, 1, 0, MSG_DONTWAIT);
		if (s == 0) {
			sent++;
			continue;
		}
		if (s != -EAGAIN)
			break;	/* the victim hung up */
		r = tfd_channel_dispatch(d->ch, 0);
		if (r < 0 && !first)
			first = r;
	}
	diag("flood: %d releases sent before the victim hung up", sent);
	return first ? first : victim_dispatch(d);
}

static const struct tx_case tx_cases[] = {
	{ "a RELEASE of a message never sent", -EBADMSG, release_unknown },
	{ "a second RELEASE of the same message", -EBADMSG, release_twice },
	{ "a RELEASE of 0 messages", -EBADMSG, release_none },
	{ "a RELEASE with nonzero padding", -EBADMSG, release_padded },
	{ "a flood of 10000 releases of unknown messages", -EBADMSG, release_flood },
};

static void tx_attack(const struct tx_case *c)
{
	const int64_t n = BUF_SIZE;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	struct duel d;
	uint64_t seq;
	int r;

	duel_open(&d, true);
	if (tfd_buffer_new(BUF_SIZE, 0, &b) < 0 || tfd_message_new(&m) < 0)
		bail("buffer");
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &n);
	tfd_message_add_tensor(m, "x", b, &l);
	r = tfd_channel_send(d.ch, m);
	seq = attacker_take(&d);
	ok(r == 0 && tfd_buffer_loans(b) == 1, "%s: the victim lent its buffer", c->what);
	r = c->attack(&d, seq);
	ok(tfd_buffer_loans(b) == 0, "%s: the loan is back as the channel ends", c->what);
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	verdict(&d, c->what, c->expect, NULL, r);
}

/* --- a sender that never reads our releases ------------------------------- */

#define HOARD_MAX	200000	/* messages the attacker tries; the bound is 65536 */

/*
 * The attacker sends one buffer, then messages naming it as fast as the
 * victim takes them, and never reads a release: the victim's releases
 * fill the attacker's socket and the rest wait in the victim. What the
 * victim owes must stay bounded: the channel ends with -ENOBUFS once the
 * peer has too many messages in flight, instead of remembering all.
 */
static void release_hoarder(void)
{
	static struct forge f;
	struct tfd_message *m;
	struct duel d;
	size_t owed, peak = 0;
	uint64_t seq;
	int r = 0, s;

	duel_open(&d, true);
	attacker_send_good(&d, BUF_ID);
	forge_init(&f, BUF_ID);
	forge_close_fds(&f);
	f.m.n_newbufs = 0;
	forge_layout(&f);
	for (seq = 2; seq < HOARD_MAX && r == 0;) {
		memcpy(f.pkt + offsetof(struct wire_msg, seq), &seq, sizeof(seq));
		s = send_pkt(d.sock, f.pkt, (size_t)f.len, NULL, 0, MSG_DONTWAIT);
		if (s == 0)
			seq++;
		else if (s != -EAGAIN)
			break;
		/* the victim takes what arrived and drops it at once */
		while ((r = tfd_channel_recv(d.ch, 0, &m)) == 0)
			tfd_message_unref(m);
		if (r == -EAGAIN)
			r = 0;
		owed = channel_releases_owed(d.ch);
		if (owed > peak)
			peak = owed;
	}
	diag("hoarder: %llu messages sent, the victim owed at most %zu releases",
	     (unsigned long long)seq - 1, peak);
	ok(peak <= 65536, "what the victim owes stays bounded (%zu releases, bound 65536)", peak);
	verdict(&d, "a sender that never reads releases", -ENOBUFS,
		"peer has more than 65536 messages in flight (it does not read our releases)", r);
}

/*
 * The limit counts what is mapped now: a buffer the peer forgot no longer
 * counts, and 40 GiB, forgotten, then 40 GiB more are taken.
 */
static void bytes_after_forget(void)
{
	static struct forge f;
	struct tfd_message *m = NULL;
	const uint64_t id = BUF_ID;
	char pkt[64];
	struct duel d;
	int r, i;

	duel_open(&d, true);
	for (i = 0; i < 2; i++) {
		forge_init(&f, BUF_ID + (uint64_t)i);
		forge_set_fd(&f, 0, memfd_of(40 * GIB, SEALED));
		f.nb[0].size = 40 * GIB;
		forge_layout(&f);
		attacker_send_forge(&d, &f);
		if (i == 0)
			attacker_send(&d, pkt, put_ids(pkt, WIRE_FORGET, &id, 1, 0), NULL, 0);
		r = tfd_channel_recv(d.ch, 1000, &m);
		ok(r == 0, "40 GiB mapped, %s: taken (%s)", i ? "forgotten, then 40 GiB more" :
		   "the first time", r ? tfd_channel_strerror(d.ch) : "ok");
		m = tfd_message_unref(m);
	}
	tfd_channel_unref(d.ch);
	close(d.sock);
	ok(count_fds() == d.fds0 && count_maps() == d.maps0,
	   "40 GiB twice: nothing left (fds %d/%d, maps %d/%d)", count_fds(), d.fds0,
	   count_maps(), d.maps0);
}

/* --- what the attacker cannot do to a buffer it was sent ------------------ */

static void owner_seals(void)
{
	int fds0 = count_fds(), fd, rfd;
	struct tfd_buffer *b;
	char path[64];
	void *p;

	if (tfd_buffer_new(BUF_SIZE, 0, &b) < 0)
		bail("tfd_buffer_new");
	fd = tfd_buffer_fd(b);
	ok(ftruncate(fd, BUF_SIZE / 2) < 0 && errno == EPERM,
	   "a buffer cannot be shrunk through its fd: EPERM");
	ok(ftruncate(fd, BUF_SIZE * 2) < 0 && errno == EPERM,
	   "a buffer cannot be grown through its fd: EPERM");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rfd = open(path, O_RDWR | O_CLOEXEC);
	p = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
	ok(rfd >= 0 && p == MAP_FAILED && errno == EPERM,
	   "a buffer cannot be mapped writable from a reopened /proc/self/fd/N: EPERM");
	if (p != MAP_FAILED)
		munmap(p, BUF_SIZE);
	if (rfd >= 0)
		close(rfd);
	tfd_buffer_unref(b);
	ok(count_fds() == fds0, "seal checks leave no fd");
}

/* --- and the process still serves its other peers ------------------------- */

/* A well-behaved raw peer's message: 0 when it arrives intact. */
static int raw_exchange(void)
{
	struct tfd_message *m = NULL;
	const struct tfd_layout *l;
	struct duel d;
	int r;

	duel_open(&d, true);
	attacker_send_good(&d, BUF_ID);
	r = tfd_channel_recv(d.ch, 1000, &m);
	l = tfd_message_layout(m, 0);
	if (r == 0 && (!l || l->shape[0] != BUF_SIZE ||
		       tfd_buffer_is_writable(tfd_message_buffer(m, 0)) ||
		       memcmp(tfd_message_data(m, 0), "tensorfd", 8) != 0))
		r = -EINVAL;
	if (r < 0)
		diag("raw peer: %s: %s", errname(r), tfd_channel_strerror(d.ch));
	tfd_message_unref(m);
	tfd_channel_unref(d.ch);
	close(d.sock);
	return r;
}

/* A message over a fresh channel pair, and its release: 0 when all went well. */
static int pair_exchange(void)
{
	const int64_t n = BUF_SIZE;
	struct tfd_message *m, *got = NULL;
	struct tfd_channel *a, *b;
	struct tfd_buffer *buf;
	struct tfd_layout l;
	int r;

	if (tfd_channel_pair(&a, &b) < 0 || tfd_buffer_new(BUF_SIZE, 0, &buf) < 0 ||
	    tfd_message_new(&m) < 0)
		bail("a good channel");
	memcpy(tfd_buffer_data(buf), "tensorfd", 8);
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &n);
	tfd_message_add_tensor(m, "x", buf, &l);
	r = tfd_channel_send(a, m);
	if (r == 0)
		r = tfd_channel_recv(b, 1000, &got);
	if (r == 0 && memcmp(tfd_message_data(got, 0), "tensorfd", 8) != 0)
		r = -EINVAL;
	tfd_message_unref(got);
	tfd_message_unref(m);
	if (r == 0 && (tfd_channel_dispatch(a, 1000) < 0 || tfd_buffer_loans(buf) != 0))
		r = -EAGAIN;
	if (r < 0)
		diag("channel pair: %s: %s", errname(r), tfd_last_error());
	tfd_buffer_unref(buf);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	return r;
}

static void good_peers(const char *when)
{
	int fds0 = count_fds(), maps0 = count_maps();

	ok(raw_exchange() == 0, "%s: a well-behaved raw peer's message arrives intact", when);
	ok(pair_exchange() == 0, "%s: a channel pair carries a message and its release", when);
	ok(count_fds() == fds0 && count_maps() == maps0,
	   "%s: the good peers leave nothing behind (fds %d/%d, maps %d/%d)", when, count_fds(),
	   fds0, count_maps(), maps0);
}

int main(void)
{
	int fds0, i;

	tap_init(120);
	/*
	 * Unchecked first rounds, and a first line printed: allocators map memory
	 * the first time a size is asked for and keep it (glibc's mmap threshold,
	 * ASan's size classes, stdout's buffer), which is not a leak.
	 */
	raw_exchange();
	pair_exchange();
	diag("warmed up: %d mappings", count_maps());
	fds0 = count_fds();
	/* also the baseline: the uncorrupted forge is accepted */
	good_peers("before the attacks");
	for (i = 0; i < (int)ARRAY_SIZE(rx_cases); i++)
		rx_attack(&rx_cases[i]);
	for (i = 0; i < (int)ARRAY_SIZE(tx_cases); i++)
		tx_attack(&tx_cases[i]);
	release_hoarder();
	bytes_after_forget();
	owner_seals();
	good_peers("after the attacks");
	ok(count_fds() == fds0, "no fd leaked overall");
	return done_testing();
}
