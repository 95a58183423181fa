/* SPDX-License-Identifier: MIT */
/*
 * dmabuf: a parent fills a 640x480 RGB frame in a dma-buf (as a camera
 * driver would hand one over) and sends it to its child, which reads it in
 * place. Both bracket their CPU access with begin/end access, which is
 * what keeps non-coherent devices and the CPU in agreement. Where the
 * kernel has no dma-buf source it says so and exits 0.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tensorfd.h>

#define H 480
#define W 640

static const char *const sources[] = { "any", "DMA heap", "udmabuf", "DRM dumb buffer",
				       "external" };

static int produce(struct tfd_channel *ch, struct tfd_buffer *frame)
{
	const int64_t shape[] = { H, W, 3 };
	struct tfd_message *msg = NULL;
	struct tfd_layout l;
	uint8_t *px = tfd_buffer_data(frame);
	int y, x, r;

	if ((r = tfd_buffer_begin_access(frame, TFD_ACCESS_WRITE)) < 0)
		return r;
	for (y = 0; y < H; y++)
		for (x = 0; x < W; x++) {
			px[(y * W + x) * 3 + 0] = (uint8_t)x;
			px[(y * W + x) * 3 + 1] = (uint8_t)y;
			px[(y * W + x) * 3 + 2] = (uint8_t)(x ^ y);
		}
	if ((r = tfd_buffer_end_access(frame, TFD_ACCESS_WRITE)) < 0)
		return r;
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 3, shape);
	if ((r = tfd_message_new(&msg)) == 0 &&
	    (r = tfd_message_add_tensor(msg, "frame", frame, &l)) == 0)
		r = tfd_channel_send(ch, msg);	/* the dma-buf's fd crosses here */
	tfd_message_unref(msg);
	return r;
}

static int consume(struct tfd_channel *ch)
{
	struct tfd_message *msg;
	struct tfd_buffer *buf;
	const uint8_t *px;
	unsigned long sum = 0;
	int i, r;

	if ((r = tfd_channel_recv(ch, 5000, &msg)) < 0)
		return r;
	buf = tfd_message_buffer(msg, 0);
	px = tfd_message_data(msg, 0);
	tfd_buffer_begin_access(buf, TFD_ACCESS_READ);
	for (i = 0; i < H * W * 3; i++)
		sum += px[i];
	tfd_buffer_end_access(buf, TFD_ACCESS_READ);
	printf("child: got a %s %dx%dx3 frame, mapped %s, byte sum %lu, pixel (10,20) = %u,%u,%u\n",
	       tfd_buffer_kind(buf) == TFD_BUFFER_DMABUF ? "dma-buf" : "memfd", H, W,
	       tfd_buffer_is_writable(buf) ? "read-write" : "read-only", sum,
	       px[(20 * W + 10) * 3], px[(20 * W + 10) * 3 + 1], px[(20 * W + 10) * 3 + 2]);
	r = px[(20 * W + 10) * 3] == 10 && px[(20 * W + 10) * 3 + 1] == 20 ? 0 : -EIO;
	tfd_message_unref(msg);
	return r;
}

int main(int argc, char **argv)
{
	struct tfd_channel *parent, *child;
	struct tfd_message *msg;
	struct tfd_buffer *frame;
	int r, status;
	pid_t pid;

	if (argc > 1) {
		printf("usage: dmabuf\nA parent fills a 640x480 RGB frame in a dma-buf and sends it to\n"
		       "its child, which reads it in place. Takes no options; exits 0 with\n"
		       "a note where the kernel has no dma-buf source.\n");
		return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 2 : 0;
	}

	r = tfd_dmabuf_new(H * W * 3, TFD_DMABUF_ANY, 0, &frame);
	if (r == -EOPNOTSUPP || r == -EACCES) {
		printf("no dma-buf source here (%s): nothing to show\n", tfd_last_error());
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "tfd_dmabuf_new: %s (%s)\n", strerror(-r), tfd_last_error());
		return 1;
	}
	printf("parent: a %llu-byte dma-buf from the %s\n",
	       (unsigned long long)tfd_buffer_size(frame), sources[tfd_dmabuf_source(frame)]);
	fflush(stdout);	/* before fork, or the child prints it again */
	if ((r = tfd_channel_pair(&parent, &child)) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		tfd_channel_unref(parent);
		tfd_buffer_unref(frame);
		r = consume(child);
		fflush(stdout);
		/* stay until the parent hangs up: it waits for our release first */
		while (tfd_channel_recv(child, 5000, &msg) == 0)
			tfd_message_unref(msg);
		tfd_channel_unref(child);
		_exit(r < 0 ? 1 : 0);
	}
	tfd_channel_unref(child);
	r = produce(parent, frame);
	/* wait until the child has released the frame, then reuse or drop it */
	while (r == 0 && tfd_buffer_loans(frame))
		r = tfd_channel_dispatch(parent, 1000) < 0 ? -1 : 0;
	if (r == 0)
		printf("parent: the child released the frame; it could be refilled now\n");
	tfd_channel_unref(parent);
	tfd_buffer_unref(frame);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 1;
	return r < 0 ? 1 : 0;
}
