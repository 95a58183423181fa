/* SPDX-License-Identifier: MIT */
/*
 * The floors of this machine and the baselines tensorfd is compared with,
 * each a ping-pong between this process (A, the producer) and a forked one
 * (B, the consumer).
 *
 * A round: A takes the clock and stores it in a page both share, produces
 * (touches its payload: the ends or every cache line), sends; B waits,
 * consumes (reads the same bytes, checking they are this round's), takes
 * the clock: one-way latency, which it stores in the shared page; B answers
 * with a minimal message and A takes the clock again: the round trip. The
 * shared page carries no signal, only numbers read after a wake-up.
 *
 * Floors (no payload): two processes spinning on one cache line, a futex
 * wake, an eventfd wake, a 1-byte SOCK_SEQPACKET message. Baselines (a
 * payload of each size): a Unix stream socket copy of the bytes, a fresh
 * sealed memfd per message (create, map, write, unmap, seal, send the fd;
 * receive, check, map, read, unmap, close), ZeroMQ PAIR over ipc:// when
 * configure found libzmq.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef HAVE_ZMQ
#include <zmq.h>
#endif

#include "bench.h"

struct shared {
	_Alignas(64) uint64_t t0;	/* A's clock at the start of the round */
	_Alignas(64) uint32_t line;	/* the cache line, and the futex word */
	_Alignas(64) uint64_t oneway[];	/* B's samples */
};

struct pp {
	const struct options *opt;
	const struct pp_ops *ops;
	struct shared *sh;
	uint64_t size;
	enum touch touch;
	bool spin;
	uint32_t seq;		/* the round's number, from 1 */
	int fd[2];		/* A's and B's ends */
	int efd[2];		/* eventfds: A to B, B to A */
	uint8_t *buf;		/* this side's payload buffer */
	char path[160];		/* zmq endpoint */
	void *zctx, *zsock;
};

struct pp_ops {
	const char *group, *name;
	bool payload;		/* sizes apply */
	bool copies;		/* cost grows with the size whatever is touched */
	unsigned int waits;
	int (*setup)(struct pp *pp);			/* before the fork */
	int (*open)(struct pp *pp, bool b);		/* after it, on each side */
	int (*ping)(struct pp *pp);			/* A: produce and send */
	int (*take)(struct pp *pp);			/* B: wait and consume; -EBADMSG: stale */
	int (*pong)(struct pp *pp);			/* B */
	int (*back)(struct pp *pp);			/* A: wait for the pong */
	void (*close)(struct pp *pp, bool b);
};

static uint8_t mark_of(const struct pp *pp)
{
	return (uint8_t)(pp->seq * 7 + 1);
}

/* --- waiting: spin a bounded time, then sleep ----------------------------- */

static uint64_t spin_deadline(const struct pp *pp)
{
	return pp->spin ? now_ns() + (uint64_t)pp->opt->spin_us * 1000 : 0;
}

/* recv(2) of exactly len bytes, spinning with MSG_DONTWAIT while allowed. */
static int recv_all(struct pp *pp, int fd, void *buf, size_t len)
{
	uint64_t until = spin_deadline(pp);
	size_t done = 0;
	ssize_t n;
	int flags;

	while (done < len) {
		flags = until && now_ns() < until ? MSG_DONTWAIT : 0;
		n = recv(fd, (char *)buf + done, len - done, flags);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		done += (size_t)n;
	}
	return 0;
}

static int send_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

static int send_byte(int fd)
{
	char c = 1;

	return send_all(fd, &c, 1);
}

static int recv_byte(struct pp *pp, int fd)
{
	char c;

	return recv_all(pp, fd, &c, 1);
}

static int side_fd(const struct pp *pp, bool b)
{
	return pp->fd[b ? 1 : 0];
}

static int socketpair_setup(struct pp *pp, int type)
{
	return socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, pp->fd) < 0 ? -errno : 0;
}

static void fds_close(struct pp *pp, bool b)
{
	if (pp->fd[b ? 1 : 0] >= 0)
		close(pp->fd[b ? 1 : 0]);
	if (pp->efd[0] >= 0)
		close(pp->efd[0]);
	if (pp->efd[1] >= 0)
		close(pp->efd[1]);
	free(pp->buf);
	pp->buf = NULL;
}

/* --- floor: one shared cache line ------------------------------------------ */

static int line_wait(struct pp *pp, uint32_t want)
{
	while (__atomic_load_n(&pp->sh->line, __ATOMIC_ACQUIRE) != want)
		__builtin_ia32_pause();
	return 0;
}

