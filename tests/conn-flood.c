/* SPDX-License-Identifier: MIT */
/*
 * Hostile subscribers: a process that connects and disconnects 10,000
 * times (raw sockets and real subscribers) while the publisher publishes
 * and dispatches; then 1,000 raw connections that say hello and never
 * read, held open at once, near the fd limit. The publisher stays up, gives back every fd and loan once they
 * are gone, and a normal subscriber still gets its messages afterwards.
 */
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "tap.h"
#include "tensorfd.h"
#include "wire.h"

#define TOPIC		"flood/t"
#define CHURN		10000	/* connects and disconnects */
#define SUB_EVERY	20	/* one in SUB_EVERY is a real subscriber */
#define HOLD		1000	/* raw connections at once */
/* both ends are ours, and an accepted subscriber costs the publisher two fds */
#define NEED_FDS	(3 * HOLD + 200)
#define WORDS		256

static int publish_tagged(struct tfd_publisher *pub, uint64_t tag)
{
	const int64_t n = WORDS;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	uint64_t *p, j;
	int r;

	r = tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n, &b, &l);
	if (r < 0)
		return r;
	p = tfd_buffer_data(b);
	for (j = 0; j < WORDS; j++)
		p[j] = tag + j;
	r = tfd_message_new(&m);
	if (r == 0) {
		tfd_message_add_tensor(m, "x", b, &l);
		tfd_message_set_user_data(m, &tag, sizeof(tag));
		r = tfd_publisher_publish(pub, m);
		tfd_message_unref(m);
	}
	tfd_buffer_unref(b);
	return r;
}

static bool intact(const struct tfd_message *m)
{
	const uint64_t *t = tfd_message_get_user_data(m, NULL);
	const uint64_t *p = tfd_message_data(m, 0);
	uint64_t j;

	if (!t || !p)
		return false;
	for (j = 0; j < WORDS; j++)
		if (p[j] != *t + j)
			return false;
	return true;
}

static int warnings;
static char base_fds[1 << 16];

/* The first few warnings (the publisher's EMFILEs) go to the TAP output. */
static void log_warnings(int level, const char *msg, void *userdata)
{
	if (level <= TFD_LOG_WARNING && warnings++ < 3)
		diag("log: %s", msg);
}

/*
 * Dispatch until a pass finds nothing to do, no subscriber is attached and
 * every loan is back. The stats alone are not enough: a connection accepted
 * before it said anything is no subscriber yet still holds an fd, until a
 * dispatch sees that its peer has gone (gone_while_pending()).
 */
static int drain(struct tfd_publisher *pub, int timeout_ms)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int r;

	for (;;) {
		r = tfd_publisher_dispatch(pub, 0);
		tfd_publisher_get_stats(pub, &st);
		if (r == 0 && st.subscribers == 0 && st.pool_buffers_busy == 0)
			return 0;
		if (now_ms() > end)
			return -ETIMEDOUT;
		if (r <= 0)
			tfd_publisher_dispatch(pub, 10);
	}
}

/* Each open fd and what it is, for naming the ones a failed check finds extra. */
static void fd_names(char *out, size_t size)
{
	char path[64], target[128];
	size_t used = 0;
	ssize_t n;
	int fd;

	out[0] = 0;
	for (fd = 0; fd < 65536 && used + 200 < size; fd++) {
		if (fcntl(fd, F_GETFD) < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof(target) - 1);
		target[n < 0 ? 0 : n] = 0;
		used += (size_t)snprintf(out + used, size - used, " %d=%s\n", fd, target);
	}
}

