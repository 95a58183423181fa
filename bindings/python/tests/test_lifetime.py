# SPDX-License-Identifier: MIT
"""Received tensors keep their message, and so the publisher's buffer,
loaned until the last Python object over it dies; then the publisher sees
the release."""
import gc
import time

import numpy as np
import pytest

import tensorfd
from conftest import wait_subscribers

torch = pytest.importorskip("torch", reason="python3-torch is not installed")


def busy(pub, settle=0.05):
    """The publisher's busy pool buffers once it took in what arrived."""
    end = time.monotonic() + settle
    while time.monotonic() < end:
        pub.dispatch(0.01)
    return pub.stats()["pool_buffers_busy"]


def wait_busy(pub, want, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pub.dispatch(0.02)
        if pub.stats()["pool_buffers_busy"] == want:
            return True
    return False


@pytest.mark.parametrize("kind", ["torch", "numpy", "dlpack"])
def test_tensor_outlives_message(topic, kind):
    with tensorfd.Publisher(topic) as pub, tensorfd.Subscriber(topic, kind=kind) as sub:
        wait_subscribers(pub, 1)
        pub.send(x=torch.arange(1000, dtype=torch.float32))  # copied into one pool buffer
        assert busy(pub) == 1
        msg = sub.recv(timeout=5)
        x = msg["x"]
        if kind == "dlpack":
            x = torch.utils.dlpack.from_dlpack(x)
        view = x[10:20]            # a view of the view holds it too
        del msg, x
        gc.collect()
        assert busy(pub, 0.2) == 1, "released while a tensor still refers to the message"
        assert pub.subscribers()[0]["in_flight"] == 1
        assert float(view[0]) == 10
        del view
        gc.collect()
        assert wait_busy(pub, 0), "the publisher never saw the release"
        assert pub.subscribers()[0]["in_flight"] == 0


def test_unconsumed_capsule_releases(topic):
    with tensorfd.Publisher(topic) as pub, tensorfd.Subscriber(topic, kind="dlpack") as sub:
        wait_subscribers(pub, 1)
        pub.send(x=np.ones(10))
        msg = sub.recv(timeout=5)
        cap = msg.x
        del msg
        assert busy(pub, 0.1) == 1
        del cap
        assert wait_busy(pub, 0)


def test_message_close_keeps_tensors(topic):
    with tensorfd.Publisher(topic) as pub, tensorfd.Subscriber(topic) as sub:
        wait_subscribers(pub, 1)
        pub.send(x=torch.ones(4), y=torch.zeros(4))
        msg = sub.recv(timeout=5)
        x = msg.x
        msg.close()
        assert busy(pub, 0.1) == 2   # x keeps the whole message (both buffers)
        assert torch.equal(x, torch.ones(4))
        del x
        assert wait_busy(pub, 0)


def test_held_messages_exhaust_a_small_pool(topic):
    """Holding received tensors really holds the buffers: a pool of 2 runs dry."""
    with tensorfd.Publisher(topic, max_buffers=2) as pub, tensorfd.Subscriber(topic) as sub:
        wait_subscribers(pub, 1)
        held = []
        for i in range(2):
            pub.send(x=torch.full((1024,), float(i)))
            held.append(sub.recv(timeout=5).x)
        with pytest.raises(OSError) as e:
            pub.send(x=torch.ones(1024))
        assert "pool" in str(e.value)
        del held
        gc.collect()
        assert wait_busy(pub, 0)
        pub.send(x=torch.ones(1024))


def test_loaned_tensor_survives_publisher_close(topic):
    pub = tensorfd.Publisher(topic)
    t = pub.empty((256,), dtype=torch.float64)
    pub.close()
    t.fill_(3.0)                 # still our memory
    assert float(t.sum()) == 768.0
    with pytest.raises(ValueError, match="closed"):
        pub.send(t=t)
    del t, pub
    gc.collect()


def test_subscriber_close_keeps_received(topic):
    with tensorfd.Publisher(topic) as pub:
        sub = tensorfd.Subscriber(topic)
        wait_subscribers(pub, 1)
        pub.send(x=torch.arange(5))
        x = sub.recv(timeout=5).x
        sub.close()
        del sub
        gc.collect()
        assert torch.equal(x, torch.arange(5))
        del x
        gc.collect()
        # the subscriber went: its loans come back with it
        assert wait_busy(pub, 0)


def test_tensors_die_on_other_threads(topic):
    """Received tensors handed to worker threads and dropped there, while the
    main thread keeps receiving: the library is only entered under the GIL."""
    import queue
    import threading

    n = 600
    with tensorfd.Publisher(topic, depth=64) as pub, tensorfd.Subscriber(topic) as sub:
        wait_subscribers(pub, 1)
        work = queue.Queue()
        sums = []

        def worker():
            while (t := work.get()) is not None:
                sums.append(float(t.sum()))
                del t

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for th in threads:
            th.start()
        got = 0
        while got < n:
            st = pub.stats()
            if st["published"] < n and st["pool_buffers_busy"] < 32:
                pub.send(x=torch.full((256,), 1.0))
            m = sub.try_recv()
            if m is None:
                continue
            work.put(m.x)
            del m
            got += 1
        for _ in threads:
            work.put(None)
        for th in threads:
            th.join()
        assert sums == [256.0] * n
        assert wait_busy(pub, 0)


def attach(pub, sub, timeout=20.0):
    """A subscriber attaches when it looks (a receive): both sides work."""
    end = time.monotonic() + timeout
    while pub.stats()["subscribers"] < 1:
        assert time.monotonic() < end, "the subscriber did not attach"
        assert sub.try_recv() is None
        pub.dispatch(0.02)


def test_publisher_restart(topic):
    """The publisher goes: ConnectionResetError once; a new one is found."""
    sub = tensorfd.Subscriber(topic, kind="numpy")   # before any publisher
    with tensorfd.Publisher(topic) as pub:
        attach(pub, sub)
        pub.send(x=np.ones(2))
        held = sub.recv(timeout=5).x
    with pytest.raises(ConnectionResetError):
        sub.recv(timeout=5)
    np.testing.assert_array_equal(held, np.ones(2))   # still readable
    with tensorfd.Publisher(topic) as pub:
        attach(pub, sub)
        pub.send(x=np.zeros(2))
        m = sub.recv(timeout=5)
        assert m.seq == 1 and sub.stats()["attaches"] == 2
    sub.close()
