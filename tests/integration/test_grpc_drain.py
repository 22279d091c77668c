"""gRPC drain without a lost call (issue 20). gRPC's core ends CANCELLED any
call that reaches it after the server's shutdown began, and a proxy that
has streamed such a call's body cannot resend it: so inferd's drain keeps
the server up while connections are open, answers calls that arrive during
the drain UNAVAILABLE (which clients retry), lets the calls in flight
finish, closes the connections and only then shuts the server down.

Two checks: a call whose message is still arriving when SIGTERM comes (a
raw HTTP/2 client sends half of it, then the rest during the
drain) gets UNAVAILABLE, not CANCELLED; and gRPC load through a real nginx
(grpc_pass, kept-alive upstream connections, as deploy/nginx does) to two
daemons, one of them SIGTERMed mid-load, sees no status but OK and
UNAVAILABLE, and exit status 0.
"""
import collections
import shutil
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

import grpc_stubs
from support import add_fashion_mnist, finish, free_port, start_server
from loadtools import add_slow, slow_input

grpc = pytest.importorskip("grpc")  # python3-grpcio; .ci installs it

INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """The generated modules (grpc_stubs.py)."""
    return grpc_stubs.generate(tmp_path_factory.mktemp("drain-stubs"))


def start_grpc(workdir, repo, model):
    port = free_port()
    daemon = start_server(workdir, repo, ["--grpc-port", str(port)], model=model)
    daemon.grpc_port = port
    return daemon


def slow_request(pb, tag, rows):
    x = slow_input(tag, rows)
    req = pb.inference.ModelInferRequest(model_name="slow")
    req.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return x, req


def frame(kind, flags, stream, payload=b""):
    """One HTTP/2 frame: length, type, flags, stream id, payload."""
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") +
            payload)


DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20


