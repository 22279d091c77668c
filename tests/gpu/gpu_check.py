#!/usr/bin/env python3
"""The GPU check (tests/gpu/run.sh): correctness of inferd's CUDA path against
python torch on the CPU, then the benchmark against raw libtorch, in one run.
With --mode cpu the same steps run on the CPU (CI), minus the GPU-only ones,
which are reported as skipped.

Correctness (each failure makes the exit status 1):
  examples        models/examples/*.json through /predict on fashion_mnist
                  equal torch's CPU outputs (abs 1e-4)
  random          256 random batches (1..8 images, v2 binary) on `base`
                  equal the CPU reference (|d| <= 1e-4 + 1e-4 |ref|)
  variants        64 random batches (1..12) each on graphs, cl (same fp32
                  tolerance) and fp16, fp16cl (FP16_TOL, below)
  concurrent      16 clients x 16 requests at once on base (2 instances,
                  each with its own stream): every answer equals the reference
  memory          --gpu-memory-fraction 0.05: a request needing ~10 GB gets
                  500 with CUDA's message; the server goes on serving (GPU)
  metrics         /metrics has GPU memory used/total and utilisation for the
                  device, matching nvidia-smi (GPU); none on the CPU
  drain           SIGTERM while 16 clients keep batches on the device: no
                  request lost (each gets 200, or 503, or is refused before it
                  is accepted), exit status 0

Benchmark (never fails the run; targets reported as met or missed):
  raw_shim at batch 1, 8, 32, 128 with 1 and 2 threads; wrk posting one
  image per v2 binary request at c=1, 8, 32, 128 to base, and the speed
  settings on and off.

The AOTInductor package (--pt2; make_models.py --pt2 exported the same
weights as MODELS/pt2/pt2/model.pt2, a CUDA package on the GPU, a CPU one in
--mode cpu), served by a server of its own with the main server's settings
(2 instances per device, model folder `pt2`, platform torch_aoti):
  pt2 export      make_models.py exported it (MODELS/pt2-export.json)
  pt2 raw         raw_shim ran the package at every point below (1 and 2
                  threads, each with its own loader)
  pt2 metadata    /v2/models/pt2 says platform torch_aoti, max_batch_size the
                  package's maximum (128)
  pt2 random      the 256 random batches of `random` equal the eager model on
                  the CPU in fp32 (|d| <= 1e-4 + 1e-4 |ref|)
  pt2 concurrent  the same 256 batches from 16 clients at once (dynamic
                  batching inside the package's range): each equals the eager
                  model
  pt2 python      torch._inductor.aoti_load_package runs the package in this
                  process on the same batches (on the GPU in --mode gpu): its
                  outputs equal the eager model's and inferd's (same
                  tolerance)
  bench           raw_shim on the package (AOTIModelPackageLoader, batch 1,
                  8, 32, 64 with 1 and 2 threads) and inferd serving it (c=1,
                  8, 32, 128), side by side with the TorchScript rows, and
                  the ratios .pt2 / TorchScript
With --pt2-skip REASON (run.sh: the python torch cannot export packages, or
the build does not serve them) these are reported as skipped, with REASON.

Usage: gpu_check.py --mode gpu|cpu --inferd BIN --raw BIN --models DIR
                    --out DIR [--seconds S] [--wrk wrk] [--command "..."]
                    [--pt2 | --pt2-skip REASON]
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import requests
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import make_models  # noqa: E402  (the architectures, for the eager reference)

FP32_ATOL = FP32_RTOL = 1e-4
# fp16 keeps 11 significant bits (unit roundoff 4.9e-4). Through ResNet-18's
# 20 weighted layers the rounding of activations and accumulations compounds
# to a few parts in a thousand of the logits' scale; 2% of the largest
# |logit| of the sample leaves room for that and still catches a wrong
# layout, a missed conversion or a wrong output type, which are off by O(1).
FP16_TOL = 2e-2
READY_TIMEOUT_S = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, inferd, repo, flags, log_path):
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "w")
        args = [inferd, "--host", "127.0.0.1", "--port", str(self.port),
                "--model-repository", repo, "--log-format", "json"] + flags
        self.args = args
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.session = requests.Session()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self):
        t_end = time.time() + READY_TIMEOUT_S
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"inferd exited ({self.proc.returncode}): {self.tail()}")
            try:
                if self.session.get(self.url("/v2/health/ready"), timeout=2).status_code == 200:
                    return
                index = self.session.get(self.url("/v2/repository/index"), timeout=2).json()
                down = [f"{m['name']}: {m.get('reason', '?')}" for m in index
                        if m.get("state") == "UNAVAILABLE"]
                if down:
                    raise RuntimeError(f"model UNAVAILABLE: {'; '.join(down)}")
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"inferd not ready after {READY_TIMEOUT_S} s: {self.tail()}")

    def tail(self, n=15):
        self.log.flush()
        with open(self.log_path) as f:
            return "".join(f.readlines()[-n:])

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def v2_body(array, name="input"):
    array = np.ascontiguousarray(array, dtype=np.float32)
    header = json.dumps({"inputs": [{
        "name": name, "datatype": "FP32", "shape": list(array.shape),
        "parameters": {"binary_data_size": array.nbytes}}]}).encode()
    return header, header + array.tobytes()


def infer(session, server, model, array, name="input", timeout=60):
    """POST one v2 binary request; (status, outputs as np.array or error text)."""
    header, body = v2_body(array, name)
    r = session.post(server.url(f"/v2/models/{model}/infer"), data=body, timeout=timeout,
                     headers={"Content-Type": "application/octet-stream",
                              "Inference-Header-Content-Length": str(len(header))})
    if r.status_code != 200:
        return r.status_code, r.text
    out = r.json()["outputs"][0]
    return 200, np.array(out["data"], dtype=np.float32).reshape(out["shape"])


class Results:
    def __init__(self):
        self.checks = []  # (name, status, detail): status pass | FAIL | skipped
        self.bench = []   # dicts
        self.targets = []
        self.pt2_ratios = []  # dicts: what, torchscript, pt2, ratio

    def check(self, name, ok, detail):
        status = "pass" if ok else "FAIL"
        self.checks.append((name, status, detail))
        print(f"[check] {name}: {status} - {detail}", flush=True)

    def skip(self, name, why):
        self.checks.append((name, "skipped", why))
        print(f"[check] {name}: skipped - {why}", flush=True)

    @property
    def failed(self):
        return [c for c in self.checks if c[1] == "FAIL"]


def close_fp32(got, ref):
    return np.abs(got - ref) <= FP32_ATOL + FP32_RTOL * np.abs(ref)


def max_rel_fp16(got, ref):
    scale = np.maximum(np.abs(ref).max(axis=1, keepdims=True), 1.0)
    return float((np.abs(got - ref) / scale).max())


def random_batches(rng, n, shape, most):
    return [rng.standard_normal((int(rng.integers(1, most + 1)), *shape)).astype(np.float32)
            for _ in range(n)]


def reference(model, batches):
    with torch.no_grad():
        return [model(torch.from_numpy(b)).numpy() for b in batches]


def check_examples(res, srv, fm_model):
    worst, n, ok = 0.0, 0, True
    for name in sorted(os.listdir(os.path.join(ROOT, "models", "examples"))):
        if not name.startswith("sample_"):
            continue
        with open(os.path.join(ROOT, "models", "examples", name)) as f:
            body = f.read()
        r = srv.session.post(srv.url("/predict"), data=body, timeout=30,
                             headers={"Content-Type": "application/json"})
        x = torch.tensor(json.loads(body)["inputs"], dtype=torch.float32).reshape(-1, 1, 28, 28)
        with torch.no_grad():
            ref = fm_model(x).numpy()
        if r.status_code != 200:
            ok = False
            continue
        got = np.array(r.json()["outputs"], dtype=np.float32).reshape(ref.shape)
        worst = max(worst, float(np.abs(got - ref).max()))
        ok &= bool((np.abs(got - ref) <= 1e-4).all())
        n += 1
    res.check("examples", ok and n > 0, f"{n} example requests, max |diff| {worst:.2e} (<= 1e-4)")


def check_model(res, srv, model, name, batches, refs, fp16, keep=None):
    """Each batch through model equals its reference; keep (a list) gets
    the outputs."""
    worst, bad = 0.0, []
    for i, (b, ref) in enumerate(zip(batches, refs)):
        status, got = infer(srv.session, srv, model, b)
        if keep is not None:
            keep.append(got if status == 200 else None)
        if status != 200:
            bad.append(f"batch {i}: {status} {str(got)[:200]}")
            continue
        if fp16:
            err = max_rel_fp16(got, ref)
            worst = max(worst, err)
            if err > FP16_TOL:
                bad.append(f"batch {i}: rel err {err:.3g}")
        else:
            worst = max(worst, float(np.abs(got - ref).max()))
            if not close_fp32(got, ref).all():
                bad.append(f"batch {i}: max |diff| {float(np.abs(got - ref).max()):.3g}")
    tol = f"max err/scale {worst:.2e} (<= {FP16_TOL})" if fp16 else \
        f"max |diff| {worst:.2e} (<= 1e-4 + 1e-4|ref|)"
    res.check(name, not bad, f"{model}: {len(batches)} batches, {tol}" +
              (f"; {len(bad)} bad, first: {bad[0]}" if bad else ""))


def check_concurrent(res, srv, batches, refs, model="base", name="concurrent"):
    def one(i):
        s = requests.Session()
        return infer(s, srv, model, batches[i])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(len(batches))))
    bad = 0
    for (status, got), ref in zip(answers, refs):
        if status != 200 or not close_fp32(got, ref).all():
            bad += 1
    hist = srv.session.get(srv.url("/metrics"), timeout=10).text
    m = re.search(rf'inferd_batch_size_sum\{{model="{model}"[^}}]*\}} ([0-9.e+]+)', hist)
    c = re.search(rf'inferd_batch_size_count\{{model="{model}"[^}}]*\}} ([0-9.e+]+)', hist)
    mean = float(m.group(1)) / float(c.group(1)) if m and c and float(c.group(1)) else 0
    res.check(name, bad == 0,
              f"{len(batches)} requests from 16 clients on 2 instances: {bad} wrong or failed; "
              f"mean batch so far {mean:.2f} samples")


def nvidia_smi(fields):
    out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits",
                          "-i", "0"], capture_output=True, text=True, timeout=30)
    return [v.strip() for v in out.stdout.strip().split(",")]


def metric(text, name, gpu="0"):
    m = re.search(rf'^{name}\{{gpu="{gpu}"\}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else None


def check_metrics(res, srv, mode, load_fn):
    if mode == "cpu":
        text = srv.session.get(srv.url("/metrics"), timeout=10).text
        res.check("metrics", "inferd_gpu_memory_used_bytes{" not in text,
                  "CPU run: no GPU series in /metrics")
        return
    stop = threading.Event()
    t = threading.Thread(target=load_fn, args=(stop,))
    t.start()
    time.sleep(2.0)
    samples = []
    for _ in range(5):
        samples.append(srv.session.get(srv.url("/metrics"), timeout=10).text)
        time.sleep(0.3)
    smi = nvidia_smi("memory.total,memory.used,utilization.gpu,pci.bus_id")
    stop.set()
    t.join()
    text = samples[-1]
    used = metric(text, "inferd_gpu_memory_used_bytes")
    total = metric(text, "inferd_gpu_memory_total_bytes")
    utils = [metric(s, "inferd_gpu_utilization_ratio") for s in samples]
    smi_total, smi_used = float(smi[0]) * 2**20, float(smi[1]) * 2**20
    ok = (used is not None and total is not None and abs(total - smi_total) <= 0.02 * smi_total
          and abs(used - smi_used) <= max(0.1 * smi_used, 1 << 30) and used > 0
          and all(u is not None for u in utils) and max(utils) > 0)
    res.check("metrics", ok,
              f"used {used} B (nvidia-smi {smi_used:.0f}), total {total} B (nvidia-smi "
              f"{smi_total:.0f}), utilisation under load {utils} (nvidia-smi {smi[2]}%), "
              f"bus {smi[3]}")


def check_memory(res, args, mode):
    if mode == "cpu":
        res.skip("memory", "--gpu-memory-fraction needs a GPU")
        return
    srv = Server(args.inferd, os.path.join(args.models, "hog"),
                 ["--devices", "0", "--gpu-memory-fraction", "0.05"],
                 os.path.join(args.out, "inferd-memory.log"))
    try:
        srv.wait_ready()
        big = np.ones((1, 50000), dtype=np.float32)  # 50000^2 floats: 10 GB > 5% of the GPU
        s1, t1 = infer(srv.session, srv, "hog", big, name="x")
        small = np.random.default_rng(1).standard_normal((1, 1000)).astype(np.float32)
        s2, y = infer(srv.session, srv, "hog", small, name="x")
        want = float(small.astype(np.float64).sum() ** 2)
        s3, _ = infer(srv.session, srv, "base", np.zeros((1, 3, 224, 224), np.float32))
        ok = (s1 == 500 and "out of memory" in str(t1).lower() and s2 == 200
              and abs(float(np.ravel(y)[0]) - want) <= 1e-3 * max(1.0, abs(want)) and s3 == 200)
        res.check("memory", ok, f"big request: {s1} {str(t1)[:160]!r}; then small: {s2} "
                  f"(y={np.ravel(y)[0] if s2 == 200 else y}, want {want:.4g}); other model: {s3}")
    finally:
        srv.stop()


def check_drain(res, srv, shape):
    """SIGTERM during load: nothing accepted is lost."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    header, body = v2_body(x)
    counts = {"200": 0, "503": 0, "refused": 0, "other": 0, "after_signal_200": 0}
    other = []
    lock = threading.Lock()
    signalled = threading.Event()
    t_signal = [0.0]

    def client():
        s = requests.Session()
        t_end = time.time() + 20
        while time.time() < t_end:
            try:
                r = s.post(srv.url("/v2/models/base/infer"), data=body, timeout=30,
                           headers={"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(header))})
                key = str(r.status_code) if r.status_code in (200, 503) else "other"
                with lock:
                    counts[key] += 1
                    if key == "other":
                        other.append(f"{r.status_code} {r.text[:120]}")
                    if key == "200" and signalled.is_set():
                        counts["after_signal_200"] += 1
                if key == "503":
                    return
            except requests.ConnectionError as e:
                with lock:
                    if "refused" in str(e).lower():
                        counts["refused"] += 1
                    else:
                        counts["other"] += 1
                        other.append(str(e)[:160])
                return
            if srv.proc.poll() is not None:
                return

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    t_signal[0] = time.time()
    signalled.set()
    srv.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    try:
        rc = srv.proc.wait(60)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        rc = "killed after 60 s"
    ok = counts["other"] == 0 and rc == 0 and counts["200"] > 0
    res.check("drain", ok, f"{counts}, exit status {rc}" + (f"; other: {other[:3]}" if other else ""))


def run_wrk(args, srv, model, conc, body_file, header_len, seconds):
    env = dict(os.environ, BENCH_BODY=body_file, BENCH_CONTENT_TYPE="application/octet-stream",
               BENCH_V2_HEADER_LENGTH=str(header_len))
    threads = min(conc, 4 if args.mode == "gpu" else 1)
    cmd = [args.wrk, f"-t{threads}", f"-c{conc}", f"-d{seconds}s", "--timeout", "30s", "-s",
           os.path.join(ROOT, "bench", "post.lua"), srv.url(f"/v2/models/{model}/infer")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"^BENCH (.*)$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk: {out.stdout[-400:]} {out.stderr[-400:]}")
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def thread_cpu(pid):
    """CPU ticks per thread name of process pid (utime + stime)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = re.sub(r"[0-9]+", "#", s[s.index("(") + 1:s.rindex(")")])
        fields = s[s.rindex(")") + 2:].split()
        out[comm] = out.get(comm, 0) + int(fields[11]) + int(fields[12])
    return out


def cpu_report(before, after, seconds):
    """Cores used per thread kind between two thread_cpu snapshots."""
    hz = os.sysconf("SC_CLK_TCK")
    used = {k: (after.get(k, 0) - before.get(k, 0)) / hz / seconds for k in after}
    top = sorted(used.items(), key=lambda kv: -kv[1])[:6]
    return ", ".join(f"{k} {v:.2f}" for k, v in top if v >= 0.01)


def log_stats(path, offset):
    """Mean batch, queue, compute and total ms of the request lines logged
    after offset, per model."""
    stats = {}
    with open(path) as f:
        f.seek(offset)
        for line in f:
            if '"msg":"request"' not in line or '"batch"' not in line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if not r.get("model") or not r.get("batch"):
                continue
            s = stats.setdefault(r["model"], [0, 0.0, 0.0, 0.0, 0.0])
            s[0] += 1
            s[1] += r["batch"]
            s[2] += r.get("queue_ms", 0)
            s[3] += r.get("compute_ms", 0)
            s[4] += r.get("total_ms", 0)
    return {m: {"n": s[0], "batch": s[1] / s[0], "queue_ms": s[2] / s[0],
                "compute_ms": s[3] / s[0], "total_ms": s[4] / s[0]} for m, s in stats.items()}


def measured_wrk(args, srv, model, conc, body_file, header_len, seconds):
    """run_wrk plus where the time went: the server's own per-request
    figures from its log, and CPU per thread kind."""
    srv.log.flush()
    offset = os.path.getsize(srv.log_path)
    before = thread_cpu(srv.proc.pid)
    t0 = time.time()
    r = run_wrk(args, srv, model, conc, body_file, header_len, seconds)
    wall = time.time() - t0
    r["cpu"] = cpu_report(before, thread_cpu(srv.proc.pid), wall)
    st = log_stats(srv.log_path, offset).get(model)
    if st:
        r.update({f"srv_{k}": v for k, v in st.items()})
    return r


def run_raw(args, shape, batches, threads, extra=(), model_file=None):
    dev = "0" if args.mode == "gpu" else "cpu"
    model_file = model_file or os.path.join(args.models, "model.pt")
    cmd = [args.raw, "--model", model_file, "--device", dev,
           "--shape", ",".join(map(str, shape)), "--batches", ",".join(map(str, batches)),
           "--threads", ",".join(map(str, threads)), "--seconds", str(args.raw_seconds)] + list(extra)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = []
    for line in out.stdout.splitlines():
        if line.startswith("RAW "):
            rows.append({k: float(v) for k, v in (kv.split("=") for kv in line[4:].split())})
    if out.returncode != 0:
        said = [line for line in out.stderr.splitlines() if line.startswith("raw_shim:")]
        print(f"raw_shim failed (exit {out.returncode}): {' | '.join(said)[:600]} ... "
              f"{out.stderr[-300:]}", flush=True)
    return rows


def bench(res, args, srv_main, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, *shape)).astype(np.float32)
    header, body = v2_body(x)
    body_file = os.path.join(args.out, "request.bin")
    with open(body_file, "wb") as f:
        f.write(body)
    secs = args.seconds
    concs = [1, 8, 32, 128]
    plan = [("base", c) for c in concs] + [
        ("graphs", 1), ("graphs", 8), ("fp16cl", 1), ("fp16cl", 128), ("fp16", 128),
        ("cl", 128), ("gfp16cl", 1), ("base4", 32), ("base4", 128), ("null", 1), ("null", 128)]
    for model in sorted({m for m, _ in plan}):
        if "fp16" in model and args.mode == "cpu":
            continue
        run_wrk(args, srv_main, model, 32, body_file, len(header), max(1, secs // 3))  # warm-up
    for model, conc in plan:
        if "fp16" in model and args.mode == "cpu":
            continue
        bench_row(res, args, srv_main, model, conc, body_file, len(header), secs)


def request_file(args, shape):
    """The one-image v2 binary request wrk posts: (path, header length)."""
    x = np.random.default_rng(3).standard_normal((1, *shape)).astype(np.float32)
    header, body = v2_body(x)
    body_file = os.path.join(args.out, "request.bin")
    with open(body_file, "wb") as f:
        f.write(body)
    return body_file, len(header)


def bench_row(res, args, srv, model, conc, body_file, header_len, secs):
    r = measured_wrk(args, srv, model, conc, body_file, header_len, secs)
    r.update(stack="inferd", model=model, conc=conc)
    res.bench.append(r)
    print(f"[bench] inferd {model} c={conc}: {r['rps']:.0f} img/s p50 {r['p50_us'] / 1e3:.2f} ms "
          f"p99 {r['p99_us'] / 1e3:.2f} ms non2xx {int(r['non2xx'])}; server: mean batch "
          f"{r.get('srv_batch', 0):.1f}, queue {r.get('srv_queue_ms', 0):.2f} ms, compute "
          f"{r.get('srv_compute_ms', 0):.2f} ms, total {r.get('srv_total_ms', 0):.2f} ms; "
          f"cores: {r['cpu']}", flush=True)
    return r


def bench_cudnn(res, args, shape, dev_flags):
    srv = Server(args.inferd, os.path.join(args.models, "cudnn"), dev_flags,
                 os.path.join(args.out, "inferd-cudnn.log"))
    try:
        srv.wait_ready()
        x = np.random.default_rng(3).standard_normal((1, *shape)).astype(np.float32)
        header, body = v2_body(x)
        body_file = os.path.join(args.out, "request-cudnn.bin")
        with open(body_file, "wb") as f:
            f.write(body)
        run_wrk(args, srv, "cudnn", 32, body_file, len(header), max(1, args.seconds // 3))
        for conc in (1, 128):
            r = run_wrk(args, srv, "cudnn", conc, body_file, len(header), args.seconds)
            r.update(stack="inferd", model="cudnn", conc=conc)
            res.bench.append(r)
            print(f"[bench] inferd cudnn c={conc}: {r['rps']:.0f} img/s", flush=True)
    finally:
        srv.stop()


PT2_NAMES = ["pt2 export", "pt2 raw", "pt2 metadata", "pt2 random", "pt2 concurrent",
             "pt2 python"]
PT2_RAW_BATCHES = [1, 8, 32, 64]
PT2_RAW_THREADS = [1, 2]


def pt2_part(res, args, shape, dev_flags, batches, raw):
    """The AOTInductor package: checks, raw_shim rows and inferd rows (see
    the module's docstring). Every failure is recorded, none raised."""
    if not args.pt2:
        res.skip(PT2_NAMES[0], args.pt2_skip or "not asked for (no --pt2)")
        for name in PT2_NAMES[1:]:
            res.skip(name, "no package (see pt2 export)")
        return
    gpu = args.mode == "gpu"
    report_path = os.path.join(args.models, "pt2-export.json")
    try:
        with open(report_path) as f:
            export = json.load(f)
    except (OSError, ValueError) as e:
        export = {"ok": False, "error": f"cannot read {report_path}: {e}"}
    package = os.path.join(args.models, "pt2", "pt2", "model.pt2")
    if not export.get("ok") or not os.path.isfile(package):
        took = f"after {export['seconds']} s; " if "seconds" in export else ""
        res.check("pt2 export", False, f"{export.get('error', 'no ' + package)} "
                  f"({took}see pt2-export.log)")
        for name in PT2_NAMES[1:]:
            res.skip(name, "no package: the export failed")
        return
    res.check("pt2 export", True, f"{export['device']} package, batch {export['batch_min']}.."
              f"{export['batch_max']}, torch {export['torch']}, {export['seconds']} s "
              f"(in the background while inferd built)")
    t0 = time.time()
    eager = make_models.eager_from(os.path.join(args.models, "model.pt"), export["size"])
    refs = reference(eager, batches)
    print(f"[pt2] eager CPU reference for {len(batches)} batches in {time.time() - t0:.1f} s",
          flush=True)

    t0 = time.time()
    rows = run_raw(args, shape, PT2_RAW_BATCHES, PT2_RAW_THREADS, model_file=package)
    for r in rows:
        r["variant"] = "pt2"
        raw.append(r)
    want = len(PT2_RAW_BATCHES) * len(PT2_RAW_THREADS)
    res.check("pt2 raw", len(rows) == want,
              f"raw_shim on the package (each thread its own loader, loaded at once): "
              f"{len(rows)} of {want} (threads, batch) points ran, in {time.time() - t0:.0f} s")

    flags = dev_flags + ["--instances-per-device", "2", "--drain-timeout-s", "30"]
    if gpu:
        flags += ["--http-threads", "8"]
    srv = Server(args.inferd, os.path.join(args.models, "pt2"), flags,
                 os.path.join(args.out, "inferd-pt2.log"))
    served = []
    try:
        srv.wait_ready()
        meta = srv.session.get(srv.url("/v2/models/pt2"), timeout=10).json()
        res.check("pt2 metadata", meta.get("platform") == "torch_aoti" and
                  meta.get("max_batch_size") == export["batch_max"],
                  f"platform {meta.get('platform')}, max_batch_size {meta.get('max_batch_size')}"
                  f" (package range {export['batch_min']}..{export['batch_max']})")
        check_model(res, srv, "pt2", "pt2 random", batches, refs, fp16=False, keep=served)
        check_concurrent(res, srv, batches, refs, model="pt2", name="pt2 concurrent")
        body_file, header_len = request_file(args, shape)
        run_wrk(args, srv, "pt2", 32, body_file, header_len, max(1, args.seconds // 3))  # warm-up
        for conc in (1, 8, 32, 128):
            bench_row(res, args, srv, "pt2", conc, body_file, header_len, args.seconds)
    except Exception as e:  # noqa: BLE001 - record, report, fail
        res.check("pt2 server", False, f"{type(e).__name__}: {e}; log: {srv.tail(8)}")
    finally:
        srv.stop()
    check_pt2_python(res, package, batches, refs, served, gpu)
    pt2_ratios(res, raw)


def check_pt2_python(res, package, batches, refs, served, gpu):
    """python's own loader on the package: equal to the eager model and to
    what inferd served for the same batches."""
    dev = "cuda" if gpu else "cpu"
    try:
        if gpu:  # IEEE fp32, as inferd runs it
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        t0 = time.time()
        runner = torch._inductor.aoti_load_package(package)
        vs_eager = vs_served = 0.0
        bad, compared = [], 0
        with torch.no_grad():
            for i, (b, ref) in enumerate(zip(batches, refs)):
                out = runner(torch.from_numpy(b).to(dev))
                if isinstance(out, (list, tuple)):
                    out = out[0]
                got = out.float().cpu().numpy()
                vs_eager = max(vs_eager, float(np.abs(got - ref).max()))
                if not close_fp32(got, ref).all():
                    bad.append(f"batch {i}: vs eager {float(np.abs(got - ref).max()):.3g}")
                mine = served[i] if i < len(served) else None
                if mine is not None:
                    compared += 1
                    vs_served = max(vs_served, float(np.abs(mine - got).max()))
                    if not close_fp32(mine, got).all():
                        bad.append(f"batch {i}: inferd vs loader "
                                   f"{float(np.abs(mine - got).max()):.3g}")
        del runner
        res.check("pt2 python", not bad and compared == len(batches),
                  f"aoti_load_package on {dev}, {len(batches)} batches in {time.time() - t0:.1f} s:"
                  f" max |diff| vs eager {vs_eager:.2e}, vs inferd {vs_served:.2e} on {compared}"
                  f" served batches (<= 1e-4 + 1e-4|ref|)" +
                  (f"; {len(bad)} bad, first: {bad[0]}" if bad else ""))
    except Exception as e:  # noqa: BLE001 - record, report, fail
        res.check("pt2 python", False, f"aoti_load_package on {dev}: {type(e).__name__}: {e}")
    finally:
        if gpu and torch.cuda.is_available():
            torch.cuda.empty_cache()


def pt2_ratios(res, raw):
    """.pt2 / TorchScript at the same threads and batch (raw_shim) and the
    same concurrency (inferd)."""
    for r in raw:
        if r.get("variant") != "pt2":
            continue
        ts = [t for t in raw if t.get("variant") == "fp32" and t["threads"] == r["threads"]
              and t["batch"] == r["batch"]]
        if ts:
            res.pt2_ratios.append({
                "what": f"raw_shim, {int(r['threads'])} thread(s), batch {int(r['batch'])}",
                "torchscript": ts[0]["img_s"], "pt2": r["img_s"],
                "ratio": r["img_s"] / ts[0]["img_s"] if ts[0]["img_s"] else 0.0})
    for conc in (1, 8, 32, 128):
        ts, p = find(res, "base", conc), find(res, "pt2", conc)
        if ts and p:
            res.pt2_ratios.append({
                "what": f"inferd, c={conc}", "torchscript": ts["rps"], "pt2": p["rps"],
                "ratio": p["rps"] / ts["rps"] if ts["rps"] else 0.0})
    for r in res.pt2_ratios:
        print(f"[pt2] {r['what']}: .pt2 {r['pt2']:.0f} / TorchScript {r['torchscript']:.0f} img/s "
              f"= {r['ratio']:.2f}", flush=True)


def find(res, model, conc):
    for r in res.bench:
        if r.get("model") == model and r.get("conc") == conc:
            return r
    return None


def targets(res, raw):
    base = {c: find(res, "base", c) for c in (1, 8, 32, 128)}
    raw2 = [r for r in raw if r["threads"] == 2 and r.get("variant") == "fp32"]
    raw1 = [r for r in raw if r["threads"] == 1 and r["batch"] == 1 and r.get("variant") == "fp32"]
    if raw2 and all(base.values()):
        best_raw = max(raw2, key=lambda r: r["img_s"])
        best = max(base.values(), key=lambda r: r["rps"])
        ratio = best["rps"] / best_raw["img_s"]
        res.targets.append(("inferd >= 90% of raw batched", ratio >= 0.9,
                            f"inferd best {best['rps']:.0f} img/s (c={best['conc']}) / raw best "
                            f"{best_raw['img_s']:.0f} img/s (batch {int(best_raw['batch'])}, 2 "
                            f"threads) = {ratio:.2f}"))
    raw4 = [r for r in raw if r["threads"] == 4 and r.get("variant") == "fp32"]
    b4 = [r for r in (find(res, "base4", 32), find(res, "base4", 128)) if r]
    if raw4 and b4:
        best_raw = max(raw4, key=lambda r: r["img_s"])
        best = max(b4, key=lambda r: r["rps"])
        ratio = best["rps"] / best_raw["img_s"]
        res.targets.append(("(for reference) 4 instances >= 90% of raw with 4 threads", ratio >= 0.9,
                            f"inferd base4 {best['rps']:.0f} img/s (c={best['conc']}) / raw "
                            f"{best_raw['img_s']:.0f} img/s (batch {int(best_raw['batch'])}, 4 "
                            f"threads) = {ratio:.2f}"))
    if raw1 and base[1]:
        gap = base[1]["p50_us"] / 1e3 - raw1[0]["p50_ms"]
        res.targets.append(("p50 at c=1 within 0.3 ms of raw batch-1 forward", gap <= 0.3,
                            f"inferd p50 {base[1]['p50_us'] / 1e3:.3f} ms - raw {raw1[0]['p50_ms']:.3f}"
                            f" ms = {gap:.3f} ms"))
    for name, model, conc in [("CUDA graphs >= 1.8x at c=1", "graphs", 1),
                              ("(for reference) graphs + fp16 + channels-last at c=1", "gfp16cl", 1),
                              ("fp16 + channels-last >= 1.8x at c=128", "fp16cl", 128)]:
        row = find(res, model, conc)
        if row and base[conc]:
            r = row["rps"] / base[conc]["rps"]
            res.targets.append((name, r >= 1.8,
                                f"{row['rps']:.0f} / {base[conc]['rps']:.0f} img/s = {r:.2f}x"))
    for name, ok, detail in res.targets:
        print(f"[target] {name}: {'met' if ok else 'MISSED'} - {detail}", flush=True)


def write_report(res, args, raw, started):
    gpu = "cpu"
    if args.mode == "gpu":
        try:
            gpu = ", ".join(nvidia_smi("name,driver_version,memory.total"))
        except Exception as e:  # noqa: BLE001 - report what we can
            gpu = f"? ({e})"
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or "?"
    except OSError:  # no git (the Debian 13 root)
        rev = "?"
    lines = [f"# tests/gpu/run.sh results ({args.mode})", "",
             f"- date: {started.isoformat(timespec='seconds')}",
             f"- device: {gpu}; {os.cpu_count()} CPU cores; {platform.platform()}",
             f"- torch (python and the libtorch inferd links): {torch.__version__}",
             f"- git: {rev}; command: `{args.command}`", "",
             "## Correctness", "", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {n} | {s} | {d} |" for n, s, d in res.checks]
    lines += ["", "## Raw forward through the shim (no HTTP)", "",
              "| variant | threads | batch | img/s | p50 ms / forward |", "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {int(r['threads'])} | {int(r['batch'])} | {r['img_s']:.0f} | "
              f"{r['p50_ms']:.3f} |" for r in raw]
    lines += ["", "## inferd, one image per v2 binary request (wrk)", "",
              "Server columns: from inferd's access log over the same window (mean samples "
              "per forward, ms queued, ms in forward, ms from first byte to reply); cores: CPU "
              "per thread kind (w#: instance workers, c#: completion threads).", "",
              "| model | conc | img/s | p50 ms | p99 ms | non-2xx | batch | queue ms | "
              "compute ms | total ms | cores |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['conc']} | {r['rps']:.0f} | {r['p50_us'] / 1e3:.2f} | "
              f"{r['p99_us'] / 1e3:.2f} | {int(r['non2xx'])} | {r.get('srv_batch', 0):.1f} | "
              f"{r.get('srv_queue_ms', 0):.2f} | {r.get('srv_compute_ms', 0):.2f} | "
              f"{r.get('srv_total_ms', 0):.2f} | {r.get('cpu', '')} |" for r in res.bench]
    lines += ["", "## .pt2 (AOTInductor) against TorchScript", ""]
    if res.pt2_ratios:
        lines += ["Same weights, fp32; raw: raw_shim (AOTIModelPackageLoader against "
                  "torch::jit::Module), one thread per instance; inferd: model `pt2` (its own "
                  "server, same settings) against `base`, one image per request.", "",
                  "| what | TorchScript img/s | .pt2 img/s | .pt2 / TorchScript |",
                  "|---|---|---|---|"]
        lines += [f"| {r['what']} | {r['torchscript']:.0f} | {r['pt2']:.0f} | "
                  f"{r['ratio']:.2f} |" for r in res.pt2_ratios]
    else:
        why = [d for n, s, d in res.checks if n.startswith("pt2") and s != "pass"]
        lines += [f"No .pt2 rows: {why[0] if why else 'none measured'}"]
    lines += ["", "## Targets", "", "| target | result | measured |", "|---|---|---|"]
    lines += [f"| {n} | {'met' if ok else 'missed'} | {d} |" for n, ok, d in res.targets]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "gpu-results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "gpu-results.json"), "w") as f:
        json.dump({"checks": res.checks, "raw": raw, "bench": res.bench,
                   "targets": res.targets, "pt2_vs_torchscript": res.pt2_ratios}, f, indent=1)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["gpu", "cpu"], required=True)
    ap.add_argument("--inferd", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--raw-seconds", type=float, default=2)
    ap.add_argument("--command", default=" ".join(sys.argv))
    ap.add_argument("--only", default="", help="comma list of steps (debugging)")
    ap.add_argument("--pt2", action="store_true",
                    help="check and benchmark MODELS/pt2 (make_models.py --pt2)")
    ap.add_argument("--pt2-skip", default="", help="why the .pt2 part is not run (reported)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    torch.manual_seed(0)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    res = Results()
    model = torch.jit.load(os.path.join(args.models, "model.pt")).eval()
    with open(os.path.join(args.models, "main", "base", "config.json")) as f:
        shape = json.load(f)["inputs"][0]["shape"][1:]
    fm_model = torch.jit.load(os.path.join(args.models, "main", "fashion_mnist", "model.pt")).eval()
    gpu = args.mode == "gpu"
    dev_flags = ["--devices", "0" if gpu else "cpu"]
    main_flags = dev_flags + ["--instances-per-device", "2", "--default-model", "fashion_mnist",
                              "--drain-timeout-s", "30"]
    if gpu:
        main_flags += ["--http-threads", "8"]
    rng = np.random.default_rng(0)
    batches = random_batches(rng, 256, shape, 8)
    refs = reference(model, batches)
    var_batches = random_batches(rng, 64, shape, 12)
    var_refs = reference(model, var_batches)
    conc_batches = random_batches(rng, 256, shape, 4)
    conc_refs = reference(model, conc_batches)

    raw = []
    t0 = time.time()
    for variant, extra in [("fp32", ()), ("graphs", ("--graphs", "1,2,4,8")),
                           ("fp16cl", ("--fp16", "--channels-last")),
                           ("gfp16cl", ("--graphs", "1,2,4,8", "--fp16", "--channels-last"))]:
        if "fp16" in variant and not gpu:
            continue
        b = {"fp32": [1, 8, 32, 64], "graphs": [1, 8], "fp16cl": [1, 128],
             "gfp16cl": [1]}[variant]
        th = [1, 2, 4] if variant == "fp32" else [2]
        for r in run_raw(args, shape, b, th, extra):
            r["variant"] = variant
            raw.append(r)
    print(f"[raw] {len(raw)} rows in {time.time() - t0:.0f} s: " +
          "; ".join(f"{r['variant']} t{int(r['threads'])} b{int(r['batch'])} {r['img_s']:.0f}"
                    for r in raw), flush=True)

    srv = Server(args.inferd, os.path.join(args.models, "main"), main_flags,
                 os.path.join(args.out, "inferd-main.log"))
    try:
        srv.wait_ready()
        check_examples(res, srv, fm_model)
        check_model(res, srv, "base", "random", batches, refs, fp16=False)
        for variant in ("graphs", "cl", "fp16", "fp16cl", "gfp16cl"):
            if "fp16" in variant and not gpu:
                res.skip(f"variant {variant}", "fp16 convolutions need a GPU on this libtorch")
                continue
            check_model(res, srv, variant, f"variant {variant}", var_batches, var_refs,
                        fp16="fp16" in variant)
        check_concurrent(res, srv, conc_batches, conc_refs)

        def load(stop):
            s = requests.Session()
            while not stop.is_set():
                infer(s, srv, "base", batches[0])

        def load_many(stop):
            ts = [threading.Thread(target=load, args=(stop,)) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        check_metrics(res, srv, args.mode, load_many)
        bench(res, args, srv, shape)
        check_drain(res, srv, shape)
    except Exception as e:  # noqa: BLE001 - record, report, fail
        res.check("main server", False, f"{type(e).__name__}: {e}; log: {srv.tail(8)}")
    finally:
        srv.stop()
    try:
        check_memory(res, args, args.mode)
        bench_cudnn(res, args, shape, dev_flags)
    except Exception as e:  # noqa: BLE001
        res.check("memory/cudnn servers", False, f"{type(e).__name__}: {e}")
    pt2_part(res, args, shape, dev_flags, batches, raw)
    targets(res, raw)
    write_report(res, args, raw, started)
    if res.failed:
        print(f"FAILED: {[c[0] for c in res.failed]}", flush=True)
        return 1
    print("all GPU-path checks passed" if gpu else "all CPU-mode checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
