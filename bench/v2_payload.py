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

bench/shm_payload.py imports its model, server start-up and load loop
(alternate) from here.
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


def save_model(repo, name, module, max_batch_size=1, max_queue_delay_us=0):
    """repo/name: module scripted, taking x [-1, 3, 224, 224] FP32 to y [-1, 3]."""
    folder = os.path.join(repo, name)
    os.makedirs(folder, exist_ok=True)
    torch.jit.script(module).save(os.path.join(folder, "model.pt"))
    config = {"name": name, "file": "model.pt",
              "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
              "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
              "max_batch_size": max_batch_size, "max_queue_delay_us": max_queue_delay_us}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)


def make_repository(repo):
    for name, (module, _) in MODELS.items():
        save_model(repo, name, module())


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


def inferd_binary(script):
    """build/inferd; exits naming script (bench/script) when it is missing."""
    binary_path = os.path.join(ROOT, "build", "inferd")
    if not os.access(binary_path, os.X_OK):
        sys.exit(f"bench/{script}: build/inferd is missing: run make")
    return binary_path


def start_inferd(binary_path, repo, *flags):
    """binary_path on a free loopback port serving repo (default model
    sample, quiet, CPU), not yet ready: (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([binary_path, "--host", "127.0.0.1", "--port", str(port),
                             "--model-repository", repo, "--default-model", "sample",
                             "--log-level", "warn", "--devices", "cpu", *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


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


def alternate(pid, runs, more):
    """The load loop: run each of runs ([(name, run)]) in turn, round after
    round, while more(rounds) says so (asked before each round of all of
    them), reading the server's CPU (process pid) around each run. Returns
    rounds: {name: [(server CPU s, wall s, what run returned), ...]}."""
    rounds = {name: [] for name, _ in runs}
    while more(rounds):
        for name, run in runs:
            c0, t0 = cpu_seconds(pid), time.monotonic()
            got = run()
            rounds[name].append((cpu_seconds(pid) - c0, time.monotonic() - t0, got))
    return rounds


def measure(pid, paths, seconds):
    """Alternate blocks of each path until seconds have passed; returns
    [(name, bytes, requests, cpu s/request, wall s/request)]."""
    def block_of(send, block):
        return lambda: [send() for _ in range(block)]

    start = time.monotonic()
    blocks = {name: block for name, _, _, block in paths}
    rounds = alternate(pid, [(name, block_of(send, block)) for name, send, _, block in paths],
                       lambda r: time.monotonic() - start < seconds or
                       min(len(r[name]) * blocks[name] for name in r) < 40)
    rows = []
    for name, _, size, block in paths:
        count = len(rounds[name]) * block
        cpu = sum(c for c, _, _ in rounds[name])
        wall = sum(w for _, w, _ in rounds[name])
        rows.append((name, size, count, cpu / count, wall / count))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=12.0, help="per model, both paths together")
    ap.add_argument("--model", choices=["sample", "mean", "both"], default="both")
    args = ap.parse_args()
    binary_path = inferd_binary("v2_payload.py")
    make_repository(OUT)
    proc, base = start_inferd(binary_path, OUT)
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
