"""Hostile clients: requests meant to crash, starve or bloat inferd.

Every case ends with survives(daemon): the process is alive, a health check
from another loopback address (127.0.0.2, so per-address limits do not apply
to it) answers within 2 s, and a normal request is answered correctly.

Sections, one per class of attack (see the README's "Hostile clients"):
crashes, connection floods and slow clients, memory amplification, CPU
amplification, log injection, slot leaks, leaks in answers.
"""
import base64
import gzip
import json
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from loadtools import metric, scrape
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


# ---------------------------------------------------------------------------
# Memory amplification
#
# Each case starts its own daemon (so that memory a previous case left in
# malloc's free lists cannot hide a new peak), resets its peak RSS through
# /proc/<pid>/clear_refs, sends one small hostile body, and bounds the rise
# of VmHWM over the VmRSS it started from.

MEMORY_GROWTH_BOUND_MB = 64
MANY_CLASSES = 100_000


def _status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def peak_growth_mb(daemon, send):
    """Run send() against the daemon; the MB its peak RSS rose by."""
    pid = daemon.proc.pid
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status_kb(pid, "VmRSS")
    send()
    growth = (_status_kb(pid, "VmHWM") - before) / 1024
    print(f"peak RSS growth: {growth:.1f} MB")  # shown by pytest -s, or on failure
    return growth


