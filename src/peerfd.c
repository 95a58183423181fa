/* SPDX-License-Identifier: MIT */
/*
 * Closing fds a peer sent that we do not keep (see peerfd.h). A shmem file
 * (memfd, tmpfs: F_GET_SEALS answers, and no filesystem driver is asked)
 * closes at once. Anything else goes to one reaper thread, started the
 * first time a peer sends such an fd, which turns a socket's linger off
 * (SO_LINGER {1, 0}: its last close resets instead of waiting for unsent
 * data) and closes it. The caller waits a little for its fds to go, so an
 * ordinary stray fd is closed when the call that met it returns; while
 * the reaper is stuck in a close, nobody waits for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "peerfd.h"

/*
 * A caller waits at most REAP_WAIT_MS for its fds to close (generous: on a
 * loaded machine the reaper may wait for a CPU), and stops waiting once one
 * close has taken REAP_STUCK_MS: then the reaper is stuck and nobody waits.
 */
#define REAP_WAIT_MS	1000
#define REAP_STUCK_MS	200
#define REAP_STACK	(64 * 1024)

static pthread_mutex_t reap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reap_work;	/* the reaper waits for fds */
static pthread_cond_t reap_done;	/* callers wait for their fds to close */
static int *reap_q;			/* fds to close: reap_q[reap_head .. +reap_len) */
static size_t reap_head, reap_len, reap_cap;
static unsigned long reap_queued, reap_closed;
static uint64_t reap_busy_since;	/* 0: the reaper is not in a close */
static pid_t reap_pid;			/* the process the reaper runs in; 0: none */
static pthread_once_t reap_once = PTHREAD_ONCE_INIT;
/*
 * The reaper's stack comes from the heap: no mapping of its own, so
 * counting a process's mappings (as the tests do) does not see it. A
 * forked child, which has no reaper, reuses it for its own.
 */
static void *reap_stack;

static void reap_conds_init(void)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&reap_work, &a);
	pthread_cond_init(&reap_done, &a);
	pthread_condattr_destroy(&a);
}

/* A forked child has no reaper; what was queued is closed by its own, later. */
static void reap_atfork_child(void)
{
	pthread_mutex_init(&reap_lock, NULL);
	reap_conds_init();
	reap_pid = 0;
	reap_busy_since = 0;
	reap_closed = reap_queued - reap_len;
}

static void reap_setup(void)
{
	reap_conds_init();
	pthread_atfork(NULL, NULL, reap_atfork_child);
}

static void defuse_and_close(int fd)
{
	struct linger off = { .l_onoff = 1, .l_linger = 0 };

	/* ENOTSOCK for anything but a socket, without looking further */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
	close(fd);
}

static void *reaper(void *arg)
{
	int fd;

	pthread_mutex_lock(&reap_lock);
	for (;;) {
		while (!reap_len)
			pthread_cond_wait(&reap_work, &reap_lock);
		fd = reap_q[reap_head++];
		reap_len--;
		reap_busy_since = tfd_now_ns();
		pthread_mutex_unlock(&reap_lock);
		defuse_and_close(fd);
		pthread_mutex_lock(&reap_lock);
		reap_busy_since = 0;
		reap_closed++;
		pthread_cond_broadcast(&reap_done);
	}
	return arg;
}

