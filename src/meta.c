/* SPDX-License-Identifier: MIT */
/*
 * Typed metadata: small key/value pairs (null, bool, int, float, string,
 * bytes) and a capture time, carried in a message's user data as one
 * block the library defines, so C, Python and the tools read the same
 * values. The block, little-endian as the host:
 *
 *   "TFM1", uint64 capture time (ns, CLOCK_MONOTONIC; 0: none), then per
 *   entry: uint8 type (enum tfd_meta_type), uint8 key length (1..255), the
 *   key and a NUL, then the value: nothing (null), uint8 0/1 (bool), 8 bytes
 *   (int64, double), or uint16 length and the bytes (bytes), plus a NUL
 *   after a string's bytes.
 *
 * A received block is a peer's: every read walks it with bounds checks
 * (lengths, NULs, UTF-8 of keys and strings, no repeated key) and a
 * malformed one is -EBADMSG. User data that does not start with the magic
 * is the application's raw bytes: no metadata, and typed setters refuse to
 * overwrite it.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define META_MAGIC	"TFM1"
#define META_HDR	(4 + 8)

struct meta_entry {
	int type;
	const char *key;	/* NUL-terminated, in the block */
	size_t key_len;
	const char *val;	/* the value's bytes (after a bytes' length) */
	size_t val_len;
	size_t start, end;	/* the entry's bytes in the block */
};

static const char *const type_names[] = {
	[TFD_META_NULL] = "null",   [TFD_META_BOOL] = "bool",	  [TFD_META_INT] = "int",
	[TFD_META_FLOAT] = "float", [TFD_META_STRING] = "string", [TFD_META_BYTES] = "bytes",
};

