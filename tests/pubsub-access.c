/* SPDX-License-Identifier: MIT */
/*
 * Access control: a publisher may accept only given uids or gids (as
 * SO_PEERCRED reports them). A refused subscriber hears -EACCES with a
 * reason; the publisher counts it and says whom it refused. As root, the
 * same across real users: a child that drops to uid/gid 65534.
 */
#include <ftw.h>
#include <grp.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "tap.h"
#include "tensorfd.h"

#define NOBODY 65534
/* what an output parameter holds if a failing call left it alone */
#define UNTOUCHED_SUB ((struct tfd_subscriber *)(uintptr_t)0x5a5a)

/* Serve until stats says `subscribers` attached and `refused` refused. */
static int serve(struct tfd_publisher *pub, uint64_t subscribers, uint64_t refused, int timeout_ms)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		tfd_publisher_get_stats(pub, &st);
		if (st.subscribers == subscribers && st.refused == refused)
			return 0;
		if (now_ms() > end)
			return -ETIMEDOUT;
		tfd_publisher_dispatch(pub, 10);
	}
}

static int publish_value(struct tfd_publisher *pub, uint64_t value)
{
	const int64_t n = 1;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	int r;

	r = tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n, &b, &l);
	if (r < 0)
		return r;
	*(uint64_t *)tfd_buffer_data(b) = value;
	tfd_message_new(&m);
	tfd_message_add_tensor(m, "v", b, &l);
	tfd_buffer_unref(b);
	r = tfd_publisher_publish(pub, m);
	tfd_message_unref(m);
	return r;
}

static bool value_is(const struct tfd_message *m, uint64_t value)
{
	const uint64_t *p = tfd_message_data(m, 0);

	return p && *p == value;
}

/* A publisher of topic with the given allow lists (UINT32_MAX: none). */
static struct tfd_publisher *guarded(const char *topic, uint32_t uid, uint32_t gid)
{
	struct tfd_publisher *pub = NULL;

	if (tfd_publisher_new(topic, 0, &pub) < 0)
		return NULL;
	if (uid != UINT32_MAX)
		tfd_publisher_allow_uid(pub, uid);
	if (gid != UINT32_MAX)
		tfd_publisher_allow_gid(pub, gid);
	return pub;
}

