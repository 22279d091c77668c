"""KServe v2: server and model metadata, readiness, routing of model paths
(versions, unknown models, bad names), and the repository index with a model
that cannot load.
"""
import json

import numpy as np
import pytest

from support import (FASHION_CONFIG, add_fashion_mnist, assert_error, assert_still_serves,
                     raw_exchange)
from v2_client import (CONFIGS, READY_WAIT_S, TEST_MODELS, check_outputs, encode_request, infer,
                       infer_raw, make_inputs, tensor, two_io_request)

import make_test_models  # noqa: E402  (models/ is on sys.path: support puts it there)

# --------------------------------------------------------------------------
# Metadata, readiness, routing

def test_server_metadata_lists_binary_extension(v2):
    r = v2.get("/v2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"]
    assert isinstance(body.get("version"), str) and body["version"]
    assert "binary_tensor_data" in body["extensions"], body


@pytest.mark.parametrize("model", TEST_MODELS + ["fashion_mnist"])
def test_model_metadata(v2, model):
    r = v2.get(f"/v2/models/{model}")
    assert r.status_code == 200, r.text
    meta = r.json()
    config = CONFIGS.get(model) or FASHION_CONFIG
    assert meta["name"] == model
    assert "1" in meta["versions"]
    def strip(ios):
        return [{k: io[k] for k in ("name", "datatype", "shape")} for io in ios]
    assert strip(meta["inputs"]) == config["inputs"]
    assert strip(meta["outputs"]) == config["outputs"]


@pytest.mark.parametrize("model", TEST_MODELS + ["fashion_mnist"])
def test_model_ready(v2, model):
    r = v2.get(f"/v2/models/{model}/ready")
    assert r.status_code == 200, r.text
    r = v2.get(f"/v2/models/{model}/versions/1/ready")
    assert r.status_code == 200, r.text


def test_infer_with_version_1(v2, reference, rng):
    arrays = make_inputs("two_io", 2, rng)
    resp = infer(v2, "two_io", [tensor(n, s["datatype"], arrays[n]) for n, s in
                               zip(arrays, CONFIGS["two_io"]["inputs"])], version="1")
    check_outputs(resp, "two_io", arrays, reference)


@pytest.mark.parametrize("model_path", ["/v2/models/two_io/versions/2", "/v2/models/no_such_model"],
                         ids=["unknown_version", "unknown_model"])
@pytest.mark.parametrize("method,suffix", [("POST", "/infer"), ("GET", ""), ("GET", "/ready")])
def test_unknown_version_or_model_is_404(v2, rng, model_path, method, suffix):
    _, inputs = two_io_request(rng)
    body, headers = encode_request(inputs)
    kwargs = {"data": body, "headers": headers} if method == "POST" else {}
    r = v2.request(method, f"{model_path}{suffix}", **kwargs)
    assert_error(r, 404)


