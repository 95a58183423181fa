/* SPDX-License-Identifier: MIT */
/*
 * cuda: a parent fills a float tensor on the GPU with the CUDA runtime and
 * hands it to its child, which reads it on its GPU stream: the device
 * memory crosses the process boundary as a file descriptor (a CUDA VMM
 * allocation), never through the CPU. The producer records the buffer's
 * interprocess event after its fill; the consumer's stream waits for it,
 * on the device. Where there is no GPU or driver it says so and exits 0.
 *
 * CUDA does not survive fork(): each process starts using it only after
 * the fork. Built when configure finds the toolkit (--with-cuda).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime_api.h>
#include <tensorfd.h>

#define N	(1024 * 1024)	/* floats: 4 MiB */

static int producer(struct tfd_channel *ch)
{
	const int64_t shape = N;
	struct tfd_message *msg = NULL;
	struct tfd_buffer *buf = NULL;
	struct tfd_layout l;
	int r;

	r = tfd_cuda_buffer_new(0, sizeof(float) * N, 0, &buf);
	if (r < 0) {
		fprintf(stderr, "cuda: %s\n", tfd_last_error());
		return 1;
	}
	/* bytes of 0x3f: every float is 0.746... */
	if (cudaMemset((void *)(uintptr_t)tfd_cuda_buffer_ptr(buf), 0x3f, sizeof(float) * N) !=
	    cudaSuccess)
		r = -EIO;
	tfd_layout_init(&l, (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 1, &shape);
	l.device.type = TFD_DEVICE_CUDA;
	if (r == 0 && (r = tfd_message_new(&msg)) == 0 &&
	    (r = tfd_message_add_tensor(msg, "x", buf, &l)) == 0 &&
	    (r = tfd_message_cuda_record(msg, NULL)) >= 0)
		r = tfd_channel_send(ch, msg);
	tfd_message_unref(msg);
	/* the child's mapping keeps the memory; ours ends here */
	tfd_buffer_unref(buf);
	return r < 0 ? 1 : 0;
}

static int consumer(struct tfd_channel *ch)
{
	struct tfd_message *msg;
	float host[4] = { 0 }, want;
	int r, i, ok = 1;

	r = tfd_channel_recv(ch, 10000, &msg);
	if (r < 0) {
		fprintf(stderr, "cuda: receive: %s\n", tfd_channel_strerror(ch));
		return 1;
	}
	tfd_message_cuda_wait(msg, NULL);	/* the fill is done before we read */
	if (cudaMemcpy(host, (const void *)(uintptr_t)tfd_message_cuda_ptr(msg, 0), sizeof(host),
		       cudaMemcpyDeviceToHost) != cudaSuccess)
		ok = 0;
	memset(&want, 0x3f, sizeof(want));
	for (i = 0; i < 4; i++)
		ok &= host[i] == want;
	printf("cuda: the child read the parent's GPU tensor in place: %s (%g)\n",
	       ok ? "ok" : "WRONG", host[0]);
	tfd_message_unref(msg);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct tfd_channel *ch[2];
	int status, r;
	pid_t pid;

	if (argc > 1) {
		printf("usage: cuda\nA parent fills a GPU tensor and its child reads it in place.\n"
		       "Takes no options; exits 0 with a note where there is no GPU.\n");
		return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 2 : 0;
	}
	/* the probe loads the driver in a child, so this process may still fork */
	pid = fork();
	if (pid == 0)
		_exit(tfd_cuda_probe() == 1 ? 0 : 3);
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		tfd_cuda_probe();
		printf("cuda: no usable GPU here (%s): nothing to show\n", tfd_last_error());
		return 0;
	}
	if (tfd_channel_pair(&ch[0], &ch[1]) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		tfd_channel_unref(ch[0]);
		r = consumer(ch[1]);
		tfd_channel_unref(ch[1]);
		_exit(r);
	}
	tfd_channel_unref(ch[1]);
	r = producer(ch[0]);
	/* keep the channel until the child has its message */
	waitpid(pid, &status, 0);
	tfd_channel_unref(ch[0]);
	return r || !WIFEXITED(status) || WEXITSTATUS(status) ? 1 : 0;
}
