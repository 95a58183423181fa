# SPDX-License-Identifier: MIT
"""Round trips within one process: dtypes, shapes, strides, metadata, the
zero-copy and copy paths, refusals, errors, copy-on-write, asyncio."""
import asyncio
import errno
import gc
import os

import numpy as np
import pytest

import tensorfd
from conftest import open_fds

torch = pytest.importorskip("torch", reason="python3-torch is not installed")


@pytest.fixture
def pair(topic):
    with tensorfd.Publisher(topic) as pub, tensorfd.Subscriber(topic) as sub:
        from conftest import wait_subscribers

        wait_subscribers(pub, 1)
        yield pub, sub


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.uint8]


def sample(shape, dtype):
    t = torch.arange(int(np.prod(shape)), dtype=torch.float64).reshape(shape) * 0.75 - 3
    return (t > 0) if dtype == torch.bool else t.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
def test_dtypes_torch(pair, dtype):
    pub, sub = pair
    t = sample((3, 5), dtype)
    loaned = pub.empty((3, 5), dtype=dtype)
    loaned.copy_(t)
    pub.send(copied=t, loaned=loaned)
    msg = sub.recv(timeout=5)
    for name in ("copied", "loaned"):
        r = msg[name]
        assert isinstance(r, torch.Tensor)
        assert r.dtype == dtype and r.shape == t.shape
        assert torch.equal(r, t)
    assert pub.stats()["copied_tensors"] == 1


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "bool", "uint8", "complex64"])
def test_dtypes_numpy(pair, dtype):
    pub, sub = pair
    a = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    pub.send(a=a)
    r = sub.recv(timeout=5).get("a", kind="numpy")
    assert isinstance(r, np.ndarray) and r.dtype == a.dtype
    np.testing.assert_array_equal(r, a)


