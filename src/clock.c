/* SPDX-License-Identifier: MIT */
/*
 * Time: the monotonic clock every timestamp and deadline uses, and the one
 * conversion from a caller's timeout to a deadline and back to the
 * milliseconds a poll(2) may still wait.
 */
#include <time.h>

#include "internal.h"

uint64_t tfd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : tfd_now_ns() + (uint64_t)timeout_ms * 1000000;
}

int ms_left(uint64_t deadline, int cap_ms)
{
	uint64_t now, ms;

	if (deadline == UINT64_MAX)
		return cap_ms;
	now = tfd_now_ns();
	if (now >= deadline)
		return 0;
	/* rounded up: a wait of 0 ms would spin until the deadline */
	ms = (deadline - now + 999999) / 1000000;
	if (cap_ms >= 0 && ms > (uint64_t)cap_ms)
		return cap_ms;
	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}
