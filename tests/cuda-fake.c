/* SPDX-License-Identifier: MIT */
/*
 * GPU buffers between processes against tests/fake-libcuda.so, a TEST-ONLY
 * FAKE DRIVER (memfd + mmap, no GPU): this is NOT GPU coverage. It covers
 * the library's side for real: descriptors and fds over real sockets, the
 * receiver's import cache and its eviction (forget, peer death), release,
 * leaks of fds and driver objects, device identity by UUID, hostile GPU
 * descriptors, the fork rule, and the CPU-side latency of a GPU descriptor
 * message. tests/gpu/run.sh does the same on a real GPU.
 *
 * The driver is loaded once per process and never survives a fork, so the
 * parent never loads it: each scenario forks a producer and a consumer
 * joined by a channel pair, and each child counts its own failures.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tensorfd.h"
#include "internal.h"
#include "wire.h"
#include "tap.h"

#ifndef HAVE_CUDA
int main(void)
{
	skip_all("built without CUDA headers: no fake driver to run against");
}
#else
#include "cuda-forge.h"
#include "fake-libcuda.h"
#include "gpu.h"

static int fails;
static char fake_path[4096];

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("# FAIL %s:%d (pid %d): ", __FILE__, __LINE__, (int)getpid());      \
			printf(__VA_ARGS__);                                                       \
			printf("\n");                                                              \
			fails++;                                                                   \
		}                                                                                  \
	} while (0)

static const struct tfd_fake_cuda_counters *fake(void)
{
	void *h = dlopen(fake_path, RTLD_NOW | RTLD_NOLOAD);
	const struct tfd_fake_cuda_counters *c = h ? dlsym(h, TFD_FAKE_CUDA_COUNTERS) : NULL;
	static const struct tfd_fake_cuda_counters none;

	if (h)
		dlclose(h);
	return c ? c : &none;
}

static const struct cuda_api *api(void)
{
	const struct cuda_api *a = cuda_api();

	if (!a) {
		printf("# FAIL: cannot load the fake driver: %s\n", tfd_last_error());
		exit(1);
	}
	return a;
}

static struct tfd_layout u8_layout(uint64_t n, uint64_t offset, int device)
{
	struct tfd_layout l;
	int64_t shape = (int64_t)n;

	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &shape);
	l.byte_offset = offset;
	l.device.type = device;
	return l;
}

/* Bytes [off, off + n) of device memory all equal v? */
static bool device_holds(uint64_t ptr, uint64_t n, unsigned char v)
{
	unsigned char *h = malloc(n);
	bool good = true;
	uint64_t i;

	api()->cuMemcpyDtoH(h, (CUdeviceptr)ptr, n);
	for (i = 0; i < n && good; i++)
		good = h[i] == v;
	free(h);
	return good;
}

/* Wait until the producer has every message back. */
static void drain(struct tfd_channel *ch)
{
	struct tfd_channel_stats st;
	uint64_t end = now_ms() + 5000;

	do {
		tfd_channel_dispatch(ch, 10);
		tfd_channel_get_stats(ch, &st);
	} while (st.messages_in_flight && now_ms() < end);
	CHECK(st.messages_in_flight == 0, "%llu messages never released",
	      (unsigned long long)st.messages_in_flight);
}

/* Wait until the peer has gone. */
static void await_close(struct tfd_channel *ch)
{
	struct tfd_message *m = NULL;
	int r = tfd_channel_recv(ch, 5000, &m);

	CHECK(r == -ECONNRESET, "peer did not close: %d", r);
	tfd_message_unref(m);
}

/* Wait until the consumer holds no mapping of the peer's. */
static void await_forget(struct tfd_channel *ch)
{
	struct tfd_channel_stats st;
	uint64_t end = now_ms() + 5000;

	do {
		tfd_channel_dispatch(ch, 10);
		tfd_channel_get_stats(ch, &st);
	} while (st.buffers_mapped && now_ms() < end);
	CHECK(st.buffers_mapped == 0, "%llu buffers still mapped",
	      (unsigned long long)st.buffers_mapped);
}

static void no_driver_leaks(const char *who)
{
	const struct tfd_fake_cuda_counters *c = fake();

	CHECK(c->handles == 0 && c->mapped == 0 && c->reserved == 0 && c->events == 0 &&
	      c->ipc_open == 0 && c->extmem == 0 && c->host_regs == 0 && c->device_allocs == 0,
	      "%s: driver objects left: handles %ld mapped %ld reserved %ld events %ld ipc %ld "
	      "extmem %ld hostregs %ld allocs %ld", who, c->handles, c->mapped, c->reserved,
	      c->events, c->ipc_open, c->extmem, c->host_regs, c->device_allocs);
	CHECK(c->ctx_depth == 0, "%s: context pushes and pops unbalanced: %ld", who, c->ctx_depth);
	CHECK(c->version_mismatch == 0, "%s: %ld entry points asked at unexpected ABI versions",
	      who, c->version_mismatch);
}

