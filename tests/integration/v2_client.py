"""A small KServe v2 client for the v2 integration tests (test_v2_*.py),
written from the protocol's published description, not from inferd's code,
with the python3-torch reference it is checked against, and the fixtures
the v2 test modules share (import them: v2_repo, v2, reference, rng).
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

import numpy as np

from support import dumps

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


TEST_MODELS = list(CONFIGS)



def two_io_request(rng, batch=2, binary=False):
    arrays = make_inputs("two_io", batch, rng)
    return arrays, [tensor("a", "FP32", arrays["a"], binary),
                    tensor("b", "INT64", arrays["b"], binary)]
