/* SPDX-License-Identifier: MIT */
/*
 * tensorfd._tensorfd: the CPython extension behind the tensorfd package.
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
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tensorfd.h"
#include "dlpack.h"

#define WAIT_SLICE_MS 100		/* a wait looks at Python signals this often */
#define COPY_NOGIL_BYTES (1u << 20)	/* copies from here on run without the GIL */
#define META_MAGIC "TFP1"		/* user data written by this binding */

enum kind { KIND_TORCH, KIND_NUMPY, KIND_DLPACK };
static const char *const kind_names[] = { "torch", "numpy", "dlpack" };

/* what a zero-length tensor points at: never read, never written */
static _Alignas(64) char empty_data[64];

/* --- errors --- */

/* An OSError (or its errno subclass: TimeoutError, ConnectionResetError...) */
static PyObject *raise_errno(int r, const char *reason)
{
	const char *why = reason && *reason ? reason : strerror(-r);
	PyObject *e = PyObject_CallFunction(PyExc_OSError, "is", -r, why);

	if (e) {
		PyErr_SetObject((PyObject *)Py_TYPE(e), e);
		Py_DECREF(e);
	}
	return NULL;
}

static PyObject *raise_tfd(int r)
{
	return raise_errno(r, tfd_last_error());
}

/* --- torch and numpy, imported when first needed --- */

static PyObject *torch_mod, *torch_tensor_type, *torch_dtype_type, *torch_from_dlpack;
static PyObject *torch_bool, *torch_uint8;
static PyObject *numpy_mod, *numpy_ndarray;

/* A module if it was imported already: a tensor of it can exist only then. */
static PyObject *loaded_module(const char *name)
{
	PyObject *n = PyUnicode_FromString(name), *m;

	if (!n)
		return NULL;
	m = PyImport_GetModule(n);
	Py_DECREF(n);
	return m;
}

/* 1: loaded, 0: not there (import false: not imported yet), -1: error set */
static int torch_load(bool import)
{
	PyObject *m, *util;

	if (torch_mod)
		return 1;
	m = import ? PyImport_ImportModule("torch") : loaded_module("torch");
	if (!m)
		return PyErr_Occurred() ? -1 : 0;
	util = PyImport_ImportModule("torch.utils.dlpack");
	if (!util)
		goto fail;
	torch_from_dlpack = PyObject_GetAttrString(util, "from_dlpack");
	Py_DECREF(util);
	torch_tensor_type = PyObject_GetAttrString(m, "Tensor");
	torch_dtype_type = PyObject_GetAttrString(m, "dtype");
	torch_bool = PyObject_GetAttrString(m, "bool");
	torch_uint8 = PyObject_GetAttrString(m, "uint8");
	if (!torch_from_dlpack || !torch_tensor_type || !torch_dtype_type || !torch_bool ||
	    !torch_uint8)
		goto fail;
	torch_mod = m;
	return 1;
fail:
	Py_CLEAR(torch_from_dlpack);
	Py_CLEAR(torch_tensor_type);
	Py_CLEAR(torch_dtype_type);
	Py_CLEAR(torch_bool);
	Py_CLEAR(torch_uint8);
	Py_DECREF(m);
	return -1;
}

static int numpy_load(bool import)
{
	PyObject *m;

	if (numpy_mod)
		return 1;
	m = import ? PyImport_ImportModule("numpy") : loaded_module("numpy");
	if (!m)
		return PyErr_Occurred() ? -1 : 0;
	numpy_ndarray = PyObject_GetAttrString(m, "ndarray");
	if (!numpy_ndarray) {
		Py_DECREF(m);
		return -1;
	}
	numpy_mod = m;
	return 1;
}

/* --- dtypes --- */

struct dtype_name {
	const char *name;
	uint8_t code, bits;
};

static const struct dtype_name dtype_names[] = {
	{ "bool", TFD_BOOL, 8 },	  { "uint8", TFD_UINT, 8 },	 { "int8", TFD_INT, 8 },
	{ "int16", TFD_INT, 16 },	  { "int32", TFD_INT, 32 },	 { "int64", TFD_INT, 64 },
	{ "uint16", TFD_UINT, 16 },	  { "uint32", TFD_UINT, 32 },	 { "uint64", TFD_UINT, 64 },
	{ "float16", TFD_FLOAT, 16 },	  { "bfloat16", TFD_BFLOAT, 16 }, { "float32", TFD_FLOAT, 32 },
	{ "float64", TFD_FLOAT, 64 },	  { "complex64", TFD_COMPLEX, 64 },
	{ "complex128", TFD_COMPLEX, 128 },
};

static const char *dtype_to_name(struct tfd_dtype d)
{
	size_t i;

	if (d.lanes != 1)
		return NULL;
	for (i = 0; i < sizeof(dtype_names) / sizeof(dtype_names[0]); i++)
		if (dtype_names[i].code == d.code && dtype_names[i].bits == d.bits)
			return dtype_names[i].name;
	return NULL;
}

static int dtype_from_name(const char *name, struct tfd_dtype *d)
{
	size_t i;

	for (i = 0; i < sizeof(dtype_names) / sizeof(dtype_names[0]); i++)
		if (strcmp(dtype_names[i].name, name) == 0) {
			*d = (struct tfd_dtype){ dtype_names[i].code, dtype_names[i].bits, 1 };
			return 0;
		}
	PyErr_Format(PyExc_TypeError, "tensorfd does not carry dtype %s", name);
	return -1;
}

/* numpy's name for a dtype object, refusing byte-swapped ones */
static int numpy_dtype_parse(PyObject *npdtype, struct tfd_dtype *d)
{
	PyObject *name = NULL, *order = NULL;
	int r = -1;

	name = PyObject_GetAttrString(npdtype, "name");
	order = PyObject_GetAttrString(npdtype, "byteorder");
	if (!name || !order || !PyUnicode_Check(name) || !PyUnicode_Check(order))
		goto out;
	if (PyUnicode_CompareWithASCIIString(order, ">") == 0) {
		PyErr_SetString(PyExc_TypeError, "big-endian arrays are not carried");
		goto out;
	}
	r = dtype_from_name(PyUnicode_AsUTF8(name), d);
out:
	Py_XDECREF(name);
	Py_XDECREF(order);
	return r;
}

/* --- tensors as they come from Python: pointer, dtype, shape, element strides --- */

struct src_tensor {
	char *data;	/* element [0, 0, ...] */
	struct tfd_dtype dtype;
	int ndim;
	int64_t shape[TFD_MAX_NDIM];
	int64_t strides[TFD_MAX_NDIM];
};

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
	int64_t s = 1;
	int i;

	for (i = ndim - 1; i >= 0; i--) {
		strides[i] = s;
		s *= shape[i] ? shape[i] : 1;
	}
}

/* The bytes [lo, hi) that the elements occupy; empty tensors: false. */
static int src_span(const struct src_tensor *t, char **lo, char **hi, bool *empty)
{
	int64_t min = 0, max = 0, step, esz = (t->dtype.bits + 7) / 8 * t->dtype.lanes;
	int i;

	*empty = false;
	for (i = 0; i < t->ndim; i++)
		if (t->shape[i] == 0)
			*empty = true;
	if (*empty) {
		*lo = *hi = t->data;
		return 0;
	}
	for (i = 0; i < t->ndim; i++) {
		if (__builtin_mul_overflow(t->shape[i] - 1, t->strides[i], &step) ||
		    __builtin_add_overflow(step < 0 ? min : max, step, step < 0 ? &min : &max))
			goto overflow;
	}
	if (__builtin_add_overflow(max, 1, &max) || __builtin_mul_overflow(max, esz, &max) ||
	    __builtin_mul_overflow(min, esz, &min))
		goto overflow;
	*lo = t->data + min;
	*hi = t->data + max;
	return 0;
overflow:
	PyErr_SetString(PyExc_OverflowError, "tensor shape and strides overflow 64 bits");
	return -1;
}

static int src_from_capsule(PyObject *cap, const char *name, struct src_tensor *t)
{
	DLManagedTensor *mt = PyCapsule_GetPointer(cap, "dltensor");
	const DLTensor *dl;
	int i;

	if (!mt)
		return -1;
	dl = &mt->dl_tensor;
	if (dl->device.device_type != TFD_DEVICE_CPU) {
		PyErr_Format(PyExc_ValueError,
			     "'%s' lives on DLPack device type %d: tensorfd carries CPU memory only "
			     "so far and does not copy to the CPU behind your back",
			     name, (int)dl->device.device_type);
		return -1;
	}
	if (dl->ndim < 0 || dl->ndim > TFD_MAX_NDIM || dl->dtype.lanes != 1) {
		PyErr_Format(PyExc_ValueError, "'%s': %d dimensions, %d lanes not carried", name,
			     (int)dl->ndim, (int)dl->dtype.lanes);
		return -1;
	}
	t->data = (char *)dl->data + dl->byte_offset;
	t->dtype = (struct tfd_dtype){ dl->dtype.code, dl->dtype.bits, dl->dtype.lanes };
	t->ndim = dl->ndim;
	for (i = 0; i < t->ndim; i++) {
		t->shape[i] = dl->shape[i];
		if (t->shape[i] < 0) {
			PyErr_Format(PyExc_ValueError, "'%s' has a negative extent", name);
			return -1;
		}
	}
	if (dl->strides)
		memcpy(t->strides, dl->strides, (size_t)t->ndim * sizeof(int64_t));
	else
		contiguous_strides(t->ndim, t->shape, t->strides);
	return 0;
}