static void same_user(void)
{
	const uint32_t other = getuid() == 4242 ? 4243 : 4242;
	struct tfd_publisher *pub;
	struct tfd_subscriber *sub = NULL;
	struct tfd_publisher_stats st;
	struct tfd_subscriber_info info;
	struct tfd_subscriber_stats ss;
	struct tfd_message *m = NULL;
	bool ready;
	int fds0 = count_fds(), r;
	uint64_t t0;

	ok(tfd_publisher_allow_uid(NULL, 0) == -EINVAL && tfd_publisher_allow_gid(NULL, 0) == -EINVAL,
	   "allow lists of no publisher: -EINVAL");

	/* only another uid */
	pub = guarded("acl", other, UINT32_MAX);
	tfd_subscriber_new("acl", 0, &sub);
	ok(pub && sub, "a publisher allowing only uid %u, and our subscriber", other);
	ok(serve(pub, 0, 1, 5000) == 0, "the publisher refused it");
	r = tfd_subscriber_recv(sub, 5000, &m);
	ok(r == -EACCES && !m, "subscriber: -EACCES (%d)", r);
	ok(strstr(tfd_subscriber_strerror(sub), "may not subscribe") != NULL, "reason: %s",
	   tfd_subscriber_strerror(sub));
	tfd_publisher_get_stats(pub, &st);
	ok(st.refused == 1 && st.subscribers == 0 && st.attached_total == 0,
	   "publisher: refused 1, attached 0");
	ok(strstr(tfd_publisher_strerror(pub), "refused") != NULL, "publisher's reason: %s",
	   tfd_publisher_strerror(pub));
	t0 = now_ms();
	r = tfd_subscriber_recv(sub, 1000, &m);
	ok(r == -EACCES && now_ms() - t0 < 500, "and it stays refused, without waiting");
	ok(tfd_subscriber_wait(&sub, 1, 1000, &ready) == 1 && ready,
	   "a refused subscriber is ready at once in tfd_subscriber_wait");
	tfd_subscriber_get_stats(sub, &ss);
	ok(!ss.connected && ss.received == 0, "not connected, nothing received");
	ok(publish_value(pub, 1) == 0, "publishing goes on, to nobody");
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);

	/* our uid */
	sub = NULL;
	pub = guarded("acl", getuid(), UINT32_MAX);
	tfd_publisher_allow_uid(pub, other);
	tfd_subscriber_new("acl", 0, &sub);
	ok(pub && sub && serve(pub, 1, 0, 5000) == 0, "allowing uids %u and %u: accepted", other,
	   getuid());
	memset(&info, 0, sizeof(info));
	r = tfd_publisher_get_subscriber(pub, 0, &info);
	ok(r == 0 && info.uid == getuid() && info.gid == getgid() && info.pid == getpid(),
	   "the publisher knows it as pid %d uid %u gid %u", info.pid, info.uid, info.gid);
	publish_value(pub, 2);
	r = tfd_subscriber_recv(sub, 5000, &m);
	ok(r == 0 && value_is(m, 2), "and it receives");
	tfd_message_unref(m);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);

	/* TFD_SUBSCRIBER_SAME_USER, with a publisher of our own uid */
	sub = NULL;
	pub = guarded("acl", UINT32_MAX, UINT32_MAX);
	tfd_subscriber_new("acl", TFD_SUBSCRIBER_SAME_USER, &sub);
	ok(pub && sub && serve(pub, 1, 0, 5000) == 0,
	   "a TFD_SUBSCRIBER_SAME_USER subscriber attaches to a publisher of its uid");
	publish_value(pub, 4);
	r = tfd_subscriber_recv(sub, 5000, &m);
	ok(r == 0 && value_is(m, 4), "and receives");
	tfd_message_unref(m);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	sub = UNTOUCHED_SUB;
	ok(tfd_subscriber_new("acl", 1u << 7, &sub) == -EINVAL && sub == UNTOUCHED_SUB,
	   "an unknown subscriber flag: -EINVAL");

	/* our gid, another uid */
	sub = NULL;
	pub = guarded("acl", other, getgid());
	tfd_subscriber_new("acl", 0, &sub);
	ok(pub && sub && serve(pub, 1, 0, 5000) == 0, "allowing uid %u or gid %u: accepted", other,
	   getgid());
	publish_value(pub, 3);
	r = tfd_subscriber_recv(sub, 5000, &m);
	ok(r == 0 && value_is(m, 3), "and it receives");
	tfd_message_unref(m);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);

	/* another gid only */
	sub = NULL;
	pub = guarded("acl", UINT32_MAX, getgid() + 1);
	tfd_subscriber_new("acl", 0, &sub);
	ok(pub && sub && serve(pub, 0, 1, 5000) == 0, "allowing only gid %u: refused", getgid() + 1);
	ok(tfd_subscriber_recv(sub, 5000, &m) == -EACCES, "subscriber: -EACCES");
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	ok(count_fds() == fds0, "no fd leaked");
}

/* --- as root: another user --- */

/* A supplementary group for nobody() to join (0: none), and its subscriber's flags. */
static gid_t extra_group;
static unsigned int nobody_flags;

/*
 * As uid/gid 65534, in extra_group if set: subscribe, expect `want` (0: a
 * message of value).
 */
static int nobody(const char *topic, int want, uint64_t value)
{
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	int r;

	if (setgroups(extra_group ? 1 : 0, &extra_group) < 0 || setgid(NOBODY) < 0 ||
	    setuid(NOBODY) < 0)
		return 10;
	if (getuid() != NOBODY || geteuid() != NOBODY)
		return 11;
	r = tfd_subscriber_new(topic, nobody_flags, &sub);
	if (r < 0) {
		diag("uid %d: subscriber of %s: %s", NOBODY, topic, strerror(-r));
		return 12;
	}
	r = tfd_subscriber_recv(sub, 3000, &m);
	if (r != want) {
		diag("uid %d: %s: recv %d (%s), wanted %d", NOBODY, topic, r,
		     tfd_subscriber_strerror(sub), want);
		return 13;
	}
	if (r == 0) {
		if (!value_is(m, value))
			return 14;
		tfd_message_unref(m);
	} else if (!strstr(tfd_subscriber_strerror(sub), nobody_flags & TFD_SUBSCRIBER_SAME_USER ?
				  "TFD_SUBSCRIBER_SAME_USER" : "may not subscribe")) {
		diag("uid %d: %s: reason \"%s\"", NOBODY, topic, tfd_subscriber_strerror(sub));
		return 15;
	}
	tfd_subscriber_unref(sub);
	return 0;
}