def test_bfloat16_has_no_numpy(pair):
    pub, sub = pair
    pub.send(x=torch.ones(2, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="bfloat16"):
        sub.recv(timeout=5).get("x", kind="numpy")


@pytest.mark.parametrize("shape", [(), (0,), (4, 0, 3), (2, 3, 4, 5), (1,)], ids=str)
def test_shapes(pair, shape):
    pub, sub = pair
    t = torch.randn(shape)
    pub.send(t=t)
    r = sub.recv(timeout=5)["t"]
    assert r.shape == t.shape and torch.equal(r, t)


def test_non_contiguous_keeps_strides(pair):
    pub, sub = pair
    base = pub.empty((6, 8), dtype=torch.int64)
    base.copy_(torch.arange(48).reshape(6, 8))
    views = {"t": base.t(), "step": base[::2, 1::3], "col": base[:, 5]}
    pub.send(views)
    msg = sub.recv(timeout=5)
    for name, v in views.items():
        r = msg[name]
        assert r.stride() == v.stride(), name
        assert torch.equal(r, v), name
    # the views lie in the loan: nothing was copied
    assert pub.stats()["copied_tensors"] == 0
    # a foreign non-contiguous tensor is copied once, strides kept
    f = torch.arange(100).reshape(10, 10)[::3, ::2]
    pub.send(f=f)
    r = sub.recv(timeout=5)["f"]
    assert r.stride() == f.stride() and torch.equal(r, f)
    assert pub.stats()["copied_tensors"] == 1


def test_negative_strides(pair):
    pub, sub = pair
    a = np.arange(20, dtype=np.float32).reshape(4, 5)[::-1, ::-2]
    pub.send(a=a)
    msg = sub.recv(timeout=5)
    r = msg.get("a", kind="numpy")
    assert r.strides == a.strides
    np.testing.assert_array_equal(r, a)
    w = msg.get("a", kind="numpy", writable=True)
    np.testing.assert_array_equal(w, a)
    with pytest.raises(ValueError, match="negative strides"):
        msg.get("a", kind="torch")


def test_metadata(pair):
    pub, sub = pair
    meta = dict(step=7, neg=-(2**63), f=1.5, yes=True, no=False, none=None, s="héllo", b=b"\0\1")
    seq = pub.send(meta)
    msg = sub.recv(timeout=5)
    assert msg.seq == seq
    assert msg.metadata == meta
    assert msg.step == 7 and msg["s"] == "héllo" and "none" in msg and len(msg) == len(meta)
    assert type(msg.yes) is bool
    with pytest.raises(KeyError):
        msg["missing"]
    with pytest.raises(AttributeError):
        msg.missing
    with pytest.raises(ValueError, match="4096|limited"):
        pub.send(big="x" * 5000)
    with pytest.raises(OverflowError, match="'huge'"):
        pub.send(huge=2**64)
    # a bad tensor name is a bad value, like the others, and says why
    with pytest.raises(ValueError, match="tensor name"):
        pub.send({"bad name": np.zeros(4, dtype=np.float32)})
    with pytest.raises(ValueError, match="tensor name"):
        pub.send({"x" * 300: np.zeros(4, dtype=np.float32)})
    with pytest.raises(TypeError, match="send torch tensors"):
        pub.send(bad=object())
    # numpy scalars are metadata too
    pub.send(f32=np.float32(1.5), i64=np.int64(-3), yes=np.bool_(True), total=np.arange(4).sum())
    m = sub.recv(timeout=5)
    assert m.metadata == {"f32": 1.5, "i64": -3, "yes": True, "total": 6}
    assert type(m.yes) is bool and type(m.i64) is int


def test_zero_copy_publisher_refuses_foreign(topic):
    with tensorfd.Publisher(topic, zero_copy=True) as pub:
        pub.send(ok=pub.empty(4))
        with pytest.raises(OSError) as e:
            pub.send(t=torch.ones(4))
        assert e.value.errno == errno.EXDEV and "zero_copy" in str(e.value)


class FakeCuda:
    """Something that says it lives on a CUDA device through DLPack."""

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        raise AssertionError("must not be exported")


def test_cuda_and_other_devices_refused(pair):
    pub, _ = pair
    with pytest.raises(ValueError, match="CPU .* only"):
        pub.send(t=FakeCuda())
    with pytest.raises(ValueError, match="does not copy to the CPU"):
        pub.send(t=torch.ones(3, device="meta"))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="does not copy to the CPU"):
            pub.send(t=torch.ones(3, device="cuda"))


class Wrapped:
    """A third-party array: DLPack only."""

    def __init__(self, t):
        self.t = t

    def __dlpack__(self, stream=None):
        return self.t.__dlpack__()

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


def test_dlpack_in_and_out(pair):
    pub, sub = pair
    t = torch.arange(10, dtype=torch.int32)
    pub.send(w=Wrapped(t), a=np.arange(3.0))
    msg = sub.recv(timeout=5)
    cap = msg.get("w", kind="dlpack")
    assert type(cap).__name__ == "PyCapsule"
    assert torch.equal(torch.utils.dlpack.from_dlpack(cap), t)
    np.testing.assert_array_equal(msg.get("a", kind="numpy"), np.arange(3.0))


def test_received_can_be_sent_again(topic, pair):
    pub, sub = pair
    pub.send(t=torch.arange(6.0))
    msg = sub.recv(timeout=5)
    with tensorfd.Publisher(topic + "-again") as pub2, \
            tensorfd.Subscriber(topic + "-again", kind="numpy") as sub2:
        from conftest import wait_subscribers

        wait_subscribers(pub2, 1)
        pub2.send(t=msg.t, n=msg.get("t", kind="numpy"))
        m2 = sub2.recv(timeout=5)
        np.testing.assert_array_equal(m2.t, np.arange(6.0))
        np.testing.assert_array_equal(m2.n, np.arange(6.0))


