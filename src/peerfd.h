/* SPDX-License-Identifier: MIT */
/*
 * Fds a peer sent that we do not keep. A peer chooses what it sends, and
 * the last close() of some files blocks for as long as their owner likes (a
 * TCP socket lingering over unsent data, a Unix socket holding such a
 * socket in its queue, a FUSE file whose daemon does not answer FLUSH, a
 * pipe whose lock a splice holds), so these are never closed in the
 * caller's thread unless they are known to be harmless. See design.md,
 * "Closing what a peer sent".
 */
#ifndef TFD_PEERFD_H
#define TFD_PEERFD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * The kernel's limit of fds in one SCM_RIGHTS message (SCM_MAX_FD, not
 * exported). Every receive has control room for this many, so the kernel
 * never drops (and closes, in our task) fds that did not fit.
 */
#define PEER_CMSG_FDS 253

/* Close an fd a peer sent, never blocking on what the peer controls; fd < 0 is ignored. */
void peerfd_close(int fd);
void peerfd_close_many(int *fds, unsigned int n);
/*
 * The fds of a received message's SCM_RIGHTS headers, in order: up to max
 * into fds; any beyond are closed here. Returns how many were kept;
 * *dropped (if not NULL) says how many were not.
 */
unsigned int peerfd_collect(struct msghdr *mh, int *fds, unsigned int max, unsigned int *dropped);

/*
 * One packet from sockfd (non-blocking) on a connection whose protocol
 * allows no fds here: the length, -EAGAIN, a negative errno, or -EBADMSG
 * (reason in errbuf) when the packet carried fds or did not fit in cap.
 * The fds are closed with peerfd_close().
 */
ssize_t peerfd_recv_bare(int sockfd, void *buf, size_t cap, char *errbuf, size_t errlen);

/* For tests: fds handed to the reaper thread so far, and those not closed yet. */
unsigned long peerfd_reaped(void);
unsigned long peerfd_outstanding(void);

#endif
