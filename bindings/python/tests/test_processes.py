# SPDX-License-Identifier: MIT
"""Across real processes: multiprocessing children (spawn), plain second
interpreters (subprocess), sizes from one byte to 1 GiB, many subscribers,
Ctrl-C in a blocked receive, and the GIL released while waiting."""
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import peers
import tensorfd
from conftest import wait_subscribers

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [1, 64, 4096, 1 << 20, 64 << 20]


def fill(a):
    """A byte pattern that is not periodic in pages (251 is prime)."""
    flat = a.reshape(-1)
    n = flat.shape[0]
    if n % (1 << 20) == 0 and n > (1 << 20):
        tile = (np.arange(1 << 20) % 251).astype(np.uint8)
        np.asarray(flat).reshape(-1, 1 << 20)[:] = tile
    else:
        np.asarray(flat)[:] = (np.arange(n) % 251).astype(np.uint8)


def publish_sizes(pub, sizes):
    expect = []
    for n in sizes:
        a = pub.empty(n, dtype="uint8")   # numpy: no torch needed
        fill(a)
        pub.send(t=a, n=n)
        expect.append(peers.summary(a))
        del a
    return expect


def start_cli(args):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "peers.py")] + args,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_sizes_spawn(topic):
    pytest.importorskip("torch", reason="python3-torch is not installed")
    ctx = mp.get_context("spawn")
    q, ready = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=peers.mp_subscriber, args=(topic, len(SIZES), "torch", q, ready))
    with tensorfd.Publisher(topic) as pub:
        child.start()
        try:
            wait_subscribers(pub, 1, timeout=60)
            expect = publish_sizes(pub, SIZES)
            got = [q.get(timeout=60) for _ in SIZES]
        finally:
            child.join(60)
    assert child.exitcode == 0
    assert [g["t"] for g in got] == expect
    assert [g["meta"]["n"] for g in got] == SIZES


def test_sizes_second_interpreter(topic):
    with tensorfd.Publisher(topic) as pub:
        child = start_cli(["sub", topic, str(len(SIZES)), "numpy"])
        wait_subscribers(pub, 1, timeout=60)
        expect = publish_sizes(pub, SIZES)
        out, _ = child.communicate(timeout=120)
    assert child.returncode == 0
    got = [json.loads(line) for line in out.splitlines()]
    assert [g["t"] for g in got] == expect
    assert pub.closed


def test_one_gib(topic):
    """1 GiB once, loaned: the subscriber maps the publisher's pages."""
    with tensorfd.Publisher(topic) as pub:
        child = start_cli(["sub", topic, "1", "numpy"])
        wait_subscribers(pub, 1, timeout=60)
        expect = publish_sizes(pub, [1 << 30])
        assert pub.stats()["copied_tensors"] == 0
        out, _ = child.communicate(timeout=300)
    assert child.returncode == 0
    assert json.loads(out)["t"] == expect[0]


def test_many_subscribers_across_processes(topic):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    n_msgs, n_spawn = 3, 3
    with tensorfd.Publisher(topic) as pub:
        kids = [ctx.Process(target=peers.mp_subscriber, args=(topic, n_msgs, "numpy", q, None))
                for _ in range(n_spawn)]
        for k in kids:
            k.start()
        cli = start_cli(["sub", topic, str(n_msgs), "numpy"])
        local = tensorfd.Subscriber(topic, kind="numpy")
        wait_subscribers(pub, n_spawn + 2, timeout=90)
        expect = publish_sizes(pub, [1 << 20] * n_msgs)
        mine = [peers.summary(local.recv(timeout=30).t) for _ in range(n_msgs)]
        got = [q.get(timeout=60) for _ in range(n_spawn * n_msgs)]
        out, _ = cli.communicate(timeout=60)
        for k in kids:
            k.join(60)
        local.close()
    assert all(k.exitcode == 0 for k in kids) and cli.returncode == 0
    assert mine == expect
    assert sorted(g["seq"] for g in got) == sorted(list(range(1, n_msgs + 1)) * n_spawn)
    assert all(g["t"] == expect[g["seq"] - 1] for g in got)
    assert [json.loads(line)["t"] for line in out.splitlines()] == expect


def test_ctrl_c_interrupts_recv(topic):
    """SIGINT to a child blocked in recv(): KeyboardInterrupt, no fd left open."""
    with tensorfd.Publisher(topic) as pub:
        child = start_cli(["block", topic])
        wait_subscribers(pub, 1, timeout=60)
        time.sleep(0.3)        # well inside the wait
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=30)
    assert "interrupted" in out, out
    assert child.returncode == 0, out


def test_gil_released_while_waiting(topic):
    with tensorfd.Subscriber(topic, kind="numpy") as sub:
        done = []

        def waiter():
            try:
                sub.recv(timeout=1.0)
            except TimeoutError:
                done.append(time.monotonic())

        th = threading.Thread(target=waiter)
        start = time.monotonic()
        th.start()
        spins = 0
        while th.is_alive():
            spins += 1         # pure Python: runs only if recv let the GIL go
        th.join()
    assert done and done[0] - start >= 0.9
    assert spins > 1000