/* --- scenarios: each side runs in its own child --- */

#define ROUNDS 50

/* VMM (or external-memory) slab, two tensors at offsets, sent ROUNDS times. */
static void vmm_producer(struct tfd_channel *ch, unsigned int flags)
{
	const struct cuda_api *a = api();
	struct tfd_buffer *buf;
	struct tfd_message *m;
	struct tfd_layout l0 = u8_layout(4096, 0, TFD_DEVICE_CUDA);
	struct tfd_layout l1 = u8_layout(1000, 1u << 20, TFD_DEVICE_CUDA);
	struct tfd_channel_stats st;
	int i, r, fds = count_fds();

	r = tfd_cuda_buffer_new(0, 3u << 20, flags, &buf);
	CHECK(r == 0, "tfd_cuda_buffer_new: %d %s", r, tfd_last_error());
	if (r)
		return;
	CHECK(tfd_buffer_kind(buf) == (flags ? TFD_BUFFER_CUDA_EXTMEM : TFD_BUFFER_CUDA), "kind");
	CHECK(tfd_buffer_data(buf) == NULL, "a GPU buffer has no host mapping");
	CHECK(tfd_buffer_fd(buf) >= 0, "the exported fd");
	a->cuMemsetD8((CUdeviceptr)tfd_cuda_buffer_ptr(buf), 0xa5, 3u << 20);
	tfd_message_new(&m);
	CHECK(tfd_message_add_tensor(m, "small", buf, &l0) == 0, "add small: %s", tfd_last_error());
	CHECK(tfd_message_add_tensor(m, "other", buf, &l1) == 0, "add other");
	for (i = 0; i < ROUNDS; i++) {
		CHECK(tfd_message_cuda_record(m, NULL) == 1, "record");
		r = tfd_channel_send(ch, m);
		CHECK(r == 0, "send %d: %d", i, r);
		drain(ch);
	}
	tfd_channel_get_stats(ch, &st);
	CHECK(st.fds_sent == 1, "the fd crossed %llu times", (unsigned long long)st.fds_sent);
	CHECK(fake()->records == ROUNDS, "records: %ld", fake()->records);
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	tfd_channel_dispatch(ch, 0);	/* forgets the buffer */
	await_close(ch);
	tfd_channel_unref(ch);
	no_driver_leaks("producer");
	CHECK(count_fds() == fds - 1, "producer fds: %d, were %d with the channel", count_fds(),
	      fds);
}

static void vmm_consumer(struct tfd_channel *ch, unsigned int flags)
{
	struct tfd_channel_stats st;
	struct tfd_message *m;
	int i, r, fds = (tfd_channel_get_fd(ch), count_fds());

	for (i = 0; i < ROUNDS; i++) {
		const struct tfd_layout *l;
		uint8_t uuid[16];

		m = NULL;
		r = tfd_channel_recv(ch, 5000, &m);
		CHECK(r == 0, "recv %d: %d %s", i, r, tfd_channel_strerror(ch));
		if (r)
			return;
		l = tfd_message_layout(m, 1);
		CHECK(tfd_buffer_kind(tfd_message_buffer(m, 0)) ==
		      (flags ? TFD_BUFFER_CUDA_EXTMEM : TFD_BUFFER_CUDA), "kind");
		CHECK(l->device.type == TFD_DEVICE_CUDA && l->device.id == 0, "device");
		CHECK(tfd_message_data(m, 0) == NULL, "no host pointer for a GPU tensor");
		CHECK(tfd_message_cuda_ptr(m, 1) ==
		      tfd_cuda_buffer_ptr(tfd_message_buffer(m, 1)) + (1u << 20), "slab offset");
		CHECK(tfd_cuda_buffer_device(tfd_message_buffer(m, 0), uuid) == 0 &&
		      memcmp(uuid, "tfd-fake-cuda-x", 15) == 0, "device UUID");
		CHECK(tfd_message_cuda_wait(m, NULL) == 1, "wait");
		CHECK(device_holds(tfd_message_cuda_ptr(m, 0), 4096, 0xa5) &&
		      device_holds(tfd_message_cuda_ptr(m, 1), 1000, 0xa5), "contents");
		tfd_message_unref(m);
	}
	tfd_channel_get_stats(ch, &st);
	CHECK(st.fds_received == 1 && st.buffers_mapped == 1,
	      "cache: %llu fds, %llu mapped", (unsigned long long)st.fds_received,
	      (unsigned long long)st.buffers_mapped);
	if (flags)
		CHECK(fake()->extmem_imports == 1 && fake()->extmem == 1, "one external import");
	else
		CHECK(fake()->imports == 1 && fake()->mapped == 1, "one import and mapping: %ld %ld",
		      fake()->imports, fake()->mapped);
	CHECK(fake()->event_opens == 1 && fake()->waits == ROUNDS, "events: %ld opened, %ld waits",
	      fake()->event_opens, fake()->waits);
	await_forget(ch);
	no_driver_leaks("consumer after the forget");
	CHECK(count_fds() == fds, "consumer fds: %d, were %d", count_fds(), fds);
	tfd_channel_unref(ch);
}

