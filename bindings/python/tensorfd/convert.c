/* SPDX-License-Identifier: MIT */
/*
 * Tensors between Python and the library: torch and numpy imported when
 * first needed, dtypes by name, what a value to send is (torch, numpy,
 * DLPack), and views of memory as torch tensors, numpy arrays or DLPack
 * capsules that keep the memory's owner alive.
 */
#include "binding.h"

#include <string.h>

/* what a zero-length tensor points at: never read, never written */
_Alignas(64) char empty_data[64];

/* --- torch and numpy, imported when first needed --- */

PyObject *torch_mod, *torch_tensor_type, *torch_dtype_type, *torch_from_dlpack;
PyObject *torch_bool, *torch_uint8;
PyObject *numpy_mod, *numpy_ndarray, *numpy_generic;

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
int torch_load(bool import)
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

int numpy_load(bool import)
{
	PyObject *m;

	if (numpy_mod)
		return 1;
	m = import ? PyImport_ImportModule("numpy") : loaded_module("numpy");
	if (!m)
		return PyErr_Occurred() ? -1 : 0;
	numpy_ndarray = PyObject_GetAttrString(m, "ndarray");
	numpy_generic = PyObject_GetAttrString(m, "generic");
	if (!numpy_ndarray || !numpy_generic) {
		Py_CLEAR(numpy_ndarray);
		Py_CLEAR(numpy_generic);
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

int dtype_from_name(const char *name, struct tfd_dtype *d)
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
int numpy_dtype_parse(PyObject *npdtype, struct tfd_dtype *d)
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

void contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
	int64_t s = 1;
	int i;

	for (i = ndim - 1; i >= 0; i--) {
		strides[i] = s;
		s *= shape[i] ? shape[i] : 1;
	}
}

/* The bytes [lo, hi) that the elements occupy; empty tensors: false. */
/*
 * The bytes a tensor touches, by the library's rule (tfd_layout_span: the
 * element size, overflow checks, empty tensors), not a restatement of it:
 * the layout's byte offset is the data's address, so the span comes back
 * as addresses.
 */
int src_span(const struct src_tensor *t, char **lo, char **hi, bool *empty)
{
	struct tfd_layout l = { .dtype = t->dtype, .ndim = t->ndim };
	uint64_t a, b;
	int r;

	l.device.type = TFD_DEVICE_CPU;
	l.byte_offset = (uint64_t)(uintptr_t)t->data;
	memcpy(l.shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
	memcpy(l.strides, t->strides, (size_t)t->ndim * sizeof(int64_t));
	r = tfd_layout_span(&l, &a, &b);
	if (r == -EOVERFLOW || r == -ERANGE) {
		PyErr_SetString(PyExc_OverflowError, "tensor shape and strides overflow 64 bits");
		return -1;
	}
	if (r < 0) {
		PyErr_SetString(PyExc_ValueError, tfd_last_error());
		return -1;
	}
	*lo = (char *)(uintptr_t)a;
	*hi = (char *)(uintptr_t)b;
	*empty = a == b;
	return 0;
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
PyObject *tensor_view(PyObject *owner, Py_ssize_t offset, char *data,
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

/* torch when it can be imported, numpy otherwise */
int default_kind(enum kind *k)
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

/*
 * Describe a value to send. 1: a tensor (src filled, *keep holds its memory);
 * 0: metadata (*keep, when set, is the value to store instead of v).
 */
int describe(PyObject *v, const char *name, struct src_tensor *src, PyObject **keep)
{
	PyObject *t = NULL, *cap = NULL, *dev, *fn;
	bool is_bool = false;
	Py_buffer view;
	int r, i;

	*keep = NULL;
	if (is_meta(v))
		return 0;
	/* numpy scalars (numpy.float32(1), a.sum()) travel as metadata: *keep */
	if (numpy_load(false) > 0 && PyObject_TypeCheck(v, (PyTypeObject *)numpy_generic)) {
		*keep = PyObject_CallMethod(v, "item", NULL);
		if (!*keep)
			return -1;
		if (is_meta(*keep))
			return 0;
		Py_CLEAR(*keep);
	}
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
