/* SPDX-License-Identifier: MIT */
/* A publisher's pool of loanable buffers; see pool.c. */
#ifndef TFD_POOL_H
#define TFD_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "tensorfd.h"

struct pool {
	struct tfd_buffer **bufs;
	size_t n, cap;
	size_t cursor;		/* where the next loan starts looking */
	uint64_t bytes;
	unsigned int max_buffers;
	uint64_t max_bytes;
};

void pool_init(struct pool *p);
void pool_free(struct pool *p);
bool pool_owns(const struct pool *p, const struct tfd_buffer *b);
void pool_disown(struct pool *p, struct tfd_buffer *b);
int pool_loan(struct pool *p, uint64_t size, struct tfd_buffer **ret);
void pool_stats(const struct pool *p, uint64_t *buffers, uint64_t *bytes, uint64_t *busy,
		uint64_t *busy_bytes);

#endif
