/* SPDX-License-Identifier: MIT */
/*
 * TEST-ONLY FAKE CUDA DRIVER. Not a GPU, never GPU coverage.
 *
 * A shared object that tests select with TENSORFD_LIBCUDA in place of
 * libcuda.so.1. It answers cuGetProcAddress_v2 for the entry points the
 * library uses, at the ABI versions the library asks for (anything else is
 * counted as a mismatch and refused), and implements them on the CPU:
 * "device memory" is a memfd mapped into the process, so a device pointer
 * is a host address; a VMM allocation's shareable handle is a dup of that
 * memfd, so it crosses sockets with SCM_RIGHTS exactly like the real fd;
 * a legacy IPC handle names the memfd by /proc/<pid>/fd/<n>, so, like the
 * real one, it needs the exporter alive and in our PID namespace; events
 * and streams only count. What this proves is the library's side: fd
 * passing, descriptor validation, the import cache, release and leaks.
 *
 * Environment: TENSORFD_FAKE_CUDA_DEVICES (default 1),
 * TENSORFD_FAKE_CUDA_UUID_SALT (a byte that makes this process's device
 * UUIDs differ, as on another machine), TENSORFD_FAKE_CUDA_MISSING (an
 * entry point to pretend the driver lacks).
 */
#include <cuda.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake-libcuda.h"

#define EXPORT __attribute__((visibility("default")))
#define GRANULARITY (2u << 20)
#define MAX_RANGES 4096

EXPORT struct tfd_fake_cuda_counters tfd_fake_cuda_counters;
#define C tfd_fake_cuda_counters

struct range {
	char *base;
	size_t size;
	int fd;		/* memfd behind it, or -1 */
	int what;	/* R_* */
};

enum { R_FREE, R_ALLOC, R_IPC, R_EXT, R_HOSTREG, R_MAP };

static struct range ranges[MAX_RANGES];
static int ndev = 1;

static struct range *range_new(void *base, size_t size, int fd, int what)
{
	int i;

	for (i = 0; i < MAX_RANGES; i++)
		if (ranges[i].what == R_FREE) {
			ranges[i] = (struct range){ base, size, fd, what };
			return &ranges[i];
		}
	return NULL;
}

static struct range *range_find(const void *p, int what, int exact)
{
	int i;

	for (i = 0; i < MAX_RANGES; i++)
		if (ranges[i].what == what && (const char *)p >= ranges[i].base &&
		    (const char *)p < ranges[i].base + ranges[i].size &&
		    (!exact || (const char *)p == ranges[i].base))
			return &ranges[i];
	return NULL;
}

struct alloc {
	int fd;
	size_t size;
};

struct ipc_mem {
	char magic[8];
	int pid;
	int fd;
	unsigned long long size;
};

struct ipc_event {
	char magic[8];
	int pid;
	unsigned long long id;
};

struct event {
	unsigned long long id;
};

