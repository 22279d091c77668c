#!/usr/bin/python3
"""One client at a time (wrk -c1) on system shared memory: what the batching
wait costs a closed loop. Three daemons of the same build serve
bench/shm_payload.py's `sample` model (a forward of a few microseconds):
  delay 500 adaptive  - max_queue_delay_us 500, --batch-wait adaptive
  delay 500 always    - max_queue_delay_us 500, --batch-wait always
  delay 0             - max_queue_delay_us 0 (no wait at all: the floor)
Rounds alternate between them so that the machine's noise falls on all
three; each figure is the median of the rounds. The issue 21 target: the
c=1 p50 within 0.2 ms of the raw batch-1 forward (a few microseconds here).

Usage: /usr/bin/python3 bench/shm_c1_wait.py [--seconds S] [--rounds N]
Needs build/inferd and wrk. Prints a markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
from multiprocessing import shared_memory

import numpy as np
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shm_payload as sp  # noqa: E402
import v2_payload as vp  # noqa: E402


SETUPS = [("delay 500 adaptive", 500, "adaptive"), ("delay 500 always", 500, "always"),
          ("delay 0", 0, "adaptive")]


def start(name, delay, wait, work):
    repo = os.path.join(work, name.replace(" ", "_"))
    sp.make_repository(repo)
    path = os.path.join(repo, "sample", "config.json")
    with open(path) as f:
        config = json.load(f)
    config["max_queue_delay_us"] = delay
    with open(path, "w") as f:
        json.dump(config, f)
    port = vp.free_port()
    proc = subprocess.Popen([os.path.join(vp.ROOT, "build", "inferd"), "--model-repository", repo,
                             "--default-model", "sample", "--port", str(port), "--grpc-port", "0",
                             "--devices", "cpu", "--shared-memory", "--batch-wait", wait],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    vp.wait_ready(base, proc)
    return proc, base


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=4, help="per wrk round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per setup")
    args = ap.parse_args()
    os.makedirs(sp.OUT, exist_ok=True)
    x = np.random.default_rng(0).random(sp.SHAPE, dtype=np.float32)
    mem = shared_memory.SharedMemory(create=True, size=sp.OUT_OFFSET + 4096)
    daemons = {}
    try:
        mem.buf[:x.nbytes] = x.tobytes()
        want = x[:, :, ::16, ::16].sum(axis=(2, 3))
        for name, delay, wait in SETUPS:
            daemons[name] = start(name, delay, wait, sp.OUT)
        paths = {}
        for name, (proc, base) in daemons.items():
            r = requests.post(f"{base}/v2/systemsharedmemory/region/r/register",
                              json={"key": "/" + mem.name.lstrip("/"), "offset": 0,
                                    "byte_size": mem.size})
            assert r.status_code == 200, r.text
            paths = sp.bodies(x, "r")
            sp.check(f"{base}/v2/models/sample/infer",
                     {"system shared memory": paths["system shared memory"]}, mem, want)
        body, ctype, hlen = paths["system shared memory"]
        rows = {name: [] for name in daemons}
        for _ in range(args.rounds):
            for name, (proc, base) in daemons.items():
                rows[name].append(sp.wrk_cpu(proc.pid, f"{base}/v2/models/sample/infer", body,
                                             ctype, hlen, 1, args.seconds))
        sp.print_medians("setup (c=1, system shared memory)", rows)
    finally:
        for proc, _ in daemons.values():
            proc.terminate()
            proc.wait(timeout=30)
        mem.close()
        mem.unlink()


if __name__ == "__main__":
    main()
