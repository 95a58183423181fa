/* SPDX-License-Identifier: MIT */
/*
 * Publisher, and the loans of its pool that empty() hands out as tensors;
 * send() names loaned tensors in place and copies any other once.
 */
#include "binding.h"

#include <string.h>

typedef struct LoanObject LoanObject;

typedef struct {
	PyObject_HEAD
	struct tfd_publisher *pub;
	LoanObject **loans;	/* live loans, to recognise their tensors on send */
	size_t n_loans, cap_loans;
	bool zero_copy;
} PublisherObject;

struct LoanObject {
	PyObject_HEAD
	PublisherObject *owner;
	struct tfd_buffer *buf;
	char *base;
	uint64_t size;
};

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

PyTypeObject LoanType = {
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

/* Name src in msg: in place when it lies in a loan, else copied once into one. */
/* A bad name or layout is a bad value, as elsewhere in Python (ValueError);
 * anything else the library said is an OSError. */
static void raise_add(int r)
{
	if (r == -EINVAL || r == -EEXIST)
		PyErr_SetString(PyExc_ValueError, tfd_last_error());
	else
		raise_tfd(r);
}

static int attach(PublisherObject *self, struct tfd_message *msg, const char *name,
		  const struct src_tensor *src)
{
	struct tfd_layout l = { .dtype = src->dtype, .ndim = src->ndim };
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
		return r < 0 ? (raise_add(r), -1) : 0;
	}
	if (self->zero_copy) {
		raise_errno(-EXDEV, "tensor is not in memory from Publisher.empty() and the "
				    "publisher was made with zero_copy=True");
		return -1;
	}
	/* the library copies the span into a pool loan and flags the tensor copied,
	 * so the receiver's msg.copied(name) knows */
	l.byte_offset = empty ? 0 : (uint64_t)(src->data - lo);
	if (!empty && hi - lo >= COPY_NOGIL_BYTES) {
		Py_BEGIN_ALLOW_THREADS
		r = tfd_publisher_add_copy(self->pub, msg, name, lo, &l);
		Py_END_ALLOW_THREADS
	} else {
		r = tfd_publisher_add_copy(self->pub, msg, name, empty ? empty_data : lo, &l);
	}
	if (r < 0) {
		if (r == -EINVAL || r == -EEXIST)
			raise_add(r);
		else
			raise_errno(r, tfd_last_error());
		return -1;
	}
	return 0;
}

static int send_one(PublisherObject *self, struct tfd_message *msg,
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
	if (r == 0) {
		r = meta_add(msg, name, keep ? keep : v);
		Py_XDECREF(keep);
		return r;
	}
	if (pub_check(self) < 0)
		r = -1;
	else
		r = attach(self, msg, name, &src);
	Py_DECREF(keep);
	return r;
}

static int send_dict(PublisherObject *self, struct tfd_message *msg,
		     PyObject *d)
{
	PyObject *k, *v, *items;
	Py_ssize_t pos = 0, i;
	int r = 0;

	if (PyDict_Check(d)) {
		while (PyDict_Next(d, &pos, &k, &v)) {
			Py_INCREF(k);
			Py_INCREF(v);
			r = send_one(self, msg, k, v);
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
		r = send_one(self, msg, PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1));
	}
	Py_DECREF(items);
	return r;
}

PyDoc_STRVAR(publisher_send_doc,
"send(values=None, /, **named) -> int\n\n"
"Publish one message to every subscriber and return its sequence number.\n"
"Each named value is a tensor (a torch.Tensor, a numpy.ndarray, or any\n"
"object with __dlpack__ and __dlpack_device__ on the CPU) or metadata (int,\n"
"float, bool, str, bytes, None, numpy scalars; 4 KiB at most in all; ints\n"
"must fit in 64 bits). A mapping may be\n"
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
	PyObject *ret = NULL;
	int r;

	if (!PyArg_ParseTuple(args, "|O:send", &values) || pub_check(self) < 0)
		return NULL;
	r = tfd_message_new(&msg);
	if (r < 0)
		return raise_tfd(r);
	if (values && values != Py_None && send_dict(self, msg, values) < 0)
		goto out;
	if (kw && send_dict(self, msg, kw) < 0)
		goto out;
	if (pub_check(self) < 0)
		goto out;
	r = tfd_publisher_publish(self->pub, msg);
	if (r < 0) {
		raise_tfd(r);
		goto out;
	}
	ret = PyLong_FromUnsignedLongLong(tfd_message_seq(msg));
out:
	tfd_message_unref(msg);
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

PyDoc_STRVAR(publisher_wait_subscribers_doc,
"wait_subscribers(n=1, timeout=None) -> None\n\n"
"Serve the publisher (as dispatch() does) until at least n subscribers are\n"
"attached; TimeoutError, saying how many came, after timeout seconds\n"
"(None: no limit). The GIL is released while it waits.");

static PyObject *publisher_wait_subscribers(PublisherObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "n", "timeout", NULL };
	PyObject *to = NULL;
	unsigned int n = 1;
	uint64_t deadline;
	int ms, r, w;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|IO", kwlist, &n, &to) ||
	    pub_check(self) < 0 || parse_timeout(to, &ms) < 0)
		return NULL;
	deadline = ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)ms;
	for (;;) {
		/* a look without waiting; the waits below release the GIL */
		r = tfd_publisher_wait_subscribers(self->pub, n, 0);
		if (r == 0)
			Py_RETURN_NONE;
		if (r != -ETIMEDOUT)
			return raise_errno(r, tfd_publisher_strerror(self->pub));
		w = wait_readable(tfd_publisher_get_fd(self->pub),
				  deadline < now_ms() + 100 ? deadline : now_ms() + 100);
		if (w < 0 || pub_check(self) < 0)
			return NULL;
		if (now_ms() >= deadline) {
			r = tfd_publisher_wait_subscribers(self->pub, n, 0);
			if (r == 0)
				Py_RETURN_NONE;
			return raise_errno(r, tfd_publisher_strerror(self->pub));
		}
	}
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
	uint64_t v[] = { s.published, s.copied_tensors, s.dropped, s.subscribers,
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
	{ "wait_subscribers", (PyCFunction)(void (*)(void))publisher_wait_subscribers,
	  METH_VARARGS | METH_KEYWORDS, publisher_wait_subscribers_doc },
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

PyTypeObject PublisherType = {
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
