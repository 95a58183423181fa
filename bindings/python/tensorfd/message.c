/* SPDX-License-Identifier: MIT */
/*
 * Received messages and the memory of their tensors: each view holds the
 * message (and so the publisher's buffer) until it dies; writable views get
 * a private copy-on-write mapping of their own.
 */
#include "binding.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

PyTypeObject MappingType = {
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
	bool writable;		/* the subscriber's default for get() */
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

PyObject *message_wrap(struct tfd_message *m, enum kind kind, bool writable)
{
	MessageObject *self = PyObject_New(MessageObject, &MessageType);

	if (!self) {
		tfd_message_unref(m);
		return NULL;
	}
	self->msg = m;
	self->kind = kind;
	self->writable = writable;
	self->cache = PyDict_New();
	self->meta = meta_dict(m);
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
		/* torch cannot refuse the write: say why when it faults */
		if (kind != KIND_NUMPY)
			write_guard_install();
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
"Writing cannot change what the publisher or other subscribers see. By\n"
"default (writable=None: the Subscriber's writable, False unless set)\n"
"every tensor is a read-only view of the shared mapping: the fast path.\n"
"numpy arrays refuse writes; torch has no read-only tensors, so a write\n"
"into a torch view (or a capsule's memory) faults, and tensorfd says why\n"
"on stderr before the interpreter stops: .clone() what you change.\n"
"writable=True gives a private copy-on-write mapping of the buffer: the\n"
"shared pages until you write, then private copies of the pages you\n"
"wrote; it costs an mmap and makes the first read of each page a fault.");

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
		writable = self->writable;
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

static PyObject *message_get_capture_time(MessageObject *self, void *unused)
{
	uint64_t ns;

	if (msg_check(self) < 0)
		return NULL;
	ns = tfd_message_capture_time(self->msg);
	return ns ? PyLong_FromUnsignedLongLong(ns) : Py_NewRef(Py_None);
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
	  "copied(name): whether the publisher copied the tensor into its pool on the way "
	  "(tfd_message_copied(3)): True for any tensor sent that was not in memory from "
	  "Publisher.empty()." },
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
	{ "capture_time", (getter)message_get_capture_time, NULL,
	  "When the data was captured (CLOCK_MONOTONIC ns, as the producer set it with\n"
	  "tfd_message_set_capture_time), or None.", NULL },
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

PyTypeObject MessageType = {
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