def test_errors_carry_the_library_reason(topic):
    with pytest.raises(OSError) as e:
        tensorfd.Subscriber("../escape")
    assert e.value.errno == errno.EINVAL and "topic" in str(e.value).lower()
    with tensorfd.Publisher(topic):
        with pytest.raises(OSError) as e:
            tensorfd.Publisher(topic)
        assert e.value.errno == errno.EADDRINUSE and "live publisher" in str(e.value)
    with tensorfd.Subscriber(topic) as sub:
        with pytest.raises(TimeoutError):
            sub.recv(timeout=0.05)
        assert sub.try_recv() is None


def test_close_and_with_release_everything(topic):
    import tensorfd as t  # already imported: only the objects count

    before = open_fds()
    with t.Publisher(topic) as pub, t.Subscriber(topic) as sub:
        from conftest import wait_subscribers

        wait_subscribers(pub, 1)
        pub.send(x=torch.ones(8))
        msg = sub.recv(timeout=5)
        x = msg.x
    assert pub.closed and sub.closed
    with pytest.raises(ValueError, match="closed"):
        pub.send(x=x)
    with pytest.raises(ValueError, match="closed"):
        sub.recv(timeout=0)
    # received data outlives the subscriber
    assert torch.equal(x, torch.ones(8))
    msg.close()
    with pytest.raises(ValueError, match="closed"):
        msg.x
    del x, msg
    gc.collect()
    assert open_fds() == before


def test_copy_on_write(topic):
    """A receiver's writes reach neither the publisher, nor another
    subscriber, nor the next message over the same buffer."""
    with tensorfd.Publisher(topic, max_buffers=1) as pub, \
            tensorfd.Subscriber(topic, writable=True) as writer, \
            tensorfd.Subscriber(topic) as reader:
        from conftest import wait_subscribers

        wait_subscribers(pub, 2)
        t = pub.empty((1024, 1024), dtype=torch.float32)  # 4 MiB: many pages
        t.fill_(1)
        ptr = t.data_ptr()
        pub.send(t=t)
        w = writer.recv(timeout=5)["t"]
        w[::7].fill_(5)                    # write some pages of the receiver's view
        assert float(w[7, 0]) == 5
        r = reader.recv(timeout=5)
        assert torch.all(r["t"] == 1)      # the other subscriber
        assert torch.all(t == 1)           # the publisher
        a = r.get("t", kind="numpy", writable=True)
        a[0, 0] = 9                        # numpy can ask for its own copy too
        assert float(r["t"][0, 0]) == 1 and float(t[0, 0]) == 1
        # let everything go, then reuse the same (only) buffer for a new message
        del t, w, r, a
        gc.collect()
        pub.dispatch(0.2)
        t = pub.empty((1024, 1024), dtype=torch.float32)
        assert t.data_ptr() == ptr, "the pool should lend the same buffer again"
        t.fill_(2)
        pub.send(t=t)
        w = writer.recv(timeout=5)["t"]
        assert torch.all(w == 2), "a private mapping carried writes into the next message"


def test_numpy_views_are_read_only(pair):
    pub, sub = pair
    pub.send(a=np.zeros(16))
    a = sub.recv(timeout=5).get("a", kind="numpy")
    assert not a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1
    with pytest.raises(ValueError):
        a.flags.writeable = True


