// SPDX-License-Identifier: MIT
// The public header as a C++ program sees it: it compiles with -pedantic
// -Werror (make check builds this), and its calls link from C++.
#include <cstdio>

#include <tensorfd.h>

int main()
{
	struct tfd_layout l;
	const int64_t shape[] = { 2, 3 };
	struct tfd_dtype f32 = { TFD_FLOAT, 32, 1 };
	int r = tfd_layout_init(&l, f32, 2, shape);

	std::printf("1..2\n");
	std::printf("%s 1 - tfd_layout_init from C++ (%d)\n", r == 0 ? "ok" : "not ok", r);
	std::printf("%s 2 - tfd_version() from C++ is TFD_VERSION\n",
		    tfd_version() == TFD_VERSION ? "ok" : "not ok");
	return r == 0 && tfd_version() == TFD_VERSION ? 0 : 1;
}
