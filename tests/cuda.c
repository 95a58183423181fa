/* SPDX-License-Identifier: MIT */
/*
 * CUDA without a GPU: the driver loads lazily and a machine without one
 * gets -ENODEV with a reason (a build without CUDA: -EOPNOTSUPP), the
 * toolkit's stub libcuda is recognised by CUDA_ERROR_STUB_LIBRARY, CPU
 * tensors keep working, and the wire decoder and the channel refuse
 * malformed GPU descriptors from a peer. No driver, real or fake, is used.
 */
#include <errno.h>
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
#include "cuda-forge.h"

#ifdef HAVE_CUDA
#define NO_DRIVER_ERR (-ENODEV)
#else
#define NO_DRIVER_ERR (-EOPNOTSUPP)
#endif

#define STUB "/usr/local/cuda/lib64/stubs/libcuda.so"

static int fails;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("# FAIL %s:%d: ", __FILE__, __LINE__);                              \
			printf(__VA_ARGS__);                                                       \
			printf("\n");                                                              \
			fails++;                                                                   \
		}                                                                                  \
	} while (0)

/* A CPU tensor still crosses a channel. */
static void cpu_still_works(void)
{
	struct tfd_channel *a, *b;
	struct tfd_message *m, *got = NULL;
	struct tfd_buffer *buf;
	struct tfd_layout l;
	int64_t shape = 16;

	CHECK(tfd_channel_pair(&a, &b) == 0, "pair");
	CHECK(tfd_buffer_new(16, 0, &buf) == 0, "buffer");
	memset(tfd_buffer_data(buf), 0x42, 16);
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 1, &shape);
	CHECK(tfd_message_new(&m) == 0, "message");
	CHECK(tfd_message_add_tensor(m, "t", buf, &l) == 0, "add");
	CHECK(tfd_channel_send(a, m) == 0, "send");
	CHECK(tfd_channel_recv(b, 1000, &got) == 0, "recv");
	CHECK(got && ((unsigned char *)tfd_message_data(got, 0))[15] == 0x42, "data");
	CHECK(got && tfd_message_cuda_ptr(got, 0) == 0, "a CPU tensor has no device pointer");
	tfd_message_unref(got);
	tfd_message_unref(m);
	tfd_buffer_unref(buf);
	tfd_channel_unref(a);
	tfd_channel_unref(b);
}

/* Runs in a child: the driver state is once per process. */
static int no_driver(const char *lib)
{
	struct tfd_buffer *buf = NULL;
	struct tfd_channel *ch;
	struct gpu_forge f;
	char pkt[1024];
	int r, fds, raw = -1;

	setenv("TENSORFD_LIBCUDA", lib, 1);
	fds = count_fds();
	r = tfd_cuda_probe();
	CHECK(r == NO_DRIVER_ERR, "probe: %d (%s)", r, tfd_last_error());
	diag("no driver: %s", tfd_last_error());
#ifdef HAVE_CUDA
	CHECK(strstr(tfd_last_error(), "no CUDA driver") != NULL, "reason: %s", tfd_last_error());
#else
	CHECK(strstr(tfd_last_error(), "without CUDA") != NULL, "reason: %s", tfd_last_error());
#endif
	r = tfd_cuda_buffer_new(0, 4096, 0, &buf);
	CHECK(r == NO_DRIVER_ERR && !buf, "buffer_new: %d", r);
	r = tfd_cuda_probe();
	CHECK(r == NO_DRIVER_ERR, "second probe: %d", r);
	cpu_still_works();
	/* a peer's GPU buffer is refused with the reason, its fd closed */
	CHECK(gpu_forge_duel(&raw, &ch) == 0, "duel");
	gpu_forge_init(&f, WIRE_BUF_CUDA_VMM, 4096);
	{
		int mfd = memfd_create("x", MFD_CLOEXEC);
		struct tfd_message *m = NULL;

		CHECK(ftruncate(mfd, 2u << 20) == 0, "ftruncate");
		gpu_forge_send(raw, pkt, gpu_forge_encode(&f, pkt), mfd);
		close(mfd);
		r = tfd_channel_recv(ch, 1000, &m);
		CHECK(r == NO_DRIVER_ERR && !m, "GPU buffer without a driver: %d (%s)", r,
		      tfd_channel_strerror(ch));
		diag("channel: %s", tfd_channel_strerror(ch));
	}
	tfd_channel_unref(ch);
	close(raw);
	CHECK(count_fds() == fds, "fds: %d, were %d", count_fds(), fds);
	return fails;
}

static int in_child(int (*fn)(const char *), const char *arg)
{
	pid_t pid = fork();

	if (pid == 0) {
		alarm(20);
		exit(fn(arg) ? 1 : 0);
	}
	return wait_child(pid);
}

#ifdef HAVE_CUDA
static int stub_library(void)
{
	int r;

	setenv("TENSORFD_LIBCUDA", STUB, 1);
	r = tfd_cuda_probe();
	CHECK(r == -ENODEV, "probe with the stub: %d (%s)", r, tfd_last_error());
	CHECK(strstr(tfd_last_error(), "CUDA_ERROR_STUB_LIBRARY") != NULL, "reason: %s",
	      tfd_last_error());
	diag("stub: %s", tfd_last_error());
	return fails;
}

