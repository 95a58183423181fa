/* SPDX-License-Identifier: MIT */
/*
 * dma-buf buffers. Everywhere: argument checks, and fds that are not
 * dma-bufs (memfd, pipe, regular file, /dev/zero) refused when wrapped or
 * when a peer announces them as dma-bufs. Where the kernel has a source
 * (DMA heap, udmabuf, a DRM card with dumb buffers; this machine's kernel
 * may have none, the VM test of tests/vm/run.sh has all three): allocate
 * from each, name, sync, send to another process many times with one fd,
 * verify the producer's bytes there, peer death; wrap an external dma-buf;
 * a dma-buf smaller than its tensor or than announced is refused; publish
 * a dma-buf on a topic; a receiver that maps the fd it got writable (refused
 * for DRM, possible for the heap and udmabuf), TFD_PUBLISHER_READONLY_DMABUF,
 * and the PRIME re-export that cannot narrow a mode. Last, the latencies
 * the issue asks for, as diagnostics. Every section checks that no fd and
 * no mapping leaked.
 */
#include <fcntl.h>
#include <linux/dma-heap.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>

#ifdef HAVE_LIBDRM
#include <xf86drm.h>

/* vgem's uapi, which Debian's headers do not ship (include/uapi/drm/vgem_drm.h) */
struct vgem_fence_attach {
	uint32_t handle;
	uint32_t flags;		/* VGEM_FENCE_WRITE */
	uint32_t out_fence;
	uint32_t pad;
};

struct vgem_fence_signal {
	uint32_t fence;
	uint32_t flags;
};

#define VGEM_FENCE_WRITE	0x1
#define VGEM_IOCTL_FENCE_ATTACH	DRM_IOWR(DRM_COMMAND_BASE + 0x1, struct vgem_fence_attach)
#define VGEM_IOCTL_FENCE_SIGNAL	DRM_IOW(DRM_COMMAND_BASE + 0x2, struct vgem_fence_signal)
#endif

#include "internal.h"
#include "tap.h"
#include "wire.h"

#define SIZE		(256 * 1024 + 100)	/* rounded up to pages by the library */
#define MESSAGES	100
#define LAT_MESSAGES	200

static const char *const source_names[] = { "any", "heap", "udmabuf", "drm", "external" };
static int probe_mask;
static long page;

static uint64_t round_up(uint64_t n)
{
	return (n + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
}

/* readlink of /proc/self/fd/N: "/dmabuf:NAME" for a dma-buf on 6.x */
static const char *fd_link(int fd)
{
	static char buf[128];
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = 0;
	return buf;
}

static uint8_t pattern(uint64_t i, uint64_t seed)
{
	return (uint8_t)(i * 131 + seed * 7 + (i >> 12));
}

static int fill(struct tfd_buffer *b, uint64_t seed)
{
	uint8_t *p = tfd_buffer_data(b);
	uint64_t i, n = tfd_buffer_size(b);
	int r;

	r = tfd_buffer_begin_access(b, TFD_ACCESS_WRITE);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++)
		p[i] = pattern(i, seed);
	return tfd_buffer_end_access(b, TFD_ACCESS_WRITE);
}

static uint64_t mismatches(const uint8_t *p, uint64_t n, uint64_t seed)
{
	uint64_t i, bad = 0;

	for (i = 0; i < n; i++)
		bad += p[i] != pattern(i, seed);
	return bad;
}

static struct tfd_message *message_of(struct tfd_buffer *b, uint64_t seed)
{
	const int64_t n = (int64_t)tfd_buffer_size(b);
	struct tfd_message *m;
	struct tfd_layout l;

	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &n);
	if (tfd_message_new(&m) < 0)
		return NULL;
	if (tfd_message_add_tensor(m, "frame", b, &l) < 0 ||
	    tfd_message_set_user_data(m, &seed, sizeof(seed)) < 0)
		return tfd_message_unref(m);
	return m;
}

/* Wait until the peer released everything (or the channel ended). */
static int drain(struct tfd_channel *ch)
{
	struct tfd_channel_stats st;
	int tries, r;

	for (tries = 0; tries < 2000; tries++) {
		tfd_channel_get_stats(ch, &st);
		if (st.messages_in_flight == 0)
			return 0;
		r = tfd_channel_dispatch(ch, 10);
		if (r < 0)
			return r;
	}
	return -ETIMEDOUT;
}

/*
 * A child stays until the parent hangs up, so the parent never meets the
 * child's end of the channel while it waits for the last release.
 */
static void wait_hangup(struct tfd_channel *ch)
{
	struct tfd_message *m;

	while (tfd_channel_recv(ch, 20000, &m) == 0)
		tfd_message_unref(m);
}

/*
 * The consumer, in a child: n messages, each checked as a dma-buf with the
 * producer's bytes for the seed in its user data, read under sync.
 * Exit codes say what went wrong.
 */
static int consumer(struct tfd_channel *ch, int n)
{
	struct tfd_channel_stats st;
	struct tfd_message *m;
	struct tfd_buffer *b;
	const uint64_t *seed;
	size_t len;
	int i;

	for (i = 0; i < n; i++) {
		if (tfd_channel_recv(ch, 20000, &m) < 0)
			return 10;
		b = tfd_message_buffer(m, 0);
		seed = tfd_message_get_user_data(m, &len);
		if (tfd_buffer_kind(b) != TFD_BUFFER_DMABUF || len != sizeof(*seed))
			return 11;
		if (strncmp(fd_link(tfd_buffer_fd(b)), "/dmabuf:", 8) != 0)
			return 12;
		if (tfd_buffer_begin_access(b, TFD_ACCESS_READ) < 0)
			return 13;
		if (mismatches(tfd_message_data(m, 0), tfd_buffer_size(b), *seed))
			return 14;
		if (tfd_buffer_end_access(b, TFD_ACCESS_READ) < 0)
			return 15;
		/* received buffers are mapped read-only */
		if (tfd_buffer_begin_access(b, TFD_ACCESS_WRITE) != -EPERM)
			return 16;
		tfd_message_unref(m);
	}
	tfd_channel_get_stats(ch, &st);
	wait_hangup(ch);
	return st.fds_received == 1 ? 0 : 17;
}