/* --- DLPack export: a capsule over memory that `owner` keeps alive --- */

struct export {
	DLManagedTensor mt;
	PyObject *owner;
	int64_t shape[TFD_MAX_NDIM];
	int64_t strides[TFD_MAX_NDIM];
};

/* May run on any thread, with or without the GIL (torch frees storage anywhere). */
static void export_deleter(DLManagedTensor *mt)
{
	struct export *e = mt->manager_ctx;
	PyGILState_STATE g;

	if (Py_IsInitialized()) {
		g = PyGILState_Ensure();
		Py_XDECREF(e->owner);
		PyGILState_Release(g);
	}
	PyMem_RawFree(e);
}

static void capsule_destructor(PyObject *cap)
{
	DLManagedTensor *mt;

	if (!PyCapsule_IsValid(cap, "dltensor"))
		return;	/* consumed: the consumer calls the deleter */
	mt = PyCapsule_GetPointer(cap, "dltensor");
	if (mt && mt->deleter)
		mt->deleter(mt);
}

static PyObject *capsule_new(PyObject *owner, char *data, struct tfd_dtype dtype, int ndim,
			     const int64_t *shape, const int64_t *strides)
{
	struct export *e = PyMem_RawCalloc(1, sizeof(*e));
	PyObject *cap;

	if (!e)
		return PyErr_NoMemory();
	memcpy(e->shape, shape, (size_t)ndim * sizeof(int64_t));
	memcpy(e->strides, strides, (size_t)ndim * sizeof(int64_t));
	e->mt.dl_tensor = (DLTensor){
		.data = data ? data : empty_data,
		.device = { TFD_DEVICE_CPU, 0 },
		.ndim = ndim,
		.dtype = { dtype.code, dtype.bits, dtype.lanes },
		.shape = e->shape,
		.strides = e->strides,
		.byte_offset = 0,
	};
	e->mt.manager_ctx = e;
	e->mt.deleter = export_deleter;
	Py_INCREF(owner);
	e->owner = owner;
	cap = PyCapsule_New(&e->mt, "dltensor", capsule_destructor);
	if (!cap)
		export_deleter(&e->mt);
	return cap;
}

static PyObject *int_tuple(int n, const int64_t *v, int64_t scale)
{
	PyObject *t = PyTuple_New(n);
	int i;

	for (i = 0; t && i < n; i++) {
		PyObject *x = PyLong_FromLongLong(v[i] * scale);

		if (!x) {
			Py_CLEAR(t);
			break;
		}
		PyTuple_SET_ITEM(t, i, x);
	}
	return t;
}

/*
 * A tensor of the given kind over data, which lies `offset` bytes into
 * owner's buffer (numpy reads it through the buffer protocol).
 */
static PyObject *tensor_view(PyObject *owner, Py_ssize_t offset, char *data,
			     struct tfd_dtype dtype, int ndim, const int64_t *shape,
			     const int64_t *strides, enum kind kind)
{
	PyObject *cap, *t, *v, *shp, *str, *args, *kw;
	bool is_bool = dtype.code == TFD_BOOL;
	const char *name = dtype_to_name(dtype);
	int i;

	if (!name)
		return PyErr_Format(PyExc_TypeError, "dtype code %d bits %d lanes %d is not carried",
				    dtype.code, dtype.bits, dtype.lanes);
	if (kind == KIND_DLPACK)
		return capsule_new(owner, data, dtype, ndim, shape, strides);
	if (kind == KIND_TORCH) {
		for (i = 0; i < ndim; i++)
			if (strides[i] < 0)
				return PyErr_Format(PyExc_ValueError,
						    "torch tensors cannot have negative strides; "
						    "ask for this one as numpy");
		/* a peer may place an element anywhere; torch's kernels assume alignment */
		if ((uintptr_t)data % ((dtype.bits + 7) / 8))
			return PyErr_Format(PyExc_ValueError,
					    "the tensor's data is not aligned to its element size; "
					    "ask for it as numpy");
		if (torch_load(true) < 0)
			return NULL;
		/* torch 1.13 takes no DLPack bool: uint8, then a view as bool */
		if (is_bool)
			dtype = (struct tfd_dtype){ TFD_UINT, 8, 1 };
		cap = capsule_new(owner, data, dtype, ndim, shape, strides);
		if (!cap)
			return NULL;
		t = PyObject_CallOneArg(torch_from_dlpack, cap);
		Py_DECREF(cap);
		if (t && is_bool) {
			v = PyObject_CallMethod(t, "view", "O", torch_bool);
			Py_DECREF(t);
			t = v;
		}
		return t;
	}
	if (dtype.code == TFD_BFLOAT)
		return PyErr_Format(PyExc_TypeError, "numpy has no bfloat16: ask for torch");
	if (numpy_load(true) < 0)
		return NULL;
	shp = int_tuple(ndim, shape, 1);
	str = int_tuple(ndim, strides, (dtype.bits + 7) / 8);
	args = PyTuple_New(0);
	kw = Py_BuildValue("{sOsssOsnsO}", "shape", shp, "dtype", name, "buffer", owner, "offset",
			   offset, "strides", str);
	t = shp && str && args && kw ? PyObject_Call(numpy_ndarray, args, kw) : NULL;
	Py_XDECREF(shp);
	Py_XDECREF(str);
	Py_XDECREF(args);
	Py_XDECREF(kw);
	return t;
}

static int parse_kind(PyObject *o, enum kind *k)
{
	int i;

	if (!o || o == Py_None)
		return 0;
	for (i = 0; i < 3; i++)
		if (PyUnicode_Check(o) && PyUnicode_CompareWithASCIIString(o, kind_names[i]) == 0) {
			*k = (enum kind)i;
			return 0;
		}
	PyErr_SetString(PyExc_ValueError, "kind must be 'torch', 'numpy' or 'dlpack'");
	return -1;
}

/* torch when it can be imported, numpy otherwise */
static int default_kind(enum kind *k)
{
	int r = torch_load(true);

	if (r < 0 && PyErr_ExceptionMatches(PyExc_ImportError)) {
		PyErr_Clear();
		*k = KIND_NUMPY;
		return 0;
	}
	if (r < 0)
		return -1;
	*k = KIND_TORCH;
	return 0;
}

