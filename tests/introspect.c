/* SPDX-License-Identifier: MIT */
/*
 * Introspection (tfd_topic_query): a forked publisher answers with its
 * state, the asker is not counted as a subscriber, a real subscriber keeps
 * its messages, access control applies, the errors for a missing topic, a
 * stale socket and a refusal are the documented ones, and hostile askers
 * (silent, not reading, malformed, sending fds, even an fd whose close
 * blocks) leave the publisher serving with the fds it had.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "internal.h"
#include "linger.h"
#include "tap.h"
#include "wire.h"

#define TOPIC "intro/cam"
#define COMM "tfd-test-pub"
#define PENDING_HOSTILE_N 20	/* more than the publisher keeps pending */

struct child {
	pid_t pid;
	int ctl;	/* write 'p' to publish one message, close to stop */
};

static int publish_one(struct tfd_publisher *pub)
{
	const int64_t shape[] = { 4 };
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	int r;

	r = tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_FLOAT, 32, 1 }, 1, shape, &b,
				      &l);
	if (r < 0)
		return r;
	tfd_message_new(&m);
	r = tfd_message_add_tensor(m, "x", b, &l);
	if (r >= 0)
		r = tfd_publisher_publish(pub, m);
	tfd_message_unref(m);
	tfd_buffer_unref(b);
	return r;
}

static int publisher_main(int ctl, uint32_t only_uid)
{
	struct tfd_publisher *pub;
	struct pollfd pfd[2];
	char c;
	int i;

	prctl(PR_SET_NAME, COMM, 0, 0, 0);
	if (tfd_publisher_new(TOPIC, 0, &pub) < 0)
		return 10;
	if (only_uid && tfd_publisher_allow_uid(pub, only_uid) < 0)
		return 11;
	for (i = 0; i < 5; i++)
		if (publish_one(pub) < 0)
			return 12;
	/* ready */
	if (write(ctl, "r", 1) != 1)
		return 13;
	for (;;) {
		pfd[0] = (struct pollfd){ .fd = tfd_publisher_get_fd(pub), .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = ctl, .events = POLLIN };
		poll(pfd, 2, 100);
		tfd_publisher_dispatch(pub, 0);
		if (pfd[1].revents) {
			if (read(ctl, &c, 1) != 1)
				break;
			if (publish_one(pub) < 0)
				return 14;
		}
	}
	tfd_publisher_unref(pub);
	return 0;
}

static struct child spawn(uint32_t only_uid)
{
	struct child ch = { -1, -1 };
	int sv[2];
	char c;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return ch;
	ch.pid = fork();
	if (ch.pid == 0) {
		close(sv[0]);
		_exit(publisher_main(sv[1], only_uid));
	}
	close(sv[1]);
	ch.ctl = sv[0];
	if (read(ch.ctl, &c, 1) != 1)
		diag("publisher did not get ready");
	return ch;
}

static int stop(struct child *ch)
{
	close(ch->ctl);
	return wait_child(ch->pid);
}

static int fds_of(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Query until the publisher reports want subscribers (it attaches them as it dispatches). */
static struct tfd_topic_info *query_until(uint64_t want)
{
	struct tfd_topic_info *info = NULL;
	uint64_t end = now_ms() + 5000;

	while (now_ms() < end) {
		if (tfd_topic_query(TOPIC, 1000, &info) == 0) {
			if (info->stats.subscribers == want)
				return info;
			tfd_topic_info_free(info);
			info = NULL;
		}
		usleep(5000);
	}
	return NULL;
}

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	tfd_topic_path(TOPIC, sa.sun_path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A request; bait >= 0 goes along (SCM_RIGHTS) and is closed. */
static void request(int fd, uint32_t flags, size_t len, int bait)
{
	char buf[1024] = { 0 };
	struct wire_info_request *req = (struct wire_info_request *)buf;
	char cbuf[CMSG_SPACE(sizeof(int))] __attribute__((aligned(8))) = { 0 };
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int memfd = bait;

	wire_hdr_init(&req->h, WIRE_INFO_REQUEST, (uint32_t)len);
	req->flags = flags;
	req->max_subscribers = 100;
	if (bait >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &memfd, sizeof(int));
	}
	sendmsg(fd, &mh, MSG_NOSIGNAL);
	if (memfd >= 0)
		close(memfd);
}

/* The packets an asker gets back: the hello, then what type? */
static int answer_type(int fd)
{
	static char buf[WIRE_MAX_PACKET];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char err[256];
	ssize_t n;
	int type = 0;

	while (poll(&pfd, 1, 2000) == 1) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		type = wire_check_header(buf, (size_t)n, err, sizeof(err));
		if (type != WIRE_HELLO)
			break;
	}
	return type;
}

