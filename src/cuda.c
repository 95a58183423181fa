/* SPDX-License-Identifier: MIT */
/*
 * CUDA: GPU buffers that cross a channel without touching host memory.
 *
 * The driver is loaded at run time, on the first GPU call and never in a
 * constructor: dlopen("libcuda.so.1") (or $TENSORFD_LIBCUDA), then every
 * entry point through cuGetProcAddress_v2 at the ABI version of the typedef
 * compiled against (src/gpu.h). Nothing links libcuda or libcudart, so the
 * library loads, and CPU tensors work, on machines without a driver; GPU
 * calls there fail with -ENODEV and say why. A process that forks after the
 * driver was loaded may not use it in the child (CUDA does not survive
 * fork); the child gets -ECHILD until it execs.
 *
 * Three buffer kinds, each with its receiver's import:
 *  - TFD_BUFFER_CUDA: cuMemCreate with a POSIX fd handle, exported once;
 *    the fd crosses with SCM_RIGHTS and the receiver imports, reserves,
 *    maps and sets access once, for as long as the channel caches it.
 *  - TFD_BUFFER_CUDA_EXTMEM: the same fd, imported on the receiver with
 *    cuImportExternalMemory (OPAQUE_FD) instead; an experiment.
 *  - TFD_BUFFER_CUDA_IPC: memory the caller allocated (cudaMalloc, a
 *    caching allocator): cuIpcGetMemHandle of the allocation base, opened
 *    once on the receiver. The handle holds no reference: the caller keeps
 *    the memory until the buffer is gone.
 * Each GPU buffer has an interprocess event, exported with it once: the
 * producer records it on its stream when it publishes, the consumer's
 * stream waits on it. Devices are named by UUID on the wire.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gpu.h"
#include "internal.h"
#include "peerfd.h"
#include "wire.h"

#ifdef HAVE_CUDA
#include <dlfcn.h>
#include <pthread.h>

#define MAX_DEVICES 64

struct cuda_dev {
	CUdevice dev;
	CUcontext ctx;		/* primary context, retained on first use */
	CUuuid uuid;
	size_t granularity;	/* 0: no VMM with POSIX fds on this device */
	bool host_read_only;	/* CU_MEMHOSTREGISTER_READ_ONLY works */
	bool ipc_events;
};

static struct {
	pthread_once_t once;
	pthread_mutex_t lock;	/* primary context retention */
	int err;
	char reason[256];
	pid_t pid;		/* the process that loaded the driver */
	int version;
	int ndev;
	struct cuda_dev dev[MAX_DEVICES];
	struct cuda_api api;
} cu = { .once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER };

/* The part of GPU buffers that plain buffers lack. */
struct cuda_buf {
	int dev;		/* local ordinal; -1: host registration only */
	bool owner;		/* allocated or wrapped here, not received */
	uint64_t alloc_size;
	CUdeviceptr base;
	bool mapped;		/* VMM: reserved and mapped at base */
	CUexternalMemory ext;
	bool ipc_open;		/* IPC receiver: cuIpcOpenMemHandle'd at base */
	CUipcMemHandle mem_handle;
	CUevent event;
	CUipcEventHandle event_handle;
	bool host_registered;
};

static const char *cu_name(CUresult r)
{
	const char *s = NULL;

	if (cu.api.cuGetErrorString && cu.api.cuGetErrorString(r, &s) == CUDA_SUCCESS && s)
		return s;
	return "unknown CUDA error";
}

static int cu_errno(CUresult r)
{
	switch (r) {
	case CUDA_ERROR_OUT_OF_MEMORY:
		return fail_nomem();
	case CUDA_ERROR_INVALID_VALUE:
	case CUDA_ERROR_INVALID_HANDLE:
		return fail_args();
	case CUDA_ERROR_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	case CUDA_ERROR_NO_DEVICE:
	case CUDA_ERROR_INVALID_DEVICE:
	case CUDA_ERROR_STUB_LIBRARY:
		return -ENODEV;
	case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED:
		return -EEXIST;
	default:
		return -EIO;
	}
}