/* timeout in seconds (None: forever) to milliseconds (-1: forever) */
static int parse_timeout(PyObject *o, int *ms)
{
	double s;

	if (!o || o == Py_None) {
		*ms = -1;
		return 0;
	}
	s = PyFloat_AsDouble(o);
	if (s == -1.0 && PyErr_Occurred())
		return -1;
	if (!(s >= 0) || s > 2e6) {
		PyErr_SetString(PyExc_ValueError, "timeout must be None or 0 to 2e6 seconds");
		return -1;
	}
	*ms = (int)(s * 1000 + 0.999);
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Wait without the GIL until fd is readable or the deadline (UINT64_MAX:
 * none) passes, in slices, running Python's signal handlers between them.
 * 1: readable, 0: deadline passed, -1: a handler raised (KeyboardInterrupt).
 */
static int wait_readable(int fd, uint64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint64_t now;
	int ms, r;

	for (;;) {
		now = now_ms();
		if (deadline != UINT64_MAX && now >= deadline)
			return 0;
		ms = deadline == UINT64_MAX || deadline - now > WAIT_SLICE_MS
			     ? WAIT_SLICE_MS
			     : (int)(deadline - now);
		Py_BEGIN_ALLOW_THREADS
		r = poll(&pfd, 1, ms);
		Py_END_ALLOW_THREADS
		if (PyErr_CheckSignals() < 0)
			return -1;
		if (r > 0)
			return 1;
	}
}

/* --- metadata: small Python values in the message's user data --- */

/*
 * "TFP1", then per value: a tag byte, the key's length (1 byte) and bytes,
 * then the value: 'i' int64, 'f' double, 'T'/'F' bool, 'n' None, 's' str
 * and 'y' bytes as a 2-byte length and the bytes. Little-endian as on the
 * host (the peers share the machine).
 */
struct meta {
	char buf[TFD_MAX_USER_DATA];
	size_t len;
};

static int meta_put(struct meta *m, const void *p, size_t n)
{
	if (n > sizeof(m->buf) - m->len) {
		PyErr_Format(PyExc_ValueError, "metadata is limited to %d bytes per message",
			     TFD_MAX_USER_DATA - (int)strlen(META_MAGIC));
		return -1;
	}
	memcpy(m->buf + m->len, p, n);
	m->len += n;
	return 0;
}

static bool is_meta(PyObject *v)
{
	return v == Py_None || PyBool_Check(v) || PyLong_Check(v) || PyFloat_Check(v) ||
	       PyUnicode_Check(v) || PyBytes_Check(v);
}

static int meta_add(struct meta *m, const char *key, PyObject *v)
{
	size_t klen = strlen(key);
	const char *s = NULL;
	Py_ssize_t slen = 0;
	uint8_t kl = (uint8_t)klen;
	char tag;
	union {
		int64_t i;
		double f;
	} x = { 0 };

	if (klen == 0 || klen > 255) {
		PyErr_SetString(PyExc_ValueError, "metadata keys have 1 to 255 bytes");
		return -1;
	}
	if (!m->len && meta_put(m, META_MAGIC, strlen(META_MAGIC)) < 0)
		return -1;
	if (v == Py_None) {
		tag = 'n';
	} else if (PyBool_Check(v)) {
		tag = v == Py_True ? 'T' : 'F';
	} else if (PyLong_Check(v)) {
		tag = 'i';
		x.i = PyLong_AsLongLong(v);
		if (x.i == -1 && PyErr_Occurred())
			return -1;
	} else if (PyFloat_Check(v)) {
		tag = 'f';
		x.f = PyFloat_AS_DOUBLE(v);
	} else if (PyUnicode_Check(v)) {
		tag = 's';
		s = PyUnicode_AsUTF8AndSize(v, &slen);
		if (!s)
			return -1;
	} else {
		tag = 'y';
		s = PyBytes_AS_STRING(v);
		slen = PyBytes_GET_SIZE(v);
	}
	if (meta_put(m, &tag, 1) < 0 || meta_put(m, &kl, 1) < 0 || meta_put(m, key, klen) < 0)
		return -1;
	if (tag == 'i' || tag == 'f')
		return meta_put(m, &x, 8);
	if (s) {
		uint16_t l = (uint16_t)slen;

		if (slen > UINT16_MAX)
			return meta_put(m, m->buf, sizeof(m->buf));	/* too long: the error */
		if (meta_put(m, &l, 2) < 0 || meta_put(m, s, (size_t)slen) < 0)
			return -1;
	}
	return 0;
}

/* Decode what a peer sent; anything malformed: NULL without an exception. */
static PyObject *meta_decode(const char *p, size_t len)
{
	size_t ml = strlen(META_MAGIC), off = ml;
	PyObject *d, *v, *k;
	int64_t i;
	double f;
	uint16_t l;

	if (len < ml || memcmp(p, META_MAGIC, ml) != 0)
		return NULL;
	d = PyDict_New();
	while (d && off < len) {
		char tag = p[off];
		size_t kl;

		if (len - off < 2 || (kl = (uint8_t)p[off + 1]) == 0 || len - off - 2 < kl)
			goto bad;
		k = PyUnicode_DecodeUTF8(p + off + 2, (Py_ssize_t)kl, "strict");
		if (!k)
			goto bad;
		off += 2 + kl;
		v = NULL;
		switch (tag) {
		case 'n': v = Py_NewRef(Py_None); break;
		case 'T': v = Py_NewRef(Py_True); break;
		case 'F': v = Py_NewRef(Py_False); break;
		case 'i':
		case 'f':
			if (len - off < 8)
				break;
			if (tag == 'i') {
				memcpy(&i, p + off, 8);
				v = PyLong_FromLongLong(i);
			} else {
				memcpy(&f, p + off, 8);
				v = PyFloat_FromDouble(f);
			}
			off += 8;
			break;
		case 's':
		case 'y':
			if (len - off < 2)
				break;
			memcpy(&l, p + off, 2);
			if (len - off - 2 < l)
				break;
			v = tag == 's' ? PyUnicode_DecodeUTF8(p + off + 2, l, "strict")
				       : PyBytes_FromStringAndSize(p + off + 2, l);
			off += 2 + (size_t)l;
			break;
		}
		if (!v || PyDict_SetItem(d, k, v) < 0) {
			Py_DECREF(k);
			Py_XDECREF(v);
			goto bad;
		}
		Py_DECREF(k);
		Py_DECREF(v);
	}
	return d;
bad:
	PyErr_Clear();
	Py_XDECREF(d);
	return NULL;
}

/* ====================================================================== */
/* Publisher and its loans                                                 */
/* ====================================================================== */

typedef struct LoanObject LoanObject;

typedef struct {
	PyObject_HEAD
	struct tfd_publisher *pub;
	LoanObject **loans;	/* live loans, to recognise their tensors on send */
	size_t n_loans, cap_loans;
	bool zero_copy;
	uint64_t copied;	/* tensors this binding copied into the pool */
} PublisherObject;

struct LoanObject {
	PyObject_HEAD
	PublisherObject *owner;
	struct tfd_buffer *buf;
	char *base;
	uint64_t size;
};

static PyTypeObject PublisherType, LoanType, MessageType, MappingType, SubscriberType;

static void loan_dealloc(LoanObject *self)
{
	PublisherObject *p = self->owner;
	size_t i;

	for (i = 0; p && i < p->n_loans; i++)
		if (p->loans[i] == self) {
			p->loans[i] = p->loans[--p->n_loans];
			break;
		}
	tfd_buffer_unref(self->buf);
	Py_XDECREF(p);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int loan_getbuffer(LoanObject *self, Py_buffer *view, int flags)
{
	return PyBuffer_FillInfo(view, (PyObject *)self, self->base, (Py_ssize_t)self->size, 0,
				 flags);
}

static PyBufferProcs loan_as_buffer = {
	.bf_getbuffer = (getbufferproc)loan_getbuffer,
};

static PyTypeObject LoanType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "tensorfd._Loan",
	.tp_doc = "A buffer loaned from a publisher's pool (kept alive by the tensors over it).",
	.tp_basicsize = sizeof(LoanObject),
	.tp_dealloc = (destructor)loan_dealloc,
	.tp_as_buffer = &loan_as_buffer,
	.tp_flags = Py_TPFLAGS_DEFAULT,
};

static LoanObject *find_loan(PublisherObject *self, const char *lo, const char *hi)
{
	size_t i;

	for (i = 0; i < self->n_loans; i++) {
		LoanObject *l = self->loans[i];

		if (lo >= l->base && hi <= l->base + l->size)
			return l;
	}
	return NULL;
}

static int pub_check(PublisherObject *self)
{
	if (self->pub)
		return 0;
	PyErr_SetString(PyExc_ValueError, "the publisher is closed");
	return -1;
}

static int publisher_init(PublisherObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "topic", "latched", "zero_copy", "depth", "block",
				  "block_timeout", "max_buffers", "max_bytes", "allow_uids",
				  "allow_gids", NULL };
	const char *topic;
	int latched = 0, zero_copy = 0, block = 0, ms, r;
	unsigned int depth = 0, max_buffers = 64;
	unsigned long long max_bytes = 4ull << 30;
	PyObject *block_timeout = NULL, *uids = NULL, *gids = NULL, *it, *x;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$ppIpOIKOO", kwlist, &topic, &latched,
					 &zero_copy, &depth, &block, &block_timeout,
					 &max_buffers, &max_bytes, &uids, &gids))
		return -1;
	if (self->pub) {
		PyErr_SetString(PyExc_RuntimeError, "Publisher.__init__ called twice");
		return -1;
	}
	if (parse_timeout(block_timeout ? block_timeout : Py_None, &ms) < 0)
		return -1;
	if (!block_timeout)
		ms = 1000;
	r = tfd_publisher_new(topic,
			      (latched ? TFD_PUBLISHER_LATCHED : 0) |
				      (zero_copy ? TFD_PUBLISHER_ZERO_COPY : 0),
			      &self->pub);
	if (r < 0) {
		raise_tfd(r);
		return -1;
	}
	self->zero_copy = zero_copy;
	if (depth || block) {
		r = tfd_publisher_set_queue(self->pub, depth ? depth : 16,
					    block ? TFD_BLOCK : TFD_DROP_OLDEST, ms);
		if (r < 0) {
			raise_errno(r, "queue depth must be 1 to 65536");
			return -1;
		}
	}
	r = tfd_publisher_set_pool_limits(self->pub, max_buffers, max_bytes);
	if (r < 0) {
		raise_errno(r, "pool limits must not be 0");
		return -1;
	}
	for (int pass = 0; pass < 2; pass++) {
		PyObject *seq = pass ? gids : uids;

		if (!seq || seq == Py_None)
			continue;
		it = PyObject_GetIter(seq);
		if (!it)
			return -1;
		while ((x = PyIter_Next(it))) {
			unsigned long id = PyLong_AsUnsignedLong(x);

			Py_DECREF(x);
			if (id == (unsigned long)-1 && PyErr_Occurred())
				break;
			r = pass ? tfd_publisher_allow_gid(self->pub, (uint32_t)id)
				 : tfd_publisher_allow_uid(self->pub, (uint32_t)id);
			if (r < 0) {
				raise_tfd(r);
				break;
			}
		}
		Py_DECREF(it);
		if (PyErr_Occurred())
			return -1;
	}
	return 0;
}