def test_torch_views_are_read_only_by_default(pair):
    """The default torch view is the shared mapping (no private mmap); a
    write into it stops the interpreter with tensorfd's reason, not a bare
    segmentation fault."""
    import signal
    import subprocess
    import sys

    pub, sub = pair
    pub.send(t=torch.arange(1024, dtype=torch.float32))
    msg = sub.recv(timeout=5)
    t = msg["t"]
    assert msg.get("t", writable=True).data_ptr() != t.data_ptr()
    assert torch.equal(t, torch.arange(1024, dtype=torch.float32))
    # the write itself, in a child interpreter of its own
    code = (
        "import time, torch, tensorfd\n"
        "with tensorfd.Publisher('ro/w') as p, tensorfd.Subscriber('ro/w') as s:\n"
        "    end = time.monotonic() + 20\n"
        "    while p.stats()['subscribers'] < 1 and time.monotonic() < end:\n"
        "        p.dispatch(0.01)\n"
        "    p.send(x=torch.ones(4096))\n"
        "    x = s.recv(timeout=10)['x']\n"
        "    print('writing', flush=True)\n"
        "    x[0] = 5\n"
        "    print('wrote')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "writing" in r.stdout and "wrote" not in r.stdout, r.stdout + r.stderr
    if os.environ.get("LD_PRELOAD"):
        # a sanitizer runtime's SEGV handler (chained after ours) ends it its own way
        assert r.returncode != 0, (r.returncode, r.stderr)
    else:
        assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr)
    assert "read-only view" in r.stderr and ".clone()" in r.stderr, r.stderr


def test_many_subscribers_in_process(topic):
    n = 8
    with tensorfd.Publisher(topic) as pub:
        subs = [tensorfd.Subscriber(topic) for _ in range(n)]
        from conftest import wait_subscribers

        wait_subscribers(pub, n)
        t = pub.empty(1000, dtype=torch.int32)
        t.copy_(torch.arange(1000))
        seq = pub.send(t=t)
        for s in subs:
            m = s.recv(timeout=5)
            assert m.seq == seq and torch.equal(m.t, torch.arange(1000, dtype=torch.int32))
        for s in subs:
            s.close()


def test_asyncio_recv(pair):
    pub, sub = pair

    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await sub.recv_async(timeout=0.05)
        loop.call_later(0.05, lambda: pub.send(x=torch.ones(2), n=1))
        loop.call_later(0.10, lambda: pub.send(x=torch.ones(2), n=2))
        first = await sub.recv_async(timeout=5)
        async for m in sub:
            return first.n, m.n

    assert asyncio.run(main()) == (1, 2)


def test_async_for_survives_publisher_restart(topic):
    """async for keeps receiving across a publisher restart; attaches counts it."""
    from conftest import wait_subscribers

    async def main(sub, pubs):
        loop = asyncio.get_running_loop()
        got = []

        def restart():
            pubs[0].close()
            pubs[0] = tensorfd.Publisher(topic)
            feed()

        def feed():
            # the new publisher takes the re-attach in, then publishes
            pubs[0].dispatch(0)
            if pubs[0].stats()["subscribers"] < 1:
                loop.call_later(0.02, feed)
            else:
                pubs[0].send(n=2)

        loop.call_later(0.05, lambda: pubs[0].send(n=1))
        async for m in sub:
            got.append(m.n)
            if len(got) == 1:
                loop.call_later(0.05, restart)
            else:
                return got

    pubs = [tensorfd.Publisher(topic)]
    with tensorfd.Subscriber(topic) as sub:
        wait_subscribers(pubs[0], 1)
        try:
            got = asyncio.run(asyncio.wait_for(main(sub, pubs), 30))
        finally:
            pubs[0].close()
        assert got == [1, 2]
        assert sub.stats()["attaches"] == 2


def test_send_order_and_seq(pair):
    pub, sub = pair
    seqs = [pub.send(i=i, x=np.full(3, i)) for i in range(5)]
    got = [sub.recv(timeout=5) for _ in range(5)]
    assert [m.seq for m in got] == seqs
    assert [int(m.get("x", kind="numpy")[0]) for m in got] == list(range(5))


def test_docstrings():
    for obj in (tensorfd, tensorfd.Publisher, tensorfd.Publisher.send, tensorfd.Publisher.empty,
                tensorfd.Subscriber, tensorfd.Subscriber.recv, tensorfd.Subscriber.recv_async,
                tensorfd.Message.get):
        assert obj.__doc__ and len(obj.__doc__) > 40, obj
    assert "copied once" in tensorfd.Publisher.send.__doc__
    assert os.path.isabs(tensorfd.runtime_dir())


