/* SPDX-License-Identifier: MIT */
/*
 * Buffers: sealed memfds. The owner creates one, maps it read-write and
 * seals it at once against shrinking, growing, new writable mappings and
 * further seal changes; its own mapping stays writable (F_SEAL_FUTURE_WRITE
 * allows that). A receiver checks the seals and size of an fd that came
 * from a peer before it maps it, read-only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "gpu.h"
#include "internal.h"
#include "peerfd.h"
#include "wire.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define OWNER_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

static atomic_uint_fast64_t next_id = 1;

struct tfd_buffer *buffer_alloc(void)
{
	struct tfd_buffer *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->refs = 1;
	b->fd = -1;
	b->map = MAP_FAILED;
	b->id = atomic_fetch_add(&next_id, 1);
	b->kind = TFD_BUFFER_MEMFD;
	return b;
}

void buffer_free(struct tfd_buffer *b)
{
	cuda_buffer_free(b);
	if (b->map != MAP_FAILED && b->size)
		munmap(b->map, b->size);
	if (b->fd >= 0)
		close(b->fd);
	free(b);
}

static int populate(struct tfd_buffer *b)
{
	volatile char *p = b->map;
	long page = sysconf(_SC_PAGESIZE);
	uint64_t off;

	if (madvise(b->map, b->size, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* Kernels before 5.14: touch each page instead. */
	for (off = 0; off < b->size; off += (uint64_t)page)
		p[off] = 0;
	return 0;
}

TFD_EXPORT int tfd_buffer_new(uint64_t size, unsigned int flags, struct tfd_buffer **ret)
{
	struct tfd_buffer *b;
	int r;

	if (!ret || size == 0 || size > (uint64_t)INT64_MAX || (flags & ~TFD_BUFFER_POPULATE))
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_buffer_new");
	b = buffer_alloc();
	if (!b)
		return fail_nomem();
	b->fd = memfd_create("tensorfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (b->fd < 0) {
		r = tfd_fail(NULL, 0, -errno, "memfd_create: %s", strerror(errno));
		goto fail;
	}
	if (ftruncate(b->fd, (off_t)size) < 0) {
		r = tfd_fail(NULL, 0, -errno, "ftruncate of the memfd to %llu bytes: %s",
			     (unsigned long long)size, strerror(errno));
		goto fail;
	}
	b->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0);
	if (b->map == MAP_FAILED) {
		r = tfd_fail(NULL, 0, -errno, "mmap of %llu bytes: %s", (unsigned long long)size,
			     strerror(errno));
		goto fail;
	}
	b->size = size;
	if (fcntl(b->fd, F_ADD_SEALS, OWNER_SEALS) < 0) {
		r = tfd_fail(NULL, 0, -errno, "sealing the memfd: %s", strerror(errno));
		goto fail;
	}
	if (flags & TFD_BUFFER_POPULATE) {
		r = populate(b);
		if (r < 0) {
			tfd_fail(NULL, 0, r, "prefaulting %llu bytes: %s", (unsigned long long)size,
				 strerror(-r));
			goto fail;
		}
	}
	b->writable = true;
	*ret = b;
	return 0;
fail:
	buffer_free(b);
	return r;
}

int buffer_import(int fd, uint64_t size, unsigned int kind, char *errbuf, size_t errlen,
		  struct tfd_buffer **ret)
{
	struct tfd_buffer *b;
	struct statfs sfs;
	struct stat st;
	int seals, mode, r;