def raw_get(daemon, path):
    """GET `path` byte for byte (no client-side normalization of '..')."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
               f"Connection: close\r\n\r\n").encode()
    return raw_exchange(daemon.port, request)


def assert_raw_error(status, headers, body, want):
    assert status in want, f"status {status}, want {want}: {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert isinstance(json.loads(body).get("error"), str), body


@pytest.mark.parametrize("path", ["/v2/models/..", "/v2/models/../ready",
                                  "/v2/models/%2e%2e/ready", "/v2/models/../versions/1/ready"])
def test_dot_dot_model_name_is_400(v2, path):
    assert_raw_error(*raw_get(v2, path), want={400})
    assert v2.proc.poll() is None


@pytest.mark.parametrize("path", ["/v2/models/a%20b", "/v2/models/a%20b/ready",
                                  "/v2/models/a%2Fb/ready"])
def test_bad_model_name_is_400_or_404(v2, path):
    assert_raw_error(*raw_get(v2, path), want={400, 404})


@pytest.mark.parametrize("path", ["/v2/models/a%2Fb", "/v2/models/a%2fb/ready",
                                  "/v2/models/a%00b", "/v2/models/fashion_mnist%00/ready",
                                  "/v2/models/a%20b"])
def test_slash_or_nul_in_model_name_is_400(v2, path):
    """An escaped slash or NUL must not cut the name short or add a path level."""
    assert_raw_error(*raw_get(v2, path), want={400})
    assert v2.proc.poll() is None


def test_dot_dot_in_infer_path_is_400(v2, rng):
    _, inputs = two_io_request(rng)
    body, _ = encode_request(inputs)
    request = (f"POST /v2/models/../infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    assert_raw_error(*raw_exchange(v2.port, request), want={400})


# --------------------------------------------------------------------------
# The repository index and a model that cannot load

def test_repository_index_lists_models_ready(v2):
    r = v2.get("/v2/repository/index")
    assert r.status_code == 200, r.text
    index = r.json()
    assert isinstance(index, list)
    by_name = {entry["name"]: entry for entry in index}
    assert sorted(by_name) == sorted(TEST_MODELS + ["fashion_mnist"]), index
    for name, entry in by_name.items():
        assert entry["state"] == "READY", entry
    r = v2.post("/v2/repository/index", data="{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert sorted(e["name"] for e in r.json()) == sorted(by_name)


def wait_settled(daemon, names, timeout=READY_WAIT_S):
    """Poll the repository index until it lists `names` and none is LOADING
    (models are listed as the repository is read); return it."""
    import time

    deadline = time.monotonic() + timeout
    index = None
    while time.monotonic() < deadline:
        assert daemon.proc.poll() is None, f"inferd exited\n{daemon.describe()}"
        try:
            r = daemon.get("/v2/repository/index", timeout=2)
            if r.status_code == 200:
                index = r.json()
                listed = sorted(e["name"] for e in index)
                if listed == sorted(names) and all(e["state"] != "LOADING" for e in index):
                    return index
        except Exception:  # not listening yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"models still loading after {timeout} s: {index}\n{daemon.describe()}")


def test_garbage_model_is_unavailable_and_others_serve(start_daemon, tmp_path, reference, rng):
    repo = tmp_path / "repo"
    add_fashion_mnist(repo)
    make_test_models.make_model(repo, "two_io")
    garbage = repo / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text(json.dumps({"name": "garbage", "file": "model.pt",
                                                     **CONFIGS["dict_out"]}))
    (garbage / "model.pt").write_bytes(np.random.default_rng(7).bytes(4096))
    bad_config = repo / "bad_config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text('{"inputs": [')
    (bad_config / "model.pt").write_bytes(b"")

    names = ["bad_config", "fashion_mnist", "garbage", "two_io"]
    daemon = start_daemon(repo=repo, wait=False)
    index = {e["name"]: e for e in wait_settled(daemon, names)}
    assert sorted(index) == names, index
    assert index["fashion_mnist"]["state"] == "READY", index
    assert index["two_io"]["state"] == "READY", index
    for name in ("garbage", "bad_config"):
        assert index[name]["state"] == "UNAVAILABLE", index[name]
        reason = index[name].get("reason")
        assert isinstance(reason, str) and reason.strip(), index[name]

    assert_error(daemon.get("/v2/health/ready"), 503)
    assert daemon.get("/v2/health/live").status_code == 200
    assert_error(daemon.get("/v2/models/garbage/ready"), 503)
    assert daemon.get("/v2/models/two_io/ready").status_code == 200
    arrays = make_inputs("dict_out", 1, rng)
    body, headers = encode_request([tensor("x", "FP32", arrays["x"])])
    assert_error(infer_raw(daemon, "garbage", body, headers), 503)

    # the others still serve
    arrays, inputs = two_io_request(rng, binary=True)
    check_outputs(infer(daemon, "two_io", inputs, binary_output=True), "two_io", arrays, reference)
    assert_still_serves(daemon)
    assert daemon.proc.poll() is None
