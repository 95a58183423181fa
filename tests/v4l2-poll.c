/* SPDX-License-Identifier: MIT */
/*
 * A camera pipeline's thread (for the VM, where vivid, the kernel's virtual
 * V4L2 camera, is /dev/video0): it polls the video fd, dequeues each frame,
 * publishes a tensor about it and queues the buffer again, while it also
 * subscribes to a busy topic and a child subscribes to its frames. A second
 * thread holds the driver's lock often (VIDIOC ioctls on the same device),
 * as a control thread does. vb2's poll takes that lock interruptibly and
 * returns POLLERR when the wait is interrupted, so any task work notified
 * to this thread like a signal (io_uring completions, see src/notify.c)
 * shows as POLLERR on the video fd. None may be seen.
 */
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "tap.h"
#include "tensorfd.h"

#define FRAMES	100
#define NBUFS	4
#define WIDTH	320
#define HEIGHT	240

static atomic_bool stop;

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	while ((r = ioctl(fd, req, arg)) < 0 && errno == EINTR)
		;
	return r < 0 ? -errno : 0;
}

/* The control thread: ioctls that take the device's lock, back to back. */
static void *contend(void *arg)
{
	int fd = *(int *)arg;
	unsigned long n = 0;

	while (!atomic_load(&stop)) {
		struct v4l2_format f = { .type = V4L2_BUF_TYPE_VIDEO_CAPTURE };
		struct v4l2_control c = { .id = V4L2_CID_BRIGHTNESS };

		xioctl(fd, VIDIOC_G_FMT, &f);
		xioctl(fd, VIDIOC_G_CTRL, &c);
		n++;
	}
	return (void *)n;
}

static int publish_small(struct tfd_publisher *pub, uint64_t value)
{
	const int64_t n = 8;
	struct tfd_message *m;
	struct tfd_buffer *b;
	struct tfd_layout l;
	uint64_t *p;
	int r;

	r = tfd_publisher_loan_tensor(pub, (struct tfd_dtype){ TFD_UINT, 64, 1 }, 1, &n, &b, &l);
	if (r < 0)
		return r;
	p = tfd_buffer_data(b);
	p[0] = value;
	r = tfd_message_new(&m);
	if (r == 0) {
		tfd_message_add_tensor(m, "x", b, &l);
		r = tfd_publisher_publish(pub, m);
		tfd_message_unref(m);
	}
	tfd_buffer_unref(b);
	return r;
}

/*
 * The child: publishes "noise" as fast as it can dispatch, and follows
 * "frames" (each message it drops is a release to the parent).
 */
static int child(int ctl)
{
	struct tfd_publisher *pub;
	struct tfd_subscriber *sub;
	struct tfd_message *m;
	struct pollfd pfd = { .fd = ctl, .events = POLLIN };
	uint64_t i = 0;

	if (tfd_publisher_new("noise", 0, &pub) < 0 || tfd_subscriber_new("frames", 0, &sub) < 0)
		return 2;
	while (poll(&pfd, 1, 0) == 0) {
		publish_small(pub, ++i);
		tfd_publisher_dispatch(pub, 0);
		while (tfd_subscriber_recv(sub, 0, &m) == 0)
			tfd_message_unref(m);
		usleep(500);
	}
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	return 0;
}

static int start_capture(int fd)
{
	struct v4l2_format f = { .type = V4L2_BUF_TYPE_VIDEO_CAPTURE };
	struct v4l2_requestbuffers rb = {
		.count = NBUFS, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP,
	};
	enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	unsigned int i;
	int r;

	f.fmt.pix.width = WIDTH;
	f.fmt.pix.height = HEIGHT;
	f.fmt.pix.pixelformat = V4L2_PIX_FMT_YUYV;
	f.fmt.pix.field = V4L2_FIELD_NONE;
	r = xioctl(fd, VIDIOC_S_FMT, &f);
	if (r < 0)
		return r;
	r = xioctl(fd, VIDIOC_REQBUFS, &rb);
	if (r < 0)
		return r;
	for (i = 0; i < rb.count; i++) {
		struct v4l2_buffer b = {
			.index = i, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP,
		};

		r = xioctl(fd, VIDIOC_QBUF, &b);
		if (r < 0)
			return r;
	}
	return xioctl(fd, VIDIOC_STREAMON, &type);
}

