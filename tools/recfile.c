/* SPDX-License-Identifier: MIT */
/*
 * Writing and reading record files (see recfile.h). The reader treats the
 * file as hostile: header lengths are capped, the JSON parser knows only
 * what the format needs and bounds its depth, every tensor's byte range
 * must match its dtype and shape, and the ranges must tile the data
 * section from 0 without gaps or overlaps, as safetensors requires.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cliutil.h"
#include "recfile.h"

#define MAX_DEPTH 8
#define IOV_CHUNK 64

/* --- writing --- */

static int write_all(int fd, struct iovec *iov, int n)
{
	ssize_t w;

	while (n) {
		w = writev(fd, iov, n > IOV_CHUNK ? IOV_CHUNK : n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (n && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Pad the JSON with spaces to a multiple of 8 (safetensors allows it) and write it. */
static int write_doc(int fd, char *json, size_t len, struct iovec *data, int n_data)
{
	struct iovec iov[TFD_MAX_TENSORS + 2];
	size_t padded = (len + 7) & ~(size_t)7;
	uint64_t hlen = padded;	/* little-endian, as the host */

	memset(json + len, ' ', padded - len);
	iov[0] = (struct iovec){ &hlen, sizeof(hlen) };
	iov[1] = (struct iovec){ json, padded };
	if (n_data)
		memcpy(iov + 2, data, (size_t)n_data * sizeof(*data));
	return write_all(fd, iov, n_data + 2);
}

int rec_write_start(int fd, const char *const *topics, unsigned int n)
{
	char *json = NULL;
	size_t len = 0;
	unsigned int i;
	FILE *f;
	int r;

	f = open_memstream(&json, &len);
	if (!f)
		return -ENOMEM;
	fprintf(f, "{\"__metadata__\":{\"format\":\"%s\",\"version\":\"%s\",\"topics\":\"",
		REC_FORMAT, REC_VERSION);
	for (i = 0; i < n; i++) {
		fputs(i ? "," : "", f);
		json_chars(f, topics[i]);
	}
	fprintf(f, "\"}}        ");
	if (fclose(f) != 0)
		return -ENOMEM;
	r = write_doc(fd, json, len - 8, NULL, 0);
	free(json);
	return r;
}

/*
 * How one tensor goes into the file: C-contiguous as safetensors has it,
 * a gathered copy of a strided view, or, when its elements alias (a
 * stride of 0 broadcasts, overlapping strides), the bytes of its span with
 * its strides, because a dense copy would be larger than what it spans.
 * 1 and a reason in err when the tensor cannot be written.
 */
static int tensor_plan(const struct tfd_message *m, unsigned int i, const char *base,
		       uint64_t *lo, uint64_t *sz, bool *strided, char *err, size_t errlen)
{
	const struct tfd_layout *l = tfd_message_layout(m, i);
	const char *name = tfd_message_name(m, i);
	uint64_t hi, nbytes;
	char dt[32];

	if (!strcmp(name, "__metadata__")) {
		snprintf(err, errlen, "tensor name __metadata__ is reserved in safetensors");
		return 1;
	}
	if (!dtype_st_name(l->dtype)) {
		snprintf(err, errlen, "tensor %s: dtype %s has no safetensors name", name,
			 dtype_name(l->dtype, dt, sizeof(dt)));
		return 1;
	}
	if (!base) {
		snprintf(err, errlen, "tensor %s is not in host memory", name);
		return 1;
	}
	if (tfd_layout_span(l, lo, &hi) < 0 || tfd_layout_nbytes(l, &nbytes) < 0) {
		snprintf(err, errlen, "tensor %s: %s", name, tfd_last_error());
		return 1;
	}
	*strided = nbytes > hi - *lo;
	*sz = *strided ? hi - *lo : nbytes;
	return 0;
}

int rec_write_msg(int fd, const char *topic, uint64_t t_ns, const struct tfd_message *m,
		  uint64_t *bytes, char *err, size_t errlen)
{
	struct iovec data[TFD_MAX_TENSORS];
	void *copies[TFD_MAX_TENSORS] = { NULL };
	int n = tfd_message_count(m), i, j, r = 0;
	char *json = NULL;
	uint64_t off = 0, sz, lo;
	const unsigned char *u;
	size_t len = 0, ulen, k;
	bool strided;
	FILE *f;

	f = open_memstream(&json, &len);
	if (!f)
		return -ENOMEM;
	fprintf(f, "{\"__metadata__\":{\"topic\":");
	json_string(f, topic);
	fprintf(f, ",\"seq\":\"%llu\",\"t_ns\":\"%llu\",\"timestamp\":\"%llu\"",
		(unsigned long long)tfd_message_seq(m), (unsigned long long)t_ns,
		(unsigned long long)tfd_message_timestamp(m));
	u = tfd_message_get_user_data(m, &ulen);
	if (ulen) {
		fprintf(f, ",\"user_data\":\"");
		for (k = 0; k < ulen; k++)
			fprintf(f, "%02x", u[k]);
		fprintf(f, "\"");
	}
	fprintf(f, "}");
	for (i = 0; i < n && r == 0; i++) {
		const struct tfd_layout *l = tfd_message_layout(m, (unsigned int)i);
		const char *base = tfd_buffer_data(tfd_message_buffer(m, (unsigned int)i));

		r = tensor_plan(m, (unsigned int)i, base, &lo, &sz, &strided, err, errlen);
		if (r)
			break;
		fputc(',', f);
		json_string(f, tfd_message_name(m, (unsigned int)i));
		fprintf(f, ":{\"dtype\":\"%s\",\"shape\":[", dtype_st_name(l->dtype));
		for (j = 0; j < l->ndim; j++)
			fprintf(f, "%s%lld", j ? "," : "", (long long)l->shape[j]);
		if (strided) {
			fprintf(f, "],\"strides\":[");
			for (j = 0; j < l->ndim; j++)
				fprintf(f, "%s%lld", j ? "," : "", (long long)l->strides[j]);
			fprintf(f, "],\"byte_offset\":%llu",
				(unsigned long long)(l->byte_offset - lo));
		} else {
			fprintf(f, "]");
		}
		fprintf(f, ",\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
			(unsigned long long)(off + sz));
		off += sz;
		if (strided || tfd_layout_is_contiguous(l)) {
			data[i] = (struct iovec){ (void *)(base + (strided ? lo : l->byte_offset)), sz };
			continue;
		}
		copies[i] = malloc(sz ? sz : 1);
		if (!copies[i]) {
			snprintf(err, errlen, "no memory for a copy of tensor %s (%llu bytes)",
				 tfd_message_name(m, (unsigned int)i), (unsigned long long)sz);
			r = 1;
			break;
		}
		tensor_gather(l, base, copies[i]);
		data[i] = (struct iovec){ copies[i], sz };
	}
	fprintf(f, "}        ");
	if (fclose(f) != 0 && r == 0)
		r = -ENOMEM;
	if (r == 0)
		r = write_doc(fd, json, len - 8, data, n);
	for (i = 0; i < n; i++)
		free(copies[i]);
	free(json);
	if (r == 0 && bytes)
		*bytes = off;
	return r;
}

/* --- reading: a JSON subset parser --- */

struct jp {
	const char *p, *end;
	char *err;
	size_t errlen;
};

static int jfail(struct jp *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int jfail(struct jp *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->err, j->errlen, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

static void ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r'))
		j->p++;
}

static int expect(struct jp *j, char c)
{
	ws(j);
	if (j->p >= j->end || *j->p != c)
		return jfail(j, "expected '%c' in the header", c);
	j->p++;
	return 0;
}

static bool peek(struct jp *j, char c)
{
	ws(j);
	return j->p < j->end && *j->p == c;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
		: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int jstring(struct jp *j, char *out, size_t cap)
{
	size_t n = 0;
	int r, v, k;
	char c;

	r = expect(j, '"');
	if (r < 0)
		return r;
	for (;;) {
		if (j->p >= j->end)
			return jfail(j, "unterminated string");
		c = *j->p++;
		if (c == '"')
			break;
		if ((unsigned char)c < 0x20)
			return jfail(j, "control byte in a string");
		if (c == '\\') {
			if (j->p >= j->end)
				return jfail(j, "unterminated string");
			c = *j->p++;
			switch (c) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case '"': case '\\': case '/': break;
			case 'u':
				if (j->end - j->p < 4)
					return jfail(j, "short \\u escape");
				for (v = 0, k = 0; k < 4; k++) {
					if (hexval(j->p[k]) < 0)
						return jfail(j, "bad \\u escape");
					v = v * 16 + hexval(j->p[k]);
				}
				j->p += 4;
				if (v == 0 || v > 0x7f)
					return jfail(j, "\\u escape outside ASCII");
				c = (char)v;
				break;
			default:
				return jfail(j, "bad escape");
			}
		}
		if (n + 1 >= cap)
			return jfail(j, "string longer than %zu bytes", cap - 1);
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

static int jint(struct jp *j, int64_t *v)
{
	int64_t x = 0;
	const char *start;

	ws(j);
	start = j->p;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
		if (x > (INT64_MAX - 9) / 10)
			return jfail(j, "number too large");
		x = x * 10 + (*j->p++ - '0');
	}
	if (j->p == start)
		return jfail(j, "expected a non-negative integer");
	*v = x;
	return 0;
}

static int jsint(struct jp *j, int64_t *v)
{
	bool neg;
	int r;

	ws(j);
	neg = j->p < j->end && *j->p == '-';
	j->p += neg;
	r = jint(j, v);
	if (neg)
		*v = -*v;
	return r;
}

static int jskip(struct jp *j, int depth)
{
	char tmp[256];
	int64_t v;
	int r;

	if (depth > MAX_DEPTH)
		return jfail(j, "header nested too deeply");
	ws(j);
	if (j->p >= j->end)
		return jfail(j, "truncated header");
	if (*j->p == '"')
		return jstring(j, tmp, sizeof(tmp));
	if (*j->p == '{' || *j->p == '[') {
		char close = *j->p == '{' ? '}' : ']';
		bool obj = close == '}';

		j->p++;
		if (peek(j, close)) {
			j->p++;
			return 0;
		}
		for (;;) {
			if (obj && ((r = jstring(j, tmp, sizeof(tmp))) < 0 || (r = expect(j, ':')) < 0))
				return r;
			r = jskip(j, depth + 1);
			if (r < 0)
				return r;
			if (peek(j, ',')) {
				j->p++;
				continue;
			}
			return expect(j, close);
		}
	}
	if (j->end - j->p >= 4 && (!strncmp(j->p, "true", 4) || !strncmp(j->p, "null", 4))) {
		j->p += 4;
		return 0;
	}
	if (j->end - j->p >= 5 && !strncmp(j->p, "false", 5)) {
		j->p += 5;
		return 0;
	}
	if (*j->p == '-')
		j->p++;
	return jint(j, &v);
}

/* "key": "value" pairs of __metadata__, handed to fn. */
static int jmeta(struct jp *j, int (*fn)(struct jp *j, const char *k, const char *v, void *arg),
		 void *arg)
{
	static char key[256], val[2 * TFD_MAX_USER_DATA + 1];
	int r;

	r = expect(j, '{');
	if (r < 0 || peek(j, '}'))
		return r < 0 ? r : expect(j, '}');
	for (;;) {
		if ((r = jstring(j, key, sizeof(key))) < 0 || (r = expect(j, ':')) < 0 ||
		    (r = jstring(j, val, sizeof(val))) < 0 || (r = fn(j, key, val, arg)) < 0)
			return r;
		if (!peek(j, ','))
			return expect(j, '}');
		j->p++;
	}
}

static int jtensor(struct jp *j, struct rec_tensor *t)
{
	char key[64], dt[16];
	bool have_dtype = false, have_shape = false, have_offsets = false;
	int64_t v[2], strides_v[TFD_MAX_NDIM];
	int r, n_strides = 0;

	r = expect(j, '{');
	while (r == 0) {
		if ((r = jstring(j, key, sizeof(key))) < 0 || (r = expect(j, ':')) < 0)
			return r;
		if (!strcmp(key, "dtype")) {
			r = jstring(j, dt, sizeof(dt));
			if (r == 0 && dtype_st_parse(dt, &t->dtype) < 0)
				return jfail(j, "tensor %s: unknown dtype %s", t->name, dt);
			have_dtype = true;
		} else if (!strcmp(key, "shape") || !strcmp(key, "data_offsets") ||
			   !strcmp(key, "strides")) {
			bool shape = key[0] == 's', strides = key[1] == 't';
			int n = 0;

			r = expect(j, '[');
			while (r == 0 && !peek(j, ']')) {
				if (n && (r = expect(j, ',')) < 0)
					break;
				if (shape ? n == TFD_MAX_NDIM : n == 2)
					return jfail(j, "tensor %s: too many %s", t->name, key);
				r = strides ? jsint(j, &strides_v[n])
					    : jint(j, shape ? &t->shape[n] : &v[n]);
				n++;
			}
			if (r == 0)
				r = expect(j, ']');
			if (strides) {
				n_strides = n;
				t->strided = true;
			} else if (shape) {
				t->ndim = n;
				have_shape = true;
			} else if (n != 2) {
				return jfail(j, "tensor %s: data_offsets needs 2 numbers", t->name);
			} else {
				t->begin = (uint64_t)v[0];
				t->end = (uint64_t)v[1];
				have_offsets = true;
			}
		} else if (!strcmp(key, "byte_offset")) {
			r = jint(j, &v[0]);
			t->byte_offset = (uint64_t)v[0];
		} else {
			r = jskip(j, 2);
		}
		if (r < 0)
			return r;
		if (!peek(j, ','))
			break;
		j->p++;
	}
	if (r == 0)
		r = expect(j, '}');
	if (r == 0 && !(have_dtype && have_shape && have_offsets))
		return jfail(j, "tensor %s lacks dtype, shape or data_offsets", t->name);
	if (r == 0 && t->strided && n_strides != t->ndim)
		return jfail(j, "tensor %s: %d strides for %d dimensions", t->name, n_strides,
			     t->ndim);
	memcpy(t->strides, strides_v, sizeof(int64_t) * (size_t)n_strides);
	return r;
}

struct meta_arg {
	struct rec_msg *m;
	struct rec_file_info *info;
	bool format_ok;
};

static int u64_of(struct jp *j, const char *s, uint64_t *v)
{
	if (parse_uint(s, v) < 0)
		return jfail(j, "metadata number '%.32s' is not one", s);
	return 0;
}

static int meta_msg(struct jp *j, const char *k, const char *v, void *arg)
{
	struct rec_msg *m = ((struct meta_arg *)arg)->m;
	size_t n, i;

	if (!strcmp(k, "topic")) {
		if (strlen(v) > TFD_TOPIC_MAX)
			return jfail(j, "topic name too long");
		strcpy(m->topic, v);
	} else if (!strcmp(k, "seq")) {
		return u64_of(j, v, &m->seq);
	} else if (!strcmp(k, "t_ns")) {
		return u64_of(j, v, &m->t_ns);
	} else if (!strcmp(k, "timestamp")) {
		return u64_of(j, v, &m->timestamp);
	} else if (!strcmp(k, "user_data")) {
		n = strlen(v);
		if (n % 2 || n / 2 > TFD_MAX_USER_DATA)
			return jfail(j, "bad user_data");
		for (i = 0; i < n / 2; i++) {
			if (hexval(v[2 * i]) < 0 || hexval(v[2 * i + 1]) < 0)
				return jfail(j, "bad user_data");
			m->user[i] = (unsigned char)(hexval(v[2 * i]) * 16 + hexval(v[2 * i + 1]));
		}
		m->user_len = n / 2;
	}
	return 0;
}

static int meta_start(struct jp *j, const char *k, const char *v, void *arg)
{
	struct meta_arg *a = arg;
	const char *p = v, *comma;
	size_t n;

	if (!strcmp(k, "format")) {
		a->format_ok = !strcmp(v, REC_FORMAT);
	} else if (!strcmp(k, "version")) {
		if (strcmp(v, REC_VERSION))
			return jfail(j, "record format version %.16s, this reads %s", v, REC_VERSION);
	} else if (!strcmp(k, "topics")) {
		while (*p) {
			comma = strchr(p, ',');
			n = comma ? (size_t)(comma - p) : strlen(p);
			if (a->info->n_topics == REC_MAX_TOPICS || n == 0 || n > TFD_TOPIC_MAX)
				return jfail(j, "bad topics list");
			memcpy(a->info->topics[a->info->n_topics], p, n);
			a->info->topics[a->info->n_topics++][n] = '\0';
			p += n + (comma ? 1 : 0);
		}
	}
	return 0;
}

/* Read one document's header at *pos into a buffer of its own. */
static int read_header(int fd, uint64_t *pos, char **json, uint64_t *len, char *err,
		       size_t errlen)
{
	uint64_t hlen;
	ssize_t n;

	n = pread(fd, &hlen, sizeof(hlen), (off_t)*pos);
	if (n == 0)
		return 0;
	if (n != sizeof(hlen)) {
		snprintf(err, errlen, "truncated document at offset %llu", (unsigned long long)*pos);
		return n < 0 ? -errno : -EBADMSG;
	}
	if (hlen < 2 || hlen > REC_HEADER_MAX) {
		snprintf(err, errlen, "header of %llu bytes at offset %llu",
			 (unsigned long long)hlen, (unsigned long long)*pos);
		return -EBADMSG;
	}
	*json = malloc(hlen);
	if (!*json)
		return -ENOMEM;
	if (pread(fd, *json, hlen, (off_t)(*pos + 8)) != (ssize_t)hlen) {
		free(*json);
		snprintf(err, errlen, "truncated header at offset %llu", (unsigned long long)*pos);
		return -EBADMSG;
	}
	*len = hlen;
	*pos += 8 + hlen;
	return 1;
}

int rec_read_start(int fd, uint64_t *pos, struct rec_file_info *info, char *err, size_t errlen)
{
	struct meta_arg a = { .info = info };
	struct jp j = { .err = err, .errlen = errlen };
	char *json, key[32];
	uint64_t len;
	int r;

	memset(info, 0, sizeof(*info));
	r = read_header(fd, pos, &json, &len, err, errlen);
	if (r <= 0) {
		if (r == 0)
			snprintf(err, errlen, "empty file");
		return r < 0 ? r : -EBADMSG;
	}
	j.p = json;
	j.end = json + len;
	if ((r = expect(&j, '{')) == 0 && (r = jstring(&j, key, sizeof(key))) == 0 &&
	    (r = expect(&j, ':')) == 0) {
		if (strcmp(key, "__metadata__"))
			r = jfail(&j, "the first document has no __metadata__");
		else
			r = jmeta(&j, meta_start, &a);
	}
	if (r == 0)
		r = expect(&j, '}');
	if (r == 0 && !a.format_ok)
		r = jfail(&j, "not a %s file", REC_FORMAT);
	free(json);
	return r;
}

static int by_begin(const void *a, const void *b)
{
	const struct rec_tensor *x = a, *y = b;

	return x->begin < y->begin ? -1 : x->begin > y->begin;
}

void rec_layout(const struct rec_tensor *t, struct tfd_layout *l)
{
	if (tfd_layout_init(l, t->dtype, t->ndim, t->shape) < 0)
		memset(l, 0, sizeof(*l));	/* the dtype: tfd_layout_span refuses it */
	if (t->strided) {
		memcpy(l->strides, t->strides, sizeof(l->strides));
		l->byte_offset = t->byte_offset;
	}
}

/*
 * Each range holds exactly its tensor: its dense size (dtype times shape),
 * or for a strided one its span, from the range's first byte (the library's
 * tfd_layout_span decides). Together the ranges tile [0, data_len).
 */
static int check_ranges(struct rec_msg *m, char *err, size_t errlen)
{
	struct rec_tensor sorted[TFD_MAX_TENSORS];
	struct tfd_layout l;
	uint64_t lo, hi, at = 0;
	unsigned int i;
	bool fits;

	for (i = 0; i < m->n; i++) {
		struct rec_tensor *t = &m->t[i];

		rec_layout(t, &l);
		if (t->strided)
			fits = tfd_layout_span(&l, &lo, &hi) == 0 && lo == 0;
		else
			fits = tfd_layout_nbytes(&l, &hi) == 0;
		if (!fits || t->end < t->begin || t->end - t->begin != hi) {
			snprintf(err, errlen, "tensor %s: byte range does not match its %s", t->name,
				 t->strided ? "shape and strides" : "shape");
			return -EBADMSG;
		}
	}
	memcpy(sorted, m->t, m->n * sizeof(*sorted));
	qsort(sorted, m->n, sizeof(*sorted), by_begin);
	for (i = 0; i < m->n; i++) {
		if (sorted[i].begin != at) {
			snprintf(err, errlen, "tensor %s: data has a gap or overlap", sorted[i].name);
			return -EBADMSG;
		}
		at = sorted[i].end;
	}
	m->data_len = at;
	return 0;
}

int rec_read_msg(int fd, uint64_t *pos, struct rec_msg *m, char *err, size_t errlen)
{
	struct meta_arg a = { .m = m };
	struct jp j = { .err = err, .errlen = errlen };
	char *json, key[TFD_NAME_MAX + 16];
	bool first = true;
	uint64_t len;
	int r;

	memset(m, 0, offsetof(struct rec_msg, user));
	m->user_len = 0;
	r = read_header(fd, pos, &json, &len, err, errlen);
	if (r <= 0)
		return r;
	j.p = json;
	j.end = json + len;
	r = expect(&j, '{');
	while (r == 0 && !peek(&j, '}')) {
		if (!first && (r = expect(&j, ',')) < 0)
			break;
		first = false;
		r = jstring(&j, key, sizeof(key));
		if (r == 0)
			r = expect(&j, ':');
		if (r < 0)
			break;
		if (!strcmp(key, "__metadata__")) {
			r = jmeta(&j, meta_msg, &a);
			if (r == 0 && !m->topic[0])
				r = jfail(&j, "message without a topic");
			continue;
		}
		if (m->n == TFD_MAX_TENSORS) {
			r = jfail(&j, "more than %d tensors", TFD_MAX_TENSORS);
			break;
		}
		if (strlen(key) == 0 || strlen(key) >= TFD_NAME_MAX) {
			r = jfail(&j, "tensor name of %zu bytes", strlen(key));
			break;
		}
		strcpy(m->t[m->n].name, key);
		r = jtensor(&j, &m->t[m->n]);
		m->n++;
	}
	if (r == 0)
		r = expect(&j, '}');
	ws(&j);
	if (r == 0 && j.p != j.end)
		r = jfail(&j, "bytes after the header's JSON");
	if (r == 0 && !m->topic[0])
		r = jfail(&j, "message without __metadata__");
	free(json);
	if (r == 0)
		r = check_ranges(m, err, errlen);
	if (r < 0)
		return r;
	m->data_pos = *pos;
	*pos += m->data_len;
	return 1;
}
