"""Error answers: status, a one-line JSON {"error": ...}, and after each one
the server still answers a valid request."""
import json
import socket
import time

import numpy as np
import pytest

from support import (FAILING_TRIGGER, FASHION_MAX_BATCH, IMAGE_SIZE, add_failing_model,
                     assert_error, assert_still_serves, dumps, predict_head, raw_exchange)

FLAT = [0.5] * IMAGE_SIZE  # one valid image, written flat


def full(shape):
    return np.full(shape, 0.5).tolist()


def with_element(value):
    """A flat image whose element 100 is `value` (any JSON value)."""
    inputs = list(FLAT)
    inputs[100] = value
    return dumps({"inputs": inputs})


def with_literal(text):
    """A flat image whose last element is the raw JSON text `text`."""
    return '{"inputs":[' + ",".join(["0.5"] * (IMAGE_SIZE - 1) + [text]) + "]}"


def ragged_images():
    """Two images, the second one row short: [[1,28,28], [1,27,28]]."""
    return dumps({"inputs": [full((1, 28, 28)), full((1, 27, 28))]})


def ragged_row():
    image = full((1, 1, 28, 28))
    image[0][0][5] = [0.5] * 27
    return dumps({"inputs": image})


def nested_with_string():
    image = full((1, 1, 28, 28))
    image[0][0][3][3] = "0.5"
    return dumps({"inputs": image})


BAD_REQUESTS = {
    "empty body": "",
    "malformed JSON": '{"inputs": [0.5, 0.5',
    "trailing garbage": dumps({"inputs": FLAT}) + " x",
    "not an object": dumps(FLAT),
    "missing inputs": dumps({"input": FLAT}),
    "inputs is a number": dumps({"inputs": 0.5}),
    "inputs is a string": dumps({"inputs": "0.5"}),
    # U+FDD0 is a Unicode noncharacter; a server that marks parsed arrays with
    # it internally must still see this "inputs" as the string it is.
    "inputs is a string naming another array": dumps({"x": FLAT, "inputs": "\ufdd00"}),
    "inputs is an object": dumps({"inputs": {"a": FLAT}}),
    "string element": with_element("0.5"),
    "null element": with_element(None),
    "true element": with_element(True),
    "false element": with_element(False),
    "object element": with_element({}),
    "string in nested array": nested_with_string(),
    "ragged images": ragged_images(),
    "ragged row": ragged_row(),
    "number beside arrays": dumps({"inputs": [full((1, 28, 28)), 0.5]}),
    "flat count not a multiple of 784": dumps({"inputs": [0.5] * 100}),
    "shape count mismatch": dumps({"inputs": FLAT, "shape": [2, 1, 28, 28]}),
    "shape not integers": dumps({"inputs": FLAT, "shape": [1, 1, 28, "28"]}),
    "shape not an array": dumps({"inputs": FLAT, "shape": 784}),
    "rank 2 shape": dumps({"inputs": FLAT, "shape": [1, 784]}),
    "rank 2 nested": dumps({"inputs": full((28, 28))}),
    "rank 5 nested": dumps({"inputs": full((1, 1, 1, 28, 28))}),
    "wrong width": dumps({"inputs": full((1, 1, 28, 27))}),
    "wrong channels": dumps({"inputs": full((1, 3, 28, 28))}),
    "beyond float32": with_literal("1e39"),
    "beyond float32, negative": with_literal("-3.5e38"),
    "NaN literal": with_literal("NaN"),
    "Infinity literal": with_literal("Infinity"),
    "-Infinity literal": with_literal("-Infinity"),
}


