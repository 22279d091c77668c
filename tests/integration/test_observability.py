"""Observability: GET /metrics (Prometheus text format, checked by promtool;
counters and histograms that move as the requests predict) and the logs
(--log-format json: one JSON object per line, one access line per request
carrying the X-Request-ID, start-up lines; --log-level)."""
import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from support import (assert_error, daemon_devices, dumps, fashion_mnist_data, rounded_list)

LOG_WAIT_S = 5.0       # the log writer is a background thread: poll this long
METRICS_WAIT_S = 5.0   # request counters are updated once the answer is sent
ACCESS_FIELDS = ("request_id", "method", "path", "status", "bytes_in", "bytes_out", "model",
                 "batch", "queue_ms", "compute_ms", "total_ms")
HISTOGRAMS = ("inferd_request_duration_seconds", "inferd_queue_duration_seconds",
              "inferd_compute_duration_seconds", "inferd_batch_size")


@pytest.fixture(scope="module")
def images():
    x, _ = fashion_mnist_data.load("test")
    return np.ascontiguousarray(x[:32])


# --------------------------------------------------------------------------
# Prometheus text format

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class Metrics:
    """One scrape: samples {(name, frozenset(labels)): value} and TYPE lines."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3].strip()
                continue
            match = _SAMPLE.match(line)
            assert match, f"unparsable metrics line: {line!r}"
            name, labels_text, value = match.groups()
            labels = {}
            pos = 0
            while labels_text and pos < len(labels_text):
                label = _LABEL.match(labels_text, pos)
                assert label, f"unparsable labels in {line!r}"
                labels[label.group(1)] = label.group(2)
                pos = label.end()
            key = (name, frozenset(labels.items()))
            assert key not in self.samples, f"duplicate sample {line!r}"
            self.samples[key] = float(value)

    def get(self, name, **labels):
        """The value of the sample with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        v = self.get(name, **labels)
        assert v is not None, f"no sample {name}{labels} in /metrics"
        return v

    def find(self, name):
        """[(labels dict, value)] of every sample called `name`."""
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]


def scrape(daemon):
    r = daemon.get("/metrics")
    assert r.status_code == 200, r.text[:300]
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    return Metrics(r.text)


def counters(m, model="fashion_mnist"):
    """The numbers the counting test follows, for one model."""
    return {
        "ok": m.value("inferd_requests_total", model=model, version="1", status="200"),
        "bad": m.value("inferd_requests_total", model=model, version="1", status="400"),
        "inferences": m.value("inferd_inferences_total", model=model, version="1"),
        "executions": m.value("inferd_executions_total", model=model, version="1"),
        "batch_count": m.value("inferd_batch_size_count", model=model, version="1"),
        "batch_sum": m.value("inferd_batch_size_sum", model=model, version="1"),
        "compute_count": m.value("inferd_compute_duration_seconds_count", model=model, version="1"),
        "queue_count": m.value("inferd_queue_duration_seconds_count", model=model, version="1"),
        "request_count": m.value("inferd_request_duration_seconds_count", model=model, version="1"),
    }


def scrape_until(daemon, done, timeout=METRICS_WAIT_S):
    """Scrape until done(counters) holds (bounded); return the last counters."""
    deadline = time.monotonic() + timeout
    while True:
        c = counters(scrape(daemon))
        if done(c) or time.monotonic() > deadline:
            return c
        time.sleep(0.05)


def promtool():
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install -y prometheus"
    return path