static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp;

		if (c < 0x80) {
			if (!c)
				return false;	/* NUL ends C strings: not inside one */
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, cp = c & 0x07;
		else
			return false;
		if (n - i - 1 < k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		/* overlong forms, surrogates, past U+10FFFF */
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static bool is_block(const struct tfd_message *msg)
{
	return msg->user_len >= META_HDR && memcmp(msg->user, META_MAGIC, 4) == 0;
}

/* The entry at *off; -EBADMSG with a reason when the block is malformed. */
static int entry_at(const char *p, size_t len, size_t *off, struct meta_entry *e)
{
	size_t o = *off, need;
	uint16_t l16;

	if (len - o < 2)
		return tfd_fail(NULL, 0, -EBADMSG, "metadata: entry header cut at byte %zu", o);
	e->start = o;
	e->type = (unsigned char)p[o];
	e->key_len = (unsigned char)p[o + 1];
	o += 2;
	if (e->type < TFD_META_NULL || e->type > TFD_META_BYTES)
		return tfd_fail(NULL, 0, -EBADMSG, "metadata: unknown type %d at byte %zu", e->type,
				e->start);
	if (e->key_len == 0 || len - o < e->key_len + 1 || p[o + e->key_len] != '\0' ||
	    !utf8_valid((const unsigned char *)p + o, e->key_len))
		return tfd_fail(NULL, 0, -EBADMSG, "metadata: bad key at byte %zu", e->start);
	e->key = p + o;
	o += e->key_len + 1;
	switch (e->type) {
	case TFD_META_NULL:
		need = 0;
		break;
	case TFD_META_BOOL:
		need = 1;
		break;
	case TFD_META_INT:
	case TFD_META_FLOAT:
		need = 8;
		break;
	default:
		if (len - o < 2)
			return tfd_fail(NULL, 0, -EBADMSG, "metadata '%s': length cut", e->key);
		memcpy(&l16, p + o, 2);
		o += 2;
		need = (size_t)l16 + (e->type == TFD_META_STRING);
		break;
	}
	if (len - o < need)
		return tfd_fail(NULL, 0, -EBADMSG, "metadata '%s': value runs past the block",
				e->key);
	e->val = p + o;
	e->val_len = need;
	if (e->type == TFD_META_BOOL && (unsigned char)p[o] > 1)
		return tfd_fail(NULL, 0, -EBADMSG, "metadata '%s': bool is %u", e->key,
				(unsigned char)p[o]);
	if (e->type == TFD_META_STRING) {
		e->val_len = need - 1;
		if (p[o + e->val_len] != '\0' ||
		    !utf8_valid((const unsigned char *)p + o, e->val_len))
			return tfd_fail(NULL, 0, -EBADMSG,
					"metadata '%s': string is not NUL-free UTF-8", e->key);
	}
	*off = o + need;
	e->end = *off;
	return 0;
}

/*
 * Walk the block: the entry called key (or the index-th entry when key is
 * NULL) in *found, and a check of the whole block on the way: -EBADMSG for
 * a malformed block or a repeated key. Returns the number of entries.
 */
static int walk(const struct tfd_message *msg, const char *key, unsigned int index,
		struct meta_entry *found)
{
	const char *p = msg->user;
	const char *keys[TFD_META_MAX];
	size_t off = META_HDR;
	struct meta_entry e;
	unsigned int n = 0;
	int r;

	if (found)
		found->type = 0;
	if (!is_block(msg))
		return 0;
	while (off < msg->user_len) {
		r = entry_at(p, msg->user_len, &off, &e);
		if (r < 0)
			return r;
		if (n == TFD_META_MAX)
			return tfd_fail(NULL, 0, -EBADMSG, "metadata: more than %d entries",
					TFD_META_MAX);
		/* a repeated key would read differently in different languages */
		for (unsigned int i = 0; i < n; i++)
			if (strcmp(keys[i], e.key) == 0)
				return tfd_fail(NULL, 0, -EBADMSG, "metadata: key '%s' repeated",
						e.key);
		keys[n] = e.key;
		if (found && !found->type && (key ? strcmp(e.key, key) == 0 : n == index))
			*found = e;
		n++;
	}
	return (int)n;
}

static int key_check(const char *key)
{
	size_t n;

	if (!key)
		return tfd_fail(NULL, 0, -EINVAL, "metadata key is NULL");
	n = strlen(key);
	if (n == 0 || n > 255 || !utf8_valid((const unsigned char *)key, n))
		return tfd_fail(NULL, 0, -EINVAL, "metadata key must be 1 to 255 bytes of UTF-8");
	return 0;
}

/* May msg's metadata be set? Not once received or published, nor over raw user data. */
static int block_settable(const struct tfd_message *msg)
{
	int r;

	if (!msg)
		return tfd_fail(NULL, 0, -EINVAL, "message is NULL");
	r = message_check_mutable(msg);
	if (r < 0)
		return r;
	if (msg->user_len && !is_block(msg))
		return tfd_fail(NULL, 0, -EBUSY,
				"the message carries raw user data (tfd_message_set_user_data)");
	return 0;
}

/* Replace (or add) key's entry with type and value bytes; the block is rebuilt. */
static int meta_set(struct tfd_message *msg, const char *key, int type, const void *val,
		    size_t len)
{
	size_t klen, tail, size, at;
	struct meta_entry old = { 0 };
	uint16_t l16 = (uint16_t)len;
	char *blk;
	int r;

	r = block_settable(msg);
	if (r < 0)
		return r;
	r = key_check(key);
	if (r < 0)
		return r;
	if (is_block(msg)) {
		r = walk(msg, key, 0, &old);
		if (r < 0)
			return r;
		if (!old.type && r == TFD_META_MAX)
			return tfd_fail(NULL, 0, -E2BIG, "metadata is limited to %d entries",
					TFD_META_MAX);
	}
	klen = strlen(key);
	tail = 2 + klen + 1 + (type == TFD_META_STRING || type == TFD_META_BYTES ? 2 : 0) + len +
	       (type == TFD_META_STRING);
	size = (is_block(msg) ? msg->user_len - (old.type ? old.end - old.start : 0) : META_HDR) +
	       tail;
	if (size > TFD_MAX_USER_DATA)
		return tfd_fail(NULL, 0, -E2BIG, "metadata is limited to %d bytes a message",
				TFD_MAX_USER_DATA);
	blk = malloc(size);
	if (!blk)
		return tfd_fail(NULL, 0, -ENOMEM, "out of memory");
	if (is_block(msg)) {
		/* everything but the old entry, in order, then the new one */
		at = old.type ? old.start : msg->user_len;
		memcpy(blk, msg->user, at);
		if (old.type)
			memcpy(blk + at, (char *)msg->user + old.end, msg->user_len - old.end);
		at = msg->user_len - (old.type ? old.end - old.start : 0);
	} else {
		memcpy(blk, META_MAGIC, 4);
		memset(blk + 4, 0, 8);
		at = META_HDR;
	}
	blk[at++] = (char)type;
	blk[at++] = (char)klen;
	memcpy(blk + at, key, klen + 1);
	at += klen + 1;
	if (type == TFD_META_STRING || type == TFD_META_BYTES) {
		memcpy(blk + at, &l16, 2);
		at += 2;
	}
	if (len)
		memcpy(blk + at, val, len);
	at += len;
	if (type == TFD_META_STRING)
		blk[at++] = '\0';
	assert(at == size);
	free(msg->user);
	msg->user = blk;
	msg->user_len = size;
	return 0;
}

TFD_EXPORT int tfd_message_set_null(struct tfd_message *msg, const char *key)
{
	return meta_set(msg, key, TFD_META_NULL, NULL, 0);
}

TFD_EXPORT int tfd_message_set_bool(struct tfd_message *msg, const char *key, bool value)
{
	unsigned char b = value;

	return meta_set(msg, key, TFD_META_BOOL, &b, 1);
}

TFD_EXPORT int tfd_message_set_int(struct tfd_message *msg, const char *key, int64_t value)
{
	return meta_set(msg, key, TFD_META_INT, &value, 8);
}

TFD_EXPORT int tfd_message_set_float(struct tfd_message *msg, const char *key, double value)
{
	return meta_set(msg, key, TFD_META_FLOAT, &value, 8);
}

TFD_EXPORT int tfd_message_set_string(struct tfd_message *msg, const char *key, const char *value)
{
	size_t n;

	if (!value)
		return tfd_fail(NULL, 0, -EINVAL, "metadata '%s': string is NULL", key ? key : "");
	n = strlen(value);
	if (n > UINT16_MAX || !utf8_valid((const unsigned char *)value, n))
		return tfd_fail(NULL, 0, -EINVAL, "metadata '%s': string must be UTF-8 (%zu bytes)",
				key ? key : "", n);
	return meta_set(msg, key, TFD_META_STRING, value, n);
}

TFD_EXPORT int tfd_message_set_bytes(struct tfd_message *msg, const char *key, const void *data,
				     size_t len)
{
	if ((!data && len) || len > UINT16_MAX)
		return tfd_fail(NULL, 0, len > UINT16_MAX ? -E2BIG : -EINVAL,
				"metadata '%s': %zu bytes at %p", key ? key : "", len, data);
	return meta_set(msg, key, TFD_META_BYTES, data, len);
}

TFD_EXPORT int tfd_message_set_capture_time(struct tfd_message *msg, uint64_t ns)
{
	int r;

	r = block_settable(msg);
	if (r < 0)
		return r;
	if (!msg->user_len) {
		char hdr[META_HDR];

		memcpy(hdr, META_MAGIC, 4);
		memset(hdr + 4, 0, 8);
		r = tfd_message_set_user_data(msg, hdr, sizeof(hdr));
		if (r < 0)
			return r;
	}
	memcpy((char *)msg->user + 4, &ns, 8);
	return 0;
}

TFD_EXPORT uint64_t tfd_message_capture_time(const struct tfd_message *msg)
{
	uint64_t ns;

	if (!msg || !is_block(msg))
		return 0;
	memcpy(&ns, (const char *)msg->user + 4, 8);
	return ns;
}

/* The entry called key, of the given type. */
static int meta_find(const struct tfd_message *msg, const char *key, int type,
		     struct meta_entry *e)
{
	int r;

	if (!msg)
		return tfd_fail(NULL, 0, -EINVAL, "message is NULL");
	r = key_check(key);
	if (r < 0)
		return r;
	r = walk(msg, key, 0, e);
	if (r < 0)
		return r;
	if (!e->type)
		return tfd_fail(NULL, 0, -ENOENT, "no metadata '%s'", key);
	if (e->type != type)
		return tfd_fail(NULL, 0, -ENOMSG, "metadata '%s' is %s, not %s", key,
				type_names[e->type], type_names[type]);
	return 0;
}

TFD_EXPORT int tfd_message_get_bool(const struct tfd_message *msg, const char *key, bool *ret)
{
	struct meta_entry e;
	int r = meta_find(msg, key, TFD_META_BOOL, &e);

	if (r == 0 && ret)
		*ret = e.val[0] != 0;
	return r;
}

TFD_EXPORT int tfd_message_get_int(const struct tfd_message *msg, const char *key, int64_t *ret)
{
	struct meta_entry e;
	int r = meta_find(msg, key, TFD_META_INT, &e);

	if (r == 0 && ret)
		memcpy(ret, e.val, 8);
	return r;
}

TFD_EXPORT int tfd_message_get_float(const struct tfd_message *msg, const char *key, double *ret)
{
	struct meta_entry e;
	int r = meta_find(msg, key, TFD_META_FLOAT, &e);

	if (r == 0 && ret)
		memcpy(ret, e.val, 8);
	return r;
}

TFD_EXPORT int tfd_message_get_string(const struct tfd_message *msg, const char *key,
				      const char **ret)
{
	struct meta_entry e;
	int r = meta_find(msg, key, TFD_META_STRING, &e);

	if (r == 0 && ret)
		*ret = e.val;
	return r;
}

TFD_EXPORT int tfd_message_get_bytes(const struct tfd_message *msg, const char *key,
				     const void **ret, size_t *len)
{
	struct meta_entry e;
	int r = meta_find(msg, key, TFD_META_BYTES, &e);

	if (r == 0) {
		if (ret)
			*ret = e.val;
		if (len)
			*len = e.val_len;
	}
	return r;
}

TFD_EXPORT int tfd_message_meta_count(const struct tfd_message *msg)
{
	if (!msg)
		return tfd_fail(NULL, 0, -EINVAL, "message is NULL");
	return walk(msg, NULL, UINT32_MAX, NULL);
}

TFD_EXPORT int tfd_message_meta_key(const struct tfd_message *msg, unsigned int index,
				    const char **key)
{
	struct meta_entry e = { 0 };
	int r;

	if (!msg)
		return tfd_fail(NULL, 0, -EINVAL, "message is NULL");
	r = walk(msg, NULL, index, &e);
	if (r < 0)
		return r;
	if (!e.type)
		return tfd_fail(NULL, 0, -ENOENT, "no metadata entry %u (the message has %d)",
				index, r);
	if (key)
		*key = e.key;
	return e.type;
}
