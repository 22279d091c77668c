#!/usr/bin/env python3
"""Model repositories for tests/gpu/run.sh, written under OUT:

  OUT/main/    base (fp32), graphs (cuda_graphs 1,2,4,8), fp16, cl
               (channels_last), fp16cl, gfp16cl (graphs + fp16 + channels
               last), base4 (4 instances), null (returns one pixel per channel:
               the HTTP path's own ceiling for the same requests), and
               fashion_mnist (the default model, copied, for the example
               requests)
  OUT/cudnn/   cudnn (cudnn_benchmark is process-wide: its own server)
  OUT/hog/     hog: [N, K] -> [N, 1], sum of the K x K outer product, whose
               memory grows as K^2 (the --gpu-memory-fraction check), and base
  OUT/model.pt the bench model itself, for raw_shim and the reference

--size resnet18: torchvision's ResNet-18 architecture, seeded weights, input
[N,3,224,224] (the GPU run). --size tiny: a small CNN with batch norm, input
[N,3,32,32] (the --cpu run in CI), without the fp16 variants (libtorch 1.13
has no half-precision convolutions on the CPU). Every variant serves the same
model.pt.

Usage: make_models.py --size resnet18|tiny OUT
"""
import argparse
import json
import os
import shutil

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MAX_BATCH = 128
GRAPHS = [1, 2, 4, 8]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.BatchNorm2d(32),
            torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)


class Null(torch.nn.Module):
    """Almost no compute: what inferd's HTTP path and copies alone can carry."""

    def forward(self, x):
        return x[:, :, 0, 0]


class Hog(torch.nn.Module):
    def forward(self, x):
        return (x.unsqueeze(2) * x.unsqueeze(1)).sum(dim=[1, 2]).unsqueeze(1)


def build(size):
    torch.manual_seed(0)
    if size == "resnet18":
        import torchvision
        model, shape, classes = torchvision.models.resnet18(weights=None), [3, 224, 224], 1000
    else:
        model, shape, classes = Tiny(), [3, 32, 32], 10
    model.eval()
    # Batch-norm statistics that are not the identity, so that fp16 and
    # layout changes are exercised on realistic numbers.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    try:
        return torch.jit.script(model), shape, classes
    except Exception as e:  # noqa: BLE001 - a torch whose scripting fails: trace
        print(f"torch.jit.script failed ({e}); tracing instead")
        return torch.jit.trace(model, torch.zeros(1, *shape)), shape, classes


def write(folder, config, model_file):
    os.makedirs(folder, exist_ok=True)
    dst = os.path.join(folder, "model.pt")
    if not os.path.exists(dst):
        os.link(model_file, dst)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=["resnet18", "tiny"], required=True)
    ap.add_argument("out")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    scripted, shape, classes = build(args.size)
    model_file = os.path.join(args.out, "model.pt")
    scripted.save(model_file)
    base = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1] + shape}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, classes]}],
        "max_batch_size": MAX_BATCH,
        "max_queue_delay_us": 0,
    }
    variants = {
        "base": {},
        "graphs": {"cuda_graphs": GRAPHS},
        "fp16": {"precision": "fp16"},
        "cl": {"channels_last": True},
        "fp16cl": {"precision": "fp16", "channels_last": True},
        "gfp16cl": {"precision": "fp16", "channels_last": True, "cuda_graphs": GRAPHS},
        "base4": {"instances": 4},
    }
    if args.size == "tiny":  # CPU: libtorch 1.13 has no half-precision convolutions
        del variants["fp16"], variants["fp16cl"], variants["gfp16cl"]
    for name, extra in variants.items():
        write(os.path.join(args.out, "main", name), {**base, **extra}, model_file)
    null_file = os.path.join(args.out, "null.pt")
    torch.jit.script(Null().eval()).save(null_file)
    write(os.path.join(args.out, "main", "null"), {
        **base, "outputs": [{"name": "pixel", "datatype": "FP32", "shape": [-1, shape[0]]}]},
        null_file)
    write(os.path.join(args.out, "cudnn", "cudnn"), {**base, "cudnn_benchmark": True}, model_file)
    write(os.path.join(args.out, "hog", "base"), base, model_file)
    hog_file = os.path.join(args.out, "hog.pt")
    torch.jit.script(Hog().eval()).save(hog_file)
    write(os.path.join(args.out, "hog", "hog"), {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
        "max_batch_size": 4,
    }, hog_file)
    fm = os.path.join(args.out, "main", "fashion_mnist")
    shutil.rmtree(fm, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "models", "fashion_mnist"), fm)
    print(f"wrote {args.size} repositories under {args.out}")


if __name__ == "__main__":
    main()
