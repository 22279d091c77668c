#!/usr/bin/python3
"""Generate the `slow` TorchScript test model for inferd's batching, overload
and drain tests.

    /usr/bin/python3 models/make_slow_model.py OUTPUT_REPOSITORY_DIR
        [--iterations N | --target-ms MS] [--name slow] [--max-batch-size 4]
        [--max-queue-delay-us 1000]

writes OUTPUT_REPOSITORY_DIR/<name>/{model.pt, config.json}:

    slow   x FP32 [-1,4] -> y FP32 [-1,4] = x * 2 (exactly)

Forward first runs N iterations of `h = tanh(h @ W)` on a constant 256x256
state (a fixed amount of work that does not depend on x or on the batch
size), then returns x * 2 + 0 * h.sum() (tanh keeps h bounded, so the sum
is finite and the output is exactly x * 2). A forward therefore takes a
roughly fixed time, whatever the batch size: N sets it.

--iterations fixes N. Without it, N is calibrated here by timing the forward
with torch.set_num_threads(1) so that one forward takes about --target-ms
(default 200 ms) on this CPU; the value chosen is printed and stored in
config.json under "_iterations" and "_calibrated_ms" (inferd ignores unknown
keys; they are there for people reading the folder).

Importable: make_slow_model(repo, ...) returns (folder, iterations, ms).
Needs python3-torch (Debian's 1.13 is what the tests use).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

SEED = 0
SIZE = 256

# As inferd's shim does (shim/runtime_torchscript.cpp): TorchScript's CPU
# fuser, on in Debian's torch 2.6 and off in 1.13, hangs this model's second
# forward there. Calibrate with the executor inferd runs.
torch._C._jit_override_can_fuse_on_cpu(False)
DEFAULT_TARGET_MS = 200.0


class Slow(torch.nn.Module):
    iterations: int

    def __init__(self, iterations: int):
        super().__init__()
        g = torch.Generator().manual_seed(SEED)
        # Scaled so that h @ W keeps a moderate magnitude; tanh bounds it anyway.
        self.register_buffer("weight", torch.randn(SIZE, SIZE, generator=g) / (SIZE ** 0.5))
        self.register_buffer("state", torch.randn(SIZE, SIZE, generator=g))
        self.iterations = iterations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.state
        for _ in range(self.iterations):
            h = torch.tanh(h.matmul(self.weight))
        return x * 2.0 + 0.0 * h.sum()


def time_forward_ms(iterations, repeats=3):
    """Fastest wall time of one forward of a scripted Slow(iterations), in
    ms, with one intra-op thread. The minimum, not the mean: other work on a
    shared machine only ever adds time, so the minimum is the best estimate
    of what this CPU does (and a busy machine makes the model slower, never
    faster, than calibrated)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module = torch.jit.script(Slow(iterations).eval())
        x = torch.zeros(1, 4)
        with torch.no_grad():
            for _ in range(2):  # the first calls profile and optimise the graph
                module(x)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                module(x)
                times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        torch.set_num_threads(old)
    return min(times)


def calibrate(target_ms=DEFAULT_TARGET_MS):
    """(iterations, measured ms) so that a forward takes about target_ms with
    one thread on this CPU: time a short probe, extrapolate, check, and
    correct once if the check is more than 25% off."""
    probe = 8
    per_iter = max(time_forward_ms(probe, repeats=5) / probe, 1e-3)
    iterations = max(1, int(round(target_ms / per_iter)))
    measured = time_forward_ms(iterations)
    if measured > 0 and abs(measured - target_ms) > 0.25 * target_ms:
        iterations = max(1, int(round(iterations * target_ms / measured)))
        measured = time_forward_ms(iterations)
    return iterations, measured


def make_slow_model(repo, name="slow", iterations=None, target_ms=DEFAULT_TARGET_MS,
                    max_batch_size=4, max_queue_delay_us=1000, extra_config=None):
    """Write repo/<name>/{model.pt, config.json}; return (folder, iterations,
    measured_ms or None when iterations was given)."""
    measured = None
    if iterations is None:
        iterations, measured = calibrate(target_ms)
    folder = Path(repo) / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Slow(int(iterations)).eval()).save(str(folder / "model.pt"))
    config = {
        "name": name,
        "file": "model.pt",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
        "max_batch_size": max_batch_size,
        "max_queue_delay_us": max_queue_delay_us,
        "_iterations": int(iterations),
    }
    if measured is not None:
        config["_calibrated_ms"] = round(measured, 1)
    config.update(extra_config or {})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder, int(iterations), measured


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repository", help="model repository folder to write into")
    parser.add_argument("--name", default="slow")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--iterations", type=int, help="matmul iterations per forward")
    group.add_argument("--target-ms", type=float, default=DEFAULT_TARGET_MS,
                       help="calibrate the iterations to this forward time (1 thread)")
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--max-queue-delay-us", type=int, default=1000)
    args = parser.parse_args(argv)
    folder, iterations, measured = make_slow_model(
        args.repository, args.name, args.iterations, args.target_ms,
        args.max_batch_size, args.max_queue_delay_us)
    timing = f", {measured:.1f} ms per forward (1 thread)" if measured is not None else ""
    print(f"{folder}: {iterations} iterations{timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
