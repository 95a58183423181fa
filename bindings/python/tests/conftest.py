# SPDX-License-Identifier: MIT
"""Fixtures for the tensorfd binding's tests, and a TAP record of results.

run-pytest.sh sets TFD_TAP_FILE; each test's outcome is appended there as a
TAP line so that make check lists the Python tests one by one.
"""
import itertools
import os
import re

import pytest

_tap = os.environ.get("TFD_TAP_FILE")
_count = itertools.count(1)


def pytest_runtest_logreport(report):
    if not _tap:
        return
    if not (report.when == "call" or (report.when != "call" and not report.passed)):
        return
    name = report.nodeid.replace("#", "_")
    n = next(_count)
    if report.passed:
        line = f"ok {n} - {name}"
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        line = f"ok {n} - {name} # SKIP {reason}".replace("\n", " ")
    else:
        line = f"not ok {n} - {name} ({report.when})"
    with open(_tap, "a") as f:
        f.write(line + "\n")


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def topic(request):
    """A topic name of this test's own."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:60]
    return f"pytest/{base}-{os.getpid()}"


def wait_subscribers(pub, n, timeout=20.0):
    """Let pub take in attachments until n subscribers are there."""
    pub.wait_subscribers(n, timeout=timeout)
