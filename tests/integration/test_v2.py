"""KServe v2 protocol: server and model metadata, readiness, the repository
index, and inference with JSON and binary tensors (Triton's binary tensor
data extension), checked against python3-torch running the same model files.

The small v2 client below is written from the protocol's published
description, not from inferd's code:

  * request: a JSON object {"id"?, "parameters"?, "inputs": [...], "outputs"?};
    an input is {"name", "datatype", "shape", "data"} or, in binary,
    {"name", "datatype", "shape", "parameters": {"binary_data_size": N}}
    with its N bytes (little-endian, row-major, no padding; BOOL one byte
    0/1) after the JSON, binary inputs in the order they are listed;
    the JSON's length is in the header Inference-Header-Content-Length.
  * an output is returned in binary when its request entry in "outputs" has
    "parameters": {"binary_data": true}, or when the request's parameters
    have "binary_data_output": true.
  * response: the same layout: JSON, then binary outputs in the order they
    are listed, each with parameters.binary_data_size; the JSON's length in
    Inference-Header-Content-Length.

The test models come from models/make_test_models.py (two_io, dict_out,
all_types, no_batch), next to a copy of fashion_mnist.
"""
import json
import zlib

import numpy as np
import pytest

from support import (FASHION_CONFIG, FASHION_DIR, FASHION_MAX_BATCH, IMAGE_SIZE,
                     add_fashion_mnist, assert_error, assert_still_serves, dumps,
                     fashion_mnist_data, finish, raw_exchange, start_server)

import make_test_models  # noqa: E402  (models/ is on sys.path: support puts it there)

FLOAT_TOL = 1e-5           # relative (and absolute below 1) for float outputs
FASHION_TOL = 1e-4         # absolute, logits
READY_WAIT_S = 30          # bound on waiting for a repository to settle

NP_DTYPES = {
    "BOOL": np.dtype("?"), "UINT8": np.dtype("u1"), "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
FLOAT_TYPES = {"FP16", "FP32", "FP64"}
CONFIGS = {name: config for name, (_, config) in make_test_models.MODELS.items()}
TWO_IO_MAX_BATCH = CONFIGS["two_io"]["max_batch_size"]


# --------------------------------------------------------------------------
# A small v2 client

def tensor(name, datatype, array, binary=False, shape=None):
    """One request input: `array` is sent as `datatype` (JSON data or, with
    binary=True, raw bytes); `shape` overrides the shape that is declared."""
    return {"name": name, "datatype": datatype, "array": np.asarray(array),
            "binary": binary, "shape": shape}


def json_values(array, datatype):
    """Flat JSON-ready list of the array's values as `datatype`."""
    flat = np.asarray(array).astype(NP_DTYPES[datatype]).ravel()
    if datatype == "BOOL":
        return [bool(v) for v in flat]
    if datatype in FLOAT_TYPES:
        return [float(v) for v in flat]   # exact: every FP16/FP32 value is a double
    return [int(v) for v in flat]


def encode_request(inputs, outputs=None, request_id=None, binary_output=None, parameters=None):
    """Build a v2 inference request. Returns (body bytes, headers).

    outputs: None, or a list of names or (name, binary) pairs
    binary_output: request-level parameters.binary_data_output."""
    entries, blobs = [], []
    for t in inputs:
        array = t["array"]
        shape = list(t["shape"]) if t["shape"] is not None else list(array.shape)
        entry = {"name": t["name"], "datatype": t["datatype"], "shape": shape}
        if t["binary"]:
            raw = np.ascontiguousarray(array.astype(NP_DTYPES[t["datatype"]])).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = json_values(array, t["datatype"])
        entries.append(entry)
    request = {}
    if request_id is not None:
        request["id"] = request_id
    params = dict(parameters or {})
    if binary_output is not None:
        params["binary_data_output"] = binary_output
    if params:
        request["parameters"] = params
    request["inputs"] = entries
    if outputs is not None:
        request["outputs"] = []
        for out in outputs:
            name, binary = (out, None) if isinstance(out, str) else out
            entry = {"name": name}
            if binary is not None:
                entry["parameters"] = {"binary_data": binary}
            request["outputs"].append(entry)
    header = dumps(request).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(len(header))}


