"""Helpers for the batching, overload and drain tests (test_batching.py,
test_overload.py, test_drain.py, and test_lifecycle.py's SIGTERM test): model
repositories with the slow model (the tests' one slow-model builder),
Prometheus and JSON-log parsing, and bounded concurrent clients.

Everything talks to the daemon over loopback only; every wait is bounded.
support.py and conftest.py belong to the other integration tests; this file
only uses them.
"""
import http.client
import json
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np

from support import (FASHION_CONFIG, HTTP_TIMEOUT_S, add_fashion_mnist, dumps, float32_list,
                     http_session)

# --------------------------------------------------------------------------
# Model repositories

SLOW_TARGET_MS = 150.0   # one forward of "slow" with one thread, calibrated per session
SLOWER_FACTOR = 2        # "slower" runs this many times the iterations of "slow"
# For tests whose premise is that queued work outlasts a short bound (a 1 s
# drain, a 100 ms deadline): the session's calibration (one forward timed at
# start, maybe during a load spike) may overstate the forward several times.
SLOW_MARGIN_FACTOR = 5
SLOW_MAX_BATCH = 4

_calibration = {}


def slow_iterations():
    """Matmul iterations that make the slow model's forward take about
    SLOW_TARGET_MS on this CPU (one thread); calibrated once per session."""
    if "iterations" not in _calibration:
        import make_slow_model  # models/ is on sys.path (support.py puts it there)
        iterations, ms = make_slow_model.calibrate(SLOW_TARGET_MS)
        _calibration.update(iterations=iterations, ms=ms)
    return _calibration["iterations"]


def add_slow(repo, name="slow", factor=1, **config):
    """repo/<name>: the slow model (x FP32 [-1,4] -> y = 2x), max_batch_size 4,
    max_queue_delay_us 1000, `factor` times the calibrated iterations,
    batch sizes not measured at warm-up (its forward takes about the same
    time at every batch size, by design, and measuring it would cost seconds
    of start-up). `config` overrides config.json keys."""
    import make_slow_model
    extra = {"measure_batch_sizes": False}
    extra.update({k: v for k, v in config.items()
                  if k not in ("max_batch_size", "max_queue_delay_us")})
    folder, _, _ = make_slow_model.make_slow_model(
        repo, name, iterations=slow_iterations() * factor,
        max_batch_size=config.get("max_batch_size", SLOW_MAX_BATCH),
        max_queue_delay_us=config.get("max_queue_delay_us", 1000),
        extra_config=extra)
    return folder


def add_fashion(repo, drop=(), **overrides):
    """repo/fashion_mnist with the tests' contract config, minus the keys in
    `drop` (so that the server-wide flags apply) and with `overrides`."""
    folder = add_fashion_mnist(repo)
    config = {k: v for k, v in FASHION_CONFIG.items() if k not in drop}
    config.update(overrides)
    (Path(folder) / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


# --------------------------------------------------------------------------
# Request bodies and expected answers

def slow_input(tag, rows):
    """A [rows,4] float32 input unique to `tag` (an int < 10000): exact binary
    fractions, so 2x is exact and every row of every request differs."""
    base = np.float32(tag * 100)
    return (base + np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) * np.float32(0.25)
            ).astype(np.float32)


def slow_body(x):
    return dumps({"inputs": np.asarray(x, dtype=np.float32).tolist()}).encode()


def fashion_body(images):
    return dumps({"inputs": float32_list(images)}).encode()


# --------------------------------------------------------------------------
# /metrics and logs

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels.items())): float}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable metrics line: {line!r}"
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def scrape(daemon):
    r = daemon.get("/metrics")
    assert r.status_code == 200, f"/metrics -> {r.status_code} {r.text[:200]}"
    return parse_metrics(r.text)


def metric(samples, name, **labels):
    """The value of one sample: the one with exactly these labels, else the
    only one whose labels include them (a per-model series also carries the
    served version); fails when there is none or more than one."""
    key = (name, frozenset(labels.items()))
    if key in samples:
        return samples[key]
    wanted = set(labels.items())
    found = [v for (n, l), v in samples.items() if n == name and wanted <= l]
    assert len(found) == 1, f"{len(found)} samples {name}{labels} in /metrics; have " \
        f"{sorted(n for n, l in samples if n.startswith(name))[:10]}"
    return found[0]


def model_counters(daemon, model):
    """The per-model numbers the batching tests compare before and after."""
    s = scrape(daemon)
    return {
        "executions": metric(s, "inferd_executions_total", model=model),
        "inferences": metric(s, "inferd_inferences_total", model=model),
        "batch_sum": metric(s, "inferd_batch_size_sum", model=model),
        "batch_count": metric(s, "inferd_batch_size_count", model=model),
        "pending": metric(s, "inferd_queue_pending_requests", model=model),
        "ok": metric(s, "inferd_requests_total", model=model, status="200"),
        "s503": metric(s, "inferd_requests_total", model=model, status="503"),
        "s504": metric(s, "inferd_requests_total", model=model, status="504"),
    }


def log_records(daemon, msg=None):
    """The daemon's JSON log lines (--log-format json) as dicts, optionally
    only those with this msg."""
    records = []
    for line in daemon.log_text().splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if msg is None or rec.get("msg") == msg:
            records.append(rec)
    return records


