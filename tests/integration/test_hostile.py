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
import requests

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


# ---------------------------------------------------------------------------
# Log injection

FORGED_PATH = "/x%0A2026-01-01T00:00:00.000Z%09error%09FORGED"


def raw_get(daemon, target, headers=b""):
    """Send a GET for `target` (bytes, sent as is) and return the status."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  + headers + b"\r\n")
        buf = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return int(buf.split(b" ", 2)[1])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_client_strings_cannot_forge_log_lines(start_daemon, fmt):
    import json
    d = start_daemon(["--log-format", fmt])
    assert raw_get(d, FORGED_PATH.encode()) == 404
    # A model name with a control byte and bytes that are not UTF-8.
    assert raw_get(d, b"/v2/models/a%1b%5b31m%ff%fe/ready") in (400, 404)
    survives(d)
    deadline = time.monotonic() + 5
    while "FORGED" not in d.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    raw = d.log_path.read_bytes()
    for line in raw.split(b"\n"):
        assert not line.startswith(b"2026-01-01T00:00:00.000Z"), f"forged line: {line!r}"
        assert b"\x1b" not in line and b"\t" not in line, f"raw control byte: {line!r}"
        if fmt == "json" and line.startswith(b"{"):
            line.decode("utf-8")  # never a raw invalid byte
            json.loads(line)
    assert b"FORGED" in raw, "the request was not logged at all"


# ---------------------------------------------------------------------------
# Slot leaks

def test_failed_loads_leave_no_slot_behind(start_daemon, tmp_path):
    import json
    import shutil
    from support import FASHION_CONFIG, add_fashion_mnist
    repo = tmp_path / "repo"
    add_fashion_mnist(repo)
    d = start_daemon(["--model-control-mode", "explicit"], repo=repo)
    override = json.dumps({"config": FASHION_CONFIG})
    deadline = time.monotonic() + 60
    for i in range(70):  # more than the table's 64 rows
        assert time.monotonic() < deadline, "70 failed loads took over 60 s"
        r = d.post(f"/v2/repository/models/nosuch{i}/load", data=override,
                   headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 404), r.text
        r = d.post(f"/v2/repository/models/nothere{i}/load")
        assert r.status_code in (400, 404), r.text
    shutil.copytree(repo / "fashion_mnist", repo / "fresh")
    r = d.post("/v2/repository/models/fresh/load")
    assert r.status_code == 200, f"a real model no longer loads: {r.status_code} {r.text}"
    assert d.get("/v2/models/fresh/ready").status_code == 200
    survives(d)


# ---------------------------------------------------------------------------
# Leaks in answers

def test_answers_do_not_show_server_paths(start_daemon, tmp_path):
    from support import add_fashion_mnist
    repo = tmp_path / "secret-dir-name"
    add_fashion_mnist(repo)
    broken = repo / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((repo / "fashion_mnist" / "config.json").read_text())
    (broken / "labels.txt").write_text((repo / "fashion_mnist" / "labels.txt").read_text())
    (broken / "model.pt").write_bytes(b"not a model")
    d = start_daemon(["--model-control-mode", "explicit"], repo=repo, wait=False)
    answers = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if d.get("/v2/models/fashion_mnist/ready", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass  # not listening yet
        time.sleep(0.05)
    while time.monotonic() < deadline:  # the failed load ends in a 503 with its reason
        r = d.post("/v2/models/broken/infer", json={"inputs": []})
        if r.status_code == 503 and "loading" not in r.text:
            break
        time.sleep(0.1)
    answers.append(r)
    answers.append(d.get("/v2/models/broken/config"))
    answers.append(d.post("/v2/repository/index"))
    answers.append(d.post("/v2/repository/models/broken/load"))
    answers.append(d.post("/v2/repository/models/absent/load"))
    for a in answers:
        assert "secret-dir-name" not in a.text and str(tmp_path) not in a.text, \
            f"{a.request.method} {a.request.url} -> {a.status_code} shows a server path: {a.text}"
    assert answers[0].status_code == 503 and "broken" in answers[0].text
    assert "secret-dir-name" in d.log_text(), "the log should keep the detail"
    survives(d)