/* Tell which fds are open now that were not in before (a failed fd check). */
static void diag_new_fds(const char *before)
{
	static char now[1 << 16];
	char *line, *save = NULL;

	fd_names(now, sizeof(now));
	for (line = strtok_r(now, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strstr(before, line))
			diag("fd not in the baseline:%s", line);
}

static int raw_socket(const struct sockaddr_un *sa, bool nonblock)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* The hostile child: connect, maybe say nothing, leave; CHURN times. */
static int churner(const struct sockaddr_un *sa)
{
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	int i, fd, fails = 0, hellos = 0, fds0 = count_fds();

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (i = 0; i < CHURN; i++) {
		if (i % SUB_EVERY == 0) {
			if (tfd_subscriber_new(TOPIC, 0, &sub) < 0) {
				fails++;
				continue;
			}
			/* every other one waits for a message before leaving */
			if (i % (2 * SUB_EVERY) == 0 && tfd_subscriber_recv(sub, 2000, &m) == 0) {
				if (!intact(m))
					return 5;
				tfd_message_unref(m);
			}
			tfd_subscriber_unref(sub);
			continue;
		}
		fd = raw_socket(sa, false);
		if (fd < 0) {
			fails++;
			continue;
		}
		/* some wait to be taken in (the hello), some then send garbage, some just leave */
		if (i % 3 != 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			char buf[256];

			if (poll(&pfd, 1, 2000) != 1 ||
			    recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0) {
				fails++;
			} else if (i % 3 == 2) {
				static const char junk[] = "not a tensorfd packet";

				send(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL);
			}
			hellos++;
		}
		close(fd);
	}
	fprintf(stderr, "# churner: %d hellos read, %d connects failed\n", hellos, fails);
	if (count_fds() != fds0)
		return 3;
	return fails > CHURN / 100 ? 4 : 0;
}

/*
 * A connection the publisher accepted before it said anything is pending,
 * no subscriber, and holds a publisher fd; gone meanwhile, it is let go at
 * the next dispatch. drain() must not stop before that one.
 */
static void gone_while_pending(struct tfd_publisher *pub, const struct sockaddr_un *sa)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + 5000;
	int fd, base;

	tfd_publisher_get_stats(pub, &st);
	base = count_fds() - (int)st.pool_buffers;
	fd_names(base_fds, sizeof(base_fds));
	fd = raw_socket(sa, false);
	if (!ok(fd >= 0, "a raw connection (%d)", fd))
		return;
	/* taken in: our end and the publisher's */
	while (count_fds() - (int)st.pool_buffers < base + 2 && now_ms() < end)
		tfd_publisher_dispatch(pub, 0);
	close(fd);
	tfd_publisher_get_stats(pub, &st);
	ok(count_fds() - (int)st.pool_buffers == base + 1 && st.subscribers == 0,
	   "accepted, gone, no subscriber, its fd still held (%d fds, base %d)",
	   count_fds() - (int)st.pool_buffers, base);
	ok(drain(pub, 5000) == 0, "drained");
	if (!ok(count_fds() - (int)st.pool_buffers == base,
		"publisher fds back to baseline (%d less %llu pool buffers, base %d)", count_fds(),
		(unsigned long long)st.pool_buffers, base))
		diag_new_fds(base_fds);
}

static void churn(struct tfd_publisher *pub, const struct sockaddr_un *sa)
{
	struct tfd_publisher_stats st;
	int base, status, r, errs = 0;
	uint64_t tag = 0, peak = 0, sent = 0;
	pid_t pid;

	tfd_publisher_get_stats(pub, &st);
	base = count_fds() - (int)st.pool_buffers;
	fd_names(base_fds, sizeof(base_fds));
	pid = fork();
	if (pid == 0)
		_exit(churner(sa));
	if (!ok(pid > 0, "fork the churner"))
		return;
	for (;;) {
		r = publish_tagged(pub, ++tag);
		sent += r == 0;
		if (r < 0 && r != -ENOBUFS && errs++ < 5)
			diag("publish: %d (%s)", r, tfd_publisher_strerror(pub));
		r = tfd_publisher_dispatch(pub, 1);
		if (r < 0 && errs++ < 5)
			diag("dispatch: %d (%s)", r, tfd_publisher_strerror(pub));
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers > peak)
			peak = st.subscribers;
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
	}
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "%d connects and disconnects (1 in %d a subscriber), its fds flat (status 0x%x)",
	   CHURN, SUB_EVERY, status);
	ok(errs == 0, "the publisher published and dispatched throughout without errors");
	ok(drain(pub, 10000) == 0, "after dispatch: no subscribers, no loans");
	tfd_publisher_get_stats(pub, &st);
	diag("published %llu, attached %llu in all, refused %llu, dropped %llu, peak %llu attached",
	     (unsigned long long)st.published, (unsigned long long)st.attached_total,
	     (unsigned long long)st.refused, (unsigned long long)st.dropped,
	     (unsigned long long)peak);
	/* the real subscribers were taken in; raw sockets never say hello and never are */
	ok(st.published == sent && st.attached_total >= CHURN / SUB_EVERY / 2 &&
	   st.attached_total <= CHURN / SUB_EVERY && st.subscribers == 0,
	   "stats add up: %llu published, %llu attached (between %d and %d)",
	   (unsigned long long)st.published, (unsigned long long)st.attached_total,
	   CHURN / SUB_EVERY / 2, CHURN / SUB_EVERY);
	if (!ok(count_fds() - (int)st.pool_buffers == base,
		"publisher fds back to baseline (%d less %llu pool buffers, base %d)", count_fds(),
		(unsigned long long)st.pool_buffers, base))
		diag_new_fds(base_fds);
}

