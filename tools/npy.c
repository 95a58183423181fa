/* SPDX-License-Identifier: MIT */
/* Reading .npy headers; see npy.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

#define NPY_HEADER_MAX 65536

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return r;
}

/* The text after 'key': in the header dict, spaces skipped; NULL if absent. */
static const char *value_of(const char *h, const char *key)
{
	char pat[32];
	const char *p;

	snprintf(pat, sizeof(pat), "'%s':", key);
	p = strstr(h, pat);
	if (!p)
		return NULL;
	for (p += strlen(pat); *p == ' '; p++)
		;
	return p;
}

static int parse_descr(const char *v, struct tfd_dtype *d)
{
	unsigned int size;
	char order, kind;
	int n = 0;

	if (sscanf(v, "'%c%c%u'%n", &order, &kind, &size, &n) != 3 || n == 0)
		return -EINVAL;
	if (order == '>' && size > 1)
		return -EOPNOTSUPP;	/* big-endian data on a little-endian host */
	if (order != '<' && order != '|' && order != '=' && order != '>')
		return -EINVAL;
	switch (kind) {
	case 'f':
		if (size != 2 && size != 4 && size != 8)
			return -EINVAL;
		*d = (struct tfd_dtype){ TFD_FLOAT, (uint8_t)(size * 8), 1 };
		return 0;
	case 'i':
	case 'u':
		if (size != 1 && size != 2 && size != 4 && size != 8)
			return -EINVAL;
		*d = (struct tfd_dtype){ kind == 'i' ? TFD_INT : TFD_UINT, (uint8_t)(size * 8), 1 };
		return 0;
	case 'b':
		if (size != 1)
			return -EINVAL;
		*d = (struct tfd_dtype){ TFD_BOOL, 8, 1 };
		return 0;
	case 'c':
		if (size != 8 && size != 16)
			return -EINVAL;
		*d = (struct tfd_dtype){ TFD_COMPLEX, (uint8_t)(size * 8), 1 };
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

static int parse_shape_tuple(const char *v, struct npy *n)
{
	const char *p = v;
	char *end;
	long long x;

	if (*p++ != '(')
		return -EINVAL;
	n->ndim = 0;
	for (;;) {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == ')')
			return 0;
		if (n->ndim == TFD_MAX_NDIM)
			return -E2BIG;
		errno = 0;
		x = strtoll(p, &end, 10);
		if (errno || end == p || x < 0)
			return -EINVAL;
		n->shape[n->ndim++] = x;
		p = end;
		if (*p != ',' && *p != ')' && *p != ' ')
			return -EINVAL;
	}
}

int npy_open(const char *path, struct npy *n, int *fdp, char *err, size_t errlen)
{
	unsigned char pre[12];
	char *h = NULL;
	const char *v;
	uint64_t hlen, count = 1, size;
	struct stat st;
	ssize_t got;
	int fd, r, i;

	memset(n, 0, sizeof(*n));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	got = pread(fd, pre, sizeof(pre), 0);
	if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
		r = fail(err, errlen, -EINVAL, "%s: not a .npy file", path);
		goto out;
	}
	if (pre[6] == 1) {
		hlen = pre[8] | (uint64_t)pre[9] << 8;
		n->data_offset = 10 + hlen;
	} else if ((pre[6] == 2 || pre[6] == 3) && got == 12) {
		hlen = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
		       (uint64_t)pre[11] << 24;
		n->data_offset = 12 + hlen;
	} else {
		r = fail(err, errlen, -EINVAL, "%s: .npy version %u.%u", path, pre[6], pre[7]);
		goto out;
	}
	if (hlen > NPY_HEADER_MAX) {
		r = fail(err, errlen, -EINVAL, "%s: header of %llu bytes", path,
			 (unsigned long long)hlen);
		goto out;
	}
	h = calloc(1, hlen + 1);
	if (!h) {
		r = -ENOMEM;
		goto out;
	}
	if (pread(fd, h, hlen, (off_t)(n->data_offset - hlen)) != (ssize_t)hlen) {
		r = fail(err, errlen, -EINVAL, "%s: truncated header", path);
		goto out;
	}
	v = value_of(h, "descr");
	r = v ? parse_descr(v, &n->dtype) : -EINVAL;
	if (r < 0) {
		r = fail(err, errlen, r, "%s: unsupported or bad 'descr'", path);
		goto out;
	}
	v = value_of(h, "fortran_order");
	if (!v || (strncmp(v, "False", 5) != 0 && strncmp(v, "True", 4) != 0)) {
		r = fail(err, errlen, -EINVAL, "%s: bad 'fortran_order'", path);
		goto out;
	}
	n->fortran = *v == 'T';
	v = value_of(h, "shape");
	r = v ? parse_shape_tuple(v, n) : -EINVAL;
	if (r < 0) {
		r = fail(err, errlen, r, "%s: bad 'shape'", path);
		goto out;
	}
	/*
	 * Every product of sizes (the strides too, where a zero-sized
	 * dimension counts as 1) must fit int64 in bytes, as tensorfd's
	 * layouts want.
	 */
	size = n->dtype.bits / 8;
	for (i = 0; i < n->ndim; i++) {
		uint64_t d = n->shape[i] ? (uint64_t)n->shape[i] : 1;

		if (count > (uint64_t)INT64_MAX / size / d) {
			r = fail(err, errlen, -EOVERFLOW, "%s: shape too large", path);
			goto out;
		}
		count *= d;
	}
	for (i = 0; i < n->ndim; i++)
		if (n->shape[i] == 0)
			count = 0;
	n->data_bytes = count * size;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < n->data_offset + n->data_bytes) {
		r = fail(err, errlen, -EINVAL, "%s: data shorter than its shape says", path);
		goto out;
	}
	*fdp = fd;
	free(h);
	return 0;
out:
	free(h);
	close(fd);
	return r;
}

void npy_layout(const struct npy *n, struct tfd_layout *l)
{
	int64_t s = 1;
	int i;

	tfd_layout_init(l, n->dtype, n->ndim, n->shape);
	if (!n->fortran)
		return;
	for (i = 0; i < n->ndim; i++) {
		l->strides[i] = s;
		s *= n->shape[i] ? n->shape[i] : 1;
	}
}
