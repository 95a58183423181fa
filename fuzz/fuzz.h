/* SPDX-License-Identifier: MIT */
/*
 * The libFuzzer entry points the targets define; fuzz/replay.c calls them
 * on the checked-in corpus so that make check replays every seed and every
 * input that once crashed.
 */
#ifndef TFD_FUZZ_H
#define TFD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: a target that needs set-up once defines it. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant broke: die the way libFuzzer and make check both notice. */
#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
			__builtin_trap(); \
		} \
	} while (0)

#endif
