/* SPDX-License-Identifier: MIT */
/*
 * The GPU checks of tests/gpu/run.sh, against the real driver: producer and
 * consumer processes joined by a channel, GPU tensors from 4 KiB to 4 GiB
 * verified on the device (cuMemsetD8 on one side, cuMemcpyDtoH on the
 * other), the ordering of a long producer stream, crashes of either side,
 * the import cache, memory that outlives its producer, classic IPC, the
 * external-memory import experiment, host registration, and timings. One
 * line per check: PASS, FAIL, SKIP or INFO, then what was seen.
 *
 * Not part of make check. Runs against the fake driver too (for a smoke
 * test of the script: TENSORFD_LIBCUDA=tests/.libs/fake-libcuda.so), and
 * then says so on every line that would otherwise look like GPU coverage.
 *
 * Usage: gpu-test [all | torch-consumer SOCKET]. TFD_GPU_MAX_SIZE caps the
 * largest tensor (bytes; default 4 GiB).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tensorfd.h"
#include "internal.h"

#ifndef HAVE_CUDA
int main(void)
{
	printf("FAIL build: tensorfd was built without the CUDA headers (configure --with-cuda)\n");
	return 1;
}
#else
#include "gpu.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static int failures;
static bool is_fake;
static uint64_t max_size = 4 * GiB;

static void line(const char *verdict, const char *check, const char *fmt, ...)
	TFD_PRINTF(3, 4);

static void line(const char *verdict, const char *check, const char *fmt, ...)
{
	va_list ap;

	if (strcmp(verdict, "FAIL") == 0)
		failures++;
	printf("%s %s%s: ", verdict, check, is_fake ? " [FAKE DRIVER, not a GPU]" : "");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

#define CHECK(check, cond, ...)                                                                    \
	do {                                                                                       \
		if (cond)                                                                          \
			line("PASS", check, __VA_ARGS__);                                          \
		else                                                                               \
			line("FAIL", check, __VA_ARGS__);                                          \
	} while (0)

static const struct cuda_api *A;

static void load(void)
{
	char name[256] = "";

	A = cuda_api();
	if (!A) {
		line("FAIL", "load", "%s", tfd_last_error());
		fflush(stdout);
		_exit(1);
	}
	A->cuDeviceGetName(name, sizeof(name), 0);
	is_fake = strstr(name, "FAKE") != NULL;
}

static double ms_since(uint64_t t0)
{
	return (double)(tfd_now_ns() - t0) / 1e6;
}

static struct tfd_layout u8(uint64_t n, uint64_t off, int device)
{
	struct tfd_layout l;
	int64_t shape = (int64_t)n;

	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &shape);
	l.byte_offset = off;
	l.device.type = device;
	return l;
}

/* Every byte of [ptr, ptr + n) equals v, read back in 64 MiB pieces. */
static bool verify(uint64_t ptr, uint64_t n, unsigned char v, uint64_t *bad)
{
	uint64_t chunk = n < 64 * MiB ? n : 64 * MiB, off, i;
	unsigned char *h = malloc(chunk), *want = malloc(chunk);
	bool good = h && want;

	if (want)
		memset(want, v, chunk);
	for (off = 0; good && off < n; off += chunk) {
		uint64_t len = n - off < chunk ? n - off : chunk;

		if (A->cuMemcpyDtoH(h, (CUdeviceptr)(ptr + off), len) != CUDA_SUCCESS) {
			good = false;
			*bad = off;
			break;
		}
		if (memcmp(h, want, len) == 0)
			continue;
		for (i = 0; i < len && h[i] == v; i++)
			;
		good = false;
		*bad = off + i;
	}
	free(h);
	free(want);
	return good;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

typedef void (*side_fn)(struct tfd_channel *ch, uint64_t arg);

static pid_t side(side_fn fn, struct tfd_channel *mine, struct tfd_channel *other, uint64_t arg)
{
	pid_t pid = fork();

	if (pid == 0) {
		alarm(120);
		tfd_channel_unref(other);
		load();
		/* the library pushes and pops its own; the test's calls use this one */
		if (cuda_enter(0) < 0) {
			line("FAIL", "context", "%s", tfd_last_error());
			_exit(1);
		}
		fn(mine, arg);
		fflush(stdout);
		_exit(failures ? 1 : 0);
	}
	return pid;
}

static int wait_pid(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int pair_run(const char *check, side_fn prod, side_fn cons, uint64_t arg, int want_p,
		    int want_c)
{
	struct tfd_channel *a, *b;
	pid_t pp, pc;
	int sp, sc;

	if (tfd_channel_pair(&a, &b) < 0) {
		line("FAIL", check, "channel pair: %s", tfd_last_error());
		return -1;
	}
	pp = side(prod, a, b, arg);
	pc = side(cons, b, a, arg);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	sp = wait_pid(pp);
	sc = wait_pid(pc);
	if (sp != want_p || sc != want_c)
		line("FAIL", check, "producer exited %d (want %d), consumer %d (want %d)", sp, want_p,
		     sc, want_c);
	return sp == want_p && sc == want_c ? 0 : -1;
}

static void drain(struct tfd_channel *ch)
{
	while (channel_in_flight(ch) && tfd_channel_dispatch(ch, 1000) >= 0)
		;
}

static void wait_close(struct tfd_channel *ch)
{
	struct tfd_message *m = NULL;

	tfd_channel_recv(ch, 60000, &m);
	tfd_message_unref(m);
}

static void nothing(struct tfd_channel *ch, uint64_t unused)
{
	tfd_channel_unref(ch);
}

/* --- environment --- */

static void environment(struct tfd_channel *ch, uint64_t unused)
{
	static const struct {
		const char *name;
		CUdevice_attribute a;
	} attrs[] = {
		{ "VMM", CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED },
		{ "POSIX_FD", CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED },
		{ "IPC_EVENT", CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED },
		{ "HOST_REGISTER", CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED },
		{ "HOST_REGISTER_RO", CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED },
		{ "DMA_BUF", CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED },
		{ "UNIFIED_ADDRESSING", CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING },
		{ "MEMPOOL_HANDLE_TYPES", CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES },
	};
	char name[256] = "", buf[512];
	size_t len = 0, fr = 0, tot = 0;
	uint8_t u[16];
	unsigned int i;
	int v, drv = 0, n = tfd_cuda_probe();
	struct tfd_buffer *b;

	tfd_channel_unref(ch);
	A->cuDriverGetVersion(&drv);
	A->cuDeviceGetName(name, sizeof(name), 0);
	A->cuMemGetInfo(&fr, &tot);
	for (i = 0; i < ARRAY_SIZE(attrs); i++) {
		v = -1;
		A->cuDeviceGetAttribute(&v, attrs[i].a, 0);
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, " %s=%d", attrs[i].name, v);
	}
	line("INFO", "environment", "%d device(s); device 0 '%s'; driver API %d; memory %zu MiB "
	     "free of %zu; attributes%s", n, name, drv, fr >> 20, tot >> 20, buf);
	if (tfd_cuda_buffer_new(0, 1, 0, &b) == 0) {
		tfd_cuda_buffer_device(b, u);
		line("INFO", "granularity", "a 1-byte VMM buffer: device %02x%02x%02x%02x..., "
		     "exported fd %d", u[0], u[1], u[2], u[3], tfd_buffer_fd(b));
		snprintf(buf, sizeof(buf), "/proc/self/fd/%d", tfd_buffer_fd(b));
		len = (size_t)readlink(buf, name, sizeof(name) - 1);
		name[len < sizeof(name) ? len : 0] = 0;
		line("INFO", "vmm-fd", "the exported fd is %s", name);
		tfd_buffer_unref(b);
	} else {
		line("FAIL", "vmm-alloc", "%s", tfd_last_error());
	}
}

/* --- sizes: first send, verification on the device, steady state --- */

#define STEADY 200

struct size_report {
	double alloc_export_ms;
	double first_oneway_ms;
	double steady_oneway_us;
};

static unsigned char pattern_of(uint64_t size)
{
	return (unsigned char)(0x40 + (__builtin_ctzll(size) & 0x3f));
}

static void size_p(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_buffer *b;
	struct tfd_message *m;
	struct tfd_layout l = u8(size, 0, TFD_DEVICE_CUDA);
	uint64_t t0 = tfd_now_ns();
	double alloc_ms;
	int i, n = size >= GiB ? 50 : STEADY, r;

	r = tfd_cuda_buffer_new(0, size, 0, &b);
	alloc_ms = ms_since(t0);
	if (r < 0) {
		line("FAIL", "size", "%llu bytes: %s", (unsigned long long)size, tfd_last_error());
		return;
	}
	A->cuMemsetD8((CUdeviceptr)tfd_cuda_buffer_ptr(b), pattern_of(size), size);
	/* the last page differs: a receiver that maps too little reads wrong */
	A->cuMemsetD8((CUdeviceptr)tfd_cuda_buffer_ptr(b) + size - (size > 4096 ? 4096 : 1), 0xee,
		      size > 4096 ? 4096 : 1);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", b, &l);
	tfd_message_set_user_data(m, &alloc_ms, sizeof(alloc_ms));
	for (i = 0; i < 1 + n; i++) {
		tfd_message_cuda_record(m, NULL);
		if (tfd_channel_send(ch, m) < 0) {
			line("FAIL", "size", "send: %s", tfd_channel_strerror(ch));
			break;
		}
		drain(ch);
	}
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	tfd_channel_dispatch(ch, 0);
	wait_close(ch);
	tfd_channel_unref(ch);
}

static void size_c(struct tfd_channel *ch, uint64_t size)
{
	static double lat[STEADY];
	struct tfd_channel_stats st;
	struct tfd_message *m = NULL;
	char check[64];
	uint64_t bad = 0, tail = size > 4096 ? 4096 : 1, now;
	double first_ms, alloc_ms = 0;
	const void *u;
	size_t ulen;
	bool good;
	int i, n = size >= GiB ? 50 : STEADY;

	snprintf(check, sizeof(check), "vmm-%lluKiB", (unsigned long long)(size >> 10));
	if (tfd_channel_recv(ch, 60000, &m) < 0) {
		line("FAIL", check, "first message: %s", tfd_channel_strerror(ch));
		return;
	}
	now = tfd_now_ns();
	first_ms = (double)(now - tfd_message_timestamp(m)) / 1e6;
	u = tfd_message_get_user_data(m, &ulen);
	if (ulen == sizeof(alloc_ms))
		memcpy(&alloc_ms, u, sizeof(alloc_ms));
	tfd_message_cuda_wait(m, NULL);
	good = verify(tfd_message_cuda_ptr(m, 0), size - tail, pattern_of(size), &bad) &&
	       verify(tfd_message_cuda_ptr(m, 0) + size - tail, tail, 0xee, &bad);
	CHECK(check, good, "%llu bytes verified on the device after cuStreamWaitEvent "
	      "(first wrong byte, if any, at %llu)", (unsigned long long)size,
	      good ? (unsigned long long)size : (unsigned long long)bad);
	line("INFO", check, "first send: producer alloc+export+map %.3f ms; publish -> received "
	     "(import+map+event open) %.3f ms", alloc_ms, first_ms);
	tfd_message_unref(m);
	for (i = 0; i < n; i++) {
		m = NULL;
		if (tfd_channel_recv(ch, 60000, &m) < 0)
			break;
		lat[i] = (double)(tfd_now_ns() - tfd_message_timestamp(m)) / 1e3;
		tfd_message_cuda_wait(m, NULL);
		tfd_message_unref(m);
	}
	tfd_channel_get_stats(ch, &st);
	CHECK(check, i == n && st.fds_received == 1 && st.buffers_mapped == 1,
	      "import cache: %d messages, %llu fd received, %llu mapping", i,
	      (unsigned long long)st.fds_received, (unsigned long long)st.buffers_mapped);
	if (i)
		line("INFO", check, "steady-state one-way latency (publish -> received, cached "
		     "import): median %.1f us over %d", median(lat, i), i);
	tfd_channel_unref(ch);
}

/* --- ordering: a long producer stream, recorded, not synchronised --- */

static void order_p(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_buffer *b;
	struct tfd_message *m;
	struct tfd_layout l = u8(size, 0, TFD_DEVICE_CUDA);
	CUstream s;
	int i;

	if (tfd_cuda_buffer_new(0, size, 0, &b) < 0) {
		line("FAIL", "ordering", "%s", tfd_last_error());
		return;
	}
	cuda_enter(0);
	A->cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
	for (i = 0; i < 400; i++)
		A->cuMemsetD8Async((CUdeviceptr)tfd_cuda_buffer_ptr(b), (unsigned char)(i & 1 ? 0x11 : 0x22),
				   size, s);
	A->cuMemsetD8Async((CUdeviceptr)tfd_cuda_buffer_ptr(b), 0x5a, size, s);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", b, &l);
	tfd_message_cuda_record(m, s);	/* no host synchronisation */
	tfd_channel_send(ch, m);
	drain(ch);
	A->cuStreamSynchronize(s);
	A->cuStreamDestroy(s);
	cuda_leave();
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	tfd_channel_dispatch(ch, 0);
	wait_close(ch);
	tfd_channel_unref(ch);
}

static void order_c(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_message *m = NULL;
	unsigned char early = 0;
	uint64_t bad = 0;
	CUstream s;
	bool good;

	if (tfd_channel_recv(ch, 60000, &m) < 0) {
		line("FAIL", "ordering", "%s", tfd_channel_strerror(ch));
		return;
	}
	cuda_enter(0);
	/* without waiting: what does the memory hold right now? (information) */
	A->cuMemcpyDtoH(&early, (CUdeviceptr)tfd_message_cuda_ptr(m, 0) + size - 1, 1);
	A->cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
	tfd_message_cuda_wait(m, s);
	A->cuStreamSynchronize(s);
	A->cuStreamDestroy(s);
	cuda_leave();
	good = verify(tfd_message_cuda_ptr(m, 0), size, 0x5a, &bad);
	CHECK("ordering", good, "after cuStreamWaitEvent the consumer sees the final value 0x5a in "
	      "all %llu MiB written by 401 queued memsets (a read before waiting saw 0x%02x%s)",
	      (unsigned long long)(size >> 20), early,
	      early == 0x5a ? ": the producer was already done, so this run proves less" : "");
	tfd_message_unref(m);
	tfd_channel_unref(ch);
}

/* --- crashes --- */

static void pcrash_p(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_buffer *b;
	struct tfd_message *m;
	struct tfd_layout l = u8(size, 0, TFD_DEVICE_CUDA);

	if (tfd_cuda_buffer_new(0, size, 0, &b) < 0)
		return;
	A->cuMemsetD8((CUdeviceptr)tfd_cuda_buffer_ptr(b), 0x3c, size);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", b, &l);
	tfd_message_cuda_record(m, NULL);
	tfd_channel_send(ch, m);
	fflush(stdout);
	raise(SIGKILL);
}

static void pcrash_c(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_message *m = NULL, *m2 = NULL;
	size_t f0 = 0, f1 = 0, tot;
	uint64_t bad = 0;
	int r;

	if (tfd_channel_recv(ch, 60000, &m) < 0) {
		line("FAIL", "producer-crash", "%s", tfd_channel_strerror(ch));
		return;
	}
	r = tfd_channel_recv(ch, 60000, &m2);
	usleep(200000);
	CHECK("producer-crash", r == -ECONNRESET &&
	      verify(tfd_message_cuda_ptr(m, 0), size, 0x3c, &bad),
	      "the producer was SIGKILLed; its %llu MiB are still readable here (memory outlives "
	      "its producer)", (unsigned long long)(size >> 20));
	A->cuMemGetInfo(&f0, &tot);
	tfd_message_unref(m);
	tfd_channel_unref(ch);
	usleep(200000);
	A->cuMemGetInfo(&f1, &tot);
	line("INFO", "producer-crash", "device memory free before/after the consumer dropped it: "
	     "%zu / %zu MiB (freed %lld MiB)", f0 >> 20, f1 >> 20,
	     ((long long)f1 - (long long)f0) >> 20);
}

static void ccrash_p(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_buffer *b;
	struct tfd_message *m;
	struct tfd_layout l = u8(size, 0, TFD_DEVICE_CUDA);
	size_t f0 = 0, f1 = 0, tot;
	int i;

	A->cuMemGetInfo(&f0, &tot);
	if (tfd_cuda_buffer_new(0, size, 0, &b) < 0)
		return;
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", b, &l);
	for (i = 0; i < 4; i++)
		tfd_channel_send(ch, m);
	wait_close(ch);
	CHECK("consumer-crash", tfd_buffer_loans(b) == 0,
	      "the consumer was SIGKILLed holding 4 messages; loans back to %u",
	      tfd_buffer_loans(b));
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	tfd_channel_unref(ch);
	usleep(300000);
	A->cuMemGetInfo(&f1, &tot);
	CHECK("consumer-crash", (long long)f0 - (long long)f1 < (long long)(size / 2) + 64 * (long long)MiB,
	      "device memory free before/after: %zu / %zu MiB (the buffer of %llu MiB is gone)",
	      f0 >> 20, f1 >> 20, (unsigned long long)(size >> 20));
}

static void ccrash_c(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_message *m;
	int i;

	for (i = 0; i < 4; i++)
		tfd_channel_recv(ch, 60000, &m);
	fflush(stdout);
	raise(SIGKILL);
}

/* --- classic IPC --- */

static void ipc_p(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_buffer *b;
	struct tfd_message *m;
	struct tfd_layout l;
	CUipcMemHandle h;
	CUdeviceptr p, p2;
	uint64_t off;
	int i;

	cuda_enter(0);
	if (A->cuMemAlloc(&p, size) != CUDA_SUCCESS || A->cuMemAlloc(&p2, size) != CUDA_SUCCESS) {
		line("FAIL", "ipc", "cuMemAlloc");
		return;
	}
	A->cuMemsetD8(p, 0x77, size);
	A->cuIpcGetMemHandle(&h, p2);
	if (tfd_cuda_buffer_wrap(p + 4096, &off, &b) < 0) {
		line("FAIL", "ipc", "wrap: %s", tfd_last_error());
		return;
	}
	l = u8(size - 4096, off, TFD_DEVICE_CUDA);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", b, &l);
	/* a second allocation's raw handle, for timing cuIpcOpenMemHandle alone */
	tfd_message_set_user_data(m, &h, sizeof(h));
	for (i = 0; i < 51; i++) {
		tfd_message_cuda_record(m, NULL);
		tfd_channel_send(ch, m);
		drain(ch);
	}
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	tfd_channel_dispatch(ch, 0);
	wait_close(ch);
	A->cuMemFree(p);
	A->cuMemFree(p2);
	cuda_leave();
	tfd_channel_unref(ch);
}

static void ipc_c(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_channel_stats st;
	struct tfd_message *m = NULL;
	CUipcMemHandle h;
	CUdeviceptr p, p2;
	uint64_t t0, bad = 0;
	double first, open1, open2, lat[50];
	size_t ulen;
	const void *u;
	int i;

	t0 = tfd_now_ns();
	if (tfd_channel_recv(ch, 60000, &m) < 0) {
		line("FAIL", "ipc", "%s", tfd_channel_strerror(ch));
		return;
	}
	first = ms_since(tfd_message_timestamp(m));
	(void)t0;
	tfd_message_cuda_wait(m, NULL);
	CHECK("ipc", verify(tfd_message_cuda_ptr(m, 0), size - 4096, 0x77, &bad),
	      "a cuMemAlloc tensor at offset 4096 of its allocation, verified on the device");
	u = tfd_message_get_user_data(m, &ulen);
	memcpy(&h, u, sizeof(h));
	tfd_message_unref(m);
	for (i = 0; i < 50; i++) {
		m = NULL;
		if (tfd_channel_recv(ch, 60000, &m) < 0)
			break;
		lat[i] = (double)(tfd_now_ns() - tfd_message_timestamp(m)) / 1e3;
		tfd_message_unref(m);
	}
	tfd_channel_get_stats(ch, &st);
	CHECK("ipc", i == 50 && st.buffers_mapped == 1 && st.fds_received == 0,
	      "51 messages, one cached open, no fds");
	line("INFO", "ipc", "first message publish -> received (incl. cuIpcOpenMemHandle) %.3f ms; "
	     "steady one-way median %.1f us", first, i ? median(lat, i) : 0.0);
	cuda_enter(0);
	t0 = tfd_now_ns();
	A->cuIpcOpenMemHandle(&p, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
	open1 = ms_since(t0);
	t0 = tfd_now_ns();
	A->cuIpcOpenMemHandle(&p2, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
	open2 = ms_since(t0);
	line("INFO", "ipc-open", "cuIpcOpenMemHandle of %llu MiB: first %.3f ms, again (refcounted, "
	     "same pointer: %s) %.3f ms", (unsigned long long)(size >> 20), open1,
	     p == p2 ? "yes" : "no", open2);
	A->cuIpcCloseMemHandle(p2);
	A->cuIpcCloseMemHandle(p);
	cuda_leave();
	tfd_channel_unref(ch);
}

/* --- the external-memory experiment --- */

static void ext_p(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_buffer *b;
	struct tfd_message *m;
	struct tfd_layout l = u8(size, 0, TFD_DEVICE_CUDA);

	if (tfd_cuda_buffer_new(0, size, TFD_CUDA_EXTMEM, &b) < 0) {
		line("FAIL", "extmem", "%s", tfd_last_error());
		return;
	}
	A->cuMemsetD8((CUdeviceptr)tfd_cuda_buffer_ptr(b), 0x66, size);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", b, &l);
	tfd_message_cuda_record(m, NULL);
	tfd_channel_send(ch, m);
	drain(ch);
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	wait_close(ch);
	tfd_channel_unref(ch);
}

static void ext_c(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_message *m = NULL;
	uint64_t bad = 0;
	int r;

	r = tfd_channel_recv(ch, 60000, &m);
	if (r < 0) {
		line("INFO", "extmem", "cuImportExternalMemory(OPAQUE_FD) of a CUDA VMM fd is "
		     "REFUSED here: %s", tfd_channel_strerror(ch));
	} else {
		tfd_message_cuda_wait(m, NULL);
		line(verify(tfd_message_cuda_ptr(m, 0), size, 0x66, &bad) ? "INFO" : "FAIL",
		     "extmem", "cuImportExternalMemory(OPAQUE_FD) of a CUDA VMM fd is ACCEPTED; "
		     "contents %s", verify(tfd_message_cuda_ptr(m, 0), size, 0x66, &bad)
					    ? "verified" : "WRONG");
		tfd_message_unref(m);
	}
	tfd_channel_unref(ch);
}

/* --- host registration of a received memfd tensor --- */

static void host_p(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_buffer *b;
	struct tfd_message *m;
	struct tfd_layout l = u8(size, 0, TFD_DEVICE_CPU);

	if (tfd_buffer_new(size, TFD_BUFFER_POPULATE, &b) < 0)
		return;
	memset(tfd_buffer_data(b), 0x21, size);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", b, &l);
	tfd_channel_send(ch, m);
	drain(ch);
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	wait_close(ch);
	tfd_channel_unref(ch);
}

static double h2d_gbps(CUdeviceptr d, const void *h, uint64_t size, bool async)
{
	double best = 0;
	int i;

	for (i = 0; i < 3; i++) {
		uint64_t t0 = tfd_now_ns();
		double s;

		if (async) {
			A->cuMemcpyHtoDAsync(d, h, size, NULL);
			A->cuStreamSynchronize(NULL);
		} else {
			A->cuMemcpyHtoD(d, h, size);
		}
		s = (double)(tfd_now_ns() - t0) / 1e9;
		if (size / s / 1e9 > best)
			best = (double)size / s / 1e9;
	}
	return best;
}

static void host_c(struct tfd_channel *ch, uint64_t size)
{
	struct tfd_message *m = NULL;
	double pageable, pinned, reg_ms;
	uint64_t t0, bad = 0;
	CUdeviceptr d;
	int r;

	if (tfd_channel_recv(ch, 60000, &m) < 0)
		return;
	cuda_enter(0);
	A->cuMemAlloc(&d, size);
	pageable = h2d_gbps(d, tfd_message_data(m, 0), size, false);
	t0 = tfd_now_ns();
	r = tfd_cuda_host_register(tfd_message_buffer(m, 0));
	reg_ms = ms_since(t0);
	CHECK("host-register", r == 0 && tfd_cuda_host_register(tfd_message_buffer(m, 0)) == 0,
	      "a received (read-only) memfd tensor of %llu MiB registered once: %s",
	      (unsigned long long)(size >> 20), r ? tfd_last_error() : "ok");
	pinned = r == 0 ? h2d_gbps(d, tfd_message_data(m, 0), size, true) : 0;
	CHECK("host-register", verify(d, size, 0x21, &bad), "the device copy holds the tensor");
	line("INFO", "host-register", "cuMemHostRegister of %llu MiB took %.1f ms; H2D of the "
	     "received tensor: pageable %.1f GB/s, registered %.1f GB/s",
	     (unsigned long long)(size >> 20), reg_ms, pageable, pinned);
	A->cuMemFree(d);
	cuda_leave();
	tfd_message_unref(m);
	tfd_channel_unref(ch);
}

/* --- torch: a consumer for tests/gpu/torch-ipc.py --- */

static int torch_consumer(const char *path)
{
	struct tfd_listener *l;
	struct tfd_channel *ch;
	struct tfd_message *m = NULL;
	const struct tfd_layout *lay;
	uint64_t n, bad = 0;
	int r;

	load();
	if (cuda_enter(0) < 0) {
		line("FAIL", "torch", "context: %s", tfd_last_error());
		return 1;
	}
	r = tfd_listener_new(path, &l);
	if (r < 0) {
		line("FAIL", "torch", "listener: %s", tfd_last_error());
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	r = tfd_listener_accept(l, 60000, &ch);
	if (r == 0)
		r = tfd_channel_recv(ch, 60000, &m);
	if (r < 0) {
		line("FAIL", "torch", "no tensor from the torch producer: %s", tfd_last_error());
		return 1;
	}
	lay = tfd_message_layout(m, 0);
	tfd_layout_nbytes(lay, &n);
	tfd_message_cuda_wait(m, NULL);
	CHECK("torch", tfd_buffer_kind(tfd_message_buffer(m, 0)) == TFD_BUFFER_CUDA_IPC &&
	      verify(tfd_message_cuda_ptr(m, 0), n, 7, &bad),
	      "a torch caching-allocator tensor (%llu bytes at offset %llu of its cudaMalloc "
	      "block) arrived by classic IPC and holds the producer's values",
	      (unsigned long long)n, (unsigned long long)lay->byte_offset);
	tfd_message_unref(m);
	tfd_channel_unref(ch);
	tfd_listener_unref(l);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *cap = getenv("TFD_GPU_MAX_SIZE");
	static const uint64_t sizes[] = { 4096, 2 * MiB, 64 * MiB, 1 * GiB, 4 * GiB };
	unsigned int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (cap)
		max_size = strtoull(cap, NULL, 0);
	if (argc == 3 && strcmp(argv[1], "torch-consumer") == 0)
		return torch_consumer(argv[2]);
	/* this process never loads CUDA: its children do, each for itself */
	cap = getenv("TENSORFD_LIBCUDA");
	is_fake = cap && strstr(cap, "fake");
	pair_run("environment", environment, nothing, 0, 0, 0);
	for (i = 0; i < ARRAY_SIZE(sizes); i++)
		if (sizes[i] <= max_size)
			pair_run("size", size_p, size_c, sizes[i], 0, 0);
		else
			line("SKIP", "size", "%llu bytes is above TFD_GPU_MAX_SIZE",
			     (unsigned long long)sizes[i]);
	pair_run("ordering", order_p, order_c, max_size < GiB ? max_size : GiB, 0, 0);
	pair_run("producer-crash", pcrash_p, pcrash_c, 64 * MiB, 128 + SIGKILL, 0);
	pair_run("consumer-crash", ccrash_p, ccrash_c, max_size < GiB ? 64 * MiB : GiB, 0,
		 128 + SIGKILL);
	pair_run("ipc", ipc_p, ipc_c, 64 * MiB, 0, 0);
	pair_run("extmem", ext_p, ext_c, 64 * MiB, 0, 0);
	pair_run("host-register", host_p, host_c, 256 * MiB, 0, 0);
	printf("%s gpu-test: %d failure(s)%s\n", failures ? "FAIL" : "PASS", failures,
	       is_fake ? " [FAKE DRIVER, not a GPU]" : "");
	return failures ? 1 : 0;
}
#endif
