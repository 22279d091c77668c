#!/usr/bin/python3
"""The same 3x224x224 FP32 tensor (602,112 bytes) sent to inferd two ways in
one run: in the body as a v2 binary tensor, and left in a system shared
memory region (multiprocessing.shared_memory, registered once) that the
request names. Requests per second (wrk) and server CPU per request (the
sum of every inferd thread's run time from /proc/PID/task/*/schedstat) at
concurrency 1 and 32.

The model is bench/v2_payload.py's `sample` (per-channel sum of every 16th
pixel: a forward of a few microseconds), so that the figures are the cost of
moving the tensor through inferd. Its 3-float output comes back in the body
(binary) for the body requests and is written into the region for the
shared-memory ones. Rounds of the two paths alternate on one server, so that
the machine's noise falls on both; each figure is the median of the rounds.

Usage: /usr/bin/python3 bench/shm_payload.py [--seconds S] [--rounds N]
(make bench-shm). Needs build/inferd and wrk. Prints a markdown table.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from multiprocessing import shared_memory

import numpy as np
import requests
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out", "shm_payload")
SHAPE = (1, 3, 224, 224)
OUT_OFFSET = 602112 + 4096 - 602112 % 4096  # the output's place in the region


class ChannelSample(torch.nn.Module):
    def forward(self, x):
        return x[:, :, ::16, ::16].sum(dim=(2, 3))


def make_repository(repo):
    folder = os.path.join(repo, "sample")
    os.makedirs(folder, exist_ok=True)
    torch.jit.script(ChannelSample()).save(os.path.join(folder, "model.pt"))
    config = {"name": "sample", "file": "model.pt",
              "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
              "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
              "max_batch_size": 8, "max_queue_delay_us": 500}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
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


def bodies(x, region):
    """{path: (body bytes, Content-Type, Inference-Header-Content-Length or '')}"""
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(SHAPE),
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    shm = json.dumps({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": list(SHAPE),
                    "parameters": {"shared_memory_region": region,
                                   "shared_memory_byte_size": x.nbytes}}],
        "outputs": [{"name": "y", "parameters": {"shared_memory_region": region,
                                                 "shared_memory_byte_size": 12,
                                                 "shared_memory_offset": OUT_OFFSET}}]}).encode()
    return {"HTTP binary": (head + x.tobytes(), "application/octet-stream", str(len(head))),
            "system shared memory": (shm, "application/json", "")}


def check(url, paths, mem, want):
    for name, (body, ctype, hlen) in paths.items():
        headers = {"Content-Type": ctype}
        if hlen:
            headers["Inference-Header-Content-Length"] = hlen
        r = requests.post(url, data=body, headers=headers)
        assert r.status_code == 200, r.text
        if hlen:
            got = np.frombuffer(r.content[int(r.headers["Inference-Header-Content-Length"]):],
                                "<f4")
        else:
            got = np.frombuffer(bytes(mem.buf[OUT_OFFSET:OUT_OFFSET + 12]), "<f4")
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5), (name, got, want)


def run_wrk(pid, url, body, ctype, hlen, conns, seconds):
    path = os.path.join(OUT, "body.bin")
    with open(path, "wb") as f:
        f.write(body)
    env = dict(os.environ, BENCH_BODY=path, BENCH_CONTENT_TYPE=ctype,
               BENCH_V2_HEADER_LENGTH=hlen)
    c0 = cpu_seconds(pid)
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "30s",
                          "-s", os.path.join(ROOT, "bench", "post.lua"), url],
                         env=env, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - c0
    line = re.search(r"^BENCH (.*)$", out, re.M).group(1)
    fields = dict(kv.split("=") for kv in line.split())
    n = int(fields["requests"])
    assert int(fields["non2xx"]) == 0 and n > 0, line
    return float(fields["rps"]), cpu / n, int(fields["p50_us"]) / 1e3, int(fields["p99_us"]) / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5, help="per wrk round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per path and concurrency")
    args = ap.parse_args()
    binary_path = os.path.join(ROOT, "build", "inferd")
    if not os.access(binary_path, os.X_OK):
        sys.exit("bench/shm_payload.py: build/inferd is missing: run make")
    os.makedirs(OUT, exist_ok=True)
    make_repository(OUT)
    port = free_port()
    proc = subprocess.Popen([binary_path, "--host", "127.0.0.1", "--port", str(port),
                             "--model-repository", OUT, "--default-model", "sample",
                             "--log-level", "warn", "--devices", "cpu", "--shared-memory"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    x = (np.random.default_rng(0).integers(0, 256, SHAPE).astype(np.float32) / 255)
    mem = shared_memory.SharedMemory(create=True, size=OUT_OFFSET + 4096)
    try:
        wait_ready(base, proc)
        mem.buf[:x.nbytes] = x.tobytes()
        r = requests.post(f"{base}/v2/systemsharedmemory/region/bench/register",
                          json={"key": mem.name, "offset": 0, "byte_size": mem.size})
        assert r.status_code == 200, r.text
        url = f"{base}/v2/models/sample/infer"
        paths = bodies(x, "bench")
        check(url, paths, mem, x[:, :, ::16, ::16].sum(axis=(2, 3)).ravel())
        results = {}
        for conns in (1, 32):
            for _ in range(args.rounds):
                for name, (body, ctype, hlen) in paths.items():
                    results.setdefault((conns, name), []).append(
                        run_wrk(proc.pid, url, body, ctype, hlen, conns, args.seconds))
        print(f"one 3x224x224 FP32 tensor per request (602,112 bytes), model `sample`; "
              f"wrk -t1, {args.rounds} alternating rounds of {args.seconds} s per point, "
              f"medians; CPU = all inferd threads\n")
        print("| concurrency | path | request body bytes | req/s | server CPU ms/request "
              "| p50 ms | p99 ms |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for (conns, name), rows in results.items():
            med = [statistics.median(col) for col in zip(*rows)]
            print(f"| {conns} | {name} | {len(paths[name][0]):,} | {med[0]:,.0f} | "
                  f"{med[1] * 1e3:.3f} | {med[2]:.2f} | {med[3]:.2f} |")
        print()
        for conns in (1, 32):
            b = [statistics.median(c) for c in zip(*results[(conns, "HTTP binary")])]
            s = [statistics.median(c) for c in zip(*results[(conns, "system shared memory")])]
            print(f"c={conns}: shared memory {s[0] / b[0]:.2f}x the req/s of HTTP binary, "
                  f"{b[1] / s[1]:.2f}x less server CPU per request")
        requests.post(f"{base}/v2/systemsharedmemory/region/bench/unregister")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        mem.close()
        mem.unlink()


if __name__ == "__main__":
    main()