static void vmm_p(struct tfd_channel *ch)
{
	vmm_producer(ch, 0);
}

static void vmm_c(struct tfd_channel *ch)
{
	vmm_consumer(ch, 0);
}

static void ext_p(struct tfd_channel *ch)
{
	vmm_producer(ch, TFD_CUDA_EXTMEM);
}

static void ext_c(struct tfd_channel *ch)
{
	vmm_consumer(ch, TFD_CUDA_EXTMEM);
}

/* The producer dies holding everything; its memory outlives it. */
static void crash_p(struct tfd_channel *ch)
{
	struct tfd_buffer *buf;
	struct tfd_message *m;
	struct tfd_layout l = u8_layout(4096, 0, TFD_DEVICE_CUDA);

	CHECK(tfd_cuda_buffer_new(0, 4096, 0, &buf) == 0, "buffer");
	api()->cuMemsetD8((CUdeviceptr)tfd_cuda_buffer_ptr(buf), 0x3c, 4096);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", buf, &l);
	tfd_message_cuda_record(m, NULL);
	CHECK(tfd_channel_send(ch, m) == 0, "send");
	fflush(stdout);
	if (!fails)
		raise(SIGKILL);
}

static void crash_c(struct tfd_channel *ch)
{
	struct tfd_message *m = NULL, *m2 = NULL;
	int r, fds = count_fds();

	r = tfd_channel_recv(ch, 5000, &m);
	CHECK(r == 0, "recv: %d", r);
	if (r)
		return;
	r = tfd_channel_recv(ch, 5000, &m2);
	CHECK(r == -ECONNRESET, "the producer's death ends the channel: %d", r);
	CHECK(device_holds(tfd_message_cuda_ptr(m, 0), 4096, 0x3c),
	      "the memory outlived its producer");
	tfd_message_unref(m);
	no_driver_leaks("consumer after its producer died");
	tfd_channel_unref(ch);
	CHECK(count_fds() == fds - 1, "fds");
}

/* The consumer dies holding messages: the producer gets its buffers back. */
static void ccrash_p(struct tfd_channel *ch)
{
	struct tfd_buffer *buf;
	struct tfd_message *m;
	struct tfd_layout l = u8_layout(64, 0, TFD_DEVICE_CUDA);
	int i;

	CHECK(tfd_cuda_buffer_new(0, 4096, 0, &buf) == 0, "buffer");
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", buf, &l);
	for (i = 0; i < 5; i++)
		tfd_channel_send(ch, m);
	CHECK(tfd_buffer_loans(buf) == 5, "loans %u", tfd_buffer_loans(buf));
	await_close(ch);
	CHECK(tfd_buffer_loans(buf) == 0, "loans after the consumer died: %u",
	      tfd_buffer_loans(buf));
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	tfd_channel_unref(ch);
	no_driver_leaks("producer after its consumer died");
}

static void ccrash_c(struct tfd_channel *ch)
{
	struct tfd_message *m = NULL;
	int i;

	for (i = 0; i < 5; i++)
		CHECK(tfd_channel_recv(ch, 5000, &m) == 0, "recv");	/* held, never released */
	fflush(stdout);
	if (!fails)
		raise(SIGKILL);
}

