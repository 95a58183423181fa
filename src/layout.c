/* SPDX-License-Identifier: MIT */
/*
 * Tensor layouts: DLPack dtypes, shapes and element strides, and the one
 * place that decides which bytes of a buffer a layout touches. Every
 * product and sum is overflow-checked: layouts arrive from other processes.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static int dtype_check(struct tfd_dtype dt)
{
	switch (dt.code) {
	case TFD_INT:
	case TFD_UINT:
	case TFD_FLOAT:
	case TFD_BFLOAT:
	case TFD_COMPLEX:
	case TFD_BOOL:
		break;
	default:
		return tfd_fail(NULL, 0, -EINVAL, "unknown dtype code %u", dt.code);
	}
	if (dt.bits == 0 || dt.lanes == 0)
		return tfd_fail(NULL, 0, -EINVAL, "dtype with %u bits and %u lanes", dt.bits,
				dt.lanes);
	if (((unsigned int)dt.bits * dt.lanes) % 8)
		return tfd_fail(NULL, 0, -EINVAL, "dtype of %u bits x %u lanes is not whole bytes",
				dt.bits, dt.lanes);
	return 0;
}

static uint64_t elem_size(struct tfd_dtype dt)
{
	return (uint64_t)dt.bits * dt.lanes / 8;
}

TFD_EXPORT int tfd_layout_init(struct tfd_layout *layout, struct tfd_dtype dtype, int ndim,
			       const int64_t *shape)
{
	struct tfd_layout l;
	int64_t stride = 1;
	int i, r;

	if (!layout || ndim < 0 || ndim > TFD_MAX_NDIM || (ndim && !shape))
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_layout_init");
	memset(&l, 0, sizeof(l));
	l.dtype = dtype;
	l.ndim = ndim;
	l.device.type = TFD_DEVICE_CPU;
	for (i = ndim - 1; i >= 0; i--) {
		if (shape[i] < 0)
			return tfd_fail(NULL, 0, -EINVAL, "negative extent in dimension %d", i);
		l.shape[i] = shape[i];
		l.strides[i] = stride;
		if (shape[i] && __builtin_mul_overflow(stride, shape[i], &stride))
			return tfd_fail(NULL, 0, -EOVERFLOW, "shape overflows 64 bits");
	}
	r = tfd_layout_validate(&l);
	if (r < 0)
		return r;
	*layout = l;
	return 0;
}

/*
 * The byte range [lo, hi) that the layout's elements occupy, relative to
 * the buffer's start. An empty tensor (an extent of 0) touches nothing:
 * lo == hi == byte_offset.
 */
TFD_EXPORT int tfd_layout_span(const struct tfd_layout *layout, uint64_t *lo, uint64_t *hi)
{
	int64_t min = 0, max = 0, step, esz;
	int64_t first, last;
	int i, r;

	if (!layout || !lo || !hi)
		return fail_args();
	r = dtype_check(layout->dtype);
	if (r < 0)
		return r;
	if (layout->ndim < 0 || layout->ndim > TFD_MAX_NDIM)
		return tfd_fail(NULL, 0, -E2BIG, "ndim %d outside 0..%d", layout->ndim,
				TFD_MAX_NDIM);
	if (layout->byte_offset > INT64_MAX)
		return tfd_fail(NULL, 0, -ERANGE, "byte offset %llu too large",
				(unsigned long long)layout->byte_offset);
	/* every extent, not only those before a 0: an empty tensor is checked too */
	for (i = 0; i < layout->ndim; i++)
		if (layout->shape[i] < 0)
			return tfd_fail(NULL, 0, -EINVAL, "negative extent in dimension %d", i);
	for (i = 0; i < layout->ndim; i++) {
		if (layout->shape[i] == 0) {
			*lo = *hi = layout->byte_offset;
			return 0;
		}
	}
	for (i = 0, step = 1; i < layout->ndim; i++)
		if (__builtin_mul_overflow(step, layout->shape[i], &step))
			return tfd_fail(NULL, 0, -EOVERFLOW, "element count overflows 64 bits");
	for (i = 0; i < layout->ndim; i++) {
		if (layout->strides[i] == INT64_MIN ||
		    __builtin_mul_overflow(layout->shape[i] - 1, layout->strides[i], &step))
			goto overflow;
		if (step < 0) {
			if (__builtin_add_overflow(min, step, &min))
				goto overflow;
		} else if (__builtin_add_overflow(max, step, &max)) {
			goto overflow;
		}
	}
	esz = (int64_t)elem_size(layout->dtype);
	/* last element's end: (max + 1) * esz; first element: min * esz */
	if (__builtin_add_overflow(max, 1, &max) || __builtin_mul_overflow(max, esz, &last) ||
	    __builtin_mul_overflow(min, esz, &first) ||
	    __builtin_add_overflow((int64_t)layout->byte_offset, first, &first) ||
	    __builtin_add_overflow((int64_t)layout->byte_offset, last, &last))
		goto overflow;
	if (first < 0)
		return tfd_fail(NULL, 0, -ERANGE, "negative strides reach %lld bytes before the buffer",
				(long long)-first);
	*lo = (uint64_t)first;
	*hi = (uint64_t)last;
	return 0;
overflow:
	return tfd_fail(NULL, 0, -EOVERFLOW, "shape and strides overflow 64 bits");
}

TFD_EXPORT int tfd_layout_validate(const struct tfd_layout *layout)
{
	uint64_t lo, hi;

	if (!layout)
		return fail_args();
	return tfd_layout_span(layout, &lo, &hi);
}

/* Bytes of the elements themselves (shape product times element size). */
TFD_EXPORT int tfd_layout_nbytes(const struct tfd_layout *layout, uint64_t *ret)
{
	uint64_t n;
	int i, r;

	r = tfd_layout_validate(layout);
	if (r < 0)
		return r;
	if (!ret)
		return fail_args();
	n = elem_size(layout->dtype);
	for (i = 0; i < layout->ndim; i++)
		if (__builtin_mul_overflow(n, (uint64_t)layout->shape[i], &n))
			return tfd_fail(NULL, 0, -EOVERFLOW, "tensor size overflows 64 bits");
	*ret = n;
	return 0;
}

TFD_EXPORT bool tfd_layout_is_contiguous(const struct tfd_layout *layout)
{
	int64_t expect = 1;
	int i;

	if (!layout || tfd_layout_validate(layout) < 0)
		return false;
	for (i = layout->ndim - 1; i >= 0; i--) {
		if (layout->shape[i] == 0)
			return true;
		if (layout->shape[i] != 1 && layout->strides[i] != expect)
			return false;
		if (__builtin_mul_overflow(expect, layout->shape[i], &expect))
			return false;
	}
	return true;
}
