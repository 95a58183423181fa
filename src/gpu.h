/* SPDX-License-Identifier: MIT */
/*
 * Internal interface of src/cuda.c: what the channel, message and buffer
 * code need of GPU buffers, and, for the tests, the loaded driver table.
 * (Named gpu.h, not cuda.h, so it never shadows the toolkit's <cuda.h>.)
 */
#ifndef TFD_GPU_H
#define TFD_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "wire.h"

static inline bool buffer_is_gpu(const struct tfd_buffer *b)
{
	return b->kind >= TFD_BUFFER_CUDA && b->kind <= TFD_BUFFER_CUDA_EXTMEM;
}

/*
 * Receiver: import a GPU buffer the peer announced, fd being its fd or -1
 * (CUDA_IPC). Takes ownership of fd, even on failure.
 */
int cuda_import(int fd, const struct wire_newbuf *nb, const struct wire_cudabuf *c, char *errbuf,
		size_t errlen, struct tfd_buffer **ret);
/* Sender: the wire kind and record of a GPU buffer this process owns. */
int cuda_wire(const struct tfd_buffer *b, uint32_t *kind, struct wire_cudabuf *c, char *errbuf,
	      size_t errlen);
/* The local device ordinal of a GPU buffer. */
int cuda_buffer_ordinal(const struct tfd_buffer *b);
/* Called by buffer_free(): GPU memory, events, host registration. */
void cuda_buffer_free(struct tfd_buffer *b);

#ifdef HAVE_CUDA
#include <cuda.h>
#include <cudaTypedefs.h>

/*
 * Every driver entry point the library and its tests use, with the ABI
 * version of the typedef it was compiled against: cuGetProcAddress_v2 is
 * asked for exactly that version, never for "the newest".
 */
#define CUDA_FNS(X) \
	X(cuInit, 2000) \
	X(cuDriverGetVersion, 2020) \
	X(cuDeviceGetCount, 2000) \
	X(cuDeviceGet, 2000) \
	X(cuDeviceGetUuid, 11040) \
	X(cuDeviceGetName, 2000) \
	X(cuDeviceGetAttribute, 2000) \
	X(cuDevicePrimaryCtxRetain, 7000) \
	X(cuDevicePrimaryCtxRelease, 11000) \
	X(cuCtxPushCurrent, 4000) \
	X(cuCtxPopCurrent, 4000) \
	X(cuGetErrorString, 6000) \
	X(cuPointerGetAttribute, 4000) \
	X(cuMemGetAllocationGranularity, 10020) \
	X(cuMemCreate, 10020) \
	X(cuMemRelease, 10020) \
	X(cuMemExportToShareableHandle, 10020) \
	X(cuMemImportFromShareableHandle, 10020) \
	X(cuMemAddressReserve, 10020) \
	X(cuMemAddressFree, 10020) \
	X(cuMemMap, 10020) \
	X(cuMemUnmap, 10020) \
	X(cuMemSetAccess, 10020) \
	X(cuMemGetAddressRange, 3020) \
	X(cuIpcGetMemHandle, 4010) \
	X(cuIpcOpenMemHandle, 11000) \
	X(cuIpcCloseMemHandle, 4010) \
	X(cuEventCreate, 2000) \
	X(cuEventDestroy, 4000) \
	X(cuEventRecord, 2000) \
	X(cuEventSynchronize, 2000) \
	X(cuIpcGetEventHandle, 4010) \
	X(cuIpcOpenEventHandle, 4010) \
	X(cuStreamWaitEvent, 3020) \
	X(cuImportExternalMemory, 10000) \
	X(cuExternalMemoryGetMappedBuffer, 10000) \
	X(cuDestroyExternalMemory, 10000) \
	X(cuMemFree, 3020) \
	X(cuMemHostRegister, 6050) \
	X(cuMemHostUnregister, 4000) \
	X(cuMemAlloc, 3020) \
	X(cuMemGetInfo, 3020) \
	X(cuMemsetD8, 3020) \
	X(cuMemsetD8Async, 3020) \
	X(cuMemcpyDtoH, 3020) \
	X(cuMemcpyHtoD, 3020) \
	X(cuMemcpyDtoHAsync, 3020) \
	X(cuMemcpyHtoDAsync, 3020) \
	X(cuStreamCreate, 2000) \
	X(cuStreamDestroy, 4000) \
	X(cuStreamSynchronize, 2000)

struct cuda_api {
#define CUDA_FIELD(name, ver) PFN_##name##_v##ver name;
	CUDA_FNS(CUDA_FIELD)
#undef CUDA_FIELD
};

/* The loaded driver, or NULL with the reason in tfd_last_error(). */
const struct cuda_api *cuda_api(void);
/* Make device dev's primary context current (pushed); cuda_leave() pops it. */
int cuda_enter(int dev);
void cuda_leave(void);
#endif

#endif