def test_metrics_pass_promtool(server, images):
    # some traffic first, so that every family has non-zero samples
    assert server.predict({"inputs": rounded_list(images[:2])}).status_code == 200
    assert server.predict({"inputs": [1, 2, 3]}).status_code == 400
    r = server.get("/metrics")
    assert r.status_code == 200
    check = subprocess.run([promtool(), "check", "metrics"], input=r.content,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert check.returncode == 0, (f"promtool check metrics exited {check.returncode}:\n"
                                   f"{check.stdout.decode(errors='replace')}"
                                   f"{check.stderr.decode(errors='replace')}")


def test_counters_move_as_predicted(server, images):
    k, n = 4, 3
    before = counters(scrape(server))
    for i in range(k):
        r = server.predict({"inputs": rounded_list(images[i * n:(i + 1) * n])})
        assert r.status_code == 200, r.text[:300]
    after = scrape_until(server, lambda c: c["ok"] >= before["ok"] + k
                         and c["request_count"] >= before["request_count"] + k)
    delta = {key: after[key] - before[key] for key in before}
    assert delta["ok"] == k, delta
    assert delta["bad"] == 0, delta
    assert delta["inferences"] == k * n, delta
    assert 1 <= delta["executions"] <= k, delta
    assert delta["batch_count"] == delta["executions"], delta
    assert delta["batch_sum"] == k * n, delta          # samples per execution, summed
    assert delta["compute_count"] == delta["executions"], delta
    assert delta["queue_count"] == k, delta            # one queue wait per request
    assert delta["request_count"] == k, delta


def test_counters_with_concurrent_requests(server, images):
    """Concurrent requests may share executions: still k requests, k*n samples."""
    from concurrent.futures import ThreadPoolExecutor

    from support import http_session

    k, n = 8, 2
    bodies = [dumps({"inputs": rounded_list(images[i * n:(i + 1) * n])}) for i in range(k)]

    def send(body):
        with http_session() as session:
            return session.post(server.url("/predict"), data=body, timeout=15,
                                headers={"Content-Type": "application/json"}).status_code

    before = counters(scrape(server))
    with ThreadPoolExecutor(max_workers=k) as pool:
        assert list(pool.map(send, bodies)) == [200] * k
    after = scrape_until(server, lambda c: c["ok"] >= before["ok"] + k
                         and c["request_count"] >= before["request_count"] + k)
    delta = {key: after[key] - before[key] for key in before}
    assert delta["ok"] == k and delta["request_count"] == k, delta
    assert delta["inferences"] == k * n and delta["batch_sum"] == k * n, delta
    assert 1 <= delta["executions"] <= k, delta
    assert delta["batch_count"] == delta["executions"] == delta["compute_count"], delta
    assert delta["queue_count"] == k, delta


def test_v2_requests_are_counted(server, images):
    k, n = 3, 2
    before = counters(scrape(server))
    for i in range(k):
        chunk = np.ascontiguousarray(images[i * n:(i + 1) * n], dtype="<f4")
        header = dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(chunk.shape),
                                    "parameters": {"binary_data_size": chunk.nbytes}}]}).encode()
        r = server.post("/v2/models/fashion_mnist/infer", data=header + chunk.tobytes(),
                        headers={"Content-Type": "application/octet-stream",
                                 "Inference-Header-Content-Length": str(len(header))})
        assert r.status_code == 200, r.text[:300]
    after = scrape_until(server, lambda c: c["ok"] >= before["ok"] + k
                         and c["request_count"] >= before["request_count"] + k)
    delta = {key: after[key] - before[key] for key in before}
    assert delta["ok"] == k and delta["inferences"] == k * n, delta
    assert 1 <= delta["executions"] <= k and delta["batch_count"] == delta["executions"], delta


