"""Hostile clients: requests meant to crash, starve or bloat inferd.

Every case ends with survives(daemon): the process is alive, a health check
from another loopback address (127.0.0.2, so per-address limits do not apply
to it) answers within 2 s, and a normal request is answered correctly.

Sections, one per class of attack (see the README's "Hostile clients"):
crashes, connection floods and slow clients, memory amplification, CPU
amplification, log injection, slot leaks, leaks in answers.
"""
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from support import (_save_scripted, add_fashion_mnist, assert_error, assert_still_serves, dumps,
                     sample_image)


def torch_module():
    """torch.nn.Module, imported when a test module defines a model."""
    import torch
    return torch.nn.Module

HEALTH_DEADLINE_S = 2.0


def health_from(daemon, source="127.0.0.2", timeout=HEALTH_DEADLINE_S):
    """GET /v2/health/live on a fresh connection from `source`; returns the
    status code, or raises if no answer came within `timeout`."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        while b"\r\n" not in buf:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    assert time.monotonic() <= deadline + 0.05, f"health check took over {timeout} s"
    line = buf.split(b"\r\n", 1)[0].decode("latin-1")
    assert line.startswith("HTTP/1."), f"no HTTP answer to a health check: {buf[:100]!r}"
    return int(line.split()[1])


def survives(daemon):
    """The daemon is alive, answers a health check from another address
    within 2 s, and answers a normal request correctly."""
    assert daemon.proc.poll() is None, f"inferd is gone\n{daemon.describe()}"
    assert health_from(daemon) == 200
    assert_still_serves(daemon)


# ---------------------------------------------------------------------------
# Crashes

def v2_binary(daemon, model, inputs, timeout=10):
    """POST a v2 binary request: inputs are (name, datatype, shape, raw bytes)."""
    header = {"inputs": [{"name": n, "datatype": dt, "shape": shape,
                          "parameters": {"binary_data_size": len(raw)}}
                         for n, dt, shape, raw in inputs]}
    head = dumps(header).encode()
    body = head + b"".join(raw for *_, raw in inputs)
    return daemon.post(f"/v2/models/{model}/infer", data=body, timeout=timeout,
                       headers={"Content-Type": "application/octet-stream",
                                "Inference-Header-Content-Length": str(len(head))})


@pytest.mark.parametrize("server", [["--max-queue-delay-us", "200000"]], indirect=True)
def test_empty_batches_in_one_batch(server):
    """16 requests of 0 samples at once (several would land in one batch and
    divide by the batch's 0 samples): each gets 400, the daemon lives."""
    def send(_):
        return v2_binary(server, "fashion_mnist", [("input", "FP32", [0, 1, 28, 28], b"")])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(16)))
    for r in answers:
        message = assert_error(r, 400)
        assert "no elements" in message, message
    survives(server)


@pytest.mark.parametrize("server", [["--max-queue-delay-us", "200000"]], indirect=True)
def test_empty_input_with_real_ones(server):
    """An empty request among real ones: the real ones are answered."""
    x = sample_image()[None].astype(np.float32)
    def send(i):
        if i % 2:
            return v2_binary(server, "fashion_mnist", [("input", "FP32", [0, 1, 28, 28], b"")])
        return v2_binary(server, "fashion_mnist", [("input", "FP32", [1, 1, 28, 28], x.tobytes())])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    for i, r in enumerate(answers):
        assert r.status_code == (400 if i % 2 else 200), r.text[:200]
    survives(server)


class MeanPool(torch_module()):
    def forward(self, x):
        return x.mean(dim=[2, 3])


@pytest.fixture(scope="module")
def variable_repo(tmp_path_factory, model_repo):
    """fashion_mnist plus "pool": FP32 [-1,1,-1,-1] -> [-1,1] (two variable dims)."""
    repo = tmp_path_factory.mktemp("hostile_repo")
    add_fashion_mnist(repo)
    _save_scripted(MeanPool(), repo, "pool", {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, -1, -1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
        "max_batch_size": 8, "max_queue_delay_us": 1000})
    return repo


@pytest.mark.parametrize("dims", [[1, 1, 2147483648, 2147483648],   # * 4 bytes wraps to 0
                                  [1, 1, 4294967296, 4294967296],   # numel wraps to 0
                                  [1, 1, 1 << 39, 1 << 39],         # numel overflows int64
                                  [2, 1, 3037000500, 3037000500]])  # numel just over int64
def test_size_arithmetic_does_not_wrap(start_daemon, variable_repo, dims):
    """A shape whose byte size wraps around 2^64 is refused (it used to pass
    every check and let libtorch read out of bounds)."""
    daemon = start_daemon(repo=variable_repo)
    r = v2_binary(daemon, "pool", [("x", "FP32", dims, b"")])
    message = assert_error(r, 400)
    assert "too large" in message or "does not match" in message, message
    r = v2_binary(daemon, "pool", [("x", "FP32", [1, 1, 2, 3], np.arange(6, dtype="<f4").tobytes())])
    assert r.status_code == 200, r.text[:300]
    survives(daemon)