static pid_t spawn_consumer(struct tfd_channel *mine, struct tfd_channel *theirs, int n,
			    bool die)
{
	struct tfd_message *m;
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	tfd_channel_unref(mine);
	if (die) {
		/* hold one message, then die without releasing it */
		if (tfd_channel_recv(theirs, 20000, &m) < 0)
			_exit(10);
		raise(SIGKILL);
	}
	_exit(consumer(theirs, n));
}

/* --- everywhere: what is not a dma-buf is refused ----------------------- */

__attribute__((noreturn)) static void bail(const char *what)
{
	printf("Bail out! %s: %s\n", what, strerror(errno));
	exit(1);
}

static int memfd_sealed(void)
{
	int fd = memfd_create("not-a-dmabuf", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, page) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -1;
	return fd;
}

static int tmp_file(void)
{
	char path[] = "/tmp/tfd-dmabuf-XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);

	if (fd < 0)
		return -1;
	unlink(path);
	if (ftruncate(fd, page) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_not_dmabuf(void)
{
	struct { const char *what; int fd; } fds[4];
	struct tfd_buffer *b = NULL, *mem;
	char err[256];
	int p[2], fds0, maps0, i, r;

	fds0 = count_fds();
	maps0 = count_maps();
	if (pipe2(p, O_CLOEXEC) < 0)
		bail("pipe2");
	fds[0].what = "a sealed memfd";
	fds[0].fd = memfd_sealed();
	fds[1].what = "a pipe";
	fds[1].fd = p[0];
	fds[2].what = "a regular file";
	fds[2].fd = tmp_file();
	fds[3].what = "/dev/zero";
	fds[3].fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
	for (i = 0; i < 4; i++) {
		if (fds[i].fd < 0)
			bail(fds[i].what);
		r = tfd_dmabuf_wrap(fds[i].fd, &b);
		ok(r == -EBADFD && !b, "wrapping %s as a dma-buf: -EBADFD (%s)", fds[i].what,
		   tfd_last_error());
		/* what a receiver runs on an fd the wire calls a dma-buf */
		r = buffer_import(dup(fds[i].fd), SIZE, WIRE_BUF_DMABUF, err, sizeof(err), &b);
		ok(r == -EBADFD && !b, "receiving %s announced as a dma-buf: -EBADFD (%s)",
		   fds[i].what, err);
		close(fds[i].fd);
	}
	close(p[1]);

	ok(tfd_buffer_new(SIZE, 0, &mem) == 0, "a memfd buffer");
	ok(tfd_buffer_kind(mem) == TFD_BUFFER_MEMFD, "its kind is TFD_BUFFER_MEMFD");
	ok(tfd_dmabuf_source(mem) == -EINVAL, "it has no dma-buf source");
	ok(tfd_dmabuf_set_name(mem, "x") == -EINVAL, "naming it as a dma-buf: -EINVAL");
	ok(tfd_buffer_begin_access(mem, TFD_ACCESS_READ | TFD_ACCESS_WRITE) == 0 &&
	   tfd_buffer_end_access(mem, TFD_ACCESS_READ | TFD_ACCESS_WRITE) == 0,
	   "begin/end access on a memfd buffer: 0, nothing to sync");
	ok(tfd_buffer_begin_access(mem, 0) == -EINVAL &&
	   tfd_buffer_begin_access(mem, 4) == -EINVAL && tfd_buffer_end_access(NULL, 1) == -EINVAL,
	   "access of nothing, of an unknown kind or on NULL: -EINVAL");
	tfd_buffer_unref(mem);

	ok(tfd_dmabuf_new(0, TFD_DMABUF_ANY, 0, &b) == -EINVAL &&
	   tfd_dmabuf_new(SIZE, 9, 0, &b) == -EINVAL &&
	   tfd_dmabuf_new(SIZE, TFD_DMABUF_EXTERNAL, 0, &b) == -EINVAL &&
	   tfd_dmabuf_new(SIZE, TFD_DMABUF_ANY, 1, &b) == -EINVAL &&
	   tfd_dmabuf_new(SIZE, TFD_DMABUF_ANY, 0, NULL) == -EINVAL,
	   "tfd_dmabuf_new: size 0, unknown source, flags, NULL: -EINVAL");
	ok(tfd_dmabuf_wrap(-1, &b) == -EINVAL && tfd_dmabuf_wrap(0, NULL) == -EINVAL,
	   "tfd_dmabuf_wrap: fd -1 or NULL: -EINVAL");
	if (!probe_mask) {
		r = tfd_dmabuf_new(SIZE, TFD_DMABUF_ANY, 0, &b);
		ok(r == -EOPNOTSUPP, "no source here: tfd_dmabuf_new(ANY) gives -EOPNOTSUPP (%s)",
		   tfd_last_error());
	}
	ok(count_fds() == fds0 && count_maps() == maps0, "no fd or mapping leaked (%d fds, %d maps)",
	   count_fds() - fds0, count_maps() - maps0);
}

/* --- one source: allocate, name, sync, send, peer death ------------------ */

static const char *no_source_reason(int source)
{
	static char why[160];
	struct utsname u;

	uname(&u);
#ifndef HAVE_LIBDRM
	if (source == TFD_DMABUF_DRM)
		return "tensorfd was built without libdrm";
#endif
	snprintf(why, sizeof(why), "%s on Linux %s", source == TFD_DMABUF_HEAP ?
		 "no /dev/dma_heap/system" : source == TFD_DMABUF_UDMABUF ? "no /dev/udmabuf" :
		 "no DRM card with dumb buffers and PRIME export", u.release);
	return why;
}

static void test_source(int source)
{
	const char *name = source_names[source];
	struct tfd_channel_stats st;
	struct tfd_channel *a, *b;
	struct tfd_buffer *buf;
	struct tfd_message *m;
	char want[64], longname[40];
	int fds0, maps0, flags, i, r, bad;
	pid_t pid;

	if (!(probe_mask & (1 << source))) {
		skip("%s dma-bufs: %s", name, no_source_reason(source));
		return;
	}
	fds0 = count_fds();
	maps0 = count_maps();
	r = tfd_dmabuf_new(SIZE, source, 0, &buf);
	if (!ok(r == 0, "%s: a dma-buf of %d bytes (%s)", name, SIZE, r ? tfd_last_error() : "ok"))
		return;
	ok(tfd_buffer_kind(buf) == TFD_BUFFER_DMABUF && tfd_dmabuf_source(buf) == source,
	   "%s: kind dma-buf, source %s", name, name);
	ok(tfd_buffer_size(buf) == round_up(SIZE) && tfd_buffer_is_writable(buf),
	   "%s: %llu bytes (whole pages), writable", name, (unsigned long long)tfd_buffer_size(buf));
	ok(lseek(tfd_buffer_fd(buf), 0, SEEK_END) >= (off_t)round_up(SIZE),
	   "%s: lseek(SEEK_END) covers it", name);
	/* a DRM dumb buffer is exported read-only; the heap and udmabuf cannot be */
	flags = fcntl(tfd_buffer_fd(buf), F_GETFL);
	ok((flags & O_ACCMODE) == (source == TFD_DMABUF_DRM ? O_RDONLY : O_RDWR) &&
	   (fcntl(tfd_buffer_fd(buf), F_GETFD) & FD_CLOEXEC), "%s: fd is %s and close-on-exec",
	   name, source == TFD_DMABUF_DRM ? "O_RDONLY" : "O_RDWR");
	ok(strncmp(fd_link(tfd_buffer_fd(buf)), "/dmabuf:", 8) == 0, "%s: fd links to %s", name,
	   fd_link(tfd_buffer_fd(buf)));
	snprintf(want, sizeof(want), "tfd-%s", name);
	r = tfd_dmabuf_set_name(buf, want);
	ok(r == 0, "%s: DMA_BUF_SET_NAME %s: %d", name, want, r);
	snprintf(want, sizeof(want), "/dmabuf:tfd-%s", name);
	ok(strcmp(fd_link(tfd_buffer_fd(buf)), want) == 0, "%s: the fd now links to %s", name,
	   fd_link(tfd_buffer_fd(buf)));
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	ok(tfd_dmabuf_set_name(buf, longname) == -ENAMETOOLONG, "%s: a 39-byte name: -ENAMETOOLONG",
	   name);
	ok(fill(buf, 1) == 0, "%s: filled between DMA_BUF_IOCTL_SYNC START and END (write)", name);
	ok(tfd_buffer_begin_access(buf, TFD_ACCESS_READ) == 0 &&
	   mismatches(tfd_buffer_data(buf), tfd_buffer_size(buf), 1) == 0 &&
	   tfd_buffer_end_access(buf, TFD_ACCESS_READ) == 0, "%s: read back under a read sync",
	   name);

	/* many messages, one fd: the producer rewrites the buffer between them */
	if (tfd_channel_pair(&a, &b) < 0)
		return;
	pid = spawn_consumer(a, b, MESSAGES, false);
	tfd_channel_unref(b);
	bad = 0;
	for (i = 0; i < MESSAGES && !bad; i++) {
		if (fill(buf, (uint64_t)i + 100) < 0)
			bad = 1;
		m = message_of(buf, (uint64_t)i + 100);
		if (!m || tfd_channel_send(a, m) < 0 || drain(a) < 0)
			bad = 2;
		tfd_message_unref(m);
	}
	ok(!bad, "%s: %d messages sent, each released before the buffer was rewritten", name,
	   MESSAGES);
	tfd_channel_get_stats(a, &st);
	ok(st.fds_sent == 1, "%s: the fd crossed once (%llu fds sent)", name,
	   (unsigned long long)st.fds_sent);
	tfd_channel_unref(a);
	r = wait_child(pid);
	ok(r == 0, "%s: the consumer saw the producer's bytes under read syncs, one fd mapped "
	   "read-only (exit %d)", name, r);

	/* peer death: a consumer dies holding a message; the loan comes back */
	if (tfd_channel_pair(&a, &b) < 0)
		return;
	pid = spawn_consumer(a, b, 1, true);
	tfd_channel_unref(b);
	m = message_of(buf, 5);
	r = tfd_channel_send(a, m);
	tfd_message_unref(m);
	ok(r == 0 && tfd_buffer_loans(buf) == 1, "%s: sent to a consumer that will die", name);
	ok(wait_child(pid) == 128 + SIGKILL, "%s: the consumer died", name);
	r = drain(a);
	ok(r == -ECONNRESET && tfd_buffer_loans(buf) == 0,
	   "%s: its death ends the channel (%d) and returns the loan", name, r);
	tfd_channel_unref(a);

	tfd_buffer_unref(buf);
	ok(count_fds() == fds0 && count_maps() == maps0,
	   "%s: no fd or mapping leaked (%d fds, %d maps)", name, count_fds() - fds0,
	   count_maps() - maps0);
}

/* --- what a receiver may do with the fd ---------------------------------- */

/* mmap(PROT_WRITE, MAP_SHARED) of fd: 0 if it worked (and a byte was written), else -errno. */
static int map_writable(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	((volatile uint8_t *)p)[0] ^= 0xff;
	munmap(p, size);
	return 0;
}

/*
 * A hostile receiver maps the fd it got writable: it must fail where the
 * source exports read-only (DRM), and is known to work for the heap and
 * udmabuf, whose dma-bufs the kernel exports O_RDWR only (SECURITY.md). A
 * publisher made with TFD_PUBLISHER_READONLY_DMABUF refuses those.
 */
static void test_peer_write(int source)
{
	const char *name = source_names[source];
	char dir[] = "/tmp/tfd-dmabuf-rw-XXXXXX", path[64];
	struct tfd_publisher *pub;
	struct tfd_channel *a, *b;
	struct tfd_buffer *buf;
	struct tfd_message *m, *rx;
	int fds0, maps0, r, fd, reopened;
	uint8_t before;

	if (!(probe_mask & (1 << source))) {
		skip("%s: a receiver mapping it writable: %s", name, no_source_reason(source));
		return;
	}
	fds0 = count_fds();
	maps0 = count_maps();
	if (tfd_dmabuf_new(SIZE, source, 0, &buf) < 0 || tfd_channel_pair(&a, &b) < 0)
		return (void)ok(0, "%s: setup (%s)", name, tfd_last_error());
	fill(buf, 9);
	before = *(const uint8_t *)tfd_buffer_data(buf);
	m = message_of(buf, 9);
	r = tfd_channel_send(a, m);
	tfd_message_unref(m);
	if (r == 0)
		r = tfd_channel_recv(b, 5000, &rx);
	if (!ok(r == 0, "%s: sent to a receiver (%d)", name, r))
		return;
	fd = tfd_buffer_fd(tfd_message_buffer(rx, 0));
	r = map_writable(fd, tfd_buffer_size(buf));
	if (source == TFD_DMABUF_DRM)
		ok(r == -EACCES && *(const uint8_t *)tfd_buffer_data(buf) == before,
		   "%s: the receiver cannot map it writable (%s), the frame is intact", name,
		   strerror(-r));
	else
		ok(r == 0 && *(const uint8_t *)tfd_buffer_data(buf) != before,
		   "%s: the receiver can map it writable and change the frame: the kernel "
		   "exports %s dma-bufs O_RDWR only (SECURITY.md)", name, name);
	/* a second open of the same file through /proc must not widen its mode */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	reopened = open(path, O_RDWR | O_CLOEXEC);
	if (source == TFD_DMABUF_DRM)
		ok(reopened < 0 || map_writable(reopened, tfd_buffer_size(buf)) < 0,
		   "%s: reopening it O_RDWR through /proc gives no writable mapping (%s)", name,
		   reopened < 0 ? strerror(errno) : "opened, mapping refused");
	if (reopened >= 0)
		close(reopened);
	tfd_message_unref(rx);
	drain(a);
	tfd_channel_unref(a);
	tfd_channel_unref(b);

	tap_runtime_dir(dir);
	r = tfd_publisher_new("cam/ro", TFD_PUBLISHER_READONLY_DMABUF, &pub);
	if (ok(r == 0, "%s: a publisher of read-only dma-bufs only (%d)", name, r)) {
		m = message_of(buf, 9);
		r = tfd_publisher_publish(pub, m);
		tfd_message_unref(m);
		if (source == TFD_DMABUF_DRM)
			ok(r == 0, "%s: it publishes the read-only dma-buf (%d)", name, r);
		else
			ok(r == -EPERM && strstr(tfd_publisher_strerror(pub), "writable"),
			   "%s: it refuses the writable dma-buf: %d, %s", name, r,
			   tfd_publisher_strerror(pub));
		tfd_publisher_unref(pub);
	}
	rm_tree(dir);
	tfd_buffer_unref(buf);
	ok(count_fds() == fds0 && count_maps() == maps0,
	   "%s: receiver test: no fd or mapping leaked (%d fds, %d maps)", name,
	   count_fds() - fds0, count_maps() - maps0);
}

/* The flag itself, on any kernel: memfd tensors are not dma-bufs and pass. */
static void test_readonly_flag(void)
{
	char dir[] = "/tmp/tfd-dmabuf-fl-XXXXXX";
	struct tfd_publisher *pub;
	struct tfd_buffer *b;
	struct tfd_message *m;
	int fds0 = count_fds(), r;

	tap_runtime_dir(dir);
	r = tfd_publisher_new("cam/flag", TFD_PUBLISHER_READONLY_DMABUF, &pub);
	if (ok(r == 0, "TFD_PUBLISHER_READONLY_DMABUF is a publisher flag (%d)", r)) {
		r = tfd_publisher_loan(pub, 4096, &b);
		if (r == 0) {
			m = message_of(b, 1);
			r = m ? tfd_publisher_publish(pub, m) : -ENOMEM;
			tfd_message_unref(m);
			tfd_buffer_unref(b);
		}
		ok(r == 0, "with it, a pool (memfd) tensor is published (%d)", r);
		tfd_publisher_unref(pub);
	}
	ok(tfd_publisher_new("cam/flag", 1u << 30, &pub) == -EINVAL, "an unknown flag: -EINVAL");
	rm_tree(dir);
	ok(count_fds() == fds0, "flag test: no fd leaked");
}

/* --- wrapping a dma-buf the caller already has --------------------------- */

static void test_external(void)
{
	struct tfd_buffer *drv, *w, *rx;
	struct tfd_channel *a, *b;
	struct tfd_message *m;
	struct tfd_layout l;
	int64_t too_long;
	uint64_t size;
	char err[256];
	int fds0, maps0, fd, r;
	pid_t pid;

	if (!probe_mask) {
		skip("wrapping an external dma-buf: no dma-buf source on this kernel");
		return;
	}
	fds0 = count_fds();
	maps0 = count_maps();
	/* stands for the camera or the GPU: a dma-buf fd made elsewhere */
	if (tfd_dmabuf_new(SIZE, TFD_DMABUF_ANY, 0, &drv) < 0)
		return (void)ok(0, "external: a dma-buf to wrap (%s)", tfd_last_error());
	size = tfd_buffer_size(drv);
	fd = dup(tfd_buffer_fd(drv));
	r = tfd_dmabuf_wrap(fd, &w);
	ok(r == 0, "external: wrapped a %s dma-buf fd (%d)", source_names[tfd_dmabuf_source(drv)],
	   r);
	if (r < 0)
		return;
	close(fd);	/* the buffer has its own duplicate */
	ok(tfd_dmabuf_source(w) == TFD_DMABUF_EXTERNAL && tfd_buffer_size(w) == size &&
	   tfd_buffer_is_writable(w) && tfd_buffer_fd(w) != fd,
	   "external: size %llu from lseek, writable (O_RDWR fd), its own fd",
	   (unsigned long long)tfd_buffer_size(w));
	fill(w, 42);
	ok(tfd_buffer_begin_access(drv, TFD_ACCESS_READ) == 0 &&
	   mismatches(tfd_buffer_data(drv), size, 42) == 0 &&
	   tfd_buffer_end_access(drv, TFD_ACCESS_READ) == 0,
	   "external: bytes written through the wrapper are the exporter's memory");

	too_long = (int64_t)size + 1;
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &too_long);
	tfd_message_new(&m);
	r = tfd_message_add_tensor(m, "frame", w, &l);
	ok(r == -ERANGE, "external: a tensor one byte longer than the dma-buf: -ERANGE (%s)",
	   tfd_last_error());
	tfd_message_unref(m);

	/* what a receiver does with dma-bufs that do not match their record */
	r = buffer_import(dup(tfd_buffer_fd(w)), size + (uint64_t)page, WIRE_BUF_DMABUF, err,
			  sizeof(err), &rx);
	ok(r == -EOVERFLOW, "a dma-buf smaller than announced is refused: -EOVERFLOW (%s)", err);
	r = buffer_import(dup(tfd_buffer_fd(w)), size, WIRE_BUF_MEMFD, err, sizeof(err), &rx);
	ok(r == -EBADFD, "a dma-buf announced as a memfd is refused: -EBADFD (%s)", err);
	r = buffer_import(dup(tfd_buffer_fd(w)), size, WIRE_BUF_DMABUF, err, sizeof(err), &rx);
	ok(r == 0 && !tfd_buffer_is_writable(rx) && tfd_buffer_kind(rx) == TFD_BUFFER_DMABUF,
	   "a dma-buf announced as one is mapped read-only (%d)", r);
	if (r == 0)
		tfd_buffer_unref(rx);

	if (tfd_channel_pair(&a, &b) == 0) {
		pid = spawn_consumer(a, b, 1, false);
		tfd_channel_unref(b);
		m = message_of(w, 42);
		r = tfd_channel_send(a, m);
		tfd_message_unref(m);
		ok(r == 0 && drain(a) == 0, "external: sent and released");
		tfd_channel_unref(a);
		ok(wait_child(pid) == 0, "external: the consumer saw the bytes");
	}
	tfd_buffer_unref(w);
	tfd_buffer_unref(drv);
	ok(count_fds() == fds0 && count_maps() == maps0,
	   "external: no fd or mapping leaked (%d fds, %d maps)", count_fds() - fds0,
	   count_maps() - maps0);
}

/* --- a read-only dma-buf from outside the library ------------------------ */

static void test_external_readonly(void)
{
	struct dma_heap_allocation_data d = { .len = 0, .fd_flags = O_RDONLY | O_CLOEXEC };
	struct tfd_buffer *w;
	struct tfd_channel *a, *b;
	struct tfd_message *m;
	int heap, fds0, maps0, r;
	pid_t pid;

	if (!(probe_mask & (1 << TFD_DMABUF_HEAP))) {
		skip("wrapping a read-only dma-buf: %s", no_source_reason(TFD_DMABUF_HEAP));
		return;
	}
	fds0 = count_fds();
	maps0 = count_maps();
	/* the raw heap ioctl, as a driver library would call it */
	d.len = (uint64_t)page * 4;
	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	r = heap < 0 ? -errno : ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) < 0 ? -errno : 0;
	if (heap >= 0)
		close(heap);
	if (!ok(r == 0, "read-only: an O_RDONLY dma-buf from the heap (%d)", r))
		return;
	r = tfd_dmabuf_wrap((int)d.fd, &w);
	close((int)d.fd);
	if (!ok(r == 0, "read-only: wrapped (%d)", r))
		return;
	ok(!tfd_buffer_is_writable(w) && tfd_buffer_size(w) == d.len,
	   "read-only: mapped read-only, %llu bytes", (unsigned long long)tfd_buffer_size(w));
	ok(tfd_buffer_begin_access(w, TFD_ACCESS_WRITE) == -EPERM,
	   "read-only: write access refused: -EPERM");
	ok(tfd_buffer_begin_access(w, TFD_ACCESS_READ) == 0 &&
	   *(const volatile uint8_t *)tfd_buffer_data(w) == 0 &&
	   tfd_buffer_end_access(w, TFD_ACCESS_READ) == 0,
	   "read-only: read access works, and the heap's memory is zeroed");
	if (tfd_channel_pair(&a, &b) == 0) {
		/* a zeroed heap buffer: the consumer checks nothing but arrival */
		pid = fork();
		if (pid == 0) {
			tfd_channel_unref(a);
			r = tfd_channel_recv(b, 20000, &m);
			if (r == 0) {
				r = tfd_buffer_kind(tfd_message_buffer(m, 0)) == TFD_BUFFER_DMABUF &&
				    *(const uint8_t *)tfd_message_data(m, 0) == 0 ? 0 : 1;
				tfd_message_unref(m);	/* the release goes out now */
			}
			wait_hangup(b);
			_exit(r ? 1 : 0);
		}
		tfd_channel_unref(b);
		m = message_of(w, 0);
		r = tfd_channel_send(a, m);
		tfd_message_unref(m);
		if (r == 0)
			r = drain(a);
		ok(r == 0, "read-only: sent and released (%d: %s)", r, tfd_channel_strerror(a));
		tfd_channel_unref(a);
		r = wait_child(pid);
		ok(r == 0, "read-only: another process mapped it (exit %d)", r);
	}
	tfd_buffer_unref(w);
	ok(count_fds() == fds0 && count_maps() == maps0,
	   "read-only: no fd or mapping leaked (%d fds, %d maps)", count_fds() - fds0,
	   count_maps() - maps0);
}

