/* SPDX-License-Identifier: MIT */
/*
 * tensorfd: hand tensors to another process without copying them.
 *
 * A tensor lives in a buffer (a sealed memfd, or a dma-buf). A message names several
 * tensors by buffer, offset and DLPack-style layout. A channel carries
 * messages between two processes over a Unix SOCK_SEQPACKET socket; a
 * buffer's fd crosses a channel once, later messages only name it.
 *
 * Every fallible call returns 0 (or a count) on success and a negative
 * errno value on failure. See tensorfd(7).
 */
#ifndef TENSORFD_H
#define TENSORFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The release these headers belong to; tfd_version() says which library runs. */
#define TFD_VERSION_MAJOR	0
#define TFD_VERSION_MINOR	3
#define TFD_VERSION_MICRO	0
#define TFD_MAKE_VERSION(major, minor, micro)	((major) * 10000 + (minor) * 100 + (micro))
#define TFD_VERSION \
	TFD_MAKE_VERSION(TFD_VERSION_MAJOR, TFD_VERSION_MINOR, TFD_VERSION_MICRO)

/* Limits; a peer that exceeds them is refused. */
#define TFD_MAX_NDIM		32
#define TFD_NAME_MAX		64	/* including the terminating NUL */
#define TFD_MAX_TENSORS		64	/* per message */
#define TFD_MAX_USER_DATA	4096	/* bytes of user data per message */

/* DLPack's DLDataTypeCode values. */
enum tfd_dtype_code {
	TFD_INT = 0,
	TFD_UINT = 1,
	TFD_FLOAT = 2,
	TFD_BFLOAT = 4,
	TFD_COMPLEX = 5,
	TFD_BOOL = 6,
};

/* DLPack's DLDeviceType values; CPU and CUDA tensors are carried. */
enum tfd_device_type {
	TFD_DEVICE_CPU = 1,
	TFD_DEVICE_CUDA = 2,
	TFD_DEVICE_CUDA_HOST = 3,
};

struct tfd_dtype {
	uint8_t code;		/* enum tfd_dtype_code */
	uint8_t bits;		/* bits per lane */
	uint16_t lanes;		/* 1 for scalars */
};

struct tfd_device {
	int32_t type;		/* enum tfd_device_type */
	int32_t id;
};

/*
 * The layout of one tensor inside a buffer, as DLPack describes it:
 * strides count elements, not bytes; byte_offset is where element
 * [0, 0, ...] lies from the start of the buffer.
 */
struct tfd_layout {
	struct tfd_dtype dtype;
	int32_t ndim;
	struct tfd_device device;
	uint64_t byte_offset;
	int64_t shape[TFD_MAX_NDIM];
	int64_t strides[TFD_MAX_NDIM];
};

struct tfd_buffer;
struct tfd_message;
struct tfd_channel;
struct tfd_listener;

/* Layouts */
int tfd_layout_init(struct tfd_layout *layout, struct tfd_dtype dtype, int ndim,
		    const int64_t *shape);
int tfd_layout_validate(const struct tfd_layout *layout);
int tfd_layout_span(const struct tfd_layout *layout, uint64_t *lo, uint64_t *hi);
int tfd_layout_nbytes(const struct tfd_layout *layout, uint64_t *ret);
bool tfd_layout_is_contiguous(const struct tfd_layout *layout);

/* Buffers */
enum {
	TFD_BUFFER_POPULATE = 1u << 0,	/* prefault every page at creation */
};

int tfd_buffer_new(uint64_t size, unsigned int flags, struct tfd_buffer **ret);
struct tfd_buffer *tfd_buffer_ref(struct tfd_buffer *buf);
struct tfd_buffer *tfd_buffer_unref(struct tfd_buffer *buf);
void *tfd_buffer_data(const struct tfd_buffer *buf);
uint64_t tfd_buffer_size(const struct tfd_buffer *buf);
int tfd_buffer_fd(const struct tfd_buffer *buf);
bool tfd_buffer_is_writable(const struct tfd_buffer *buf);
unsigned int tfd_buffer_loans(const struct tfd_buffer *buf);