static void publisher_dealloc(PublisherObject *self)
{
	/* loans hold a reference to us: none is left */
	tfd_publisher_unref(self->pub);
	PyMem_Free(self->loans);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *publisher_close(PublisherObject *self, PyObject *unused)
{
	/* tensors from empty() keep their buffers: they hold their own references */
	self->pub = tfd_publisher_unref(self->pub);
	Py_RETURN_NONE;
}

static PyObject *enter(PyObject *self, PyObject *unused)
{
	return Py_NewRef(self);
}

static PyObject *publisher_exit(PublisherObject *self, PyObject *args)
{
	return publisher_close(self, NULL);
}

static int parse_shape(PyObject *o, int *ndim, int64_t *shape)
{
	PyObject *seq;
	Py_ssize_t n, i;

	if (PyLong_Check(o)) {
		*ndim = 1;
		shape[0] = PyLong_AsLongLong(o);
		return shape[0] == -1 && PyErr_Occurred() ? -1 : 0;
	}
	seq = PySequence_Fast(o, "shape must be an int or a sequence of ints");
	if (!seq)
		return -1;
	n = PySequence_Fast_GET_SIZE(seq);
	if (n > TFD_MAX_NDIM) {
		Py_DECREF(seq);
		PyErr_Format(PyExc_ValueError, "at most %d dimensions", TFD_MAX_NDIM);
		return -1;
	}
	for (i = 0; i < n; i++) {
		shape[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
		if (shape[i] == -1 && PyErr_Occurred()) {
			Py_DECREF(seq);
			return -1;
		}
	}
	*ndim = (int)n;
	Py_DECREF(seq);
	return 0;
}

PyDoc_STRVAR(publisher_empty_doc,
"empty(shape, dtype=None) -> tensor\n\n"
"An uninitialised tensor of the given shape in memory loaned from the\n"
"publisher's pool. Fill it in place and send() it: it reaches the\n"
"subscribers without a copy. A torch dtype (torch.float32, ...) gives a\n"
"torch.Tensor, anything numpy.dtype() accepts gives a numpy.ndarray; the\n"
"default is torch.float32 when torch can be imported, else numpy float32.\n\n"
"The buffer is not cleared (it may hold an earlier message). It returns to\n"
"the pool once this tensor, every view of it and every message naming it\n"
"are gone; do not write to it after send() while subscribers may still be\n"
"reading it (they see the very same pages).");

static PyObject *publisher_empty(PublisherObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "shape", "dtype", NULL };
	PyObject *shape_o, *dtype_o = Py_None, *npd = NULL, *r = NULL;
	int64_t shape[TFD_MAX_NDIM], strides[TFD_MAX_NDIM];
	struct tfd_layout layout;
	struct tfd_dtype dtype;
	struct tfd_buffer *buf;
	enum kind kind;
	LoanObject *loan;
	int ndim, e;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O", kwlist, &shape_o, &dtype_o))
		return NULL;
	if (pub_check(self) < 0 || parse_shape(shape_o, &ndim, shape) < 0)
		return NULL;
	if (dtype_o == Py_None) {
		if (default_kind(&kind) < 0)
			return NULL;
		dtype = (struct tfd_dtype){ TFD_FLOAT, 32, 1 };
	} else if (torch_load(false) > 0 && PyObject_TypeCheck(dtype_o,
							      (PyTypeObject *)torch_dtype_type)) {
		PyObject *s = PyObject_Str(dtype_o);
		const char *n = s ? PyUnicode_AsUTF8(s) : NULL;

		e = !n || strncmp(n, "torch.", 6) ? -1 : dtype_from_name(n + 6, &dtype);
		Py_XDECREF(s);
		if (e < 0)
			return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_TypeError, "bad dtype");
		kind = KIND_TORCH;
	} else {
		if (PyErr_Occurred() || numpy_load(true) < 0)
			return NULL;
		npd = PyObject_CallMethod(numpy_mod, "dtype", "O", dtype_o);
		if (!npd || numpy_dtype_parse(npd, &dtype) < 0) {
			Py_XDECREF(npd);
			return NULL;
		}
		Py_DECREF(npd);
		kind = KIND_NUMPY;
	}
	e = tfd_publisher_loan_tensor(self->pub, dtype, ndim, shape, &buf, &layout);
	if (e < 0)
		return raise_tfd(e);
	if (self->n_loans == self->cap_loans) {
		size_t cap = self->cap_loans ? self->cap_loans * 2 : 8;
		LoanObject **v = PyMem_Realloc(self->loans, cap * sizeof(*v));

		if (!v) {
			tfd_buffer_unref(buf);
			return PyErr_NoMemory();
		}
		self->loans = v;
		self->cap_loans = cap;
	}
	loan = PyObject_New(LoanObject, &LoanType);
	if (!loan) {
		tfd_buffer_unref(buf);
		return NULL;
	}
	loan->owner = (PublisherObject *)Py_NewRef(self);
	loan->buf = buf;
	loan->base = tfd_buffer_data(buf);
	loan->size = tfd_buffer_size(buf);
	self->loans[self->n_loans++] = loan;
	contiguous_strides(ndim, shape, strides);
	r = tensor_view((PyObject *)loan, 0, loan->base, dtype, ndim, shape, strides, kind);
	Py_DECREF(loan);
	return r;
}

/* Describe a value to send; 1: a tensor (src filled, *keep holds its memory), 0: metadata */
static int describe(PyObject *v, const char *name, struct src_tensor *src, PyObject **keep)
{
	PyObject *t = NULL, *cap = NULL, *dev, *fn;
	bool is_bool = false;
	Py_buffer view;
	int r, i;

	*keep = NULL;
	if (is_meta(v))
		return 0;
	if (torch_load(false) > 0 && PyObject_TypeCheck(v, (PyTypeObject *)torch_tensor_type)) {
		dev = PyObject_GetAttrString(v, "device");
		t = dev ? PyObject_GetAttrString(dev, "type") : NULL;
		if (!t) {
			Py_XDECREF(dev);
			return -1;
		}
		r = PyUnicode_CompareWithASCIIString(t, "cpu");
		Py_DECREF(t);
		if (r != 0) {
			PyErr_Format(PyExc_ValueError,
				     "tensor '%s' is on device %R: tensorfd carries CPU tensors "
				     "only so far and does not copy to the CPU behind your back "
				     "(call .cpu() if a copy is what you want)",
				     name, dev);
			Py_DECREF(dev);
			return -1;
		}
		Py_DECREF(dev);
		t = PyObject_CallMethod(v, "detach", NULL);
		if (t) {
			PyObject *dt = PyObject_GetAttrString(t, "dtype");

			is_bool = dt == torch_bool;
			Py_XDECREF(dt);
			if (is_bool)
				Py_SETREF(t, PyObject_CallMethod(t, "view", "O", torch_uint8));
		}
		cap = t ? PyObject_CallMethod(t, "__dlpack__", NULL) : NULL;
		Py_XDECREF(t);
		if (!cap)
			return -1;
		r = src_from_capsule(cap, name, src);
		if (r < 0) {
			Py_DECREF(cap);
			return -1;
		}
		if (is_bool)
			src->dtype = (struct tfd_dtype){ TFD_BOOL, 8, 1 };
		*keep = cap;
		return 1;
	}
	if (numpy_load(false) > 0 && PyObject_TypeCheck(v, (PyTypeObject *)numpy_ndarray)) {
		PyObject *npd = PyObject_GetAttrString(v, "dtype");
		Py_ssize_t esz;

		r = npd ? numpy_dtype_parse(npd, &src->dtype) : -1;
		Py_XDECREF(npd);
		if (r < 0 || PyObject_GetBuffer(v, &view, PyBUF_STRIDES) < 0)
			return -1;
		esz = src->dtype.bits / 8;
		src->data = view.buf;
		src->ndim = view.ndim;
		for (i = 0; i < view.ndim; i++) {
			src->shape[i] = view.shape[i];
			src->strides[i] = view.strides[i] / esz;
			if (view.strides[i] % esz) {
				PyBuffer_Release(&view);
				PyErr_Format(PyExc_ValueError,
					     "'%s' has strides that are not a multiple of its "
					     "element size", name);
				return -1;
			}
		}
		/* our reference on the array keeps its memory until we are done */
		PyBuffer_Release(&view);
		*keep = Py_NewRef(v);
		return 1;
	}
	fn = PyObject_GetAttrString(v, "__dlpack_device__");
	if (!fn) {
		PyErr_Clear();
		PyErr_Format(PyExc_TypeError,
			     "'%s' is a %s: send torch tensors, numpy arrays, objects with "
			     "__dlpack__, or metadata (int, float, bool, str, bytes, None)",
			     name, Py_TYPE(v)->tp_name);
		return -1;
	}
	dev = PyObject_CallNoArgs(fn);
	Py_DECREF(fn);
	if (!dev)
		return -1;
	if (!PyTuple_Check(dev) || PyTuple_GET_SIZE(dev) < 1 ||
	    PyLong_AsLong(PyTuple_GET_ITEM(dev, 0)) != TFD_DEVICE_CPU) {
		PyErr_Format(PyExc_ValueError,
			     "'%s' lives on DLPack device %R: tensorfd carries CPU memory only so "
			     "far and does not copy to the CPU behind your back", name, dev);
		Py_DECREF(dev);
		return -1;
	}
	Py_DECREF(dev);
	cap = PyObject_CallMethod(v, "__dlpack__", NULL);
	if (!cap)
		return -1;
	if (src_from_capsule(cap, name, src) < 0) {
		Py_DECREF(cap);
		return -1;
	}
	*keep = cap;
	return 1;
}