class RawCall:
    """One ModelInfer call on stream 1 of its own HTTP/2 connection, framed
    here (headers with python3-hpack) so that its message can be sent in
    two parts, and read back frame by frame: a status that comes after a
    GOAWAY (legal for a stream the GOAWAY keeps) is still read."""

    def __init__(self, port, message):
        import hpack
        self.decoder = hpack.Decoder()
        self.encoder = hpack.Encoder()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))
        self.framed = b"\0" + len(message).to_bytes(4, "big") + message
        self.buf = b""
        self.headers = {}
        self.goaway = None

    def send_head_and_half(self):
        block = self.encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", INFER),
                                     (":authority", "127.0.0.1"),
                                     ("content-type", "application/grpc"), ("te", "trailers")])
        half = len(self.framed) // 2
        self.sock.sendall(frame(HEADERS, END_HEADERS, 1, block) +
                          frame(DATA, 0, 1, self.framed[:half]))

    def send_rest(self):
        self.send(frame(DATA, END_STREAM, 1, self.framed[len(self.framed) // 2:]))

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:  # closed by the server: what it sent is still read
            pass

    def read_frame(self, deadline):
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return ("timeout",)
            except ConnectionError:
                data = b""
            if not data:
                return None
            self.buf += data
        n = int.from_bytes(self.buf[:3], "big")
        kind, flags = self.buf[3], self.buf[4]
        stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
        return kind, flags, stream, payload

    def outcome(self, timeout_s=15):
        """Until the call ends: ("status", grpc-status, grpc-message),
        ("reset", HTTP/2 error code, None) or ("closed", None, GOAWAY seen)."""
        deadline = time.monotonic() + timeout_s
        block, block_flags = b"", 0
        while True:
            f = self.read_frame(deadline)
            if f is None:
                return ("closed", None, self.goaway)
            if len(f) == 1:
                return ("timeout", None, self.goaway)
            kind, flags, stream, payload = f
            if kind == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                self.send(frame(PING, ACK, 0, payload))
            elif kind == GOAWAY:
                self.goaway = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            elif kind == RST_STREAM and stream == 1:
                return ("reset", int.from_bytes(payload[:4], "big"), None)
            elif kind in (HEADERS, CONTINUATION) and stream == 1:
                if kind == HEADERS:
                    pad = payload[0] if flags & PADDED else 0
                    payload = payload[1 if flags & PADDED else 0:len(payload) - pad]
                    payload = payload[5:] if flags & PRIORITY else payload
                    block_flags = flags
                block += payload
                if flags & END_HEADERS:
                    self.headers.update(dict(self.decoder.decode(block)))
                    block = b""
                    if block_flags & END_STREAM:
                        return ("status", self.headers.get("grpc-status"),
                                self.headers.get("grpc-message"))
            elif kind == DATA and stream == 1 and flags & END_STREAM:
                return ("status", self.headers.get("grpc-status"),
                        self.headers.get("grpc-message"))

    def close(self):
        self.sock.close()


def test_call_completed_during_drain_is_unavailable_not_cancelled(pb, tmp_path_factory):
    """The call's headers and half its message arrive before SIGTERM, the
    rest during the drain (slow calls keep it going): the core hands the
    call over only then, and it must come back UNAVAILABLE (retryable),
    never CANCELLED; the calls in flight get their answers."""
    pytest.importorskip("hpack")  # python3-hpack; scripts/install-deps.sh installs it
    repo = tmp_path_factory.mktemp("grpc-drain-slow-repo")
    add_slow(repo, instances=1)
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc-drain-raw"), repo, "slow")
    channel = grpc.insecure_channel(f"127.0.0.1:{daemon.grpc_port}")
    raw = None
    try:
        sv = pb.inference_grpc.GRPCInferenceServiceStub(channel)
        # eight batches of the slow model, one after the other: a drain of
        # about eight forwards (SLOW_TARGET_MS each)
        busy = [slow_request(pb, 1 + i, 4) for i in range(8)]
        futures = [sv.ModelInfer.future(req, timeout=30) for _, req in busy]
        raw = RawCall(daemon.grpc_port, slow_request(pb, 50, 1)[1].SerializeToString())
        raw.send_head_and_half()
        time.sleep(0.1)
        daemon.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        raw.send_rest()
        kind, status, message = raw.outcome()
        assert (kind, status) == ("status", "14"), \
            f"{kind} {status} {message!r} (1 is CANCELLED)\n{daemon.describe()}"
        for (x, _), f in zip(busy, futures):
            got = np.frombuffer(f.result(timeout=30).raw_output_contents[0], np.float32)
            assert np.array_equal(got.reshape(x.shape), 2 * x)
        assert daemon.wait_exit() == 0
        daemon.stopped = True
        assert "method=ModelInfer status=UNAVAILABLE" in daemon.log_text()
    finally:
        if raw is not None:
            raw.close()
        channel.close()
        finish(daemon)


# --------------------------------------------------------------------------
# Through nginx (grpc_pass), as in the Compose deploy

NGINX_CONF = """
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log info;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {w}/access.log;
    client_body_temp_path {w}/tmp; proxy_temp_path {w}/tmp; fastcgi_temp_path {w}/tmp;
    uwsgi_temp_path {w}/tmp; scgi_temp_path {w}/tmp;
    upstream replicas {{
        least_conn;
        server 127.0.0.1:{p0} max_fails=1 fail_timeout=5s;
        server 127.0.0.1:{p1} max_fails=1 fail_timeout=5s;
        keepalive 32;
        keepalive_requests 10000;
        keepalive_timeout 50s;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        keepalive_requests 100000;
        grpc_connect_timeout 1s;
        grpc_next_upstream error timeout invalid_header non_idempotent;
        grpc_next_upstream_timeout 15s;
        error_page 502 503 504 = @unavailable;
        location / {{ grpc_pass grpc://replicas; }}
        location @unavailable {{
            default_type application/grpc;
            add_header grpc-status 14 always;
            add_header grpc-message "nginx: no replica answered" always;
            return 204;
        }}
    }}
}}
"""


def fashion_request(pb):
    x = np.random.default_rng(20).random((1, 1, 28, 28), dtype=np.float32)
    req = pb.inference.ModelInferRequest(model_name="fashion_mnist")
    req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return req


def test_sigterm_under_load_through_nginx_loses_no_call(pb, tmp_path_factory):
    """4 clients (no retry policy, so that every status shows) call
    ModelInfer through nginx on two daemons for about 4 s, at most 3000
    calls each; one daemon gets SIGTERM after 2 s. Every call ends OK or
    UNAVAILABLE (what nginx or a client retries); none CANCELLED."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (scripts/install-deps.sh installs nginx-light)")
    repo = tmp_path_factory.mktemp("grpc-drain-nginx-repo")
    add_fashion_mnist(repo)
    daemons = []
    proc = None
    try:
        for i in range(2):
            daemons.append(start_grpc(tmp_path_factory.mktemp(f"inferd-grpc-drain-{i}"), repo,
                                      "fashion_mnist"))
        w = tmp_path_factory.mktemp("nginx")
        (w / "tmp").mkdir()
        port = free_port()
        conf = w / "nginx.conf"
        conf.write_text(NGINX_CONF.format(w=w, port=port, p0=daemons[0].grpc_port,
                                          p1=daemons[1].grpc_port))
        proc = subprocess.Popen([nginx, "-p", str(w), "-c", str(conf), "-e",
                                 str(w / "error.log")], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        req = fashion_request(pb)
        deadline = time.monotonic() + 10
        while True:  # nginx is up when a call goes through
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                try:
                    pb.inference_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=2)
                    break
                except grpc.RpcError:
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        (w / "error.log").read_text()
                    time.sleep(0.1)
        results, lock = [], threading.Lock()

        def client():
            opts = [("grpc.enable_retries", 0)]
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
                sv = pb.inference_grpc.GRPCInferenceServiceStub(ch)
                end = time.monotonic() + 4
                for _ in range(3000):
                    if time.monotonic() > end:
                        break
                    t0 = time.monotonic()
                    try:
                        sv.ModelInfer(req, timeout=10)
                        code, details = "OK", ""
                    except grpc.RpcError as e:
                        code, details = e.code().name, e.details()
                    with lock:
                        results.append((t0, code, details))
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2)
        t_term = time.monotonic()
        daemons[0].send_signal(signal.SIGTERM)
        status = daemons[0].wait_exit()
        daemons[0].stopped = True
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        codes = collections.Counter(r[1] for r in results)
        bad = [r for r in results if r[1] not in ("OK", "UNAVAILABLE")]
        assert not bad, f"{codes}: {bad[:5]}\n{daemons[0].describe()}"
        assert status == 0, daemons[0].describe()
        after = [r for r in results if r[0] > t_term + 0.5]
        assert codes["OK"] > 100 and after and all(r[1] == "OK" for r in after), \
            (codes, [r for r in after if r[1] != "OK"][:5])
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for d in daemons:
            finish(d)