static int line_ping(struct pp *pp)
{
	__atomic_store_n(&pp->sh->line, 2 * pp->seq - 1, __ATOMIC_RELEASE);
	return 0;
}

static int line_take(struct pp *pp)
{
	return line_wait(pp, 2 * pp->seq - 1);
}

static int line_pong(struct pp *pp)
{
	__atomic_store_n(&pp->sh->line, 2 * pp->seq, __ATOMIC_RELEASE);
	return 0;
}

static int line_back(struct pp *pp)
{
	return line_wait(pp, 2 * pp->seq);
}

/* --- floor: futex -------------------------------------------------------------- */

static long futex(uint32_t *uaddr, int op, uint32_t val)
{
	return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

static int futex_set(struct pp *pp, uint32_t v)
{
	__atomic_store_n(&pp->sh->line, v, __ATOMIC_RELEASE);
	return futex(&pp->sh->line, FUTEX_WAKE, 1) < 0 ? -errno : 0;
}

static int futex_await(struct pp *pp, uint32_t want)
{
	uint32_t cur;

	while ((cur = __atomic_load_n(&pp->sh->line, __ATOMIC_ACQUIRE)) != want)
		if (futex(&pp->sh->line, FUTEX_WAIT, cur) < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
	return 0;
}

static int futex_ping(struct pp *pp)
{
	return futex_set(pp, 2 * pp->seq - 1);
}

static int futex_take(struct pp *pp)
{
	return futex_await(pp, 2 * pp->seq - 1);
}

static int futex_pong(struct pp *pp)
{
	return futex_set(pp, 2 * pp->seq);
}

static int futex_back(struct pp *pp)
{
	return futex_await(pp, 2 * pp->seq);
}

/* --- floor: eventfd ------------------------------------------------------------ */

static int efd_setup(struct pp *pp)
{
	pp->efd[0] = eventfd(0, EFD_CLOEXEC);
	pp->efd[1] = eventfd(0, EFD_CLOEXEC);
	return pp->efd[0] < 0 || pp->efd[1] < 0 ? -errno : 0;
}

static int efd_signal(int fd)
{
	uint64_t one = 1;

	return write(fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

static int efd_await(int fd)
{
	uint64_t v;
	ssize_t n;

	do
		n = read(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	return n == sizeof(v) ? 0 : -errno;
}

static int efd_ping(struct pp *pp)
{
	return efd_signal(pp->efd[0]);
}

static int efd_take(struct pp *pp)
{
	return efd_await(pp->efd[0]);
}

static int efd_pong(struct pp *pp)
{
	return efd_signal(pp->efd[1]);
}

static int efd_back(struct pp *pp)
{
	return efd_await(pp->efd[1]);
}

/* --- floor: a 1-byte SOCK_SEQPACKET message ------------------------------------ */

static int seqpacket_setup(struct pp *pp)
{
	return socketpair_setup(pp, SOCK_SEQPACKET);
}

static int byte_ping(struct pp *pp)
{
	return send_byte(side_fd(pp, false));
}

static int byte_take(struct pp *pp)
{
	return recv_byte(pp, side_fd(pp, true));
}

static int byte_pong(struct pp *pp)
{
	return send_byte(side_fd(pp, true));
}

static int byte_back(struct pp *pp)
{
	return recv_byte(pp, side_fd(pp, false));
}

/* --- baseline: a Unix stream socket copy ---------------------------------------- */

static int stream_setup(struct pp *pp)
{
	return socketpair_setup(pp, SOCK_STREAM);
}

/* A payload buffer of this side's own, faulted in (not 0: malloc + memset is calloc). */
static int buf_open(struct pp *pp, bool b)
{
	pp->buf = malloc(pp->size);
	if (!pp->buf)
		return -ENOMEM;
	memset(pp->buf, 0xa5, pp->size);
	return 0;
}

static int copy_ping(struct pp *pp)
{
	touch_write(pp->buf, pp->size, mark_of(pp), pp->touch);
	return send_all(side_fd(pp, false), pp->buf, pp->size);
}

static int copy_take(struct pp *pp)
{
	int r = recv_all(pp, side_fd(pp, true), pp->buf, pp->size);

	if (r == 0 && !touch_read(pp->buf, pp->size, mark_of(pp), pp->touch))
		r = -EBADMSG;
	return r;
}

/* --- baseline: a fresh sealed memfd per message ---------------------------------- */

static int memfd_make(struct pp *pp)
{
	int fd, r = 0;
	void *p;

	fd = memfd_create("tensorfd-bench", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)pp->size) < 0)
		r = -errno;
	p = r ? MAP_FAILED : mmap(NULL, pp->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r == 0 && p == MAP_FAILED)
		r = -errno;
	if (r == 0) {
		touch_write(p, pp->size, mark_of(pp), pp->touch);
		munmap(p, pp->size);
	}
	if (r == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
						     F_SEAL_SEAL) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

static int memfd_ping(struct pp *pp)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char c = 1;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	int fd, r = 0;

	fd = memfd_make(pp);
	if (fd < 0)
		return fd;
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (sendmsg(side_fd(pp, false), &mh, MSG_NOSIGNAL) != 1)
		r = -errno;
	close(fd);
	return r;
}

/* What a careful receiver does: the fd is a sealed memfd at least this big. */
static int memfd_check(int fd, uint64_t size)
{
	const int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
	struct stat st;
	int seals;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & need) != need)
		return -EPERM;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < size)
		return -EBADFD;
	return 0;
}

