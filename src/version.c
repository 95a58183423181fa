/* SPDX-License-Identifier: MIT */
/*
 * The run-time version query: which release of the library a program runs
 * against, whatever headers it was built with.
 */
#include "internal.h"

TFD_EXPORT unsigned int tfd_version(void)
{
	return TFD_VERSION;
}
