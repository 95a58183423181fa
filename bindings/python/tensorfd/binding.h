/* SPDX-License-Identifier: MIT */
/*
 * tensorfd._tensorfd: the CPython extension behind the tensorfd package.
 * Declarations shared by its files: module.c (errors, waits, init),
 * convert.c (torch, numpy, DLPack), meta.c (metadata), publisher.c,
 * message.c (received memory) and subscriber.c.
 *
 * Every call into libtensorfd runs with the GIL held, so the library (whose
 * objects belong to one thread at a time) sees one caller; only the waits
 * (poll(2) on the subscriber's or publisher's descriptor, in slices) and
 * large copies run without it. Received tensors are views over the
 * message's memory and hold the message until the last of them dies.
 *
 * A receiver must not be able to change what the publisher and the other
 * subscribers see, nor crash by writing: the library maps received buffers
 * read-only and shared. numpy arrays over that mapping are read-only;
 * torch tensors (torch has no read-only tensors) and DLPack capsules get a
 * fresh MAP_PRIVATE mapping of the buffer's memfd per conversion, whose
 * pages are the shared ones until the receiver writes, then its own copy.
 */
#ifndef TFD_PY_BINDING_H
#define TFD_PY_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>

#include "tensorfd.h"
#include "dlpack.h"

#define WAIT_SLICE_MS 100		/* a wait looks at Python signals this often */
#define COPY_NOGIL_BYTES (1u << 20)	/* copies from here on run without the GIL */

/* What received tensors come back as. */
enum kind { KIND_TORCH, KIND_NUMPY, KIND_DLPACK };
extern const char *const kind_names[];

extern PyTypeObject PublisherType, LoanType, MessageType, MappingType, SubscriberType;

/* --- module.c --- */
PyObject *raise_errno(int r, const char *reason);
PyObject *raise_tfd(int r);
int parse_kind(PyObject *o, enum kind *k);
int parse_timeout(PyObject *o, int *ms);
uint64_t now_ms(void);
int wait_readable(int fd, uint64_t deadline);
PyObject *stats_dict(int n, const char *const *names, const uint64_t *vals);
PyObject *enter(PyObject *self, PyObject *unused);

/* --- convert.c --- */
extern PyObject *torch_mod, *torch_tensor_type, *torch_dtype_type, *torch_from_dlpack;
extern PyObject *torch_bool, *torch_uint8;
extern PyObject *numpy_mod, *numpy_ndarray, *numpy_generic;
extern char empty_data[64];

/* A tensor as it comes from Python: pointer, dtype, shape, element strides. */
struct src_tensor {
	char *data;	/* element [0, 0, ...] */
	struct tfd_dtype dtype;
	int ndim;
	int64_t shape[TFD_MAX_NDIM];
	int64_t strides[TFD_MAX_NDIM];
};

int torch_load(bool import);
int numpy_load(bool import);
int default_kind(enum kind *k);
int dtype_from_name(const char *name, struct tfd_dtype *d);
int numpy_dtype_parse(PyObject *npdtype, struct tfd_dtype *d);
void contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
int src_span(const struct src_tensor *t, char **lo, char **hi, bool *empty);
int describe(PyObject *v, const char *name, struct src_tensor *src, PyObject **keep);
PyObject *tensor_view(PyObject *owner, Py_ssize_t offset, char *data, struct tfd_dtype dtype,
		      int ndim, const int64_t *shape, const int64_t *strides, enum kind kind);

/* --- meta.c --- */
bool is_meta(PyObject *v);
int meta_add(struct tfd_message *msg, const char *key, PyObject *v);
PyObject *meta_dict(const struct tfd_message *m);
PyObject *meta_decode(const char *p, size_t len);

/* --- message.c --- */
PyObject *message_wrap(struct tfd_message *m, enum kind kind, bool writable);
void write_guard_install(void);

#endif
