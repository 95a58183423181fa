/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the tensor-layout validator, which decides which bytes of a
 * buffer a peer's layout may touch. The input is a compact description:
 *
 *   u8 code, u8 bits, u16 lanes, i8 ndim, u8 device type, u16 unused,
 *   u64 byte_offset, then per dimension a control byte and its values:
 *     bit 0: shape is one signed byte (else eight)
 *     bit 1: stride is one signed byte (else eight)
 *     bit 2: stride is the row-major contiguous one (no stride bytes)
 *
 * Missing bytes read as zero. The validator's answers must agree with
 * each other and with arithmetic done here the slow way (128-bit).
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "internal.h"

struct reader {
	const uint8_t *p;
	size_t left;
};

static void take(struct reader *rd, void *out, size_t n)
{
	size_t k = n < rd->left ? n : rd->left;

	memset(out, 0, n);
	memcpy(out, rd->p, k);
	rd->p += k;
	rd->left -= k;
}

static int64_t take_value(struct reader *rd, bool small)
{
	int64_t v;
	int8_t b;

	if (small) {
		take(rd, &b, 1);
		return b;
	}
	take(rd, &v, sizeof(v));
	return v;
}

static void build(const uint8_t *data, size_t size, struct tfd_layout *l)
{
	struct reader rd = { data, size };
	bool contiguous[TFD_MAX_NDIM];
	uint8_t ctl, dev, unused[2];
	int8_t ndim;
	uint64_t expect = 1;
	int i, n;

	memset(l, 0, sizeof(*l));
	take(&rd, &l->dtype.code, 1);
	take(&rd, &l->dtype.bits, 1);
	take(&rd, &l->dtype.lanes, 2);
	take(&rd, &ndim, 1);
	take(&rd, &dev, 1);
	take(&rd, unused, 2);
	take(&rd, &l->byte_offset, 8);
	l->ndim = ndim;
	l->device.type = dev;
	n = ndim < 0 ? 0 : ndim > TFD_MAX_NDIM ? TFD_MAX_NDIM : ndim;
	for (i = 0; i < n; i++) {
		take(&rd, &ctl, 1);
		l->shape[i] = take_value(&rd, ctl & 1);
		contiguous[i] = ctl & 4;
		if (!contiguous[i])
			l->strides[i] = take_value(&rd, ctl & 2);
	}
	/* wrapping arithmetic on purpose: an overflowed stride is input too */
	for (i = n - 1; i >= 0; i--) {
		if (contiguous[i])
			l->strides[i] = (int64_t)expect;
		expect *= (uint64_t)l->shape[i];
	}
}

/* Element strides a C-ordered array of this shape has, or false if they overflow. */
static bool is_row_major(const struct tfd_layout *l)
{
	__int128 expect = 1;
	int i;

	for (i = l->ndim - 1; i >= 0; i--) {
		if (l->strides[i] != expect)
			return false;
		expect *= l->shape[i];
		if (expect > INT64_MAX || expect < INT64_MIN)
			return false;
	}
	return true;
}

/* The span computed in 128 bits; false if the layout is not valid arithmetic-wise. */
static bool span128(const struct tfd_layout *l, __int128 *lo, __int128 *hi, bool *empty)
{
	__int128 min = 0, max = 0, count = 1, esz = (__int128)l->dtype.bits * l->dtype.lanes / 8;
	int i;

	*empty = false;
	for (i = 0; i < l->ndim; i++)
		if (l->shape[i] == 0)
			*empty = true;
	if (*empty) {
		*lo = *hi = l->byte_offset;
		return true;
	}
	for (i = 0; i < l->ndim; i++) {
		__int128 step = (__int128)(l->shape[i] - 1) * l->strides[i];

		count *= l->shape[i];
		if (count > INT64_MAX)
			return false;
		if (step < 0)
			min += step;
		else
			max += step;
	}
	*lo = (__int128)l->byte_offset + min * esz;
	*hi = (__int128)l->byte_offset + (max + 1) * esz;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tfd_layout l, init;
	uint64_t lo = 0x5a5a, hi = 0xa5a5, nbytes = 0x77, nbytes2;
	__int128 lo128, hi128;
	bool empty, contiguous;
	int r_span, r_valid, r_nbytes, i;

	build(data, size, &l);
	r_span = tfd_layout_span(&l, &lo, &hi);
	r_valid = tfd_layout_validate(&l);
	r_nbytes = tfd_layout_nbytes(&l, &nbytes);
	contiguous = tfd_layout_is_contiguous(&l);

	/* the four calls agree on validity */
	FUZZ_CHECK(r_span == r_valid);
	FUZZ_CHECK(r_span <= 0 && r_nbytes <= 0);
	FUZZ_CHECK(r_span == 0 || r_span == -EINVAL || r_span == -E2BIG || r_span == -ERANGE ||
		   r_span == -EOVERFLOW);
	if (r_span < 0) {
		FUZZ_CHECK(r_nbytes == r_span && !contiguous);
		/* output parameters untouched on failure */
		FUZZ_CHECK(lo == 0x5a5a && hi == 0xa5a5 && nbytes == 0x77);
		return 0;
	}
	FUZZ_CHECK(l.ndim >= 0 && l.ndim <= TFD_MAX_NDIM);
	FUZZ_CHECK(r_nbytes == 0 || r_nbytes == -EOVERFLOW);
	/* a valid layout has no negative extent, empty or not */
	for (i = 0; i < l.ndim; i++)
		FUZZ_CHECK(l.shape[i] >= 0);

	/* the span is right: 128-bit arithmetic gives the same bytes */
	FUZZ_CHECK(lo <= hi);
	FUZZ_CHECK(span128(&l, &lo128, &hi128, &empty));
	FUZZ_CHECK(lo128 == lo && hi128 == hi);
	if (empty) {
		FUZZ_CHECK(lo == l.byte_offset && hi == l.byte_offset);
	} else {
		uint64_t esz = (uint64_t)l.dtype.bits * l.dtype.lanes / 8;

		/* element [0, ...] lies inside the span */
		FUZZ_CHECK(lo <= l.byte_offset && l.byte_offset + esz <= hi);
		FUZZ_CHECK(hi - lo >= esz);
	}

	/* a C-ordered layout touches exactly its own bytes */
	if (is_row_major(&l))
		FUZZ_CHECK(contiguous);
	if (contiguous && !empty) {
		FUZZ_CHECK(r_nbytes == 0);
		FUZZ_CHECK(lo == l.byte_offset && hi - lo == nbytes);
	}

	/* tfd_layout_init on the same shape gives a contiguous layout of the same size */
	if (tfd_layout_init(&init, l.dtype, l.ndim, l.shape) == 0) {
		FUZZ_CHECK(tfd_layout_is_contiguous(&init));
		FUZZ_CHECK(is_row_major(&init) || empty);
		if (r_nbytes == 0) {
			FUZZ_CHECK(tfd_layout_nbytes(&init, &nbytes2) == 0 && nbytes2 == nbytes);
			for (i = 0; i < init.ndim; i++)
				FUZZ_CHECK(init.shape[i] == l.shape[i]);
		}
	}
	return 0;
}
