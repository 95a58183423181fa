/* SPDX-License-Identifier: MIT */
/*
 * A packet that arrives for a channel must not interrupt what the thread
 * that owns it is doing meanwhile. With io_uring the posted receive
 * completes through task work queued to that thread; notified the usual
 * way (TIF_NOTIFY_SIGNAL) it looks like a pending signal to the kernel, so
 * the thread's epoll_wait() on some other fd fails with EINTR and a
 * driver's mutex_lock_interruptible() fails, which a V4L2 camera's poll
 * turns into POLLERR (tests/vm/v4l2-poll.c shows that one on vivid).
 * Here: the thread waits in epoll_wait() on a pipe of its own while a
 * child sends it messages (it subscribes) or releases (it publishes), and
 * no wait may end with EINTR. Each side runs in a fresh process: closing a
 * ring also notifies the threads that used it, once, a while later (the
 * kernel's ring exit work), and a ring closed by an earlier case would be
 * counted here. And a channel still moves from one thread to
 * another (tensorfd(7), Threads), though the ring that keeps this promise
 * takes completions only in the thread that made it.
 */
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/mman.h>

#include "tap.h"
#include "tensorfd.h"

#define TOPIC	"intr/t"
#define ROUNDS	20

static int publish_one(struct tfd_publisher *pub)
{
	const int64_t n = 64;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	int r;

	r = tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &n, &b, &l);
	if (r < 0)
		return r;
	r = tfd_message_new(&m);
	if (r == 0) {
		tfd_message_add_tensor(m, "x", b, &l);
		r = tfd_publisher_publish(pub, m);
		tfd_message_unref(m);
	}
	tfd_buffer_unref(b);
	return r;
}

/*
 * Whether the promise holds here: the io_uring backend keeps it with
 * deferred task work (6.1); the poll backend keeps it anyway.
 */
static const char *cannot_promise(void)
{
	struct io_uring ring;
	const char *env = getenv("TENSORFD_NOTIFY");
	int r;

	if (env && strcmp(env, "poll") == 0)
		return NULL;
#ifdef IORING_SETUP_DEFER_TASKRUN
	r = io_uring_queue_init(2, &ring, IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER);
	if (r == 0) {
		io_uring_queue_exit(&ring);
		return NULL;
	}
	if (r != -EINVAL)
		return NULL;	/* no io_uring at all: the poll backend runs */
#endif
	return "no IORING_SETUP_DEFER_TASKRUN (before 6.1): packets interrupt the thread "
	       "(tensorfd(7), NOTES)";
}

static void no_eintr(unsigned int eintr, const char *what)
{
	const char *why = cannot_promise();

	if (why) {
		diag("%s interrupted the thread's epoll_wait() %u times", what, eintr);
		skip("%s", why);
		return;
	}
	ok(eintr == 0, "%s interrupted the thread's epoll_wait() %u times", what, eintr);
}

/* Sleep in epoll_wait() on rfd until it has a byte; count the EINTRs meanwhile. */
static int wait_byte(int rfd, unsigned int *eintr)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC), r;
	char c;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, rfd, &ev) < 0)
		return -errno;
	for (;;) {
		r = epoll_wait(ep, &ev, 1, 10000);
		if (r < 0 && errno == EINTR) {
			(*eintr)++;
			continue;
		}
		break;
	}
	close(ep);
	if (r != 1)
		return r < 0 ? -errno : -ETIMEDOUT;
	return read(rfd, &c, 1) == 1 ? 0 : -EIO;
}

static int put_byte(int wfd)
{
	return write(wfd, "x", 1) == 1 ? 0 : -EIO;
}