/* A subscriber by hand: it says hello, then never reads (a silent one would be closed). */
static int say_hello(int fd)
{
	struct wire_hello h;

	memset(&h, 0, sizeof(h));
	wire_hdr_init(&h.h, WIRE_HELLO, sizeof(h));
	h.max_packet = WIRE_MAX_PACKET;
	h.pid = (uint64_t)getpid();
	if (send(fd, &h, sizeof(h), MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof(h))
		return -errno;
	return 0;
}

/*
 * HOLD raw connections at once. starve > 0: the soft fd limit leaves room
 * for half of them and starve more fds, so both ends run into EMFILE:
 * with 1 spare the publisher's accept4() fails, with 2 it gets the socket
 * but not the channel's io_uring. It must ride that out and recover.
 */
static void hold_many(struct tfd_publisher *pub, const struct sockaddr_un *sa, int starve)
{
	struct tfd_publisher_stats st;
	struct rlimit rl, saved;
	int *fd, i, r, n = 0, base, eagain = 0, other = 0, dispatch_err = 0, bad_err = 0;
	uint64_t end, peak = 0, tag = 1000000;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		skip("getrlimit: %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur < NEED_FDS) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < NEED_FDS) {
			skip("RLIMIT_NOFILE hard limit %llu is below %d: cannot hold %d connections",
			     (unsigned long long)rl.rlim_max, NEED_FDS, HOLD);
			return;
		}
	}
	saved = rl;
	if (starve) {
		rl.rlim_cur = (rlim_t)count_fds() + 3 * HOLD / 2 + (rlim_t)starve;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			skip("setrlimit: %s", strerror(errno));
			return;
		}
	}
	diag("%sRLIMIT_NOFILE %llu", starve ? "starved: " : "", (unsigned long long)rl.rlim_cur);
	if (starve)
		tfd_set_log_fn(log_warnings, NULL);
	fd = calloc(HOLD, sizeof(*fd));
	if (!fd)
		return;
	tfd_publisher_get_stats(pub, &st);
	base = count_fds() - (int)st.pool_buffers;
	fd_names(base_fds, sizeof(base_fds));

	/*
	 * Open them all, the publisher accepting as they come. Each dispatch
	 * looks at every peer, so this is quadratic: 1000 took more than 10 s
	 * beside a CPU hog. The deadline only stops a publisher that hangs.
	 */
	end = now_ms() + 60000;
	while (n < HOLD && now_ms() < end) {
		r = raw_socket(sa, true);
		if (r >= 0 && say_hello(r) < 0)
			diag("hello %d: %s", n, strerror(errno));
		if (r >= 0) {
			fd[n++] = r;
		} else if (r == -EAGAIN) {
			eagain++;	/* backlog full: let it accept */
		} else if (r == -EMFILE && starve) {
			if (++other > 100)
				break;	/* we are out of fds ourselves */
		} else {
			if (other++ < 5)
				diag("connect %d: %s", n, strerror(-r));
		}
		r = tfd_publisher_dispatch(pub, 0);
		bad_err += r < 0 && r != -EMFILE && r != -ENFILE;
		if (r < 0 && dispatch_err++ < 3)
			diag("dispatch: %d (%s)", r, tfd_publisher_strerror(pub));
	}
	/* let it take in the rest, with messages flowing to peers that never read */
	end = now_ms() + 2000;
	while (now_ms() < end) {
		publish_tagged(pub, ++tag);
		r = tfd_publisher_dispatch(pub, 1);
		bad_err += r < 0 && r != -EMFILE && r != -ENFILE;
		if (r < 0 && dispatch_err++ < 3)
			diag("dispatch: %d (%s)", r, tfd_publisher_strerror(pub));
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers > peak)
			peak = st.subscribers;
	}
	diag("%d connected (%d EAGAIN, %d other errors); publisher saw %llu at once, "
	     "%d dispatch errors, %d fds now", n, eagain, other, (unsigned long long)peak,
	     dispatch_err, count_fds());
	if (starve) {
		ok(n > 0 && n < HOLD, "out of fds after %d raw connections", n);
		ok(bad_err == 0, "dispatch failed only with EMFILE, if at all (%d others)",
			bad_err);
	} else {
		ok(n >= HOLD * 9 / 10, "%d of %d raw connections open at once", n, HOLD);
		ok(dispatch_err == 0, "dispatch never failed");
	}
	ok(peak > 0, "the publisher took in %llu of them and is still here",
	   (unsigned long long)peak);

	for (i = 0; i < n; i++)
		close(fd[i]);
	free(fd);
	setrlimit(RLIMIT_NOFILE, &saved);
	tfd_set_log_fn(NULL, NULL);
	if (warnings)
		diag("%d warnings logged", warnings);
	warnings = 0;
	ok(drain(pub, 10000) == 0, "all closed: after dispatch no subscribers, no loans");
	tfd_publisher_get_stats(pub, &st);
	ok(st.subscribers == 0, "subscribers %llu", (unsigned long long)st.subscribers);
	if (!ok(count_fds() - (int)st.pool_buffers == base,
		"publisher fds back to baseline (%d less %llu pool buffers, base %d)", count_fds(),
		(unsigned long long)st.pool_buffers, base))
		diag_new_fds(base_fds);
}