/* Classic IPC of memory the producer allocated itself. */
static void ipc_p(struct tfd_channel *ch)
{
	const struct cuda_api *a = api();
	struct tfd_buffer *buf;
	struct tfd_message *m;
	struct tfd_layout l;
	CUdeviceptr p;
	uint64_t off = 0;
	int i, r;

	CHECK(a->cuMemAlloc(&p, 1u << 20) == CUDA_SUCCESS, "cuMemAlloc");
	a->cuMemsetD8(p, 0x77, 1u << 20);
	r = tfd_cuda_buffer_wrap(p + 8192, &off, &buf);
	CHECK(r == 0 && off == 8192, "wrap: %d %s, offset %llu", r, tfd_last_error(),
	      (unsigned long long)off);
	if (r)
		return;
	CHECK(tfd_buffer_kind(buf) == TFD_BUFFER_CUDA_IPC && tfd_buffer_fd(buf) < 0,
	      "IPC kind, no fd");
	CHECK(tfd_buffer_size(buf) == 1u << 20, "the whole allocation");
	l = u8_layout(4096, off, TFD_DEVICE_CUDA);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", buf, &l);
	for (i = 0; i < 20; i++) {
		tfd_message_cuda_record(m, NULL);
		CHECK(tfd_channel_send(ch, m) == 0, "send");
		drain(ch);
	}
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	tfd_channel_dispatch(ch, 0);
	await_close(ch);
	/* only now, with every receiver gone, may the memory go */
	a->cuMemFree(p);
	tfd_channel_unref(ch);
	no_driver_leaks("IPC producer");
}

static void ipc_c(struct tfd_channel *ch)
{
	struct tfd_channel_stats st;
	struct tfd_message *m;
	int i, fds = (tfd_channel_get_fd(ch), count_fds());

	for (i = 0; i < 20; i++) {
		m = NULL;
		CHECK(tfd_channel_recv(ch, 5000, &m) == 0, "recv: %s", tfd_channel_strerror(ch));
		if (!m)
			return;
		tfd_message_cuda_wait(m, NULL);
		CHECK(device_holds(tfd_message_cuda_ptr(m, 0), 4096, 0x77), "contents");
		tfd_message_unref(m);
	}
	tfd_channel_get_stats(ch, &st);
	CHECK(st.fds_received == 0, "IPC buffers bring no fd");
	CHECK(fake()->ipc_opens == 1 && fake()->ipc_open == 1, "opened once: %ld",
	      fake()->ipc_opens);
	await_forget(ch);
	no_driver_leaks("IPC consumer");
	CHECK(count_fds() == fds, "fds");
	tfd_channel_unref(ch);
}

/* A received memfd buffer registered with CUDA once, unregistered with it. */
static void host_p(struct tfd_channel *ch)
{
	struct tfd_buffer *buf;
	struct tfd_message *m;
	struct tfd_layout l = u8_layout(1u << 20, 0, TFD_DEVICE_CPU);

	tfd_buffer_new(1u << 20, 0, &buf);
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", buf, &l);
	CHECK(tfd_channel_send(ch, m) == 0, "send");
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	drain(ch);
	tfd_channel_dispatch(ch, 0);
	await_close(ch);
	tfd_channel_unref(ch);
}

static void host_c(struct tfd_channel *ch)
{
	struct tfd_message *m = NULL;
	struct tfd_buffer *gbuf;

	CHECK(tfd_channel_recv(ch, 5000, &m) == 0, "recv");
	if (!m)
		return;
	CHECK(tfd_cuda_host_register(tfd_message_buffer(m, 0)) == 0, "register: %s",
	      tfd_last_error());
	CHECK(tfd_cuda_host_register(tfd_message_buffer(m, 0)) == 0, "again: cached");
	CHECK(fake()->host_regs == 1, "registered once: %ld", fake()->host_regs);
	CHECK(tfd_cuda_buffer_new(0, 4096, 0, &gbuf) == 0, "GPU buffer");
	CHECK(tfd_cuda_host_register(gbuf) == -EINVAL, "a GPU buffer is not host memory");
	tfd_buffer_unref(gbuf);
	tfd_message_unref(m);
	await_forget(ch);
	no_driver_leaks("host registration");
	tfd_channel_unref(ch);
}

/* The producer's device is not one the consumer can see. */
static void uuid_p(struct tfd_channel *ch)
{
	struct tfd_buffer *buf;
	struct tfd_message *m;
	struct tfd_layout l = u8_layout(64, 0, TFD_DEVICE_CUDA);

	setenv("TENSORFD_FAKE_CUDA_UUID_SALT", "y", 1);
	CHECK(tfd_cuda_buffer_new(0, 4096, 0, &buf) == 0, "buffer");
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", buf, &l);
	tfd_channel_send(ch, m);
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	await_close(ch);
	tfd_channel_unref(ch);
	no_driver_leaks("producer of an invisible device");
}