/* Child publisher: one message per byte from the parent, then a byte back a little later. */
static int child_publisher(int go, int done)
{
	struct tfd_publisher *pub;
	struct tfd_publisher_stats st;
	uint64_t end;
	int i;

	if (tfd_publisher_new(TOPIC, 0, &pub) < 0)
		return 2;
	put_byte(done);
	for (end = now_ms() + 5000;; tfd_publisher_dispatch(pub, 10)) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == 1)
			break;
		if (now_ms() > end)
			return 3;
	}
	for (i = 0; i < ROUNDS; i++) {
		if (wait_byte(go, &(unsigned int){ 0 }) < 0)
			return 4;
		if (publish_one(pub) < 0)
			return 5;
		/* the parent sleeps meanwhile; its receive completes now */
		tfd_publisher_dispatch(pub, 30);
		put_byte(done);
	}
	tfd_publisher_dispatch(pub, 100);
	tfd_publisher_unref(pub);
	return 0;
}

static void subscriber_side(void)
{
	struct tfd_subscriber *sub = NULL;
	struct tfd_message *m;
	unsigned int eintr = 0, got = 0;
	int go[2], done[2], i, r;
	pid_t pid;

	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0)
		return (void)ok(0, "pipes: %s", strerror(errno));
	pid = fork();
	if (pid == 0)
		_exit(child_publisher(go[0], done[1]));
	wait_byte(done[0], &(unsigned int){ 0 });
	r = tfd_subscriber_new(TOPIC, 0, &sub);
	ok(r == 0, "subscriber (%d)", r);
	for (i = 0; sub && i < ROUNDS; i++) {
		put_byte(go[1]);
		if (wait_byte(done[0], &eintr) < 0)
			break;
		if (tfd_subscriber_recv(sub, 5000, &m) == 0) {
			got++;
			tfd_message_unref(m);
		}
	}
	ok(got == ROUNDS, "%u of %d messages received", got, ROUNDS);
	no_eintr(eintr, "a subscriber's packets");
	tfd_subscriber_unref(sub);
	ok(wait_child(pid) == 0, "the publisher exited 0");
	close(go[0]), close(go[1]), close(done[0]), close(done[1]);
}

/* Child subscriber: hold each message until the parent sleeps, then drop it (a release). */
static int child_subscriber(int go, int done)
{
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	int i;

	if (tfd_subscriber_new(TOPIC, 0, &sub) < 0)
		return 2;
	for (i = 0; i < ROUNDS; i++) {
		if (tfd_subscriber_recv(sub, 5000, &m) < 0)
			return 3;
		/* the parent waits for this byte in epoll_wait() before we release */
		if (wait_byte(go, &(unsigned int){ 0 }) < 0)
			return 4;
		tfd_message_unref(m);
		/* the release is on its way: let it land while the parent sleeps */
		usleep(20000);
		put_byte(done);
	}
	tfd_subscriber_unref(sub);
	return 0;
}

static void publisher_side(void)
{
	struct tfd_publisher *pub = NULL;
	struct tfd_publisher_stats st;
	unsigned int eintr = 0;
	int go[2], done[2], i, r;
	uint64_t end;
	pid_t pid;

	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0)
		return (void)ok(0, "pipes: %s", strerror(errno));
	r = tfd_publisher_new(TOPIC, 0, &pub);
	if (!ok(r == 0, "publisher (%d)", r))
		return;
	pid = fork();
	if (pid == 0)
		_exit(child_subscriber(go[0], done[1]));
	for (end = now_ms() + 5000; now_ms() < end; tfd_publisher_dispatch(pub, 10)) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == 1)
			break;
	}
	for (i = 0; i < ROUNDS; i++) {
		if (publish_one(pub) < 0)
			break;
		tfd_publisher_dispatch(pub, 0);
		put_byte(go[1]);
		if (wait_byte(done[0], &eintr) < 0)
			break;
		tfd_publisher_dispatch(pub, 0);
	}
	ok(i == ROUNDS, "%d of %d rounds", i, ROUNDS);
	no_eintr(eintr, "subscribers' releases");
	ok(wait_child(pid) == 0, "the subscriber exited 0");
	tfd_publisher_dispatch(pub, 0);
	tfd_publisher_get_stats(pub, &st);
	ok(st.pool_buffers_busy == 0, "every loan came back (%llu busy)",
	   (unsigned long long)st.pool_buffers_busy);
	tfd_publisher_unref(pub);
	close(go[0]), close(go[1]), close(done[0]), close(done[1]);
}