/* A well-behaved subscriber, in this process, still gets what is published. */
static void still_works(struct tfd_publisher *pub)
{
	struct tfd_subscriber *sub = NULL;
	struct tfd_publisher_stats st;
	struct tfd_message *m;
	uint64_t end = now_ms() + 5000, tag = 2000000;
	int r = -1, fds0 = count_fds();

	if (!ok(tfd_subscriber_new(TOPIC, 0, &sub) == 0, "a normal subscriber"))
		return;
	while (now_ms() < end) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == 1)
			publish_tagged(pub, ++tag);
		tfd_publisher_dispatch(pub, 0);
		r = tfd_subscriber_recv(sub, 5, &m);
		if (r == 0)
			break;
	}
	ok(r == 0 && intact(m), "it receives an intact message (%d)", r);
	if (r == 0)
		tfd_message_unref(m);
	tfd_subscriber_unref(sub);
	ok(drain(pub, 5000) == 0, "and leaves cleanly");
	tfd_publisher_get_stats(pub, &st);
	ok(count_fds() - (int)st.pool_buffers <= fds0, "no fd leaked by it");
}

int main(void)
{
	char dir[] = "/tmp/tfd-flood-XXXXXX";
	struct tfd_publisher *pub = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fds0;

	tap_init(240);
	signal(SIGPIPE, SIG_IGN);
	fds0 = count_fds();
	tap_runtime_dir(dir);
	if (!ok(tfd_publisher_new(TOPIC, 0, &pub) == 0, "publisher of %s", TOPIC))
		return done_testing();
	if (!ok(tfd_topic_path(TOPIC, sa.sun_path, sizeof(sa.sun_path)) > 0, "socket path %s",
		sa.sun_path))
		return done_testing();
	gone_while_pending(pub, &sa);
	churn(pub, &sa);
	hold_many(pub, &sa, 0);
	hold_many(pub, &sa, 1);
	hold_many(pub, &sa, 2);
	still_works(pub);
	tfd_publisher_unref(pub);
	rm_tree(dir);
	ok(count_fds() == fds0, "no fd leaked");
	return done_testing();
}