/* --- a device's fence: begin_access waits for it ------------------------- */

#ifdef HAVE_LIBDRM
/* The first card whose driver is vgem, or -1. */
static int open_vgem(void)
{
	drmVersionPtr v;
	char path[32];
	int i, fd;

	for (i = 0; i < 16; i++) {
		snprintf(path, sizeof(path), "/dev/dri/card%d", i);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		v = drmGetVersion(fd);
		if (v && strcmp(v->name, "vgem") == 0) {
			drmFreeVersion(v);
			return fd;
		}
		drmFreeVersion(v);
		close(fd);
	}
	return -1;
}
#endif

/*
 * vgem attaches a write fence that only a later ioctl signals. A child
 * writes a byte into a pipe, then signals; the parent's begin_access must
 * not return before the signal, so the byte is there when it does.
 */
static void test_fence(void)
{
#ifdef HAVE_LIBDRM
	struct drm_mode_create_dumb dumb = { .width = 4096, .height = 1, .bpp = 8 };
	struct vgem_fence_attach fa = { .flags = VGEM_FENCE_WRITE };
	struct tfd_buffer *w = NULL;
	int card, fd = -1, p[2], r, fds0 = count_fds();
	char c = 0;
	pid_t pid;

	card = open_vgem();
	if (card < 0) {
		skip("fences: no vgem device (modprobe vgem)");
		return;
	}
	r = drmIoctl(card, DRM_IOCTL_MODE_CREATE_DUMB, &dumb) < 0 ? -errno : 0;
	if (r == 0)
		r = drmPrimeHandleToFD(card, dumb.handle, DRM_CLOEXEC | DRM_RDWR, &fd) < 0 ? -errno : 0;
	if (r == 0)
		r = tfd_dmabuf_wrap(fd, &w);
	fa.handle = dumb.handle;
	if (r == 0)
		r = drmIoctl(card, VGEM_IOCTL_FENCE_ATTACH, &fa) < 0 ? -errno : 0;
	if (!ok(r == 0, "fences: a vgem buffer with a write fence attached (%d)", r) ||
	    pipe2(p, O_CLOEXEC) < 0)
		goto out;
	pid = fork();
	if (pid == 0) {
		struct vgem_fence_signal sig = { .fence = fa.out_fence };

		usleep(100 * 1000);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		_exit(drmIoctl(card, VGEM_IOCTL_FENCE_SIGNAL, &sig) < 0 ? 2 : 0);
	}
	r = tfd_buffer_begin_access(w, TFD_ACCESS_READ);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	ok(r == 0 && read(p[0], &c, 1) == 1 && c == 'x',
	   "fences: begin_access(READ) returned only after the device's fence was signalled");
	ok(tfd_buffer_end_access(w, TFD_ACCESS_READ) == 0 && wait_child(pid) == 0,
	   "fences: end_access, and the signalling child succeeded");
	close(p[0]);
	close(p[1]);
out:
	tfd_buffer_unref(w);
	if (fd >= 0)
		close(fd);
	close(card);
	ok(count_fds() == fds0, "fences: no fd leaked (%d)", count_fds() - fds0);
#else
	skip("fences: tensorfd was built without libdrm");
#endif
}

