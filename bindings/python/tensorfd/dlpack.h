/* SPDX-License-Identifier: MIT */
/*
 * The DLPack ABI (version 0.x, the one torch 1.13 and numpy 1.24 speak),
 * written out from the published specification: a DLManagedTensor travels
 * in a PyCapsule named "dltensor"; the consumer renames the capsule
 * "used_dltensor" and calls the deleter when it is done with the memory.
 */
#ifndef TFD_PY_DLPACK_H
#define TFD_PY_DLPACK_H

#include <stdint.h>

typedef struct {
	int32_t device_type;	/* 1: CPU, 2: CUDA, ... (enum tfd_device_type) */
	int32_t device_id;
} DLDevice;

typedef struct {
	uint8_t code;		/* enum tfd_dtype_code */
	uint8_t bits;
	uint16_t lanes;
} DLDataType;

typedef struct {
	void *data;
	DLDevice device;
	int32_t ndim;
	DLDataType dtype;
	int64_t *shape;
	int64_t *strides;	/* in elements; NULL: row-major contiguous */
	uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
	DLTensor dl_tensor;
	void *manager_ctx;
	void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

#endif
