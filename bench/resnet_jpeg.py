#!/usr/bin/python3
"""ResNet-18 on one JPEG photo per request, on this machine's CPUs: inferd
against the Python stacks it replaces (bench/image_apps.py: Flask + gunicorn,
one image per forward; FastAPI + uvicorn with an asyncio batcher) and against
the raw ceiling, in one run.

- The photo: python3-skimage's chelsea (451x300, from build/image-data, made
  by models/make_image_data.py), saved as JPEG quality 90;
  every stack decodes it and preprocesses it ImageNet's way (resize 256,
  centre crop 224, normalise) for each request.
- inferd: the model with that preprocessing declared in config.json,
  2 instances, max_batch_size 32, max_queue_delay_us 2000; once with the
  batch sizes measured at warm-up (the default) and once with measuring off
  (batches up to 32, as before issue 22).
- Raw ceiling: two processes of one torch thread each at once, each looping
  over decode + preprocess (PIL + torchvision) of a batch of B images and one
  forward of B; img/s summed; the best B of BENCH_RAW_BATCHES.
- Load: wrk (bench/post.lua, the JPEG as the raw image/jpeg body), one stack
  at a time, a warm-up at c=8 first.

Usage: bench/resnet_jpeg.py [--seconds 10] [--conc 1,8,32,64,128]
         [--stacks inferd,inferd_nomeasure,seed,fastapi] [--raw-batches 1,8,16]
Writes bench/out/resnet_jpeg/results.md (and the logs beside it).
"""
import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "bench", "out", "resnet_jpeg")
MODEL = os.path.join(ROOT, "build", "bench-models", "resnet18", "model.pt")
PY = "/usr/bin/python3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_photo():
    from PIL import Image
    png = os.path.join(ROOT, "build", "image-data", "photos", "chelsea.png")
    if not os.path.exists(png):  # python3-skimage's photos, saved by the committed script
        subprocess.run([PY, os.path.join(ROOT, "models", "make_image_data.py")], check=True)
    path = os.path.join(OUT, "chelsea.jpg")
    Image.open(png).convert("RGB").save(path, "JPEG", quality=90)
    return path


def make_repo(measure):
    repo = os.path.join(OUT, "repo-measure" if measure else "repo-fixed")
    folder = os.path.join(repo, "resnet18")
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(folder)
    os.symlink(MODEL, os.path.join(folder, "model.pt"))
    config = {
        "name": "resnet18", "file": "model.pt",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224],
                    "image": {"color": "rgb", "resize": 256, "crop": [224, 224],
                              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}],
        "max_batch_size": 32, "max_queue_delay_us": 2000, "instances": 2,
        "measure_batch_sizes": measure,
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return repo


def wait_ready(port, proc, timeout=180):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready in time")


def start(stack, port, log):
    env = dict(os.environ, IMAGE_MODEL=MODEL)
    if stack.startswith("inferd"):
        repo = make_repo(stack == "inferd")
        argv = [os.path.join(ROOT, "build", "inferd"), "--host", "127.0.0.1", "--port", str(port),
                "--model-repository", repo, "--default-model", "resnet18", "--log-level", "info"]
    elif stack == "seed":
        env.update(IMAGE_APP="seed", IMAGE_TORCH_THREADS="1")
        argv = ["gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}", "--chdir", HERE,
                "--timeout", "120", "image_apps:seed"]
    else:
        env.update(IMAGE_APP="batcher", IMAGE_TORCH_THREADS="2")
        argv = [PY, "-m", "uvicorn", "--app-dir", HERE, "--host", "127.0.0.1", "--port",
                str(port), "--log-level", "warning", "image_apps:batcher"]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def wrk(port, conc, seconds, photo, log_path):
    env = dict(os.environ, BENCH_BODY=photo, BENCH_CONTENT_TYPE="image/jpeg")
    with open(log_path, "w") as log:
        subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "--timeout", "30s",
                        "-s", os.path.join(HERE, "post.lua"),
                        f"http://127.0.0.1:{port}/predict"],
                       stdout=log, stderr=subprocess.STDOUT, env=env, timeout=seconds + 90,
                       cwd=ROOT)
    text = open(log_path).read()
    m = re.search(r"^BENCH (.*)$", text, re.M)
    if not m:
        return None
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def loadavg():
    return os.getloadavg()[0]


