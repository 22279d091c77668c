"""KServe v2: data sent in another datatype than the input declares is
converted when the values fit, and refused with 400 when they do not.
"""
import json

import numpy as np
import pytest

from support import assert_error, dumps
from v2_client import (CONFIGS, check_outputs, encode_request, infer, infer_raw, make_inputs,
                       tensor)

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
