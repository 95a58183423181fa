/* SPDX-License-Identifier: MIT */
/*
 * Messages: named tensors, each a layout inside a buffer, plus a sequence
 * number, a send timestamp and a few user bytes. A message holds a
 * reference on each buffer it names. A received message tells its channel
 * when its last reference dies, so the sender can reuse the buffers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gpu.h"
#include "internal.h"

TFD_EXPORT int tfd_message_new(struct tfd_message **ret)
{
	struct tfd_message *m;

	if (!ret)
		return fail_args();
	m = calloc(1, sizeof(*m));
	if (!m)
		return fail_nomem();
	m->refs = 1;
	*ret = m;
	return 0;
}

int message_new_received(unsigned int n, struct tfd_message **ret)
{
	struct tfd_message *m;
	int r;

	r = tfd_message_new(&m);
	if (r < 0)
		return r;
	if (n) {
		m->t = calloc(n, sizeof(*m->t));
		if (!m->t) {
			free(m);
			return fail_nomem();
		}
		m->cap = n;
	}
	m->received = true;
	*ret = m;
	return 0;
}

TFD_EXPORT struct tfd_message *tfd_message_ref(struct tfd_message *msg)
{
	if (msg)
		msg->refs++;
	return msg;
}

TFD_EXPORT struct tfd_message *tfd_message_unref(struct tfd_message *msg)
{
	unsigned int i;

	if (!msg || --msg->refs > 0)
		return NULL;
	if (msg->rx_channel)
		channel_release(msg->rx_channel, msg);
	for (i = 0; i < msg->n; i++)
		tfd_buffer_unref(msg->t[i].buf);
	free(msg->t);
	free(msg->user);
	free(msg);
	return NULL;
}

/* Names are short printable ASCII without spaces: they travel as keys. */
static int name_check(const char *name)
{
	size_t i, len;

	if (!name)
		return tfd_fail(NULL, 0, -EINVAL, "tensor name is NULL");
	len = strnlen(name, TFD_NAME_MAX);
	if (len == 0 || len >= TFD_NAME_MAX)
		return tfd_fail(NULL, 0, -EINVAL, "tensor name must have 1 to %d bytes",
				TFD_NAME_MAX - 1);
	for (i = 0; i < len; i++)
		if (name[i] <= ' ' || name[i] > '~')
			return tfd_fail(NULL, 0, -EINVAL,
					"tensor name has a byte 0x%02x outside printable ASCII",
					(unsigned char)name[i]);
	return 0;
}

int message_check_tensor(const char *name, const struct tfd_buffer *buf,
			 const struct tfd_layout *layout)
{
	uint64_t lo, hi;
	int r;

	r = name_check(name);
	if (r < 0)
		return r;
	/* GPU buffers hold CUDA tensors, the others CPU tensors */
	if (layout->device.type != (buffer_is_gpu(buf) ? TFD_DEVICE_CUDA : TFD_DEVICE_CPU))
		return tfd_fail(NULL, 0, -EOPNOTSUPP,
				"tensor '%s': device type %d does not match its %s buffer", name,
				layout->device.type, buffer_is_gpu(buf) ? "GPU" : "CPU");
	r = tfd_layout_span(layout, &lo, &hi);
	if (r < 0)
		return tfd_fail(NULL, 0, r, "tensor '%s': %s", name, tfd_last_error());
	if (hi > buf->size || lo > buf->size)
		return tfd_fail(NULL, 0, -ERANGE,
				"tensor '%s' reaches byte %llu of a buffer of %llu bytes", name,
				(unsigned long long)hi, (unsigned long long)buf->size);
	return 0;
}

/* May msg still be changed? Not once received or published, with the reason why. */
int message_check_mutable(const struct tfd_message *msg)
{
	if (msg->received)
		return tfd_fail(NULL, 0, -EPERM, "a received message cannot be changed");
	if (msg->published)
		return tfd_fail(NULL, 0, -EBUSY,
				"the message was published (seq %llu) and may still wait in "
				"subscribers' queues: make a new message", (unsigned long long)msg->seq);
	return 0;
}

