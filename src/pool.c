/* SPDX-License-Identifier: MIT */
/*
 * A publisher's buffer pool. The pool holds one reference on each of its
 * buffers; a buffer is free when nothing else holds it but the channels
 * whose peers know its fd (no application reference, no message, nothing
 * in flight). Loans take the smallest free buffer that fits without
 * wasting more than half of it, else allocate within the limits, evicting
 * free buffers of the wrong size when the limits are reached.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "pool.h"

#define DEFAULT_MAX_BUFFERS 64
#define DEFAULT_MAX_BYTES (4ull << 30)

void pool_init(struct pool *p)
{
	p->bufs = NULL;
	p->n = 0;
	p->cap = 0;
	p->cursor = 0;
	p->bytes = 0;
	p->max_buffers = DEFAULT_MAX_BUFFERS;
	p->max_bytes = DEFAULT_MAX_BYTES;
}

void pool_free(struct pool *p)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		p->bufs[i]->pool = NULL;
		tfd_buffer_unref(p->bufs[i]);
	}
	free(p->bufs);
	pool_init(p);
}

bool pool_owns(const struct pool *p, const struct tfd_buffer *b)
{
	return b->pool == p;
}

static bool is_free(const struct tfd_buffer *b)
{
	return b->refs == 1 + b->known;
}

static void evict(struct pool *p, size_t i)
{
	struct tfd_buffer *b = p->bufs[i];

	p->bytes -= b->size;
	p->bufs[i] = p->bufs[--p->n];
	b->pool = NULL;
	/* channels forget it on their next send or dispatch */
	tfd_buffer_unref(b);
}

/*
 * Never lend b again: a peer that was let go may still read it. It lives on
 * as an ordinary buffer while anything holds it, and its place in the pool
 * is free at once.
 */
void pool_disown(struct pool *p, struct tfd_buffer *b)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (p->bufs[i] == b) {
			evict(p, i);
			return;
		}
}

int pool_loan(struct pool *p, uint64_t size, struct tfd_buffer **ret)
{
	struct tfd_buffer *b, **bufs;
	size_t i, k, best = SIZE_MAX;
	int r;

	if (size == 0)
		return tfd_fail(NULL, 0, -EINVAL, "a loan of 0 bytes");
	size = page_round(size);
	/*
	 * Next fit: buffers come back in about the order they went out, so
	 * the one after the last loan is the likeliest free one, and a free
	 * buffer of exactly this size is a best fit that ends the search. A
	 * deep queue (thousands of buffers) then costs one look per loan, not
	 * a walk of the pool.
	 */
	for (k = 0; k < p->n; k++) {
		i = (p->cursor + k) % p->n;
		b = p->bufs[i];
		if (!is_free(b) || b->size < size || b->size / 2 > size)
			continue;
		if (best == SIZE_MAX || b->size < p->bufs[best]->size)
			best = i;
		if (b->size == size)
			break;
	}
	if (best != SIZE_MAX) {
		p->cursor = best + 1;
		*ret = tfd_buffer_ref(p->bufs[best]);
		return 0;
	}
	/* make room: drop free buffers of other sizes while over a limit */
	for (i = p->n; i-- > 0 && (p->n + 1 > p->max_buffers || p->bytes + size > p->max_bytes);)
		if (is_free(p->bufs[i]))
			evict(p, i);
	if (p->n + 1 > p->max_buffers)
		return tfd_fail(NULL, 0, -ENOBUFS, "pool limit of %u buffers reached, all in use",
				p->max_buffers);
	if (p->bytes + size > p->max_bytes)
		return tfd_fail(NULL, 0, -ENOBUFS,
				"pool limit of %llu bytes reached (%llu in use, %llu asked)",
				(unsigned long long)p->max_bytes, (unsigned long long)p->bytes,
				(unsigned long long)size);
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;

		bufs = realloc(p->bufs, cap * sizeof(*bufs));
		if (!bufs)
			return fail_nomem();
		p->bufs = bufs;
		p->cap = cap;
	}
	r = tfd_buffer_new(size, 0, &b);
	if (r < 0)
		return r;
	b->pool = p;
	p->bufs[p->n++] = b;
	p->bytes += size;
	*ret = tfd_buffer_ref(b);
	return 0;
}

void pool_stats(const struct pool *p, uint64_t *buffers, uint64_t *bytes, uint64_t *busy,
		uint64_t *busy_bytes)
{
	size_t i;

	*buffers = p->n;
	*bytes = p->bytes;
	*busy = 0;
	*busy_bytes = 0;
	for (i = 0; i < p->n; i++)
		if (!is_free(p->bufs[i])) {
			(*busy)++;
			*busy_bytes += p->bufs[i]->size;
		}
}
