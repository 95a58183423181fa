/* SPDX-License-Identifier: MIT */
/*
 * A small hash map from 64-bit ids to pointers: linear probing, deletion
 * by backward shift (no tombstones), so lookups stay short however many
 * buffers and in-flight messages come and go.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static size_t slot_of(uint64_t key, size_t cap)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	return key & (cap - 1);
}

void *idmap_get(const struct idmap *m, uint64_t key)
{
	size_t i;

	if (!m->cap)
		return NULL;
	for (i = slot_of(key, m->cap); m->slots[i].val; i = (i + 1) & (m->cap - 1))
		if (m->slots[i].key == key)
			return m->slots[i].val;
	return NULL;
}

static int idmap_grow(struct idmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct idmap_slot *slots, *old = m->slots;
	size_t i, oldcap = m->cap;

	slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return fail_nomem();
	m->slots = slots;
	m->cap = cap;
	m->count = 0;
	for (i = 0; i < oldcap; i++)
		if (old[i].val)
			idmap_put(m, old[i].key, old[i].val);
	free(old);
	return 0;
}

/* Make room so that the next extra idmap_put() calls cannot fail. */
int idmap_reserve(struct idmap *m, size_t extra)
{
	int r;

	while ((m->count + extra + 1) * 4 > m->cap * 3) {
		r = idmap_grow(m);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Insert or replace; val must not be NULL. */
int idmap_put(struct idmap *m, uint64_t key, void *val)
{
	size_t i;
	int r;

	r = idmap_reserve(m, 0);
	if (r < 0)
		return r;
	for (i = slot_of(key, m->cap); m->slots[i].val; i = (i + 1) & (m->cap - 1))
		if (m->slots[i].key == key) {
			m->slots[i].val = val;
			return 0;
		}
	m->slots[i].key = key;
	m->slots[i].val = val;
	m->count++;
	return 0;
}

void *idmap_del(struct idmap *m, uint64_t key)
{
	size_t mask = m->cap - 1, i, j, home;
	void *val;

	if (!m->cap)
		return NULL;
	for (i = slot_of(key, m->cap);; i = (i + 1) & mask) {
		if (!m->slots[i].val)
			return NULL;
		if (m->slots[i].key == key)
			break;
	}
	val = m->slots[i].val;
	m->slots[i].val = NULL;
	m->count--;
	/* Shift later members of the probe run back into the hole. */
	for (j = (i + 1) & mask; m->slots[j].val; j = (j + 1) & mask) {
		home = slot_of(m->slots[j].key, m->cap);
		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->slots[i] = m->slots[j];
			m->slots[j].val = NULL;
			i = j;
		}
	}
	return val;
}

void idmap_free(struct idmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = 0;
	m->count = 0;
}
