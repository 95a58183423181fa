# SPDX-License-Identifier: MIT
"""tensorfd: hand tensors to another process without copying them.

Publish named tensors (torch, numpy, DLPack) and small metadata on a topic;
subscribers get views of the very pages the publisher wrote::

    pub = tensorfd.Publisher("robot/hidden")
    t = pub.empty((4096, 4096), dtype=torch.float32)  # loaned: zero-copy
    torch.matmul(a, b, out=t)
    pub.send(hidden_state=t, step=7)

    sub = tensorfd.Subscriber("robot/hidden")
    msg = sub.recv(timeout=1.0)
    h = msg["hidden_state"]         # torch.Tensor over the shared pages
    step = msg.step                 # 7

The work is done by the C library libtensorfd through the extension module
tensorfd._tensorfd; this file adds asyncio support. See tensorfd(7).
"""

import asyncio as _asyncio

from ._tensorfd import (  # noqa: F401
    MAX_NDIM,
    MAX_TENSORS,
    MAX_USER_DATA,
    Message,
    Publisher,
    __version__,
    runtime_dir,
    topic_path,
)
from ._tensorfd import Subscriber as _Subscriber
from .recording import RecordedMessage, Recording  # noqa: F401

__all__ = ["Publisher", "Subscriber", "Message", "Recording", "RecordedMessage", "runtime_dir",
           "topic_path"]


class Subscriber(_Subscriber):
    __doc__ = _Subscriber.__doc__ + """

Also awaitable: ``msg = await sub.recv_async(timeout)`` waits in the running
asyncio loop (on the subscriber's descriptor), and ``async for msg in sub``
receives forever: a publisher that goes away and comes back (a restart) does
not end it. recv() and recv_async() raise ConnectionResetError once when the
publisher goes; ``async for`` takes that in and waits for the next publisher,
and stats()["attaches"] counts the publishers it has attached to, so a
restart shows there (and as a jump in msg.seq).
"""

    async def recv_async(self, timeout=None):
        """The next message, awaited in the running event loop.

        Waits on fileno() with loop.add_reader() and takes what arrived with
        try_recv(); raises TimeoutError after timeout seconds (None: never).
        """
        loop = _asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        fd = self.fileno()
        while True:
            msg = self.try_recv()
            if msg is not None:
                return msg
            ready = loop.create_future()
            loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
            try:
                if deadline is None:
                    await ready
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        # the library's reason: no publisher, gone, held messages...
                        return self.recv(timeout=0)
                    try:
                        await _asyncio.wait_for(ready, left)
                    except _asyncio.TimeoutError:
                        return self.recv(timeout=0)
            finally:
                loop.remove_reader(fd)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            try:
                return await self.recv_async()
            except ConnectionResetError:
                # the publisher went away; the library re-attaches to the next
                continue
