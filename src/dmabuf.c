/* SPDX-License-Identifier: MIT */
/*
 * dma-buf buffers: memory that a kernel driver exports as a dma-buf fd
 * (a DMA heap, udmabuf over a memfd, a DRM dumb buffer through PRIME, or
 * whatever a camera, GPU or decoder hands the caller). They travel and are
 * mapped like memfd buffers; what differs is how an fd is allocated, how a
 * receiver recognises one (the dma-buf filesystem's magic and the size the
 * exporter reports through lseek), and that CPU access is bracketed with
 * DMA_BUF_IOCTL_SYNC so non-coherent devices see, and show, the CPU's bytes.
 * dma-bufs have no seals: the exporter fixes the size once, at export.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/udmabuf.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifdef HAVE_LIBDRM
#include <xf86drm.h>
#endif

#include "internal.h"
#include "peerfd.h"

#ifndef DMA_BUF_MAGIC
#define DMA_BUF_MAGIC 0x444d4142	/* "DMAB", the dma-buf pseudo filesystem */
#endif

#define HEAP_PATH	"/dev/dma_heap/system"
#define UDMABUF_PATH	"/dev/udmabuf"
#define DRM_CARDS	16	/* /dev/dri/card0 .. card15 */

/*
 * Is fd a dma-buf, and how large? Every dma-buf file lives on the kernel's
 * dma-buf pseudo filesystem whatever its exporter, so its magic says what
 * the fd is; the exporter fixed the size at export and lseek reports it.
 */
/*
 * Whether fd is a dma-buf, asking no filesystem driver: fstatfs() of a
 * FUSE file waits for its daemon, which a peer may run, while a file's
 * /proc fdinfo is written by the kernel alone and only a dma-buf's has an
 * exp_name line (Linux 5.4). 1: a dma-buf, 0: not one, < 0: cannot tell.
 */
static int fdinfo_is_dmabuf(int fd)
{
	char path[64], buf[1024];
	ssize_t n;
	int f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -errno;
	n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	return strstr(buf, "\nexp_name:") != NULL;
}

static int dmabuf_check(int fd, uint64_t *size, char *errbuf, size_t errlen)
{
	struct statfs sfs;
	off_t end;

	if (fdinfo_is_dmabuf(fd) == 0)
		return tfd_fail(errbuf, errlen, -EBADFD,
				"fd is not a dma-buf (no exp_name in its fdinfo)");
	if (fstatfs(fd, &sfs) < 0)
		return tfd_fail(errbuf, errlen, -EBADFD, "fstatfs of a dma-buf fd: %s",
				strerror(errno));
	if (sfs.f_type != DMA_BUF_MAGIC)
		return tfd_fail(errbuf, errlen, -EBADFD,
				"fd is not a dma-buf (filesystem magic 0x%lx)",
				(unsigned long)sfs.f_type);
	end = lseek(fd, 0, SEEK_END);
	if (end <= 0)
		return tfd_fail(errbuf, errlen, -EBADFD, "dma-buf reports no size (%s)",
				end < 0 ? strerror(errno) : "0 bytes");
	*size = (uint64_t)end;
	return 0;
}

/*
 * A buffer object for a checked dma-buf fd, mapped; takes ownership of fd,
 * and of map when the source mapped the memory another way (MAP_FAILED:
 * map the fd).
 */
static int dmabuf_make(int fd, void *map, uint64_t size, bool writable, int source,
		       char *errbuf, size_t errlen, struct tfd_buffer **ret)
{
	struct tfd_buffer *b = buffer_alloc();
	int prot = PROT_READ | (writable ? PROT_WRITE : 0), r;

	if (!b) {
		close(fd);
		if (map != MAP_FAILED)
			munmap(map, size);
		return fail_nomem();
	}
	b->fd = fd;
	b->kind = TFD_BUFFER_DMABUF;
	b->source = (uint8_t)source;
	b->map = map != MAP_FAILED ? map : mmap(NULL, size, prot, MAP_SHARED, fd, 0);
	if (b->map == MAP_FAILED) {
		r = tfd_fail(errbuf, errlen, -errno, "mmap of a dma-buf of %llu bytes: %s",
			     (unsigned long long)size, strerror(errno));
		buffer_free(b);
		return r;
	}
	b->size = size;
	b->writable = writable;
	*ret = b;
	return 0;
}

