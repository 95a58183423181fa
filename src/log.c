/* SPDX-License-Identifier: MIT */
/*
 * Error reasons and the logging hook. The library never prints: a reason
 * is kept per thread (and on the failing object), and log lines go to the
 * callback the application set, if any.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static tfd_log_fn log_fn;
static void *log_userdata;
static _Thread_local char last_error[256];

TFD_EXPORT void tfd_set_log_fn(tfd_log_fn fn, void *userdata)
{
	log_fn = fn;
	log_userdata = userdata;
}

TFD_EXPORT const char *tfd_last_error(void)
{
	return last_error;
}

void tfd_log(int level, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (!log_fn)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_fn(level, line, log_userdata);
}

int tfd_fail(char *errbuf, size_t errlen, int err, const char *fmt, ...)
{
	char line[sizeof(last_error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	memcpy(last_error, line, sizeof(line));
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "%s", last_error);
	tfd_log(TFD_LOG_DEBUG, "%s (%s)", last_error, strerror(-err));
	return err;
}
