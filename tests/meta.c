/* SPDX-License-Identifier: MIT */
/*
 * Typed metadata (tfd_message_set_int(3) and friends): every type round
 * trips through a channel, a key set twice keeps its last value, the
 * capture time travels beside it, limits and misuse are refused with a
 * reason, and blocks a peer forged (cut, overlong, repeated keys, bad
 * UTF-8, unknown types) are -EBADMSG at the receiver, never a crash or a
 * read past the message.
 */
#include <string.h>

#include "tap.h"
#include "tensorfd.h"

static struct tfd_channel *tx, *rx;

/* msg sent through the pair; the received copy, or NULL. */
static struct tfd_message *through(struct tfd_message *msg)
{
	struct tfd_message *got = NULL;

	if (tfd_channel_send(tx, msg) < 0 || tfd_channel_recv(rx, 5000, &got) < 0)
		return NULL;
	return got;
}

static void round_trip(void)
{
	struct tfd_message *m, *r;
	const char *s = NULL, *key = NULL;
	const void *b = NULL;
	size_t blen = 0;
	int64_t i = 0;
	double f = 0;
	bool t = false;
	int k, types = 0;

	tfd_message_new(&m);
	ok(tfd_message_set_int(m, "frame", 41) == 0 && tfd_message_set_int(m, "frame", -42) == 0,
	   "an int, set twice");
	ok(tfd_message_set_float(m, "exposure_s", 0.0125) == 0, "a float");
	ok(tfd_message_set_bool(m, "keyframe", true) == 0, "a bool");
	ok(tfd_message_set_string(m, "frame_id", "camera/front \xc3\xa9") == 0, "a UTF-8 string");
	ok(tfd_message_set_bytes(m, "calib", "\0\1\2\3", 4) == 0, "bytes with a NUL");
	ok(tfd_message_set_null(m, "none") == 0, "a null");
	ok(tfd_message_set_capture_time(m, 123456789) == 0, "a capture time");
	ok(tfd_message_meta_count(m) == 6, "6 entries before sending (%d)", tfd_message_meta_count(m));
	r = through(m);
	ok(r != NULL, "sent and received");
	if (!r) {
		tfd_message_unref(m);
		return;
	}
	ok(tfd_message_get_int(r, "frame", &i) == 0 && i == -42, "int: the last value (%lld)",
	   (long long)i);
	ok(tfd_message_get_float(r, "exposure_s", &f) == 0 && f == 0.0125, "float");
	ok(tfd_message_get_bool(r, "keyframe", &t) == 0 && t, "bool");
	ok(tfd_message_get_string(r, "frame_id", &s) == 0 && s && !strcmp(s, "camera/front \xc3\xa9"),
	   "string, NUL-terminated in place");
	ok(tfd_message_get_bytes(r, "calib", &b, &blen) == 0 && blen == 4 && !memcmp(b, "\0\1\2\3", 4),
	   "bytes");
	ok(tfd_message_capture_time(r) == 123456789, "capture time");
	ok(tfd_message_get_int(r, "exposure_s", &i) == -ENOMSG && strstr(tfd_last_error(), "float"),
	   "the wrong type is -ENOMSG and says the type (%s)", tfd_last_error());
	ok(tfd_message_get_int(r, "missing", &i) == -ENOENT && strstr(tfd_last_error(), "missing"),
	   "a missing key is -ENOENT and names it");
	for (k = 0; k < tfd_message_meta_count(r); k++)
		types |= 1 << tfd_message_meta_key(r, (unsigned int)k, &key);
	ok(types == (1 << TFD_META_NULL | 1 << TFD_META_BOOL | 1 << TFD_META_INT |
		     1 << TFD_META_FLOAT | 1 << TFD_META_STRING | 1 << TFD_META_BYTES),
	   "iteration sees each type once (0x%x)", types);
	ok(tfd_message_meta_key(r, 6, &key) == -ENOENT, "past the last entry: -ENOENT");
	ok(tfd_message_set_int(r, "x", 1) == -EPERM, "a received message cannot be changed");
	tfd_message_unref(r);
	tfd_message_unref(m);
}