/* Fail with the driver's own words for r. */
static int cu_fail(char *errbuf, size_t errlen, CUresult r, const char *what)
{
	return tfd_fail(errbuf, errlen, cu_errno(r), "%s: %s (CUDA error %d)", what, cu_name(r),
			(int)r);
}

static void load_fail(int err, const char *fmt, ...) TFD_PRINTF(2, 3);

static void load_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cu.reason, sizeof(cu.reason), fmt, ap);
	va_end(ap);
	cu.err = err;
}

static void load(void)
{
	const char *path = secure_getenv("TENSORFD_LIBCUDA");
	PFN_cuGetProcAddress_v12000 gpa;
	CUdriverProcAddressQueryResult found;
	CUresult r;
	void *dl;
	int i, n, v;

	if (!path || !*path)
		path = "libcuda.so.1";
	cu.pid = getpid();
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		return load_fail(-ENODEV, "no CUDA driver: %s", dlerror());
	/* stays loaded: the driver does not support being unloaded */
	gpa = (PFN_cuGetProcAddress_v12000)dlsym(dl, "cuGetProcAddress_v2");
	if (!gpa)
		return load_fail(-ENODEV, "%s has no cuGetProcAddress_v2: a driver older than CUDA 12",
				 path);
#define CUDA_LOAD(name, ver)                                                                       \
	r = gpa(#name, (void **)&cu.api.name, ver, CU_GET_PROC_ADDRESS_DEFAULT, &found);           \
	if (r == CUDA_ERROR_STUB_LIBRARY)                                                          \
		return load_fail(-ENODEV, "%s is the CUDA toolkit's stub library "                 \
				 "(CUDA_ERROR_STUB_LIBRARY): no NVIDIA driver is installed", path); \
	if (r != CUDA_SUCCESS || found != CU_GET_PROC_ADDRESS_SUCCESS || !cu.api.name)             \
		return load_fail(-ENODEV, "the CUDA driver (%s) lacks %s at ABI version %d "      \
				 "(error %d, query result %d)", path, #name, ver, (int)r, (int)found);
	CUDA_FNS(CUDA_LOAD)
#undef CUDA_LOAD
	r = cu.api.cuInit(0);
	if (r == CUDA_ERROR_STUB_LIBRARY)
		return load_fail(-ENODEV, "%s is the CUDA toolkit's stub library "
				 "(CUDA_ERROR_STUB_LIBRARY): no NVIDIA driver is installed", path);
	if (r == CUDA_ERROR_NO_DEVICE)
		return load_fail(-ENODEV, "the CUDA driver sees no device (CUDA_VISIBLE_DEVICES?)");
	if (r != CUDA_SUCCESS)
		return load_fail(cu_errno(r), "cuInit: %s (CUDA error %d)", cu_name(r), (int)r);
	if (cu.api.cuDriverGetVersion(&cu.version) != CUDA_SUCCESS ||
	    cu.api.cuDeviceGetCount(&n) != CUDA_SUCCESS || n <= 0)
		return load_fail(-ENODEV, "the CUDA driver sees no device");
	if (n > MAX_DEVICES)
		n = MAX_DEVICES;
	for (i = 0; i < n; i++) {
		struct cuda_dev *d = &cu.dev[i];
		CUmemAllocationProp p = { 0 };

		if (cu.api.cuDeviceGet(&d->dev, i) != CUDA_SUCCESS ||
		    cu.api.cuDeviceGetUuid(&d->uuid, d->dev) != CUDA_SUCCESS)
			return load_fail(-ENODEV, "cannot identify CUDA device %d", i);
		p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
		p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		p.location.id = d->dev;
		p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
		if (cu.api.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
						d->dev) == CUDA_SUCCESS && v &&
		    cu.api.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED,
						d->dev) == CUDA_SUCCESS && v &&
		    cu.api.cuMemGetAllocationGranularity(&d->granularity, &p,
							 CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) != CUDA_SUCCESS)
			d->granularity = 0;
		d->host_read_only = cu.api.cuDeviceGetAttribute(&v,
				CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED, d->dev) == CUDA_SUCCESS && v;
		d->ipc_events = cu.api.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED,
							    d->dev) == CUDA_SUCCESS && v;
	}
	cu.ndev = n;
}