TFD_EXPORT int tfd_message_add_tensor(struct tfd_message *msg, const char *name,
				      struct tfd_buffer *buf, const struct tfd_layout *layout)
{
	struct tensor_entry *t;
	int r;

	if (!msg || !buf || !layout)
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_message_add_tensor");
	r = message_check_mutable(msg);
	if (r < 0)
		return r;
	r = message_check_tensor(name, buf, layout);
	if (r < 0)
		return r;
	if (tfd_message_find(msg, name) >= 0)
		return tfd_fail(NULL, 0, -EEXIST, "tensor '%s' is already in the message", name);
	if (msg->n >= TFD_MAX_TENSORS)
		return tfd_fail(NULL, 0, -E2BIG, "a message holds at most %d tensors",
				TFD_MAX_TENSORS);
	if (msg->n == msg->cap) {
		unsigned int cap = msg->cap ? msg->cap * 2 : 2;

		t = realloc(msg->t, cap * sizeof(*t));
		if (!t)
			return fail_nomem();
		msg->t = t;
		msg->cap = cap;
	}
	t = &msg->t[msg->n++];
	memset(t, 0, sizeof(*t));
	strcpy(t->name, name);
	t->layout = *layout;
	t->buf = tfd_buffer_ref(buf);
	return 0;
}

TFD_EXPORT int tfd_message_set_user_data(struct tfd_message *msg, const void *data, size_t len)
{
	void *copy = NULL;
	int r;

	if (!msg || (len && !data))
		return tfd_fail(NULL, 0, -EINVAL, "bad arguments to tfd_message_set_user_data");
	r = message_check_mutable(msg);
	if (r < 0)
		return r;
	if (len > TFD_MAX_USER_DATA)
		return tfd_fail(NULL, 0, -E2BIG, "user data is limited to %d bytes",
				TFD_MAX_USER_DATA);
	if (len) {
		copy = malloc(len);
		if (!copy)
			return fail_nomem();
		memcpy(copy, data, len);
	}
	free(msg->user);
	msg->user = copy;
	msg->user_len = len;
	return 0;
}

TFD_EXPORT const void *tfd_message_get_user_data(const struct tfd_message *msg, size_t *len)
{
	if (len)
		*len = msg ? msg->user_len : 0;
	return msg ? msg->user : NULL;
}

TFD_EXPORT int tfd_message_count(const struct tfd_message *msg)
{
	return msg ? (int)msg->n : -EINVAL;
}

TFD_EXPORT int tfd_message_find(const struct tfd_message *msg, const char *name)
{
	unsigned int i;

	if (!msg || !name)
		return fail_args();
	for (i = 0; i < msg->n; i++)
		if (strcmp(msg->t[i].name, name) == 0)
			return (int)i;
	return -ENOENT;
}

TFD_EXPORT const char *tfd_message_name(const struct tfd_message *msg, unsigned int index)
{
	return msg && index < msg->n ? msg->t[index].name : NULL;
}

TFD_EXPORT const struct tfd_layout *tfd_message_layout(const struct tfd_message *msg,
						       unsigned int index)
{
	return msg && index < msg->n ? &msg->t[index].layout : NULL;
}

TFD_EXPORT struct tfd_buffer *tfd_message_buffer(const struct tfd_message *msg, unsigned int index)
{
	return msg && index < msg->n ? msg->t[index].buf : NULL;
}

TFD_EXPORT void *tfd_message_data(const struct tfd_message *msg, unsigned int index)
{
	if (!msg || index >= msg->n || msg->t[index].buf->map == MAP_FAILED)
		return NULL;	/* GPU tensors: tfd_message_cuda_ptr() */
	return (char *)msg->t[index].buf->map + msg->t[index].layout.byte_offset;
}

TFD_EXPORT uint64_t tfd_message_seq(const struct tfd_message *msg)
{
	return msg ? msg->seq : 0;
}

TFD_EXPORT uint64_t tfd_message_timestamp(const struct tfd_message *msg)
{
	return msg ? msg->timestamp : 0;
}

TFD_EXPORT bool tfd_message_copied(const struct tfd_message *msg, unsigned int index)
{
	return msg && index < msg->n && (msg->t[index].flags & TENSOR_COPIED);
}