static int memfd_recv_fd(struct pp *pp)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	uint64_t until = spin_deadline(pp);
	struct cmsghdr *cm;
	ssize_t n;
	int fd;

	do {
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		n = recvmsg(side_fd(pp, true), &mh, MSG_CMSG_CLOEXEC |
				    (until && now_ns() < until ? MSG_DONTWAIT : 0));
	} while (n < 0 && (errno == EAGAIN || errno == EINTR));
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int)))
		return -EBADMSG;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static int memfd_take(struct pp *pp)
{
	int fd, r;
	void *p;

	fd = memfd_recv_fd(pp);
	if (fd < 0)
		return fd;
	r = memfd_check(fd, pp->size);
	p = r ? MAP_FAILED : mmap(NULL, pp->size, PROT_READ, MAP_SHARED, fd, 0);
	if (r == 0 && p == MAP_FAILED)
		r = -errno;
	if (r == 0) {
		if (!touch_read(p, pp->size, mark_of(pp), pp->touch))
			r = -EBADMSG;
		munmap(p, pp->size);
	}
	close(fd);
	return r;
}

/* --- baseline: ZeroMQ PAIR over ipc:// ------------------------------------------- */

#ifdef HAVE_ZMQ
static int zmq_err(void)
{
	return zmq_errno() ? -zmq_errno() : -EIO;
}

static int zmq_setup(struct pp *pp)
{
	const char *dir = getenv("TENSORFD_RUNTIME_DIR");

	snprintf(pp->path, sizeof(pp->path), "%s/zmq-%d", dir ? dir : "/tmp", (int)getpid());
	return 0;
}

/* A binds (and gets a payload buffer), B connects: zmq is set up after fork. */
static int zmq_open_side(struct pp *pp, bool b)
{
	char ep[sizeof(pp->path) + 8];
	int zero = 0, r;

	snprintf(ep, sizeof(ep), "ipc://%s", pp->path);
	pp->zctx = zmq_ctx_new();
	pp->zsock = pp->zctx ? zmq_socket(pp->zctx, ZMQ_PAIR) : NULL;
	if (!pp->zsock)
		return zmq_err();
	zmq_setsockopt(pp->zsock, ZMQ_LINGER, &zero, sizeof(zero));
	r = b ? zmq_connect(pp->zsock, ep) : zmq_bind(pp->zsock, ep);
	if (r < 0)
		return zmq_err();
	return b ? 0 : buf_open(pp, b);
}

static int zmq_send_all(struct pp *pp, const void *p, size_t len)
{
	int n;

	do
		n = zmq_send(pp->zsock, p, len, 0);
	while (n < 0 && zmq_errno() == EINTR);
	return n < 0 ? zmq_err() : 0;
}

/* The next message, spinning with ZMQ_DONTWAIT while allowed. */
static int zmq_recv_msg(struct pp *pp, zmq_msg_t *m)
{
	uint64_t until = spin_deadline(pp);
	int n;

	zmq_msg_init(m);
	do
		n = zmq_msg_recv(m, pp->zsock, until && now_ns() < until ? ZMQ_DONTWAIT : 0);
	while (n < 0 && (zmq_errno() == EAGAIN || zmq_errno() == EINTR));
	if (n < 0) {
		zmq_msg_close(m);
		return zmq_err();
	}
	return 0;
}

static int zmq_ping(struct pp *pp)
{
	touch_write(pp->buf, pp->size, mark_of(pp), pp->touch);
	return zmq_send_all(pp, pp->buf, pp->size);
}