def run_stack(stack, concs, seconds, photo):
    port = free_port()
    log = open(os.path.join(OUT, f"{stack}.log"), "w")
    proc = start(stack, port, log)
    rows = []
    try:
        t0 = time.time()
        wait_ready(port, proc)
        ready_s = time.time() - t0
        wrk(port, 8, 5, photo, os.path.join(OUT, f"{stack}-warmup.txt"))
        for c in concs:
            la = loadavg()
            r = wrk(port, c, seconds, photo, os.path.join(OUT, f"{stack}-c{c}.txt"))
            rows.append((stack, c, r, la))
            if r:
                print(f"{stack:17s} c={c:3d} {r['rps']:7.1f} img/s p50 {r['p50_us'] / 1e3:7.0f} ms"
                      f" p99 {r['p99_us'] / 1e3:7.0f} ms non2xx {int(r['non2xx'])}"
                      f" load {la:.1f}", flush=True)
        extra = ""
        if stack.startswith("inferd"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/resnet18/config") as r:
                cfg = json.load(r)
            extra = json.dumps([{k: s.get(k) for k in ("instance", "batch_sizes",
                                                         "staged_requests", "input_bytes_copied",
                                                         "input_bytes_decoded_in_place")}
                                for s in cfg["instance_status"]])
        return rows, ready_s, extra
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def raw_worker(batch, seconds, photo, barrier, out):
    import torch
    from PIL import Image  # noqa: F401
    sys.path.insert(0, HERE)
    import image_apps
    model = image_apps.load_model(1)
    body = open(photo, "rb").read()
    with torch.inference_mode():
        for _ in range(2):
            model(torch.stack([image_apps.decode(body) for _ in range(batch)]))
        barrier.wait()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            model(torch.stack([image_apps.decode(body) for _ in range(batch)]))
            n += batch
        out.put(n / (time.perf_counter() - t0))


def raw_ceiling(batches, seconds, photo):
    best = (0, 0)
    ctx = multiprocessing.get_context("spawn")
    for b in batches:
        barrier, out = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=raw_worker, args=(b, seconds, photo, barrier, out))
                 for _ in range(2)]
        for p in procs:
            p.start()
        total = sum(out.get(timeout=seconds + 300) for _ in procs)
        for p in procs:
            p.join()
        print(f"raw 2x1 threads batch {b:3d}: {total:7.1f} img/s (decoding included)", flush=True)
        if total > best[1]:
            best = (b, total)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conc", default="1,8,32,64,128")
    ap.add_argument("--stacks", default="inferd,inferd_nomeasure,seed,fastapi")
    ap.add_argument("--raw-batches", default="1,8,16")
    ap.add_argument("--raw-seconds", type=int, default=8)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(MODEL):
        subprocess.run(["make", "-C", ROOT, "resnet18"], check=True)
    photo = make_photo()
    concs = [int(c) for c in args.conc.split(",")]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    all_rows, notes = [], []
    for stack in args.stacks.split(","):
        rows, ready_s, extra = run_stack(stack, concs, args.seconds, photo)
        all_rows += rows
        notes.append(f"- {stack}: ready after {ready_s:.1f} s. {extra}")
    raw_b, raw = raw_ceiling([int(b) for b in args.raw_batches.split(",")], args.raw_seconds, photo)
    lines = [f"Run started {started}; `bench/resnet_jpeg.py --seconds {args.seconds} --conc "
             f"{args.conc} --stacks {args.stacks} --raw-batches {args.raw_batches}`",
             f"Raw ceiling (2 processes x 1 thread, decoding included): {raw:.1f} img/s at "
             f"batch {raw_b}", "",
             "| stack | c | img/s | p50 ms | p99 ms | non-2xx | x raw | load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for stack, c, r, la in all_rows:
        if r is None:
            lines.append(f"| {stack} | {c} | (no result) | | | | | {la:.1f} |")
            continue
        lines.append(f"| {stack} | {c} | {r['rps']:.1f} | {r['p50_us'] / 1e3:.0f} | "
                     f"{r['p99_us'] / 1e3:.0f} | {int(r['non2xx'])} | {r['rps'] / raw:.2f} | "
                     f"{la:.1f} |")
    lines += [""] + notes
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