int dmabuf_import(int fd, uint64_t size, char *errbuf, size_t errlen, struct tfd_buffer **ret)
{
	uint64_t have;
	int r;

	r = dmabuf_check(fd, &have, errbuf, errlen);
	if (r < 0)
		goto fail;
	if (size == 0 || have < size) {
		r = tfd_fail(errbuf, errlen, -EOVERFLOW,
			     "buffer claims %llu bytes but its dma-buf holds %llu",
			     (unsigned long long)size, (unsigned long long)have);
		goto fail;
	}
	return dmabuf_make(fd, MAP_FAILED, size, false, TFD_DMABUF_EXTERNAL, errbuf, errlen, ret);
fail:
	peerfd_close(fd);
	return r;
}

/*
 * --- allocation: each source returns a dma-buf fd or a negative errno ---
 *
 * What a receiver may do with the fd is fixed when the dma-buf is exported:
 * the file's mode (O_RDWR or O_RDONLY) decides whether mmap(PROT_WRITE,
 * MAP_SHARED) succeeds, and every fd of one dma-buf shares that one file.
 * The heap exports with the fd_flags of the allocation and udmabuf always
 * with O_RDWR: the producer maps those fds to write, so every receiver can
 * too. A DRM dumb buffer is exported read-only instead, and the producer
 * writes through a mapping of the card node (see drm_export).
 */

static int heap_alloc(uint64_t size)
{
	struct dma_heap_allocation_data d = { .len = size, .fd_flags = O_RDWR | O_CLOEXEC };
	int heap, r;

	heap = open(HEAP_PATH, O_RDONLY | O_CLOEXEC);
	if (heap < 0)
		return tfd_fail(NULL, 0, -errno, "%s: %s", HEAP_PATH, strerror(errno));
	r = ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d);
	if (r < 0)
		r = tfd_fail(NULL, 0, -errno, "DMA_HEAP_IOCTL_ALLOC of %llu bytes: %s",
			     (unsigned long long)size, strerror(errno));
	close(heap);
	return r < 0 ? r : (int)d.fd;
}

/*
 * udmabuf pins the pages of a memfd that cannot shrink (F_SEAL_SHRINK is
 * required) and must stay writable (F_SEAL_WRITE is refused). The dma-buf
 * keeps the pages; the memfd is closed at once.
 */
static int udmabuf_alloc(uint64_t size)
{
	struct udmabuf_create c = { .flags = UDMABUF_FLAGS_CLOEXEC, .offset = 0, .size = size };
	int mfd, dev, r;

	dev = open(UDMABUF_PATH, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return tfd_fail(NULL, 0, -errno, "%s: %s", UDMABUF_PATH, strerror(errno));
	mfd = memfd_create("tensorfd-udmabuf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0) {
		r = tfd_fail(NULL, 0, -errno, "memfd_create: %s", strerror(errno));
		goto out_dev;
	}
	if (ftruncate(mfd, (off_t)size) < 0 ||
	    fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = tfd_fail(NULL, 0, -errno, "sizing and sealing the memfd for udmabuf: %s",
			     strerror(errno));
		goto out;
	}
	c.memfd = (uint32_t)mfd;
	r = ioctl(dev, UDMABUF_CREATE, &c);
	if (r < 0)
		r = tfd_fail(NULL, 0, -errno, "UDMABUF_CREATE of %llu bytes: %s",
			     (unsigned long long)size, strerror(errno));
out:
	close(mfd);
out_dev:
	close(dev);
	return r;
}

#ifdef HAVE_LIBDRM
/*
 * A dumb buffer of size bytes on one card node, exported without DRM_RDWR:
 * its dma-buf is O_RDONLY, so no receiver can map it writable. With map,
 * the producer's writable mapping comes from the card node (MAP_DUMB), made
 * before the handle goes: the mapping keeps the object, as the dma-buf does.
 * -errno on failure.
 */
static int drm_export(int card, uint64_t size, void **map)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	struct drm_mode_create_dumb dumb = {
		.width = (uint32_t)page, .height = (uint32_t)(size / page), .bpp = 8,
	};
	struct drm_mode_destroy_dumb destroy;
	struct drm_mode_map_dumb md = { 0 };
	int fd = -1, r;

	if (size / page > UINT32_MAX)
		return -E2BIG;
	if (drmIoctl(card, DRM_IOCTL_MODE_CREATE_DUMB, &dumb) < 0)
		return -errno;
	r = 0;
	md.handle = dumb.handle;
	if (dumb.size < size)
		r = -ENOSPC;
	else if (drmPrimeHandleToFD(card, dumb.handle, DRM_CLOEXEC, &fd) < 0)
		r = -errno;
	else if (map && drmIoctl(card, DRM_IOCTL_MODE_MAP_DUMB, &md) < 0)
		r = -errno;
	else if (map) {
		*map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, card, (off_t)md.offset);
		if (*map == MAP_FAILED)
			r = -errno;
	}
	/* the dma-buf (and the mapping) hold the object; the handle and the node can go */
	destroy.handle = dumb.handle;
	drmIoctl(card, DRM_IOCTL_MODE_DESTROY_DUMB, &destroy);
	if (r < 0 && fd >= 0)
		close(fd);
	return r < 0 ? r : fd;
}
#endif