static int zmq_take(struct pp *pp)
{
	zmq_msg_t m;
	int r;

	r = zmq_recv_msg(pp, &m);
	if (r < 0)
		return r;
	if (zmq_msg_size(&m) != pp->size ||
	    !touch_read(zmq_msg_data(&m), pp->size, mark_of(pp), pp->touch))
		r = -EBADMSG;
	zmq_msg_close(&m);
	return r;
}

static int zmq_pong(struct pp *pp)
{
	char c = 1;

	return zmq_send_all(pp, &c, 1);
}

static int zmq_back(struct pp *pp)
{
	zmq_msg_t m;
	int r;

	r = zmq_recv_msg(pp, &m);
	if (r == 0)
		zmq_msg_close(&m);
	return r;
}

static void zmq_close_side(struct pp *pp, bool b)
{
	if (pp->zsock)
		zmq_close(pp->zsock);
	if (pp->zctx)
		zmq_ctx_term(pp->zctx);
	if (!b)
		unlink(pp->path);
	free(pp->buf);
	pp->buf = NULL;
}
#endif

/* --- the transports ---------------------------------------------------------- */

static const struct pp_ops floors[] = {
	{ "floor", "cache line", false, false, WAIT_SPIN, NULL, NULL, line_ping, line_take,
	  line_pong, line_back, NULL },
	{ "floor", "futex", false, false, WAIT_BLOCK, NULL, NULL, futex_ping, futex_take,
	  futex_pong, futex_back, NULL },
	{ "floor", "eventfd", false, false, WAIT_BLOCK, efd_setup, NULL, efd_ping, efd_take,
	  efd_pong, efd_back, fds_close },
	{ "floor", "seqpacket 1 B", false, false, WAIT_BLOCK | WAIT_SPIN, seqpacket_setup, NULL,
	  byte_ping, byte_take, byte_pong, byte_back, fds_close },
};

static const struct pp_ops baselines[] = {
	{ "baseline", "unix socket copy", true, true, WAIT_BLOCK | WAIT_SPIN, stream_setup,
	  buf_open, copy_ping, copy_take, byte_pong, byte_back, fds_close },
	{ "baseline", "memfd per message", true, false, WAIT_BLOCK | WAIT_SPIN, seqpacket_setup,
	  NULL, memfd_ping, memfd_take, byte_pong, byte_back, fds_close },
#ifdef HAVE_ZMQ
	{ "baseline", "zeromq ipc", true, true, WAIT_BLOCK | WAIT_SPIN, zmq_setup, zmq_open_side,
	  zmq_ping, zmq_take, zmq_pong, zmq_back, zmq_close_side },
#endif
};

/* --- the harness ----------------------------------------------------------------- */

static int side_b(struct pp *pp, unsigned int rounds)
{
	unsigned int i;
	int r;

	if (bench_proc_setup(pp->opt, 1) < 0)
		return 1;
	r = pp->ops->open ? pp->ops->open(pp, true) : 0;
	for (i = 0; r == 0 && i < rounds; i++) {
		pp->seq = i + 1;
		r = pp->ops->take(pp);
		pp->sh->oneway[i] = now_ns() - pp->sh->t0;
		if (r == 0)
			r = pp->ops->pong(pp);
	}
	if (r < 0)
		fprintf(stderr, "tensorfd-bench: %s, consumer: %s\n", pp->ops->name, strerror(-r));
	if (pp->ops->close)
		pp->ops->close(pp, true);
	return r < 0 ? 1 : 0;
}

static int side_a(struct pp *pp, unsigned int rounds, uint64_t *rtt)
{
	unsigned int i;
	uint64_t t0;
	int r;

	r = pp->ops->open ? pp->ops->open(pp, false) : 0;
	for (i = 0; r == 0 && i < rounds; i++) {
		pp->seq = i + 1;
		t0 = now_ns();
		__atomic_store_n(&pp->sh->t0, t0, __ATOMIC_RELEASE);
		r = pp->ops->ping(pp);
		if (r == 0)
			r = pp->ops->back(pp);
		rtt[i] = now_ns() - t0;
	}
	if (r < 0)
		fprintf(stderr, "tensorfd-bench: %s, producer: %s\n", pp->ops->name, strerror(-r));
	if (pp->ops->close)
		pp->ops->close(pp, false);
	return r;
}