/* Messages */
int tfd_message_new(struct tfd_message **ret);
struct tfd_message *tfd_message_ref(struct tfd_message *msg);
struct tfd_message *tfd_message_unref(struct tfd_message *msg);
int tfd_message_add_tensor(struct tfd_message *msg, const char *name, struct tfd_buffer *buf,
			   const struct tfd_layout *layout);
int tfd_message_set_user_data(struct tfd_message *msg, const void *data, size_t len);
const void *tfd_message_get_user_data(const struct tfd_message *msg, size_t *len);
int tfd_message_count(const struct tfd_message *msg);
int tfd_message_find(const struct tfd_message *msg, const char *name);
const char *tfd_message_name(const struct tfd_message *msg, unsigned int index);
const struct tfd_layout *tfd_message_layout(const struct tfd_message *msg, unsigned int index);
struct tfd_buffer *tfd_message_buffer(const struct tfd_message *msg, unsigned int index);
void *tfd_message_data(const struct tfd_message *msg, unsigned int index);
uint64_t tfd_message_seq(const struct tfd_message *msg);
uint64_t tfd_message_timestamp(const struct tfd_message *msg);

/* Channels */
struct tfd_channel_stats {
	uint64_t messages_sent;
	uint64_t messages_received;
	uint64_t fds_sent;		/* buffer fds passed with SCM_RIGHTS */
	uint64_t fds_received;
	uint64_t releases_sent;
	uint64_t releases_received;
	uint64_t buffers_mapped;	/* receiver mappings currently held */
	uint64_t messages_in_flight;	/* sent, not yet released by the peer */
};

int tfd_channel_pair(struct tfd_channel **ret0, struct tfd_channel **ret1);
int tfd_channel_connect(const char *path, struct tfd_channel **ret);
struct tfd_channel *tfd_channel_ref(struct tfd_channel *ch);
struct tfd_channel *tfd_channel_unref(struct tfd_channel *ch);
int tfd_channel_send(struct tfd_channel *ch, struct tfd_message *msg);
int tfd_channel_recv(struct tfd_channel *ch, int timeout_ms, struct tfd_message **ret);
int tfd_channel_dispatch(struct tfd_channel *ch, int timeout_ms);
int tfd_channel_get_fd(const struct tfd_channel *ch);
int tfd_channel_set_send_timeout(struct tfd_channel *ch, int timeout_ms);
int tfd_channel_get_stats(const struct tfd_channel *ch, struct tfd_channel_stats *stats);
const char *tfd_channel_backend(const struct tfd_channel *ch);
const char *tfd_channel_strerror(const struct tfd_channel *ch);

int tfd_listener_new(const char *path, struct tfd_listener **ret);
struct tfd_listener *tfd_listener_unref(struct tfd_listener *l);
int tfd_listener_accept(struct tfd_listener *l, int timeout_ms, struct tfd_channel **ret);
int tfd_listener_get_fd(const struct tfd_listener *l);

/*
 * Topics: publish/subscribe without a broker. A publisher of topic
 * "camera/front" listens on <runtime dir>/camera/front.sock; subscribers
 * find it by name, before or after it starts, and re-attach when it
 * restarts. Buffers are loaned from the publisher's pool and reused once
 * every subscriber released them.
 */
#define TFD_TOPIC_MAX		96	/* bytes of a topic name, without the NUL */

struct tfd_publisher;
struct tfd_subscriber;

enum tfd_drop_policy {
	TFD_DROP_OLDEST = 0,	/* a subscriber that falls behind loses its oldest queued messages */
	TFD_BLOCK = 1,		/* publish waits (with a timeout) until every subscriber has room */
};

enum {
	TFD_PUBLISHER_LATCHED = 1u << 0,	/* a new subscriber first gets the last message */
	TFD_PUBLISHER_ZERO_COPY = 1u << 1,	/* refuse tensors outside the pool, never copy */
	TFD_PUBLISHER_READONLY_DMABUF = 1u << 2, /* refuse dma-bufs a subscriber could map writable */
};

enum {
	TFD_SUBSCRIBER_SAME_USER = 1u << 0,	/* attach only to publishers of our own uid */
};