struct handoff {
	struct tfd_channel *ch;
	int fd, r_first, r_recv, r_send, readable;
	pthread_barrier_t made, moved;
};

/* The first thread sets the channel up and stays alive while the second uses it. */
static void *first_thread(void *arg)
{
	struct handoff *h = arg;
	struct tfd_message *m;

	h->fd = tfd_channel_get_fd(h->ch);
	h->r_first = tfd_channel_recv(h->ch, 0, &m);
	pthread_barrier_wait(&h->made);
	pthread_barrier_wait(&h->moved);
	return NULL;
}

static void *second_thread(void *arg)
{
	struct handoff *h = arg;
	struct pollfd pfd = { .fd = h->fd, .events = POLLIN };
	struct tfd_message *m;

	h->readable = poll(&pfd, 1, 5000) == 1 && tfd_channel_get_fd(h->ch) == h->fd;
	h->r_recv = tfd_channel_recv(h->ch, 5000, &m);
	if (h->r_recv == 0)
		tfd_message_unref(m);
	if (tfd_message_new(&m) == 0) {
		h->r_send = tfd_channel_send(h->ch, m);
		tfd_message_unref(m);
	}
	return NULL;
}

static void thread_handoff(void)
{
	struct handoff h = { .fd = -1 };
	struct tfd_channel *peer;
	struct tfd_message *m;
	pthread_t t1, t2;
	int r;

	if (!ok(tfd_channel_pair(&h.ch, &peer) == 0, "a channel pair"))
		return;
	pthread_barrier_init(&h.made, NULL, 2);
	pthread_barrier_init(&h.moved, NULL, 2);
	pthread_create(&t1, NULL, first_thread, &h);
	pthread_barrier_wait(&h.made);
	ok(h.fd >= 0 && h.r_first == -EAGAIN, "one thread sets it up: fd %d, recv(0) %d", h.fd,
	   h.r_first);
	r = tfd_message_new(&m);
	if (r == 0) {
		r = tfd_channel_send(peer, m);
		tfd_message_unref(m);
	}
	pthread_create(&t2, NULL, second_thread, &h);
	pthread_join(t2, NULL);
	ok(h.readable, "another thread sees its fd (the same) readable with a message waiting");
	ok(r == 0 && h.r_recv == 0, "and receives the message (%d, %d)", r, h.r_recv);
	ok(h.r_send == 0, "and sends on it (%d)", h.r_send);
	r = tfd_channel_recv(peer, 5000, &m);
	ok(r == 0, "the peer gets that message (%d)", r);
	if (r == 0)
		tfd_message_unref(m);
	pthread_barrier_wait(&h.moved);
	pthread_join(t1, NULL);
	tfd_channel_unref(h.ch);
	tfd_channel_unref(peer);
	pthread_barrier_destroy(&h.made);
	pthread_barrier_destroy(&h.moved);
}

/* Run a case in a fresh process, its TAP lines numbered on from ours. */
static void in_child(void (*fn)(void), const char *name)
{
	int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;

	if (shared == MAP_FAILED)
		return (void)ok(0, "%s: mmap: %s", name, strerror(errno));
	shared[0] = -1;
	pid = fork();
	if (pid == 0) {
		fn();
		shared[0] = tap_count;
		shared[1] = tap_failed;
		_exit(0);
	}
	if (wait_child(pid) != 0 || shared[0] < 0) {
		ok(0, "%s: the process running it ended early", name);
	} else {
		tap_count = shared[0];
		tap_failed = shared[1];
	}
	munmap(shared, 4096);
}

int main(void)
{
	char dir[] = "/tmp/tfd-intr-XXXXXX";
	int fds0;

	tap_init(60);
	signal(SIGPIPE, SIG_IGN);
	fds0 = count_fds();
	tap_runtime_dir(dir);
	in_child(subscriber_side, "subscriber side");
	in_child(publisher_side, "publisher side");
	thread_handoff();
	rm_tree(dir);
	ok(count_fds() == fds0, "no fd leaked");
	return done_testing();
}