static void basics(void)
{
	struct tfd_topic_info *info;
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	struct child ch;
	int i, r, fails = 0;

	ch = spawn(0);
	r = tfd_topic_query(TOPIC, 2000, &info);
	ok(r == 0, "query a live topic (%s)", r < 0 ? tfd_last_error() : "ok");
	if (r < 0) {
		stop(&ch);
		return;
	}
	ok(info->pid == ch.pid && info->uid == getuid() && info->gid == getgid(),
	   "pid %d uid %u gid %u are the publisher's", info->pid, info->uid, info->gid);
	ok(strcmp(info->comm, COMM) == 0, "command name '%s'", info->comm);
	ok(info->stats.published == 5 && info->stats.subscribers == 0 &&
		   info->stats.attached_total == 0 && info->n_subscribers == 0,
	   "5 published, no subscribers, nobody ever attached");
	ok(info->depth == 16 && info->policy == TFD_DROP_OLDEST && info->flags == 0,
	   "queue depth %u, drop-oldest, no flags", info->depth);
	ok(info->stats.pool_buffers >= 1 && info->stats.pool_bytes >= 16 &&
		   info->stats.pool_buffers_busy == 0,
	   "pool: %llu buffers, %llu bytes, none busy",
	   (unsigned long long)info->stats.pool_buffers,
	   (unsigned long long)info->stats.pool_bytes);
	ok(info->uptime_ns > 0 && info->uptime_ns < 60ull * 1000000000, "uptime %llu ns",
	   (unsigned long long)info->uptime_ns);
	tfd_topic_info_free(info);

	tfd_subscriber_new(TOPIC, 0, &sub);
	info = query_until(1);
	ok(info && info->n_subscribers == 1 && info->subscribers[0].pid == getpid() &&
		   info->subscribers[0].uid == getuid(),
	   "a subscriber shows up with its pid");
	tfd_topic_info_free(info);
	for (i = 0; i < 200; i++) {
		r = tfd_topic_query(TOPIC, 2000, &info);
		if (r < 0 || info->stats.subscribers != 1 || info->stats.attached_total != 1)
			fails++;
		if (r == 0)
			tfd_topic_info_free(info);
	}
	ok(fails == 0, "200 queries: still one subscriber, attached_total 1 (%d off)", fails);
	if (write(ch.ctl, "p", 1) != 1)
		diag("write: %s", strerror(errno));
	r = tfd_subscriber_recv(sub, 5000, &m);
	ok(r == 0 && tfd_message_seq(m) == 6, "the subscriber still gets message 6");
	if (r == 0) {
		tfd_message_unref(m);
		info = query_until(1);
		ok(info && info->subscribers[0].delivered == 1 && info->stats.published == 6,
		   "delivered 1 to it, 6 published");
		tfd_topic_info_free(info);
	}
	tfd_subscriber_unref(sub);
	ok(stop(&ch) == 0, "publisher exits cleanly");
}