/*
 * Why the library cannot hand out a read-only fd of a dma-buf it exported
 * writable: a second PRIME export of the same object, with other flags,
 * returns the kernel's cached dma-buf, the same file in the same mode.
 */
static void test_prime_reexport(void)
{
#ifdef HAVE_LIBDRM
	struct drm_mode_create_dumb dumb = { .width = 4096, .height = 1, .bpp = 8 };
	struct drm_mode_destroy_dumb destroy;
	struct stat a, b;
	int card, fd1 = -1, fd2 = -1, fds0 = count_fds();

	card = open_vgem();
	if (card < 0) {
		skip("PRIME re-export: no vgem device (modprobe vgem)");
		return;
	}
	if (drmIoctl(card, DRM_IOCTL_MODE_CREATE_DUMB, &dumb) == 0) {
		drmPrimeHandleToFD(card, dumb.handle, DRM_CLOEXEC | DRM_RDWR, &fd1);
		drmPrimeHandleToFD(card, dumb.handle, DRM_CLOEXEC, &fd2);
		destroy.handle = dumb.handle;
		drmIoctl(card, DRM_IOCTL_MODE_DESTROY_DUMB, &destroy);
	}
	ok(fd1 >= 0 && fd2 >= 0 && fstat(fd1, &a) == 0 && fstat(fd2, &b) == 0 &&
	   a.st_ino == b.st_ino && (fcntl(fd2, F_GETFL) & O_ACCMODE) == O_RDWR,
	   "PRIME: exporting a dumb buffer again without DRM_RDWR gives the same O_RDWR "
	   "dma-buf (%s)", fd2 >= 0 && (fcntl(fd2, F_GETFL) & O_ACCMODE) == O_RDWR ? "O_RDWR" :
	   "not O_RDWR");
	if (fd1 >= 0)
		close(fd1);
	if (fd2 >= 0)
		close(fd2);
	close(card);
	ok(count_fds() == fds0, "PRIME re-export: no fd leaked");
#else
	skip("PRIME re-export: tensorfd was built without libdrm");
#endif
}

