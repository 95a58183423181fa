#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""torch.multiprocessing Queue latency, measured the way tensorfd-bench measures.

A producer process puts a CPU tensor on a torch.multiprocessing Queue (the
file_descriptor sharing strategy), a consumer process gets it, reads it and
answers on a second queue. One-way latency: the producer's CLOCK_MONOTONIC
(time.monotonic_ns) as it starts producing to the consumer's once it has
consumed; rtt/2: the round trip halved. Touch "ends" writes and reads the
first and last byte, "all" one byte of every 64-byte cache line.

Variants: "shared" puts the same tensor, moved to shared memory once (the
best case for torch: only the fd and the mapping move per message);
"fresh" puts a new tensor each time (what most code does: torch copies it
into shared memory on put).

Prints one JSON result per line in the format of tensorfd-bench --json, so
that `tensorfd-bench --include FILE` merges them into its table, targets
and plot:

    python3 tools/bench-torch-mp.py --cpus 0,1 > torch.json
    tensorfd-bench --cpus 0,1 --include torch.json
"""
import argparse
import json
import os
import sys
import time

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(s):
    mult = UNITS.get(s[-1:].upper(), 1)
    n = int(s[:-1] if mult > 1 else s) * mult
    if n <= 0:
        raise argparse.ArgumentTypeError("bad size %r" % s)
    return n


def iters_for(args, size):
    n = args.iters or (500 if size <= 1 << 20 else 100)
    # copies and touching every line cost time per byte: about 4 GiB a series
    if (args.touch == "all" or args.variant == "fresh") and size > 1 << 20:
        n = min(n, max(5, (4 << 30) // size))
    return n


def produce(torch, x, mark, touch):
    if touch == "all":
        x[::64] = mark
    x[0] = mark
    x[-1] = mark


def consume(x, mark, touch):
    if touch == "all":
        ok = bool((x[::64] == mark).all())
    else:
        ok = True
    return ok and int(x[0]) == mark and int(x[-1]) == mark


def consumer(q_in, q_out, cpu, touch):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    while True:
        item = q_in.get()
        if item is None:
            return
        t0, mark, x = item
        ok = consume(x, mark, touch)
        t1 = time.monotonic_ns()
        del x, item
        q_out.put((t1 - t0, ok))


def summary(v):
    v = sorted(v)
    n = len(v)

    def pct(permille):
        rank = (n * permille + 999) // 1000
        return v[max(rank, 1) - 1] / 1e3

    return {"p50": pct(500), "p99": pct(990), "p999": pct(999), "max": v[-1] / 1e3}


def measure(torch, mp, args, size):
    q_in, q_out = mp.Queue(), mp.Queue()
    cpus = args.cpus or [None, None]
    proc = mp.Process(target=consumer, args=(q_in, q_out, cpus[1], args.touch))
    proc.start()
    n = iters_for(args, size)
    warm = 20 if n >= 100 else 2
    shared = None
    if args.variant == "shared":
        shared = torch.zeros(size, dtype=torch.uint8).share_memory_()
    oneway, half = [], []
    try:
        for i in range(warm + n):
            mark = (i * 7 + 1) & 0xFF
            t0 = time.monotonic_ns()
            x = shared if shared is not None else torch.empty(size, dtype=torch.uint8)
            produce(torch, x, mark, args.touch)
            q_in.put((t0, mark, x))
            lat, ok = q_out.get(timeout=120)
            rtt = time.monotonic_ns() - t0
            if not ok:
                raise RuntimeError("the consumer saw stale bytes")
            if i >= warm:
                oneway.append(lat)
                half.append(rtt // 2)
            del x
    finally:
        q_in.put(None)
        proc.join(30)
    return {
        "kind": "latency", "group": "baseline",
        "name": "torch.mp queue" if args.variant == "shared" else "torch.mp fresh",
        "wait": "block", "touch": args.touch, "subs": 1, "size": size, "iters": n,
        "oneway": summary(oneway), "rtt_half": summary(half),
        "strategy": "file_descriptor", "variant": args.variant,
        "torch": torch.__version__,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="64,4K,1M,16M,256M,1G",
                    help="comma-separated sizes, suffixes K, M, G")
    ap.add_argument("--iters", type=int, default=0,
                    help="rounds per size (default 500 up to 1 MiB, 100 above)")
    ap.add_argument("--cpus", default=None,
                    help="A,B: pin the producer to CPU A, the consumer to CPU B")
    ap.add_argument("--touch", choices=("ends", "all"), default="ends")
    ap.add_argument("--variant", choices=("shared", "fresh"), default="shared")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    if args.cpus:
        args.cpus = [int(c) for c in args.cpus.split(",")][:2]
        os.sched_setaffinity(0, {args.cpus[0]})
    try:
        import torch
        import torch.multiprocessing as tmp
    except ImportError as e:
        print("bench-torch-mp: torch is not installed: %s" % e, file=sys.stderr)
        return 77
    tmp.set_sharing_strategy("file_descriptor")
    mp = tmp.get_context("fork")
    for size in sizes:
        print(json.dumps(measure(torch, mp, args, size)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
