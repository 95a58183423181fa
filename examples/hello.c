/* SPDX-License-Identifier: MIT */
/*
 * hello: a parent puts two tensors in one shared buffer and sends them, with
 * a few user bytes, to its child, which reads them in place: nothing is copied.
 */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tensorfd.h>

static int send_tensors(struct tfd_channel *ch)
{
	const int64_t hidden_shape[] = { 4, 8 }, image_shape[] = { 2, 3, 4 };
	struct tfd_layout hidden, image;
	struct tfd_message *msg = NULL;
	struct tfd_buffer *buf;
	int i, r;

	/* One 4 KiB buffer: float32 [4, 8] at byte 0, uint8 [2, 3, 4] at byte 128. */
	if ((r = tfd_buffer_new(4096, 0, &buf)) < 0)
		return r;
	for (i = 0; i < 32; i++)
		((float *)tfd_buffer_data(buf))[i] = (float)i;
	for (i = 0; i < 24; i++)
		((uint8_t *)tfd_buffer_data(buf))[128 + i] = (uint8_t)i;
	tfd_layout_init(&hidden, (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 2, hidden_shape);
	tfd_layout_init(&image, (struct tfd_dtype){ TFD_UINT, 8, 1 }, 3, image_shape);
	image.byte_offset = 128;
	if ((r = tfd_message_new(&msg)) == 0 &&
	    (r = tfd_message_add_tensor(msg, "hidden_state", buf, &hidden)) == 0 &&
	    (r = tfd_message_add_tensor(msg, "image", buf, &image)) == 0 &&
	    (r = tfd_message_set_user_data(msg, "step=7", 6)) == 0)
		r = tfd_channel_send(ch, msg);	/* the buffer's fd crosses here, once */
	tfd_message_unref(msg);
	tfd_buffer_unref(buf);	/* the channel keeps it until the child is done */
	return r;
}

static int receive_tensors(struct tfd_channel *ch)
{
	struct tfd_message *msg;
	const float *h;
	const uint8_t *img;
	const char *user;
	size_t len;
	int i, d, ok;

	if (tfd_channel_recv(ch, 5000, &msg) < 0) {
		fprintf(stderr, "hello: the child received nothing: %s\n", tfd_channel_strerror(ch));
		return 1;
	}
	for (i = 0; i < tfd_message_count(msg); i++) {
		const struct tfd_layout *l = tfd_message_layout(msg, i);

		printf("%-12s shape", tfd_message_name(msg, i));
		for (d = 0; d < l->ndim; d++)
			printf(" %lld", (long long)l->shape[d]);
		printf("\n");
	}
	/* The parent's pages, mapped read-only; NULL for a name that is absent. */
	h = tfd_message_data(msg, tfd_message_find(msg, "hidden_state"));
	img = tfd_message_data(msg, tfd_message_find(msg, "image"));
	user = tfd_message_get_user_data(msg, &len);
	ok = h && img && h[31] == 31.0f && img[23] == 23 && len == 6 && !memcmp(user, "step=7", 6);
	if (ok)
		printf("hidden_state[3][7] = %.1f, image[1][2][3] = %d, user data \"%.6s\"\n",
		       h[31], img[23], user);
	else
		fprintf(stderr, "hello: the child did not get what the parent sent\n");
	tfd_message_unref(msg);	/* tells the parent its buffer is free again */
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct tfd_channel *ch[2];
	int status, r;
	pid_t pid;

	if (argc > 1) {
		printf("usage: hello\nA parent sends two tensors in one shared buffer to its child,\n"
		       "which reads them in place. Takes no options.\n");
		return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 2 : 0;
	}

	if (tfd_channel_pair(&ch[0], &ch[1]) < 0 || (pid = fork()) < 0)
		return 1;
	if (pid == 0) {
		tfd_channel_unref(ch[0]);
		r = receive_tensors(ch[1]);
		tfd_channel_unref(ch[1]);
		return r;	/* exit() flushes what the child printed */
	}
	tfd_channel_unref(ch[1]);
	r = send_tensors(ch[0]);
	if (r < 0)
		fprintf(stderr, "hello: sending failed: %s\n", strerror(-r));
	if (waitpid(pid, &status, 0) < 0)
		return 1;
	tfd_channel_unref(ch[0]);
	return r == 0 && WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