/* --- a topic: a publisher publishes a dma-buf ---------------------------- */

static int subscriber_child(void)
{
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	struct tfd_buffer *b;
	const uint64_t *seed;
	size_t len;
	int r = 0;

	if (tfd_subscriber_new("cam/front", 0, &sub) < 0)
		return 20;
	if (tfd_subscriber_recv(sub, 20000, &m) < 0)
		return 21;
	b = tfd_message_buffer(m, 0);
	seed = tfd_message_get_user_data(m, &len);
	if (tfd_buffer_kind(b) != TFD_BUFFER_DMABUF || tfd_message_copied(m, 0) ||
	    len != sizeof(*seed))
		r = 22;
	else if (strcmp(fd_link(tfd_buffer_fd(b)), "/dmabuf:cam/front/frame") != 0)
		r = 23;
	else if (tfd_buffer_begin_access(b, TFD_ACCESS_READ) < 0 ||
		 mismatches(tfd_message_data(m, 0), tfd_buffer_size(b), *seed) ||
		 tfd_buffer_end_access(b, TFD_ACCESS_READ) < 0)
		r = 24;
	tfd_message_unref(m);
	tfd_subscriber_unref(sub);
	return r;
}

static void test_topic(void)
{
	struct tfd_publisher_stats st;
	struct tfd_publisher *pub;
	struct tfd_buffer *buf;
	struct tfd_message *m;
	char dir[] = "/tmp/tfd-dmabuf-rt-XXXXXX";
	int fds0, maps0, i, r;
	pid_t pid;

	if (!probe_mask) {
		skip("publishing a dma-buf on a topic: no dma-buf source on this kernel");
		return;
	}
	tap_runtime_dir(dir);
	fds0 = count_fds();
	maps0 = count_maps();
	r = tfd_publisher_new("cam/front", TFD_PUBLISHER_ZERO_COPY, &pub);
	if (!ok(r == 0, "topic: a zero-copy publisher (%d)", r))
		return;
	pid = fork();
	if (pid == 0) {
		tfd_publisher_unref(pub);
		_exit(subscriber_child());
	}
	for (i = 0; i < 2000; i++) {
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == 1)
			break;
	}
	ok(st.subscribers == 1, "topic: the subscriber attached");
	r = tfd_dmabuf_new(SIZE, TFD_DMABUF_ANY, 0, &buf);
	if (r == 0) {
		fill(buf, 77);
		m = message_of(buf, 77);
		r = tfd_publisher_publish(pub, m);
		tfd_message_unref(m);
	}
	ok(r == 0, "topic: published a dma-buf tensor that is not from the pool (%d)", r);
	tfd_publisher_get_stats(pub, &st);
	ok(st.copied_tensors == 0, "topic: nothing was copied");
	ok(strcmp(fd_link(tfd_buffer_fd(buf)), "/dmabuf:cam/front/frame") == 0,
	   "topic: the publisher named it %s", fd_link(tfd_buffer_fd(buf)));
	for (i = 0; i < 200 && tfd_buffer_loans(buf); i++)
		tfd_publisher_dispatch(pub, 10);
	r = wait_child(pid);
	ok(r == 0, "topic: the subscriber saw the publisher's bytes in the named dma-buf, not a "
	   "copy (exit %d)", r);
	tfd_publisher_unref(pub);
	tfd_buffer_unref(buf);
	ok(count_fds() == fds0 && count_maps() == maps0,
	   "topic: no fd or mapping leaked (%d fds, %d maps)", count_fds() - fds0,
	   count_maps() - maps0);
	rm_tree(dir);
}