def test_metadata_decoder_survives_garbage(pair):
    """User data comes from another process: malformed bytes give no
    metadata (and no crash), never a wrong value."""
    import random

    pub, sub = pair
    pub.send(step=7, s="abc", f=2.5, b=b"xyz", n=None, t=True)
    raw = sub.recv(timeout=5).user_data
    assert tensorfd._tensorfd._decode_metadata(raw)["s"] == "abc"
    rng = random.Random(6)
    for cut in range(len(raw)):
        d = tensorfd._tensorfd._decode_metadata(raw[:cut])
        assert d is None or set(d) <= {"step", "s", "f", "b", "n", "t"}
    for _ in range(3000):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        d = tensorfd._tensorfd._decode_metadata(bytes(b))
        assert d is None or isinstance(d, dict)
    for _ in range(300):
        blob = b"TFM1" + bytes(8) + bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        tensorfd._tensorfd._decode_metadata(blob)


def test_views_after_subscriber_close(topic):
    with tensorfd.Publisher(topic) as pub:
        sub = tensorfd.Subscriber(topic)
        from conftest import wait_subscribers

        wait_subscribers(pub, 1)
        pub.send(x=torch.arange(4.0))
        msg = sub.recv(timeout=5)
        sub.close()
        assert torch.equal(msg.x, torch.arange(4.0))
        np.testing.assert_array_equal(msg.get("x", kind="numpy"), np.arange(4.0))


def test_unaligned_elements(pair):
    """Elements off their natural alignment (a peer may place them so):
    numpy handles them, torch is refused rather than risking its kernels."""
    pub, sub = pair
    raw = pub.empty(17, dtype="uint8")
    raw[:] = np.arange(17, dtype=np.uint8)
    odd = raw[1:].view(np.float32)             # lies in the loan at byte 1
    pub.send(odd=odd)
    assert pub.stats()["copied_tensors"] == 0
    msg = sub.recv(timeout=5)
    np.testing.assert_array_equal(msg.get("odd", kind="numpy"), odd)
    with pytest.raises(ValueError, match="aligned"):
        msg.get("odd", kind="torch")


class _Capsule:
    """An object with __dlpack__ over bytes, with any DLPack dtype: a tensor
    no numpy or torch would make (sub-byte elements)."""

    def __init__(self, data, code, bits, lanes, shape):
        import ctypes

        class DLDevice(ctypes.Structure):
            _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]

        class DLDataType(ctypes.Structure):
            _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                        ("lanes", ctypes.c_uint16)]

        class DLTensor(ctypes.Structure):
            _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice),
                        ("ndim", ctypes.c_int), ("dtype", DLDataType),
                        ("shape", ctypes.POINTER(ctypes.c_int64)),
                        ("strides", ctypes.POINTER(ctypes.c_int64)),
                        ("byte_offset", ctypes.c_uint64)]

        class DLManagedTensor(ctypes.Structure):
            _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                        ("deleter", ctypes.c_void_p)]

        self._buf = ctypes.create_string_buffer(data, len(data))
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._mt = DLManagedTensor()
        t = self._mt.dl_tensor
        t.data = ctypes.cast(self._buf, ctypes.c_void_p)
        t.device = DLDevice(1, 0)
        t.ndim = len(shape)
        t.dtype = DLDataType(code, bits, lanes)
        t.shape = self._shape
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        self._new = new

    def __dlpack__(self, stream=None):
        import ctypes

        return self._new(ctypes.addressof(self._mt), b"dltensor", None)

    def __dlpack_device__(self):
        return (1, 0)


def test_sub_byte_dtype_follows_the_library_rule(pair):
    """A tensor the library cannot size (4-bit elements: bits x lanes must
    make whole bytes) is refused with the library's reason, before anything
    is copied: the binding sizes tensors with tfd_layout_span, not a rule of
    its own."""
    pub, _ = pair
    with pytest.raises(ValueError, match="not whole bytes"):
        pub.send(nibbles=_Capsule(b"\x12\x34\x56\x78", 0, 4, 1, (8,)))