class V2Response:
    """A decoded 200 answer: header (the JSON), names (in order), arrays by
    name, binary (name -> whether it came as binary data)."""

    def __init__(self, header, arrays, binary):
        self.header = header
        self.names = [out["name"] for out in header["outputs"]]
        self.arrays = arrays
        self.binary = binary


def decode_response(r):
    detail = f"{r.request.method} {r.url} -> {r.status_code}: {r.content[:400]!r}"
    assert r.status_code == 200, detail
    body = r.content
    header_len = r.headers.get("Inference-Header-Content-Length")
    if header_len is None:
        json_part, rest = body, b""
        assert r.headers.get("Content-Type", "").startswith("application/json"), detail
    else:
        n = int(header_len)
        assert 0 < n <= len(body), f"Inference-Header-Content-Length {n}, body {len(body)}"
        json_part, rest = body[:n], body[n:]
    header = json.loads(json_part)
    arrays, binary, offset = {}, {}, 0
    for out in header["outputs"]:
        dtype = NP_DTYPES[out["datatype"]]
        shape = out["shape"]
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            assert header_len is not None, f"binary output without the header; {detail}"
            assert "data" not in out, f"output {out['name']} has data and binary_data_size"
            assert size == int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, \
                f"output {out['name']}: binary_data_size {size} for shape {shape} {out['datatype']}"
            raw = rest[offset:offset + size]
            assert len(raw) == size, f"output {out['name']}: {len(raw)} of {size} bytes"
            offset += size
            arrays[out["name"]] = np.frombuffer(raw, dtype=dtype).reshape(shape)
            binary[out["name"]] = True
        else:
            data = np.array(out["data"], dtype=dtype)
            assert data.size == int(np.prod(shape, dtype=np.int64)), \
                f"output {out['name']}: {data.size} values for shape {shape}"
            arrays[out["name"]] = data.reshape(shape)
            binary[out["name"]] = False
    assert offset == len(rest), f"{len(rest) - offset} bytes after the binary outputs"
    return V2Response(header, arrays, binary)


def infer_raw(daemon, model, body, headers, version=None):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return daemon.post(path, data=body, headers=headers)


def infer(daemon, model, inputs, **kwargs):
    version = kwargs.pop("version", None)
    body, headers = encode_request(inputs, **kwargs)
    return decode_response(infer_raw(daemon, model, body, headers, version=version))


# --------------------------------------------------------------------------
# Reference values: python3-torch on the same model files

class TorchReference:
    def __init__(self, repo):
        import torch

        torch.set_num_threads(1)  # leave the other core to the daemon
        self.torch = torch
        self.repo = repo
        self.models = {}

    def __call__(self, model, arrays):
        """Run `model` on numpy arrays (config input order); return
        {output name: numpy array} named by the config's outputs in order."""
        torch = self.torch
        if model not in self.models:
            self.models[model] = torch.jit.load(str(self.repo / model / "model.pt"),
                                                map_location="cpu").eval()
        args = [torch.from_numpy(np.array(a, copy=True)) for a in arrays]
        with torch.no_grad():
            out = self.models[model](*args)
        if isinstance(out, dict):
            out = list(out.values())
        elif not isinstance(out, (tuple, list)):
            out = [out]
        names = [o["name"] for o in CONFIGS[model]["outputs"]]
        assert len(out) == len(names)
        return {name: o.numpy() for name, o in zip(names, out)}


def assert_same(got, expected, datatype, what):
    """got (from the server) equals expected (from torch): same dtype and
    shape; floats within FLOAT_TOL, everything else exactly."""
    assert got.dtype == NP_DTYPES[datatype], f"{what}: dtype {got.dtype}, want {datatype}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, torch gave {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, torch gave {expected.shape}"
    if datatype in FLOAT_TYPES:
        g, e = got.astype(np.float64), expected.astype(np.float64)
        bound = FLOAT_TOL * np.maximum(1.0, np.abs(e))
        bad = ~(np.abs(g - e) <= bound)
        assert not bad.any(), \
            f"{what}: {bad.sum()} values off, e.g. got {g[bad][:4]} want {e[bad][:4]}"
    else:
        assert np.array_equal(got, expected), f"{what}: got {got.tolist()} want {expected.tolist()}"


