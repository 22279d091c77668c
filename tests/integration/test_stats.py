"""Statistics (Triton's statistics extension) and the effective model
configuration: GET /v2/models[/<name>[/versions/<n>]]/stats and
GET /v2/models/<name>[/versions/<n>]/config.

The counts are predicted: a fresh daemon, requests sent one at a time (so
each runs in its own execution, of a known batch size), failures of every
kind (a bad request, the model throwing), and requests that never reach a
model (unknown version) that must not count."""
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from support import (FASHION_CONFIG, FASHION_DIR, FASHION_MAX_BATCH, FAILING_TRIGGER,
                     READY_TIMEOUT_S, add_failing_model,
                     add_fashion_mnist, assert_error, dumps, fashion_mnist_data, http_session,
                     rounded_list)

DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
METRICS_WAIT_S = 5.0  # /metrics counts a request once its answer is sent


@pytest.fixture(scope="module")
def stats_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("stats-repo")
    add_fashion_mnist(repo)
    add_failing_model(repo)
    return repo


@pytest.fixture(scope="module")
def images():
    x, _ = fashion_mnist_data.load("test")
    return np.ascontiguousarray(x[:64])


def stats_of(daemon, path):
    r = daemon.get(path)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    body = r.json()
    assert list(body) == ["model_stats"], body
    return body["model_stats"]


def model_stats(daemon, name, version=None):
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/stats"
    stats = stats_of(daemon, path)
    assert len(stats) == 1 and stats[0]["name"] == name, stats
    return stats[0]


def check_shape(stat):
    """Every field of a $model_stat, with its type."""
    assert stat["version"] == "1"
    for key in ("last_inference", "inference_count", "execution_count"):
        assert isinstance(stat[key], int) and stat[key] >= 0, (key, stat)
    for key in DURATIONS + ("cache_hit", "cache_miss"):
        d = stat["inference_stats"][key]
        assert set(d) == {"count", "ns"}, (key, d)
        assert isinstance(d["count"], int) and isinstance(d["ns"], int), (key, d)
    for b in stat["batch_stats"]:
        assert set(b) == {"batch_size", "compute_input", "compute_infer", "compute_output"}, b
    sizes = [b["batch_size"] for b in stat["batch_stats"]]
    assert sizes == sorted(set(sizes)), sizes  # ascending, once each


def counts(stat):
    return {key: stat["inference_stats"][key]["count"] for key in DURATIONS}


def batch_counts(stat):
    return {b["batch_size"]: b["compute_infer"]["count"] for b in stat["batch_stats"]}


def v2_infer(daemon, model, rows, version=None):
    rows = np.asarray(rows, dtype=np.float32)
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}]}
    return daemon.post(path, data=dumps(body), headers={"Content-Type": "application/json"})


def test_fresh_daemon_reports_zeros(start_daemon, stats_repo):
    daemon = start_daemon(repo=stats_repo)
    everything = stats_of(daemon, "/v2/models/stats")
    assert sorted(s["name"] for s in everything) == ["broken", "fashion_mnist"]
    for stat in everything:
        check_shape(stat)
        assert stat["last_inference"] == 0 and stat["inference_count"] == 0, stat
        assert stat["execution_count"] == 0 and stat["batch_stats"] == [], stat
        for key in DURATIONS + ("cache_hit", "cache_miss"):
            assert stat["inference_stats"][key] == {"count": 0, "ns": 0}, (key, stat)


