#!/usr/bin/python3
"""Image path speed, in one run on the same files (issue 12):

1. decode + preprocess per image on ONE core, in CPU time of the measuring
   thread (torch limited to one thread; the machine is shared, so wall time
   would measure the neighbours): inferd's C path
   (build/bench/image_speed: TurboJPEG/libpng + preprocess.c) against PIL +
   torchvision transforms in Python (Image.open().convert("RGB") ->
   Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize(ImageNet), what
   a TorchServe-style handler runs), for JPEGs at 224x224 and 1920x1080,
   rounds alternating between the two;
2. end to end: req/s posting a 224x224 JPEG to inferd (wrk, keep-alive) for
   a model whose preprocessing is declared in config.json, against the
   client doing that work itself and posting the 150,528 floats as JSON (the
   only way before), to the same model.

The JPEGs are made from real photographs (python3-skimage's coffee.png and
retina.jpg, via models/make_image_data.py) resized with PIL and saved at
quality 90. Prints a markdown table; raw lines go to bench/out/image/.

    /usr/bin/python3 bench/image_speed.py     (or: make bench-image)

Environment: BENCH_SECONDS per measurement [3], BENCH_ROUNDS [3],
BENCH_CONCURRENCY for wrk [4], INFERD [build/inferd].
"""
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "image"
DATA = ROOT / "build" / "image-data"
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONC = int(os.environ.get("BENCH_CONCURRENCY", "4"))
INFERD = ROOT / os.environ.get("INFERD", "build/inferd")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def make_jpegs():
    from PIL import Image
    OUT.mkdir(parents=True, exist_ok=True)
    small = OUT / "coffee_224x224.jpg"
    large = OUT / "retina_1920x1080.jpg"
    Image.open(DATA / "photos" / "coffee.png").convert("RGB").resize((224, 224)).save(
        small, "JPEG", quality=90)
    retina = Image.open(DATA / "photos" / "retina.jpg").convert("RGB")  # 1411 x 1411
    retina.crop((0, 309, 1411, 1103)).resize((1920, 1080)).save(large, "JPEG", quality=90)
    return [small, large]


def c_speed(files, default_malloc=False):
    env = dict(os.environ)
    if default_malloc:
        env["IMAGE_SPEED_DEFAULT_MALLOC"] = "1"
    out = subprocess.run([str(ROOT / "build" / "bench" / "image_speed"), str(SECONDS),
                          *map(str, files)], capture_output=True, text=True, check=True,
                         env=env).stdout
    return {Path(m.group(1)).name: float(m.group(2))
            for m in re.finditer(r"IMAGE (\S+) \S+ images=\d+ ms_per_image=([\d.]+)", out)}


def python_speed(files):
    import torch
    import torchvision.transforms as T
    from PIL import Image
    torch.set_num_threads(1)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    result = {}
    for f in files:
        data = f.read_bytes()
        n, t0 = 0, time.thread_time()  # CPU time of this thread, as the C side
        while True:
            x = tf(Image.open(io.BytesIO(data)).convert("RGB"))
            n += 1
            t = time.thread_time()
            if t - t0 >= SECONDS and n >= 3:
                break
        assert tuple(x.shape) == (3, 224, 224)
        result[f.name] = 1000 * (t - t0) / n
    return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def end_to_end(small):
    """req/s: image/jpeg vs client-side preprocessing + JSON, same model."""
    import numpy as np
    import torch
    import torchvision.transforms as T
    from PIL import Image
    repo = OUT / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    folder = repo / "pool_image"
    folder.mkdir(parents=True)

    class Pool(torch.nn.Module):  # cheap, so the request path is what is measured
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = torch.nn.Linear(3, 10)

        def forward(self, x):
            return self.fc(x.mean(dim=[2, 3]))

    torch.jit.script(Pool().eval()).save(str(folder / "model.pt"))
    (folder / "config.json").write_text(json.dumps({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224],
                    "image": {"color": "rgb", "resize": 256, "crop": 224,
                              "mean": MEAN, "std": STD}}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
        "max_batch_size": 8, "max_queue_delay_us": 500, "instances": 1}))
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    x = tf(Image.open(small).convert("RGB")).numpy()
    json_body = OUT / "request_224.json"
    json_body.write_text(json.dumps({"inputs": np.round(x[None], 6).tolist()}))
    port = free_port()
    log = open(OUT / "inferd.log", "w")
    proc = subprocess.Popen([str(INFERD), "--host", "127.0.0.1", "--port", str(port),
                             "--model-repository", str(repo), "--default-model", "pool_image",
                             "--devices", "cpu", "--log-level", "warn"], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        import requests
        for _ in range(200):
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        rows = {}
        for name, body, ctype in [("image/jpeg 224x224", small, "image/jpeg"),
                                  ("JSON floats (client preprocessed)", json_body,
                                   "application/json")]:
            best = None
            for _ in range(ROUNDS):
                env = dict(os.environ, BENCH_BODY=str(body), BENCH_CONTENT_TYPE=ctype)
                out = subprocess.run(["wrk", "-t1", f"-c{CONC}", f"-d{int(SECONDS) or 1}s",
                                      "--timeout", "30s", "-s", str(ROOT / "bench" / "post.lua"),
                                      f"http://127.0.0.1:{port}/predict"], env=env,
                                     capture_output=True, text=True, check=True).stdout
                m = re.search(r"BENCH requests=(\d+) \S+ rps=([\d.]+) p50_us=(\d+) "
                              r"\S+ p99_us=(\d+).* non2xx=(\d+)", out)
                assert m and m.group(5) == "0", out
                rps = float(m.group(2))
                if best is None or rps > best[0]:
                    best = (rps, int(m.group(3)) / 1000, int(m.group(4)) / 1000)
            rows[name] = best
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def main():
    if not (DATA / "photos" / "retina.jpg").exists():
        subprocess.run([sys.executable, str(ROOT / "models" / "make_image_data.py")], check=True)
    files = make_jpegs()
    c_runs, c_plain_runs, py_runs = [], [], []
    for _ in range(ROUNDS):  # alternate, so that machine noise hits all three
        c_runs.append(c_speed(files))
        c_plain_runs.append(c_speed(files, default_malloc=True))
        py_runs.append(python_speed(files))
    load = os.getloadavg()[0]
    print(f"# image decode + preprocess, one core, best of {ROUNDS} rounds of {SECONDS:g} s "
          f"(load average {load:.1f})\n")
    print("| JPEG | inferd C ms/image | PIL + torchvision ms/image | speed-up | "
          "C with glibc's default malloc | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for f in files:
        c = min(r[f.name] for r in c_runs)
        plain = min(r[f.name] for r in c_plain_runs)
        py = min(r[f.name] for r in py_runs)
        print(f"| {f.name} | {c:.3f} | {py:.3f} | {py / c:.2f}x | {plain:.3f} | {py / plain:.2f}x |")
    rows = end_to_end(files[0])
    print(f"\n# end to end, wrk -c{CONC}, best of {ROUNDS} x {SECONDS:g} s, model pool_image "
          f"(mean over pixels + linear)\n")
    print("| request | req/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, (rps, p50, p99) in rows.items():
        print(f"| {name} | {rps:.0f} | {p50:.2f} | {p99:.2f} |")
    a, b = list(rows.values())
    print(f"\nimage/jpeg vs JSON floats: {a[0] / b[0]:.2f}x the req/s")


if __name__ == "__main__":
    main()
