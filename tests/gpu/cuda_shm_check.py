#!/usr/bin/python3
"""The CUDA shared memory extension end to end, run by tests/gpu/run.sh.

--mode gpu: this process allocates a CUDA tensor with python torch,
exports its memory as a CUDA IPC handle (torch's storage._share_cuda_(),
the handle of the allocation holding the storage and the storage's offset in
it), registers it with inferd (POST /v2/cudasharedmemory/region/.../register),
runs a model whose input is read from the region and whose output is written
into it further on, and compares the output with torch's on the same input; then
checks status and a too-small output, and unregisters.

--mode cpu (CI, and any machine without CUDA): registering a CUDA region is
refused with 400 "CUDA is not available", and the status lists nothing.

Writes cuda-shm.json into --out; exit status 1 when a check fails.
"""
import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import requests
import torch


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2 + 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(inferd, repo, log):
    port = free_port()
    proc = subprocess.Popen([inferd, "--host", "127.0.0.1", "--port", str(port),
                             "--model-repository", repo, "--default-model", "double",
                             "--shared-memory"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("inferd exited during start-up")
        try:
            if requests.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                return proc, base
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("inferd did not become ready")


def export(t):
    """(handle bytes, region byte size, offset of t in the region) for CUDA tensor t:
    the region is the allocation holding t's storage, up to t's end."""
    storage = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    shared = storage._share_cuda_()
    handle, offset = shared[1], shared[3]
    return handle, offset + t.numel() * t.element_size(), offset


def check_gpu(base):
    # One allocation, one handle (a handle is opened once per process): the
    # input at its start, the output 256 bytes in.
    buf = torch.zeros(128, device="cuda")
    x, y = buf[0:32].view(4, 8), buf[64:96].view(4, 8)
    x.copy_(torch.randn(4, 8, device="cuda"))
    torch.cuda.synchronize()
    handle, size, offset = export(buf)
    r = requests.post(f"{base}/v2/cudasharedmemory/region/cuda_io/register",
                      json={"raw_handle": {"b64": base64.b64encode(handle).decode()},
                            "device_id": buf.device.index or 0, "byte_size": size})
    assert r.status_code == 200, r.text
    status = requests.get(f"{base}/v2/cudasharedmemory/status").json()
    assert [s["name"] for s in status] == ["cuda_io"], status
    assert "cuda_shared_memory" in requests.get(f"{base}/v2").json()["extensions"]
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 8],
                        "parameters": {"shared_memory_region": "cuda_io",
                                       "shared_memory_byte_size": 128,
                                       "shared_memory_offset": offset}}],
            "outputs": [{"name": "y", "parameters": {"shared_memory_region": "cuda_io",
                                                     "shared_memory_byte_size": 128,
                                                     "shared_memory_offset": offset + 256}}]}
    r = requests.post(f"{base}/v2/models/double/infer", json=body)
    assert r.status_code == 200, r.text
    torch.cuda.synchronize()
    want = x * 2 + 1
    err = (y - want).abs().max().item()
    assert err <= 1e-5, f"output in CUDA shared memory differs from torch by {err}"
    # Too small: 400 with the sizes.
    body["outputs"][0]["parameters"]["shared_memory_byte_size"] = 64
    r = requests.post(f"{base}/v2/models/double/infer", json=body)
    assert r.status_code == 400 and "needs 128 bytes" in r.text, r.text
    r = requests.post(f"{base}/v2/cudasharedmemory/region/cuda_io/unregister")
    assert r.status_code == 200, r.text
    assert requests.get(f"{base}/v2/cudasharedmemory/status").json() == []
    return {"max_abs_error": err}


def check_cpu(base):
    r = requests.post(f"{base}/v2/cudasharedmemory/region/g/register",
                      json={"raw_handle": {"b64": base64.b64encode(bytes(64)).decode()},
                            "device_id": 0, "byte_size": 64})
    assert r.status_code == 400 and "CUDA is not available" in r.json()["error"], r.text
    assert requests.get(f"{base}/v2/cudasharedmemory/status").json() == []
    return {"refused": r.json()["error"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["gpu", "cpu"], required=True)
    ap.add_argument("--inferd", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    result = {"mode": args.mode, "ok": False}
    with tempfile.TemporaryDirectory() as repo:
        folder = os.path.join(repo, "double")
        os.makedirs(folder)
        torch.jit.script(Double().eval()).save(os.path.join(folder, "model.pt"))
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"name": "double", "file": "model.pt",
                       "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}],
                       "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 8]}],
                       "max_batch_size": 8}, f)
        with open(os.path.join(args.out, "cuda-shm.log"), "w") as log:
            proc, base = start(args.inferd, repo, log)
            try:
                result.update(check_gpu(base) if args.mode == "gpu" else check_cpu(base))
                result["ok"] = True
            except AssertionError as e:
                result["error"] = str(e)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    with open(os.path.join(args.out, "cuda-shm.json"), "w") as f:
        json.dump(result, f, indent=2)
    print("cuda shared memory:", json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