static void errors(const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct tfd_topic_info *info = NULL;
	struct child ch;
	int fd, r;

	r = tfd_topic_query("intro/none", 1000, &info);
	ok(r == -ENOENT && !info, "no such topic: -ENOENT (%s)", tfd_last_error());
	ok(tfd_topic_query("../x", 1000, &info) == -EINVAL, "a bad topic name: -EINVAL");
	ok(tfd_topic_query(TOPIC, -2, &info) == -EINVAL, "a bad timeout: -EINVAL");

	/* a socket nobody listens on any more */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", dir);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	r = tfd_topic_query("stale", 1000, &info);
	ok(r == -ECONNREFUSED, "a stale socket: -ECONNREFUSED (%s)", tfd_last_error());

	ch = spawn(getuid() + 1);
	r = tfd_topic_query(TOPIC, 2000, &info);
	ok(r == -EACCES, "a publisher allowing only another uid refuses: -EACCES (%s)",
	   tfd_last_error());
	ok(stop(&ch) == 0, "that publisher exits cleanly");
}

static void hostile(void)
{
	struct tfd_topic_info *info;
	int fds[PENDING_HOSTILE_N], quiet, junk, big, bait, flags, i, before, after, r;
	int lingerer, lingering, keep[2];
	struct child ch;

	ch = spawn(0);
	before = fds_of(ch.pid);
	/* silent connections: more than the publisher keeps pending */
	for (i = 0; i < PENDING_HOSTILE_N; i++)
		fds[i] = raw_connect();
	/* a request, then never read */
	quiet = raw_connect();
	request(quiet, 0, sizeof(struct wire_info_request), -1);
	flags = raw_connect();
	request(flags, 0x80, sizeof(struct wire_info_request), -1);
	big = raw_connect();
	request(big, 0, 1000, -1);
	bait = raw_connect();
	request(bait, 0, sizeof(struct wire_info_request), memfd_create("bait", MFD_CLOEXEC));
	/* the publisher holds its last reference: closing it would take LINGER_S */
	lingerer = raw_connect();
	lingering = lingering_socket(keep);
	if (lingering >= 0)
		request(lingerer, 0, sizeof(struct wire_info_request), lingering);
	junk = raw_connect();
	if (send(junk, "\x54\x46\x44\x31\x06\x00", 6, MSG_NOSIGNAL) < 0)
		diag("send: %s", strerror(errno));
	r = tfd_topic_query(TOPIC, PROMPT_MS, &info);
	ok(r == 0, "a query among hostile askers is answered (%s)", r ? tfd_last_error() : "ok");
	if (r == 0)
		tfd_topic_info_free(info);
	ok(answer_type(flags) == WIRE_REFUSE, "a request with unknown flags is refused");
	ok(answer_type(big) == WIRE_REFUSE, "an oversized request is refused");
	ok(answer_type(bait) == WIRE_REFUSE, "a request carrying an fd is refused (fds where "
	   "the protocol has none)");
	if (lingering >= 0)
		ok(answer_type(lingerer) == WIRE_REFUSE,
		   "a request carrying a lingering TCP socket is refused, and the query above "
		   "was answered within %d ms all the same (the linger is %d s)", PROMPT_MS,
		   LINGER_S);
	else
		skip("no loopback TCP here for a lingering socket");
	lingering_end(keep);
	for (i = 0; i < PENDING_HOSTILE_N; i++)
		close(fds[i]);
	close(quiet);
	close(flags);
	close(big);
	close(bait);
	close(lingerer);
	close(junk);
	/* silent ones never become subscribers: closed after a second, or at their EOF */
	info = query_until(0);
	ok(info != NULL, "every hostile connection is gone from the publisher");
	tfd_topic_info_free(info);
	/* a closed pending one may still be on its way out: give it a few dispatches */
	for (i = 0; i < 30 && (after = fds_of(ch.pid)) != before; i++)
		usleep(100000);
	if (after != before) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd | sed 's/^/# /'", ch.pid);
		if (system(cmd) != 0)
			diag("ls failed");
	}
	ok(before > 0 && after == before, "publisher has as many fds as before (%d, %d)", before,
	   after);
	ok(stop(&ch) == 0, "publisher exits cleanly");
}