def test_bad_request_counts_as_400(server, images):
    before = counters(scrape(server))
    assert_error(server.predict({"inputs": [[1.0, 2.0, 3.0]]}), 400)
    r = server.post("/v2/models/fashion_mnist/infer", data=dumps({"inputs": []}),
                    headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    after = scrape_until(server, lambda c: c["bad"] >= before["bad"] + 2)
    delta = {key: after[key] - before[key] for key in before}
    assert delta["bad"] == 2, delta
    assert delta["ok"] == 0 and delta["inferences"] == 0 and delta["executions"] == 0, delta


def test_histograms_present_and_consistent(server, images):
    assert server.predict({"inputs": rounded_list(images[:1])}).status_code == 200
    m = scrape(server)
    for family in HISTOGRAMS:
        assert m.types.get(family) == "histogram", f"# TYPE {family}: {m.types.get(family)}"
        buckets = [(labels["le"], v) for labels, v in m.find(family + "_bucket")
                   if labels.get("model") == "fashion_mnist"]
        assert buckets, f"no {family}_bucket samples for fashion_mnist"
        les = [le for le, _ in buckets]
        assert "+Inf" in les, les
        ordered = sorted(buckets, key=lambda b: float(b[0]))   # float("+Inf") is inf
        values = [v for _, v in ordered]
        assert values == sorted(values), f"{family} buckets not cumulative: {ordered}"
        count = m.value(family + "_count", model="fashion_mnist", version="1")
        assert dict(buckets)["+Inf"] == count, f"{family}: +Inf bucket != count"
        assert count >= 1, family
        assert m.value(family + "_sum", model="fashion_mnist", version="1") >= 0


def test_build_info_and_uptime(server):
    m1 = scrape(server)
    info = m1.find("inferd_build_info")
    assert len(info) == 1, info
    labels, value = info[0]
    assert value == 1 and labels.get("version"), info
    assert m1.types.get("inferd_uptime_seconds") == "gauge"
    up1 = m1.value("inferd_uptime_seconds")
    assert up1 > 0
    time.sleep(0.05)
    assert scrape(server).value("inferd_uptime_seconds") > up1


def test_queue_capacity_gauge(server):
    """The --max-queue limit per model (256 by default), for the queue
    saturation rule (deploy/prometheus/rules.yml)."""
    m = scrape(server)
    assert m.types.get("inferd_queue_capacity_requests") == "gauge"
    assert m.value("inferd_queue_capacity_requests", model="fashion_mnist", version="1") == 256


# --------------------------------------------------------------------------
# JSON logs

def log_records(daemon):
    """Every line of the daemon's output, parsed as JSON (asserted)."""
    records = []
    for i, line in enumerate(daemon.log_text().splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"log line {i + 1} is not JSON: {line!r}") from None
        assert isinstance(record, dict), f"log line {i + 1} is not an object: {line!r}"
        records.append(record)
    return records


def wait_for_log(daemon, done, timeout=LOG_WAIT_S):
    """Poll the log until done(records) holds (bounded); return the records."""
    deadline = time.monotonic() + timeout
    while True:
        records = log_records(daemon)
        if done(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def access_lines(records, request_id):
    return [r for r in records if r.get("msg") == "request" and r.get("request_id") == request_id]


def test_json_access_log(start_daemon, images):
    daemon = start_daemon(["--log-format", "json", "--log-level", "info"])
    sent = {}   # request id -> (method, path, request body, response)

    def call(request_id, method, path, body=None, content_type="application/json"):
        headers = {"Content-Type": content_type} if body is not None else {}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        r = daemon.request(method, path, data=body, headers=headers)
        echoed = r.headers.get("X-Request-ID")
        if request_id is not None:
            assert echoed == request_id, f"X-Request-ID sent {request_id!r}, answered {echoed!r}"
        else:
            assert echoed, "no X-Request-ID in the answer to a request without one"
        sent[echoed] = (method, path, body or b"", r)
        return r

    predict_body = dumps({"inputs": rounded_list(images[:2])}).encode()
    assert call("obs-predict-1", "POST", "/predict", predict_body).status_code == 200
    chunk = np.ascontiguousarray(images[:3], dtype="<f4")
    header = dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 1, 28, 28],
                                "parameters": {"binary_data_size": chunk.nbytes}}]}).encode()
    r = daemon.post("/v2/models/fashion_mnist/infer", data=header + chunk.tobytes(),
                    headers={"Content-Type": "application/octet-stream", "X-Request-ID": "obs.v2:2",
                             "Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200 and r.headers.get("X-Request-ID") == "obs.v2:2"
    sent["obs.v2:2"] = ("POST", "/v2/models/fashion_mnist/infer", header + chunk.tobytes(), r)
    assert call("obs_metrics-3", "GET", "/metrics").status_code == 200
    assert call("obs-404", "GET", "/v2/models/no_such_model").status_code == 404
    assert call("obs-400", "POST", "/predict", b'{"inputs": [1, 2]}').status_code == 400
    assert call("obs-405", "GET", "/predict").status_code == 405
    early = {"obs-415"}   # answered before the body is read: bytes_in is not checked
    r = call("obs-415", "POST", "/predict", b"hello", content_type="text/plain")
    assert r.status_code == 415
    # an id that is not a safe token is not echoed into headers and logs as is
    r = daemon.get("/v2/health/live", headers={"X-Request-ID": 'bad id "quoted"'})
    unsafe_replacement = r.headers.get("X-Request-ID", "")
    assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", unsafe_replacement), unsafe_replacement
    sent[unsafe_replacement] = ("GET", "/v2/health/live", b"", r)
    r = call(None, "GET", "/v2/health/ready")
    generated = r.headers["X-Request-ID"]
    assert r.status_code == 200
    assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", generated), generated
    r = call(None, "POST", "/predict", predict_body)
    assert r.status_code == 200
    assert r.headers["X-Request-ID"] != generated, "two requests got the same generated id"

    records = wait_for_log(daemon, lambda recs: all(access_lines(recs, i) for i in sent))
    for request_id, (method, path, body, response) in sent.items():
        lines = access_lines(records, request_id)
        assert len(lines) == 1, f"{len(lines)} access lines for request {request_id!r}\n" \
                                f"{daemon.log_tail()}"
        line = lines[0]
        missing = [f for f in ACCESS_FIELDS if f not in line]
        assert not missing, f"access line lacks {missing}: {line}"
        assert line["method"] == method and line["path"] == path, line
        assert line["status"] == response.status_code, line
        if request_id not in early:
            assert line["bytes_in"] == len(body), (line, len(body))
        assert line["bytes_out"] == len(response.content), (line, len(response.content))
        for f in ("queue_ms", "compute_ms", "total_ms"):
            assert isinstance(line[f], (int, float)) and line[f] >= 0, line
        assert isinstance(line["batch"], int), line
        assert isinstance(line["model"], str), line
        assert line.get("level") == "info" and isinstance(line.get("ts"), str), line
        if path in ("/predict", "/v2/models/fashion_mnist/infer") and \
                response.status_code in (200, 400):   # requests that reached the model
            assert line["model"] == "fashion_mnist", line
        if response.status_code == 200 and line["model"]:
            samples = 2 if path == "/predict" else 3
            assert line["batch"] >= samples, line
            assert line["compute_ms"] > 0, line
            assert line["total_ms"] >= line["compute_ms"], line


def test_json_startup_lines(start_daemon):
    daemon = start_daemon(["--log-format", "json"])
    records = wait_for_log(daemon, lambda recs: any(r.get("msg") == "instance ready" for r in recs))
    for r in records:
        assert {"ts", "level", "msg"} <= set(r), r
        assert r["level"] in ("debug", "info", "warn", "error"), r
    ready = [r for r in records if r.get("msg") == "instance ready"]
    assert len(ready) == 1, ready   # one model, one instance on one device
    line = ready[0]
    assert line["model"] == "fashion_mnist", line
    if daemon_devices() == "cpu":
        assert line["device"] == "cpu", line
    else:
        assert isinstance(line["device"], str) and line["device"], line
    for f in ("load_ms", "warmup_ms"):
        assert isinstance(line[f], (int, float)) and line[f] >= 0, line
    assert line["load_ms"] > 0, line
    assert line["level"] == "info"
    # the shutdown lines are JSON too
    status = daemon.stop()
    assert status == 0, f"exit status {status}\n{daemon.describe()}"
    records = log_records(daemon)
    assert records[-1]["msg"], records[-1]


def test_log_level_warn_suppresses_info(start_daemon, images):
    # a default model that is not in the repository: a warn line at start-up
    daemon = start_daemon(["--log-format", "json", "--log-level", "warn",
                           "--default-model", "not_here"])
    r = daemon.post("/v2/models/fashion_mnist/infer",
                    data=dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                            "shape": [1, 1, 28, 28],
                                            "data": rounded_list(images[0].ravel(), 4)}]}),
                    headers={"Content-Type": "application/json", "X-Request-ID": "quiet-1"})
    assert r.status_code == 200, r.text[:300]
    assert daemon.get("/metrics").status_code == 200
    # stopping flushes the log writer, so that absence can be checked
    status = daemon.stop()
    assert status == 0, f"exit status {status}\n{daemon.describe()}"
    records = log_records(daemon)
    info = [r for r in records if r.get("level") in ("info", "debug")]
    assert not info, f"--log-level warn still logged: {info[:5]}"
    assert not [r for r in records if r.get("msg") in ("request", "instance ready")]
    warns = [r for r in records if r.get("level") == "warn"]
    assert any("not_here" in r.get("msg", "") for r in warns), \
        f"expected the warn line about the missing default model; got {records}"
