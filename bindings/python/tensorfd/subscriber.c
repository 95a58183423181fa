/* SPDX-License-Identifier: MIT */
/*
 * Subscriber: receives with the GIL released while it waits.
 */
#include "binding.h"

#include <errno.h>

typedef struct {
	PyObject_HEAD
	struct tfd_subscriber *sub;
	enum kind kind;
	int writable;	/* received tensors get private copy-on-write views */
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
	static char *kwlist[] = { "topic", "kind", "writable", NULL };
	PyObject *kind_o = NULL;
	const char *topic;
	int r, writable = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$Op", kwlist, &topic, &kind_o, &writable))
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
	self->writable = writable;
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
		return message_wrap(m, self->kind, self->writable);
	if (r == -EAGAIN || r == -ETIMEDOUT || r == -EINTR)
		Py_RETURN_NONE;
	return raise_errno(r, tfd_subscriber_strerror(self->sub));
}

/*
 * The deadline passed: one last receive with a timeout of its own (1 ms),
 * so that an empty one ends with the library's reason for it (no
 * publisher, gone, held messages, ...) rather than a bare timeout.
 */
static PyObject *recv_last(SubscriberObject *self)
{
	struct tfd_message *m;
	int r;

	Py_BEGIN_ALLOW_THREADS
	r = tfd_subscriber_recv(self->sub, 1, &m);
	Py_END_ALLOW_THREADS
	if (r == 0)
		return message_wrap(m, self->kind, self->writable);
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
		if (w == 0)
			return recv_last(self);
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
"Subscriber(topic, *, kind=None, writable=False)\n\n"
"Receive the messages published on a topic, from now on. The publisher may\n"
"start before or after; after it restarts the subscriber attaches again.\n"
"Attaching happens inside recv()/try_recv() (there is no thread): a\n"
"subscriber that waited for its publisher receives from when it looked.\n"
"kind: what tensors come back as, 'torch' (default when torch can be\n"
"imported), 'numpy' or 'dlpack'. Received tensors are read-only views of\n"
"the publisher's pages (numpy arrays refuse writes; a write into a torch\n"
"tensor stops the interpreter with a message saying so: .clone() what you\n"
"change). writable=True gives every tensor a private copy-on-write mapping\n"
"instead: writable, at the cost of an mmap per tensor and slower first\n"
"reads. Use as a context manager or call close().");

PyTypeObject SubscriberType = {
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
