/* SPDX-License-Identifier: MIT */
/*
 * Record files of tensorfd-record and tensorfd-play: a concatenation of
 * safetensors documents, one per message, each an 8-byte little-endian
 * header length, a JSON header and the tensors' bytes, C-contiguous. The
 * first document holds only "__metadata__" (format, version, topics);
 * each message's "__metadata__" holds its topic, sequence number, its
 * arrival time since the recording started (t_ns), the publisher's
 * timestamp and the user data in hex. docs/design.md and
 * tensorfd-record(1) describe it; any safetensors reader reads one
 * document at a time. One exception to safetensors: a tensor whose
 * elements alias (a stride of 0 broadcasts) is stored as the bytes of its
 * span (tfd_layout_span) with "strides" (elements) and "byte_offset" (of
 * element 0 in its data range) beside "shape"; plain safetensors readers
 * refuse such a document rather than misread it, since its range does not
 * match its shape.
 */
#ifndef TFD_RECFILE_H
#define TFD_RECFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorfd.h>

#define REC_FORMAT "tensorfd-record"
#define REC_VERSION "1"
#define REC_HEADER_MAX (1u << 20)	/* bytes of JSON a reader accepts */
#define REC_MAX_TOPICS 64

struct rec_tensor {
	char name[TFD_NAME_MAX];
	struct tfd_dtype dtype;
	int ndim;
	int64_t shape[TFD_MAX_NDIM];
	uint64_t begin, end;	/* within the data section */
	bool strided;		/* strides and byte_offset given: the range is the span */
	int64_t strides[TFD_MAX_NDIM];
	uint64_t byte_offset;
};

/* The tensor's layout within its data range [begin, end). */
void rec_layout(const struct rec_tensor *t, struct tfd_layout *l);

struct rec_msg {
	char topic[TFD_TOPIC_MAX + 1];
	uint64_t seq, t_ns, timestamp;
	unsigned int n;
	struct rec_tensor t[TFD_MAX_TENSORS];
	unsigned char user[TFD_MAX_USER_DATA];
	size_t user_len;
	uint64_t data_pos;	/* file offset of the data section */
	uint64_t data_len;
};

struct rec_file_info {
	unsigned int n_topics;
	char topics[REC_MAX_TOPICS][TFD_TOPIC_MAX + 1];
};

/*
 * Writers: 0 or a negative errno (the file could not be written).
 * rec_write_msg returns 1, writing nothing, for a message the format cannot
 * hold (a dtype safetensors has no name for, a tensor outside host memory,
 * the reserved name __metadata__), with the reason in err.
 */
int rec_write_start(int fd, const char *const *topics, unsigned int n);
int rec_write_msg(int fd, const char *topic, uint64_t t_ns, const struct tfd_message *m,
		  uint64_t *bytes, char *err, size_t errlen);

/* Readers: *pos is the offset of the next document and advances. */
int rec_read_start(int fd, uint64_t *pos, struct rec_file_info *info, char *err, size_t errlen);
/* 1: a message in *m; 0: end of file; < 0: a broken file, reason in err. */
int rec_read_msg(int fd, uint64_t *pos, struct rec_msg *m, char *err, size_t errlen);

#endif
