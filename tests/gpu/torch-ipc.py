# SPDX-License-Identifier: MIT
"""Classic CUDA IPC of a PyTorch caching-allocator tensor, through libtensorfd
with ctypes (no binding needed): called by tests/gpu/run.sh on a GPU machine
with PyTorch. The tensor is a slice of a larger torch allocation, so its
pointer is inside a cudaMalloc block the caching allocator owns; the library
sends cuIpcGetMemHandle of the block base plus the offset, and tests/gpu/gpu-test
torch-consumer checks the values on the device in another process.

Usage: torch-ipc.py LIBTENSORFD SOCKET
"""
import ctypes
import sys

import torch

lib = ctypes.CDLL(sys.argv[1])
sock = sys.argv[2].encode()

MAX_NDIM = 32


class Layout(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16),
                ("ndim", ctypes.c_int32), ("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32), ("byte_offset", ctypes.c_uint64),
                ("shape", ctypes.c_int64 * MAX_NDIM), ("strides", ctypes.c_int64 * MAX_NDIM)]


vp = ctypes.c_void_p
for name, res, args in [
        ("tfd_cuda_buffer_wrap", ctypes.c_int, [ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(vp)]),
        ("tfd_channel_connect", ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(vp)]),
        ("tfd_message_new", ctypes.c_int, [ctypes.POINTER(vp)]),
        ("tfd_message_add_tensor", ctypes.c_int, [vp, ctypes.c_char_p, vp, ctypes.POINTER(Layout)]),
        ("tfd_message_cuda_record", ctypes.c_int, [vp, vp]),
        ("tfd_channel_send", ctypes.c_int, [vp, vp]),
        ("tfd_channel_dispatch", ctypes.c_int, [vp, ctypes.c_int]),
        ("tfd_buffer_loans", ctypes.c_uint, [vp]),
        ("tfd_last_error", ctypes.c_char_p, []),
        ("tfd_message_unref", vp, [vp]),
        ("tfd_buffer_unref", vp, [vp]),
        ("tfd_channel_unref", vp, [vp])]:
    f = getattr(lib, name)
    f.restype = res
    f.argtypes = args


def check(r, what):
    if r < 0:
        sys.exit("FAIL torch: %s: %d %s" % (what, r, lib.tfd_last_error().decode()))


torch.cuda.init()
big = torch.zeros(1 << 20, dtype=torch.uint8, device="cuda")
t = big[4096:4096 + 65536]          # a view inside the caching allocator's block
t.fill_(7)
stream = torch.cuda.current_stream()

off = ctypes.c_uint64()
buf = vp()
check(lib.tfd_cuda_buffer_wrap(t.data_ptr(), ctypes.byref(off), ctypes.byref(buf)), "wrap")
ch = vp()
check(lib.tfd_channel_connect(sock, ctypes.byref(ch)), "connect")
msg = vp()
check(lib.tfd_message_new(ctypes.byref(msg)), "message")
lay = Layout(code=1, bits=8, lanes=1, ndim=1, device_type=2, device_id=0, byte_offset=off.value)
lay.shape[0] = t.numel()
lay.strides[0] = 1
check(lib.tfd_message_add_tensor(msg, b"t", buf, ctypes.byref(lay)), "add_tensor")
check(lib.tfd_message_cuda_record(msg, vp(stream.cuda_stream)), "record")
check(lib.tfd_channel_send(ch, msg), "send")
# keep the tensor (and its block) alive until the consumer released it
while lib.tfd_buffer_loans(buf) and lib.tfd_channel_dispatch(ch, 1000) >= 0:
    pass
print("INFO torch: sent a %d-byte slice at offset %d of its cudaMalloc block" % (t.numel(), off.value))
lib.tfd_message_unref(msg)
lib.tfd_buffer_unref(buf)
lib.tfd_channel_unref(ch)