struct tfd_publisher_stats {
	uint64_t published;		/* messages published */
	uint64_t copied_tensors;	/* tensors copied into the pool because they were not loaned */
	uint64_t dropped;		/* deliveries dropped by the drop policy, all subscribers */
	uint64_t subscribers;		/* attached now */
	uint64_t attached_total;	/* subscribers ever attached */
	uint64_t refused;		/* peers refused (credentials, protocol) */
	uint64_t pool_buffers;		/* buffers in the pool */
	uint64_t pool_bytes;
	uint64_t pool_buffers_busy;	/* loaned to the application or to subscribers */
	uint64_t pool_bytes_busy;
};

struct tfd_subscriber_info {
	int32_t pid;
	uint32_t uid;
	uint32_t gid;
	uint32_t queued;		/* waiting in the publisher for room */
	uint64_t in_flight;		/* sent, not yet released */
	uint64_t delivered;
	uint64_t dropped;
};

struct tfd_subscriber_stats {
	uint64_t received;
	uint64_t dropped;		/* messages the publisher dropped for us (sequence gaps) */
	uint64_t attaches;		/* times attached to a publisher */
	uint64_t last_seq;
	bool connected;
};

int tfd_runtime_dir(char *buf, size_t len);
int tfd_topic_path(const char *topic, char *buf, size_t len);

int tfd_publisher_new(const char *topic, unsigned int flags, struct tfd_publisher **ret);
struct tfd_publisher *tfd_publisher_ref(struct tfd_publisher *pub);
struct tfd_publisher *tfd_publisher_unref(struct tfd_publisher *pub);
int tfd_publisher_set_pool_limits(struct tfd_publisher *pub, unsigned int max_buffers,
				  uint64_t max_bytes);
int tfd_publisher_set_queue(struct tfd_publisher *pub, unsigned int depth,
			    enum tfd_drop_policy policy, int block_timeout_ms);
int tfd_publisher_allow_uid(struct tfd_publisher *pub, uint32_t uid);
int tfd_publisher_allow_gid(struct tfd_publisher *pub, uint32_t gid);
int tfd_publisher_loan(struct tfd_publisher *pub, uint64_t size, struct tfd_buffer **ret);
int tfd_publisher_loan_tensor(struct tfd_publisher *pub, struct tfd_dtype dtype, int ndim,
			      const int64_t *shape, struct tfd_buffer **buf,
			      struct tfd_layout *layout);
int tfd_publisher_publish(struct tfd_publisher *pub, struct tfd_message *msg);
int tfd_publisher_dispatch(struct tfd_publisher *pub, int timeout_ms);
int tfd_publisher_loan_message(struct tfd_publisher *pub, const char *name,
			       struct tfd_dtype dtype, int ndim, const int64_t *shape,
			       struct tfd_message **ret);
int tfd_publisher_send(struct tfd_publisher *pub, struct tfd_message *msg);
int tfd_publisher_add_copy(struct tfd_publisher *pub, struct tfd_message *msg, const char *name,
			   const void *data, const struct tfd_layout *layout);
int tfd_publisher_wait_subscribers(struct tfd_publisher *pub, unsigned int n, int timeout_ms);
int tfd_publisher_get_fd(const struct tfd_publisher *pub);
int tfd_publisher_get_stats(const struct tfd_publisher *pub, struct tfd_publisher_stats *stats);
int tfd_publisher_get_subscriber(const struct tfd_publisher *pub, unsigned int index,
				 struct tfd_subscriber_info *info);
const char *tfd_publisher_path(const struct tfd_publisher *pub);
const char *tfd_publisher_strerror(const struct tfd_publisher *pub);

int tfd_subscriber_new(const char *topic, unsigned int flags, struct tfd_subscriber **ret);
struct tfd_subscriber *tfd_subscriber_ref(struct tfd_subscriber *sub);
struct tfd_subscriber *tfd_subscriber_unref(struct tfd_subscriber *sub);
int tfd_subscriber_recv(struct tfd_subscriber *sub, int timeout_ms, struct tfd_message **ret);
int tfd_subscriber_get_fd(const struct tfd_subscriber *sub);
int tfd_subscriber_get_stats(const struct tfd_subscriber *sub,
			     struct tfd_subscriber_stats *stats);
