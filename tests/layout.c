/* SPDX-License-Identifier: MIT */
/*
 * Layout arithmetic: which bytes a tensor touches, contiguity, and the
 * refusals of layouts a peer could use to reach outside a buffer.
 */
#include <stdint.h>

#include "tap.h"
#include "tensorfd.h"

static const struct tfd_dtype f32 = { TFD_FLOAT, 32, 1 };

static struct tfd_layout make(int ndim, const int64_t *shape, const int64_t *strides)
{
	struct tfd_layout l;
	int i;

	tfd_layout_init(&l, f32, 0, NULL);
	l.ndim = ndim;
	for (i = 0; i < ndim; i++) {
		l.shape[i] = shape[i];
		l.strides[i] = strides[i];
	}
	return l;
}

static void spans(void)
{
	const int64_t shape[] = { 2, 3 }, rowmajor[] = { 3, 1 }, colmajor[] = { 1, 2 };
	const int64_t neg[] = { -3, 1 }, bcast[] = { 0, 1 };
	struct tfd_layout l;
	uint64_t lo, hi, n;

	l = make(2, shape, rowmajor);
	ok(tfd_layout_span(&l, &lo, &hi) == 0 && lo == 0 && hi == 24, "2x3 f32 spans [0,24)");
	ok(tfd_layout_is_contiguous(&l), "row-major is contiguous");
	ok(tfd_layout_nbytes(&l, &n) == 0 && n == 24, "2x3 f32 is 24 bytes");
	l = make(2, shape, colmajor);
	ok(tfd_layout_span(&l, &lo, &hi) == 0 && hi == 24 && !tfd_layout_is_contiguous(&l),
	   "column-major spans the same bytes, not contiguous");
	l = make(2, shape, neg);
	l.byte_offset = 12;
	ok(tfd_layout_span(&l, &lo, &hi) == 0 && lo == 0 && hi == 24,
	   "negative row stride from offset 12 spans [0,24)");
	l.byte_offset = 8;
	ok(tfd_layout_span(&l, &lo, &hi) == -ERANGE, "negative stride before the buffer: -ERANGE");
	l = make(2, shape, bcast);
	ok(tfd_layout_span(&l, &lo, &hi) == 0 && hi == 12, "broadcast (stride 0) spans one row");
	l = make(0, NULL, NULL);
	ok(tfd_layout_span(&l, &lo, &hi) == 0 && hi == 4, "0-d tensor is one element");
}

static void empty(void)
{
	const int64_t shape[] = { 0, INT64_MAX }, strides[] = { INT64_MAX, INT64_MAX };
	struct tfd_layout l = make(2, shape, strides);
	uint64_t lo, hi;

	l.byte_offset = 100;
	ok(tfd_layout_span(&l, &lo, &hi) == 0 && lo == 100 && hi == 100,
	   "an empty tensor touches nothing, whatever its strides");
}

static void refusals(void)
{
	const int64_t big[] = { INT64_MAX, 2 }, bigs[] = { 2, 1 };
	const int64_t one[] = { 3 }, s_min[] = { INT64_MIN }, s_huge[] = { INT64_MAX / 2 };
	const int64_t negshape[] = { -1 };
	struct tfd_layout l;
	uint64_t lo, hi;

	l = make(2, big, bigs);
	ok(tfd_layout_span(&l, &lo, &hi) == -EOVERFLOW, "shape x strides overflow: -EOVERFLOW");
	l = make(1, one, s_min);
	ok(tfd_layout_span(&l, &lo, &hi) == -EOVERFLOW, "INT64_MIN stride: -EOVERFLOW");
	l = make(1, one, s_huge);
	ok(tfd_layout_span(&l, &lo, &hi) == -EOVERFLOW, "huge stride times element size: -EOVERFLOW");
	l = make(1, negshape, one);
	ok(tfd_layout_validate(&l) == -EINVAL, "negative extent: -EINVAL");
	l = make(1, one, one);
	l.ndim = TFD_MAX_NDIM + 1;
	ok(tfd_layout_validate(&l) == -E2BIG, "ndim above the limit: -E2BIG");
	l.ndim = -1;
	ok(tfd_layout_validate(&l) == -E2BIG, "negative ndim: -E2BIG");
	l = make(1, one, one);
	l.byte_offset = (uint64_t)INT64_MAX + 1;
	ok(tfd_layout_validate(&l) == -ERANGE, "byte offset above INT64_MAX: -ERANGE");
	l.byte_offset = (uint64_t)INT64_MAX - 4;
	ok(tfd_layout_validate(&l) == -EOVERFLOW, "offset plus extent overflows: -EOVERFLOW");
	l = make(1, one, one);
	l.dtype.code = 3;
	ok(tfd_layout_validate(&l) == -EINVAL, "opaque-handle dtype refused");
	l.dtype.code = 99;
	ok(tfd_layout_validate(&l) == -EINVAL, "unknown dtype refused");
	l.dtype = (struct tfd_dtype){ TFD_INT, 4, 1 };
	ok(tfd_layout_validate(&l) == -EINVAL, "sub-byte element refused");
	l.dtype = (struct tfd_dtype){ TFD_INT, 4, 2 };
	ok(tfd_layout_validate(&l) == 0, "two 4-bit lanes make a byte");
	l.dtype = (struct tfd_dtype){ TFD_FLOAT, 0, 1 };
	ok(tfd_layout_validate(&l) == -EINVAL, "zero bits refused");
	ok(tfd_layout_validate(NULL) == -EINVAL, "NULL layout: -EINVAL");
}

static void init(void)
{
	const int64_t shape[] = { 2, 3, 4 }, huge[] = { INT64_MAX, INT64_MAX };
	struct tfd_layout l;

	ok(tfd_layout_init(&l, f32, 3, shape) == 0 && l.strides[0] == 12 && l.strides[1] == 4 &&
		   l.strides[2] == 1 && l.device.type == TFD_DEVICE_CPU,
	   "init computes row-major element strides");
	ok(tfd_layout_init(&l, f32, 2, huge) == -EOVERFLOW, "init refuses an overflowing shape");
	ok(tfd_layout_init(&l, f32, TFD_MAX_NDIM + 1, shape) == -EINVAL, "init refuses ndim > max");
	ok(tfd_layout_init(&l, (struct tfd_dtype){ TFD_FLOAT, 12, 1 }, 1, shape) == -EINVAL,
	   "init refuses a 12-bit float");
	ok(*tfd_last_error() != '\0', "a reason is recorded: %s", tfd_last_error());
}

int main(void)
{
	tap_init(30);
	spans();
	empty();
	refusals();
	init();
	return done_testing();
}
