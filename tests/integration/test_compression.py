"""Compressed bodies: Content-Encoding gzip and deflate requests are inflated
(the same answers as uncompressed), with --max-body-bytes applied to the
inflated size (a deflate bomb is refused with 413), corrupt bodies get 400,
unknown codings 415; JSON replies of 1 KiB and more are gzipped for clients
that accept it (Vary: Accept-Encoding)."""
import gzip
import zlib

import numpy as np
import pytest

from support import assert_error, assert_still_serves, dumps, fashion_mnist_data, rounded_list

LIMIT = 1_000_000  # --max-body-bytes for this module: well under the 10 MB bomb
GZIP_MIN_BYTES = 1024  # HTTP_GZIP_MIN_BYTES in include/http.h


@pytest.fixture(scope="module")
def images():
    x, _ = fashion_mnist_data.load("test")
    return np.ascontiguousarray(x[:16])


pytestmark = pytest.mark.parametrize("server", [["--max-body-bytes", str(LIMIT)]],
                                     indirect=True)


def raw_deflate(data):
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


CODINGS = {
    "gzip": ("gzip", lambda b: gzip.compress(b, mtime=0)),
    "x-gzip": ("x-gzip", lambda b: gzip.compress(b, mtime=0)),
    "deflate": ("deflate", zlib.compress),  # the zlib format, as RFC 9110 says
    "raw deflate": ("deflate", raw_deflate),  # what some clients send instead
    "identity": ("identity", lambda b: b),
}


def post(server, path, body, coding=None, content_type="application/json", headers=None,
         accept="identity"):
    h = {"Content-Type": content_type, "Accept-Encoding": accept, **(headers or {})}
    if coding is not None:
        h["Content-Encoding"] = coding
    return server.post(path, data=body, headers=h)


@pytest.mark.parametrize("kind", list(CODINGS))
def test_predict_round_trips(server, images, kind):
    coding, pack = CODINGS[kind]
    body = dumps({"inputs": rounded_list(images[:4])}).encode()
    plain = post(server, "/predict", body)
    assert plain.status_code == 200, plain.text[:300]
    packed = pack(body)
    if kind != "identity":
        assert len(packed) < len(body) / 2
    r = post(server, "/predict", packed, coding=coding)
    assert r.status_code == 200, r.text[:300]
    assert r.content == plain.content  # the same answer, byte for byte


def test_v2_binary_round_trips(server, images):
    """Inference-Header-Content-Length counts the inflated body's JSON part."""
    chunk = np.ascontiguousarray(images[:3], dtype="<f4")
    header = dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(chunk.shape),
                                "parameters": {"binary_data_size": chunk.nbytes}}],
                    "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    body = header + chunk.tobytes()
    extra = {"Inference-Header-Content-Length": str(len(header))}
    plain = post(server, "/v2/models/fashion_mnist/infer", body,
                 content_type="application/octet-stream", headers=extra)
    assert plain.status_code == 200, plain.text[:300]
    for coding, pack in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        r = post(server, "/v2/models/fashion_mnist/infer", pack(body), coding=coding,
                 content_type="application/octet-stream", headers=extra)
        assert r.status_code == 200, r.text[:300]
        assert r.content == plain.content, coding


def test_chunked_gzip_body(server, images):
    """A compressed body sent chunked (no Content-Length) in small pieces."""
    body = dumps({"inputs": rounded_list(images[:2])}).encode()
    plain = post(server, "/predict", body)
    packed = gzip.compress(body)
    pieces = (packed[i:i + 100] for i in range(0, len(packed), 100))
    r = post(server, "/predict", pieces, coding="gzip")
    assert r.status_code == 200, r.text[:300]
    assert r.content == plain.content


def test_limit_applies_to_the_inflated_size(server, images):
    """A body that inflates to exactly the limit is taken; one byte more is
    413, although both are small on the wire."""
    body = dumps({"inputs": rounded_list(images[:1])}).encode()
    exact = body + b" " * (LIMIT - len(body))  # trailing blanks: still valid JSON
    r = post(server, "/predict", gzip.compress(exact), coding="gzip")
    assert r.status_code == 200, r.text[:300]
    over = gzip.compress(exact + b" ")
    assert len(over) < 10_000
    message = assert_error(post(server, "/predict", over, coding="gzip"), 413)
    assert str(LIMIT) in message, message


