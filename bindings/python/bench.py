# SPDX-License-Identifier: MIT
"""Python-to-Python latency of tensorfd beside torch.multiprocessing.

    PYTHONPATH=<build>/bindings/python/stage /usr/bin/python3 bench.py [--sizes 64,256M]
        [--iters N] [--json]

For each size, a producer (this process) and a consumer (a spawned child)
pass one float32 tensor back and forth:

  tensorfd   the producer fills a tensor from Publisher.empty() once and
             sends it again and again (no copy); the consumer takes
             time.monotonic_ns() when recv() returned and msg["t"] gave a
             torch.Tensor, subtracts the message's timestamp (taken at
             publish): one way. It touches the first and last element only
             (the handover is measured, not reading the data), drops the
             tensor (the release goes back) and answers with a message of
             metadata only, the one-way time; the producer times the round
             trip from before send() to the answer.
  torch.mp   the same over torch.multiprocessing Queues with the
             file_descriptor sharing strategy: the producer puts a tensor
             in shared memory (share_memory_() once) with a timestamp, the
             consumer gets it, touches it, answers on a second Queue.

The first rounds of each size (fd passing, first mappings) are left out.
Prints medians and 99th percentiles in microseconds.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.multiprocessing as tmp

# this file sits beside the package's sources, which lack the built module:
# import tensorfd from PYTHONPATH (the build's stage directory) instead
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
import tensorfd  # noqa: E402

WARMUP = 10


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1].upper()] if s[-1].upper() in mult else int(s)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def stats(ns):
    us = [x / 1000 for x in ns]
    return {"median_us": round(pct(us, 50), 1), "p99_us": round(pct(us, 99), 1), "n": len(us)}


# --- tensorfd --------------------------------------------------------------

def tfd_consumer(prefix, rounds):
    pub = tensorfd.Publisher(prefix + "/ack")
    sub = tensorfd.Subscriber(prefix + "/data", kind="torch")
    for _ in range(rounds):
        msg = sub.recv(timeout=60)
        if "t" in msg:
            t = msg["t"]
            now = time.monotonic_ns()
            t[0].item(), t[-1].item()
            lat = now - msg.timestamp
            del t
        else:
            lat = 0
        del msg
        pub.send(lat=lat)
    pub.dispatch(0.5)


def tfd_run(n_floats, iters):
    prefix = f"bench-{os.getpid()}-{n_floats}"
    ctx = tmp.get_context("spawn")
    with tensorfd.Publisher(prefix + "/data") as pub, \
            tensorfd.Subscriber(prefix + "/ack", kind="numpy") as ack:
        # the consumer answers each message; a first metadata-only message
        # tells us that both directions are attached
        child = ctx.Process(target=tfd_consumer, args=(prefix, iters + WARMUP + 1))
        child.start()
        while pub.stats()["subscribers"] < 1:
            pub.dispatch(0.05)
        while True:
            pub.send(hello=1)
            try:
                ack.recv(timeout=0.2)
                break
            except TimeoutError:
                continue
        t = pub.empty(n_floats, dtype=torch.float32)
        t.fill_(1.0)
        one, rt = [], []
        for i in range(iters + WARMUP):
            t0 = time.monotonic_ns()
            pub.send(t=t)
            m = ack.recv(timeout=60)
            t1 = time.monotonic_ns()
            if i >= WARMUP:
                rt.append(t1 - t0)
                one.append(m.lat)
            del m
        child.join(60)
    return stats(one), stats(rt)


# --- torch.multiprocessing -------------------------------------------------

def mp_consumer(q, back, rounds):
    for _ in range(rounds):
        t, ts = q.get()
        now = time.monotonic_ns()
        t[0].item(), t[-1].item()
        del t
        back.put(now - ts)


def mp_run(n_floats, iters):
    tmp.set_sharing_strategy("file_descriptor")
    ctx = tmp.get_context("spawn")
    q, back = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=mp_consumer, args=(q, back, iters + WARMUP))
    child.start()
    t = torch.ones(n_floats, dtype=torch.float32).share_memory_()
    one, rt = [], []
    for i in range(iters + WARMUP):
        t0 = time.monotonic_ns()
        q.put((t, time.monotonic_ns()))
        lat = back.get(timeout=60)
        t1 = time.monotonic_ns()
        if i >= WARMUP:
            rt.append(t1 - t0)
            one.append(lat)
    child.join(60)
    return stats(one), stats(rt)


# --- per-call costs in one process ----------------------------------------

def steps(n_floats, iters):
    """Median cost of each step of a message's life, in one process: what
    the Python layer spends per message, C calls included."""
    prefix = f"bench-{os.getpid()}-steps-{n_floats}"
    out = {k: [] for k in ("send", "recv", "torch_view", "numpy_view", "release")}
    with tensorfd.Publisher(prefix) as pub, tensorfd.Subscriber(prefix) as sub:
        while pub.stats()["subscribers"] < 1:
            pub.dispatch(0.05)
        t = pub.empty(n_floats, dtype=torch.float32)
        t.fill_(1.0)
        for i in range(iters + WARMUP):
            c0 = time.perf_counter_ns()
            pub.send(t=t)
            c1 = time.perf_counter_ns()
            while True:
                m = sub.try_recv()
                if m is not None:
                    break
            c2 = time.perf_counter_ns()
            x = m["t"]
            c3 = time.perf_counter_ns()
            y = m.get("t", kind="numpy")
            c4 = time.perf_counter_ns()
            del m, x, y
            c5 = time.perf_counter_ns()
            if i >= WARMUP:
                for k, a, b in (("send", c0, c1), ("recv", c1, c2), ("torch_view", c2, c3),
                                ("numpy_view", c3, c4), ("release", c4, c5)):
                    out[k].append(b - a)
    return {k: stats(v)["median_us"] for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="64,256M", help="bytes, suffixes K, M, G (default 64,256M)")
    ap.add_argument("--iters", type=int, default=0,
                    help="rounds per size (default 2000 up to 1 MiB, 100 above)")
    ap.add_argument("--only", default="tensorfd,torch.mp")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--steps", action="store_true",
                    help="also time each step of a message in one process")
    a = ap.parse_args()
    rows = []
    if a.steps:
        for size in [parse_size(s) for s in a.sizes.split(",")]:
            print(f"steps, {size} bytes, medians in us:", steps(max(1, size // 4), 1000))
    for size in [parse_size(s) for s in a.sizes.split(",")]:
        iters = a.iters or (2000 if size <= (1 << 20) else 100)
        for name, fn in (("tensorfd", tfd_run), ("torch.mp", mp_run)):
            if name not in a.only.split(","):
                continue
            one, rt = fn(max(1, size // 4), iters)
            rows.append({"impl": name, "bytes": size, "one_way": one, "round_trip": rt})
    if a.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return
    print(f"{'impl':10} {'bytes':>11} {'one-way med':>12} {'p99':>10} {'round-trip med':>15} "
          f"{'p99':>10}  (microseconds)")
    for r in rows:
        print(f"{r['impl']:10} {r['bytes']:>11} {r['one_way']['median_us']:>12} "
              f"{r['one_way']['p99_us']:>10} {r['round_trip']['median_us']:>15} "
              f"{r['round_trip']['p99_us']:>10}")


if __name__ == "__main__":
    main()