/* Name src in msg: in place when it lies in a loan, else copied once into one. */
static int attach(PublisherObject *self, struct tfd_message *msg, const char *name,
		  const struct src_tensor *src)
{
	struct tfd_layout l = { .dtype = src->dtype, .ndim = src->ndim };
	struct tfd_buffer *b;
	LoanObject *loan;
	char *lo, *hi;
	bool empty;
	int r;

	if (src_span(src, &lo, &hi, &empty) < 0)
		return -1;
	l.device.type = TFD_DEVICE_CPU;
	memcpy(l.shape, src->shape, (size_t)src->ndim * sizeof(int64_t));
	memcpy(l.strides, src->strides, (size_t)src->ndim * sizeof(int64_t));
	loan = empty ? NULL : find_loan(self, lo, hi);
	if (loan) {
		l.byte_offset = (uint64_t)(src->data - loan->base);
		r = tfd_message_add_tensor(msg, name, loan->buf, &l);
		return r < 0 ? (raise_tfd(r), -1) : 0;
	}
	if (self->zero_copy) {
		raise_errno(-EXDEV, "tensor is not in memory from Publisher.empty() and the "
				    "publisher was made with zero_copy=True");
		return -1;
	}
	r = tfd_publisher_loan(self->pub, empty ? 1 : (uint64_t)(hi - lo), &b);
	if (r < 0) {
		raise_tfd(r);
		return -1;
	}
	if (!empty && hi - lo >= COPY_NOGIL_BYTES) {
		Py_BEGIN_ALLOW_THREADS
		memcpy(tfd_buffer_data(b), lo, (size_t)(hi - lo));
		Py_END_ALLOW_THREADS
	} else if (!empty) {
		memcpy(tfd_buffer_data(b), lo, (size_t)(hi - lo));
	}
	l.byte_offset = empty ? 0 : (uint64_t)(src->data - lo);
	r = tfd_message_add_tensor(msg, name, b, &l);
	tfd_buffer_unref(b);
	if (r < 0) {
		raise_tfd(r);
		return -1;
	}
	self->copied++;
	return 0;
}

static int send_one(PublisherObject *self, struct tfd_message *msg, struct meta *meta,
		    PyObject *key, PyObject *v)
{
	struct src_tensor src;
	const char *name;
	PyObject *keep;
	int r;

	if (!PyUnicode_Check(key)) {
		PyErr_SetString(PyExc_TypeError, "names must be str");
		return -1;
	}
	name = PyUnicode_AsUTF8(key);
	if (!name)
		return -1;
	r = describe(v, name, &src, &keep);
	if (r < 0)
		return -1;
	if (r == 0)
		return meta_add(meta, name, v);
	if (pub_check(self) < 0)
		r = -1;
	else
		r = attach(self, msg, name, &src);
	Py_DECREF(keep);
	return r;
}

static int send_dict(PublisherObject *self, struct tfd_message *msg, struct meta *meta,
		     PyObject *d)
{
	PyObject *k, *v, *items;
	Py_ssize_t pos = 0, i;
	int r = 0;

	if (PyDict_Check(d)) {
		while (PyDict_Next(d, &pos, &k, &v)) {
			Py_INCREF(k);
			Py_INCREF(v);
			r = send_one(self, msg, meta, k, v);
			Py_DECREF(k);
			Py_DECREF(v);
			if (r < 0)
				return -1;
		}
		return 0;
	}
	items = PyMapping_Items(d);
	if (!items)
		return -1;
	for (i = 0; i < PyList_GET_SIZE(items) && r == 0; i++) {
		PyObject *kv = PyList_GET_ITEM(items, i);

		if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2) {
			PyErr_SetString(PyExc_TypeError, "items() must give pairs");
			r = -1;
			break;
		}
		r = send_one(self, msg, meta, PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1));
	}
	Py_DECREF(items);
	return r;
}

PyDoc_STRVAR(publisher_send_doc,
"send(values=None, /, **named) -> int\n\n"
"Publish one message to every subscriber and return its sequence number.\n"
"Each named value is a tensor (a torch.Tensor, a numpy.ndarray, or any\n"
"object with __dlpack__ and __dlpack_device__ on the CPU) or metadata (int,\n"
"float, bool, str, bytes, None; 4 KiB at most in all). A mapping may be\n"
"given first, for names that are not Python identifiers.\n\n"
"A tensor that lies in memory from empty() is sent without a copy, its\n"
"strides kept. Any other tensor is copied once into a buffer of the pool\n"
"(the bytes its strides span, strides kept); stats()['copied_tensors']\n"
"counts those copies. CUDA tensors are refused with ValueError: there is no\n"
"GPU path yet, and tensorfd never copies to the CPU behind your back.\n\n"
"With block=True at creation, send waits (holding the GIL) for every\n"
"subscriber to have room, at most block_timeout seconds.");

static PyObject *publisher_send(PublisherObject *self, PyObject *args, PyObject *kw)
{
	PyObject *values = NULL;
	struct tfd_message *msg;
	struct meta *meta;
	PyObject *ret = NULL;
	int r;

	if (!PyArg_ParseTuple(args, "|O:send", &values) || pub_check(self) < 0)
		return NULL;
	meta = PyMem_Calloc(1, sizeof(*meta));
	if (!meta)
		return PyErr_NoMemory();
	r = tfd_message_new(&msg);
	if (r < 0) {
		PyMem_Free(meta);
		return raise_tfd(r);
	}
	if (values && values != Py_None && send_dict(self, msg, meta, values) < 0)
		goto out;
	if (kw && send_dict(self, msg, meta, kw) < 0)
		goto out;
	if (pub_check(self) < 0)
		goto out;
	r = tfd_message_set_user_data(msg, meta->buf, meta->len);
	if (r >= 0)
		r = tfd_publisher_publish(self->pub, msg);
	if (r < 0) {
		raise_tfd(r);
		goto out;
	}
	ret = PyLong_FromUnsignedLongLong(tfd_message_seq(msg));
out:
	tfd_message_unref(msg);
	PyMem_Free(meta);
	return ret;
}

PyDoc_STRVAR(publisher_dispatch_doc,
"dispatch(timeout=0) -> int\n\n"
"Take in what subscribers sent (attachments, releases of buffers) and\n"
"return how many events were handled, waiting up to timeout seconds (None:\n"
"without limit) for the first. send(), empty() and stats() do this too.");

static PyObject *publisher_dispatch(PublisherObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "timeout", NULL };
	PyObject *to = NULL;
	uint64_t deadline;
	int ms, r, w;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &to) || pub_check(self) < 0)
		return NULL;
	ms = 0;
	if (to && parse_timeout(to, &ms) < 0)
		return NULL;
	deadline = ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)ms;
	for (;;) {
		r = tfd_publisher_dispatch(self->pub, 0);
		if (r < 0)
			return raise_errno(r, tfd_publisher_strerror(self->pub));
		if (r > 0 || ms == 0)
			return PyLong_FromLong(r);
		w = wait_readable(tfd_publisher_get_fd(self->pub), deadline);
		if (w < 0)
			return NULL;
		if (pub_check(self) < 0)
			return NULL;
		if (w == 0)
			return PyLong_FromLong(tfd_publisher_dispatch(self->pub, 0));
	}
}

static PyObject *stats_dict(int n, const char *const *names, const uint64_t *vals)
{
	PyObject *d = PyDict_New(), *v;
	int i;

	for (i = 0; d && i < n; i++) {
		v = PyLong_FromUnsignedLongLong(vals[i]);
		if (!v || PyDict_SetItemString(d, names[i], v) < 0) {
			Py_XDECREF(v);
			Py_CLEAR(d);
			break;
		}
		Py_DECREF(v);
	}
	return d;
}

PyDoc_STRVAR(publisher_stats_doc,
"stats() -> dict\n\n"
"The publisher's counters after taking in pending events: published,\n"
"copied_tensors, dropped, subscribers, attached_total, refused,\n"
"pool_buffers, pool_bytes, pool_buffers_busy, pool_bytes_busy. A buffer is\n"
"busy while a tensor from empty() over it lives, or a message names it, or\n"
"a subscriber has not released a message naming it.");

static PyObject *publisher_stats(PublisherObject *self, PyObject *unused)
{
	static const char *const names[] = { "published", "copied_tensors", "dropped",
					     "subscribers", "attached_total", "refused",
					     "pool_buffers", "pool_bytes", "pool_buffers_busy",
					     "pool_bytes_busy" };
	struct tfd_publisher_stats s;
	int r;

	if (pub_check(self) < 0)
		return NULL;
	tfd_publisher_dispatch(self->pub, 0);
	r = tfd_publisher_get_stats(self->pub, &s);
	if (r < 0)
		return raise_tfd(r);
	uint64_t v[] = { s.published, s.copied_tensors + self->copied, s.dropped, s.subscribers,
			 s.attached_total, s.refused, s.pool_buffers, s.pool_bytes,
			 s.pool_buffers_busy, s.pool_bytes_busy };
	return stats_dict(10, names, v);
}

