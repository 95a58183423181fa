/* SPDX-License-Identifier: MIT */
/*
 * Failing system calls. This program defines memfd_create, ftruncate, mmap,
 * madvise, fcntl, sendmsg, recvmsg and io_uring_queue_init itself; the
 * static core library's calls resolve to these first, and they call the
 * real functions (dlsym(RTLD_NEXT)) unless a fault is armed. For each
 * injected failure: the public call returns the negative errno, no fd and
 * no mapping is left behind, and the object is still usable (the same call
 * succeeds once the fault is gone) or has ended cleanly.
 *
 * Then RLIMIT_NOFILE exhaustion for real: what a receiver does when the
 * kernel cannot install the fds a message brings. Last, introspection with
 * failing calls on either side.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "internal.h"
#include "tap.h"

enum fault_fn {
	FAULT_NONE,
	FAULT_MEMFD_CREATE,
	FAULT_FTRUNCATE,
	FAULT_MMAP,
	FAULT_MADVISE,
	FAULT_ADD_SEALS,
	FAULT_GET_SEALS,
	FAULT_SENDMSG,
	FAULT_RECVMSG,
	FAULT_URING_INIT,
};

static struct {
	enum fault_fn fn;
	unsigned int skip;	/* matching calls let through first */
	int count;		/* matching calls failed then; -1: every one */
	int err;
	unsigned int failed;	/* calls failed so far */
} fault;

static void arm(enum fault_fn fn, unsigned int skip, int count, int err)
{
	fault.fn = fn;
	fault.skip = skip;
	fault.count = count;
	fault.err = err;
	fault.failed = 0;
}

static void disarm(void)
{
	fault.fn = FAULT_NONE;
}

static bool fail_now(enum fault_fn fn)
{
	if (fault.fn != fn || fault.count == 0)
		return false;
	if (fault.skip) {
		fault.skip--;
		return false;
	}
	if (fault.count > 0)
		fault.count--;
	fault.failed++;
	errno = fault.err;
	return true;
}

#define REAL(name) \
	static __typeof__(name) *real_##name; \
	if (!real_##name) \
		real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

int memfd_create(const char *name, unsigned int flags)
{
	REAL(memfd_create);
	if (fail_now(FAULT_MEMFD_CREATE))
		return -1;
	return real_memfd_create(name, flags);
}

int ftruncate(int fd, off_t length)
{
	REAL(ftruncate);
	if (fail_now(FAULT_FTRUNCATE))
		return -1;
	return real_ftruncate(fd, length);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	REAL(mmap);
	if (fd >= 0 && fail_now(FAULT_MMAP))
		return MAP_FAILED;
	return real_mmap(addr, len, prot, flags, fd, off);
}

int madvise(void *addr, size_t len, int advice)
{
	REAL(madvise);
	if (fail_now(FAULT_MADVISE))
		return -1;
	return real_madvise(addr, len, advice);
}

int fcntl(int fd, int cmd, ...)
{
	unsigned long arg;
	va_list ap;

	REAL(fcntl);
	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	if ((cmd == F_ADD_SEALS && fail_now(FAULT_ADD_SEALS)) ||
	    (cmd == F_GET_SEALS && fail_now(FAULT_GET_SEALS)))
		return -1;
	return real_fcntl(fd, cmd, arg);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	REAL(sendmsg);
	if (fail_now(FAULT_SENDMSG))
		return -1;
	return real_sendmsg(fd, msg, flags);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	REAL(recvmsg);
	if (fail_now(FAULT_RECVMSG))
		return -1;
	return real_recvmsg(fd, msg, flags);
}

int io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	REAL(io_uring_queue_init);
	if (fail_now(FAULT_URING_INIT))
		return -fault.err;	/* liburing returns -errno */
	return real_io_uring_queue_init(entries, ring, flags);
}

/* --- helpers --- */

#define UNTOUCHED ((void *)0x5a5a5a5a)

static int base_fds, base_maps;

/*
 * Shared mappings only: the library's own (buffers, io_uring rings) are all
 * MAP_SHARED, and this way an allocator that maps more private memory as it
 * goes (ASan's does) does not count.
 */