def test_counts_as_predicted(start_daemon, stats_repo, images):
    daemon = start_daemon(repo=stats_repo)
    t0 = int(time.time() * 1000)
    # fashion_mnist: one request at a time, so one execution per request
    sizes = [1, 3, 3, 5, 1, 3, FASHION_MAX_BATCH]
    row = 0
    for n in sizes:
        r = daemon.predict({"inputs": rounded_list(images[row:row + n])})
        assert r.status_code == 200, r.text[:300]
        row += n
    # v2 binary, 2 samples, twice
    for _ in range(2):
        chunk = np.ascontiguousarray(images[:2], dtype="<f4")
        header = dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                    "shape": list(chunk.shape),
                                    "parameters": {"binary_data_size": chunk.nbytes}}]}).encode()
        r = daemon.post("/v2/models/fashion_mnist/infer", data=header + chunk.tobytes(),
                        headers={"Content-Type": "application/octet-stream",
                                 "Inference-Header-Content-Length": str(len(header))})
        assert r.status_code == 200, r.text[:300]
    sizes += [2, 2]
    # failures: a wrong element count, a batch over max_batch_size, bad JSON
    assert_error(daemon.predict({"inputs": [[1.0, 2.0, 3.0]]}), 400)
    assert_error(daemon.predict({"inputs": rounded_list(images[:FASHION_MAX_BATCH + 1])}), 400)
    assert_error(daemon.post("/v2/models/fashion_mnist/infer", data="{",
                             headers={"Content-Type": "application/json"}), 400)
    # never reaches the model: not counted
    assert_error(daemon.get("/v2/models/fashion_mnist/versions/2/stats"), 404)
    assert_error(daemon.post("/v2/models/fashion_mnist/versions/2/infer", data="{}",
                             headers={"Content-Type": "application/json"}), 404)
    t1 = int(time.time() * 1000)

    stat = model_stats(daemon, "fashion_mnist")
    check_shape(stat)
    k = len(sizes)
    # Recorded before each answer left: no waiting needed.
    assert counts(stat) == {"success": k, "fail": 3, "queue": k, "compute_input": k,
                            "compute_infer": k, "compute_output": k}, stat
    assert stat["inference_count"] == sum(sizes), stat
    assert stat["execution_count"] == k, stat
    want_batches = {}
    for n in sizes:
        want_batches[n] = want_batches.get(n, 0) + 1
    assert batch_counts(stat) == want_batches, stat
    for b in stat["batch_stats"]:
        for phase in ("compute_input", "compute_infer", "compute_output"):
            assert b[phase]["count"] == want_batches[b["batch_size"]], b
        assert b["compute_infer"]["ns"] > 0, b
    inf = stat["inference_stats"]
    # one request per execution: the per-request sums are the per-batch sums
    for phase in ("compute_input", "compute_infer", "compute_output"):
        assert inf[phase]["ns"] == sum(b[phase]["ns"] for b in stat["batch_stats"]), phase
    # a request's time from arrival to answer covers its queue and compute
    parts = sum(inf[p]["ns"] for p in ("queue", "compute_input", "compute_infer",
                                       "compute_output"))
    assert inf["success"]["ns"] >= parts > 0, inf
    assert inf["fail"]["ns"] > 0, inf
    assert t0 <= stat["last_inference"] <= t1, (t0, stat["last_inference"], t1)

    # the same numbers by version 1 and in the all-models answer, and asking
    # does not count
    assert model_stats(daemon, "fashion_mnist", version=1) == stat
    everything = {s["name"]: s for s in stats_of(daemon, "/v2/models/stats")}
    assert everything["fashion_mnist"] == stat
    assert everything["broken"]["inference_count"] == 0, everything["broken"]

    # /metrics agrees (it counts once the answer is sent: poll, bounded)
    deadline = time.monotonic() + METRICS_WAIT_S
    while True:
        text = daemon.get("/metrics").text
        ok = f'inferd_requests_total{{model="fashion_mnist",version="1",status="200"}} {k}\n' in text
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ok, text[:2000]
    assert f'inferd_requests_total{{model="fashion_mnist",version="1",status="400"}} 3\n' in text


def test_model_failures_count_as_fail_not_executions(start_daemon, stats_repo):
    """The broken model throws on inputs above its trigger: 500s are failures
    and no successful execution; its good requests count as usual."""
    daemon = start_daemon(repo=stats_repo, model="broken")
    good = [[[1, 2, 3, 4]], [[1, 2, 3, 4], [5, 6, 7, 8]], [[0, 0, 0, 0], [1, 1, 1, 1]]]
    for rows in good:
        r = v2_infer(daemon, "broken", rows)
        assert r.status_code == 200, r.text[:300]
    for rows in ([[FAILING_TRIGGER + 1, 0, 0, 0]], [[1, 2, 3, 4], [5, 6, 7, FAILING_TRIGGER * 2]]):
        assert_error(v2_infer(daemon, "broken", rows), 500)
    assert_error(v2_infer(daemon, "broken", [[1, 2, 3]]), 400)  # wrong shape
    stat = model_stats(daemon, "broken")
    check_shape(stat)
    assert counts(stat) == {"success": 3, "fail": 3, "queue": 3, "compute_input": 3,
                            "compute_infer": 3, "compute_output": 3}, stat
    assert stat["inference_count"] == 5 and stat["execution_count"] == 3, stat
    assert batch_counts(stat) == {1: 1, 2: 2}, stat
    assert model_stats(daemon, "fashion_mnist")["inference_stats"]["success"]["count"] == 0


def test_concurrent_requests_share_executions(start_daemon, stats_repo, images):
    """Concurrent requests batch together: whatever the grouping, the batch
    statistics add up to the requests sent."""
    daemon = start_daemon(repo=stats_repo)
    clients, per_client, n = 8, 3, 2
    body = dumps({"inputs": rounded_list(images[:n])})

    def send(_):
        with http_session() as session:
            return [session.post(daemon.url("/predict"), data=body, timeout=15,
                                 headers={"Content-Type": "application/json"}).status_code
                    for _ in range(per_client)]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        assert sum(pool.map(send, range(clients)), []) == [200] * (clients * per_client)
    k = clients * per_client
    stat = model_stats(daemon, "fashion_mnist")
    assert counts(stat) == {"success": k, "fail": 0, "queue": k, "compute_input": k,
                            "compute_infer": k, "compute_output": k}, stat
    assert stat["inference_count"] == k * n, stat
    batches = batch_counts(stat)
    assert sum(batches.values()) == stat["execution_count"] <= k, stat
    assert sum(size * count for size, count in batches.items()) == k * n, stat
    assert all(size % n == 0 and size <= FASHION_MAX_BATCH for size in batches), batches
    # each request adds its whole execution's time: at least the batches' sum
    infer_ns = sum(b["compute_infer"]["ns"] for b in stat["batch_stats"])
    assert stat["inference_stats"]["compute_infer"]["ns"] >= infer_ns, stat