const char *tfd_subscriber_strerror(const struct tfd_subscriber *sub);
int tfd_subscriber_wait(struct tfd_subscriber *const *subs, unsigned int n, int timeout_ms,
			bool *ready);

bool tfd_message_copied(const struct tfd_message *msg, unsigned int index);

/*
 * dma-buf buffers: memory a device driver exports (camera, GPU, decoder)
 * or that the kernel's dma-buf allocators hand out, carried like memfd
 * buffers. CPU access goes between tfd_buffer_begin_access() and
 * tfd_buffer_end_access(). See tensorfd(7), DMA-BUF.
 */
enum tfd_buffer_kind {
	TFD_BUFFER_MEMFD = 1,
	TFD_BUFFER_DMABUF = 2,
};

enum tfd_dmabuf_source {
	TFD_DMABUF_ANY = 0,		/* the first that works, in the order below */
	TFD_DMABUF_HEAP = 1,		/* /dev/dma_heap/system */
	TFD_DMABUF_UDMABUF = 2,		/* /dev/udmabuf over a sealed memfd */
	TFD_DMABUF_DRM = 3,		/* DRM dumb buffer on /dev/dri/card*, PRIME export */
	TFD_DMABUF_EXTERNAL = 4,	/* wrapped from the caller's fd */
};

enum {
	TFD_ACCESS_READ = 1u << 0,
	TFD_ACCESS_WRITE = 1u << 1,
};

#define TFD_DMABUF_NAME_MAX	32	/* the kernel's DMA_BUF_NAME_LEN, with the NUL */

int tfd_dmabuf_probe(void);
int tfd_dmabuf_new(uint64_t size, enum tfd_dmabuf_source source, unsigned int flags,
		   struct tfd_buffer **ret);
int tfd_dmabuf_wrap(int fd, struct tfd_buffer **ret);
int tfd_dmabuf_set_name(struct tfd_buffer *buf, const char *name);
int tfd_dmabuf_source(const struct tfd_buffer *buf);
int tfd_buffer_kind(const struct tfd_buffer *buf);
int tfd_buffer_begin_access(struct tfd_buffer *buf, unsigned int access);
int tfd_buffer_end_access(struct tfd_buffer *buf, unsigned int access);

/*
 * CUDA tensors: GPU memory that crosses a channel or topic without touching
 * host memory. The driver is loaded at run time, on first use; without one
 * these calls fail with -ENODEV (no driver) or -EOPNOTSUPP (built without
 * CUDA), with the reason in tfd_last_error(). See tensorfd(7), CUDA.
 */
enum {
	TFD_BUFFER_CUDA = 3,		/* cuMemCreate memory, exported once as an fd */
	TFD_BUFFER_CUDA_IPC = 4,	/* memory the caller owns, sent as a cuIpc handle */
	TFD_BUFFER_CUDA_EXTMEM = 5,	/* an fd the receiver imports with cuImportExternalMemory */
};

enum {
	TFD_CUDA_EXTMEM = 1u << 0,	/* tfd_cuda_buffer_new: receivers import it as external memory */
};

#define TFD_CUDA_UUID_SIZE	16

int tfd_cuda_probe(void);
int tfd_cuda_buffer_new(int device, uint64_t size, unsigned int flags, struct tfd_buffer **ret);
int tfd_cuda_buffer_wrap(uint64_t ptr, uint64_t *offset, struct tfd_buffer **ret);
uint64_t tfd_cuda_buffer_ptr(const struct tfd_buffer *buf);
int tfd_cuda_buffer_device(const struct tfd_buffer *buf, uint8_t uuid[TFD_CUDA_UUID_SIZE]);
uint64_t tfd_message_cuda_ptr(const struct tfd_message *msg, unsigned int index);
int tfd_message_cuda_record(struct tfd_message *msg, void *stream);
int tfd_message_cuda_wait(const struct tfd_message *msg, void *stream);
int tfd_cuda_host_register(struct tfd_buffer *buf);