static PyObject *publisher_subscribers(PublisherObject *self, PyObject *unused)
{
	static const char *const names[] = { "pid", "uid", "gid", "queued", "in_flight",
					     "delivered", "dropped" };
	struct tfd_subscriber_info info;
	PyObject *l, *d;
	unsigned int i;

	if (pub_check(self) < 0)
		return NULL;
	l = PyList_New(0);
	for (i = 0; l && tfd_publisher_get_subscriber(self->pub, i, &info) == 0; i++) {
		uint64_t v[] = { (uint64_t)info.pid, info.uid, info.gid, info.queued,
				 info.in_flight, info.delivered, info.dropped };

		d = stats_dict(7, names, v);
		if (!d || PyList_Append(l, d) < 0)
			Py_CLEAR(l);
		Py_XDECREF(d);
	}
	return l;
}

static PyObject *publisher_fileno(PublisherObject *self, PyObject *unused)
{
	if (pub_check(self) < 0)
		return NULL;
	return PyLong_FromLong(tfd_publisher_get_fd(self->pub));
}

static PyObject *publisher_get_path(PublisherObject *self, void *unused)
{
	if (pub_check(self) < 0)
		return NULL;
	return PyUnicode_DecodeFSDefault(tfd_publisher_path(self->pub));
}

static PyObject *publisher_get_closed(PublisherObject *self, void *unused)
{
	return PyBool_FromLong(!self->pub);
}

static PyMethodDef publisher_methods[] = {
	{ "empty", (PyCFunction)(void (*)(void))publisher_empty, METH_VARARGS | METH_KEYWORDS,
	  publisher_empty_doc },
	{ "send", (PyCFunction)(void (*)(void))publisher_send, METH_VARARGS | METH_KEYWORDS,
	  publisher_send_doc },
	{ "dispatch", (PyCFunction)(void (*)(void))publisher_dispatch,
	  METH_VARARGS | METH_KEYWORDS, publisher_dispatch_doc },
	{ "stats", (PyCFunction)publisher_stats, METH_NOARGS, publisher_stats_doc },
	{ "subscribers", (PyCFunction)publisher_subscribers, METH_NOARGS,
	  "subscribers() -> list of dict (pid, uid, gid, queued, in_flight, delivered, dropped)" },
	{ "fileno", (PyCFunction)publisher_fileno, METH_NOARGS,
	  "The publisher's descriptor: readable when dispatch() has work (an event loop may "
	  "watch it)." },
	{ "close", (PyCFunction)publisher_close, METH_NOARGS,
	  "Stop publishing: subscribers see the publisher go; tensors from empty() stay valid." },
	{ "__enter__", enter, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)publisher_exit, METH_VARARGS, NULL },
	{ NULL },
};

static PyGetSetDef publisher_getset[] = {
	{ "path", (getter)publisher_get_path, NULL, "The topic's socket path.", NULL },
	{ "closed", (getter)publisher_get_closed, NULL, "True after close().", NULL },
	{ NULL },
};

PyDoc_STRVAR(publisher_doc,
"Publisher(topic, *, latched=False, zero_copy=False, depth=16, block=False,\n"
"          block_timeout=1.0, max_buffers=64, max_bytes=4 GiB,\n"
"          allow_uids=(), allow_gids=())\n\n"
"Publish messages of named tensors on a topic, without a broker.\n"
"latched: a new subscriber first gets the last message. zero_copy: refuse\n"
"tensors that are not from empty() instead of copying them. depth: messages\n"
"in flight per subscriber; past it the oldest waiting one is dropped, or with\n"
"block=True send() waits up to block_timeout seconds. max_buffers and\n"
"max_bytes bound the pool. allow_uids/allow_gids: only these peers (default:\n"
"any peer the socket's permissions let in). Use as a context manager or\n"
"call close(). See tfd_publisher_new(3).");

static PyTypeObject PublisherType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "tensorfd._tensorfd.Publisher",
	.tp_doc = publisher_doc,
	.tp_basicsize = sizeof(PublisherObject),
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)publisher_init,
	.tp_dealloc = (destructor)publisher_dealloc,
	.tp_methods = publisher_methods,
	.tp_getset = publisher_getset,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
};

/* ====================================================================== */
/* Received memory, messages, subscribers                                  */
/* ====================================================================== */

/* The memory of one received tensor; holds the message until it dies. */
typedef struct {
	PyObject_HEAD
	struct tfd_message *msg;
	char *base;
	size_t len;
	bool private_map;	/* our own MAP_PRIVATE mapping: unmapped here */
} MappingObject;

static void mapping_dealloc(MappingObject *self)
{
	if (self->private_map)
		munmap(self->base, self->len);
	/* the last reference sends the release to the publisher */
	tfd_message_unref(self->msg);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int mapping_getbuffer(MappingObject *self, Py_buffer *view, int flags)
{
	return PyBuffer_FillInfo(view, (PyObject *)self, self->base, (Py_ssize_t)self->len,
				 !self->private_map, flags);
}

static PyBufferProcs mapping_as_buffer = {
	.bf_getbuffer = (getbufferproc)mapping_getbuffer,
};

static PyTypeObject MappingType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "tensorfd._Mapping",
	.tp_doc = "Received memory; the message stays loaned while this lives.",
	.tp_basicsize = sizeof(MappingObject),
	.tp_dealloc = (destructor)mapping_dealloc,
	.tp_as_buffer = &mapping_as_buffer,
	.tp_flags = Py_TPFLAGS_DEFAULT,
};

typedef struct {
	PyObject_HEAD
	struct tfd_message *msg;
	enum kind kind;
	PyObject *cache;	/* (name, kind, writable) -> value */
	PyObject *meta;		/* dict */
} MessageObject;

static int msg_check(MessageObject *self)
{
	if (self->msg)
		return 0;
	PyErr_SetString(PyExc_ValueError, "the message is closed");
	return -1;
}

static PyObject *message_wrap(struct tfd_message *m, enum kind kind)
{
	MessageObject *self = PyObject_New(MessageObject, &MessageType);
	size_t len;
	const void *u;

	if (!self) {
		tfd_message_unref(m);
		return NULL;
	}
	self->msg = m;
	self->kind = kind;
	self->cache = PyDict_New();
	u = tfd_message_get_user_data(m, &len);
	self->meta = len ? meta_decode(u, len) : NULL;
	if (!self->meta)
		self->meta = PyDict_New();
	if (!self->cache || !self->meta) {
		Py_DECREF(self);
		return NULL;
	}
	return (PyObject *)self;
}

static void message_dealloc(MessageObject *self)
{
	Py_XDECREF(self->cache);
	Py_XDECREF(self->meta);
	tfd_message_unref(self->msg);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A view of tensor i; writable views get their own copy-on-write mapping. */
static PyObject *message_tensor(MessageObject *self, int i, enum kind kind, bool writable)
{
	const struct tfd_layout *l = tfd_message_layout(self->msg, (unsigned int)i);
	struct tfd_buffer *b = tfd_message_buffer(self->msg, (unsigned int)i);
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), lo, hi, plo;
	MappingObject *m;
	PyObject *r;
	char *data;
	int e;

	e = tfd_layout_span(l, &lo, &hi);
	if (e < 0)
		return raise_tfd(e);
	m = PyObject_New(MappingObject, &MappingType);
	if (!m)
		return NULL;
	m->msg = tfd_message_ref(self->msg);
	m->private_map = false;
	if (hi == lo) {
		m->base = empty_data;
		m->len = 0;
		data = empty_data;
	} else if (!writable) {
		m->base = tfd_buffer_data(b);
		m->len = tfd_buffer_size(b);
		data = m->base + l->byte_offset;
	} else {
		plo = lo / page * page;
		m->len = hi - plo;
		m->base = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_PRIVATE, tfd_buffer_fd(b),
			       (off_t)plo);
		if (m->base == MAP_FAILED) {
			e = -errno;
			m->base = NULL;
			Py_DECREF(m);
			return raise_errno(e, "mmap of a private copy-on-write view failed");
		}
		m->private_map = true;
		data = m->base + (l->byte_offset - plo);
	}
	r = tensor_view((PyObject *)m, data - m->base, data, l->dtype, l->ndim, l->shape,
			l->strides, kind);
	Py_DECREF(m);
	return r;
}

PyDoc_STRVAR(message_get_doc,
"get(name, kind=None, writable=None)\n\n"
"The tensor or metadata value called name (KeyError if there is none).\n"
"kind: 'torch', 'numpy' or 'dlpack' (a DLPack capsule); default: the\n"
"subscriber's. No tensor is copied: each is a view of the publisher's pages\n"
"and keeps the message loaned (the publisher cannot reuse its buffers) until\n"
"the last object over it is gone, even after the message object itself.\n\n"
"Writing cannot change what the publisher or other subscribers see. numpy\n"
"arrays are read-only views of the shared mapping (writable=False, the\n"
"default for numpy). torch tensors and DLPack capsules, and numpy with\n"
"writable=True, get their own copy-on-write mapping of the buffer: the\n"
"shared pages until you write, then private copies of the pages you wrote.\n"
"Each such view costs an mmap and the page faults of what you read.");