@pytest.mark.parametrize("body", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request_is_400(server, body):
    assert_error(server.predict(body), 400)
    assert_still_serves(server)


def test_batch_over_max_batch_size_is_400_naming_the_limit(server):
    r = server.predict({"inputs": full((FASHION_MAX_BATCH + 1, 1, 28, 28))})
    message = assert_error(r, 400)
    assert str(FASHION_MAX_BATCH) in message, message
    assert_still_serves(server)


@pytest.mark.parametrize("path", ["/nope", "/predict/nope", "/v2/nope"])
def test_unknown_path_is_404(server, path):
    assert_error(server.get(path), 404)
    assert_error(server.post(path, data=dumps({"inputs": FLAT}),
                             headers={"Content-Type": "application/json"}), 404)
    assert_still_serves(server)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_is_405_with_allow(server, method):
    r = server.request(method, "/predict")
    assert_error(r, 405)
    allowed = [m.strip().upper() for m in r.headers.get("Allow", "").split(",")]
    assert "POST" in allowed, f"Allow: {r.headers.get('Allow')!r}"
    assert_still_serves(server)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml"])
def test_unsupported_content_type_is_415(server, content_type):
    assert_error(server.predict(dumps({"inputs": FLAT}), content_type=content_type), 415)
    assert_still_serves(server)


# --------------------------------------------------------------------------
# Body size limit

BODY_LIMIT = 10000
SMALL_LIMIT = [["--max-body-bytes", str(BODY_LIMIT)]]


def padded_body(size):
    """A valid one-image request of exactly `size` bytes (spaces before '}')."""
    body = dumps({"inputs": FLAT})
    assert len(body) < size
    return body[:-1] + " " * (size - len(body)) + "}"


@pytest.mark.parametrize("server", SMALL_LIMIT, indirect=True)
def test_body_at_limit_is_served_and_over_limit_is_413(server):
    r = server.predict(padded_body(BODY_LIMIT))
    assert r.status_code == 200, f"a body of exactly the limit: {r.status_code} {r.text[:300]}"
    assert_error(server.predict(padded_body(BODY_LIMIT + 1)), 413)
    assert_still_serves(server)
    assert_error(server.predict(padded_body(2 * BODY_LIMIT)), 413)
    assert_still_serves(server)


@pytest.mark.parametrize("server", SMALL_LIMIT, indirect=True)
def test_large_content_length_is_413_before_the_body(server):
    """Content-Length 50 MB with only a few bytes sent: 413 comes without
    waiting for the rest."""
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
               b'{"inputs": [0.5, 0.5, ')
    status, headers, body = raw_exchange(server.port, request, timeout=5)
    assert status == 413, (status, headers, body[:300])
    assert_still_serves(server)


@pytest.mark.parametrize("server", SMALL_LIMIT, indirect=True)
def test_chunked_body_over_limit_is_413(server):
    """A chunked upload (no Content-Length) is cut off at the limit too."""
    chunk = b'{"inputs": [' + b"0.5, " * 800
    chunks = [chunk] * (2 * BODY_LIMIT // len(chunk) + 1)
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")
    status, headers, body = raw_exchange(server.port, request, timeout=5)
    assert status == 413, (status, headers, body[:300])
    assert_still_serves(server)


# --------------------------------------------------------------------------
# Model failure

def test_model_failure_is_500_and_the_model_keeps_serving(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    add_failing_model(repo, "broken")
    daemon = start_daemon(repo=repo, model="broken")

    def good_request():
        r = daemon.predict({"inputs": [[0.5, 0.5, 0.5, 0.5]]})
        assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
        body = r.json()
        assert body["model"] == "broken"
        assert body["shape"] == [1, 2]
        assert body["outputs"] == [[2.0, 2.0]]

    good_request()
    for _ in range(3):
        r = daemon.predict({"inputs": [[FAILING_TRIGGER * 2] * 4]})
        assert_error(r, 500)
        good_request()


def client_leaves_early(port, request_id, how):
    """Send headers (and part of a body), then close at once."""
    body = dumps({"inputs": FLAT}).encode()
    head = predict_head(len(body), request_id)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head if how == "headers" else head + body[:100])


def test_client_closing_mid_request_leaves_nothing_behind(start_daemon):
    """A client that closes right after its headers, or part-way through its
    body: the exchange ends at once (access log 499), other requests are
    served, and a drain does not wait for it."""
    daemon = start_daemon(["--log-format", "json", "--drain-timeout-s", "30"])
    ids = [f"{how}-{k}" for how in ("headers", "partial") for k in range(4)]
    for request_id in ids:
        client_leaves_early(daemon.port, request_id, request_id.split("-")[0])
    assert_still_serves(daemon)
    deadline = time.monotonic() + 5
    while True:
        lines = {}
        for line in daemon.log_text().splitlines():
            if line.startswith("{") and '"msg":"request"' in line:
                rec = json.loads(line)
                lines[rec["request_id"]] = rec
        if all(i in lines for i in ids) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    missing = [i for i in ids if i not in lines]
    assert not missing, f"no access-log line 5 s after the client left: {missing}"
    assert all(lines[i]["status"] == 499 for i in ids), [lines[i] for i in ids]
    t0 = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - t0 < 10, "the drain waited for clients that had left"
