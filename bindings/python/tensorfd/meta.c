/* SPDX-License-Identifier: MIT */
/*
 * Metadata: small Python values (None, bool, int, float, str, bytes) as
 * the library's typed metadata (tfd_message_set_int(3) and friends), so a
 * C program, the tools and Python read the same values.
 */
#include "binding.h"

#include <string.h>

bool is_meta(PyObject *v)
{
	return v == Py_None || PyBool_Check(v) || PyLong_Check(v) || PyFloat_Check(v) ||
	       PyUnicode_Check(v) || PyBytes_Check(v);
}

/* The library's refusals as Python's: a bad value or size is ValueError. */
static int meta_fail(int r)
{
	if (r == -EINVAL || r == -E2BIG || r == -EBUSY)
		PyErr_SetString(PyExc_ValueError, tfd_last_error());
	else
		raise_tfd(r);
	return -1;
}

int meta_add(struct tfd_message *msg, const char *key, PyObject *v)
{
	const char *s;
	long long i;
	int r;

	if (v == Py_None) {
		r = tfd_message_set_null(msg, key);
	} else if (PyBool_Check(v)) {
		r = tfd_message_set_bool(msg, key, v == Py_True);
	} else if (PyLong_Check(v)) {
		i = PyLong_AsLongLong(v);
		if (i == -1 && PyErr_Occurred()) {
			if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
				PyErr_Clear();
				PyErr_Format(PyExc_OverflowError,
					     "metadata '%s': int %R does not fit in 64 bits", key, v);
			}
			return -1;
		}
		r = tfd_message_set_int(msg, key, i);
	} else if (PyFloat_Check(v)) {
		r = tfd_message_set_float(msg, key, PyFloat_AS_DOUBLE(v));
	} else if (PyUnicode_Check(v)) {
		s = PyUnicode_AsUTF8(v);
		if (!s)
			return -1;
		r = tfd_message_set_string(msg, key, s);
	} else {
		r = tfd_message_set_bytes(msg, key, PyBytes_AS_STRING(v),
					  (size_t)PyBytes_GET_SIZE(v));
	}
	return r < 0 ? meta_fail(r) : 0;
}

static PyObject *meta_value(const struct tfd_message *m, const char *key, int type)
{
	const char *s;
	const void *b;
	size_t len;
	int64_t i;
	double f;
	bool t;

	switch (type) {
	case TFD_META_NULL:
		return Py_NewRef(Py_None);
	case TFD_META_BOOL:
		return tfd_message_get_bool(m, key, &t) < 0 ? NULL : PyBool_FromLong(t);
	case TFD_META_INT:
		return tfd_message_get_int(m, key, &i) < 0 ? NULL : PyLong_FromLongLong(i);
	case TFD_META_FLOAT:
		return tfd_message_get_float(m, key, &f) < 0 ? NULL : PyFloat_FromDouble(f);
	case TFD_META_STRING:
		return tfd_message_get_string(m, key, &s) < 0 ? NULL : PyUnicode_FromString(s);
	case TFD_META_BYTES:
		return tfd_message_get_bytes(m, key, &b, &len) < 0 ?
			       NULL : PyBytes_FromStringAndSize(b, (Py_ssize_t)len);
	}
	return NULL;
}

/* A message's metadata as a dict; NULL without an exception when a peer's is malformed. */
PyObject *meta_dict(const struct tfd_message *m)
{
	int n = tfd_message_meta_count(m), i, type;
	PyObject *d, *k, *v;
	const char *key;

	if (n < 0)
		return NULL;
	d = PyDict_New();
	for (i = 0; d && i < n; i++) {
		type = tfd_message_meta_key(m, (unsigned int)i, &key);
		v = type > 0 ? meta_value(m, key, type) : NULL;
		k = v ? PyUnicode_FromString(key) : NULL;
		if (!k || PyDict_SetItem(d, k, v) < 0) {
			Py_XDECREF(k);
			Py_XDECREF(v);
			Py_CLEAR(d);
			break;
		}
		Py_DECREF(k);
		Py_DECREF(v);
	}
	if (!d)
		PyErr_Clear();
	return d;
}

/* The decoder on arbitrary bytes, as if a peer had sent them (for the tests). */
PyObject *meta_decode(const char *p, size_t len)
{
	struct tfd_message *m;
	PyObject *d = NULL;

	if (tfd_message_new(&m) < 0)
		return NULL;
	if (tfd_message_set_user_data(m, p, len) == 0 && len)
		d = meta_dict(m);
	tfd_message_unref(m);
	return d;
}
