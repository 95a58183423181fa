/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the typed-metadata block (src/meta.c), which a peer writes
 * into a message's user bytes. The input is those bytes. The reader must
 * accept or refuse them without reading past them; an accepted block must
 * answer every getter for every key with the type iteration gave, and
 * setting the same values, in order, on a new message must give back the
 * very same bytes (the format has one encoding: encode(decode(x)) == x).
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "internal.h"

static void copy_entry(const struct tfd_message *in, struct tfd_message *out, const char *key,
		       int type)
{
	const char *s = NULL;
	const void *b = NULL;
	size_t len = 0;
	int64_t i = 0;
	double f = 0;
	bool t = false;

	switch (type) {
	case TFD_META_NULL:
		FUZZ_CHECK(tfd_message_set_null(out, key) == 0);
		break;
	case TFD_META_BOOL:
		FUZZ_CHECK(tfd_message_get_bool(in, key, &t) == 0);
		FUZZ_CHECK(tfd_message_set_bool(out, key, t) == 0);
		break;
	case TFD_META_INT:
		FUZZ_CHECK(tfd_message_get_int(in, key, &i) == 0);
		FUZZ_CHECK(tfd_message_get_int(in, key, (int64_t *)NULL) == 0);
		FUZZ_CHECK(tfd_message_set_int(out, key, i) == 0);
		break;
	case TFD_META_FLOAT:
		FUZZ_CHECK(tfd_message_get_float(in, key, &f) == 0);
		/* the bytes, not the value: a NaN's payload must survive too */
		FUZZ_CHECK(tfd_message_set_float(out, key, f) == 0);
		break;
	case TFD_META_STRING:
		FUZZ_CHECK(tfd_message_get_string(in, key, &s) == 0 && s);
		FUZZ_CHECK(tfd_message_set_string(out, key, s) == 0);
		break;
	case TFD_META_BYTES:
		FUZZ_CHECK(tfd_message_get_bytes(in, key, &b, &len) == 0);
		FUZZ_CHECK(tfd_message_set_bytes(out, key, b, len) == 0);
		break;
	default:
		FUZZ_CHECK(!"a type outside enum tfd_meta_type");
	}
	/* any other type's getter says -ENOMSG */
	if (type != TFD_META_INT)
		FUZZ_CHECK(tfd_message_get_int(in, key, &i) == -ENOMSG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tfd_message *in, *out;
	const void *again;
	const char *key;
	size_t len;
	int n, k, type;

	if (size > TFD_MAX_USER_DATA)
		return 0;
	if (tfd_message_new(&in) < 0 || tfd_message_set_user_data(in, data, size) < 0)
		__builtin_trap();
	n = tfd_message_meta_count(in);
	FUZZ_CHECK(n >= 0 || n == -EBADMSG);
	FUZZ_CHECK(n <= TFD_META_MAX);
	if (n > 0 || (n == 0 && size >= 12 && !memcmp(data, "TFM1", 4))) {
		if (tfd_message_new(&out) < 0)
			__builtin_trap();
		if (tfd_message_capture_time(in))
			FUZZ_CHECK(tfd_message_set_capture_time(out, tfd_message_capture_time(in)) == 0);
		for (k = 0; k < n; k++) {
			type = tfd_message_meta_key(in, (unsigned int)k, &key);
			FUZZ_CHECK(type >= TFD_META_NULL && type <= TFD_META_BYTES);
			copy_entry(in, out, key, type);
		}
		FUZZ_CHECK(tfd_message_meta_key(in, (unsigned int)n, &key) == -ENOENT);
		again = tfd_message_get_user_data(out, &len);
		/* a header alone with no capture time re-encodes as nothing */
		if (n > 0 || tfd_message_capture_time(in))
			FUZZ_CHECK(len == size && !memcmp(again, data, size));
		tfd_message_unref(out);
	}
	tfd_message_unref(in);
	return 0;
}