static void misuse(void)
{
	struct tfd_message *m;
	char key[300], big[TFD_MAX_USER_DATA];
	int k, r = 0;

	tfd_message_new(&m);
	memset(key, 'k', sizeof(key));
	key[256] = 0;
	ok(tfd_message_set_int(m, key, 1) == -EINVAL, "a 256-byte key is refused");
	ok(tfd_message_set_int(m, "", 1) == -EINVAL, "an empty key is refused");
	ok(tfd_message_set_string(m, "s", "\xff\xfe") == -EINVAL, "a string that is not UTF-8");
	memset(big, 'x', sizeof(big));
	ok(tfd_message_set_bytes(m, "big", big, sizeof(big)) == -E2BIG &&
		   strstr(tfd_last_error(), "4096"),
	   "more than the user data holds: -E2BIG (%s)", tfd_last_error());
	for (k = 0; k < TFD_META_MAX && r == 0; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		r = tfd_message_set_null(m, key);
	}
	ok(r == 0 && tfd_message_set_null(m, "one-more") == -E2BIG, "at most %d entries",
	   TFD_META_MAX);
	tfd_message_unref(m);

	tfd_message_new(&m);
	tfd_message_set_user_data(m, "raw", 3);
	ok(tfd_message_set_int(m, "x", 1) == -EBUSY && strstr(tfd_last_error(), "raw"),
	   "typed metadata does not overwrite raw user data (-EBUSY)");
	ok(tfd_message_meta_count(m) == 0, "raw user data has no entries");
	tfd_message_unref(m);

	/* a failing call leaves its own reason, not the one before it */
	ok(tfd_message_set_int(NULL, "x", 1) == -EINVAL && tfd_channel_get_stats(NULL, NULL) ==
		   -EINVAL && strstr(tfd_last_error(), "tfd_channel_get_stats"),
	   "a bare -EINVAL names its call (%s)", tfd_last_error());
}

/* A block as a peer might forge it, sent as raw user data. */
static void forged(const char *what, const void *blk, size_t len, int want)
{
	struct tfd_message *m, *r;
	int64_t i;
	int got;

	tfd_message_new(&m);
	tfd_message_set_user_data(m, blk, len);
	r = through(m);
	got = r ? tfd_message_get_int(r, "a", &i) : -999;
	ok(got == want && (want != -EBADMSG || tfd_message_meta_count(r) == -EBADMSG),
	   "forged block, %s: %d (%s)", what, got, tfd_last_error());
	tfd_message_unref(r);
	tfd_message_unref(m);
}

#define HDR "TFM1\0\0\0\0\0\0\0\0"

static void hostile(void)
{
	static const char cut_value[] = HDR "\x03\x01" "a\0" "\x01\x02";
	static const char no_nul_key[] = HDR "\x03\x01" "ab" "\x01\x02\x03\x04\x05\x06\x07\x08";
	static const char long_key[] = HDR "\x03\xff" "a\0";
	static const char bad_type[] = HDR "\x09\x01" "a\0";
	static const char zero_type[] = HDR "\x00\x01" "a\0";
	static const char repeated[] = HDR "\x01\x01" "b\0" "\x01\x01" "b\0";
	static const char bad_utf8_key[] = HDR "\x01\x02" "\xc3\x28\0";
	static const char str_no_nul[] = HDR "\x05\x01" "s\0" "\x02\x00" "hi" "x";
	static const char str_len_past[] = HDR "\x05\x01" "s\0" "\xff\xff" "hi";
	static const char bool_two[] = HDR "\x02\x01" "t\0" "\x02";
	static const char ok_int[] = HDR "\x03\x01" "a\0" "\x07\0\0\0\0\0\0\0";

	forged("value cut short", cut_value, sizeof(cut_value) - 1, -EBADMSG);
	forged("key without its NUL", no_nul_key, sizeof(no_nul_key) - 1, -EBADMSG);
	forged("key length past the block", long_key, sizeof(long_key) - 1, -EBADMSG);
	forged("unknown type 9", bad_type, sizeof(bad_type) - 1, -EBADMSG);
	forged("type 0", zero_type, sizeof(zero_type) - 1, -EBADMSG);
	forged("a repeated key", repeated, sizeof(repeated) - 1, -EBADMSG);
	forged("a key that is not UTF-8", bad_utf8_key, sizeof(bad_utf8_key) - 1, -EBADMSG);
	forged("a string without its NUL", str_no_nul, sizeof(str_no_nul) - 1, -EBADMSG);
	forged("a string length past the block", str_len_past, sizeof(str_len_past) - 1,
	       -EBADMSG);
	forged("a bool of 2", bool_two, sizeof(bool_two) - 1, -EBADMSG);
	forged("header only", HDR, 12, -ENOENT);
	forged("a well-formed int (control)", ok_int, sizeof(ok_int) - 1, 0);
}

int main(void)
{
	int fds;

	tap_init(60);
	fds = count_fds();
	if (tfd_channel_pair(&tx, &rx) < 0)
		skip_all("no channel pair");
	round_trip();
	misuse();
	hostile();
	tfd_channel_unref(tx);
	tfd_channel_unref(rx);
	ok(count_fds() == fds, "no fd left over (%d, were %d)", count_fds(), fds);
	return done_testing();
}
