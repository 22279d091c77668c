"""KServe v2 inference with JSON and binary tensors (Triton's binary tensor
data extension), checked against python3-torch running the same model files:
round trips, output selection, alignment, batching, and fashion_mnist.
"""
import numpy as np
import pytest

from support import (FASHION_DIR, FASHION_MAX_BATCH, IMAGE_SIZE, dumps, fashion_mnist_data)
from v2_client import (CONFIGS, FASHION_TOL, NP_DTYPES, TEST_MODELS, TWO_IO_MAX_BATCH,
                       check_outputs, decode_response, encode_request, infer, infer_raw,
                       make_inputs, tensor, two_io_request)

import make_test_models  # noqa: E402  (models/ is on sys.path: support puts it there)

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
