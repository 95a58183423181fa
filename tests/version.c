/* SPDX-License-Identifier: MIT */
/*
 * One version everywhere: the header's TFD_VERSION_* macros, configure's
 * PACKAGE_VERSION (config.h, forced into every compile), and what the
 * library reports at run time with tfd_version().
 */
#include <stdio.h>
#include <string.h>

#include <tensorfd.h>

#include "tap.h"

int main(void)
{
	char header[32];

	tap_init(10);
	snprintf(header, sizeof(header), "%d.%d.%d", TFD_VERSION_MAJOR, TFD_VERSION_MINOR,
		 TFD_VERSION_MICRO);
	ok(strcmp(header, PACKAGE_VERSION) == 0, "tensorfd.h says %s, configure says %s", header,
	   PACKAGE_VERSION);
	ok(tfd_version() == TFD_VERSION, "tfd_version() %u is the header's TFD_VERSION %u",
	   tfd_version(), (unsigned int)TFD_VERSION);
	ok(TFD_MAKE_VERSION(0, 9, 0) < TFD_MAKE_VERSION(0, 10, 0) &&
	   TFD_MAKE_VERSION(0, 99, 99) < TFD_MAKE_VERSION(1, 0, 0),
	   "TFD_MAKE_VERSION orders releases (0.9 < 0.10 < 1.0)");
	return done_testing();
}