/*
 * Dumb buffers exist only on primary nodes (the render node refuses the
 * ioctl), which need root or the video group: try each card in turn.
 */
static int drm_alloc(uint64_t size, void **map)
{
#ifdef HAVE_LIBDRM
	char path[32];
	int i, card, fd, err = -ENOENT;

	for (i = 0; i < DRM_CARDS; i++) {
		snprintf(path, sizeof(path), "/dev/dri/card%d", i);
		card = open(path, O_RDWR | O_CLOEXEC);
		if (card < 0) {
			if (errno != ENOENT || err == -ENOENT)
				err = -errno;
			continue;
		}
		fd = drm_export(card, size, map);
		close(card);
		if (fd >= 0)
			return fd;
		err = fd;
	}
	if (err == -ENOENT)
		return tfd_fail(NULL, 0, -ENOENT, "no DRM card node in /dev/dri");
	return tfd_fail(NULL, 0, err, "DRM dumb buffer of %llu bytes with PRIME export: %s",
			(unsigned long long)size, strerror(-err));
#else
	(void)map;
	return tfd_fail(NULL, 0, -EOPNOTSUPP, "tensorfd was built without libdrm");
#endif
}

/* A dma-buf fd; *map is the producer's mapping when the source made one. */
static int source_alloc(int source, uint64_t size, void **map)
{
	*map = MAP_FAILED;
	switch (source) {
	case TFD_DMABUF_HEAP:
		return heap_alloc(size);
	case TFD_DMABUF_UDMABUF:
		return udmabuf_alloc(size);
	default:
		return drm_alloc(size, map);
	}
}

static const char *source_name(int source)
{
	static const char *const names[] = { "any", "heap", "udmabuf", "drm", "external" };

	return names[source];
}

TFD_EXPORT int tfd_dmabuf_new(uint64_t size, enum tfd_dmabuf_source source, unsigned int flags,
			      struct tfd_buffer **ret)
{
	char why[3][128];
	void *map = MAP_FAILED;
	uint64_t have;
	int s, first, last, fd = -ENOENT, r;

	if (!ret || size == 0 || size > (uint64_t)INT64_MAX / 2 || flags ||
	    (unsigned int)source > TFD_DMABUF_DRM)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_dmabuf_new");
	size = page_round(size);
	first = source == TFD_DMABUF_ANY ? TFD_DMABUF_HEAP : (int)source;
	last = source == TFD_DMABUF_ANY ? TFD_DMABUF_DRM : (int)source;
	for (s = first; s <= last; s++) {
		fd = source_alloc(s, size, &map);
		if (fd >= 0)
			break;
		snprintf(why[s - 1], sizeof(why[0]), "%s", tfd_last_error());
	}
	if (fd < 0) {
		if (source != TFD_DMABUF_ANY)
			return fd;
		/* no source at all is "not supported here"; a source that failed says why */
		if (fd == -ENOENT || fd == -EOPNOTSUPP || fd == -ENODEV)
			fd = -EOPNOTSUPP;
		return tfd_fail(NULL, 0, fd, "no dma-buf source worked: heap: %s; udmabuf: %s; drm: %s",
				why[0], why[1], why[2]);
	}
	r = dmabuf_check(fd, &have, NULL, 0);
	if (r == 0 && have < size)
		r = tfd_fail(NULL, 0, -EOVERFLOW, "%s gave a dma-buf of %llu bytes for %llu",
			     source_name(s), (unsigned long long)have, (unsigned long long)size);
	if (r < 0) {
		close(fd);
		if (map != MAP_FAILED)
			munmap(map, size);
		return r;
	}
	return dmabuf_make(fd, map, size, true, s, NULL, 0, ret);
}

