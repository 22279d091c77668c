"""No leak across model reloads (issue 13): 50 unload/load cycles of the
default model in explicit mode, each followed by a request. The daemon's
resident memory after the last cycle stays within 10% of what it was after
the first, and every retired version is freed (its log line). Under
`make SANITIZE=1 test` the same test runs on the ASan build, whose leak
checker fails the daemon's exit (teardown asserts exit 0) on anything
unreachable; its quarantine of freed memory is capped so that RSS measures
live memory there too.
"""
import os
import time

import numpy as np

from loadtools import fashion_body, log_records
from support import Daemon, HTTP_TIMEOUT_S, daemon_devices, finish, free_port

CYCLES = 50
RSS_SLACK = 0.10


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/<pid>/status")


def freed_count(daemon):
    return sum("freed after draining" in r.get("msg", "") for r in log_records(daemon))


def wait_freed(daemon, n, timeout=30.0):
    deadline = time.monotonic() + timeout
    while freed_count(daemon) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert freed_count(daemon) >= n, f"{freed_count(daemon)} of {n} retired versions freed"


def test_load_unload_cycles_do_not_grow_memory(tmp_path, model_repo):
    port = free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--model-repository", str(model_repo),
            "--default-model", "fashion_mnist", "--devices", daemon_devices(),
            "--model-control-mode", "explicit", "--log-format", "json"]
    # ASan's quarantine keeps freed memory resident; a small one (ignored by
    # a build without ASan) lets RSS follow live memory.
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"}
    d = Daemon(args, tmp_path / "inferd.log", port, env=env, cwd=tmp_path)
    try:
        d.wait_ready()
        body = fashion_body(np.zeros((2, 1, 28, 28), dtype=np.float32))
        rss = []
        t0 = time.monotonic()
        for cycle in range(1, CYCLES + 1):
            r = d.post("/v2/repository/models/fashion_mnist/unload", timeout=60)
            assert r.status_code == 200, r.text
            assert d.predict(body).status_code == 404
            r = d.post("/v2/repository/models/fashion_mnist/load", timeout=60)
            assert r.status_code == 200, r.text
            r = d.predict(body)
            assert r.status_code == 200, r.text
            wait_freed(d, cycle)
            rss.append(rss_kib(d.proc.pid))
        took = time.monotonic() - t0
        growth = (rss[-1] - rss[0]) / rss[0]
        print(f"\nRSS after cycle 1: {rss[0] / 1024:.1f} MiB, after cycle {CYCLES}: "
              f"{rss[-1] / 1024:.1f} MiB ({growth * 100:+.1f}%), max "
              f"{max(rss) / 1024:.1f} MiB; {CYCLES} cycles in {took:.1f} s")
        assert growth <= RSS_SLACK, f"RSS grew {growth * 100:.1f}% over {CYCLES} cycles: {rss}"
        assert d.get("/v2/health/ready", timeout=HTTP_TIMEOUT_S).status_code == 200
    finally:
        finish(d)
