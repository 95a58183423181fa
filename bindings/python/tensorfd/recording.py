# SPDX-License-Identifier: MIT
"""Reading tensorfd-record files from Python.

A recording is a sequence of safetensors documents (tensorfd-record(1)):
the first names the topics, each later one is a message with its topic,
sequence number, arrival time, timestamp, user data and tensors. The file
is mapped read-only and tensors are numpy views of the mapping (or torch
tensors over them): nothing is copied.

    with tensorfd.Recording("run.tfd") as rec:
        print(rec.topics)
        for msg in rec:
            img = msg["image"]          # numpy array over the file's pages
            print(msg.topic, msg.seq, msg.t_ns, msg.metadata)

The file is checked as it is read: header sizes, offsets inside the file,
shapes that match their byte ranges; a broken file raises ValueError.
"""

import json
import mmap
import struct

_HEADER_MAX = 1 << 20  # bytes of JSON a document may have, as the C reader
_FORMAT = "tensorfd-record"

# safetensors dtype names -> numpy dtype names (BF16 has none in numpy)
_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
    "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "F16": "float16",
    "F32": "float32", "F64": "float64", "C64": "complex64", "C128": "complex128",
    "BF16": "int16",
}


def _bad(path, pos, why):
    return ValueError(f"{path}: broken recording at byte {pos}: {why}")


class RecordedMessage:
    """One recorded message: topic, seq, t_ns (arrival since the recording
    started), timestamp (the publisher's), user_data, metadata, and its
    tensors by name (msg[name], msg.get(name, kind=...))."""

    def __init__(self, rec, header, data_pos):
        meta = header.pop("__metadata__", {})
        self._rec = rec
        self._tensors = header
        self._data_pos = data_pos
        self.topic = meta.get("topic", "")
        self.seq = int(meta.get("seq", 0))
        self.t_ns = int(meta.get("t_ns", 0))
        self.timestamp = int(meta.get("timestamp", 0))
        self.user_data = bytes.fromhex(meta.get("user_data", ""))
        from ._tensorfd import _decode_metadata

        self.metadata = (_decode_metadata(self.user_data) or {}) if self.user_data else {}

    def tensors(self):
        """Names of the tensors."""
        return list(self._tensors)

    def __contains__(self, name):
        return name in self._tensors

    def __getitem__(self, name):
        return self.get(name)

    def get(self, name, kind=None):
        """The tensor called name: a read-only numpy view of the file
        (kind='numpy', the default unless the Recording says otherwise) or a
        torch tensor over it (kind='torch')."""
        import numpy as np

        kind = kind or self._rec.kind
        t = self._tensors[name]
        st = t.get("dtype")
        if st not in _DTYPES:
            raise TypeError(f"{name}: dtype {st!r} is not read")
        if st == "BF16" and kind != "torch":
            raise TypeError(f"{name}: numpy has no bfloat16: ask for kind='torch'")
        dt = np.dtype(_DTYPES[st])
        begin, end = t["data_offsets"]
        shape = tuple(int(s) for s in t["shape"])
        pos = self._data_pos + begin
        if not 0 <= begin <= end or self._data_pos + end > len(self._rec._map):
            raise _bad(self._rec.path, self._data_pos, f"{name}: range outside the file")
        raw = np.frombuffer(self._rec._map, dtype=np.uint8, count=end - begin, offset=pos)
        count = 1
        for s in shape:
            if s < 0:
                raise _bad(self._rec.path, self._data_pos, f"{name}: negative extent")
            count *= s
        if "strides" in t:
            strides = tuple(int(s) for s in t["strides"])
            off = int(t.get("byte_offset", 0))
            lo = hi = 0
            for n, s in zip(shape, strides):
                if n == 0:
                    lo = hi = 0
                    break
                if s < 0:
                    lo += (n - 1) * s
                else:
                    hi += (n - 1) * s
            if count and (len(strides) != len(shape) or off + lo * dt.itemsize < 0 or
                          off + (hi + 1) * dt.itemsize > end - begin):
                raise _bad(self._rec.path, self._data_pos, f"{name}: strides reach outside")
            base = raw[off:].view(dt) if count else raw[:0].view(dt)
            a = np.lib.stride_tricks.as_strided(
                base, shape=shape, strides=tuple(s * dt.itemsize for s in strides),
                writeable=False)
        else:
            if count * dt.itemsize != end - begin:
                raise _bad(self._rec.path, self._data_pos,
                           f"{name}: shape {shape} does not match {end - begin} bytes")
            a = raw.view(dt).reshape(shape)
        if kind == "torch":
            import warnings

            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # read-only: torch warns, it is a view
                x = torch.from_numpy(a)
            return x.view(torch.bfloat16) if st == "BF16" else x
        return a

    def __repr__(self):
        return (f"<tensorfd.RecordedMessage topic={self.topic!r} seq={self.seq} "
                f"tensors={self.tensors()!r} metadata={self.metadata!r}>")


class Recording:
    """A tensorfd-record file, mapped read-only; iterating it gives its
    messages (RecordedMessage) in order. kind: what msg[name] returns,
    'numpy' (default) or 'torch'."""

    def __init__(self, path, kind="numpy"):
        if kind not in ("numpy", "torch"):
            raise ValueError("kind must be 'numpy' or 'torch'")
        self.path = str(path)
        self.kind = kind
        with open(self.path, "rb") as f:
            try:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:
                raise _bad(self.path, 0, "empty file") from None
        header, self._first = self._document(0)
        meta = header.get("__metadata__", {})
        if meta.get("format") != _FORMAT:
            raise _bad(self.path, 0, "not a tensorfd-record file")
        self.version = meta.get("version")
        self.topics = [t for t in meta.get("topics", "").split(",") if t]

    def _document(self, pos):
        """The header at pos and the position of the document's data."""
        if pos + 8 > len(self._map):
            raise _bad(self.path, pos, "truncated header length")
        (n,) = struct.unpack_from("<Q", self._map, pos)
        if n > _HEADER_MAX or pos + 8 + n > len(self._map):
            raise _bad(self.path, pos, f"header of {n} bytes")
        try:
            header = json.loads(bytes(self._map[pos + 8:pos + 8 + n]))
        except ValueError as e:
            raise _bad(self.path, pos, f"header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise _bad(self.path, pos, "header is not an object")
        return header, pos + 8 + n

    def __iter__(self):
        pos = self._first
        while pos < len(self._map):
            header, data = self._document(pos)
            end = 0
            for k, v in header.items():
                if k == "__metadata__":
                    continue
                try:
                    b, e = v["data_offsets"]
                except (TypeError, KeyError, ValueError):
                    raise _bad(self.path, pos, f"{k}: no data_offsets") from None
                end = max(end, int(e))
            if data + end > len(self._map):
                raise _bad(self.path, pos, "data truncated")
            yield RecordedMessage(self, header, data)
            pos = data + end

    def close(self):
        """Unmap the file (tensors still viewing it keep it mapped)."""
        try:
            self._map.close()
        except BufferError:
            pass  # numpy views still use it: it goes with the last of them

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