static void uuid_c(struct tfd_channel *ch)
{
	struct tfd_message *m = NULL;
	int r, fds;

	api();
	tfd_channel_get_fd(ch);
	fds = count_fds();
	r = tfd_channel_recv(ch, 5000, &m);
	CHECK(r == -ENODEV && strstr(tfd_channel_strerror(ch), "cannot see"),
	      "a buffer on an invisible device: %d %s", r, tfd_channel_strerror(ch));
	diag("invisible device: %s", tfd_channel_strerror(ch));
	CHECK(count_fds() == fds, "its fd was closed");
	no_driver_leaks("consumer of an invisible device");
	tfd_channel_unref(ch);
}

/* A received GPU buffer is not ours to export again. */
static void fwd_c(struct tfd_channel *ch)
{
	struct tfd_channel *a, *b;
	struct tfd_message *m = NULL, *out;
	struct tfd_layout l;
	int r;

	CHECK(tfd_channel_recv(ch, 5000, &m) == 0, "recv");
	if (!m)
		return;
	tfd_channel_pair(&a, &b);
	tfd_message_new(&out);
	l = *tfd_message_layout(m, 0);
	tfd_message_add_tensor(out, "t", tfd_message_buffer(m, 0), &l);
	r = tfd_channel_send(a, out);
	CHECK(r == -EXDEV, "forwarding a received GPU buffer: %d %s", r, tfd_channel_strerror(a));
	tfd_message_unref(out);
	tfd_message_unref(m);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	tfd_channel_unref(ch);
}

static void fwd_p(struct tfd_channel *ch)
{
	struct tfd_buffer *buf;
	struct tfd_message *m;
	struct tfd_layout l = u8_layout(64, 0, TFD_DEVICE_CUDA);

	CHECK(tfd_cuda_buffer_new(0, 4096, 0, &buf) == 0, "buffer");
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", buf, &l);
	tfd_channel_send(ch, m);
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	await_close(ch);
	tfd_channel_unref(ch);
}

/* Hostile descriptors that pass the decoder but not the driver or the import. */
static void hostile_c(struct tfd_channel *unused)
{
	static const struct {
		const char *what;
		uint32_t kind;
		int err;
		int fdkind;	/* 0: 2 MiB memfd, 1: pipe, 2: 1 MiB memfd */
		uint64_t alloc;
	} cases[] = {
		{ "VMM fd that is a pipe", WIRE_BUF_CUDA_VMM, -EINVAL, 1, 2u << 20 },
		{ "VMM allocation off the granularity", WIRE_BUF_CUDA_VMM, -EBADMSG, 0, 3u << 19 },
		{ "VMM allocation larger than its fd", WIRE_BUF_CUDA_VMM, -EINVAL, 2, 2u << 20 },
		{ "external memory larger than its fd", WIRE_BUF_CUDA_EXTMEM, -EINVAL, 2, 2u << 20 },
		{ "IPC handle of garbage", WIRE_BUF_CUDA_IPC, -EINVAL, -1, 2u << 20 },
	};
	struct tfd_channel *ch;
	struct gpu_forge f;
	char pkt[1024];
	unsigned int i;
	int raw = -1, fds, fd, p[2], r;

	tfd_channel_unref(unused);
	api();
	fds = count_fds();
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct tfd_message *m = NULL;

		gpu_forge_duel(&raw, &ch);
		gpu_forge_init(&f, cases[i].kind, 4096);
		f.cb.alloc_size = cases[i].alloc;
		fd = -1;
		if (cases[i].fdkind == 1) {
			CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
			fd = p[0];
			close(p[1]);
		} else if (cases[i].fdkind >= 0) {
			fd = memfd_create("x", MFD_CLOEXEC);
			CHECK(ftruncate(fd, cases[i].fdkind ? 1u << 20 : 2u << 20) == 0, "size");
		}
		gpu_forge_send(raw, pkt, gpu_forge_encode(&f, pkt), fd);
		if (fd >= 0)
			close(fd);
		r = tfd_channel_recv(ch, 2000, &m);
		CHECK(r == cases[i].err && !m, "%s: %d (%s)", cases[i].what, r,
		      tfd_channel_strerror(ch));
		diag("refused %s: %s", cases[i].what, tfd_channel_strerror(ch));
		tfd_channel_unref(ch);
		close(raw);
	}
	/*
	 * An IPC handle of a 1 MiB allocation (the fake's handle names a memfd
	 * that a live child of ours holds) sent as a buffer of 2 MiB.
	 */
	{
		struct { char magic[8]; int pid; int fd; unsigned long long size; } h;
		struct tfd_message *m = NULL;
		int mfd = memfd_create("x", MFD_CLOEXEC);	/* the holder inherits it */
		pid_t holder;

		CHECK(ftruncate(mfd, 1u << 20) == 0, "size");
		holder = fork();
		if (holder == 0) {
			pause();
			_exit(0);
		}
		gpu_forge_duel(&raw, &ch);
		gpu_forge_init(&f, WIRE_BUF_CUDA_IPC, 2u << 20);
		memcpy(h.magic, "TFDFAKEM", 8);
		h.pid = holder;
		h.fd = mfd;
		h.size = 1u << 20;
		memcpy(f.cb.mem_handle, &h, sizeof(h));
		gpu_forge_send(raw, pkt, gpu_forge_encode(&f, pkt), -1);
		r = tfd_channel_recv(ch, 2000, &m);
		CHECK(r == -EBADMSG && !m && fake()->ipc_open == 0,
		      "an IPC allocation smaller than claimed: %d (%s)", r, tfd_channel_strerror(ch));
		diag("refused an IPC buffer larger than its allocation: %s", tfd_channel_strerror(ch));
		kill(holder, SIGKILL);
		wait_child(holder);
		close(mfd);
		tfd_channel_unref(ch);
		close(raw);
	}
	/* a CPU tensor may not claim a GPU buffer, nor the reverse */
	gpu_forge_duel(&raw, &ch);
	gpu_forge_init(&f, WIRE_BUF_CUDA_VMM, 4096);
	f.device_type = TFD_DEVICE_CPU;
	fd = memfd_create("x", MFD_CLOEXEC);
	CHECK(ftruncate(fd, 2u << 20) == 0, "size");
	gpu_forge_send(raw, pkt, gpu_forge_encode(&f, pkt), fd);
	close(fd);
	{
		struct tfd_message *m = NULL;

		r = tfd_channel_recv(ch, 2000, &m);
		CHECK(r == -EOPNOTSUPP && !m, "a CPU tensor in a GPU buffer: %d (%s)", r,
		      tfd_channel_strerror(ch));
	}
	tfd_channel_unref(ch);
	close(raw);
	CHECK(count_fds() == fds, "every forged fd closed: %d, were %d", count_fds(), fds);
	no_driver_leaks("after hostile descriptors");
}