def test_stats_routing_and_errors(server):
    """/v2/models/stats is the statistics of every model, not a model called
    "stats"; unknown models and versions are 404s; the methods are GET and
    HEAD."""
    stats = stats_of(server, "/v2/models/stats")
    assert [s["name"] for s in stats] == ["fashion_mnist"]
    assert_error(server.get("/v2/models/nosuch/stats"), 404)
    message = assert_error(server.get("/v2/models/fashion_mnist/versions/2/stats"), 404)
    assert "version 2" in message, message
    assert_error(server.get("/v2/models/nosuch/config"), 404)
    assert_error(server.get("/v2/models/fashion_mnist/versions/7/config"), 404)
    assert_error(server.get("/v2/models/stats/stats"), 404)  # no model called "stats"
    for path in ("/v2/models/stats", "/v2/models/fashion_mnist/stats",
                 "/v2/models/fashion_mnist/config"):
        r = server.post(path, data="{}")
        assert_error(r, 405)
        assert r.headers["Allow"] == "GET, HEAD", r.headers
        assert server.request("HEAD", path).status_code == 200
    extensions = server.get("/v2").json()["extensions"]
    assert "statistics" in extensions and "model_configuration" in extensions, extensions


# --------------------------------------------------------------------------
# Configuration

def test_config_is_the_effective_one(start_daemon, tmp_path):
    """Settings config.json leaves out come from the flags; the answer lists
    every setting and, written back as config.json, serves the same model
    with the same configuration."""
    repo = tmp_path / "repo"
    folder = add_fashion_mnist(repo)
    sparse = {key: FASHION_CONFIG[key] for key in ("inputs", "outputs", "labels")}
    (folder / "config.json").write_text(json.dumps(sparse))
    daemon = start_daemon(repo=repo, flags=["--max-batch-size", "12", "--max-queue-delay-us",
                                            "750", "--instances-per-device", "2"])
    r = daemon.get("/v2/models/fashion_mnist/config")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    config = r.json()
    # What the instances measured and do is reported beside the settings
    # (docs/api.md); a config.json does not hold it.
    status = config.pop("instance_status")
    assert [(i["instance"], i["device"]) for i in status] == [(0, "cpu"), (1, "cpu")], status
    assert all(i["batch_sizes"]["source"] == "measured" for i in status), status
    assert config == {
        "name": "fashion_mnist", "file": "model.pt", "platform": "pytorch_torchscript",
        "inputs": FASHION_CONFIG["inputs"], "outputs": FASHION_CONFIG["outputs"],
        "max_batch_size": 12, "max_queue_delay_us": 750, "instances": 2, "warmup": True,
        "top_k": 0, "labels": "labels.txt", "precision": "fp32", "channels_last": False,
        "cudnn_benchmark": False, "cuda_graphs": [], "measure_batch_sizes": True,
        "preferred_batch_sizes": [], "pad_batches": "auto",
        "version_policy": {"latest": {"num_versions": 1}}}, config
    again_v1 = daemon.get("/v2/models/fashion_mnist/versions/1/config").json()
    again_v1.pop("instance_status")
    assert again_v1 == config

    # written back, with other flags: the file now decides
    again = tmp_path / "again"
    folder = add_fashion_mnist(again)
    (folder / "config.json").write_text(json.dumps(config))
    other = start_daemon(repo=again, flags=["--max-batch-size", "3"])
    answer = other.get("/v2/models/fashion_mnist/config").json()
    answer.pop("instance_status")
    assert answer == config
    meta = other.get("/v2/models/fashion_mnist").json()
    assert meta["max_batch_size"] == 12, meta


def test_config_of_the_shipped_model(start_daemon, tmp_path):
    """The shipped config.json's image preprocessing appears with the
    defaults it left out (mean 0, std 1, layout NCHW, normalize host); a model whose
    config.json is unusable answers 503 with the reason."""
    repo = tmp_path / "repo"
    folder = add_fashion_mnist(repo)
    shutil.copyfile(FASHION_DIR / "config.json", folder / "config.json")
    (repo / "bad").mkdir()
    (repo / "bad" / "config.json").write_text("{not json")
    daemon = start_daemon(repo=repo, wait=False)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if daemon.get("/v2/models/fashion_mnist/ready").status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    shipped = json.loads((FASHION_DIR / "config.json").read_text())
    config = daemon.get("/v2/models/fashion_mnist/config").json()
    for key in ("name", "file", "max_batch_size", "max_queue_delay_us", "instances", "labels",
                "top_k", "outputs"):
        assert config[key] == shipped[key], (key, config)
    image = config["inputs"][0].pop("image")
    shipped_image = shipped["inputs"][0].pop("image")
    assert config["inputs"] == shipped["inputs"], config
    assert image == {**shipped_image, "mean": [0.0], "std": [1.0], "layout": "NCHW",
                     "normalize": "host"}, image
    message = assert_error(daemon.get("/v2/models/bad/config"), 503)
    assert "config.json" in message, message
