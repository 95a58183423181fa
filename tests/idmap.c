/* SPDX-License-Identifier: MIT */
/*
 * The id map against a plain array model: random inserts, lookups and
 * deletions (backward-shift deletion is easy to get subtly wrong).
 */
#include <stdint.h>

#include "internal.h"
#include "tap.h"

#define KEYS 2000

int main(void)
{
	static void *model[KEYS];
	struct idmap m = { 0 };
	uint64_t x = 88172645463325252ull, k;
	int i, mismatches = 0, count = 0;

	tap_init(30);
	for (i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* keys spread over a few probe runs: multiples of 1024 collide often */
		k = (x % KEYS);
		if (x & (1ull << 40)) {
			if (model[k])
				count--;
			model[k] = NULL;
			idmap_del(&m, k * 1024);
		} else {
			if (!model[k])
				count++;
			model[k] = (void *)(uintptr_t)(i + 1);
			idmap_put(&m, k * 1024, model[k]);
		}
		if (idmap_get(&m, k * 1024) != model[k])
			mismatches++;
	}
	ok(mismatches == 0, "lookups after each operation match the model");
	for (k = 0; k < KEYS; k++)
		if (idmap_get(&m, k * 1024) != model[k])
			mismatches++;
	ok(mismatches == 0, "every key matches the model at the end");
	ok((int)m.count == count, "count %zu matches the model %d", m.count, count);
	ok(idmap_del(&m, 12345) == NULL, "deleting a missing key returns NULL");
	idmap_free(&m);
	ok(idmap_get(&m, 0) == NULL, "an empty map finds nothing");
	return done_testing();
}