/* Topics carry GPU buffers as they are: never copied into the pool. */
static void topic_p(struct tfd_channel *ch)
{
	struct tfd_publisher_stats st;
	struct tfd_publisher *pub;
	struct tfd_buffer *buf;
	struct tfd_message *m;
	struct tfd_layout l = u8_layout(4096, 4096, TFD_DEVICE_CUDA);
	uint64_t end = now_ms() + 5000;
	int i, r;

	tfd_channel_unref(ch);
	r = tfd_publisher_new("gpu/frames", TFD_PUBLISHER_ZERO_COPY, &pub);
	CHECK(r == 0, "publisher: %d %s", r, tfd_last_error());
	if (r)
		return;
	do {
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
	} while (!st.subscribers && now_ms() < end);
	CHECK(tfd_cuda_buffer_new(0, 8192, 0, &buf) == 0, "buffer");
	api()->cuMemsetD8((CUdeviceptr)tfd_cuda_buffer_ptr(buf), 0x19, 8192);
	/* a message per publish, the same GPU buffer in each */
	for (i = 0; i < 3; i++) {
		tfd_message_new(&m);
		tfd_message_add_tensor(m, "frame", buf, &l);
		tfd_message_cuda_record(m, NULL);
		r = tfd_publisher_publish(pub, m);
		CHECK(r == 0, "publish: %d %s", r, tfd_publisher_strerror(pub));
		tfd_message_unref(m);
	}
	tfd_buffer_unref(buf);
	end = now_ms() + 5000;
	do {
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
	} while (st.subscribers && now_ms() < end);
	CHECK(st.copied_tensors == 0 && st.published == 3, "published %llu, copied %llu",
	      (unsigned long long)st.published, (unsigned long long)st.copied_tensors);
	tfd_publisher_unref(pub);
	no_driver_leaks("GPU publisher");
}