def test_metadata_c_python_c(topic):
    """Typed metadata is one format: a C publisher's values (every type)
    arrive in Python as they were set, and Python sends them on to a C
    subscriber that finds them, types and order intact."""
    import subprocess

    peer = os.path.join(os.environ.get("top_builddir", "."), "tests", "meta-peer")
    if not os.path.exists(peer):
        pytest.skip("tests/meta-peer was not built (make check builds it)")
    c_pub = subprocess.Popen([peer, "pub", topic + "/c"])
    try:
        with tensorfd.Subscriber(topic + "/c") as sub:
            msg = sub.recv(timeout=30)
    finally:
        assert c_pub.wait(timeout=30) == 0
    assert msg.metadata == {"frame": -7, "exposure_s": 0.0125, "keyframe": True,
                            "frame_id": "cam/\u00e9", "calib": b"\0\1\2", "none": None}
    assert list(msg.metadata) == ["frame", "exposure_s", "keyframe", "frame_id", "calib",
                                  "none"]
    assert msg.capture_time == 1234567890123
    with tensorfd.Publisher(topic + "/py", latched=True) as pub:
        pub.send(msg.metadata)
        c_sub = subprocess.Popen([peer, "sub", topic + "/py"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        import time

        end = time.monotonic() + 30
        while c_sub.poll() is None and time.monotonic() < end:
            pub.dispatch(0.01)
        out = c_sub.communicate(timeout=30)[0]
    assert c_sub.returncode == 0, out


def test_timeouts_say_why(topic):
    """A receive that times out says why: no publisher (and what is there),
    or this subscriber holding every message its publisher will send it."""
    with tensorfd.Subscriber(topic + "-nobody") as sub:
        with pytest.raises(TimeoutError, match="no publisher of .*no socket at"):
            sub.recv(timeout=0.05)

        async def wait():
            await sub.recv_async(timeout=0.05)

        with pytest.raises(TimeoutError, match="no publisher of"):
            asyncio.run(wait())
    from conftest import wait_subscribers

    with tensorfd.Publisher(topic) as pub, tensorfd.Subscriber(topic) as sub:
        wait_subscribers(pub, 1)
        held = []
        for i in range(40):
            pub.send(i=i, x=np.zeros(4, dtype=np.float32))
            pub.dispatch(0)
            msg = sub.try_recv()
            if msg is not None:
                held.append(msg)
        while len(held) < 16:
            pub.dispatch(0.01)
            msg = sub.try_recv()
            if msg is not None:
                held.append(msg)
        with pytest.raises(TimeoutError, match="holds 16 unreleased messages"):
            sub.recv(timeout=0.05)
        del held, msg


def test_wait_subscribers(topic):
    """wait_subscribers() serves the publisher until n are there, and says
    how many came when they do not."""
    with tensorfd.Publisher(topic) as pub:
        with pytest.raises(TimeoutError, match="0 of 1 subscribers"):
            pub.wait_subscribers(1, timeout=0.05)
        with tensorfd.Subscriber(topic) as sub:
            pub.wait_subscribers(1, timeout=10)
            assert pub.stats()["subscribers"] == 1
            pub.send(x=np.ones(3))
            assert sub.recv(timeout=5)["x"].tolist() == [1.0, 1.0, 1.0]


def test_copied_at_the_receiver(pair):
    """A tensor the publisher had to copy says so at the receiver; one sent
    from a loan does not."""
    pub, sub = pair
    loaned = pub.empty((4,), dtype=torch.float32)
    loaned.fill_(2)
    pub.send(copied=torch.ones(4), loaned=loaned)
    msg = sub.recv(timeout=5)
    assert msg.copied("copied") and not msg.copied("loaned")
    assert pub.stats()["copied_tensors"] == 1
