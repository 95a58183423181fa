/* SPDX-License-Identifier: MIT */
/*
 * The write guard: torch has no read-only tensors, so a torch tensor (or a
 * DLPack capsule) over a received buffer's shared read-only mapping cannot
 * refuse a write; the write faults. Instead of a bare "Segmentation fault",
 * a SIGSEGV handler installed with the first such view checks whether the
 * faulting address lies in one of tensorfd's read-only mappings (a received
 * memfd or dma-buf, as /proc/self/maps names them) and, if so, says what
 * happened and what to do, then lets the fault take its course: the
 * previous handler (Python's faulthandler, if enabled) or the default
 * action. Everything in the handler is async-signal-safe: open, read,
 * write, close, sigaction, and no allocation.
 */
#include "binding.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

static struct sigaction previous;
static bool installed;

static bool hexval(const char **p, uintptr_t *v)
{
	const char *s = *p;
	uintptr_t x = 0;

	for (; *s; s++) {
		int d = *s >= '0' && *s <= '9' ? *s - '0' :
			*s >= 'a' && *s <= 'f' ? *s - 'a' + 10 : -1;

		if (d < 0)
			break;
		x = x * 16 + (uintptr_t)d;
	}
	if (s == *p)
		return false;
	*p = s;
	*v = x;
	return true;
}

/* Is line "lo-hi perms offset dev inode path" a read-only tensorfd mapping holding addr? */
static bool line_matches(const char *line, uintptr_t addr)
{
	uintptr_t lo, hi;
	const char *p = line;

	if (!hexval(&p, &lo) || *p++ != '-' || !hexval(&p, &hi) || *p++ != ' ')
		return false;
	if (addr < lo || addr >= hi || p[1] == 'w')
		return false;
	return strstr(p, "/memfd:tensorfd") || strstr(p, "dmabuf:") || strstr(p, "/dmabuf");
}

static bool is_tensorfd_readonly(uintptr_t addr)
{
	char buf[4096], line[512];
	size_t n = 0;
	ssize_t got;
	bool found = false;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	while (!found && (got = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < got && !found; i++) {
			if (buf[i] != '\n') {
				if (n < sizeof(line) - 1)
					line[n++] = buf[i];
				continue;
			}
			line[n] = '\0';
			found = line_matches(line, addr);
			n = 0;
		}
	}
	close(fd);
	return found;
}

static void say(const char *s)
{
	ssize_t r = write(STDERR_FILENO, s, strlen(s));

	(void)r;
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	if (si && si->si_code == SEGV_ACCERR && is_tensorfd_readonly((uintptr_t)si->si_addr))
		say("tensorfd: write into a received tensor's read-only view (the publisher's "
		    "shared pages): received tensors are read-only; .clone() the tensor to "
		    "change it, or ask for a private copy-on-write view with "
		    "msg.get(name, writable=True) or Subscriber(topic, writable=True)\n");
	/* chain: a handler before ours (faulthandler) runs as if alone */
	if (previous.sa_flags & SA_SIGINFO) {
		previous.sa_sigaction(sig, si, ctx);
		return;
	}
	if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
		previous.sa_handler(sig);
		return;
	}
	/* the default action takes over when the instruction faults again */
	sigaction(sig, &previous, NULL);
}

void write_guard_install(void)
{
	struct sigaction sa;

	if (installed)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &previous) == 0)
		installed = true;
}