static int mkmemfd(size_t size)
{
	int fd = memfd_create("fake-cuda", MFD_CLOEXEC);

	if (fd >= 0 && ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static CUresult f_cuInit(unsigned int flags)
{
	const char *n = getenv("TENSORFD_FAKE_CUDA_DEVICES");

	if (n)
		ndev = atoi(n);
	C.inits++;
	return ndev > 0 ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}

static CUresult f_cuDriverGetVersion(int *v)
{
	*v = 13000;
	return CUDA_SUCCESS;
}

static CUresult f_cuDeviceGetCount(int *n)
{
	*n = ndev;
	return CUDA_SUCCESS;
}

static CUresult f_cuDeviceGet(CUdevice *d, int ordinal)
{
	if (ordinal < 0 || ordinal >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	*d = ordinal;
	return CUDA_SUCCESS;
}

static CUresult f_cuDeviceGetUuid(CUuuid *u, CUdevice d)
{
	const char *salt = getenv("TENSORFD_FAKE_CUDA_UUID_SALT");

	memcpy(u->bytes, "tfd-fake-cuda-\0\0", 16);
	u->bytes[14] = (char)(salt && *salt ? *salt : 'x');
	u->bytes[15] = (char)d;
	return CUDA_SUCCESS;
}

static CUresult f_cuDeviceGetName(char *name, int len, CUdevice d)
{
	snprintf(name, (size_t)len, "%s", TFD_FAKE_CUDA_DEVICE_NAME);
	return CUDA_SUCCESS;
}

static CUresult f_cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
	switch (a) {
	case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED:
		*v = 1;
		break;
	default:
		*v = 0;
	}
	return CUDA_SUCCESS;
}

static CUresult f_cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d)
{
	*c = (CUcontext)(uintptr_t)(0x1000 + d);
	return CUDA_SUCCESS;
}

static CUresult f_cuDevicePrimaryCtxRelease(CUdevice d)
{
	return CUDA_SUCCESS;
}

static CUresult f_cuCtxPushCurrent(CUcontext c)
{
	C.ctx_depth++;
	return CUDA_SUCCESS;
}

static CUresult f_cuCtxPopCurrent(CUcontext *c)
{
	C.ctx_depth--;
	return CUDA_SUCCESS;
}

static CUresult f_cuGetErrorString(CUresult r, const char **s)
{
	*s = r == CUDA_ERROR_INVALID_VALUE ? "invalid argument (fake driver)"
					   : "error (fake driver)";
	return CUDA_SUCCESS;
}

static CUresult f_cuPointerGetAttribute(void *data, CUpointer_attribute a, CUdeviceptr p)
{
	if (a != CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL || !range_find((void *)p, R_ALLOC, 0))
		return CUDA_ERROR_INVALID_VALUE;
	*(int *)data = 0;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *p,
						CUmemAllocationGranularity_flags o)
{
	*g = GRANULARITY;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemCreate(CUmemGenericAllocationHandle *h, size_t size,
			      const CUmemAllocationProp *p, unsigned long long flags)
{
	struct alloc *a;

	if (!size || size % GRANULARITY ||
	    p->requestedHandleTypes != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return CUDA_ERROR_INVALID_VALUE;
	a = malloc(sizeof(*a));
	if (!a)
		return CUDA_ERROR_OUT_OF_MEMORY;
	a->size = size;
	a->fd = mkmemfd(size);
	if (a->fd < 0) {
		free(a);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	C.handles++;
	*h = (CUmemGenericAllocationHandle)(uintptr_t)a;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemRelease(CUmemGenericAllocationHandle h)
{
	struct alloc *a = (struct alloc *)(uintptr_t)h;

	close(a->fd);
	free(a);
	C.handles--;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemExportToShareableHandle(void *sh, CUmemGenericAllocationHandle h,
					       CUmemAllocationHandleType t,
					       unsigned long long flags)
{
	struct alloc *a = (struct alloc *)(uintptr_t)h;
	int fd;

	if (t != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return CUDA_ERROR_INVALID_VALUE;
	/* like the real driver, without O_CLOEXEC: the library must set it */
	fd = dup(a->fd);
	if (fd < 0)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*(int *)sh = fd;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *h, void *os,
						 CUmemAllocationHandleType t)
{
	int fd = (int)(uintptr_t)os;
	struct alloc *a;
	struct stat st;

	if (t != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR || fstat(fd, &st) < 0 ||
	    !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size % GRANULARITY)
		return CUDA_ERROR_INVALID_VALUE;
	a = malloc(sizeof(*a));
	if (!a)
		return CUDA_ERROR_OUT_OF_MEMORY;
	a->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);	/* the caller keeps its fd */
	a->size = (size_t)st.st_size;
	C.handles++;
	C.imports++;
	*h = (CUmemGenericAllocationHandle)(uintptr_t)a;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemAddressReserve(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr,
				      unsigned long long flags)
{
	void *m = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (m == MAP_FAILED)
		return CUDA_ERROR_OUT_OF_MEMORY;
	C.reserved++;
	*p = (CUdeviceptr)(uintptr_t)m;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemAddressFree(CUdeviceptr p, size_t size)
{
	munmap((void *)(uintptr_t)p, size);
	C.reserved--;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemMap(CUdeviceptr p, size_t size, size_t offset,
			   CUmemGenericAllocationHandle h, unsigned long long flags)
{
	struct alloc *a = (struct alloc *)(uintptr_t)h;

	if (offset || size > a->size)
		return CUDA_ERROR_INVALID_VALUE;
	if (mmap((void *)(uintptr_t)p, size, PROT_NONE, MAP_SHARED | MAP_FIXED, a->fd, 0) ==
	    MAP_FAILED)
		return CUDA_ERROR_OUT_OF_MEMORY;
	range_new((void *)(uintptr_t)p, size, -1, R_MAP);
	C.mapped++;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemUnmap(CUdeviceptr p, size_t size)
{
	struct range *r = range_find((void *)(uintptr_t)p, R_MAP, 1);

	if (!r)
		return CUDA_ERROR_INVALID_VALUE;
	mmap((void *)(uintptr_t)p, size, PROT_NONE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
	r->what = R_FREE;
	C.mapped--;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemSetAccess(CUdeviceptr p, size_t size, const CUmemAccessDesc *d, size_t n)
{
	int prot = d->flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ? PROT_READ | PROT_WRITE
								   : PROT_READ;

	if (n != 1 || !range_find((void *)(uintptr_t)p, R_MAP, 1))
		return CUDA_ERROR_INVALID_VALUE;
	return mprotect((void *)(uintptr_t)p, size, prot) ? CUDA_ERROR_INVALID_VALUE
							   : CUDA_SUCCESS;
}

static CUresult f_cuMemAlloc(CUdeviceptr *p, size_t size)
{
	int fd = mkmemfd(size);
	void *m;

	if (fd < 0)
		return CUDA_ERROR_OUT_OF_MEMORY;
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || !range_new(m, size, fd, R_ALLOC)) {
		close(fd);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	C.device_allocs++;
	*p = (CUdeviceptr)(uintptr_t)m;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemFree(CUdeviceptr p)
{
	struct range *r = range_find((void *)(uintptr_t)p, R_ALLOC, 1);

	if (!r)
		r = range_find((void *)(uintptr_t)p, R_EXT, 1);
	if (!r)
		return CUDA_ERROR_INVALID_VALUE;
	munmap(r->base, r->size);
	if (r->what == R_ALLOC) {
		close(r->fd);
		C.device_allocs--;
	}
	r->what = R_FREE;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemGetAddressRange(CUdeviceptr *base, size_t *size, CUdeviceptr p)
{
	struct range *r = range_find((void *)(uintptr_t)p, R_ALLOC, 0);

	if (!r)
		r = range_find((void *)(uintptr_t)p, R_MAP, 0);
	if (!r)
		r = range_find((void *)(uintptr_t)p, R_IPC, 0);
	if (!r)
		return CUDA_ERROR_NOT_FOUND;
	if (base)
		*base = (CUdeviceptr)(uintptr_t)r->base;
	if (size)
		*size = r->size;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemGetInfo(size_t *free_b, size_t *total)
{
	*free_b = 1u << 30;
	*total = 2u << 30;
	return CUDA_SUCCESS;
}

static CUresult f_cuIpcGetMemHandle(CUipcMemHandle *h, CUdeviceptr p)
{
	struct range *r = range_find((void *)(uintptr_t)p, R_ALLOC, 1);
	struct ipc_mem m = { "TFDFAKEM", getpid(), 0, 0 };

	if (!r)
		return CUDA_ERROR_INVALID_VALUE;	/* not the base of a cuMemAlloc */
	m.fd = r->fd;
	m.size = r->size;
	memset(h, 0, sizeof(*h));
	memcpy(h->reserved, &m, sizeof(m));
	return CUDA_SUCCESS;
}

static CUresult f_cuIpcOpenMemHandle(CUdeviceptr *p, CUipcMemHandle h, unsigned int flags)
{
	struct ipc_mem m;
	char path[64];
	void *addr;
	int fd;

	memcpy(&m, h.reserved, sizeof(m));
	if (memcmp(m.magic, "TFDFAKEM", 8) || !m.size)
		return CUDA_ERROR_INVALID_VALUE;
	if (m.pid == getpid())
		return CUDA_ERROR_INVALID_CONTEXT;	/* as the real driver: not in the exporter */
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", m.pid, m.fd);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return CUDA_ERROR_INVALID_VALUE;
	addr = mmap(NULL, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (addr == MAP_FAILED || !range_new(addr, m.size, -1, R_IPC))
		return CUDA_ERROR_OUT_OF_MEMORY;
	C.ipc_opens++;
	C.ipc_open++;
	*p = (CUdeviceptr)(uintptr_t)addr;
	return CUDA_SUCCESS;
}

static CUresult f_cuIpcCloseMemHandle(CUdeviceptr p)
{
	struct range *r = range_find((void *)(uintptr_t)p, R_IPC, 1);

	if (!r)
		return CUDA_ERROR_INVALID_VALUE;
	munmap(r->base, r->size);
	r->what = R_FREE;
	C.ipc_open--;
	return CUDA_SUCCESS;
}

static unsigned long long next_event = 1;

static CUresult f_cuEventCreate(CUevent *e, unsigned int flags)
{
	struct event *ev = malloc(sizeof(*ev));

	if (!ev)
		return CUDA_ERROR_OUT_OF_MEMORY;
	ev->id = next_event++;
	C.events++;
	*e = (CUevent)ev;
	return CUDA_SUCCESS;
}

static CUresult f_cuEventDestroy(CUevent e)
{
	free(e);
	C.events--;
	return CUDA_SUCCESS;
}

static CUresult f_cuEventRecord(CUevent e, CUstream s)
{
	C.records++;
	return CUDA_SUCCESS;
}

static CUresult f_cuEventSynchronize(CUevent e)
{
	return CUDA_SUCCESS;
}

static CUresult f_cuIpcGetEventHandle(CUipcEventHandle *h, CUevent e)
{
	struct ipc_event m;

	memset(&m, 0, sizeof(m));	/* no uninitialised padding in the handle */
	memcpy(m.magic, "TFDFAKEV", 8);
	m.pid = getpid();
	m.id = ((struct event *)e)->id;
	memset(h, 0, sizeof(*h));
	memcpy(h->reserved, &m, sizeof(m));
	return CUDA_SUCCESS;
}

static CUresult f_cuIpcOpenEventHandle(CUevent *e, CUipcEventHandle h)
{
	struct ipc_event m;

	memcpy(&m, h.reserved, sizeof(m));
	if (memcmp(m.magic, "TFDFAKEV", 8) || !m.id)
		return CUDA_ERROR_INVALID_VALUE;
	C.event_opens++;
	return f_cuEventCreate(e, 0);
}

static CUresult f_cuStreamWaitEvent(CUstream s, CUevent e, unsigned int flags)
{
	C.waits++;
	return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

static CUresult f_cuImportExternalMemory(CUexternalMemory *m,
					 const CUDA_EXTERNAL_MEMORY_HANDLE_DESC *d)
{
	struct alloc *a;
	struct stat st;

	if (d->type != CU_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD || fstat(d->handle.fd, &st) < 0 ||
	    (unsigned long long)st.st_size < d->size)
		return CUDA_ERROR_INVALID_VALUE;
	a = malloc(sizeof(*a));
	if (!a)
		return CUDA_ERROR_OUT_OF_MEMORY;
	a->fd = d->handle.fd;	/* ownership passes to the driver on success */
	a->size = d->size;
	C.extmem++;
	C.extmem_imports++;
	*m = (CUexternalMemory)a;
	return CUDA_SUCCESS;
}

static CUresult f_cuExternalMemoryGetMappedBuffer(CUdeviceptr *p, CUexternalMemory m,
						  const CUDA_EXTERNAL_MEMORY_BUFFER_DESC *d)
{
	struct alloc *a = (struct alloc *)m;
	void *addr;

	if (d->offset + d->size > a->size || d->flags)
		return CUDA_ERROR_INVALID_VALUE;
	addr = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, (off_t)d->offset);
	if (addr == MAP_FAILED || !range_new(addr, d->size, -1, R_EXT))
		return CUDA_ERROR_OUT_OF_MEMORY;
	*p = (CUdeviceptr)(uintptr_t)addr;
	return CUDA_SUCCESS;
}

static CUresult f_cuDestroyExternalMemory(CUexternalMemory m)
{
	struct alloc *a = (struct alloc *)m;

	close(a->fd);
	free(a);
	C.extmem--;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemHostRegister(void *p, size_t size, unsigned int flags)
{
	int i;

	for (i = 0; i < MAX_RANGES; i++)
		if (ranges[i].what == R_HOSTREG && (char *)p < ranges[i].base + ranges[i].size &&
		    (char *)p + size > ranges[i].base)
			return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	if (!range_new(p, size, -1, R_HOSTREG))
		return CUDA_ERROR_OUT_OF_MEMORY;
	C.host_regs++;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemHostUnregister(void *p)
{
	struct range *r = range_find(p, R_HOSTREG, 1);

	if (!r)
		return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
	r->what = R_FREE;
	C.host_regs--;
	return CUDA_SUCCESS;
}

static CUresult f_cuMemsetD8(CUdeviceptr p, unsigned char v, size_t n)
{
	memset((void *)(uintptr_t)p, v, n);
	return CUDA_SUCCESS;
}

static CUresult f_cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, CUstream s)
{
	return f_cuMemsetD8(p, v, n);
}

static CUresult f_cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t n)
{
	memcpy(dst, (void *)(uintptr_t)src, n);
	return CUDA_SUCCESS;
}

static CUresult f_cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t n)
{
	memcpy((void *)(uintptr_t)dst, src, n);
	return CUDA_SUCCESS;
}

static CUresult f_cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	return f_cuMemcpyDtoH(dst, src, n);
}

static CUresult f_cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	return f_cuMemcpyHtoD(dst, src, n);
}

static CUresult f_cuStreamCreate(CUstream *s, unsigned int flags)
{
	*s = malloc(1);
	return *s ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

static CUresult f_cuStreamDestroy(CUstream s)
{
	free(s);
	return CUDA_SUCCESS;
}

static CUresult f_cuStreamSynchronize(CUstream s)
{
	return CUDA_SUCCESS;
}

/* The ABI versions the library must ask for: those of its typedefs. */
static const struct {
	const char *name;
	int version;
	void *fn;
} table[] = {
#define E(n, v) { #n, v, (void *)f_##n }
	E(cuInit, 2000), E(cuDriverGetVersion, 2020), E(cuDeviceGetCount, 2000),
	E(cuDeviceGet, 2000), E(cuDeviceGetUuid, 11040), E(cuDeviceGetName, 2000),
	E(cuDeviceGetAttribute, 2000), E(cuDevicePrimaryCtxRetain, 7000),
	E(cuDevicePrimaryCtxRelease, 11000), E(cuCtxPushCurrent, 4000), E(cuCtxPopCurrent, 4000),
	E(cuGetErrorString, 6000), E(cuPointerGetAttribute, 4000),
	E(cuMemGetAllocationGranularity, 10020), E(cuMemCreate, 10020), E(cuMemRelease, 10020),
	E(cuMemExportToShareableHandle, 10020), E(cuMemImportFromShareableHandle, 10020),
	E(cuMemAddressReserve, 10020), E(cuMemAddressFree, 10020), E(cuMemMap, 10020),
	E(cuMemUnmap, 10020), E(cuMemSetAccess, 10020), E(cuMemGetAddressRange, 3020),
	E(cuIpcGetMemHandle, 4010), E(cuIpcOpenMemHandle, 11000), E(cuIpcCloseMemHandle, 4010),
	E(cuEventCreate, 2000), E(cuEventDestroy, 4000), E(cuEventRecord, 2000),
	E(cuEventSynchronize, 2000), E(cuIpcGetEventHandle, 4010),
	E(cuIpcOpenEventHandle, 4010), E(cuStreamWaitEvent, 3020),
	E(cuImportExternalMemory, 10000), E(cuExternalMemoryGetMappedBuffer, 10000),
	E(cuDestroyExternalMemory, 10000), E(cuMemFree, 3020), E(cuMemHostRegister, 6050),
	E(cuMemHostUnregister, 4000), E(cuMemAlloc, 3020), E(cuMemGetInfo, 3020),
	E(cuMemsetD8, 3020), E(cuMemsetD8Async, 3020), E(cuMemcpyDtoH, 3020),
	E(cuMemcpyHtoD, 3020), E(cuMemcpyDtoHAsync, 3020), E(cuMemcpyHtoDAsync, 3020),
	E(cuStreamCreate, 2000), E(cuStreamDestroy, 4000), E(cuStreamSynchronize, 2000),
#undef E
};

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
				    cuuint64_t flags, CUdriverProcAddressQueryResult *found);

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
				    cuuint64_t flags, CUdriverProcAddressQueryResult *found)
{
	const char *missing = getenv("TENSORFD_FAKE_CUDA_MISSING");
	size_t i;

	*pfn = NULL;
	if (found)
		*found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	if (missing && strcmp(missing, symbol) == 0)
		return CUDA_ERROR_NOT_FOUND;
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (strcmp(table[i].name, symbol))
			continue;
		if (table[i].version != version) {
			C.version_mismatch++;
			if (found)
				*found = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
			return CUDA_ERROR_NOT_FOUND;
		}
		*pfn = table[i].fn;
		if (found)
			*found = CU_GET_PROC_ADDRESS_SUCCESS;
		return CUDA_SUCCESS;
	}
	return CUDA_ERROR_NOT_FOUND;
}