/* --- numbers: first send and steady one-way latency ---------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The consumer times each message from its send stamp (CLOCK_MONOTONIC). */
static int latency_child(struct tfd_channel *ch, int n)
{
	static uint64_t lat[LAT_MESSAGES];
	struct tfd_message *m;
	struct tfd_buffer *b;
	uint64_t res[3];
	volatile uint8_t sink;
	int i;

	for (i = 0; i < n; i++) {
		if (tfd_channel_recv(ch, 20000, &m) < 0)
			return 30;
		b = tfd_message_buffer(m, 0);
		tfd_buffer_begin_access(b, TFD_ACCESS_READ);
		sink = *(const uint8_t *)tfd_message_data(m, 0);
		tfd_buffer_end_access(b, TFD_ACCESS_READ);
		(void)sink;
		lat[i] = tfd_now_ns() - tfd_message_timestamp(m);
		tfd_message_unref(m);
	}
	res[0] = lat[0];
	qsort(lat + 1, (size_t)n - 1, sizeof(lat[0]), cmp_u64);
	res[1] = lat[1 + (n - 1) / 2];
	res[2] = lat[1 + (n - 1) * 99 / 100];
	if (tfd_message_new(&m) < 0 || tfd_message_set_user_data(m, res, sizeof(res)) < 0 ||
	    tfd_channel_send(ch, m) < 0)
		return 31;
	tfd_message_unref(m);
	/* wait for the parent to take the report */
	tfd_channel_recv(ch, 20000, &m);
	return 0;
}