def make_inputs(model, batch, rng):
    """Random inputs for a test model, {name: numpy array in its config datatype}."""
    specs = CONFIGS[model]["inputs"]
    arrays = {}
    for spec in specs:
        dt = spec["datatype"]
        shape = [batch if d == -1 else d for d in spec["shape"]]
        if dt == "BOOL":
            a = rng.integers(0, 2, shape).astype(bool)
        elif dt in FLOAT_TYPES:
            a = rng.standard_normal(shape) * (1e6 if dt == "FP64" else 10.0)
            a = a.astype(NP_DTYPES[dt])
        else:
            info = np.iinfo(NP_DTYPES[dt])
            lo, hi = (-1000, 1000) if dt == "INT64" else (int(info.min), int(info.max))
            a = rng.integers(lo, hi, shape, endpoint=True).astype(NP_DTYPES[dt])
            if dt != "INT64":   # the extremes of the range, always
                a.flat[0], a.flat[-1] = info.min, info.max
        arrays[spec["name"]] = a
    return arrays


def check_outputs(resp, model, arrays, reference, names=None):
    """Every output in resp (or just `names`, in that order) equals torch's."""
    expected = reference(model, [arrays[s["name"]] for s in CONFIGS[model]["inputs"]])
    datatypes = {o["name"]: o["datatype"] for o in CONFIGS[model]["outputs"]}
    want = names or [o["name"] for o in CONFIGS[model]["outputs"]]
    assert resp.names == want, f"outputs {resp.names}, want {want}"
    assert resp.header["model_name"] == model
    assert resp.header["model_version"] == "1"
    for out in resp.header["outputs"]:
        assert out["datatype"] == datatypes[out["name"]], out
        assert out["shape"] == list(expected[out["name"]].shape), out
    for name in want:
        assert_same(resp.arrays[name], expected[name], datatypes[name], f"{model}.{name}")


# --------------------------------------------------------------------------
# Fixtures: one daemon serving fashion_mnist and the test models

@pytest.fixture(scope="module")
def v2_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("v2repo")
    add_fashion_mnist(repo)
    make_test_models.make_all(repo)
    return repo


@pytest.fixture(scope="module")
def v2(tmp_path_factory, v2_repo):
    daemon = start_server(tmp_path_factory.mktemp("inferd-v2"), v2_repo)
    yield daemon
    finish(daemon)


@pytest.fixture(scope="module")
def reference(v2_repo):
    return TorchReference(v2_repo)