/*
 * Introspection: ask a topic's publisher, over its socket, who it is and
 * how it is doing. The asker is not a subscriber and is counted nowhere.
 * The library allocates the struct; later versions may append fields.
 */
struct tfd_topic_info {
	int32_t pid;			/* the publisher, as the kernel tells (SO_PEERCRED) */
	uint32_t uid;
	uint32_t gid;
	unsigned int flags;		/* TFD_PUBLISHER_* it was made with */
	char comm[16];			/* its command name, as it says */
	unsigned int depth;		/* queue depth per subscriber */
	enum tfd_drop_policy policy;
	uint64_t uptime_ns;		/* since tfd_publisher_new() */
	struct tfd_publisher_stats stats;
	unsigned int n_subscribers;	/* entries in subscribers, at most stats.subscribers */
	struct tfd_subscriber_info *subscribers;
};

int tfd_topic_query(const char *topic, int timeout_ms, struct tfd_topic_info **ret);
void tfd_topic_info_free(struct tfd_topic_info *info);

/* Logging: the library prints nothing unless a callback is set. */
enum tfd_log_level {
	TFD_LOG_ERR = 3,
	TFD_LOG_WARNING = 4,
	TFD_LOG_INFO = 6,
	TFD_LOG_DEBUG = 7,
};

typedef void (*tfd_log_fn)(int level, const char *msg, void *userdata);
void tfd_set_log_fn(tfd_log_fn fn, void *userdata);
const char *tfd_last_error(void);
unsigned int tfd_version(void);

/*
 * Typed metadata: key/value pairs and a capture time in a message's user
 * data, one format for C, Python and the tools (tfd_message_set_int(3)).
 */
#define TFD_META_MAX	128	/* entries per message */

enum tfd_meta_type {
	TFD_META_NULL = 1,
	TFD_META_BOOL = 2,
	TFD_META_INT = 3,
	TFD_META_FLOAT = 4,
	TFD_META_STRING = 5,
	TFD_META_BYTES = 6,
};

int tfd_message_set_null(struct tfd_message *msg, const char *key);
int tfd_message_set_bool(struct tfd_message *msg, const char *key, bool value);
int tfd_message_set_int(struct tfd_message *msg, const char *key, int64_t value);
int tfd_message_set_float(struct tfd_message *msg, const char *key, double value);
int tfd_message_set_string(struct tfd_message *msg, const char *key, const char *value);
int tfd_message_set_bytes(struct tfd_message *msg, const char *key, const void *data,
			  size_t len);
int tfd_message_get_bool(const struct tfd_message *msg, const char *key, bool *ret);
int tfd_message_get_int(const struct tfd_message *msg, const char *key, int64_t *ret);
int tfd_message_get_float(const struct tfd_message *msg, const char *key, double *ret);
int tfd_message_get_string(const struct tfd_message *msg, const char *key, const char **ret);
int tfd_message_get_bytes(const struct tfd_message *msg, const char *key, const void **ret,
			  size_t *len);
int tfd_message_meta_count(const struct tfd_message *msg);
int tfd_message_meta_key(const struct tfd_message *msg, unsigned int index, const char **key);
int tfd_message_set_capture_time(struct tfd_message *msg, uint64_t ns);
uint64_t tfd_message_capture_time(const struct tfd_message *msg);

/* Helpers for __attribute__((cleanup)). */
static inline void tfd_buffer_unrefp(struct tfd_buffer **p)
{
	tfd_buffer_unref(*p);
}

static inline void tfd_message_unrefp(struct tfd_message **p)
{
	tfd_message_unref(*p);
}

static inline void tfd_channel_unrefp(struct tfd_channel **p)
{
	tfd_channel_unref(*p);
}

static inline void tfd_listener_unrefp(struct tfd_listener **p)
{
	tfd_listener_unref(*p);
}

static inline void tfd_publisher_unrefp(struct tfd_publisher **p)
{
	tfd_publisher_unref(*p);
}

static inline void tfd_subscriber_unrefp(struct tfd_subscriber **p)
{
	tfd_subscriber_unref(*p);
}

#ifdef __cplusplus
}
#endif

#endif
