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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from support import (_save_scripted, add_fashion_mnist, assert_error, assert_still_serves, dumps,
                     sample_image)


def torch_module():
    """torch.nn.Module, imported when a test module defines a model."""
    import torch
    return torch.nn.Module

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

def v2_binary(daemon, model, inputs, timeout=10):
    """POST a v2 binary request: inputs are (name, datatype, shape, raw bytes)."""
    header = {"inputs": [{"name": n, "datatype": dt, "shape": shape,
                          "parameters": {"binary_data_size": len(raw)}}
                         for n, dt, shape, raw in inputs]}
    head = dumps(header).encode()
    body = head + b"".join(raw for *_, raw in inputs)
    return daemon.post(f"/v2/models/{model}/infer", data=body, timeout=timeout,
                       headers={"Content-Type": "application/octet-stream",
                                "Inference-Header-Content-Length": str(len(head))})


@pytest.mark.parametrize("server", [["--max-queue-delay-us", "200000"]], indirect=True)
def test_empty_batches_in_one_batch(server):
    """16 requests of 0 samples at once (several would land in one batch and
    divide by the batch's 0 samples): each gets 400, the daemon lives."""
    def send(_):
        return v2_binary(server, "fashion_mnist", [("input", "FP32", [0, 1, 28, 28], b"")])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(16)))
    for r in answers:
        message = assert_error(r, 400)
        assert "no elements" in message, message
    survives(server)


@pytest.mark.parametrize("server", [["--max-queue-delay-us", "200000"]], indirect=True)
def test_empty_input_with_real_ones(server):
    """An empty request among real ones: the real ones are answered."""
    x = sample_image()[None].astype(np.float32)
    def send(i):
        if i % 2:
            return v2_binary(server, "fashion_mnist", [("input", "FP32", [0, 1, 28, 28], b"")])
        return v2_binary(server, "fashion_mnist", [("input", "FP32", [1, 1, 28, 28], x.tobytes())])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    for i, r in enumerate(answers):
        assert r.status_code == (400 if i % 2 else 200), r.text[:200]
    survives(server)


class MeanPool(torch_module()):
    def forward(self, x):
        return x.mean(dim=[2, 3])


@pytest.fixture(scope="module")
def variable_repo(tmp_path_factory, model_repo):
    """fashion_mnist plus "pool": FP32 [-1,1,-1,-1] -> [-1,1] (two variable dims)."""
    repo = tmp_path_factory.mktemp("hostile_repo")
    add_fashion_mnist(repo)
    _save_scripted(MeanPool(), repo, "pool", {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, -1, -1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
        "max_batch_size": 8, "max_queue_delay_us": 1000})
    return repo


@pytest.mark.parametrize("dims", [[1, 1, 2147483648, 2147483648],   # * 4 bytes wraps to 0
                                  [1, 1, 4294967296, 4294967296],   # numel wraps to 0
                                  [1, 1, 1 << 39, 1 << 39],         # numel overflows int64
                                  [2, 1, 3037000500, 3037000500]])  # numel just over int64
def test_size_arithmetic_does_not_wrap(start_daemon, variable_repo, dims):
    """A shape whose byte size wraps around 2^64 is refused (it used to pass
    every check and let libtorch read out of bounds)."""
    daemon = start_daemon(repo=variable_repo)
    r = v2_binary(daemon, "pool", [("x", "FP32", dims, b"")])
    message = assert_error(r, 400)
    assert "too large" in message or "does not match" in message, message
    r = v2_binary(daemon, "pool", [("x", "FP32", [1, 1, 2, 3], np.arange(6, dtype="<f4").tobytes())])
    assert r.status_code == 200, r.text[:300]
    survives(daemon)


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


# ---------------------------------------------------------------------------
# Connection floods and slow clients
#
# Small limits keep these quick: 24 connections in all, 8 per address, 1 s
# for a header, 2 s for a body. A connection the guard refuses gets a 503
# and is closed; one past its header or body deadline gets a 408 and is
# closed (either may reach a client as a reset instead when it was sending).

SMALL_LIMITS = ["--max-connections", "24", "--max-connections-per-address", "8",
                "--header-timeout-s", "1", "--body-timeout-s", "2"]
HALF_HEADER = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: "


def connect(daemon, source="127.0.0.1", first=HALF_HEADER):
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=2,
                                 source_address=(source, 0))
    try:
        s.sendall(first)
    except OSError:
        pass  # refused already: read_until_closed says how
    return s