static void pp_row(const struct pp *pp, unsigned int warm, unsigned int n, uint64_t *rtt)
{
	struct row *row = row_add();
	unsigned int i;

	snprintf(row->kind, sizeof(row->kind), "latency");
	snprintf(row->group, sizeof(row->group), "%s", pp->ops->group);
	snprintf(row->name, sizeof(row->name), "%s", pp->ops->name);
	snprintf(row->wait, sizeof(row->wait), "%s", pp->spin ? "spin" : "block");
	snprintf(row->touch, sizeof(row->touch), "%s",
		 pp->ops->payload ? touch_name(pp->touch) : "-");
	row->subs = 1;
	row->size = pp->size;
	row->oneway = summarize(pp->sh->oneway + warm, n);
	for (i = 0; i < n; i++)
		rtt[warm + i] /= 2;
	row->half = summarize(rtt + warm, n);
	report_row(pp->opt, row);
}

/* One series: a forked consumer, warm-up rounds, then n measured ones. */
static int pp_run(const struct options *opt, const struct pp_ops *ops, uint64_t size,
		  enum touch touch, bool spin)
{
	unsigned int n = bench_iters(opt, size, ops->copies ? TOUCH_ALL : touch);
	unsigned int warm = n >= 100 ? BENCH_WARMUP : 2;
	struct pp pp = { .opt = opt, .ops = ops, .size = size, .touch = touch, .spin = spin,
			 .fd = { -1, -1 }, .efd = { -1, -1 } };
	size_t map_len = sizeof(struct shared) + (warm + n) * sizeof(uint64_t);
	uint64_t *rtt;
	int status, r;
	pid_t pid;

	pp.sh = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	rtt = calloc(warm + n, sizeof(*rtt));
	if (pp.sh == MAP_FAILED || !rtt) {
		free(rtt);
		return -ENOMEM;
	}
	r = ops->setup ? ops->setup(&pp) : 0;
	fflush(stdout);
	pid = r < 0 ? -1 : fork();
	if (pid == 0)
		_exit(side_b(&pp, warm + n));
	bench_place(opt, 1, pid);
	if (pid < 0 && r == 0)
		r = -errno;
	if (r == 0) {
		/* A closes B's end so that B's exit is seen */
		if (pp.fd[1] >= 0)
			close(pp.fd[1]);
		pp.fd[1] = -1;
		r = side_a(&pp, warm + n, rtt);
	} else if (ops->close) {
		ops->close(&pp, false);
	}
	if (pid > 0 && r < 0)
		kill(pid, SIGTERM);
	if (pid > 0 && (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))) {
		/* say how the consumer ended: its own message may be all there is */
		if (WIFSIGNALED(status))
			fprintf(stderr, "tensorfd-bench: %s, consumer killed by signal %d\n",
				ops->name, WTERMSIG(status));
		else if (WIFEXITED(status))
			fprintf(stderr, "tensorfd-bench: %s, consumer exited %d\n", ops->name,
				WEXITSTATUS(status));
		r = r ? r : -ECHILD;
	}
	if (r == 0)
		pp_row(&pp, warm, n, rtt);
	else
		fprintf(stderr, "tensorfd-bench: %s, %llu bytes, %s: %s\n", ops->name,
			(unsigned long long)size, spin ? "spin" : "block", strerror(-r));
	free(rtt);
	munmap(pp.sh, map_len);
	return r;
}

int run_floors(const struct options *opt)
{
	unsigned int i, w;
	int r = 0;

	for (i = 0; r == 0 && i < sizeof(floors) / sizeof(floors[0]); i++) {
		for (w = WAIT_BLOCK; r == 0 && w <= WAIT_SPIN; w <<= 1) {
			if (!(floors[i].waits & w))
				continue;
			/* spinning needs a CPU each; the cache line is the one floor that must */
			if (w == WAIT_SPIN && !bench_can_spin(opt, 2))
				continue;
			r = pp_run(opt, &floors[i], 0, TOUCH_ENDS, w == WAIT_SPIN);
		}
	}
	return r;
}

int run_baselines(const struct options *opt)
{
	unsigned int i, s, w, t;
	int r = 0;

	for (i = 0; r == 0 && i < sizeof(baselines) / sizeof(baselines[0]); i++)
		for (t = TOUCH_ENDS; r == 0 && t <= TOUCH_ALL; t++)
			for (w = WAIT_BLOCK; r == 0 && w <= WAIT_SPIN; w <<= 1) {
				if (!(opt->touches & (1u << t)) || !(opt->waits & w))
					continue;
				if (w == WAIT_SPIN && !bench_can_spin(opt, 2))
					continue;
				for (s = 0; r == 0 && s < opt->n_sizes; s++)
					r = pp_run(opt, &baselines[i], opt->sizes[s], t,
						   w == WAIT_SPIN);
			}
	return r;
}