static int cuda_get(char *errbuf, size_t errlen)
{
	pthread_once(&cu.once, load);
	if (cu.err)
		return tfd_fail(errbuf, errlen, cu.err, "%s", cu.reason);
	if (getpid() != cu.pid)
		return tfd_fail(errbuf, errlen, -ECHILD,
				"CUDA was loaded in process %d before it forked: a child may not use "
				"it (exec first, or load CUDA only after forking)", (int)cu.pid);
	return 0;
}

const struct cuda_api *cuda_api(void)
{
	return cuda_get(NULL, 0) < 0 ? NULL : &cu.api;
}

int cuda_enter(int dev)
{
	struct cuda_dev *d;
	CUresult r = CUDA_SUCCESS;

	if (dev < 0 || dev >= cu.ndev)
		return tfd_fail(NULL, 0, -ENODEV, "no CUDA device %d here", dev);
	d = &cu.dev[dev];
	pthread_mutex_lock(&cu.lock);
	if (!d->ctx)
		r = cu.api.cuDevicePrimaryCtxRetain(&d->ctx, d->dev);
	pthread_mutex_unlock(&cu.lock);
	if (r != CUDA_SUCCESS)
		return cu_fail(NULL, 0, r, "retaining the primary context");
	r = cu.api.cuCtxPushCurrent(d->ctx);
	if (r != CUDA_SUCCESS)
		return cu_fail(NULL, 0, r, "cuCtxPushCurrent");
	return 0;
}

void cuda_leave(void)
{
	CUcontext c;

	cu.api.cuCtxPopCurrent(&c);
}