def read_until_closed(s, timeout):
    """What the server sent before it closed s, or None when it is still
    open after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return buf
        if not chunk:
            return buf
        buf += chunk


def close_all(socks):
    for s in socks:
        s.close()


def predict_from(daemon, source):
    """A normal /predict from `source`; returns the status."""
    import http.client
    import json
    from support import rounded_list, sample_image
    c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10,
                                   source_address=(source, 0))
    try:
        c.request("POST", "/predict", json.dumps({"inputs": rounded_list(sample_image()[None])}),
                  {"Content-Type": "application/json"})
        return c.getresponse().status
    finally:
        c.close()


def test_one_address_cannot_take_every_connection(start_daemon):
    d = start_daemon(SMALL_LIMITS[:4] + ["--header-timeout-s", "30"])
    held = [connect(d) for _ in range(8)]
    try:
        extra = [connect(d) for _ in range(12)]
        answers = [read_until_closed(s, 2) for s in extra]
        close_all(extra)
        assert all(a is not None for a in answers), "a connection past the per-address limit stayed"
        assert sum(a.startswith(b"HTTP/1.1 503") for a in answers) >= 1, answers
        assert all(read_until_closed(s, 0.05) is None for s in held), "held ones were dropped"
        assert health_from(d, "127.0.0.2") == 200  # other addresses are still answered
        assert predict_from(d, "127.0.0.2") == 200
    finally:
        close_all(held)
    survives(d)


def test_total_limit_answers_503_and_frees_up(start_daemon):
    d = start_daemon(SMALL_LIMITS[:4] + ["--header-timeout-s", "30"])
    held = [connect(d, f"127.0.0.{3 + i // 8}") for i in range(24)]
    try:
        s = connect(d, "127.0.0.9")
        answer = read_until_closed(s, 2)
        s.close()
        assert answer is not None and (answer == b"" or answer.startswith(b"HTTP/1.1 503")), answer
    finally:
        close_all(held)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the closed ones leave the count
        try:
            if health_from(d, "127.0.0.9") == 200:
                break
        except (OSError, AssertionError):
            time.sleep(0.05)
    survives(d)


def test_slow_header_is_cut_at_its_deadline(start_daemon):
    d = start_daemon(SMALL_LIMITS)
    s = connect(d, first=b"GET /v2/health/live HTTP/1.1\r\n")
    start = time.monotonic()
    closed = None
    try:
        while time.monotonic() - start < 5:  # a byte every 0.2 s resets no clock
            time.sleep(0.2)
            try:
                s.sendall(b"X")
            except OSError:
                closed = time.monotonic() - start
                break
            if read_until_closed(s, 0.01) is not None:
                closed = time.monotonic() - start
                break
    finally:
        s.close()
    assert closed is not None and closed < 3, f"a trickled header kept its connection {closed} s"
    survives(d)


def test_slow_body_is_cut_at_its_deadline(start_daemon):
    d = start_daemon(SMALL_LIMITS)
    s = connect(d, first=b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 1000\r\n\r\n{")
    start = time.monotonic()
    closed = None
    try:
        while time.monotonic() - start < 6:
            time.sleep(0.2)
            try:
                s.sendall(b" ")
            except OSError:
                closed = time.monotonic() - start
                break
            if read_until_closed(s, 0.01) is not None:
                closed = time.monotonic() - start
                break
    finally:
        s.close()
    assert closed is not None and closed < 4, f"a trickled body kept its connection {closed} s"
    survives(d)


def test_idle_keepalive_connections_give_way(start_daemon):
    d = start_daemon(SMALL_LIMITS)
    idle = []
    try:
        for _ in range(8):  # the address's whole allowance, idle after one request each
            s = connect(d, first=b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(2)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            idle.append(s)
        for _ in range(3):  # the same address is still served
            assert health_from(d, "127.0.0.1") == 200
    finally:
        close_all(idle)
    survives(d)


def test_queued_requests_are_not_cut(start_daemon, tmp_path):
    import json
    from support import add_fashion_mnist, rounded_list, sample_image
    repo = tmp_path / "repo"
    folder = add_fashion_mnist(repo)
    config = json.loads((folder / "config.json").read_text())
    config["max_queue_delay_us"] = 2500000  # each request waits 2.5 s in the queue
    (folder / "config.json").write_text(json.dumps(config))
    d = start_daemon(SMALL_LIMITS[:4] + ["--header-timeout-s", "1", "--body-timeout-s", "1",
                                         "--batch-wait", "always"], repo=repo)
    start = time.monotonic()
    r = d.predict({"inputs": rounded_list(sample_image()[None])})
    assert r.status_code == 200, r.text
    assert time.monotonic() - start > 2, "the request did not wait in the queue"
    survives(d)


def test_flood_with_default_limits(start_daemon):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1400:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    d = start_daemon()
    socks = []
    try:
        start = time.monotonic()
        for _ in range(1100):  # past libmicrohttpd's default limit of about 1,020
            assert time.monotonic() - start < 30, "1,100 connections took over 30 s"
            try:
                socks.append(connect(d))
            except OSError:
                pass  # the backlog is full: that is the flood's problem
        assert health_from(d, "127.0.0.2") == 200
        assert predict_from(d, "127.0.0.2") == 200
    finally:
        close_all(socks)
    survives(d)
