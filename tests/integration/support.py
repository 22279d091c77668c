"""Helpers for inferd's integration tests: start the real daemon, build model
repositories, encode requests, check responses.

Everything talks to the daemon over loopback only. Every wait is bounded.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"
FASHION_DIR = MODELS_DIR / "fashion_mnist"
EXAMPLES_DIR = MODELS_DIR / "examples"

sys.path.insert(0, str(MODELS_DIR))
import fashion_mnist_data  # noqa: E402  (lives in models/, not a package)

LABELS = fashion_mnist_data.LABELS
IMAGE_SHAPE = (1, 28, 28)
IMAGE_SIZE = 28 * 28
FASHION_MAX_BATCH = 32  # max_batch_size in the config.json the tests write

# model load + warm-up; sanitizer builds load several times slower
READY_TIMEOUT_S = float(os.environ.get("TEST_READY_TIMEOUT_S", "30"))
STOP_TIMEOUT_S = 10     # SIGTERM to exit, when a test is not timing it itself
HTTP_TIMEOUT_S = 15     # any single HTTP exchange

FASHION_CONFIG = {
    "name": "fashion_mnist",
    "file": "model.pt",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    "max_batch_size": FASHION_MAX_BATCH,
    "max_queue_delay_us": 2000,
    "labels": "labels.txt",
}


# --------------------------------------------------------------------------
# The daemon

def inferd_binary():
    """build/inferd, or $INFERD_BIN (relative to the repository root).

    A missing binary is a test failure, never a skip."""
    path = REPO_ROOT / os.environ.get("INFERD_BIN", "build/inferd")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise AssertionError(f"inferd binary not found or not executable: {path} "
                             f"(build it first, or set INFERD_BIN)")
    return path


def daemon_devices():
    """The --devices value the tests run the daemon with (default cpu, so the
    values test compares like with like); INFERD_TEST_DEVICES overrides."""
    return os.environ.get("INFERD_TEST_DEVICES", "cpu")


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra=None):
    """The test's environment without any INFERD_* variable (so that the
    caller's shell cannot change the daemon's settings), plus `extra` (a value
    of None removes that variable). The gRPC listener is off (its default
    port, 8001, is one for every daemon); test_grpc.py turns it on with
    --grpc-port. OMP_WAIT_POLICY is PASSIVE, the policy inferd re-executes
    itself to get when it is unset (as the Dockerfile sets it): that saves
    each daemon a second load of libtorch, 2 to 4 s here, about a hundred
    times per suite. test_lifecycle.py checks the re-exec itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_")}
    env["INFERD_GRPC_PORT"] = "0"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def http_session():
    """A requests session that ignores proxy settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


class Daemon:
    """A running inferd process: base_url, proc, log_path, and HTTP helpers."""

    def __init__(self, args, log_path, port, env=None, cwd=None):
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = Path(log_path)
        self.argv = [str(inferd_binary()), *args]
        self.stopped = False
        self.ready_statuses = []  # what /v2/health/ready answered while starting
        self.http = http_session()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env=child_env(env), cwd=cwd)

    def url(self, path):
        return self.base_url + path

    def get(self, path, **kwargs):
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        return self.http.get(self.url(path), **kwargs)

    def post(self, path, **kwargs):
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        return self.http.post(self.url(path), **kwargs)

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        return self.http.request(method, self.url(path), **kwargs)

    def predict(self, body, content_type="application/json"):
        """POST /predict; `body` is bytes/str sent as is, anything else as JSON."""
        if not isinstance(body, (bytes, str)):
            body = dumps(body)
        headers = {"Content-Type": content_type} if content_type else {}
        return self.post("/predict", data=body, headers=headers)

    def log_text(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def describe(self):
        """What to print when an assertion about this daemon fails."""
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"inferd ({state}) {' '.join(self.argv)}\n--- log tail ---\n{self.log_tail()}"

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Poll /v2/health/ready until it answers 200; fail if the process exits
        or the time runs out. Records every status seen in ready_statuses."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"inferd exited before it was ready\n{self.describe()}")
            try:
                status = self.get("/v2/health/ready", timeout=2).status_code
                self.ready_statuses.append(status)
                if status == 200:
                    return self
            except requests.ConnectionError:
                pass  # not listening yet
            time.sleep(0.05)
        raise AssertionError(f"inferd not ready within {timeout} s "
                             f"(ready answered {sorted(set(self.ready_statuses))})\n"
                             f"{self.describe()}")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT_S):
        """Wait for the process to exit; return its exit status. On timeout,
        kill it and fail."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            raise AssertionError(f"inferd did not exit within {timeout} s\n{self.describe()}")
        finally:
            self.stopped = True

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Send `sig` (if still running) and return the exit status."""
        if self.proc.poll() is None:
            self.send_signal(sig)
        return self.wait_exit(timeout)

    def close(self):
        """Make sure the process is gone and the log is closed (never fails)."""
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self.http.close()
        self._log.close()


def start_server(workdir, repo, flags=(), model="fashion_mnist", wait=True, env=None):
    """Start inferd on a free loopback port serving `model` from `repo`, with
    its log in workdir/inferd.log; wait until ready unless wait=False.

    Later flags win, so `flags` may override any of the defaults here; `env`
    goes to the daemon's environment as child_env takes it."""
    workdir = Path(workdir)
    port = free_port()
    args = ["--host", "127.0.0.1", "--port", str(port),
            "--model-repository", str(repo), "--default-model", model,
            "--devices", daemon_devices(), *flags]
    daemon = Daemon(args, workdir / "inferd.log", port, env=env, cwd=workdir)
    if wait:
        try:
            daemon.wait_ready()
        except BaseException:
            daemon.close()
            raise
    return daemon


