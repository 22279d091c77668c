#!/usr/bin/python3
"""Raw in-process forward throughput of libtorch on the served model.

This is the ceiling no HTTP server can beat on this machine: the TorchScript
model called in a tight loop in one process, no parsing, no networking.
Python torch 1.13 here is Debian's build, the same libtorch the daemon links.

Thread specs (--threads, comma separated): "1", "2" = torch.set_num_threads(N)
with libgomp's default (active, spinning) wait policy; "2p" = N threads with
OMP_WAIT_POLICY=passive; "2x1" = two processes of one thread each at the same
time, samples/s summed (what two 1-thread model instances can do on 2 cores).
Each spec runs in freshly spawned processes (the wait policy is read once,
when libgomp loads); the processes of a KxN spec start each timed window
together (a barrier after warm-up).

Prints one line per (threads, batch) to stdout:
    RAW batch=B threads=T samples_per_s=X ms_per_batch=Y iters=N
and, last, the best one:
    RAW_BEST batch=B threads=T samples_per_s=X
With --csv FILE it also writes those rows as CSV.

Usage: bench/raw_forward.py [--model models/fashion_mnist/model.pt]
        [--seconds 2] [--threads 1,2,2p,2x1] [--batches 1,8,16,32,64] [--csv out.csv]
"""
import argparse
import multiprocessing
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load_images(n):
    import torch

    """Real Fashion-MNIST test images [n,1,28,28]; random ones if the
    dataset is missing (the forward cost does not depend on pixel values)."""
    sys.path.insert(0, os.path.join(ROOT, "models"))
    try:
        import fashion_mnist_data  # noqa: E402

        x, _ = fashion_mnist_data.load("test")
        x = torch.from_numpy(x[:n].copy())
    except Exception as e:  # pragma: no cover - dataset not installed
        print(f"# dataset unavailable ({e}); using random images", file=sys.stderr)
        x = torch.rand(n, 1, 28, 28)
    return x.contiguous()


def measure(model, images, batch, seconds, barrier=None, max_iters=1_000_000):
    import torch

    x = images[:batch].contiguous()
    with torch.inference_mode():
        # Warm-up: first calls run the profiling executor / allocate.
        t_end = time.perf_counter() + min(0.5, seconds / 4)
        for _ in range(1000):
            model(x)
            if time.perf_counter() >= t_end:
                break
        if barrier is not None:  # processes of one spec time the same window
            barrier.wait(timeout=300)
        iters = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while iters < max_iters:
            model(x)
            iters += 1
            if time.perf_counter() >= deadline:
                break
        dt = time.perf_counter() - t0
    return iters * batch / dt, dt / iters * 1e3, iters


def child(threads, model_path, batches, seconds, barrier, queue):
    """Measure every batch size at one thread count (runs in a spawned process,
    so the OMP_WAIT_POLICY the parent put in os.environ is read fresh)."""
    try:
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        model = torch.jit.load(model_path, map_location="cpu")
        model.eval()
        images = load_images(max(batches))
        for b in batches:
            queue.put((b,) + measure(model, images, b, seconds, barrier))
    except Exception as e:  # report, and let the others' barrier time out
        queue.put(("error", repr(e)))
        barrier.abort()


def run_spec(spec, args, batches):
    """One thread spec: N, Np or KxN[p]. Returns {batch: (samples/s, ms, iters)}."""
    procs, _, n = spec.rstrip("p").rpartition("x")
    procs, n = int(procs or 1), int(n)
    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ.pop("OMP_WAIT_POLICY", None)
    if spec.endswith("p"):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=child, args=(n, args.model, batches, args.seconds, barrier, queue))
               for _ in range(procs)]
    for w in workers:
        w.start()
    if saved is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = saved
    results, failed = {}, False
    deadline = time.monotonic() + 120 + len(batches) * (args.seconds + 2) * 2
    for _ in range(procs * len(batches)):
        try:
            item = queue.get(timeout=max(1.0, deadline - time.monotonic()))
        except Exception:
            print(f"# threads={spec}: timed out", file=sys.stderr)
            failed = True
            break
        if item[0] == "error":
            print(f"# threads={spec}: child failed: {item[1]}", file=sys.stderr)
            failed = True
            break
        results.setdefault(item[0], []).append(item[1:])
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.kill()
            w.join(timeout=10)
    out = {}
    for b, ms_list in results.items():
        if len(ms_list) == procs and not failed:
            out[b] = (sum(m[0] for m in ms_list), sum(m[1] for m in ms_list) / procs,
                      sum(m[2] for m in ms_list))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models/fashion_mnist/model.pt"))
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", default="1,2,2p,2x1",
                    help="thread specs, comma separated: N, Np (passive OMP wait), KxN (K processes)")
    ap.add_argument("--batches", default="1,8,16,32,64")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()

    batches = [int(b) for b in args.batches.split(",") if b]
    rows = []
    for spec in [t for t in args.threads.split(",") if t]:
        res = run_spec(spec, args, batches)
        for b in batches:
            if b not in res:
                continue
            sps, ms, iters = res[b]
            rows.append((b, spec, sps, ms, iters))
            print(f"RAW batch={b} threads={spec} samples_per_s={sps:.1f} "
                  f"ms_per_batch={ms:.4f} iters={iters}", flush=True)
    if not rows:
        sys.exit("raw_forward: no measurement succeeded")
    best = max(rows, key=lambda r: r[2])
    print(f"RAW_BEST batch={best[0]} threads={best[1]} samples_per_s={best[2]:.1f}", flush=True)
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("batch,threads,samples_per_s,ms_per_batch,iters\n")
            for b, t, sps, ms, iters in rows:
                f.write(f"{b},{t},{sps:.1f},{ms:.4f},{iters}\n")


if __name__ == "__main__":
    main()