static void stop_capture(int fd)
{
	enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	struct v4l2_requestbuffers rb = {
		.count = 0, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP,
	};

	xioctl(fd, VIDIOC_STREAMOFF, &type);
	xioctl(fd, VIDIOC_REQBUFS, &rb);
}

int main(void)
{
	char dir[] = "/tmp/tfd-v4l2-XXXXXX";
	struct tfd_publisher *pub = NULL;
	struct tfd_subscriber *sub = NULL;
	struct tfd_message *m;
	unsigned int frames = 0, errs = 0, noise = 0, timeouts = 0;
	int fd, fds0, ctl[2], r;
	void *ioctls = NULL;
	pthread_t t;
	pid_t pid;

	tap_init(240);
	signal(SIGPIPE, SIG_IGN);
	fds0 = count_fds();
	fd = open("/dev/video0", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		skip_all("no /dev/video0 (the VM loads vivid; a kernel cache without it needs "
			 "tests/vm/fetch-kernel.sh again)");
	tap_runtime_dir(dir);
	r = start_capture(fd);
	if (!ok(r == 0, "vivid streams %dx%d YUYV (%d)", WIDTH, HEIGHT, r))
		return done_testing();
	ok(tfd_publisher_new("frames", 0, &pub) == 0, "publisher of frames in this thread");
	if (pipe2(ctl, O_CLOEXEC) < 0)
		return done_testing();
	pid = fork();
	if (pid == 0) {
		close(ctl[1]);
		_exit(child(ctl[0]));
	}
	close(ctl[0]);
	ok(tfd_subscriber_new("noise", 0, &sub) == 0, "subscriber of noise in this thread");
	diag("notification backend: %s", getenv("TENSORFD_NOTIFY") ? getenv("TENSORFD_NOTIFY") :
	     "default");
	pthread_create(&t, NULL, contend, &fd);

	while (pub && sub && frames < FRAMES && timeouts < 5) {
		struct pollfd pfd[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = tfd_subscriber_get_fd(sub), .events = POLLIN },
		};

		r = poll(pfd, 2, 2000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			timeouts++;
			continue;
		}
		if (pfd[0].revents & POLLERR)
			errs++;
		if (pfd[0].revents & POLLIN) {
			struct v4l2_buffer b = {
				.type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP,
			};

			if (xioctl(fd, VIDIOC_DQBUF, &b) == 0) {
				frames++;
				publish_small(pub, b.sequence);
				xioctl(fd, VIDIOC_QBUF, &b);
			}
		}
		while (tfd_subscriber_recv(sub, 0, &m) == 0) {
			noise++;
			tfd_message_unref(m);
		}
		tfd_publisher_dispatch(pub, 0);
	}
	atomic_store(&stop, true);
	pthread_join(t, &ioctls);
	close(ctl[1]);
	ok(wait_child(pid) == 0, "the child exited 0");
	diag("%u frames, %u noise messages, %lu ioctl pairs by the control thread", frames, noise,
	     (unsigned long)ioctls);
	ok(frames == FRAMES, "%u of %d frames captured", frames, FRAMES);
	ok(noise > 0, "messages arrived in this thread meanwhile (%u)", noise);
	ok(errs == 0, "poll() on the video fd reported POLLERR %u times", errs);
	stop_capture(fd);
	close(fd);
	tfd_subscriber_unref(sub);
	tfd_publisher_unref(pub);
	rm_tree(dir);
	ok(count_fds() == fds0, "no fd leaked");
	return done_testing();
}