@pytest.fixture
def rng(request):
    """Seeded by the test's name: reruns send the same values."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


TEST_MODELS = list(CONFIGS)


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


def two_io_request(rng, batch=2, binary=False):
    arrays = make_inputs("two_io", batch, rng)
    return arrays, [tensor("a", "FP32", arrays["a"], binary),
                    tensor("b", "INT64", arrays["b"], binary)]


@pytest.mark.parametrize("method,suffix", [("POST", "/infer"), ("GET", ""), ("GET", "/ready")])
def test_unknown_version_is_404(v2, rng, method, suffix):
    _, inputs = two_io_request(rng)
    body, headers = encode_request(inputs)
    kwargs = {"data": body, "headers": headers} if method == "POST" else {}
    r = v2.request(method, f"/v2/models/two_io/versions/2{suffix}", **kwargs)
    assert_error(r, 404)


@pytest.mark.parametrize("method,suffix", [("POST", "/infer"), ("GET", ""), ("GET", "/ready")])
def test_unknown_model_is_404(v2, rng, method, suffix):
    _, inputs = two_io_request(rng)
    body, headers = encode_request(inputs)
    kwargs = {"data": body, "headers": headers} if method == "POST" else {}
    r = v2.request(method, f"/v2/models/no_such_model{suffix}", **kwargs)
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
# Round trips against torch

MODES = {  # name: (binary inputs, binary outputs)
    "json": (False, False),
    "binary": (True, True),
    "binary in, json out": (True, False),
    "json in, binary out": (False, True),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("model", TEST_MODELS)
def test_round_trip_matches_torch(v2, reference, rng, model, mode):
    binary_in, binary_out = MODES[mode]
    batch = 3
    arrays = make_inputs(model, batch, rng)
    inputs = [tensor(s["name"], s["datatype"], arrays[s["name"]], binary_in)
              for s in CONFIGS[model]["inputs"]]
    resp = infer(v2, model, inputs, binary_output=True if binary_out else None)
    check_outputs(resp, model, arrays, reference)
    assert all(resp.binary[n] == binary_out for n in resp.names), resp.binary


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips_exactly(v2, binary):
    """Boundary values of each datatype through the identity model."""
    cases = {
        "BOOL": [[True, False], [False, True]],
        "UINT8": [[0, 255], [1, 128]],
        "INT8": [[-128, 127], [0, -1]],
        "INT16": [[-32768, 32767], [0, -1]],
        "INT32": [[-2147483648, 2147483647], [0, -1]],
        "INT64": [[2 ** 40 + 1, -(2 ** 52) - 3], [0, -1]],   # exact in a double too
        "FP16": [[65504.0, -65504.0], [6.103515625e-05, -0.333251953125]],  # max, min normal
        "FP64": [[1e300, -2.2250738585072014e-308], [0.1, -1.0 / 3.0]],
    }
    inputs = [tensor(f"x_{s}", dt, np.array(cases[dt], dtype=NP_DTYPES[dt]), binary)
              for dt, s in make_test_models.ALL_TYPES]
    resp = infer(v2, "all_types", inputs, binary_output=binary)
    for dt, s in make_test_models.ALL_TYPES:
        want = np.array(cases[dt], dtype=NP_DTYPES[dt])
        got = resp.arrays[f"o_{s}"]
        assert got.dtype == want.dtype and np.array_equal(got, want), \
            f"{dt}: sent {want.tolist()}, got {got.tolist()} ({got.dtype})"


def test_nested_json_data(v2, reference, rng):
    """"data" may be nested as the shape (not only flat)."""
    arrays = make_inputs("two_io", 3, rng)
    request = {"inputs": [
        {"name": "a", "datatype": "FP32", "shape": [3, 4],
         "data": arrays["a"].astype(float).tolist()},
        {"name": "b", "datatype": "INT64", "shape": [3, 4], "data": arrays["b"].tolist()},
    ]}
    r = infer_raw(v2, "two_io", dumps(request).encode(), {"Content-Type": "application/json"})
    check_outputs(decode_response(r), "two_io", arrays, reference)


INT64_CASES = {
    "beyond 2**53": [[2 ** 53 + 1, -(2 ** 53) - 1], [2 ** 62 + 3, -(2 ** 62) - 3]],
    "limits": [[2 ** 63 - 1, -(2 ** 63)], [0, 1]],
}


@pytest.mark.parametrize("case", list(INT64_CASES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_int64_round_trips_exactly(v2, binary, case):
    """INT64 is 64 bits: JSON integers beyond 2**53, and the type's limits,
    must arrive exact, not through a double."""
    int64 = np.array(INT64_CASES[case], dtype=np.int64)
    inputs = []
    for dt, s in make_test_models.ALL_TYPES:
        array = int64 if dt == "INT64" else np.zeros((2, 2), NP_DTYPES[dt])
        inputs.append(tensor(f"x_{s}", dt, array, binary))
    body, headers = encode_request(inputs, outputs=[("o_int64", binary)])
    r = infer_raw(v2, "all_types", body, headers)
    assert r.status_code == 200, f"{int64.tolist()} as INT64 ({'binary' if binary else 'JSON'})" \
                                 f" -> {r.status_code}: {r.text[:300]}"
    got = decode_response(r).arrays["o_int64"]
    assert np.array_equal(got, int64), f"sent {int64.tolist()}, got {got.tolist()}"


def test_id_is_echoed(v2, rng):
    _, inputs = two_io_request(rng)
    resp = infer(v2, "two_io", inputs, request_id="req-42 \u00e9")
    assert resp.header.get("id") == "req-42 \u00e9"
    _, inputs = two_io_request(rng, binary=True)
    resp = infer(v2, "two_io", inputs, request_id="bin-7", binary_output=True)
    assert resp.header.get("id") == "bin-7"


@pytest.mark.parametrize("model,names", [
    ("two_io", ["prod_sum", "sum"]),
    ("two_io", ["prod_sum"]),
    ("dict_out", ["neg"]),
    ("dict_out", ["neg", "double"]),
    ("all_types", ["o_fp64", "o_bool", "o_int16"]),
])
def test_outputs_select_and_order(v2, reference, rng, model, names):
    arrays = make_inputs(model, 2, rng)
    inputs = [tensor(s["name"], s["datatype"], arrays[s["name"]]) for s in CONFIGS[model]["inputs"]]
    resp = infer(v2, model, inputs, outputs=names)
    check_outputs(resp, model, arrays, reference, names=names)


def test_mixed_binary_and_json_outputs(v2, reference, rng):
    arrays, inputs = two_io_request(rng, batch=4)
    resp = infer(v2, "two_io", inputs, outputs=[("sum", True), ("prod_sum", False)])
    check_outputs(resp, "two_io", arrays, reference)
    assert resp.binary == {"sum": True, "prod_sum": False}
    resp = infer(v2, "two_io", inputs, outputs=[("prod_sum", True), "sum"])
    check_outputs(resp, "two_io", arrays, reference, names=["prod_sum", "sum"])
    assert resp.binary == {"prod_sum": True, "sum": False}

    # all_types: every other output binary, so binary parts skip JSON ones
    arrays = make_inputs("all_types", 3, rng)
    names = [o["name"] for o in CONFIGS["all_types"]["outputs"]]
    inputs = [tensor(s["name"], s["datatype"], arrays[s["name"]], i % 2 == 1)
              for i, s in enumerate(CONFIGS["all_types"]["inputs"])]
    resp = infer(v2, "all_types", inputs, outputs=[(n, i % 2 == 0) for i, n in enumerate(names)])
    check_outputs(resp, "all_types", arrays, reference)
    assert [resp.binary[n] for n in names] == [i % 2 == 0 for i in range(len(names))]


def test_mixed_binary_and_json_inputs(v2, reference, rng):
    arrays = make_inputs("two_io", 3, rng)
    for a_binary in (True, False):
        inputs = [tensor("a", "FP32", arrays["a"], a_binary),
                  tensor("b", "INT64", arrays["b"], not a_binary)]
        check_outputs(infer(v2, "two_io", inputs), "two_io", arrays, reference)
    # inputs listed in another order than the config's: matched by name
    inputs = [tensor("b", "INT64", arrays["b"], True), tensor("a", "FP32", arrays["a"], True)]
    check_outputs(infer(v2, "two_io", inputs), "two_io", arrays, reference)


def test_json_request_with_header_length(v2, reference, rng):
    """A JSON-only request may carry Inference-Header-Content-Length = its length."""
    arrays, inputs = two_io_request(rng)
    body, headers = encode_request(inputs)
    headers["Inference-Header-Content-Length"] = str(len(body))
    check_outputs(decode_response(infer_raw(v2, "two_io", body, headers)), "two_io", arrays,
                  reference)


@pytest.mark.parametrize("pad", range(8))
def test_binary_data_at_any_alignment(v2, reference, rng, pad):
    """Binary inputs start wherever the JSON ends: pad the JSON with spaces so
    that they land at every offset modulo 8."""
    arrays = make_inputs("all_types", 2, rng)
    inputs = [tensor(s["name"], s["datatype"], arrays[s["name"]], True)
              for s in CONFIGS["all_types"]["inputs"]]
    body, headers = encode_request(inputs)
    header_len = int(headers["Inference-Header-Content-Length"])
    extra = (pad - header_len) % 8
    body = body[:header_len] + b" " * extra + body[header_len:]
    headers["Inference-Header-Content-Length"] = str(header_len + extra)
    resp = decode_response(infer_raw(v2, "all_types", body, headers))
    check_outputs(resp, "all_types", arrays, reference)


def test_concurrent_requests_are_batched_correctly(v2, reference):
    """Concurrent requests of different sizes (batched together by the server)
    each get their own rows back, for every output."""
    from concurrent.futures import ThreadPoolExecutor

    from support import http_session

    rng = np.random.default_rng(1234)
    jobs = []
    for i in range(12):
        model = ("two_io", "all_types", "dict_out")[i % 3]
        arrays = make_inputs(model, 1 + i % 3, rng)
        inputs = [tensor(s["name"], s["datatype"], arrays[s["name"]], i % 2 == 0)
                  for s in CONFIGS[model]["inputs"]]
        jobs.append((model, arrays, encode_request(inputs, binary_output=i % 4 < 2)))

    def send(job):
        model, _, (body, headers) = job
        with http_session() as session:
            return session.post(v2.url(f"/v2/models/{model}/infer"), data=body, headers=headers,
                                timeout=15)

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(send, jobs))
    for (model, arrays, _), r in zip(jobs, responses):
        check_outputs(decode_response(r), model, arrays, reference)


def test_max_batch_size_is_accepted(v2, reference, rng):
    arrays, inputs = two_io_request(rng, batch=TWO_IO_MAX_BATCH, binary=True)
    check_outputs(infer(v2, "two_io", inputs, binary_output=True), "two_io", arrays, reference)


# --------------------------------------------------------------------------
# Datatype conversions

@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_int32_data_for_fp32_input(v2, reference, rng, binary):
    arrays = make_inputs("two_io", 2, rng)
    a_int = rng.integers(-100000, 100000, (2, 4)).astype(np.int32)
    inputs = [tensor("a", "INT32", a_int, binary), tensor("b", "INT64", arrays["b"], binary)]
    resp = infer(v2, "two_io", inputs)
    check_outputs(resp, "two_io", {"a": a_int.astype(np.float32), "b": arrays["b"]}, reference)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_integral_fp32_data_for_int64_input(v2, reference, rng, binary):
    arrays = make_inputs("two_io", 2, rng)
    b_float = arrays["b"].astype(np.float32)
    inputs = [tensor("a", "FP32", arrays["a"], binary), tensor("b", "FP32", b_float, binary)]
    check_outputs(infer(v2, "two_io", inputs), "two_io", arrays, reference)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_fractional_fp32_for_int64_input_is_400(v2, rng, binary):
    arrays = make_inputs("two_io", 1, rng)
    b = np.array([[1.0, 2.0, 1.5, 3.0]], dtype=np.float32)
    body, headers = encode_request([tensor("a", "FP32", arrays["a"], binary),
                                    tensor("b", "FP32", b, binary)])
    assert_error(infer_raw(v2, "two_io", body, headers), 400)


def all_types_request(rng, override):
    """An all_types request (batch 1) with the inputs in `override`
    (name -> (datatype, array, binary)) replaced."""
    arrays = make_inputs("all_types", 1, rng)
    inputs = []
    for s in CONFIGS["all_types"]["inputs"]:
        dt, array, binary = override.get(s["name"], (s["datatype"], arrays[s["name"]], False))
        inputs.append(tensor(s["name"], dt, array, binary))
    return encode_request(inputs)


@pytest.mark.parametrize("datatype,binary", [("UINT8", False), ("INT32", False), ("INT32", True),
                                             ("INT16", True), ("FP32", False)])
def test_300_for_uint8_input_is_400(v2, rng, datatype, binary):
    values = np.array([[300, 1]])
    if datatype == "UINT8":   # JSON can say 300 for a UINT8 tensor; bytes cannot
        body, headers = all_types_request(rng, {})
        request = json.loads(body)
        request["inputs"][1]["data"] = [300, 1]
        body = dumps(request).encode()
    else:
        body, headers = all_types_request(rng, {"x_uint8": (datatype, values, binary)})
    assert_error(infer_raw(v2, "all_types", body, headers), 400)


def test_bool_binary_byte_2_is_400(v2, rng):
    body, headers = all_types_request(rng, {"x_bool": ("BOOL", np.array([[1, 0]]), True)})
    header_len = int(headers["Inference-Header-Content-Length"])
    assert body[header_len:header_len + 2] == b"\x01\x00"
    body = body[:header_len] + b"\x02" + body[header_len + 1:]
    assert_error(infer_raw(v2, "all_types", body, headers), 400)


def test_no_batch_model_takes_no_batch_dim(v2, rng):
    body, headers = encode_request([tensor("x", "FP32", np.zeros((1, 3), np.float32))])
    assert_error(infer_raw(v2, "no_batch", body, headers), 400)


def test_negative_for_uint8_and_2_for_bool_are_400(v2, rng):
    body, headers = all_types_request(rng, {"x_uint8": ("INT32", np.array([[-1, 1]]), False)})
    assert_error(infer_raw(v2, "all_types", body, headers), 400)
    body, headers = all_types_request(rng, {"x_bool": ("INT32", np.array([[2, 1]]), False)})
    assert_error(infer_raw(v2, "all_types", body, headers), 400)
    body, headers = all_types_request(rng, {"x_bool": ("UINT8", np.array([[2, 1]]), True)})
    assert_error(infer_raw(v2, "all_types", body, headers), 400)


# --------------------------------------------------------------------------
# Malformed requests: 400 and a JSON error, and the server goes on

def binary_two_io(rng, batch=2):
    """A valid binary two_io request, as (JSON header dict, blobs list)."""
    arrays = make_inputs("two_io", batch, rng)
    a, b = arrays["a"].tobytes(), arrays["b"].tobytes()
    header = {"inputs": [
        {"name": "a", "datatype": "FP32", "shape": [batch, 4],
         "parameters": {"binary_data_size": len(a)}},
        {"name": "b", "datatype": "INT64", "shape": [batch, 4],
         "parameters": {"binary_data_size": len(b)}},
    ]}
    return header, [a, b]


def binary_body(header, blobs, header_len=None, tail=b""):
    text = dumps(header).encode()
    body = text + b"".join(blobs) + tail
    if header_len is None:
        header_len = len(text)
    return body, {"Content-Type": "application/octet-stream",
                  "Inference-Header-Content-Length": str(header_len)}


def json_two_io(rng, batch=2):
    arrays = make_inputs("two_io", batch, rng)
    return {"inputs": [
        {"name": "a", "datatype": "FP32", "shape": [batch, 4],
         "data": json_values(arrays["a"], "FP32")},
        {"name": "b", "datatype": "INT64", "shape": [batch, 4],
         "data": json_values(arrays["b"], "INT64")},
    ]}


def json_body(request):
    return dumps(request).encode(), {"Content-Type": "application/json"}


def bad_binary_size(rng):
    header, blobs = binary_two_io(rng)
    header["inputs"][0]["parameters"]["binary_data_size"] -= 1
    blobs[0] = blobs[0][:-1]
    return binary_body(header, blobs)


def truncated_body(rng):
    header, blobs = binary_two_io(rng)
    blobs[1] = blobs[1][:-5]
    return binary_body(header, blobs)


def header_longer_than_body(rng):
    header, blobs = binary_two_io(rng)
    body, headers = binary_body(header, blobs)
    headers["Inference-Header-Content-Length"] = str(len(body) + 10)
    return body, headers


def extra_bytes(rng):
    header, blobs = binary_two_io(rng)
    return binary_body(header, blobs, tail=b"\0\0\0\0")


def missing_input(rng):
    request = json_two_io(rng)
    del request["inputs"][1]
    return json_body(request)


def unknown_input(rng):
    request = json_two_io(rng)
    request["inputs"].append({"name": "c", "datatype": "FP32", "shape": [2, 4], "data": [0.0] * 8})
    return json_body(request)


def input_twice(rng):
    request = json_two_io(rng)
    request["inputs"].append(dict(request["inputs"][0]))
    return json_body(request)


def input_twice_binary(rng):
    header, blobs = binary_two_io(rng)
    header["inputs"].append(dict(header["inputs"][0]))
    return binary_body(header, blobs + [blobs[0]])


def wrong_shape(rng):
    request = json_two_io(rng)
    request["inputs"][0]["shape"] = [2, 5]
    request["inputs"][0]["data"] = [0.5] * 10
    return json_body(request)


def wrong_rank(rng):
    request = json_two_io(rng)
    request["inputs"][0]["shape"] = [8]
    return json_body(request)


def batch_over_max(rng):
    return json_body(json_two_io(rng, batch=TWO_IO_MAX_BATCH + 1))


def batch_over_max_binary(rng):
    header, blobs = binary_two_io(rng, batch=TWO_IO_MAX_BATCH + 1)
    return binary_body(header, blobs)


def batch_disagrees(rng):
    request = json_two_io(rng, batch=2)
    request["inputs"][1] = json_two_io(rng, batch=3)["inputs"][1]
    return json_body(request)


def data_count_mismatch(rng):
    request = json_two_io(rng)
    request["inputs"][0]["data"] = request["inputs"][0]["data"][:7]
    return json_body(request)


def non_numeric(rng):
    request = json_two_io(rng)
    request["inputs"][0]["data"][3] = "x"
    return json_body(request)


def null_data(rng):
    request = json_two_io(rng)
    request["inputs"][0]["data"][3] = None
    return json_body(request)


def header_not_a_number(rng):
    header, blobs = binary_two_io(rng)
    body, headers = binary_body(header, blobs)
    headers["Inference-Header-Content-Length"] = "abc"
    return body, headers


def header_negative(rng):
    header, blobs = binary_two_io(rng)
    body, headers = binary_body(header, blobs)
    headers["Inference-Header-Content-Length"] = "-5"
    return body, headers


def header_too_short(rng):
    """The JSON's length given one byte short: the JSON part does not parse."""
    header, blobs = binary_two_io(rng)
    return binary_body(header, blobs, header_len=len(dumps(header)) - 1)


