#!/usr/bin/python3
"""Two inferd binaries side by side, one 602,112-byte FP32 v2 binary request
(3x224x224) to a null-style model: requests per second, server CPU per
request and latency at one concurrency, in alternating wrk rounds (medians).

The repository is the one bench/callgrind.sh makes (models/ plus `null602`,
a sum over every 16th pixel per channel): run that first, or point --repo
at a repository with such a model.

Usage: /usr/bin/python3 bench/ab_602k.py BEFORE_BIN AFTER_BIN [--conc 32]
       [--seconds 4] [--rounds 3] [--repo bench/out/callgrind/repo]
A binary without gRPC (before issue 20) is started without --grpc-port.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shm_payload as sp  # noqa: E402
import v2_payload as vp  # noqa: E402



def start(binary, repo):
    port = vp.free_port()
    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    grpc = ["--grpc-port", "0"] if "--grpc-port" in help_text else []
    proc = subprocess.Popen([binary, "--model-repository", repo, "--port", str(port), "--devices",
                             "cpu", "--log-level", "warn"] + grpc,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vp.wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc, f"http://127.0.0.1:{port}/v2/models/null602/infer"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repo", default=os.path.join(vp.ROOT, "bench", "out", "callgrind", "repo"))
    args = ap.parse_args()
    x = (np.arange(3 * 224 * 224, dtype="<f4") % 251 / 251).reshape(1, 3, 224, 224)
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    body = head + x.tobytes()
    os.makedirs(sp.OUT, exist_ok=True)
    daemons = {}
    try:
        for name in ("before", "after"):
            daemons[name] = start(getattr(args, name), args.repo)
        rows = {n: [] for n in daemons}
        for _ in range(args.rounds):
            for n, (proc, url) in daemons.items():
                rows[n].append(sp.wrk_cpu(proc.pid, url, body, "application/octet-stream",
                                          str(len(head)), args.conc, args.seconds))
        sp.print_medians(f"binary (c={args.conc})", rows)
    finally:
        for proc, _ in daemons.values():
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
