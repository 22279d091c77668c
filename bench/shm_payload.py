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
The model, the server's start-up and the load loop are bench/v2_payload.py's.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
from multiprocessing import shared_memory

import numpy as np
import requests

from v2_payload import ROOT, ChannelSample, alternate, cpu_seconds, inferd_binary, save_model, \
    start_inferd, wait_ready

OUT = os.path.join(ROOT, "bench", "out", "shm_payload")
SHAPE = (1, 3, 224, 224)
OUT_OFFSET = 602112 + 4096 - 602112 % 4096  # the output's place in the region


def make_repository(repo):
    save_model(repo, "sample", ChannelSample(), max_batch_size=8, max_queue_delay_us=500)


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


def run_wrk(url, body, ctype, hlen, conns, seconds):
    """One wrk round: (req/s, requests, p50 ms, p99 ms)."""
    path = os.path.join(OUT, "body.bin")
    with open(path, "wb") as f:
        f.write(body)
    env = dict(os.environ, BENCH_BODY=path, BENCH_CONTENT_TYPE=ctype,
               BENCH_V2_HEADER_LENGTH=hlen)
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "30s",
                          "-s", os.path.join(ROOT, "bench", "post.lua"), url],
                         env=env, capture_output=True, text=True, check=True).stdout
    line = re.search(r"^BENCH (.*)$", out, re.M).group(1)
    fields = dict(kv.split("=") for kv in line.split())
    n = int(fields["requests"])
    assert int(fields["non2xx"]) == 0 and n > 0, line
    return float(fields["rps"]), n, int(fields["p50_us"]) / 1e3, int(fields["p99_us"]) / 1e3


def wrk_cpu(pid, url, body, ctype, hlen, conns, seconds):
    """One wrk round with the daemon's CPU: (req/s, server CPU s/request, p50 ms, p99 ms)."""
    c0 = cpu_seconds(pid)
    rps, n, p50, p99 = run_wrk(url, body, ctype, hlen, conns, seconds)
    return rps, (cpu_seconds(pid) - c0) / n, p50, p99


def wrk_round(url, body, ctype, hlen, conns, seconds):
    return lambda: run_wrk(url, body, ctype, hlen, conns, seconds)


def medians(rows):
    """Column medians of rows of (req/s, CPU s per request, p50 ms, p99 ms, ...)."""
    return [statistics.median(col) for col in zip(*rows)]


def print_medians(first, rows):
    """A Markdown table of each setup's medians: first names the first column;
    rows maps a setup's name to its rounds."""
    print(f"| {first} | req/s | server CPU ms/request | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, v in rows.items():
        med = medians(v)
        print(f"| {name} | {med[0]:,.0f} | {med[1] * 1e3:.3f} | {med[2]:.2f} | {med[3]:.2f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5, help="per wrk round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per path and concurrency")
    args = ap.parse_args()
    binary_path = inferd_binary("shm_payload.py")
    os.makedirs(OUT, exist_ok=True)
    make_repository(OUT)
    proc, base = start_inferd(binary_path, OUT, "--shared-memory")
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
            runs = [(name, wrk_round(url, body, ctype, hlen, conns, args.seconds))
                    for name, (body, ctype, hlen) in paths.items()]
            rounds = alternate(proc.pid, runs,
                               lambda r: min(len(done) for done in r.values()) < args.rounds)
            for name, done in rounds.items():
                # (req/s, server CPU s/request, p50 ms, p99 ms) per round
                results[(conns, name)] = [(rps, cpu / n, p50, p99)
                                          for cpu, _, (rps, n, p50, p99) in done]
        print(f"one 3x224x224 FP32 tensor per request (602,112 bytes), model `sample`; "
              f"wrk -t1, {args.rounds} alternating rounds of {args.seconds} s per point, "
              f"medians; CPU = all inferd threads\n")
        print("| concurrency | path | request body bytes | req/s | server CPU ms/request "
              "| p50 ms | p99 ms |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for (conns, name), rows in results.items():
            med = medians(rows)
            print(f"| {conns} | {name} | {len(paths[name][0]):,} | {med[0]:,.0f} | "
                  f"{med[1] * 1e3:.3f} | {med[2]:.2f} | {med[3]:.2f} |")
        print()
        for conns in (1, 32):
            b = medians(results[(conns, "HTTP binary")])
            s = medians(results[(conns, "system shared memory")])
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