/* Under reap_lock: a reaper runs in this process, or false. */
static bool reaper_start(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int r;

	if (reap_pid == getpid())
		return true;
	if (!reap_stack)
		reap_stack = aligned_alloc(4096, REAP_STACK);
	if (!reap_stack)
		return false;
	/* signals are the application's threads' business, never the reaper's */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstack(&attr, reap_stack, REAP_STACK);
	r = pthread_create(&t, &attr, reaper, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return false;
	pthread_setname_np(t, "tfd-reaper");
	reap_pid = getpid();
	return true;
}

/* Under reap_lock: room for n more fds. */
static bool reap_reserve(size_t n)
{
	size_t cap;
	int *q;

	if (reap_head && reap_head + reap_len + n > reap_cap) {
		memmove(reap_q, reap_q + reap_head, reap_len * sizeof(*reap_q));
		reap_head = 0;
	}
	if (reap_len + n <= reap_cap)
		return true;
	cap = reap_cap ? reap_cap : 16;
	while (cap < reap_len + n)
		cap *= 2;
	q = realloc(reap_q, cap * sizeof(*q));
	if (!q)
		return false;
	reap_q = q;
	reap_cap = cap;
	return true;
}

/* Under reap_lock: when a waiter must look again (deadline, or the reaper stuck). */
static uint64_t reap_next_look(uint64_t deadline)
{
	uint64_t stuck_at = reap_busy_since + REAP_STUCK_MS * 1000000ull;

	return reap_busy_since && stuck_at < deadline ? stuck_at : deadline;
}

static bool reaper_stuck(void)
{
	return reap_busy_since && tfd_now_ns() - reap_busy_since >= REAP_STUCK_MS * 1000000ull;
}

void peerfd_close_many(int *fds, unsigned int n)
{
	unsigned int i, slow = 0;
	unsigned long mine;
	struct timespec until;
	uint64_t deadline;

	for (i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		/* only shmem and hugetlbfs answer, and neither blocks in close */
		if (fcntl(fds[i], F_GET_SEALS) >= 0) {
			close(fds[i]);
			fds[i] = -1;
		} else {
			slow++;
		}
	}
	if (!slow)
		return;
	pthread_once(&reap_once, reap_setup);
	pthread_mutex_lock(&reap_lock);
	if (!reaper_start() || !reap_reserve(slow)) {
		pthread_mutex_unlock(&reap_lock);
		/* no thread or no memory: the old way, and say so */
		tfd_log(TFD_LOG_WARNING, "cannot hand a peer's fds to the reaper: closing them here");
		for (i = 0; i < n; i++)
			if (fds[i] >= 0)
				defuse_and_close(fds[i]);
		return;
	}
	for (i = 0; i < n; i++)
		if (fds[i] >= 0) {
			reap_q[reap_head + reap_len++] = fds[i];
			fds[i] = -1;
		}
	reap_queued += slow;
	mine = reap_queued;
	pthread_cond_signal(&reap_work);
	deadline = tfd_now_ns() + REAP_WAIT_MS * 1000000ull;
	while (reap_closed < mine && !reaper_stuck() && tfd_now_ns() < deadline) {
		uint64_t at = reap_next_look(deadline);

		until = (struct timespec){ .tv_sec = (time_t)(at / 1000000000),
					   .tv_nsec = (long)(at % 1000000000) };
		pthread_cond_timedwait(&reap_done, &reap_lock, &until);
	}
	pthread_mutex_unlock(&reap_lock);
}

void peerfd_close(int fd)
{
	peerfd_close_many(&fd, 1);
}

unsigned long peerfd_reaped(void)
{
	unsigned long n;

	pthread_mutex_lock(&reap_lock);
	n = reap_queued;
	pthread_mutex_unlock(&reap_lock);
	return n;
}

unsigned long peerfd_outstanding(void)
{
	unsigned long n;

	pthread_mutex_lock(&reap_lock);
	n = reap_queued - reap_closed;
	pthread_mutex_unlock(&reap_lock);
	return n;
}

unsigned int peerfd_collect(struct msghdr *mh, int *fds, unsigned int max, unsigned int *dropped)
{
	unsigned int n = 0, extra = 0;
	struct cmsghdr *c;
	size_t i, k;
	int fd;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (n < max) {
				fds[n++] = fd;
			} else {
				peerfd_close(fd);
				extra++;
			}
		}
	}
	if (dropped)
		*dropped = extra;
	return n;
}

ssize_t peerfd_recv_bare(int sockfd, void *buf, size_t cap, char *errbuf, size_t errlen)
{
	char cbuf[CMSG_SPACE(sizeof(int) * PEER_CMSG_FDS)] __attribute__((aligned(8)));
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	int fds[PEER_CMSG_FDS];
	struct msghdr mh;
	unsigned int nfds;
	ssize_t n;

	do {
		mh = (struct msghdr){ .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				      .msg_controllen = sizeof(cbuf) };
		n = recvmsg(sockfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	nfds = peerfd_collect(&mh, fds, PEER_CMSG_FDS, NULL);
	if (nfds) {
		peerfd_close_many(fds, nfds);
		return tfd_fail(errbuf, errlen, -EBADMSG,
				"packet carries %u fds where the protocol has none", nfds);
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		return tfd_fail(errbuf, errlen, -EBADMSG, "oversized packet (%s truncated)",
				mh.msg_flags & MSG_TRUNC ? "data" : "control data");
	return n;
}