def unknown_datatype(rng):
    request = json_two_io(rng)
    request["inputs"][0]["datatype"] = "FP8"
    return json_body(request)


def unknown_output(rng):
    request = json_two_io(rng)
    request["outputs"] = [{"name": "nope"}]
    return json_body(request)


def binary_without_header(rng):
    header, blobs = binary_two_io(rng)
    body, headers = binary_body(header, blobs)
    del headers["Inference-Header-Content-Length"]
    headers["Content-Type"] = "application/json"
    return body, headers


def header_zero(rng):
    header, blobs = binary_two_io(rng)
    return binary_body(header, blobs, header_len=0)


def absurd_shape(rng):
    request = json_two_io(rng)
    request["inputs"][0]["shape"] = [10 ** 12, 10 ** 12]
    return json_body(request)


def absurd_shape_binary(rng):
    header, blobs = binary_two_io(rng)
    header["inputs"][0]["shape"] = [10 ** 12, 10 ** 12]
    return binary_body(header, blobs)


def negative_dim(rng):
    request = json_two_io(rng)
    request["inputs"][0]["shape"] = [-2, -4]
    return json_body(request)


BAD_REQUESTS = {
    "binary_data_size does not match shape*dtype": bad_binary_size,
    "truncated binary data": truncated_body,
    "header length greater than body": header_longer_than_body,
    "extra bytes after last input": extra_bytes,
    "missing input": missing_input,
    "unknown input name": unknown_input,
    "input given twice": input_twice,
    "input given twice, binary": input_twice_binary,
    "wrong shape": wrong_shape,
    "wrong rank": wrong_rank,
    "batch over max_batch_size": batch_over_max,
    "batch over max_batch_size, binary": batch_over_max_binary,
    "inputs disagree on batch": batch_disagrees,
    "data count not matching shape": data_count_mismatch,
    "non-numeric data": non_numeric,
    "null in data": null_data,
    "Inference-Header-Content-Length abc": header_not_a_number,
    "Inference-Header-Content-Length -5": header_negative,
    "Inference-Header-Content-Length short": header_too_short,
    "unknown datatype": unknown_datatype,
    "unknown output name": unknown_output,
    "binary input without Inference-Header-Content-Length": binary_without_header,
    "Inference-Header-Content-Length 0": header_zero,
    "absurd shape": absurd_shape,
    "absurd shape, binary": absurd_shape_binary,
    "negative dims": negative_dim,
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_400(v2, reference, rng, case):
    body, headers = BAD_REQUESTS[case](rng)
    assert_error(infer_raw(v2, "two_io", body, headers), 400)
    # the server goes on: the same model answers a valid request
    arrays, inputs = two_io_request(rng, binary=True)
    check_outputs(infer(v2, "two_io", inputs), "two_io", arrays, reference)


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


# --------------------------------------------------------------------------
# fashion_mnist through v2, against torch

def test_fashion_mnist_binary_matches_torch(v2):
    import torch

    torch.set_num_threads(1)
    x, _ = fashion_mnist_data.load("test")
    x = np.ascontiguousarray(x[:50], dtype=np.float32)
    model = torch.jit.load(str(FASHION_DIR / "model.pt"), map_location="cpu").eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = []
    for start, binary_out in ((0, True), (25, False)):
        chunk = x[start:start + 25]
        assert len(chunk) <= FASHION_MAX_BATCH
        resp = infer(v2, "fashion_mnist", [tensor("input", "FP32", chunk, binary=True)],
                     binary_output=binary_out)
        assert resp.names == ["logits"]
        assert resp.binary["logits"] == binary_out
        assert resp.arrays["logits"].shape == (len(chunk), 10)
        got.append(resp.arrays["logits"])
    got = np.concatenate(got).astype(np.float64)
    diff = np.abs(got - expected).max()
    assert diff <= FASHION_TOL, f"max abs diff {diff} > {FASHION_TOL}"
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert x.shape[1:] == (1, 28, 28) and x[0].size == IMAGE_SIZE
