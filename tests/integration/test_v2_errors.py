"""KServe v2: malformed requests get 400 and a JSON error, and the server goes
on serving.
"""
import pytest

from support import assert_error, dumps
from v2_client import (TWO_IO_MAX_BATCH, check_outputs, infer, infer_raw, json_values, make_inputs,
                       two_io_request)

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
