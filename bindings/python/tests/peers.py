# SPDX-License-Identifier: MIT
"""Programs for the other processes of the tests: multiprocessing (spawn)
targets, and a command-line subscriber run as a plain second interpreter:

    python peers.py sub TOPIC COUNT KIND   prints one JSON line per message
    python peers.py block TOPIC            waits in recv() until SIGINT
"""
import json
import os
import sys

import tensorfd


def summary(t):
    """A checksum that a publisher can compute the same way (numpy or torch)."""
    import numpy as np

    a = t.numpy() if hasattr(t, "numpy") else np.asarray(t)
    flat = a.reshape(-1).view(np.uint8)
    return {"nbytes": int(flat.size), "sum": int(flat.sum(dtype=np.uint64)),
            "first": int(flat[0]) if flat.size else -1,
            "last": int(flat[-1]) if flat.size else -1}


def subscribe(topic, count, kind, out, ready=None):
    """Receive count messages; put a summary of each tensor on out."""
    with tensorfd.Subscriber(topic, kind=kind) as sub:
        if ready is not None:
            ready.set()
        for _ in range(count):
            msg = sub.recv(timeout=60)
            res = {"seq": msg.seq, "meta": msg.metadata}
            for name in msg.tensors():
                res[name] = summary(msg[name])
            del msg
            out(res)


def mp_subscriber(topic, count, kind, queue, ready):
    """multiprocessing target: summaries go on queue."""
    subscribe(topic, count, kind, queue.put, ready)


def _block(topic):
    fds = len(os.listdir("/proc/self/fd"))
    sub = tensorfd.Subscriber(topic, kind="numpy")
    print("ready", flush=True)
    try:
        sub.recv()
        print("received?!", flush=True)
        return 1
    except KeyboardInterrupt:
        sub.close()
        del sub
        after = len(os.listdir("/proc/self/fd"))
        print(f"interrupted fds {fds} {after}", flush=True)
        return 0 if after == fds else 1


def main(argv):
    if argv[1] == "sub":
        print("ready", flush=True)
        subscribe(argv[2], int(argv[3]), argv[4],
                  lambda r: print(json.dumps(r), flush=True))
        return 0
    if argv[1] == "block":
        return _block(argv[2])
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