def png_bytes(width, height):
    """An 8-bit gray PNG of zeros, written by hand (zlib packs the rows:
    40,000,000 x 1 is about 39 KB)."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload +
                struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    raw = (b"\0" + b"\0" * width) * height  # filter byte 0, then the row
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def hostile_repo(tmp_path_factory):
    """fashion_mnist with its image input (gray, resized to 28x28); anysize:
    RGB images resized to a shorter side of 64, no crop (the output size
    follows the image), mean per channel; many_classes: a linear layer with
    100,000 outputs."""
    import torch

    repo = tmp_path_factory.mktemp("hostile-repo")
    folder = add_fashion_mnist(repo)
    config = json.loads((folder / "config.json").read_text())
    config["inputs"][0]["image"] = {"color": "gray", "resize": [28, 28], "scale": 1 / 255}
    (folder / "config.json").write_text(json.dumps(config))

    class MeanPool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=[2, 3])

    _save_scripted(MeanPool(), repo, "anysize", {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, -1, -1],
                    "image": {"color": "rgb", "resize": 64}}],
        "outputs": [{"name": "mean", "datatype": "FP32", "shape": [-1, 3]}],
        "max_batch_size": 4, "warmup": False})
    torch.manual_seed(0)
    _save_scripted(torch.nn.Linear(4, MANY_CLASSES), repo, "many_classes", {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, MANY_CLASSES]}],
        "max_batch_size": 8})
    return repo


def test_gzip_json_of_empty_objects_is_refused_before_cjson(start_daemon, hostile_repo):
    """12 MiB of {},{},... (about 12 KB gzipped) was 4 million cJSON nodes,
    hundreds of MB; now the value budget refuses it before cJSON runs."""
    daemon = start_daemon(repo=hostile_repo)
    body = b'{"inputs":[' + b"{}," * (4 * 1024 * 1024) + b"{}]}"
    packed = gzip.compress(body, mtime=0)
    assert len(packed) < 64 * 1024
    responses = []
    growth = peak_growth_mb(daemon, lambda: responses.append(daemon.post(
        "/predict", data=packed,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})))
    message = assert_error(responses[0], 400)
    assert "values outside numeric arrays" in message
    assert growth < MEMORY_GROWTH_BOUND_MB, f"peak RSS rose {growth:.0f} MB"
    survives(daemon)


def test_many_tiny_numeric_arrays_are_refused(start_daemon, hostile_repo):
    """[1] between objects: each was a numeric array with 8 KB reserved."""
    daemon = start_daemon(repo=hostile_repo)
    body = b'{"inputs":[' + b"{},[1]," * 80_000 + b"{}]}"
    responses = []
    growth = peak_growth_mb(daemon, lambda: responses.append(daemon.post(
        "/predict", data=gzip.compress(body, mtime=0),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})))
    assert "a limit of inferd's" in assert_error(responses[0], 400)
    assert growth < MEMORY_GROWTH_BOUND_MB, f"peak RSS rose {growth:.0f} MB"
    survives(daemon)


@pytest.mark.parametrize("size", [(40_000_000, 1), (1, 4_000_000)], ids=["wide", "tall"])
def test_thin_png_to_a_fixed_resize_is_refused_before_decoding(start_daemon, hostile_repo, size):
    """A 40,000,000 x 1 PNG (39 KB, within --max-image-pixels) resized to
    28x28 needed 320 MB of weight tables; a 1 x 4,000,000 one a row-pointer
    table and 112 MB of intermediate rows."""
    daemon = start_daemon(repo=hostile_repo)
    png = png_bytes(*size)
    assert len(png) < 64 * 1024
    responses = []
    growth = peak_growth_mb(daemon, lambda: responses.append(daemon.post(
        "/predict", data=png, headers={"Content-Type": "image/png"})))
    assert "working memory" in assert_error(responses[0], 400)
    assert growth < MEMORY_GROWTH_BOUND_MB, f"peak RSS rose {growth:.0f} MB"
    survives(daemon)


def test_thin_png_to_an_aspect_keeping_resize_is_refused(start_daemon, hostile_repo):
    """An 89-byte 1 x 4000 PNG to a model resizing the shorter side to 64
    with no crop would be 64 x 256000 pixels: a 197 MB FP32 input."""
    daemon = start_daemon(repo=hostile_repo)
    png = png_bytes(1, 4000)
    assert len(png) < 200
    body = dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                              "data": [base64.b64encode(png).decode()]}]})
    responses = []
    growth = peak_growth_mb(daemon, lambda: responses.append(daemon.post(
        "/v2/models/anysize/infer", data=body, headers={"Content-Type": "application/json"})))
    message = assert_error(responses[0], 400)
    assert "64x256000" in message and "over the limit" in message
    assert growth < MEMORY_GROWTH_BOUND_MB, f"peak RSS rose {growth:.0f} MB"
    # an ordinary image still goes through
    ok = dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                            "data": [base64.b64encode(png_bytes(40, 30)).decode()]}]})
    r = daemon.post("/v2/models/anysize/infer", data=ok,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["outputs"][0]["shape"] == [1, 3]
    survives(daemon)


# ---------------------------------------------------------------------------
# CPU amplification

def test_huge_classification_k_does_not_hold_the_model(start_daemon, hostile_repo):
    """classification k = 1,000,000 on 100,000 classes (clamped to the class
    count, as Triton does) was an n*k insertion sort, about 3 s on the
    thread that answers every request of the model. Normal requests sent
    meanwhile must each be answered within NORMAL_BOUND_S."""
    NORMAL_BOUND_S = 1.0
    daemon = start_daemon(repo=hostile_repo)
    url = "/v2/models/many_classes/infer"
    headers = {"Content-Type": "application/json"}
    x = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.5, -1.0, 2.0, 0.25]}
    hostile = dumps({"inputs": [x], "outputs": [
        {"name": "scores", "parameters": {"classification": 1_000_000}}]})
    normal = dumps({"inputs": [x], "outputs": [
        {"name": "scores", "parameters": {"classification": 1}}]})
    hostile_answers, errors = [], []
    stop_at = time.monotonic() + 4.0

    def attack():
        session = requests.Session()
        try:
            for _ in range(6):  # at most 6 requests, and only for 4 s
                if time.monotonic() > stop_at:
                    break
                r = session.post(daemon.url(url), data=hostile, headers=headers, timeout=30)
                hostile_answers.append(r)
        except Exception as e:  # reported below, not swallowed
            errors.append(e)

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    time.sleep(0.2)
    latencies = []
    while attacker.is_alive() and len(latencies) < 100 and time.monotonic() < stop_at + 30:
        t0 = time.monotonic()
        r = daemon.post(url, data=normal, headers=headers, timeout=30)
        latencies.append(time.monotonic() - t0)
        assert r.status_code == 200, r.text[:300]
        time.sleep(0.05)
    attacker.join(timeout=60)
    print(f"{len(latencies)} normal requests, slowest {max(latencies or [0]):.3f} s; "
          f"{len(hostile_answers)} hostile ones")
    assert not attacker.is_alive(), "the hostile requests did not finish within 60 s"
    assert not errors, errors
    assert hostile_answers and latencies
    first = hostile_answers[0]
    assert first.status_code == 200, first.text[:300]
    out = first.json()["outputs"][0]
    assert out["shape"] == [1, MANY_CLASSES] and len(out["data"]) == MANY_CLASSES
    scores = [float(s.split(":")[0]) for s in out["data"][:1000]]
    assert scores == sorted(scores, reverse=True)
    assert max(latencies) < NORMAL_BOUND_S, \
        f"a normal request waited {max(latencies):.2f} s behind top-k (of {len(latencies)})"
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

# A refused connection is answered and closed as soon as it is accepted; the
# bound leaves room for a loaded machine and the sanitizer build.
REFUSAL_WAIT_S = 10

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


def closed_among(socks, expected, timeout, grace=0.3):
    """Wait up to `timeout` s until the server has closed `expected` of
    socks, then `grace` s more so that one closed too many shows; returns
    {index: what the server sent before closing}. Which sockets it refuses
    is not fixed: the HTTP threads accept from one listening socket, so the
    last to connect need not be the last admitted."""
    import select
    got, bufs = {}, {i: b"" for i in range(len(socks))}
    end = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if len(got) >= expected:
            end = min(end, now + grace)
            grace = float("inf")  # fixed once
        if now >= end:
            return got
        live = [i for i in range(len(socks)) if i not in got]
        if not live:
            return got
        ready, _, _ = select.select([socks[i] for i in live], [], [], min(0.05, end - now))
        for s in ready:
            i = socks.index(s)
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if chunk:
                bufs[i] += chunk
            else:
                got[i] = bufs[i]


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
    socks = [connect(d) for _ in range(8 + 12)]
    try:
        closed = closed_among(socks, 12, REFUSAL_WAIT_S)
        assert len(closed) == 12, f"{len(closed)} of 20 connections from one address closed, not 12"
        assert sum(a.startswith(b"HTTP/1.1 503") for a in closed.values()) >= 1, closed
        assert health_from(d, "127.0.0.2") == 200  # other addresses are still answered
        assert predict_from(d, "127.0.0.2") == 200
    finally:
        close_all(socks)
    # The address gets its connections back once the server has read the
    # closes, which its polling thread does on its next pass: within the
    # 2 s the health check is given, not necessarily at once.
    deadline = time.monotonic() + HEALTH_DEADLINE_S
    while health_from(d, "127.0.0.1") != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    survives(d)


def test_total_limit_answers_503_and_frees_up(start_daemon):
    d = start_daemon(SMALL_LIMITS[:4] + ["--header-timeout-s", "30"])
    held = [connect(d, f"127.0.0.{3 + i // 8}") for i in range(24)]
    held.append(connect(d, "127.0.0.9"))
    try:
        closed = closed_among(held, 1, REFUSAL_WAIT_S)
        assert len(closed) == 1, f"{len(closed)} of 25 connections closed under a limit of 24"
        answer = next(iter(closed.values()))
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503"), answer
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
    m = scrape(d)  # the refusal is counted (and any of the health checks above, made
    # before the server had read the closes); the held connections have left the count
    assert metric(m, "inferd_http_connections_refused_total") >= 1
    assert 1 <= metric(m, "inferd_http_connections_open") <= 3  # this scrape's, and kept-alive


def trickle_until_closed(s, byte, limit_s):
    """Send `byte` every 0.2 s for up to limit_s; return the seconds until
    the server closed the connection, or None if it never did."""
    start = time.monotonic()
    try:
        while time.monotonic() - start < limit_s:
            time.sleep(0.2)
            try:
                s.sendall(byte)
            except OSError:
                return time.monotonic() - start
            if read_until_closed(s, 0.01) is not None:
                return time.monotonic() - start
    finally:
        s.close()
    return None


def test_slow_header_is_cut_at_its_deadline(start_daemon):
    d = start_daemon(SMALL_LIMITS)
    s = connect(d, first=b"GET /v2/health/live HTTP/1.1\r\n")
    closed = trickle_until_closed(s, b"X", 5)  # a byte every 0.2 s resets no clock
    assert closed is not None and closed < 3, f"a trickled header kept its connection {closed} s"
    survives(d)


def test_slow_body_is_cut_at_its_deadline(start_daemon):
    d = start_daemon(SMALL_LIMITS)
    s = connect(d, first=b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 1000\r\n\r\n{")
    closed = trickle_until_closed(s, b" ", 6)
    assert closed is not None and closed < 4, f"a trickled body kept its connection {closed} s"
    survives(d)
    assert metric(scrape(d), "inferd_http_connections_cut_total") == 1


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