def finish(daemon):
    """Fixture teardown: SIGTERM a daemon the test left running and assert it
    exits 0; a daemon that died on its own fails here too."""
    try:
        if not daemon.stopped:
            status = daemon.stop(signal.SIGTERM)
            assert status == 0, f"exit status {status} after SIGTERM\n{daemon.describe()}"
    finally:
        daemon.close()


# --------------------------------------------------------------------------
# Model repositories

def add_fashion_mnist(repo):
    """repo/fashion_mnist: a copy of the committed model.pt with the
    contract's config.json and labels.txt, written here so that the tests do
    not depend on what else the committed folder holds."""
    folder = Path(repo) / "fashion_mnist"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FASHION_DIR / "model.pt", folder / "model.pt")
    (folder / "labels.txt").write_text("".join(label + "\n" for label in LABELS))
    (folder / "config.json").write_text(json.dumps(FASHION_CONFIG, indent=2) + "\n")
    return folder


def _save_scripted(module, repo, name, config):
    import torch  # imported here: only the tests that make models pay for it

    folder = Path(repo) / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module.eval()).save(str(folder / "model.pt"))
    (folder / "config.json").write_text(json.dumps({"name": name, "file": "model.pt", **config},
                                                   indent=2) + "\n")
    return folder


FAILING_TRIGGER = 1000.0  # any input element above this makes the failing model throw


def add_failing_model(repo, name="broken"):
    """repo/<name>: input FP32 [-1,4], output FP32 [-1,2]. Loads and warms up
    (and answers inputs <= FAILING_TRIGGER), but any input element above
    FAILING_TRIGGER makes forward multiply by a weight of the wrong size, so
    libtorch throws (a multi-line TorchScript error)."""
    import torch

    class FailsOnLargeInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("weight", torch.ones(4, 2))
            self.register_buffer("wrong_weight", torch.ones(3, 2))

        def forward(self, x):
            if bool((x > 1000.0).any()):
                return x.matmul(self.wrong_weight)  # [N,4] x [3,2]: throws
            return x.matmul(self.weight)

    return _save_scripted(FailsOnLargeInput(), repo, name, {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "max_batch_size": 8,
        "max_queue_delay_us": 1000,
    })


# --------------------------------------------------------------------------
# Requests and responses

def dumps(obj):
    """Compact JSON, as a client would send it."""
    return json.dumps(obj, separators=(",", ":"))


def float32_list(array):
    """Nested list of Python floats, each printing as the shortest decimal
    that round-trips its float32 value (so float32(parsed) == array exactly)."""
    array = np.asarray(array, dtype=np.float32)
    short = np.array([float(str(v)) for v in array.ravel()], dtype=np.float64)
    assert (short.astype(np.float32) == array.ravel()).all()
    return short.reshape(array.shape).tolist()


def rounded_list(array, digits=6):
    """Nested list rounded to `digits` decimals: small bodies, approximate values."""
    return np.round(np.asarray(array, dtype=np.float64), digits).tolist()


def assert_error(response, status):
    """`response` has `status` and a JSON body {"error": "<one line>"}."""
    detail = f"{response.request.method} {response.url} -> {response.status_code}: {response.text[:500]!r}"
    assert response.status_code == status, detail
    assert response.headers.get("Content-Type", "").startswith("application/json"), \
        f"error Content-Type {response.headers.get('Content-Type')!r}; {detail}"
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON; {detail}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), str), detail
    message = body["error"]
    assert message.strip(), f"empty error message; {detail}"
    assert "\n" not in message and "\r" not in message, f"error message is not one line; {detail}"
    return message


_SAMPLE_IMAGE = None


def sample_image():
    """One test-set image, float32 [1,28,28] (cached)."""
    global _SAMPLE_IMAGE
    if _SAMPLE_IMAGE is None:
        x, _ = fashion_mnist_data.load("test")
        _SAMPLE_IMAGE = x[0].copy()
    return _SAMPLE_IMAGE


def assert_still_serves(daemon):
    """A valid one-image request to /predict answers 200 with one prediction."""
    assert daemon.proc.poll() is None, f"inferd is gone\n{daemon.describe()}"
    r = daemon.predict({"inputs": rounded_list(sample_image()[None])})
    assert r.status_code == 200, f"valid request after an error: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["shape"] == [1, 10]
    assert len(body["outputs"]) == 1 and len(body["outputs"][0]) == 10


# --------------------------------------------------------------------------
# Raw HTTP, for what requests cannot send (short bodies, chunked uploads)

def predict_head(body_len, request_id):
    """The request line and headers of a JSON POST /predict whose body is
    body_len bytes, for tests that write to a raw socket."""
    return (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Request-ID: {request_id}\r\nContent-Length: {body_len}\r\n\r\n").encode()


def raw_exchange(port, data, timeout=5.0):
    """Send `data` on a fresh loopback connection without closing our side,
    and read one response (until its Content-Length is in, the server closes,
    or `timeout`). Returns (status, headers dict lower-cased, body bytes)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before taking everything
        buf = b""
        while b"\r\n\r\n" not in buf or not _response_complete(buf):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            s.settimeout(remaining)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not match:
        raise AssertionError(f"no HTTP response within {timeout} s; got {buf[:200]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(match.group(1)), headers, body


def _response_complete(buf):
    head, _, body = buf.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return match is not None and len(body) >= int(match.group(1))
