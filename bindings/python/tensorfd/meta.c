/* SPDX-License-Identifier: MIT */
/*
 * Metadata: small Python values (int, float, bool, str, bytes, None) in
 * a message's user data, and their defensive decoding.
 */
#include "binding.h"

#include <string.h>

/* --- metadata: small Python values in the message's user data --- */

/*
 * "TFP1", then per value: a tag byte, the key's length (1 byte) and bytes,
 * then the value: 'i' int64, 'f' double, 'T'/'F' bool, 'n' None, 's' str
 * and 'y' bytes as a 2-byte length and the bytes. Little-endian as on the
 * host (the peers share the machine).
 */
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

bool is_meta(PyObject *v)
{
	return v == Py_None || PyBool_Check(v) || PyLong_Check(v) || PyFloat_Check(v) ||
	       PyUnicode_Check(v) || PyBytes_Check(v);
}

int meta_add(struct meta *m, const char *key, PyObject *v)
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
		if (x.i == -1 && PyErr_Occurred()) {
			if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
				PyErr_Clear();
				PyErr_Format(PyExc_OverflowError,
					     "metadata '%s': int %R does not fit in 64 bits", key, v);
			}
			return -1;
		}
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
PyObject *meta_decode(const char *p, size_t len)
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