static void test_latency(uint64_t size, const char *label, int source)
{
	struct tfd_channel *a, *b;
	struct tfd_message *m;
	struct tfd_buffer *buf;
	const uint64_t *res;
	uint64_t t0, t_new;
	size_t len;
	int i, r = 0;
	pid_t pid;

	if (!(probe_mask & (source == TFD_DMABUF_ANY ? ~0 : 1 << source))) {
		skip("latency of a %s %s dma-buf: no such source on this kernel", label,
		     source_names[source]);
		return;
	}
	t0 = tfd_now_ns();
	if (tfd_dmabuf_new(size, source, 0, &buf) < 0)
		return (void)ok(0, "latency %s: allocation (%s)", label, tfd_last_error());
	t_new = tfd_now_ns() - t0;
	if (tfd_channel_pair(&a, &b) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		tfd_channel_unref(a);
		_exit(latency_child(b, LAT_MESSAGES));
	}
	tfd_channel_unref(b);
	for (i = 0; i < LAT_MESSAGES && r == 0; i++) {
		m = message_of(buf, 1);
		r = tfd_channel_send(a, m);
		tfd_message_unref(m);
		if (r == 0)
			r = drain(a);
	}
	if (r == 0)
		r = tfd_channel_recv(a, 20000, &m);
	res = r == 0 ? tfd_message_get_user_data(m, &len) : NULL;
	if (ok(res && len == 3 * sizeof(*res), "latency %s: %d messages over a %s dma-buf", label,
	       LAT_MESSAGES, source_names[tfd_dmabuf_source(buf)])) {
		diag("%s dma-buf (%s): allocate+export+map %.1f us; first send (fd passing, "
		     "receiver check and mmap) %.1f us one-way; later sends median %.1f us, p99 "
		     "%.1f us one-way", label, source_names[tfd_dmabuf_source(buf)], t_new / 1e3,
		     res[0] / 1e3, res[1] / 1e3, res[2] / 1e3);
	}
	if (r == 0)
		tfd_message_unref(m);
	tfd_channel_unref(a);
	ok(wait_child(pid) == 0, "latency %s: the consumer finished", label);
	tfd_buffer_unref(buf);
}