static void topic_c(struct tfd_channel *ch)
{
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	int i, r;

	tfd_channel_unref(ch);
	api();
	CHECK(tfd_subscriber_new("gpu/frames", 0, &sub) == 0, "subscriber: %s", tfd_last_error());
	for (i = 0; i < 3; i++) {
		m = NULL;
		r = tfd_subscriber_recv(sub, 5000, &m);
		CHECK(r == 0, "recv: %d %s", r, tfd_subscriber_strerror(sub));
		if (r)
			break;
		CHECK(!tfd_message_copied(m, 0) &&
		      tfd_buffer_kind(tfd_message_buffer(m, 0)) == TFD_BUFFER_CUDA, "zero-copy GPU");
		CHECK(tfd_message_cuda_wait(m, NULL) == 1, "wait");
		CHECK(device_holds(tfd_message_cuda_ptr(m, 0), 4096, 0x19), "contents");
		tfd_message_unref(m);
	}
	CHECK(fake()->imports == 1, "imported once for three messages: %ld", fake()->imports);
	tfd_subscriber_unref(sub);
	no_driver_leaks("GPU subscriber");
}

static void nothing(struct tfd_channel *ch)
{
	tfd_channel_unref(ch);
}

/* The CPU-side cost of a GPU descriptor message: send, receive, release. */
#define LAT_N 20000

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void lat_kind(struct tfd_channel *ch, bool gpu)
{
	static uint64_t t[LAT_N];
	struct tfd_buffer *buf = NULL;
	struct tfd_message *m;
	struct tfd_layout l = u8_layout(4096, 0, gpu ? TFD_DEVICE_CUDA : TFD_DEVICE_CPU);
	int i;

	if (gpu)
		CHECK(tfd_cuda_buffer_new(0, 4096, 0, &buf) == 0, "buffer");
	else
		CHECK(tfd_buffer_new(4096, 0, &buf) == 0, "buffer");
	if (!buf)
		return;
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "t", buf, &l);
	for (i = 0; i < LAT_N; i++) {
		uint64_t t0 = tfd_now_ns();

		if (gpu)
			tfd_message_cuda_record(m, NULL);
		if (tfd_channel_send(ch, m) < 0)
			break;
		while (channel_in_flight(ch) && tfd_channel_dispatch(ch, -1) >= 0)
			;
		t[i] = tfd_now_ns() - t0;
	}
	CHECK(i == LAT_N, "latency loop stopped at %d", i);
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	qsort(t, (size_t)i, sizeof(t[0]), cmp_u64);
	diag("FAKE DRIVER, CPU side only: %s message, send -> receive%s -> release round "
	     "trip: median %.1f us, p99 %.1f us over %d (one way is about half)",
	     gpu ? "GPU descriptor (VMM, cached)" : "memfd descriptor",
	     gpu ? " -> cuStreamWaitEvent" : "", (double)t[i / 2] / 1e3,
	     (double)t[i * 99 / 100] / 1e3, i);
}

static void lat_p(struct tfd_channel *ch)
{
	lat_kind(ch, false);
	lat_kind(ch, true);
	tfd_channel_unref(ch);
}

static void lat_c(struct tfd_channel *ch)
{
	static double ow[2][LAT_N];
	struct tfd_message *m;
	int n[2] = { 0, 0 }, k;

	for (;;) {
		m = NULL;
		if (tfd_channel_recv(ch, 10000, &m) < 0)
			break;
		k = tfd_buffer_kind(tfd_message_buffer(m, 0)) == TFD_BUFFER_CUDA;
		if (k)
			tfd_message_cuda_wait(m, NULL);
		if (n[k] < LAT_N)
			ow[k][n[k]++] = (double)(tfd_now_ns() - tfd_message_timestamp(m)) / 1e3;
		tfd_message_unref(m);
	}
	for (k = 0; k < 2; k++) {
		if (!n[k])
			continue;
		qsort(ow[k], (size_t)n[k], sizeof(double), cmp_double);
		diag("FAKE DRIVER, CPU side only: %s one way (send -> received%s): median %.1f us, "
		     "p99 %.1f us over %d", k ? "GPU descriptor message (VMM, cached import)"
					     : "memfd descriptor message",
		     k ? ", cuStreamWaitEvent" : "", ow[k][n[k] / 2], ow[k][n[k] * 99 / 100], n[k]);
	}
	tfd_channel_unref(ch);
}

/* In a child that loaded the driver, a forked grandchild may not use it. */
static void fork_rule(struct tfd_channel *ch)
{
	pid_t pid;
	int r;

	tfd_channel_unref(ch);
	CHECK(tfd_cuda_probe() == 1, "probe: %s", tfd_last_error());
	pid = fork();
	if (pid == 0) {
		r = tfd_cuda_probe();
		exit(r == -ECHILD && strstr(tfd_last_error(), "fork") ? 0 : 1);
	}
	CHECK(wait_child(pid) == 0, "a forked child is refused CUDA (-ECHILD)");
}