TFD_EXPORT int tfd_dmabuf_wrap(int fd, struct tfd_buffer **ret)
{
	uint64_t size;
	int mode, own, r;

	if (fd < 0 || !ret)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_dmabuf_wrap");
	mode = fcntl(fd, F_GETFL);
	if (mode < 0)
		return tfd_fail(NULL, 0, -errno, "fd %d: %s", fd, strerror(errno));
	r = dmabuf_check(fd, &size, NULL, 0);
	if (r < 0)
		return r;
	own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (own < 0)
		return tfd_fail(NULL, 0, -errno, "duplicating the dma-buf fd: %s", strerror(errno));
	return dmabuf_make(own, MAP_FAILED, size, (mode & O_ACCMODE) == O_RDWR, TFD_DMABUF_EXTERNAL,
			   NULL, 0, ret);
}

TFD_EXPORT int tfd_dmabuf_set_name(struct tfd_buffer *buf, const char *name)
{
	size_t len;

	if (!buf || !name || buf->kind != TFD_BUFFER_DMABUF)
		return tfd_fail(NULL, 0, -EINVAL, "tfd_dmabuf_set_name needs a dma-buf and a name");
	len = strnlen(name, TFD_DMABUF_NAME_MAX);
	if (len >= TFD_DMABUF_NAME_MAX)
		return tfd_fail(NULL, 0, -ENAMETOOLONG, "a dma-buf name has at most %d bytes",
				TFD_DMABUF_NAME_MAX - 1);
	if (ioctl(buf->fd, DMA_BUF_SET_NAME, name) < 0)
		return tfd_fail(NULL, 0, -errno, "DMA_BUF_SET_NAME: %s", strerror(errno));
	buf->named = true;
	return 0;
}

TFD_EXPORT int tfd_dmabuf_source(const struct tfd_buffer *buf)
{
	if (!buf || buf->kind != TFD_BUFFER_DMABUF)
		return fail_args();
	return buf->source;
}

static bool can_open(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

#ifdef HAVE_LIBDRM
/*
 * DRM_CAP_DUMB_BUFFER is answered by KMS drivers only (vgem says
 * EOPNOTSUPP yet makes dumb buffers): export one page to find out.
 */
static bool drm_usable(void)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	char path[32];
	int i, card, fd = -1;

	for (i = 0; i < DRM_CARDS && fd < 0; i++) {
		snprintf(path, sizeof(path), "/dev/dri/card%d", i);
		card = open(path, O_RDWR | O_CLOEXEC);
		if (card < 0)
			continue;
		fd = drm_export(card, page, NULL);
		close(card);
	}
	if (fd < 0)
		return false;
	close(fd);
	return true;
}
#endif

TFD_EXPORT int tfd_dmabuf_probe(void)
{
	int mask = 0;

	if (can_open(HEAP_PATH, O_RDONLY))
		mask |= 1 << TFD_DMABUF_HEAP;
	if (can_open(UDMABUF_PATH, O_RDWR))
		mask |= 1 << TFD_DMABUF_UDMABUF;
#ifdef HAVE_LIBDRM
	if (drm_usable())
		mask |= 1 << TFD_DMABUF_DRM;
#endif
	return mask;
}

static int buffer_sync(struct tfd_buffer *buf, unsigned int access, uint64_t phase)
{
	struct dma_buf_sync s = { .flags = phase };

	if (!buf || !access || (access & ~(TFD_ACCESS_READ | TFD_ACCESS_WRITE)))
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to a buffer access call");
	if ((access & TFD_ACCESS_WRITE) && !buf->writable)
		return tfd_fail(NULL, 0, -EPERM, "write access to a read-only buffer");
	if (buf->kind != TFD_BUFFER_DMABUF)
		return 0;	/* memfds are plain coherent memory */
	if (access & TFD_ACCESS_READ)
		s.flags |= DMA_BUF_SYNC_READ;
	if (access & TFD_ACCESS_WRITE)
		s.flags |= DMA_BUF_SYNC_WRITE;
	/* waits for the device's fences; a signal restarts the wait */
	while (ioctl(buf->fd, DMA_BUF_IOCTL_SYNC, &s) < 0)
		if (errno != EINTR && errno != EAGAIN)
			return tfd_fail(NULL, 0, -errno, "DMA_BUF_IOCTL_SYNC: %s", strerror(errno));
	return 0;
}

TFD_EXPORT int tfd_buffer_begin_access(struct tfd_buffer *buf, unsigned int access)
{
	return buffer_sync(buf, access, DMA_BUF_SYNC_START);
}

TFD_EXPORT int tfd_buffer_end_access(struct tfd_buffer *buf, unsigned int access)
{
	return buffer_sync(buf, access, DMA_BUF_SYNC_END);
}
