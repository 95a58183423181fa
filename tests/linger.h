/* SPDX-License-Identifier: MIT */
/*
 * A weapon for the hostile tests: a socket whose last close() blocks. A TCP
 * connection over loopback (127.0.0.1 only) with SO_LINGER {1, LINGER_S},
 * its send buffer full and its peer not reading: whoever holds the last
 * reference and closes it waits up to LINGER_S seconds for data that can
 * never leave. A peer sends it along with a packet and closes its own copy.
 */
#ifndef TFD_TEST_LINGER_H
#define TFD_TEST_LINGER_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "tap.h"

#define LINGER_S	10	/* how long a blocked close would take */
#define PROMPT_MS	4000	/* a victim's call returning before this was not blocked */

/*
 * The lingering socket, or -1 (loopback TCP unavailable). keep[0] and
 * keep[1] are the listener and the non-reading peer: closing them (after the
 * victim's call returned) resets the connection and ends any blocked close.
 */
static inline int lingering_socket(int keep[2])
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct linger lg = { .l_onoff = 1, .l_linger = LINGER_S };
	socklen_t len = sizeof(sa);
	int small = 4096, l, c = -1, a = -1;
	char junk[4096] = { 0 };

	keep[0] = keep[1] = -1;
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -1;
	/* small windows: the buffers fill after a few writes */
	setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) < 0)
		goto fail;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0)
		goto fail;
	setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (a < 0 || setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
		goto fail;
	while (send(c, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
		;
	if (errno != EAGAIN)
		goto fail;
	keep[0] = l;
	keep[1] = a;
	return c;
fail:
	if (a >= 0)
		close(a);
	if (c >= 0)
		close(c);
	close(l);
	return -1;
}

static inline void lingering_end(int keep[2])
{
	if (keep[1] >= 0)
		close(keep[1]);
	if (keep[0] >= 0)
		close(keep[0]);
	keep[0] = keep[1] = -1;
}

/*
 * A Unix socket whose receive queue holds a lingering socket: closing it
 * closes the one inside, in the closer's task. SO_LINGER {1, 0} on the
 * outer socket changes nothing; only a close elsewhere helps.
 */
static inline int nested_lingering_socket(int keep[2])
{
	char cbuf[CMSG_SPACE(sizeof(int))] __attribute__((aligned(8))) = { 0 };
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	int sv[2], s = lingering_socket(keep);

	if (s < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0) {
		close(s);
		lingering_end(keep);
		return -1;
	}
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &s, sizeof(int));
	if (sendmsg(sv[0], &mh, 0) < 0)
		sv[1] = -1;
	close(s);
	close(sv[0]);
	return sv[1];
}

#endif