static void missing_symbol(struct tfd_channel *ch)
{
	int r;

	tfd_channel_unref(ch);
	setenv("TENSORFD_FAKE_CUDA_MISSING", "cuMemCreate", 1);
	r = tfd_cuda_probe();
	CHECK(r == -ENODEV && strstr(tfd_last_error(), "lacks cuMemCreate"),
	      "a driver without cuMemCreate: %d %s", r, tfd_last_error());
	diag("missing entry point: %s", tfd_last_error());
}

static void probe(struct tfd_channel *ch)
{
	char name[128] = "";
	int r;

	tfd_channel_unref(ch);
	r = tfd_cuda_probe();
	CHECK(r == 1, "probe: %d %s", r, tfd_last_error());
	if (r == 1)
		api()->cuDeviceGetName(name, sizeof(name), 0);
	CHECK(strcmp(name, TFD_FAKE_CUDA_DEVICE_NAME) == 0, "the fake driver was loaded: '%s'",
	      name);
	CHECK(fake()->inits == 1, "cuInit once: %ld", fake()->inits);
	no_driver_leaks("probe");
}

typedef void (*side_fn)(struct tfd_channel *);

static int run_side(side_fn fn, struct tfd_channel *mine, struct tfd_channel *other)
{
	pid_t pid = fork();

	if (pid == 0) {
		alarm(60);
		tfd_channel_unref(other);
		fn(mine);
		fflush(stdout);
		_exit(fails ? 1 : 0);
	}
	return pid;
}

/* Producer and consumer in two children; expect their exit statuses. */
static void scenario(const char *what, side_fn prod, side_fn cons, int want_p, int want_c)
{
	struct tfd_channel *a, *b;
	pid_t pp, pc;
	int sp, sc;

	if (tfd_channel_pair(&a, &b) < 0) {
		ok(0, "%s: channel pair", what);
		return;
	}
	pp = run_side(prod, a, b);
	pc = run_side(cons, b, a);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
	sp = wait_child(pp);
	sc = wait_child(pc);
	ok(sp == want_p && sc == want_c, "%s (producer %d, consumer %d)", what, sp, sc);
}

int main(void)
{
	const char *top = getenv("top_builddir");
	char dir[] = "/tmp/tfd-cuda-fake.XXXXXX";
	int fds, ret;

	tap_init(240);
	snprintf(fake_path, sizeof(fake_path), "%s/tests/.libs/fake-libcuda.so", top ? top : ".");
	if (access(fake_path, R_OK) != 0)
		skip_all("the test-only fake driver was not built");
	/* the parent never loads it: children inherit the setting */
	setenv("TENSORFD_LIBCUDA", fake_path, 1);
	tap_runtime_dir(dir);
	diag("FAKE DRIVER (%s): not a GPU, not GPU coverage; see tests/gpu/run.sh", fake_path);
	fds = count_fds();
	scenario("the fake driver loads at the ABI versions of the typedefs", probe, nothing, 0, 0);
	scenario("a driver that lacks an entry point is refused with its name", missing_symbol,
		 nothing, 0, 0);
	scenario("the fork rule", fork_rule, nothing, 0, 0);
	scenario("VMM slab: fd sent once, imported and mapped once, events, release, forget",
		 vmm_p, vmm_c, 0, 0);
	scenario("external-memory kind: imported once, destroyed on forget", ext_p, ext_c, 0, 0);
	scenario("classic IPC: no fd, opened once, closed on forget", ipc_p, ipc_c, 0, 0);
	scenario("producer killed: its GPU memory outlives it, nothing leaks", crash_p, crash_c,
		 128 + SIGKILL, 0);
	scenario("consumer killed holding messages: the producer's loans come back", ccrash_p,
		 ccrash_c, 0, 128 + SIGKILL);
	scenario("host registration of a received memfd buffer: once, undone with it", host_p,
		 host_c, 0, 0);
	scenario("a device UUID the consumer cannot see: -ENODEV, fd closed", uuid_p, uuid_c, 0, 0);
	scenario("a received GPU buffer cannot be sent on (-EXDEV)", fwd_p, fwd_c, 0, 0);
	scenario("hostile GPU descriptors past the decoder", nothing, hostile_c, 0, 0);
	scenario("a topic carries a GPU buffer zero-copy (TFD_PUBLISHER_ZERO_COPY)", topic_p,
		 topic_c, 0, 0);
	scenario("latency of a GPU descriptor message (diagnostic only)", lat_p, lat_c, 0, 0);
	ok(count_fds() == fds, "the parent has no fd left over (%d, were %d)", count_fds(), fds);
	ret = done_testing();
	rm_tree(dir);
	return ret;
}
#endif
