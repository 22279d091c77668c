"""Early answers reach a client that is still sending: a request refused
before its body is read (413 for a declared length over the limit, 415, 404)
is answered at once, and the server keeps the connection open, reading and
dropping the rest of the body (within bounds: src/linger.h), so that a
client that sends its whole body before reading gets the JSON error rather
than a connection reset. Measured before this change: Python's
urllib.request with a 32 MB body got ConnectionResetError."""
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from support import assert_still_serves

BIG = 32 * 1024 * 1024       # over the default --max-body-bytes (16 MiB)
MEDIUM = 8 * 1024 * 1024     # under it, for the 415 and 404 refusals
LINGER_IDLE_S = 2.0          # LINGER_IDLE_MS in src/linger.h


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, model_repo):
    from support import finish, start_server
    d = start_server(tmp_path_factory.mktemp("early"), model_repo)
    yield d
    finish(d)


def read_until_close(s):
    """Every byte the server sends on socket s until it closes."""
    buf = b""
    while True:
        data = s.recv(65536)
        if not data:
            return buf
        buf += data


def send_all_then_read(port, head, body_len, timeout=60.0):
    """Send the request head and body_len bytes of body, all of it, before
    reading anything; then read until the server closes. Returns (status,
    headers, body bytes). A reset while sending or reading fails the test."""
    chunk = b"0" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        left = body_len
        while left > 0:
            n = min(left, len(chunk))
            s.sendall(chunk[:n])
            left -= n
        s.shutdown(socket.SHUT_WR)
        buf = read_until_close(s)
    head_text, _, rest = buf.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), buf[:200]
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def assert_json_error(status, headers, body, expected):
    assert status == expected, (status, headers, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message, body


def head(path, length, content_type="application/json"):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_urllib_sending_32mb_gets_the_413(daemon):
    request = urllib.request.Request(daemon.url("/predict"), data=b"0" * BIG,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    e = caught.value
    body = e.read()
    assert e.code == 413, (e.code, body[:300])
    assert "limit" in json.loads(body)["error"], body
    assert_still_serves(daemon)


@pytest.mark.parametrize("path,length,content_type,status", [
    ("/predict", BIG, "application/json", 413),
    ("/predict", MEDIUM, "text/plain", 415),
    ("/no/such/endpoint", MEDIUM, "application/json", 404),
])
def test_whole_body_then_read_gets_the_answer(daemon, path, length, content_type, status):
    for _ in range(2):
        got = send_all_then_read(daemon.port, head(path, length, content_type), length)
        assert_json_error(*got, status)
        assert got[1].get("connection", "").lower() == "close", got[1]
    assert_still_serves(daemon)


def test_lingering_is_bounded(daemon):
    """Declares 32 MB, sends 1 MB, reads the 413, then goes quiet past the
    idle bound: the server has closed the socket, so sending more fails."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as s:
        s.sendall(head("/predict", BIG) + b"0" * (1 << 20))
        buf = read_until_close(s)
        assert buf.startswith(b"HTTP/1.1 413"), buf[:200]
        time.sleep(LINGER_IDLE_S + 1.5)
        deadline = time.monotonic() + 5
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                s.sendall(b"0" * 65536)
                time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed, "the server still read from the socket after the idle bound"
    assert_still_serves(daemon)
