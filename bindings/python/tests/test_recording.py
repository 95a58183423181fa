# SPDX-License-Identifier: MIT
"""tensorfd.Recording: a tensorfd-record file read back in Python, tensors
as views of the mapped file, metadata decoded, broken files refused."""
import os
import subprocess

import numpy as np
import pytest

import tensorfd
from conftest import wait_subscribers

RECORD = os.path.join(os.environ.get("top_builddir", "."), "tools", "tensorfd-record")


def record(topic, path, frames):
    """Publish frames (a list of dicts) while tensorfd-record records them."""
    rec = subprocess.Popen([RECORD, "--count", str(len(frames)), "-o", path, topic],
                           stderr=subprocess.PIPE, text=True)
    try:
        with tensorfd.Publisher(topic) as pub:
            wait_subscribers(pub, 1, timeout=30)
            for f in frames:
                pub.send(f)
            while rec.poll() is None:
                pub.dispatch(0.01)
    finally:
        rec.wait(timeout=30)
    assert rec.returncode == 0, rec.stderr.read()


@pytest.mark.skipif(not os.path.exists(RECORD), reason="tools/tensorfd-record not built")
def test_recording_round_trip(topic, tmp_path):
    path = str(tmp_path / "r.tfd")
    frames = [{"image": np.arange(12, dtype=np.float32).reshape(3, 4) + i, "frame": i,
               "id": "cam"} for i in range(3)]
    frames.append({"b": np.broadcast_to(np.float64(7), (1000, 1000)), "frame": 3})
    record(topic, path, frames)
    with tensorfd.Recording(path) as rec:
        assert rec.topics == [topic]
        msgs = list(rec)
        assert [m.topic for m in msgs] == [topic] * 4
        assert [m.metadata["frame"] for m in msgs] == [0, 1, 2, 3]
        assert msgs[0].metadata["id"] == "cam"
        assert msgs[0].seq < msgs[1].seq and msgs[0].t_ns <= msgs[1].t_ns
        for i in range(3):
            a = msgs[i]["image"]
            np.testing.assert_array_equal(a, frames[i]["image"])
            assert not a.flags.writeable and not a.flags.owndata  # a view of the file
        b = msgs[3]["b"]  # a broadcast is stored as its span, strides kept
        assert b.shape == (1000, 1000) and b.strides == (0, 0) and float(b[999, 999]) == 7.0
        torch = pytest.importorskip("torch")
        t = msgs[1].get("image", kind="torch")
        assert isinstance(t, torch.Tensor) and float(t[2, 3]) == 12.0
    assert os.path.getsize(path) < 8192  # the broadcast took its span, not 8 MB


def test_recording_refuses_broken_files(tmp_path):
    p = tmp_path / "x.tfd"
    p.write_bytes(b"\x10\0\0\0\0\0\0\0" + b'{"a":1}         ')
    with pytest.raises(ValueError, match="not a tensorfd-record file"):
        tensorfd.Recording(str(p))
    p.write_bytes(b"\xff" * 8)
    with pytest.raises(ValueError, match="header of"):
        tensorfd.Recording(str(p))
    good = (b'{"__metadata__":{"format":"tensorfd-record","version":"1","topics":"t"}}')
    doc = (b'{"__metadata__":{"topic":"t","seq":"1","t_ns":"0","timestamp":"0"},'
           b'"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}')
    body = (len(good).to_bytes(8, "little") + good + len(doc).to_bytes(8, "little") + doc)
    p.write_bytes(body + b"\0" * 8)  # 8 of the 16 data bytes
    with tensorfd.Recording(str(p)) as rec, pytest.raises(ValueError, match="truncated"):
        list(rec)
    p.write_bytes(body.replace(b"[4]", b"[5]") + b"\0" * 16)
    with tensorfd.Recording(str(p)) as rec:
        (m,) = list(rec)
        with pytest.raises(ValueError, match="does not match"):
            m["x"]
