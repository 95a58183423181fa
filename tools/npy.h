/* SPDX-License-Identifier: MIT */
/*
 * NumPy's .npy files (format versions 1 to 3): the header read, checked
 * and turned into a tensorfd dtype and shape. The file is input from
 * anywhere: lengths and counts are checked before they are used.
 */
#ifndef TFD_NPY_H
#define TFD_NPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorfd.h>

struct npy {
	struct tfd_dtype dtype;
	int ndim;
	int64_t shape[TFD_MAX_NDIM];
	bool fortran;		/* column-major: strides run the other way */
	uint64_t data_offset;
	uint64_t data_bytes;
};

/* 0, or a negative errno with a reason in err. */
int npy_open(const char *path, struct npy *n, int *fd, char *err, size_t errlen);
/* The layout of the data as it lies in a buffer of its own. */
void npy_layout(const struct npy *n, struct tfd_layout *l);

#endif