@pytest.mark.parametrize("coding, pack", [("deflate", zlib.compress),
                                          ("gzip", gzip.compress),
                                          ("deflate", raw_deflate)],
                         ids=["deflate", "gzip", "raw deflate"])
def test_bomb_is_refused(server, coding, pack):
    """10 MB of zeros compress to about 10 KB: refused with 413 once the
    inflated size passes the limit, and the server goes on serving."""
    bomb = pack(bytes(10_000_000))
    assert len(bomb) < 20_000
    r = post(server, "/predict", bomb, coding=coding)
    message = assert_error(r, 413)
    assert "inflates to more than" in message and str(LIMIT) in message, message
    assert_still_serves(server)


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b'{"inputs":[1]}')[:-6],
                                  gzip.compress(b'{"inputs":[1]}') + b"trailing",
                                  b"\x1f\x8b\x08\x00" + bytes(20)],
                         ids=["garbage", "truncated", "trailing bytes", "bad header"])
def test_corrupt_gzip_is_400(server, body):
    message = assert_error(post(server, "/predict", body, coding="gzip"), 400)
    assert "gzip" in message, message


def test_corrupt_deflate_is_400(server):
    good = zlib.compress(b'{"inputs": [1, 2, 3]}')
    broken = good[:5] + bytes([good[5] ^ 0xFF]) + good[6:]
    assert_error(post(server, "/predict", broken, coding="deflate"), 400)
    assert_error(post(server, "/predict", good[:-4], coding="deflate"), 400)
    assert_error(post(server, "/predict", b"", coding="deflate"), 400)


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, deflate", "bogus"])
def test_unknown_coding_is_415(server, coding):
    message = assert_error(post(server, "/predict", b'{"inputs": [1]}', coding=coding), 415)
    assert f"'{coding}'" in message, message


def test_gzip_reply_when_accepted_and_large(server, images):
    body = dumps({"inputs": rounded_list(images[:16])})
    plain = post(server, "/predict", body)
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"
    assert len(plain.content) >= GZIP_MIN_BYTES

    for accept in ("gzip", "deflate, gzip;q=0.5", "*"):
        r = server.post("/predict", data=body, stream=True,
                        headers={"Content-Type": "application/json", "Accept-Encoding": accept})
        assert r.status_code == 200
        assert r.headers["Content-Encoding"] == "gzip", (accept, r.headers)
        assert r.headers["Vary"] == "Accept-Encoding"
        wire = r.raw.read(decode_content=False)
        assert int(r.headers["Content-Length"]) == len(wire) < len(plain.content) * 0.75
        assert gzip.decompress(wire) == plain.content

    for refused in ("identity", "gzip;q=0", "br", "*;q=0"):
        r = post(server, "/predict", body, accept=refused)
        assert r.status_code == 200 and "Content-Encoding" not in r.headers, refused
        assert r.content == plain.content


def test_small_and_non_json_replies_stay_plain(server, images):
    r = post(server, "/predict", dumps({"inputs": rounded_list(images[:1])}), accept="gzip")
    assert r.status_code == 200 and len(r.content) < GZIP_MIN_BYTES
    assert "Content-Encoding" not in r.headers and r.headers["Vary"] == "Accept-Encoding"
    # /metrics is text, not JSON: never compressed here
    r = server.get("/metrics", headers={"Accept-Encoding": "gzip"}, stream=True)
    assert "Content-Encoding" not in r.headers and len(r.raw.read()) > GZIP_MIN_BYTES
    # a (small) JSON error is not compressed either
    r = post(server, "/predict", b'{"inputs": [1, 2]}', accept="gzip")
    assert_error(r, 400)
    assert "Content-Encoding" not in r.headers


def test_content_encoding_without_a_body_is_ignored(server):
    r = server.get("/v2/health/ready", headers={"Content-Encoding": "br"})
    assert r.status_code == 200, r.text
