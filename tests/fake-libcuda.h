/* SPDX-License-Identifier: MIT */
/*
 * TEST-ONLY FAKE CUDA DRIVER (tests/fake-libcuda.c): what it counts, for
 * tests that look it up with dlsym(RTLD_NOLOAD). Nothing here is a GPU.
 */
#ifndef TFD_FAKE_LIBCUDA_H
#define TFD_FAKE_LIBCUDA_H

struct tfd_fake_cuda_counters {
	long inits;
	long handles;		/* cuMemCreate / import handles alive */
	long reserved;		/* address ranges reserved */
	long mapped;		/* cuMemMap mappings alive */
	long imports;		/* cuMemImportFromShareableHandle calls */
	long device_allocs;	/* cuMemAlloc allocations alive */
	long ipc_opens;		/* cuIpcOpenMemHandle calls */
	long ipc_open;		/* IPC mappings alive */
	long events;		/* events alive (created or opened) */
	long event_opens;	/* cuIpcOpenEventHandle calls */
	long records;		/* cuEventRecord calls */
	long waits;		/* cuStreamWaitEvent calls */
	long extmem;		/* external memory objects alive */
	long extmem_imports;
	long host_regs;		/* host registrations alive */
	long ctx_depth;		/* pushes minus pops */
	long version_mismatch;	/* cuGetProcAddress asked for an unexpected ABI version */
};

#define TFD_FAKE_CUDA_COUNTERS "tfd_fake_cuda_counters"
#define TFD_FAKE_CUDA_DEVICE_NAME "tensorfd FAKE CUDA driver (test only, not a GPU)"

#endif
