/* SPDX-License-Identifier: MIT */
/*
 * The module: errors as Python exceptions, timeouts and GIL-free waits,
 * small helpers shared by the types, and the module's init.
 */
#include "binding.h"

#include <poll.h>
#include <string.h>
#include <time.h>

const char *const kind_names[] = { "torch", "numpy", "dlpack" };

/* --- errors --- */

/* An OSError (or its errno subclass: TimeoutError, ConnectionResetError...) */
PyObject *raise_errno(int r, const char *reason)
{
	const char *why = reason && *reason ? reason : strerror(-r);
	PyObject *e = PyObject_CallFunction(PyExc_OSError, "is", -r, why);

	if (e) {
		PyErr_SetObject((PyObject *)Py_TYPE(e), e);
		Py_DECREF(e);
	}
	return NULL;
}

PyObject *raise_tfd(int r)
{
	return raise_errno(r, tfd_last_error());
}

int parse_kind(PyObject *o, enum kind *k)
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

/* timeout in seconds (None: forever) to milliseconds (-1: forever) */
int parse_timeout(PyObject *o, int *ms)
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

uint64_t now_ms(void)
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
int wait_readable(int fd, uint64_t deadline)
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

PyObject *stats_dict(int n, const char *const *names, const uint64_t *vals)
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

PyObject *enter(PyObject *self, PyObject *unused)
{
	return Py_NewRef(self);
}

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

/* The package's version: configure's in the autotools build, the installed
 * library's (pkg-config --modversion) in a pip build. */
#ifndef TFD_BINDING_VERSION
#define TFD_BINDING_VERSION PACKAGE_VERSION
#endif

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
	    PyModule_AddIntConstant(m, "MAX_NDIM", TFD_MAX_NDIM) < 0 ||
	    PyModule_AddStringConstant(m, "__version__", TFD_BINDING_VERSION) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