static int count_shared_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512], perms[8];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %7s", perms) == 1 && perms[3] == 's')
			n++;
	fclose(f);
	return n;
}

static void baseline(void)
{
	base_fds = count_fds();
	base_maps = count_shared_maps();
}

static void check_baseline(const char *what)
{
	int fds = count_fds(), maps = count_shared_maps();

	ok(fds == base_fds && maps == base_maps,
	   "%s: fds %d (baseline %d), shared mappings %d (%d)", what, fds, base_fds, maps,
	   base_maps);
}

static struct tfd_message *tensor_msg(struct tfd_buffer *buf, const char *name)
{
	const int64_t shape[] = { 16 };
	struct tfd_message *m;
	struct tfd_layout l;

	if (tfd_layout_init(&l, (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 1, shape) < 0 ||
	    tfd_message_new(&m) < 0)
		return NULL;
	if (tfd_message_add_tensor(m, name, buf, &l) < 0)
		return tfd_message_unref(m);
	return m;
}

/* a sends one tensor of buf; b gets it and finds the bytes. */
static bool roundtrip(struct tfd_channel *a, struct tfd_channel *b, struct tfd_buffer *buf)
{
	struct tfd_message *m = tensor_msg(buf, "t"), *got = NULL;
	bool good;

	((uint32_t *)tfd_buffer_data(buf))[3] = 0xfeedf00d;
	good = m && tfd_channel_send(a, m) == 0 && tfd_channel_recv(b, 2000, &got) == 0 &&
	       ((const uint32_t *)tfd_message_data(got, 0))[3] == 0xfeedf00d;
	tfd_message_unref(got);
	tfd_message_unref(m);
	/* let a take in the release */
	tfd_channel_dispatch(a, 0);
	return good;
}

static bool pair_roundtrip(void)
{
	struct tfd_channel *a, *b;
	struct tfd_buffer *buf;
	bool good = false;

	if (tfd_channel_pair(&a, &b) < 0)
		return false;
	if (tfd_buffer_new(4096, 0, &buf) == 0) {
		good = roundtrip(a, b, buf);
		tfd_buffer_unref(buf);
	}
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	return good;
}

/* --- buffers --- */

static void buffer_fault(enum fault_fn fn, int err, unsigned int flags, const char *what,
			 const char *reason)
{
	struct tfd_buffer *b = UNTOUCHED;
	int r;

	arm(fn, 0, 1, err);
	r = tfd_buffer_new(8192, flags, &b);
	disarm();
	ok(r == -err && b == UNTOUCHED && fault.failed == 1,
	   "tfd_buffer_new, %s fails with %s: %d (%s), output untouched", what, strerror(err), r,
	   tfd_last_error());
	ok(strstr(tfd_last_error(), reason) != NULL, "the reason names %s", reason);
	check_baseline(what);
	r = tfd_buffer_new(8192, flags, &b);
	ok(r == 0 && tfd_buffer_is_writable(b), "tfd_buffer_new works again");
	tfd_buffer_unref(b);
}

static void test_buffers(void)
{
	struct tfd_buffer *b = UNTOUCHED;
	int r;

	r = tfd_buffer_new(8192, 0, &b);
	ok(r == 0 && count_fds() == base_fds + 1 && count_shared_maps() == base_maps + 1,
	   "a live buffer counts as one fd and one shared mapping");
	tfd_buffer_unref(b);

	buffer_fault(FAULT_MEMFD_CREATE, ENOMEM, 0, "memfd_create", "memfd_create");
	buffer_fault(FAULT_MEMFD_CREATE, EMFILE, 0, "memfd_create", "memfd_create");
	buffer_fault(FAULT_FTRUNCATE, EFBIG, 0, "ftruncate", "ftruncate");
	buffer_fault(FAULT_MMAP, ENOMEM, 0, "mmap", "mmap");
	buffer_fault(FAULT_ADD_SEALS, EPERM, 0, "F_ADD_SEALS", "sealing");
	buffer_fault(FAULT_MADVISE, ENOMEM, TFD_BUFFER_POPULATE, "MADV_POPULATE_WRITE", "prefault");

	/* a kernel without MADV_POPULATE_WRITE (EINVAL): the pages are touched instead */
	arm(FAULT_MADVISE, 0, 1, EINVAL);
	r = tfd_buffer_new(8192, TFD_BUFFER_POPULATE, &b);
	disarm();
	ok(r == 0 && fault.failed == 1 && tfd_buffer_size(b) == 8192,
	   "MADV_POPULATE_WRITE missing (EINVAL): the buffer is prefaulted by hand");
	tfd_buffer_unref(b);
	check_baseline("populate fallback");
}

/* --- sending --- */

static void test_pair_hello(void)
{
	struct tfd_channel *a = UNTOUCHED, *b = UNTOUCHED;
	unsigned int which;
	int r;

	for (which = 0; which < 2; which++) {
		arm(FAULT_SENDMSG, which, 1, which ? ENOBUFS : EPIPE);
		r = tfd_channel_pair(&a, &b);
		disarm();
		ok(r == (which ? -ENOBUFS : -ECONNRESET) && fault.failed == 1 && a == UNTOUCHED &&
			   b == UNTOUCHED,
		   "tfd_channel_pair, hello %u fails (%s): %d, outputs untouched", which + 1,
		   strerror(fault.err), r);
		check_baseline("failed tfd_channel_pair");
	}
	ok(pair_roundtrip(), "tfd_channel_pair works again");
	check_baseline("tfd_channel_pair");
}

static void test_send_eagain(void)
{
	struct tfd_channel_stats st;
	struct tfd_channel *a, *b;
	struct tfd_message *m, *got = NULL;
	struct tfd_buffer *buf;
	uint64_t t0;
	int r;

	if (tfd_channel_pair(&a, &b) < 0 || tfd_buffer_new(4096, 0, &buf) < 0) {
		ok(0, "set-up");
		return;
	}
	m = tensor_msg(buf, "t");

	/* a full socket with send timeout 0: nothing sent, the message can go again */
	tfd_channel_set_send_timeout(a, 0);
	arm(FAULT_SENDMSG, 0, 1, EAGAIN);
	r = tfd_channel_send(a, m);
	disarm();
	tfd_channel_get_stats(a, &st);
	ok(r == -ETIMEDOUT && fault.failed == 1, "sendmsg EAGAIN, send timeout 0: %d (%s)", r,
	   tfd_channel_strerror(a));
	ok(st.messages_sent == 0 && st.fds_sent == 0 && st.messages_in_flight == 0 &&
		   tfd_buffer_loans(buf) == 0,
	   "nothing counted as sent, the buffer is not on loan");
	ok(tfd_channel_recv(b, 0, &got) == -EAGAIN, "the peer got nothing");
	r = tfd_channel_send(a, m);
	ok(r == 0 && tfd_channel_recv(b, 2000, &got) == 0 && tfd_message_count(got) == 1,
	   "the same message is sent again and arrives");
	got = tfd_message_unref(got);
	ok(tfd_channel_recv(b, 0, &got) == -EAGAIN, "exactly once");
	tfd_channel_get_stats(a, &st);
	ok(st.messages_sent == 1 && st.fds_sent == 1, "one message, one fd passed");

	/* one EAGAIN with no timeout: poll(2) for room, then it goes */
	tfd_channel_set_send_timeout(a, -1);
	arm(FAULT_SENDMSG, 0, 1, EAGAIN);
	r = tfd_channel_send(a, m);
	disarm();
	ok(r == 0 && fault.failed == 1 && tfd_channel_recv(b, 2000, &got) == 0,
	   "sendmsg EAGAIN once, no timeout: sent after waiting for room");
	got = tfd_message_unref(got);

	/* EAGAIN for ever, send timeout 50 ms */
	tfd_channel_set_send_timeout(a, 50);
	arm(FAULT_SENDMSG, 0, -1, EAGAIN);
	t0 = tfd_now_ns();
	r = tfd_channel_send(a, m);
	disarm();
	ok(r == -ETIMEDOUT && fault.failed >= 1 && tfd_now_ns() - t0 >= 40000000ull,
	   "sendmsg EAGAIN for ever, send timeout 50 ms: -ETIMEDOUT after %llu ms (%u tries)",
	   (unsigned long long)((tfd_now_ns() - t0) / 1000000), fault.failed);

	/* an error that is neither: returned as it is, the channel goes on */
	arm(FAULT_SENDMSG, 0, 1, ENOBUFS);
	r = tfd_channel_send(a, m);
	disarm();
	ok(r == -ENOBUFS && fault.failed == 1, "sendmsg ENOBUFS: %d (%s)", r,
	   tfd_channel_strerror(a));
	ok(roundtrip(a, b, buf), "the channel still works");

	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	check_baseline("sendmsg EAGAIN/ENOBUFS");
}

static void test_send_epipe(void)
{
	struct tfd_channel *a, *b, *c, *d;
	struct tfd_message *m, *got = NULL;
	struct tfd_buffer *buf;
	int r;

	if (tfd_channel_pair(&a, &b) < 0 || tfd_buffer_new(4096, 0, &buf) < 0) {
		ok(0, "set-up");
		return;
	}
	m = tensor_msg(buf, "t");
	arm(FAULT_SENDMSG, 0, 1, EPIPE);
	r = tfd_channel_send(a, m);
	disarm();
	ok(r == -ECONNRESET && fault.failed == 1, "sendmsg EPIPE: %d (%s)", r,
	   tfd_channel_strerror(a));
	ok(tfd_channel_send(a, m) == -ECONNRESET && tfd_channel_recv(a, 0, &got) == -ECONNRESET,
	   "the channel has ended: later calls return -ECONNRESET");
	ok(tfd_channel_recv(b, 1000, &got) == -ECONNRESET, "the peer sees the end");
	ok(tfd_buffer_loans(buf) == 0, "the buffer is not on loan");
	if (tfd_channel_pair(&c, &d) == 0) {
		ok(roundtrip(c, d, buf), "the message's buffer goes over another channel");
		tfd_channel_unref(c);
		tfd_channel_unref(d);
	}
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	check_baseline("sendmsg EPIPE");
}

/* --- receiving --- */

static void recv_fault(enum fault_fn fn, int err, int expect, const char *what)
{
	struct tfd_channel *a, *b;
	struct tfd_message *m, *got = UNTOUCHED;
	struct tfd_buffer *buf;
	int r;

	if (tfd_channel_pair(&a, &b) < 0 || tfd_buffer_new(4096, 0, &buf) < 0) {
		ok(0, "set-up");
		return;
	}
	m = tensor_msg(buf, "t");
	r = tfd_channel_send(a, m);
	arm(fn, 0, 1, err);
	r = r ?: tfd_channel_recv(b, 2000, &got);
	disarm();
	ok(r == expect && fault.failed == 1 && got == UNTOUCHED,
	   "receiving a buffer, %s fails (%s): %d (%s)", what, strerror(err), r,
	   tfd_channel_strerror(b));
	ok(tfd_channel_recv(b, 0, &got) == expect, "the receiving channel has ended with it");
	ok(tfd_channel_send(a, m) == -ECONNRESET, "the sender sees -ECONNRESET");
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	check_baseline(what);
	ok(pair_roundtrip(), "a new channel works");
}

static void test_recvmsg_poll(void)
{
	struct tfd_channel *a, *b;
	struct tfd_message *got = UNTOUCHED;
	struct tfd_buffer *buf;
	int r;

	setenv("TENSORFD_NOTIFY", "poll", 1);
	if (tfd_channel_pair(&a, &b) < 0 || tfd_buffer_new(4096, 0, &buf) < 0) {
		unsetenv("TENSORFD_NOTIFY");
		ok(0, "set-up");
		return;
	}
	arm(FAULT_RECVMSG, 0, 1, ENOMEM);
	r = tfd_channel_recv(b, 0, &got);
	disarm();
	ok(r == -ENOMEM && fault.failed == 1 && got == UNTOUCHED,
	   "poll backend, recvmsg ENOMEM: %d (%s)", r, tfd_channel_strerror(b));
	ok(roundtrip(a, b, buf), "the channel still works");
	tfd_buffer_unref(buf);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	unsetenv("TENSORFD_NOTIFY");
	check_baseline("recvmsg ENOMEM");
}

/* --- io_uring set-up --- */

static void test_uring(const char *real_backend)
{
	static const int fallback[] = { EPERM, ENOSYS, ENOMEM };
	struct tfd_channel *a, *b;
	struct tfd_message *got = UNTOUCHED;
	struct tfd_buffer *buf;
	const char *be;
	unsigned int i;
	int r;

	for (i = 0; i < ARRAY_SIZE(fallback); i++) {
		if (tfd_channel_pair(&a, &b) < 0 || tfd_buffer_new(4096, 0, &buf) < 0) {
			ok(0, "set-up");
			return;
		}
		arm(FAULT_URING_INIT, 0, -1, fallback[i]);
		be = tfd_channel_backend(b);
		ok(be && strcmp(be, "poll") == 0 && fault.failed == 1,
		   "io_uring_queue_init %s: the channel uses %s", strerror(fallback[i]),
		   be ? be : "nothing");
		ok(roundtrip(a, b, buf) && roundtrip(b, a, buf), "and works both ways");
		disarm();
		tfd_buffer_unref(buf);
		tfd_channel_unref(a);
		tfd_channel_unref(b);
		check_baseline("io_uring fallback");
	}

	/* a kernel before 5.19 refuses the cooperative task-work flags: a plain ring */
	if (tfd_channel_pair(&a, &b) < 0 || tfd_buffer_new(4096, 0, &buf) < 0) {
		ok(0, "set-up");
		return;
	}
	arm(FAULT_URING_INIT, 0, 1, EINVAL);
	be = tfd_channel_backend(b);
	ok(be && strcmp(be, real_backend) == 0 && fault.failed == 1 && roundtrip(a, b, buf) &&
		   roundtrip(b, a, buf),
	   "io_uring_queue_init EINVAL (setup flags refused): retried without them, %s works",
	   be ? be : "nothing");
	disarm();
	tfd_buffer_unref(buf);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	check_baseline("io_uring EINVAL");

	/* an error that is no reason to fall back: reported, and the next call tries again */
	if (tfd_channel_pair(&a, &b) < 0 || tfd_buffer_new(4096, 0, &buf) < 0) {
		ok(0, "set-up");
		return;
	}
	arm(FAULT_URING_INIT, 0, 1, EMFILE);
	r = tfd_channel_recv(b, 0, &got);
	disarm();
	ok(r == -EMFILE && got == UNTOUCHED && fault.failed == 1,
	   "io_uring_queue_init EMFILE: tfd_channel_recv returns %d (%s)", r,
	   tfd_channel_strerror(b));
	be = tfd_channel_backend(b);
	ok(be && strcmp(be, real_backend) == 0 && roundtrip(a, b, buf),
	   "the channel is not ended: the next call sets up %s and it works", real_backend);
	tfd_buffer_unref(buf);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	check_baseline("io_uring EMFILE");
}

/* --- RLIMIT_NOFILE --- */

/* Open fds below limit, counted without opening one. */
static int fds_in_use(int limit)
{
	int fd, n = 0;

	for (fd = 0; fd < limit; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

static void test_nofile(const char *backend)
{
	struct tfd_channel *a, *b, *c, *d, *x = UNTOUCHED, *y = UNTOUCHED;
	struct tfd_buffer *known, *fresh, *fresh2, *none = UNTOUCHED;
	struct tfd_message *m, *got = NULL;
	struct rlimit saved, low;
	int pad[64], npad = 0, limit, fd, r, before;
	const char *why;
	unsigned int free_slots;

	if (strcmp(backend, "poll") == 0)
		setenv("TENSORFD_NOTIFY", "poll", 1);
	for (free_slots = 0; free_slots < 2; free_slots++) {
		/* set-up with fds to spare; d alone has no notification set up yet */
		if (tfd_channel_pair(&a, &b) < 0 || tfd_channel_pair(&c, &d) < 0 ||
		    tfd_buffer_new(4096, 0, &known) < 0 || tfd_buffer_new(4096, 0, &fresh) < 0 ||
		    tfd_buffer_new(4096, 0, &fresh2) < 0) {
			ok(0, "set-up");
			break;
		}
		ok(roundtrip(a, b, known), "%s: a buffer crosses before the limit is reached",
		   backend);
		tfd_channel_get_fd(a);
		tfd_channel_get_fd(c);

		getrlimit(RLIMIT_NOFILE, &saved);
		limit = count_fds() + 40;
		low = (struct rlimit){ (rlim_t)limit, saved.rlim_max };
		if (setrlimit(RLIMIT_NOFILE, &low) < 0) {
			skip("setrlimit: %s", strerror(errno));
			break;
		}
		while (npad < (int)ARRAY_SIZE(pad) &&
		       (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
			pad[npad++] = fd;
		ok(errno == EMFILE, "%s: fd table full at RLIMIT_NOFILE %d (%d fds)", backend, limit,
		   fds_in_use(limit));
		for (r = 0; r < (int)free_slots; r++)
			close(pad[--npad]);
		before = fds_in_use(limit);

		if (!free_slots) {
			r = tfd_buffer_new(4096, 0, &none);
			ok(r == -EMFILE && none == UNTOUCHED, "tfd_buffer_new: %d (%s)", r,
			   tfd_last_error());
			r = tfd_channel_pair(&x, &y);
			ok(r == -EMFILE && x == UNTOUCHED, "tfd_channel_pair: %d", r);
			r = tfd_channel_recv(d, 0, &got);
			ok(r == -EMFILE || (r == -EAGAIN && strcmp(backend, "poll") == 0),
			   "first receive on a channel whose notification is not set up: %d (%s)",
			   r, r == -EAGAIN ? "needs no fd" : tfd_channel_strerror(d));
		}

		/* a buffer the receiver already has: no fd travels, it works at the limit */
		ok(roundtrip(a, b, known), "%s, %u free slots: a message naming a known buffer "
		   "arrives", backend, free_slots);

		/* new buffers: one more fd than the receiver has room for */
		m = tensor_msg(fresh, "fresh");
		if (free_slots) {
			struct tfd_layout l = *tfd_message_layout(m, 0);

			tfd_message_add_tensor(m, "fresh2", fresh2, &l);
		}
		r = tfd_channel_send(a, m);
		ok(r == 0, "%s: the sender sends %u new buffer fds: %d", backend, free_slots + 1, r);
		r = tfd_channel_recv(b, 2000, &got);
		why = tfd_channel_strerror(b);
		ok(r == -EMFILE && strstr(why, "RLIMIT_NOFILE"),
		   "%s: the receiver cannot take them: %d (%s)", backend, r, why);
		diag("RLIMIT_NOFILE, %s backend, %u free fd slots, message with %u new buffers: "
		     "tfd_channel_recv() = %d (%s), reason \"%s\"",
		     backend, free_slots, free_slots + 1, r, strerror(-r), why);
		/* the ended channel dropped its mapping of the known buffer: one fd fewer */
		ok(fds_in_use(limit) == before - 1,
		   "%s: no fd of the message is left open (%d fds, %d before)", backend,
		   fds_in_use(limit), before);
		ok(tfd_channel_recv(b, 0, &got) == r, "the receiving channel has ended");
		r = tfd_channel_send(a, m);
		ok(r == -ECONNRESET, "the sender's next send: %d", r);
		tfd_message_unref(m);

		while (npad)
			close(pad[--npad]);
		setrlimit(RLIMIT_NOFILE, &saved);
		if (!free_slots) {
			r = tfd_channel_recv(d, 0, &got);
			ok(r == -EAGAIN, "with fds free again, the channel that could not set up its "
			   "notification receives: %d", r);
			ok(roundtrip(c, d, fresh), "and takes new buffers");
		}
		tfd_buffer_unref(known);
		tfd_buffer_unref(fresh);
		tfd_buffer_unref(fresh2);
		tfd_channel_unref(a);
		tfd_channel_unref(b);
		tfd_channel_unref(c);
		tfd_channel_unref(d);
		check_baseline("RLIMIT_NOFILE");
	}
	unsetenv("TENSORFD_NOTIFY");
}

/*
 * Introspection with failing calls: the asker's recvmsg fails (the error
 * comes back, nothing leaks), and a publisher whose hello to the asker
 * fails drops that connection and answers the next one.
 */
static void test_introspect(void)
{
	char dir[] = "/tmp/tfd-fault-XXXXXX";
	struct tfd_topic_info *info = NULL;
	struct tfd_publisher *pub;
	int ctl[2], r, fds;
	pid_t pid;

	fds = count_fds();
	if (!mkdtemp(dir) || pipe2(ctl, O_CLOEXEC) < 0) {
		skip("introspection faults: no runtime directory or pipe");
		return;
	}
	setenv("TENSORFD_RUNTIME_DIR", dir, 1);
	pid = fork();
	if (pid == 0) {
		close(ctl[1]);
		if (tfd_publisher_new("fault/info", 0, &pub) < 0)
			_exit(1);
		/* the first connection's hello fails to go out */
		arm(FAULT_SENDMSG, 0, 1, ENOBUFS);
		for (;;) {
			struct pollfd pfd[2] = { { tfd_publisher_get_fd(pub), POLLIN, 0 },
						 { ctl[0], POLLIN, 0 } };

			poll(pfd, 2, 100);
			if (pfd[1].revents)
				break;
			tfd_publisher_dispatch(pub, 0);
		}
		tfd_publisher_unref(pub);
		_exit(fault.failed == 1 ? 0 : 2);
	}
	close(ctl[0]);
	while (tfd_topic_query("fault/info", 2000, &info) == -ENOENT)
		usleep(10000);
	ok(info == NULL, "a publisher whose hello fails drops the asker (%s)", tfd_last_error());
	tfd_topic_info_free(info);
	info = NULL;
	arm(FAULT_RECVMSG, 0, 1, EIO);
	r = tfd_topic_query("fault/info", 2000, &info);
	disarm();
	ok(r == -EIO && !info, "the asker's recvmsg fails: -EIO (%d)", r);
	r = tfd_topic_query("fault/info", 2000, &info);
	ok(r == 0 && info && info->stats.subscribers == 0,
	   "then both answer again, nobody counted as a subscriber");
	tfd_topic_info_free(info);
	close(ctl[1]);
	ok(wait_child(pid) == 0, "the publisher saw its one failure and exits cleanly");
	ok(count_fds() == fds, "no fd left in the asker");
	rm_tree(dir);
}

int main(void)
{
	struct tfd_channel *a, *b;
	char real_backend[16];
	const char *be;

	tap_init(60);
	unsetenv("TENSORFD_NOTIFY");
	/* warm up, so that what libc keeps (stdio, malloc arenas) is in the baseline */
	pair_roundtrip();
	if (tfd_channel_pair(&a, &b) < 0)
		skip_all("no channel");
	be = tfd_channel_backend(b);
	snprintf(real_backend, sizeof(real_backend), "%s", be ? be : "?");
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	diag("notification backend without faults: %s", real_backend);
	baseline();

	test_buffers();
	test_pair_hello();
	test_send_eagain();
	test_send_epipe();
	recv_fault(FAULT_MMAP, ENOMEM, -ENOMEM, "mmap of a received buffer");
	recv_fault(FAULT_GET_SEALS, EINVAL, -EBADFD, "F_GET_SEALS of a received fd");
	test_recvmsg_poll();
	test_uring(real_backend);
	if (strcmp(real_backend, "io_uring") == 0)
		test_nofile("io_uring");
	else
		skip("RLIMIT_NOFILE with io_uring: io_uring is not available here");
	test_nofile("poll");
	test_introspect();
	return done_testing();
}