/* Run nobody() in a child while serving pub; its exit status. */
static int as_nobody(struct tfd_publisher *pub, const char *topic, int want, uint64_t value)
{
	struct tfd_publisher_stats st;
	uint64_t end = now_ms() + 10000;
	bool sent = false;
	pid_t pid;
	int status;

	pid = fork();
	if (pid == 0)
		_exit(nobody(topic, want, value));
	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (now_ms() > end) {
			kill(pid, SIGKILL);
			wait_child(pid);
			return -1;
		}
		tfd_publisher_dispatch(pub, 10);
		tfd_publisher_get_stats(pub, &st);
		if (!sent && st.subscribers) {
			publish_value(pub, value);
			sent = true;
		}
	}
}

static void other_user(const char *shared)
{
	struct tfd_publisher *pub;
	struct tfd_publisher_stats st;
	char *old = strdup(getenv("TENSORFD_RUNTIME_DIR"));
	int fds0 = count_fds(), r;

	if (getuid() != 0) {
		skip("not root: cannot run a subscriber as another user");
		skip("not root: cannot run a subscriber as another user");
		skip("not root: cannot run a subscriber as another user");
		skip("not root: cannot run a subscriber as another user");
		skip("not root: cannot run a subscriber as another user");
		skip("not root: cannot run a subscriber as another user");
		free(old);
		return;
	}
	setenv("TENSORFD_RUNTIME_DIR", shared, 1);

	pub = guarded("guarded", 0, UINT32_MAX);
	r = pub ? as_nobody(pub, "guarded", -EACCES, 0) : -1;
	ok(r == 0, "a publisher allowing only uid 0 refuses uid %d: -EACCES (child exit %d)", NOBODY,
	   r);
	tfd_publisher_get_stats(pub, &st);
	/* >= 1: a refusal that beats the subscriber's hello is not seen, it asks again */
	ok(pub && st.refused >= 1 && strstr(tfd_publisher_strerror(pub), "uid 65534") != NULL,
	   "and says so: refused %llu: %s", (unsigned long long)st.refused,
	   tfd_publisher_strerror(pub));
	tfd_publisher_unref(pub);

	pub = guarded("open", NOBODY, UINT32_MAX);
	r = pub ? as_nobody(pub, "open", 0, 77) : -1;
	ok(r == 0, "one allowing uid %d lets it receive (child exit %d)", NOBODY, r);
	tfd_publisher_unref(pub);

	pub = guarded("open/nested", UINT32_MAX, NOBODY);
	r = pub ? as_nobody(pub, "open/nested", 0, 78) : -1;
	ok(r == 0, "also by gid %d, and through a topic subdirectory (child exit %d)", NOBODY, r);
	tfd_publisher_unref(pub);

	/* SO_PEERGROUPS: a supplementary group of the subscriber counts too */
	pub = guarded("group", UINT32_MAX, 4242);
	extra_group = 4242;
	r = pub ? as_nobody(pub, "group", 0, 79) : -1;
	extra_group = 0;
	ok(r == 0, "and by a supplementary group, 4242 (child exit %d)", r);
	tfd_publisher_unref(pub);

	/* the other way round: a subscriber that trusts only its own uid */
	pub = guarded("trusting", UINT32_MAX, UINT32_MAX);
	nobody_flags = TFD_SUBSCRIBER_SAME_USER;
	r = pub ? as_nobody(pub, "trusting", -EACCES, 0) : -1;
	nobody_flags = 0;
	ok(r == 0, "a TFD_SUBSCRIBER_SAME_USER subscriber of uid %d refuses a publisher of uid "
	   "%d: -EACCES (child exit %d)", NOBODY, (int)getuid(), r);
	tfd_publisher_unref(pub);

	setenv("TENSORFD_RUNTIME_DIR", old, 1);
	free(old);
	ok(count_fds() == fds0, "no fd leaked");
}

int main(void)
{
	char dir[] = "/tmp/tfd-access-XXXXXX", shared[] = "/tmp/tfd-access-shared-XXXXXX";
	int fds0;

	tap_init(60);
	fds0 = count_fds();
	if (!mkdtemp(dir) || !mkdtemp(shared))
		skip_all("mkdtemp failed");
	/* a runtime directory everyone may use: who gets in is up to the publisher */
	chmod(shared, 01777);
	setenv("TENSORFD_RUNTIME_DIR", dir, 1);
	same_user();
	other_user(shared);
	rm_tree(dir);
	rm_tree(shared);
	ok(count_fds() == fds0, "no fd leaked overall");
	return done_testing();
}