/*
 * One unchecked round first: allocators map memory the first time a size
 * is asked for and keep it (glibc's mmap threshold, ASan's size classes,
 * stdout's buffer), which is not a leak.
 */
static void warm_up(void)
{
	struct tfd_buffer *b;
	char err[256];
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		bail("pipe2");
	if (tfd_dmabuf_wrap(p[0], &b) == 0)
		tfd_buffer_unref(b);
	if (buffer_import(dup(p[0]), SIZE, WIRE_BUF_DMABUF, err, sizeof(err), &b) == 0)
		tfd_buffer_unref(b);
	close(p[0]);
	close(p[1]);
	if (tfd_buffer_new(SIZE, 0, &b) == 0)
		tfd_buffer_unref(b);
	if (tfd_dmabuf_new(SIZE, TFD_DMABUF_ANY, 0, &b) == 0)
		tfd_buffer_unref(b);
	diag("warmed up: %d mappings", count_maps());
}

int main(void)
{
	int s;

	tap_init(120);
	page = sysconf(_SC_PAGESIZE);
	probe_mask = tfd_dmabuf_probe();
	diag("dma-buf sources here: heap %s, udmabuf %s, drm %s",
	     probe_mask & (1 << TFD_DMABUF_HEAP) ? "yes" : "no",
	     probe_mask & (1 << TFD_DMABUF_UDMABUF) ? "yes" : "no",
	     probe_mask & (1 << TFD_DMABUF_DRM) ? "yes" : "no");
	warm_up();
	test_not_dmabuf();
	for (s = TFD_DMABUF_HEAP; s <= TFD_DMABUF_DRM; s++)
		test_source(s);
	test_readonly_flag();
	for (s = TFD_DMABUF_HEAP; s <= TFD_DMABUF_DRM; s++)
		test_peer_write(s);
	test_external();
	test_external_readonly();
	test_fence();
	test_prime_reexport();
	test_topic();
	test_latency(64, "64 B", TFD_DMABUF_ANY);
	for (s = TFD_DMABUF_HEAP; s <= TFD_DMABUF_DRM; s++)
		test_latency(64ull << 20, "64 MiB", s);
	return done_testing();
}