static int stub_child(const char *unused)
{
	return stub_library();
}
#endif

/* --- the decoder on forged GPU descriptors --- */

static int decode(const struct gpu_forge *f, struct wire_msg_info *out, char *err)
{
	char pkt[1024];
	size_t len = gpu_forge_encode(f, pkt);

	return wire_decode_msg(pkt, len, out, err, 256);
}

static void decoder(void)
{
	struct wire_msg_info *out = malloc(sizeof(*out));
	struct gpu_forge f;
	char err[256];
	int r;

	gpu_forge_init(&f, WIRE_BUF_CUDA_VMM, 4096);
	r = decode(&f, out, err);
	ok(r == 0 && out->n_fds == 1 && out->cuda[0].alloc_size == 2u << 20,
	   "a VMM descriptor decodes, with one fd to come (%d)", r);
	gpu_forge_init(&f, WIRE_BUF_CUDA_IPC, 4096);
	r = decode(&f, out, err);
	ok(r == 0 && out->n_fds == 0, "an IPC descriptor decodes, with no fd (%d)", r);
	gpu_forge_init(&f, WIRE_BUF_CUDA_EXTMEM, 4096);
	f.cb.flags = WIRE_CUDA_EVENT;
	memset(f.cb.event_handle, 1, 64);
	r = decode(&f, out, err);
	ok(r == 0 && out->n_fds == 1, "an external-memory descriptor with an event decodes (%d)", r);

#define BAD_CASE(what, setup)                                                                      \
	do {                                                                                       \
		gpu_forge_init(&f, WIRE_BUF_CUDA_VMM, 4096);                                       \
		setup;                                                                             \
		r = decode(&f, out, err);                                                          \
		ok(r == -EBADMSG, "refused: %s (%d: %s)", what, r, r ? err : "accepted");          \
	} while (0)
	BAD_CASE("unknown GPU flags", f.cb.flags = 0x80);
	BAD_CASE("padding not zero", f.cb.pad = 1);
	BAD_CASE("allocation smaller than the buffer", f.cb.alloc_size = 1024);
	BAD_CASE("allocation of 2^63 bytes", f.cb.alloc_size = 1ull << 63);
	BAD_CASE("no device UUID", memset(f.cb.uuid, 0, 16));
	BAD_CASE("VMM buffer with an IPC handle", f.cb.mem_handle[3] = 1);
	BAD_CASE("IPC buffer without its handle",
		 (f.nb.kind = WIRE_BUF_CUDA_IPC, memset(f.cb.mem_handle, 0, 64)));
	BAD_CASE("event flag without a handle", f.cb.flags = WIRE_CUDA_EVENT);
	BAD_CASE("event handle without the flag", f.cb.event_handle[63] = 1);
	BAD_CASE("record cut off", f.with_cb = false);
	BAD_CASE("unknown buffer kind 6", f.nb.kind = 6);
	BAD_CASE("buffer flags", f.nb.flags = 1);
#undef BAD_CASE
	free(out);
}

/* The channel counts fds per kind: an IPC buffer carries none. */
static void fd_accounting(void)
{
	struct tfd_channel *ch;
	struct tfd_message *m = NULL;
	struct gpu_forge f;
	char pkt[1024];
	int raw = -1, r, fds = count_fds(), mfd;

	gpu_forge_duel(&raw, &ch);
	gpu_forge_init(&f, WIRE_BUF_CUDA_IPC, 4096);
	mfd = memfd_create("x", MFD_CLOEXEC);
	gpu_forge_send(raw, pkt, gpu_forge_encode(&f, pkt), mfd);
	close(mfd);
	r = tfd_channel_recv(ch, 1000, &m);
	ok(r == -EBADMSG && strstr(tfd_channel_strerror(ch), "fds"),
	   "an IPC descriptor that brings an fd is refused (%d: %s)", r, tfd_channel_strerror(ch));
	tfd_channel_unref(ch);
	close(raw);

	gpu_forge_duel(&raw, &ch);
	gpu_forge_init(&f, WIRE_BUF_CUDA_VMM, 4096);
	gpu_forge_send(raw, pkt, gpu_forge_encode(&f, pkt), -1);
	r = tfd_channel_recv(ch, 1000, &m);
	ok(r == -EBADMSG, "a VMM descriptor without its fd is refused (%d: %s)", r,
	   tfd_channel_strerror(ch));
	tfd_channel_unref(ch);
	close(raw);
	ok(count_fds() == fds, "no fd left behind (%d, were %d)", count_fds(), fds);
}

int main(void)
{
	tap_init(60);
	decoder();
	fd_accounting();
	ok(in_child(no_driver, "/nonexistent/libcuda.so.1") == 0,
	   "no driver: GPU calls fail with a reason, CPU tensors work, GPU descriptors refused");
#ifdef HAVE_CUDA
	if (access(STUB, R_OK) == 0)
		ok(in_child(stub_child, NULL) == 0,
		   "the toolkit's stub libcuda is recognised (CUDA_ERROR_STUB_LIBRARY)");
	else
		skip("no CUDA toolkit stub library at %s", STUB);
#else
	skip("built without CUDA: the stub library is not loaded");
#endif
	return done_testing();
}