static PyObject *message_lookup(MessageObject *self, PyObject *name, enum kind kind,
				int writable)
{
	const char *n;
	PyObject *key, *v;
	int i;

	if (msg_check(self) < 0)
		return NULL;
	if (!PyUnicode_Check(name)) {
		PyErr_SetObject(PyExc_KeyError, name);
		return NULL;
	}
	n = PyUnicode_AsUTF8(name);
	if (!n)
		return NULL;
	i = tfd_message_find(self->msg, n);
	if (i < 0) {
		v = PyDict_GetItemWithError(self->meta, name);
		if (!v && !PyErr_Occurred())
			PyErr_SetObject(PyExc_KeyError, name);
		return Py_XNewRef(v);
	}
	if (writable < 0)
		writable = kind != KIND_NUMPY;
	key = Py_BuildValue("(Oii)", name, (int)kind, writable);
	if (!key)
		return NULL;
	v = PyDict_GetItemWithError(self->cache, key);
	if (v || PyErr_Occurred()) {
		Py_DECREF(key);
		return Py_XNewRef(v);
	}
	v = message_tensor(self, i, kind, writable);
	if (v && PyDict_SetItem(self->cache, key, v) < 0)
		Py_CLEAR(v);
	Py_DECREF(key);
	return v;
}

static PyObject *message_get(MessageObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "name", "kind", "writable", NULL };
	PyObject *name, *kind_o = NULL, *wr = Py_None;
	enum kind kind = self->kind;
	int writable = -1;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO", kwlist, &name, &kind_o, &wr) ||
	    parse_kind(kind_o, &kind) < 0)
		return NULL;
	if (wr != Py_None && (writable = PyObject_IsTrue(wr)) < 0)
		return NULL;
	return message_lookup(self, name, kind, writable);
}

static PyObject *message_subscript(MessageObject *self, PyObject *name)
{
	return message_lookup(self, name, self->kind, -1);
}

static PyObject *message_getattro(MessageObject *self, PyObject *name)
{
	PyObject *v = PyObject_GenericGetAttr((PyObject *)self, name);

	if (v || !PyErr_ExceptionMatches(PyExc_AttributeError))
		return v;
	PyErr_Clear();
	v = message_lookup(self, name, self->kind, -1);
	if (!v && PyErr_ExceptionMatches(PyExc_KeyError)) {
		PyErr_Clear();
		PyErr_Format(PyExc_AttributeError, "the message has no tensor or metadata %R",
			     name);
	}
	return v;
}

static PyObject *message_tensor_names(MessageObject *self, PyObject *unused)
{
	PyObject *l;
	int i, n;

	if (msg_check(self) < 0)
		return NULL;
	n = tfd_message_count(self->msg);
	l = PyList_New(n);
	for (i = 0; l && i < n; i++) {
		PyObject *s = PyUnicode_FromString(tfd_message_name(self->msg, (unsigned int)i));

		if (!s) {
			Py_CLEAR(l);
			break;
		}
		PyList_SET_ITEM(l, i, s);
	}
	return l;
}

static PyObject *message_keys(MessageObject *self, PyObject *unused)
{
	PyObject *l = message_tensor_names(self, NULL), *k;
	Py_ssize_t pos = 0;
	PyObject *v;

	while (l && PyDict_Next(self->meta, &pos, &k, &v))
		if (PyList_Append(l, k) < 0)
			Py_CLEAR(l);
	return l;
}

static Py_ssize_t message_len(MessageObject *self)
{
	if (msg_check(self) < 0)
		return -1;
	return tfd_message_count(self->msg) + PyDict_Size(self->meta);
}

static int message_contains(MessageObject *self, PyObject *name)
{
	const char *n;

	if (msg_check(self) < 0)
		return -1;
	if (!PyUnicode_Check(name))
		return 0;
	n = PyUnicode_AsUTF8(name);
	if (!n)
		return -1;
	return tfd_message_find(self->msg, n) >= 0 || PyDict_Contains(self->meta, name) > 0;
}

static PyObject *message_iter(MessageObject *self)
{
	PyObject *l = message_keys(self, NULL), *it;

	if (!l)
		return NULL;
	it = PyObject_GetIter(l);
	Py_DECREF(l);
	return it;
}

static PyObject *message_copied(MessageObject *self, PyObject *name)
{
	const char *n;
	int i;

	if (msg_check(self) < 0)
		return NULL;
	if (!PyUnicode_Check(name))
		return PyErr_Format(PyExc_TypeError, "name must be str");
	n = PyUnicode_AsUTF8(name);
	if (!n)
		return NULL;
	i = tfd_message_find(self->msg, n);
	if (i < 0) {
		PyErr_SetObject(PyExc_KeyError, name);
		return NULL;
	}
	return PyBool_FromLong(tfd_message_copied(self->msg, (unsigned int)i));
}

static PyObject *message_close(MessageObject *self, PyObject *unused)
{
	/* tensors already handed out keep the message alive on their own */
	PyDict_Clear(self->cache);
	self->msg = tfd_message_unref(self->msg);
	Py_RETURN_NONE;
}

static PyObject *message_exit(MessageObject *self, PyObject *args)
{
	return message_close(self, NULL);
}

static PyObject *message_get_seq(MessageObject *self, void *unused)
{
	return msg_check(self) < 0 ? NULL
				   : PyLong_FromUnsignedLongLong(tfd_message_seq(self->msg));
}

static PyObject *message_get_timestamp(MessageObject *self, void *unused)
{
	return msg_check(self) < 0
		       ? NULL
		       : PyLong_FromUnsignedLongLong(tfd_message_timestamp(self->msg));
}

static PyObject *message_get_metadata(MessageObject *self, void *unused)
{
	return PyDict_Copy(self->meta);
}

static PyObject *message_get_user_data(MessageObject *self, void *unused)
{
	const void *u;
	size_t len;

	if (msg_check(self) < 0)
		return NULL;
	u = tfd_message_get_user_data(self->msg, &len);
	return PyBytes_FromStringAndSize(u, (Py_ssize_t)len);
}

static PyObject *message_repr(MessageObject *self)
{
	PyObject *names, *r;

	if (!self->msg)
		return PyUnicode_FromString("<tensorfd.Message (closed)>");
	names = message_tensor_names(self, NULL);
	if (!names)
		return NULL;
	r = PyUnicode_FromFormat("<tensorfd.Message seq=%llu tensors=%R metadata=%R>",
				 (unsigned long long)tfd_message_seq(self->msg), names,
				 self->meta);
	Py_DECREF(names);
	return r;
}

static PyMethodDef message_methods[] = {
	{ "get", (PyCFunction)(void (*)(void))message_get, METH_VARARGS | METH_KEYWORDS,
	  message_get_doc },
	{ "keys", (PyCFunction)message_keys, METH_NOARGS,
	  "Names of the tensors, then of the metadata values." },
	{ "tensors", (PyCFunction)message_tensor_names, METH_NOARGS,
	  "Names of the tensors." },
	{ "copied", (PyCFunction)message_copied, METH_O,
	  "copied(name): whether the library copied the tensor into the pool on the way "
	  "(tfd_message_copied(3)); copies the Python binding made are counted in the "
	  "publisher's stats()." },
	{ "close", (PyCFunction)message_close, METH_NOARGS,
	  "Drop the message; tensors taken from it keep their memory (and the loan) "
	  "until they die." },
	{ "__enter__", enter, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)message_exit, METH_VARARGS, NULL },
	{ NULL },
};

static PyGetSetDef message_getset[] = {
	{ "seq", (getter)message_get_seq, NULL, "The topic's sequence number (from 1).", NULL },
	{ "timestamp", (getter)message_get_timestamp, NULL,
	  "When it was published: CLOCK_MONOTONIC nanoseconds.", NULL },
	{ "metadata", (getter)message_get_metadata, NULL, "The metadata values, a dict.", NULL },
	{ "user_data", (getter)message_get_user_data, NULL,
	  "The raw user data bytes (tfd_message_get_user_data(3)).", NULL },
	{ NULL },
};

static PyMappingMethods message_as_mapping = {
	.mp_length = (lenfunc)message_len,
	.mp_subscript = (binaryfunc)message_subscript,
};

static PySequenceMethods message_as_sequence = {
	.sq_contains = (objobjproc)message_contains,
};

PyDoc_STRVAR(message_doc,
"A received message: msg['name'] or msg.name gives a tensor (zero-copy, see\n"
"get()) or a metadata value; len(), iteration and 'in' go over the names.\n"
"Names that are also attributes (seq, get, keys, metadata, ...) are reached\n"
"with msg['name'] only.");

static PyTypeObject MessageType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "tensorfd.Message",
	.tp_doc = message_doc,
	.tp_basicsize = sizeof(MessageObject),
	.tp_dealloc = (destructor)message_dealloc,
	.tp_repr = (reprfunc)message_repr,
	.tp_getattro = (getattrofunc)message_getattro,
	.tp_as_mapping = &message_as_mapping,
	.tp_as_sequence = &message_as_sequence,
	.tp_iter = (getiterfunc)message_iter,
	.tp_methods = message_methods,
	.tp_getset = message_getset,
	.tp_flags = Py_TPFLAGS_DEFAULT,
};

typedef struct {
	PyObject_HEAD
	struct tfd_subscriber *sub;
	enum kind kind;
} SubscriberObject;

