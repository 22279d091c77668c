#!/usr/bin/python3
"""Issue 22's GPU checks, run by tests/gpu/run.sh: the GPU memory each
instance measures at warm-up (point 7a), UINT8 pixels normalised on the
device (point 6), and the GPU named by its UUID in CUDA_VISIBLE_DEVICES
(point 7c, the non-MIG half of the MIG code path).

--mode gpu: inferd serves a small colour model twice (normalised on the
host, and "normalize": "device") on CUDA device 0, two instances each.
Every instance's gpu_memory_bytes must be in the config endpoint, equal to
its /metrics line and its "instance ready" log field, above the model's
weights and below the GPU's memory; the device model's answers to UINT8
pixels must equal torch's on the CPU within 1e-4, and the host model's to
the same values in FP32. Then once more with CUDA_VISIBLE_DEVICES=GPU-<uuid>
(from nvidia-smi): ready, the figure again, and the GPU's memory and
utilisation metrics present (a whole GPU is not a MIG slice).

--mode cpu (CI): the same models on the CPU; the answers as above, and no
figure anywhere (absent, not 0).

Writes memory-check.json into --out; exit status 1 when a check fails.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests
import torch

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
SIDE = 32


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 32, 3, padding=1)
        self.fc = torch.nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        y = torch.nn.functional.relu(self.conv(x))
        y = torch.nn.functional.adaptive_avg_pool2d(y, 4)
        return self.fc(y.flatten(1))


def write_repo(repo):
    torch.manual_seed(22)
    net = torch.jit.script(Net().eval())
    for name, where in (("colour_host", "host"), ("colour_device", "device")):
        folder = os.path.join(repo, name)
        os.makedirs(folder)
        net.save(os.path.join(folder, "model.pt"))
        image = {"color": "rgb", "crop": [SIDE, SIDE], "mean": MEAN, "std": STD,
                 "normalize": where}
        config = {"name": name, "file": "model.pt",
                  "inputs": [{"name": "input", "datatype": "FP32",
                              "shape": [-1, 3, SIDE, SIDE], "image": image}],
                  "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
                  "max_batch_size": 16, "instances": 2, "max_queue_delay_us": 0}
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f)
    return net, sum(p.numel() * p.element_size() for p in net.parameters())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(inferd, repo, devices, log, env=None):
    port = free_port()
    proc = subprocess.Popen([inferd, "--host", "127.0.0.1", "--port", str(port),
                             "--model-repository", repo, "--default-model", "colour_device",
                             "--devices", devices], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("inferd exited during start-up")
        try:
            if requests.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                return proc, base
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("inferd did not become ready in 120 s")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def infer(base, model, datatype, array):
    raw = array.tobytes()
    header = json.dumps({"inputs": [{"name": "input", "datatype": datatype,
                                     "shape": list(array.shape),
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "logits",
                                      "parameters": {"binary_data": True}}]}).encode()
    r = requests.post(f"{base}/v2/models/{model}/infer", data=header + raw, timeout=30,
                      headers={"Content-Type": "application/octet-stream",
                               "Inference-Header-Content-Length": str(len(header))})
    if r.status_code != 200:
        raise RuntimeError(f"{model}: {r.status_code} {r.text[:200]}")
    n = int(r.headers["Inference-Header-Content-Length"])
    return np.frombuffer(r.content[n:], dtype=np.float32).reshape(array.shape[0], -1)


def check_answers(base, net, checks):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(8, 3, SIDE, SIDE), dtype=np.uint8)
    x = torch.from_numpy(pixels).float() / 255.0
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        reference = net(x).numpy()
    device = infer(base, "colour_device", "UINT8", pixels)
    host = infer(base, "colour_host", "FP32", x.numpy())
    single = np.stack([infer(base, "colour_device", "UINT8", pixels[i:i + 1])[0]
                       for i in range(len(pixels))])
    checks["uint8_vs_torch_max_abs"] = float(np.abs(device - reference).max())
    checks["uint8_vs_fp32_host_max_abs"] = float(np.abs(device - host).max())
    checks["batched_vs_single_max_abs"] = float(np.abs(device - single).max())
    checks["uint8_request_bytes"], checks["fp32_request_bytes"] = pixels.nbytes, x.numpy().nbytes
    ok = (checks["uint8_vs_torch_max_abs"] <= 1e-4 and checks["uint8_vs_fp32_host_max_abs"] <= 1e-4
          and checks["batched_vs_single_max_abs"] <= 1e-4)
    return ok


def figures(base, log_path):
    """{(model, instance): bytes} from the config endpoint, /metrics and the log."""
    config, metrics, logged = {}, {}, {}
    for model in ("colour_host", "colour_device"):
        for s in requests.get(f"{base}/v2/models/{model}/config", timeout=5).json()["instance_status"]:
            if "gpu_memory_bytes" in s:
                config[(model, s["instance"])] = s["gpu_memory_bytes"]
    text = requests.get(f"{base}/metrics", timeout=5).text
    for m in re.finditer(r'^inferd_model_instance_gpu_memory_bytes\{model="(\w+)",version="\d+",'
                         r'instance="(\d+)",device="cuda:\d+"\} (\d+)$', text, re.M):
        metrics[(m.group(1), int(m.group(2)))] = int(m.group(3))
    total = re.search(r'^inferd_gpu_memory_total_bytes\{gpu="0"\} (\d+)$', text, re.M)
    util = re.search(r'^inferd_gpu_utilization_ratio\{gpu="0"\}', text, re.M)
    with open(log_path) as f:
        for line in f:
            if "instance ready" not in line:
                continue
            model = re.search(r'"model":"(\w+)"|model=(\w+)', line)
            inst = re.search(r'"instance":(\d+)|instance=(\d+)', line)
            mem = re.search(r'"gpu_memory_bytes":(\d+)|gpu_memory_bytes=(\d+)', line)
            if model and inst and mem:
                logged[(model.group(1) or model.group(2), int(inst.group(1) or inst.group(2)))] = \
                    int(mem.group(1) or mem.group(2))
    return config, metrics, logged, int(total.group(1)) if total else 0, bool(util)


def run(args, repo, net, weights, env, label, results):
    checks = {"label": label}
    results.append(checks)
    log_path = os.path.join(args.out, f"memory-check-{label}.log")
    with open(log_path, "w") as log:
        proc, base = start(args.inferd, repo, "0" if args.mode == "gpu" else "cpu", log, env)
        try:
            checks["answers_ok"] = check_answers(base, net, checks)
            config, metrics, logged, total, util = figures(base, log_path)
        finally:
            stop(proc)
    checks["config"] = {f"{m}/{i}": v for (m, i), v in sorted(config.items())}
    checks["weights_bytes"], checks["gpu_total_bytes"] = weights, total
    checks["utilization_reported"] = util
    if args.mode == "cpu":
        checks["figure_ok"] = not config and not metrics and not logged
    else:
        four = len(config) == 4
        same = config == metrics == logged
        plausible = all(weights < v < total for v in config.values())
        checks["figure_ok"] = four and same and plausible and util
        checks["why"] = {"four_instances": four, "config_metrics_log_equal": same,
                         "above_weights_below_total": plausible, "utilization_present": util}
    print(f"memory check [{label}]: answers {'ok' if checks['answers_ok'] else 'WRONG'}, "
          f"figures {checks['config']} ({'ok' if checks['figure_ok'] else 'WRONG'})")
    return checks["answers_ok"] and checks["figure_ok"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("gpu", "cpu"), required=True)
    p.add_argument("--inferd", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    results, ok = [], True
    with tempfile.TemporaryDirectory() as repo:
        net, weights = write_repo(repo)
        try:
            ok = run(args, repo, net, weights, None, args.mode, results)
            if args.mode == "gpu":
                uuid = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader",
                                       "-i", os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]],
                                      capture_output=True, text=True, timeout=30).stdout.strip()
                env = dict(os.environ, CUDA_VISIBLE_DEVICES=uuid)
                results.append({"visible_uuid": uuid})
                ok = run(args, repo, net, weights, env, "uuid", results) and ok
        except Exception as e:  # reported, then a failure
            results.append({"error": str(e)})
            ok = False
    with open(os.path.join(args.out, "memory-check.json"), "w") as f:
        json.dump({"ok": ok, "runs": results}, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