def wait_log_records(daemon, msg, done, timeout=5.0):
    """The log lines with this msg once done(lines) holds, or when the time
    runs out (the logger writes asynchronously, a few ms behind)."""
    deadline = time.monotonic() + timeout
    while True:
        records = log_records(daemon, msg)
        if done(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def request_lines(daemon, ids, timeout=5.0):
    """{request_id: access-log record} for the given X-Request-IDs, waiting
    (bounded) until all of them are logged."""
    ids = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        found = {r["request_id"]: r for r in log_records(daemon, "request")
                 if r.get("request_id") in ids}
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# --------------------------------------------------------------------------
# Clients

class Result:
    """What one client got: status, headers (lower-case), json body (or
    None), error (an exception when there was no HTTP answer), and its
    monotonic send/answer times."""

    def __init__(self, tag):
        self.tag = tag
        self.status = None
        self.headers = {}
        self.text = ""
        self.json = None
        self.error = None
        self.t_send = None
        self.t_done = None

    @property
    def latency(self):
        return self.t_done - self.t_send

    def __repr__(self):
        what = f"error {self.error!r}" if self.error is not None else \
            f"{self.status} {self.text[:160]!r}"
        return f"<request {self.tag}: {what}>"


class _ResponseView:
    """A Result seen through the parts of requests.Response that
    support.assert_error reads."""

    def __init__(self, result):
        self.status_code = result.status
        self.headers = {k.title(): v for k, v in result.headers.items()}
        self.text = result.text
        self.url = result.tag
        self.request = type("Request", (), {"method": "POST"})()

    def json(self):
        return json.loads(self.text)


def as_response(result):
    """For support.assert_error(as_response(result), status)."""
    assert result.error is None, f"{result.tag}: no HTTP answer: {result.error!r}"
    return _ResponseView(result)


class Client:
    """One POST on its own loopback connection (http.client), in steps, so a
    test can open the connection first and send later: connect(), send(),
    receive(). Any socket error is recorded in result.error, not raised."""

    def __init__(self, port, path, body, tag, request_id=None, timeout=HTTP_TIMEOUT_S):
        self.port = port
        self.path = path
        self.body = body
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if request_id:
            self.headers["X-Request-ID"] = request_id
        self.result = Result(tag)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.sent = threading.Event()

    def connect(self):
        try:
            self.conn.connect()
        except OSError as e:
            self.result.error = e

    def send(self):
        if self.result.error is not None:
            self.sent.set()
            return
        self.result.t_send = time.monotonic()
        try:
            self.conn.request("POST", self.path, body=self.body, headers=self.headers)
        except (OSError, http.client.HTTPException) as e:
            self.result.error = e
        finally:
            self.sent.set()

    def receive(self):
        res = self.result
        if res.error is None:
            try:
                resp = self.conn.getresponse()
                res.text = resp.read().decode("utf-8", "replace")
                res.status = resp.status
                res.headers = {k.lower(): v for k, v in resp.getheaders()}
                try:
                    res.json = json.loads(res.text)
                except ValueError:
                    res.json = None
            except (OSError, http.client.HTTPException) as e:
                res.error = e
        res.t_done = time.monotonic()
        self.conn.close()
        return res

    def run(self):
        self.connect()
        self.send()
        return self.receive()


def run_threads(targets, timeout, start_together=True):
    """Run each callable on its own thread (released together by a barrier
    unless start_together is False); wait at most `timeout` seconds for all.
    Returns their return values; fails if any raised or is still running."""
    n = len(targets)
    barrier = threading.Barrier(n) if start_together and n > 1 else None
    values = [None] * n
    errors = [None] * n

    def body(i):
        try:
            if barrier:
                barrier.wait(timeout=timeout)
            values[i] = targets[i]()
        except BaseException as e:  # reported below
            errors[i] = e

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = sum(t.is_alive() for t in threads)
    assert alive == 0, f"{alive} of {n} client threads still running after {timeout} s"
    failed = [(i, e) for i, e in enumerate(errors) if e is not None]
    assert not failed, f"client threads raised: {failed[:5]}"
    return values


def join_clients(clients, threads, timeout):
    """Wait (bounded) for the threads running these clients; fail naming
    any request still unanswered. Returns the clients' results."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [c.result.tag for c, t in zip(clients, threads) if t.is_alive()]
    assert not hung, f"requests {hung} got no answer within {timeout} s"
    return [c.result for c in clients]


def post_json(daemon, path, body, request_id=None, timeout=HTTP_TIMEOUT_S):
    """POST on a fresh session (thread-safe to call from many threads);
    returns (response, seconds)."""
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-ID"] = request_id
    with http_session() as s:
        t0 = time.monotonic()
        r = s.post(daemon.url(path), data=body, headers=headers, timeout=timeout)
        return r, time.monotonic() - t0


def raw_get(sock_file, sock, path, timeout=5.0):
    """GET `path` on an already open keep-alive socket; returns (status,
    headers, body). Raises OSError/ValueError when the connection is gone."""
    sock.settimeout(timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status_line = sock_file.readline()
    if not status_line:
        raise ConnectionResetError("connection closed before a response")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", status_line)
    if not m:
        raise ValueError(f"bad status line {status_line!r}")
    headers = {}
    while True:
        line = sock_file.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = sock_file.read(int(headers.get("content-length", "0")))
    return int(m.group(1)), headers, body


class KeepAlive:
    """One loopback connection kept open across requests (what a load
    balancer's health checker holds)."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def get(self, path, timeout=5.0):
        return raw_get(self.file, self.sock, path, timeout)

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()


def new_connection_ready_status(port, timeout=5.0):
    """GET /v2/health/ready on a NEW connection: the status, 'refused' when
    the connection is refused, or 'reset' when it is closed with no answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            f = s.makefile("rb")
            try:
                status, _, _ = raw_get(f, s, "/v2/health/ready", timeout)
                return status
            finally:
                f.close()
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
