#!/usr/bin/python3
"""Server CPU time per request for the same 3x224x224 FP32 tensor sent as
KServe v2 JSON and as v2 binary (the binary tensor extension), answered in the
same form.

The two paths are measured side by side in one run: blocks of JSON requests
alternate with blocks of binary requests on one server, so that the machine's
noise (a shared VM) falls on both. Server CPU is the sum of every inferd
thread's run time from /proc/PID/task/*/schedstat (nanoseconds), read before
and after each block.

Two tiny models, both per request, both identical for the two paths:
  sample  per-channel sum of every 16th pixel in each direction: its forward
          costs a few microseconds and never starts intra-op threads, so the
          figure is the cost of moving the tensor through inferd (the target)
  mean    per-channel mean of all 150,528 values: libtorch splits the
          reduction over its intra-op threads, whose wake-ups are model cost
          that both paths pay (reported for comparison)

Usage: /usr/bin/python3 bench/v2_payload.py [--seconds S] [--model sample|mean|both]
(make bench-v2). Needs build/inferd. Prints a markdown table; the target is
binary >= 20x cheaper than JSON on the sample model.
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


class ChannelSample(torch.nn.Module):
    def forward(self, x):
        return x[:, :, ::16, ::16].sum(dim=(2, 3))


class ChannelMeans(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


MODELS = {"sample": (ChannelSample, lambda x: x[:, :, ::16, ::16].sum(axis=(2, 3))),
          "mean": (ChannelMeans, lambda x: x.mean(axis=(2, 3)))}


def make_repository(repo):
    for name, (module, _) in MODELS.items():
        folder = os.path.join(repo, name)
        os.makedirs(folder, exist_ok=True)
        torch.jit.script(module()).save(os.path.join(folder, "model.pt"))
        config = {"name": name, "file": "model.pt",
                  "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
                  "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
                  "max_batch_size": 1, "max_queue_delay_us": 0}
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """Run time of every thread of pid, in seconds (ns resolution)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that ended between listdir and open
    return total / 1e9


def wait_ready(base, proc):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("inferd exited during start-up")
        try:
            if requests.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    sys.exit("inferd did not become ready")


def make_senders(session, url, x):
    json_body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32",
                                        "shape": list(x.shape),
                                        "data": x.ravel().tolist()}]}).encode()
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    binary_body = head + x.tobytes()

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

    return [("v2 JSON", send_json, len(json_body), 4), ("v2 binary", send_binary,
                                                        len(binary_body), 40)]


def measure(pid, paths, seconds):
    """Alternate blocks of each path until seconds have passed; returns
    [(name, bytes, requests, cpu s/request, wall s/request)]."""
    cpu = [0.0] * len(paths)
    wall = [0.0] * len(paths)
    count = [0] * len(paths)
    start = time.monotonic()
    while time.monotonic() - start < seconds or min(count) < 40:
        for i, (_, send, _, block) in enumerate(paths):
            c0, t0 = cpu_seconds(pid), time.monotonic()
            for _ in range(block):
                send()
            cpu[i] += cpu_seconds(pid) - c0
            wall[i] += time.monotonic() - t0
            count[i] += block
    return [(name, size, count[i], cpu[i] / count[i], wall[i] / count[i])
            for i, (name, _, size, _) in enumerate(paths)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=12.0, help="per model, both paths together")
    ap.add_argument("--model", choices=["sample", "mean", "both"], default="both")
    args = ap.parse_args()
    binary_path = os.path.join(ROOT, "build", "inferd")
    if not os.access(binary_path, os.X_OK):
        sys.exit("bench/v2_payload.py: build/inferd is missing: run make")
    make_repository(OUT)
    port = free_port()
    proc = subprocess.Popen([binary_path, "--host", "127.0.0.1", "--port", str(port),
                             "--model-repository", OUT, "--default-model", "sample",
                             "--log-level", "warn", "--devices", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        x = np.random.default_rng(0).integers(0, 256, (1, 3, 224, 224)).astype(np.float32) / 255
        session = requests.Session()
        models = ["sample", "mean"] if args.model == "both" else [args.model]
        print("sequential requests, one 3x224x224 FP32 tensor each, reply in the same form;")
        print("JSON and binary blocks alternate on one server; CPU = all inferd threads\n")
        print("| model | path | request bytes | requests | server CPU ms/request "
              "| wall ms/request |")
        print("|---|---|---:|---:|---:|---:|")
        ratios = []
        for model in models:
            paths = make_senders(session, f"{base}/v2/models/{model}/infer", x)
            want = MODELS[model][1](x).ravel()
            for name, send, _, _ in paths:  # warm-up, and both paths must agree with numpy
                for _ in range(5):
                    got = send()
                assert np.allclose(got, want, rtol=1e-5, atol=1e-5), (model, name, got, want)
            rows = measure(proc.pid, paths, args.seconds)
            for name, size, n, cpu, wall in rows:
                print(f"| {model} | {name} | {size:,} | {n} | {cpu * 1e3:.3f} | {wall * 1e3:.2f} |")
            ratios.append((model, rows[0][3] / max(rows[1][3], 1e-9)))
        print()
        for model, ratio in ratios:
            target = " (target >= 20x)" if model == "sample" else ""
            print(f"{model}: binary is {ratio:.1f}x cheaper in server CPU than JSON{target}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