static void uuid_str(const uint8_t *u, char *s, size_t len)
{
	snprintf(s, len,
		 "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

static int device_of_uuid(const uint8_t *uuid)
{
	int i;

	for (i = 0; i < cu.ndev; i++)
		if (memcmp(cu.dev[i].uuid.bytes, uuid, 16) == 0)
			return i;
	return -1;
}

static struct tfd_buffer *gpu_alloc(int dev, int kind)
{
	struct tfd_buffer *b = buffer_alloc();

	if (!b)
		return NULL;
	b->cuda = calloc(1, sizeof(*b->cuda));
	if (!b->cuda) {
		buffer_free(b);
		return NULL;
	}
	b->cuda->dev = dev;
	b->kind = (uint8_t)kind;
	return b;
}

/* An interprocess event for the buffer, if the device has them. */
static int make_event(struct cuda_buf *c)
{
	CUresult r;

	if (!cu.dev[c->dev].ipc_events)
		return 0;
	r = cu.api.cuEventCreate(&c->event, CU_EVENT_INTERPROCESS | CU_EVENT_DISABLE_TIMING);
	if (r != CUDA_SUCCESS)
		return cu_fail(NULL, 0, r, "creating an interprocess event");
	r = cu.api.cuIpcGetEventHandle(&c->event_handle, c->event);
	if (r != CUDA_SUCCESS) {
		cu.api.cuEventDestroy(c->event);
		c->event = NULL;
		return cu_fail(NULL, 0, r, "exporting an interprocess event");
	}
	return 0;
}

static void release_gpu(struct cuda_buf *c)
{
	if (c->event)
		cu.api.cuEventDestroy(c->event);
	if (c->mapped) {
		cu.api.cuMemUnmap(c->base, c->alloc_size);
		cu.api.cuMemAddressFree(c->base, c->alloc_size);
	}
	if (c->ext) {
		if (c->base)
			cu.api.cuMemFree(c->base);
		cu.api.cuDestroyExternalMemory(c->ext);
	}
	if (c->ipc_open)
		cu.api.cuIpcCloseMemHandle(c->base);
}

void cuda_buffer_free(struct tfd_buffer *b)
{
	struct cuda_buf *c = b->cuda;

	if (!c)
		return;
	/* a forked child cannot call the driver; its copy of the state just goes */
	if (getpid() == cu.pid && !cu.err) {
		if (c->host_registered && b->map != MAP_FAILED)
			cu.api.cuMemHostUnregister(b->map);
		if (c->dev >= 0 && cuda_enter(c->dev) == 0) {
			release_gpu(c);
			cuda_leave();
		}
	}
	free(c);
	b->cuda = NULL;
}

/* Reserve, map and open access to a VMM allocation handle at c->base. */
static int map_handle(struct cuda_buf *c, CUmemGenericAllocationHandle h, CUmemAccess_flags prot,
		      char *errbuf, size_t errlen)
{
	CUmemAccessDesc a = { .location = { .type = CU_MEM_LOCATION_TYPE_DEVICE,
					    .id = cu.dev[c->dev].dev },
			      .flags = prot };
	CUresult r;

	r = cu.api.cuMemAddressReserve(&c->base, c->alloc_size, cu.dev[c->dev].granularity, 0, 0);
	if (r != CUDA_SUCCESS)
		return cu_fail(errbuf, errlen, r, "cuMemAddressReserve");
	r = cu.api.cuMemMap(c->base, c->alloc_size, 0, h, 0);
	if (r != CUDA_SUCCESS) {
		cu.api.cuMemAddressFree(c->base, c->alloc_size);
		return cu_fail(errbuf, errlen, r, "cuMemMap");
	}
	c->mapped = true;
	r = cu.api.cuMemSetAccess(c->base, c->alloc_size, &a, 1);
	if (r != CUDA_SUCCESS && prot == CU_MEM_ACCESS_FLAGS_PROT_READ) {
		/* read-only device access is not offered everywhere */
		a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
		r = cu.api.cuMemSetAccess(c->base, c->alloc_size, &a, 1);
	}
	if (r != CUDA_SUCCESS)
		return cu_fail(errbuf, errlen, r, "cuMemSetAccess");
	return 0;
}

static int vmm_new(struct tfd_buffer *b, uint64_t size)
{
	struct cuda_buf *c = b->cuda;
	struct cuda_dev *d = &cu.dev[c->dev];
	CUmemAllocationProp p = { 0 };
	CUmemGenericAllocationHandle h;
	CUresult r;
	int fd = -1, e;

	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.location.id = d->dev;
	p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	c->alloc_size = (size + d->granularity - 1) / d->granularity * d->granularity;
	r = cu.api.cuMemCreate(&h, c->alloc_size, &p, 0);
	if (r != CUDA_SUCCESS)
		return cu_fail(NULL, 0, r, "cuMemCreate");
	r = cu.api.cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
	if (r != CUDA_SUCCESS) {
		cu.api.cuMemRelease(h);
		return cu_fail(NULL, 0, r, "cuMemExportToShareableHandle");
	}
	/* the driver's fd must not leak into exec'd children either */
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	b->fd = fd;
	e = map_handle(c, h, CU_MEM_ACCESS_FLAGS_PROT_READWRITE, NULL, 0);
	/* the mapping and the fd keep the memory; the handle can go */
	cu.api.cuMemRelease(h);
	return e;
}

TFD_EXPORT int tfd_cuda_buffer_new(int device, uint64_t size, unsigned int flags,
				   struct tfd_buffer **ret)
{
	struct tfd_buffer *b;
	int r;

	if (!ret || size == 0 || size > (uint64_t)INT64_MAX || (flags & ~TFD_CUDA_EXTMEM))
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_cuda_buffer_new");
	r = cuda_get(NULL, 0);
	if (r < 0)
		return r;
	if (device < 0 || device >= cu.ndev)
		return tfd_fail(NULL, 0, -ENODEV, "no CUDA device %d here (%d visible)", device,
				cu.ndev);
	if (!cu.dev[device].granularity)
		return tfd_fail(NULL, 0, -EOPNOTSUPP,
				"CUDA device %d cannot export memory as a file descriptor", device);
	b = gpu_alloc(device, flags & TFD_CUDA_EXTMEM ? TFD_BUFFER_CUDA_EXTMEM : TFD_BUFFER_CUDA);
	if (!b)
		return fail_nomem();
	b->cuda->owner = true;
	r = cuda_enter(device);
	if (r < 0) {
		buffer_free(b);
		return r;
	}
	r = vmm_new(b, size);
	if (r == 0)
		r = make_event(b->cuda);
	cuda_leave();
	if (r < 0) {
		buffer_free(b);
		return r;
	}
	b->size = size;
	b->writable = true;
	*ret = b;
	return 0;
}

TFD_EXPORT int tfd_cuda_buffer_wrap(uint64_t ptr, uint64_t *offset, struct tfd_buffer **ret)
{
	struct tfd_buffer *b;
	CUdeviceptr base;
	size_t size;
	CUresult cr;
	int r, dev = 0;

	if (!ptr || !offset || !ret)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_cuda_buffer_wrap");
	r = cuda_get(NULL, 0);
	if (r < 0)
		return r;
	r = cuda_enter(0);
	if (r < 0)
		return r;
	cr = cu.api.cuPointerGetAttribute(&dev, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr);
	cuda_leave();
	if (cr != CUDA_SUCCESS)
		return cu_fail(NULL, 0, cr, "the pointer is not CUDA device memory");
	if (dev < 0 || dev >= cu.ndev)
		return tfd_fail(NULL, 0, -ENODEV, "pointer on CUDA device %d, not visible", dev);
	b = gpu_alloc(dev, TFD_BUFFER_CUDA_IPC);
	if (!b)
		return fail_nomem();
	b->cuda->owner = true;
	r = cuda_enter(dev);
	if (r < 0)
		goto fail;
	cr = cu.api.cuMemGetAddressRange(&base, &size, ptr);
	if (cr == CUDA_SUCCESS)
		cr = cu.api.cuIpcGetMemHandle(&b->cuda->mem_handle, base);
	r = cr == CUDA_SUCCESS ? make_event(b->cuda)
			       : cu_fail(NULL, 0, cr, "cuIpcGetMemHandle (cudaMalloc memory only)");
	cuda_leave();
	if (r < 0)
		goto fail;
	b->cuda->base = base;
	b->cuda->alloc_size = size;
	b->size = size;
	b->writable = true;
	*offset = ptr - base;
	*ret = b;
	return 0;
fail:
	buffer_free(b);
	return r;
}

int cuda_wire(const struct tfd_buffer *b, uint32_t *kind, struct wire_cudabuf *w, char *errbuf,
	      size_t errlen)
{
	const struct cuda_buf *c = b->cuda;

	if (!c || !c->owner)
		return tfd_fail(errbuf, errlen, -EXDEV,
				"a received GPU buffer cannot be sent on: its memory is not ours to export");
	memset(w, 0, sizeof(*w));
	memcpy(w->uuid, cu.dev[c->dev].uuid.bytes, sizeof(w->uuid));
	w->alloc_size = c->alloc_size;
	if (c->event) {
		w->flags |= WIRE_CUDA_EVENT;
		memcpy(w->event_handle, &c->event_handle, sizeof(w->event_handle));
	}
	switch (b->kind) {
	case TFD_BUFFER_CUDA_IPC:
		*kind = WIRE_BUF_CUDA_IPC;
		memcpy(w->mem_handle, &c->mem_handle, sizeof(w->mem_handle));
		break;
	case TFD_BUFFER_CUDA_EXTMEM:
		*kind = WIRE_BUF_CUDA_EXTMEM;
		break;
	default:
		*kind = WIRE_BUF_CUDA_VMM;
		break;
	}
	return 0;
}

static int import_mem(struct cuda_buf *c, uint32_t kind, int *fd, const struct wire_cudabuf *w,
		      char *errbuf, size_t errlen)
{
	CUDA_EXTERNAL_MEMORY_HANDLE_DESC ed = { 0 };
	CUDA_EXTERNAL_MEMORY_BUFFER_DESC bd = { 0 };
	CUmemGenericAllocationHandle h;
	CUipcMemHandle ih;
	size_t real = 0;
	CUresult r;
	int e;

	switch (kind) {
	case WIRE_BUF_CUDA_VMM:
		r = cu.api.cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)*fd,
							  CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
		/* the import does not own the fd; the mapping will keep the memory */
		if (r == CUDA_SUCCESS)
			close(*fd);
		else
			peerfd_close(*fd);	/* not the driver's: whatever the peer sent */
		*fd = -1;
		if (r != CUDA_SUCCESS)
			return cu_fail(errbuf, errlen, r, "importing the peer's GPU buffer fd");
		e = map_handle(c, h, CU_MEM_ACCESS_FLAGS_PROT_READ, errbuf, errlen);
		cu.api.cuMemRelease(h);
		return e;
	case WIRE_BUF_CUDA_EXTMEM:
		ed.type = CU_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD;
		ed.handle.fd = *fd;
		ed.size = c->alloc_size;
		r = cu.api.cuImportExternalMemory(&c->ext, &ed);
		if (r != CUDA_SUCCESS)
			return cu_fail(errbuf, errlen, r, "cuImportExternalMemory of the peer's fd");
		*fd = -1;	/* the driver owns it now */
		bd.size = c->alloc_size;
		r = cu.api.cuExternalMemoryGetMappedBuffer(&c->base, c->ext, &bd);
		if (r != CUDA_SUCCESS)
			return cu_fail(errbuf, errlen, r, "cuExternalMemoryGetMappedBuffer");
		return 0;
	default:
		memcpy(&ih, w->mem_handle, sizeof(ih));
		r = cu.api.cuIpcOpenMemHandle(&c->base, ih, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
		if (r != CUDA_SUCCESS)
			return cu_fail(errbuf, errlen, r,
				       "cuIpcOpenMemHandle (the producer must share our PID namespace)");
		c->ipc_open = true;
		/* the handle says nothing of the size: ask, or tensors could reach past it */
		r = cu.api.cuMemGetAddressRange(NULL, &real, c->base);
		if (r != CUDA_SUCCESS)
			return cu_fail(errbuf, errlen, r, "cuMemGetAddressRange of an opened IPC handle");
		if (real < c->alloc_size)
			return tfd_fail(errbuf, errlen, -EBADMSG,
					"the peer claims an IPC allocation of %llu bytes that holds %zu",
					(unsigned long long)c->alloc_size, real);
		return 0;
	}
}

int cuda_import(int fd, const struct wire_newbuf *nb, const struct wire_cudabuf *w, char *errbuf,
		size_t errlen, struct tfd_buffer **ret)
{
	struct tfd_buffer *b = NULL;
	struct cuda_buf *c;
	char id[48];
	CUresult cr;
	int r, dev;

	r = cuda_get(errbuf, errlen);
	if (r < 0)
		goto out;
	dev = device_of_uuid(w->uuid);
	if (dev < 0) {
		uuid_str(w->uuid, id, sizeof(id));
		r = tfd_fail(errbuf, errlen, -ENODEV,
			     "the peer's GPU buffer lives on %s, which this process cannot see "
			     "(CUDA_VISIBLE_DEVICES, or another machine's container?)", id);
		goto out;
	}
	if (nb->kind == WIRE_BUF_CUDA_VMM &&
	    (!cu.dev[dev].granularity || w->alloc_size % cu.dev[dev].granularity)) {
		r = tfd_fail(errbuf, errlen, -EBADMSG,
			     "GPU buffer of %llu bytes is not a multiple of the granularity %zu",
			     (unsigned long long)w->alloc_size, cu.dev[dev].granularity);
		goto out;
	}
	b = gpu_alloc(dev, nb->kind == WIRE_BUF_CUDA_IPC	  ? TFD_BUFFER_CUDA_IPC
			   : nb->kind == WIRE_BUF_CUDA_EXTMEM ? TFD_BUFFER_CUDA_EXTMEM
							      : TFD_BUFFER_CUDA);
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	c = b->cuda;
	c->alloc_size = w->alloc_size;
	r = cuda_enter(dev);
	if (r < 0)
		goto out;
	r = import_mem(c, nb->kind, &fd, w, errbuf, errlen);
	if (r == 0 && (w->flags & WIRE_CUDA_EVENT)) {
		memcpy(&c->event_handle, w->event_handle, sizeof(c->event_handle));
		cr = cu.api.cuIpcOpenEventHandle(&c->event, c->event_handle);
		if (cr != CUDA_SUCCESS)
			r = cu_fail(errbuf, errlen, cr, "cuIpcOpenEventHandle");
	}
	cuda_leave();
	if (r < 0)
		goto out;
	b->size = nb->size;
	*ret = b;
	b = NULL;
out:
	/* refused: the fd is whatever the peer sent, and must not block us */
	if (fd >= 0 && r < 0)
		peerfd_close(fd);
	else if (fd >= 0)
		close(fd);
	if (b)
		buffer_free(b);
	return r;
}

int cuda_buffer_ordinal(const struct tfd_buffer *b)
{
	return b->cuda ? b->cuda->dev : -EINVAL;
}

TFD_EXPORT int tfd_cuda_probe(void)
{
	int r = cuda_get(NULL, 0);

	return r < 0 ? r : cu.ndev;
}

TFD_EXPORT uint64_t tfd_cuda_buffer_ptr(const struct tfd_buffer *buf)
{
	return buf && buffer_is_gpu(buf) && buf->cuda ? (uint64_t)buf->cuda->base : 0;
}

TFD_EXPORT int tfd_cuda_buffer_device(const struct tfd_buffer *buf, uint8_t uuid[16])
{
	if (!buf || !buffer_is_gpu(buf) || !buf->cuda)
		return tfd_fail(NULL, 0, -EINVAL, "not a GPU buffer");
	if (uuid)
		memcpy(uuid, cu.dev[buf->cuda->dev].uuid.bytes, 16);
	return buf->cuda->dev;
}

/* Record (producer) or wait for (consumer) the event of each GPU buffer of msg. */
static int each_event(const struct tfd_message *msg, CUstream stream, bool record)
{
	struct tfd_buffer *done[TFD_MAX_TENSORS];
	unsigned int i, j, n = 0;
	CUresult cr;
	int r;

	r = cuda_get(NULL, 0);
	if (r < 0)
		return r;
	for (i = 0; i < msg->n; i++) {
		struct tfd_buffer *b = msg->t[i].buf;

		if (!buffer_is_gpu(b) || !b->cuda->event)
			continue;
		for (j = 0; j < n && done[j] != b; j++)
			;
		if (j < n)
			continue;
		done[n++] = b;
		r = cuda_enter(b->cuda->dev);
		if (r < 0)
			return r;
		cr = record ? cu.api.cuEventRecord(b->cuda->event, stream)
			    : cu.api.cuStreamWaitEvent(stream, b->cuda->event, 0);
		cuda_leave();
		if (cr != CUDA_SUCCESS)
			return cu_fail(NULL, 0, cr, record ? "cuEventRecord" : "cuStreamWaitEvent");
	}
	return (int)n;
}

TFD_EXPORT int tfd_message_cuda_record(struct tfd_message *msg, void *stream)
{
	if (!msg || msg->received)
		return tfd_fail(NULL, 0, -EINVAL, "tfd_message_cuda_record needs a message of ours");
	return each_event(msg, (CUstream)stream, true);
}

TFD_EXPORT int tfd_message_cuda_wait(const struct tfd_message *msg, void *stream)
{
	if (!msg)
		return fail_args();
	return each_event(msg, (CUstream)stream, false);
}

TFD_EXPORT int tfd_cuda_host_register(struct tfd_buffer *buf)
{
	unsigned int flags = CU_MEMHOSTREGISTER_PORTABLE;
	long page = sysconf(_SC_PAGESIZE);
	CUresult cr;
	int r;

	if (!buf || buffer_is_gpu(buf) || buf->map == MAP_FAILED)
		return tfd_fail(NULL, 0, -EINVAL, "only a CPU buffer can be host-registered");
	if (buf->cuda && buf->cuda->host_registered)
		return 0;
	r = cuda_get(NULL, 0);
	if (r < 0)
		return r;
	if (!buf->writable) {
		/* our mapping of a received buffer is PROT_READ */
		if (!cu.dev[0].host_read_only)
			return tfd_fail(NULL, 0, -EOPNOTSUPP,
					"the device cannot register read-only host memory "
					"(CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED)");
		flags |= CU_MEMHOSTREGISTER_READ_ONLY;
	}
	if (!buf->cuda) {
		buf->cuda = calloc(1, sizeof(*buf->cuda));
		if (!buf->cuda)
			return fail_nomem();
		buf->cuda->dev = -1;
	}
	r = cuda_enter(0);
	if (r < 0)
		return r;
	cr = cu.api.cuMemHostRegister(buf->map,
				      (buf->size + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page,
				      flags);
	cuda_leave();
	if (cr != CUDA_SUCCESS)
		return cu_fail(NULL, 0, cr, "cuMemHostRegister");
	buf->cuda->host_registered = true;
	return 0;
}

#else /* !HAVE_CUDA */

#define NO_CUDA "tensorfd was built without CUDA (configure --with-cuda=DIR)"

int cuda_import(int fd, const struct wire_newbuf *nb, const struct wire_cudabuf *c, char *errbuf,
		size_t errlen, struct tfd_buffer **ret)
{
	if (fd >= 0)
		peerfd_close(fd);
	return tfd_fail(errbuf, errlen, -EOPNOTSUPP, "the peer sent a GPU buffer: " NO_CUDA);
}

int cuda_wire(const struct tfd_buffer *b, uint32_t *kind, struct wire_cudabuf *c, char *errbuf,
	      size_t errlen)
{
	return tfd_fail(errbuf, errlen, -EOPNOTSUPP, NO_CUDA);
}

int cuda_buffer_ordinal(const struct tfd_buffer *b)
{
	return -EOPNOTSUPP;
}

void cuda_buffer_free(struct tfd_buffer *b)
{
}

TFD_EXPORT int tfd_cuda_probe(void)
{
	return tfd_fail(NULL, 0, -EOPNOTSUPP, NO_CUDA);
}

TFD_EXPORT int tfd_cuda_buffer_new(int device, uint64_t size, unsigned int flags,
				   struct tfd_buffer **ret)
{
	return tfd_fail(NULL, 0, -EOPNOTSUPP, NO_CUDA);
}

TFD_EXPORT int tfd_cuda_buffer_wrap(uint64_t ptr, uint64_t *offset, struct tfd_buffer **ret)
{
	return tfd_fail(NULL, 0, -EOPNOTSUPP, NO_CUDA);
}

TFD_EXPORT uint64_t tfd_cuda_buffer_ptr(const struct tfd_buffer *buf)
{
	return 0;
}

TFD_EXPORT int tfd_cuda_buffer_device(const struct tfd_buffer *buf, uint8_t uuid[16])
{
	return tfd_fail(NULL, 0, -EOPNOTSUPP, NO_CUDA);
}

TFD_EXPORT int tfd_message_cuda_record(struct tfd_message *msg, void *stream)
{
	return tfd_fail(NULL, 0, -EOPNOTSUPP, NO_CUDA);
}

TFD_EXPORT int tfd_message_cuda_wait(const struct tfd_message *msg, void *stream)
{
	return tfd_fail(NULL, 0, -EOPNOTSUPP, NO_CUDA);
}

TFD_EXPORT int tfd_cuda_host_register(struct tfd_buffer *buf)
{
	return tfd_fail(NULL, 0, -EOPNOTSUPP, NO_CUDA);
}
#endif

TFD_EXPORT uint64_t tfd_message_cuda_ptr(const struct tfd_message *msg, unsigned int index)
{
	if (!msg || index >= msg->n || !tfd_cuda_buffer_ptr(msg->t[index].buf))
		return 0;
	return tfd_cuda_buffer_ptr(msg->t[index].buf) + msg->t[index].layout.byte_offset;
}
