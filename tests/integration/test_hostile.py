"""Hostile clients: requests meant to crash, starve or bloat inferd.

Every case ends with survives(daemon): the process is alive, a health check
from another loopback address (127.0.0.2, so per-address limits do not apply
to it) answers within 2 s, and a normal request is answered correctly.

Sections, one per class of attack (see the README's "Hostile clients"):
crashes, connection floods and slow clients, memory amplification, CPU
amplification, log injection, slot leaks, leaks in answers.
"""
import socket
import time

import pytest  # noqa: F401  (the sections below use it)

from support import assert_still_serves

HEALTH_DEADLINE_S = 2.0


def health_from(daemon, source="127.0.0.2", timeout=HEALTH_DEADLINE_S):
    """GET /v2/health/live on a fresh connection from `source`; returns the
    status code, or raises if no answer came within `timeout`."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        while b"\r\n" not in buf:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    assert time.monotonic() <= deadline + 0.05, f"health check took over {timeout} s"
    line = buf.split(b"\r\n", 1)[0].decode("latin-1")
    assert line.startswith("HTTP/1."), f"no HTTP answer to a health check: {buf[:100]!r}"
    return int(line.split()[1])


def survives(daemon):
    """The daemon is alive, answers a health check from another address
    within 2 s, and answers a normal request correctly."""
    assert daemon.proc.poll() is None, f"inferd is gone\n{daemon.describe()}"
    assert health_from(daemon) == 200
    assert_still_serves(daemon)


# ---------------------------------------------------------------------------
# Crashes
