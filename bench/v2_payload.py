#!/usr/bin/python3
"""Server CPU time per request for the same 3x224x224 FP32 tensor sent as
KServe v2 JSON and as v2 binary (the binary tensor extension), answered in the
same form. The model is tiny (per-channel means) so that the figure is the
cost of moving the tensor through inferd, not of the model.

Usage: /usr/bin/python3 bench/v2_payload.py [--requests N] [--seconds S]   (make bench-v2)
Needs build/inferd. Prints a markdown table; the target is binary >= 20x
cheaper than JSON.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import requests
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out", "v2_payload")


class ChannelMeans(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def make_model(repo):
    folder = os.path.join(repo, "payload")
    os.makedirs(folder, exist_ok=True)
    torch.jit.script(ChannelMeans()).save(os.path.join(folder, "model.pt"))
    config = {"name": "payload", "file": "model.pt",
              "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
              "outputs": [{"name": "means", "datatype": "FP32", "shape": [-1, 3]}],
              "max_batch_size": 1, "max_queue_delay_us": 0}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40, help="at least this many per path")
    ap.add_argument("--seconds", type=float, default=5.0, help="and at least this long")
    args = ap.parse_args()
    binary_path = os.path.join(ROOT, "build", "inferd")
    if not os.access(binary_path, os.X_OK):
        sys.exit("bench/v2_payload.py: build/inferd is missing: run make")
    make_model(OUT)
    port = free_port()
    proc = subprocess.Popen([binary_path, "--host", "127.0.0.1", "--port", str(port),
                             "--model-repository", OUT, "--default-model", "payload",
                             "--log-level", "warn", "--devices", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v2/models/payload/infer"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        else:
            sys.exit("inferd did not become ready")
        x = np.random.default_rng(0).integers(0, 256, (1, 3, 224, 224)).astype(np.float32) / 255
        want = x.mean(axis=(2, 3))
        json_body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32",
                                            "shape": [1, 3, 224, 224],
                                            "data": x.ravel().tolist()}]}).encode()
        head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "parameters": {"binary_data_output": True}}).encode()
        binary_body = head + x.tobytes()
        session = requests.Session()

        def send_json():
            r = session.post(url, data=json_body, headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.text
            return np.array(r.json()["outputs"][0]["data"], dtype=np.float32)

        def send_binary():
            r = session.post(url, data=binary_body,
                             headers={"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(len(head))})
            assert r.status_code == 200, r.text
            n = int(r.headers["Inference-Header-Content-Length"])
            return np.frombuffer(r.content[n:], dtype="<f4")

        rows = []
        for name, send, size in (("v2 JSON", send_json, len(json_body)),
                                 ("v2 binary", send_binary, len(binary_body))):
            got = send()  # warm-up, and a check that both paths agree with numpy
            assert np.allclose(got, want.ravel(), atol=1e-5), (name, got, want)
            # /proc counts CPU in clock ticks (10 ms): run long enough for
            # hundreds of them.
            c0, t0, n = cpu_seconds(proc.pid), time.monotonic(), 0
            while n < args.requests or time.monotonic() - t0 < args.seconds:
                send()
                n += 1
            cpu = (cpu_seconds(proc.pid) - c0) / n
            wall = (time.monotonic() - t0) / n
            rows.append((name, size, n, cpu, wall))
        print("sequential requests, one 3x224x224 FP32 tensor each, reply in the same form\n")
        print("| path | request bytes | requests | server CPU ms/request | wall ms/request |")
        print("|---|---:|---:|---:|---:|")
        for name, size, n, cpu, wall in rows:
            print(f"| {name} | {size:,} | {n} | {cpu * 1e3:.3f} | {wall * 1e3:.2f} |")
        ratio = rows[0][3] / max(rows[1][3], 1e-9)
        print(f"\nbinary is {ratio:.1f}x cheaper in server CPU than JSON (target >= 20x)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