static int sub_check(SubscriberObject *self)
{
	if (self->sub)
		return 0;
	PyErr_SetString(PyExc_ValueError, "the subscriber is closed");
	return -1;
}

static int subscriber_init(SubscriberObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "topic", "kind", NULL };
	PyObject *kind_o = NULL;
	const char *topic;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$O", kwlist, &topic, &kind_o))
		return -1;
	if (self->sub) {
		PyErr_SetString(PyExc_RuntimeError, "Subscriber.__init__ called twice");
		return -1;
	}
	if (kind_o && kind_o != Py_None) {
		if (parse_kind(kind_o, &self->kind) < 0)
			return -1;
	} else if (default_kind(&self->kind) < 0) {
		return -1;
	}
	r = tfd_subscriber_new(topic, 0, &self->sub);
	if (r < 0) {
		raise_tfd(r);
		return -1;
	}
	return 0;
}

static void subscriber_dealloc(SubscriberObject *self)
{
	tfd_subscriber_unref(self->sub);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* One receive without waiting: a Message, or None (nothing there), or NULL. */
static PyObject *recv_now(SubscriberObject *self)
{
	struct tfd_message *m;
	int r;

	r = tfd_subscriber_recv(self->sub, 0, &m);
	if (r == 0)
		return message_wrap(m, self->kind);
	if (r == -EAGAIN || r == -ETIMEDOUT || r == -EINTR)
		Py_RETURN_NONE;
	return raise_errno(r, tfd_subscriber_strerror(self->sub));
}

PyDoc_STRVAR(subscriber_recv_doc,
"recv(timeout=None) -> Message\n\n"
"The next message, waiting up to timeout seconds (None: without limit);\n"
"TimeoutError when none came. The GIL is released while waiting, and\n"
"Ctrl-C interrupts the wait (KeyboardInterrupt). Raises ConnectionResetError\n"
"once when the publisher goes away (the subscriber re-attaches to the next\n"
"one by itself) and PermissionError when the publisher refuses us.");

static PyObject *subscriber_recv(SubscriberObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "timeout", NULL };
	PyObject *to = NULL, *m;
	uint64_t deadline;
	int ms, w;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &to) || sub_check(self) < 0 ||
	    parse_timeout(to, &ms) < 0)
		return NULL;
	deadline = ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)ms;
	for (;;) {
		m = recv_now(self);
		if (m != Py_None)
			return m;
		Py_DECREF(m);
		w = wait_readable(tfd_subscriber_get_fd(self->sub), deadline);
		if (w < 0 || sub_check(self) < 0)
			return NULL;
		if (w == 0) {
			m = recv_now(self);
			if (m != Py_None)
				return m;
			Py_DECREF(m);
			return raise_errno(-ETIMEDOUT, "no message within the timeout");
		}
	}
}

static PyObject *subscriber_try_recv(SubscriberObject *self, PyObject *unused)
{
	return sub_check(self) < 0 ? NULL : recv_now(self);
}

static PyObject *subscriber_fileno(SubscriberObject *self, PyObject *unused)
{
	return sub_check(self) < 0 ? NULL : PyLong_FromLong(tfd_subscriber_get_fd(self->sub));
}

static PyObject *subscriber_stats(SubscriberObject *self, PyObject *unused)
{
	static const char *const names[] = { "received", "dropped", "attaches", "last_seq",
					     "connected" };
	struct tfd_subscriber_stats s;
	PyObject *d;

	if (sub_check(self) < 0)
		return NULL;
	tfd_subscriber_get_stats(self->sub, &s);
	uint64_t v[] = { s.received, s.dropped, s.attaches, s.last_seq, s.connected };
	d = stats_dict(4, names, v);
	if (d && PyDict_SetItemString(d, "connected", s.connected ? Py_True : Py_False) < 0)
		Py_CLEAR(d);
	return d;
}

static PyObject *subscriber_close(SubscriberObject *self, PyObject *unused)
{
	/* messages already received stay valid: they hold their own mappings */
	self->sub = tfd_subscriber_unref(self->sub);
	Py_RETURN_NONE;
}

static PyObject *subscriber_exit(SubscriberObject *self, PyObject *args)
{
	return subscriber_close(self, NULL);
}

static PyObject *subscriber_get_kind(SubscriberObject *self, void *unused)
{
	return PyUnicode_FromString(kind_names[self->kind]);
}

static PyObject *subscriber_get_closed(SubscriberObject *self, void *unused)
{
	return PyBool_FromLong(!self->sub);
}

static PyMethodDef subscriber_methods[] = {
	{ "recv", (PyCFunction)(void (*)(void))subscriber_recv, METH_VARARGS | METH_KEYWORDS,
	  subscriber_recv_doc },
	{ "try_recv", (PyCFunction)subscriber_try_recv, METH_NOARGS,
	  "try_recv() -> Message or None: a message if one is there, without waiting." },
	{ "fileno", (PyCFunction)subscriber_fileno, METH_NOARGS,
	  "The subscriber's descriptor, stable for its life: when it is readable, call "
	  "try_recv() until it gives None." },
	{ "stats", (PyCFunction)subscriber_stats, METH_NOARGS,
	  "stats() -> dict: received, dropped (sequence gaps), attaches, last_seq, connected." },
	{ "close", (PyCFunction)subscriber_close, METH_NOARGS,
	  "Detach; messages and tensors already received stay valid." },
	{ "__enter__", enter, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)subscriber_exit, METH_VARARGS, NULL },
	{ NULL },
};

static PyGetSetDef subscriber_getset[] = {
	{ "kind", (getter)subscriber_get_kind, NULL,
	  "What tensors come back as: 'torch', 'numpy' or 'dlpack'.", NULL },
	{ "closed", (getter)subscriber_get_closed, NULL, "True after close().", NULL },
	{ NULL },
};

PyDoc_STRVAR(subscriber_doc,
"Subscriber(topic, *, kind=None)\n\n"
"Receive the messages published on a topic, from now on. The publisher may\n"
"start before or after; after it restarts the subscriber attaches again.\n"
"Attaching happens inside recv()/try_recv() (there is no thread): a\n"
"subscriber that waited for its publisher receives from when it looked.\n"
"kind: what tensors come back as, 'torch' (default when torch can be\n"
"imported), 'numpy' or 'dlpack'. Use as a context manager or call close().");

static PyTypeObject SubscriberType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "tensorfd._tensorfd.Subscriber",
	.tp_doc = subscriber_doc,
	.tp_basicsize = sizeof(SubscriberObject),
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)subscriber_init,
	.tp_dealloc = (destructor)subscriber_dealloc,
	.tp_methods = subscriber_methods,
	.tp_getset = subscriber_getset,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
};

/* ====================================================================== */

static PyObject *mod_runtime_dir(PyObject *m, PyObject *unused)
{
	char buf[4096];
	int r = tfd_runtime_dir(buf, sizeof(buf));

	return r < 0 ? raise_tfd(r) : PyUnicode_DecodeFSDefault(buf);
}

static PyObject *mod_topic_path(PyObject *m, PyObject *arg)
{
	char buf[4096];
	const char *t = PyUnicode_AsUTF8(arg);
	int r;

	if (!t)
		return NULL;
	r = tfd_topic_path(t, buf, sizeof(buf));
	return r < 0 ? raise_tfd(r) : PyUnicode_DecodeFSDefault(buf);
}

/* For the tests: the metadata decoder on arbitrary bytes (None: malformed). */
static PyObject *mod_decode_metadata(PyObject *m, PyObject *arg)
{
	PyObject *d;

	if (!PyBytes_Check(arg))
		return PyErr_Format(PyExc_TypeError, "bytes expected");
	d = meta_decode(PyBytes_AS_STRING(arg), (size_t)PyBytes_GET_SIZE(arg));
	return d ? d : Py_NewRef(Py_None);
}

static PyMethodDef module_methods[] = {
	{ "_decode_metadata", mod_decode_metadata, METH_O, NULL },
	{ "runtime_dir", mod_runtime_dir, METH_NOARGS,
	  "The directory where topics' sockets live (tfd_runtime_dir(3))." },
	{ "topic_path", mod_topic_path, METH_O,
	  "topic_path(topic): the socket path of a topic (tfd_topic_path(3))." },
	{ NULL },
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "tensorfd._tensorfd",
	.m_doc = "The C extension behind the tensorfd package.",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__tensorfd(void);

PyMODINIT_FUNC PyInit__tensorfd(void)
{
	PyTypeObject *types[] = { &PublisherType, &LoanType, &MessageType, &MappingType,
				  &SubscriberType };
	PyObject *m;
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (PyType_Ready(types[i]) < 0)
			return NULL;
	m = PyModule_Create(&module);
	if (!m)
		return NULL;
	if (PyModule_AddObjectRef(m, "Publisher", (PyObject *)&PublisherType) < 0 ||
	    PyModule_AddObjectRef(m, "Subscriber", (PyObject *)&SubscriberType) < 0 ||
	    PyModule_AddObjectRef(m, "Message", (PyObject *)&MessageType) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_USER_DATA", TFD_MAX_USER_DATA) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_TENSORS", TFD_MAX_TENSORS) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_NDIM", TFD_MAX_NDIM) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