	/* a write-only fd cannot be mapped for reading: the sender's fault, not a refusal */
	mode = fcntl(fd, F_GETFL);
	if (mode < 0 || (mode & O_ACCMODE) == O_WRONLY) {
		r = tfd_fail(errbuf, errlen, -EBADFD,
			     "received fd is write-only: it cannot be mapped for reading");
		goto fail_fd;
	}
	/* the wire decoder let only known kinds through */
	if (kind == WIRE_BUF_DMABUF)
		return dmabuf_import(fd, size, errbuf, errlen, ret);
	/*
	 * Seals first: only shmem and hugetlbfs answer, and no filesystem
	 * driver is asked (fstat() of a FUSE file waits for its daemon).
	 */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0) {
		r = tfd_fail(errbuf, errlen, -EBADFD, "received fd is not a memfd (no seals: %s)",
			     strerror(errno));
		goto fail_fd;
	}
	if (fstat(fd, &st) < 0) {
		r = tfd_fail(errbuf, errlen, -errno, "fstat of a received fd: %s", strerror(errno));
		goto fail_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		r = tfd_fail(errbuf, errlen, -EBADFD, "received fd is not a memfd (mode 0%o)",
			     st.st_mode & S_IFMT);
		goto fail_fd;
	}
	/* shmem only: a hugetlbfs memfd maps in huge pages we would unmap wrongly */
	if (fstatfs(fd, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC) {
		r = tfd_fail(errbuf, errlen, -EBADFD, "received fd is not a shmem memfd");
		goto fail_fd;
	}
	if ((seals & REQUIRED_SEALS) != REQUIRED_SEALS) {
		/* A shrinkable memfd could be truncated under us: SIGBUS. */
		r = tfd_fail(errbuf, errlen, -EPERM,
			     "received memfd is not sealed against shrinking and growing (seals 0x%x)",
			     seals);
		goto fail_fd;
	}
	if (size == 0 || size > (uint64_t)INT64_MAX || (uint64_t)st.st_size < size) {
		r = tfd_fail(errbuf, errlen, -EOVERFLOW,
			     "buffer claims %llu bytes but its memfd holds %lld",
			     (unsigned long long)size, (long long)st.st_size);
		goto fail_fd;
	}
	b = buffer_alloc();
	if (!b) {
		r = -ENOMEM;
		goto fail_fd;
	}
	b->fd = fd;
	b->map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (b->map == MAP_FAILED) {
		r = tfd_fail(errbuf, errlen, -errno, "mmap of a received buffer of %llu bytes: %s",
			     (unsigned long long)size, strerror(errno));
		buffer_free(b);
		return r;
	}
	b->size = size;
	*ret = b;
	return 0;
fail_fd:
	peerfd_close(fd);
	return r;
}

TFD_EXPORT struct tfd_buffer *tfd_buffer_ref(struct tfd_buffer *buf)
{
	if (buf)
		buf->refs++;
	return buf;
}

atomic_ulong buffer_orphan_gen;

TFD_EXPORT struct tfd_buffer *tfd_buffer_unref(struct tfd_buffer *buf)
{
	if (!buf)
		return NULL;
	if (--buf->refs == 0)
		buffer_free(buf);
	else if (buf->refs == buf->known)
		/* only channels hold it now: they may forget it */
		atomic_fetch_add_explicit(&buffer_orphan_gen, 1, memory_order_relaxed);
	return NULL;
}

TFD_EXPORT void *tfd_buffer_data(const struct tfd_buffer *buf)
{
	return buf && buf->map != MAP_FAILED ? buf->map : NULL;
}

TFD_EXPORT uint64_t tfd_buffer_size(const struct tfd_buffer *buf)
{
	return buf ? buf->size : 0;
}

TFD_EXPORT int tfd_buffer_fd(const struct tfd_buffer *buf)
{
	return buf ? buf->fd : -EINVAL;
}

TFD_EXPORT bool tfd_buffer_is_writable(const struct tfd_buffer *buf)
{
	return buf && buf->writable;
}

TFD_EXPORT int tfd_buffer_kind(const struct tfd_buffer *buf)
{
	return buf ? buf->kind : -EINVAL;
}

TFD_EXPORT unsigned int tfd_buffer_loans(const struct tfd_buffer *buf)
{
	return buf ? buf->loans : 0;
}