/* Send one packet with fd attached (fd < 0: none). */
static int send_with_fd(int sock, const void *data, size_t len, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] __attribute__((aligned(8))) = { 0 };
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (fd >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/*
 * A lying publisher: its answer carries a socket whose close blocks for
 * LINGER_S seconds. The asker refuses the answer (-EBADMSG) and returns
 * at once; the child keeps the socket blocked until the asker is done.
 */
static void lying_publisher(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct tfd_topic_info *info = NULL;
	int l, ctl[2], st, r = 0, fds0 = count_fds();
	uint64_t t = 0;
	pid_t pid;
	char c;

	tfd_topic_path("intro/liar", sa.sun_path, sizeof(sa.sun_path));
	l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 4) < 0 ||
	    pipe2(ctl, O_CLOEXEC) < 0) {
		ok(0, "a lying publisher's socket: %s", strerror(errno));
		return;
	}
	pid = fork();
	if (pid == 0) {
		struct wire_hello h = { .max_packet = WIRE_MAX_PACKET };
		struct wire_info w = { .n_subscribers = 0 };
		char buf[1024];
		int keep[2], s, conn = accept4(l, NULL, NULL, SOCK_CLOEXEC);

		close(ctl[1]);
		wire_hdr_init(&h.h, WIRE_HELLO, sizeof(h));
		wire_hdr_init(&w.h, WIRE_INFO, sizeof(w));
		s = lingering_socket(keep);
		if (conn < 0 || recv(conn, buf, sizeof(buf), 0) <= 0 ||
		    send_with_fd(conn, &h, sizeof(h), -1) < 0 ||
		    send_with_fd(conn, &w, sizeof(w), s) < 0)
			_exit(s < 0 ? 2 : 1);
		close(s);
		/* until the asker is done: then the reset ends any blocked close */
		if (read(ctl[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(ctl[0]);
	t = now_ms();
	r = tfd_topic_query("intro/liar", PROMPT_MS, &info);
	t = now_ms() - t;
	close(ctl[1]);
	st = wait_child(pid);
	close(l);
	unlink(sa.sun_path);
	if (st == 2) {
		skip("no loopback TCP here for a lingering socket");
		return;
	}
	ok(st == 0, "the lying publisher ran");
	ok(r == -EBADMSG, "an answer carrying an fd: -EBADMSG (%s)", tfd_last_error());
	ok(t < PROMPT_MS, "the asker returned in %llu ms, not after the %d s linger",
	   (unsigned long long)t, LINGER_S);
	tfd_topic_info_free(info);
	ok(count_fds() == fds0, "the asker kept no fd of the lying publisher");
}

/* An answered query is an event: dispatch returns for it instead of waiting on. */
static void dispatch_counts_it(void)
{
	struct tfd_topic_info *info;
	struct tfd_publisher *pub;
	int i, r = 0;
	pid_t pid;

	if (tfd_publisher_new("intro/disp", 0, &pub) < 0) {
		ok(0, "publisher for the dispatch case: %s", tfd_last_error());
		return;
	}
	pid = fork();
	if (pid == 0) {
		r = tfd_topic_query("intro/disp", 10000, &info);
		_exit(r == 0 ? 0 : 1);
	}
	/* connect, then the request: two wake-ups at most before the answer */
	for (i = 0; i < 3 && r <= 0; i++)
		r = tfd_publisher_dispatch(pub, 8000);
	ok(r > 0, "tfd_publisher_dispatch() returns %d for the query it answered", r);
	ok(wait_child(pid) == 0, "the asker got its answer");
	tfd_publisher_unref(pub);
}

int main(void)
{
	char dir[] = "/tmp/tfd-introspect-XXXXXX";
	int fds;

	tap_init(60);
	tap_runtime_dir(dir);
	fds = count_fds();
	basics();
	errors(dir);
	hostile();
	lying_publisher();
	dispatch_counts_it();
	ok(count_fds() == fds, "no fd leaked in the asker");
	rm_tree(dir);
	return done_testing();
}
