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
  OUT/pt2/pt2/ with --pt2 DEVICE (a second call, after the first has
               written OUT/model.pt): the same weights exported as an
               AOTInductor package (model.pt2, platform torch_aoti) with a
               dynamic batch dimension 1..128, compiled for DEVICE (cuda: a
               CUDA package, model and example on the GPU; cpu: a CPU
               package), fp32; max_batch_size 128, the package's maximum.
               Its own repository: tests/gpu/gpu_check.py serves it from a
               server of its own, so that a package that fails to export or
               load costs the TorchScript half nothing. OUT/pt2-export.json
               says how the export went (seconds, torch, range, or the
               error); an export that fails leaves no OUT/pt2/ and exit
               status 0, and the check reports the failure.
               tests/gpu/run.sh runs this call in the background, under a
               time limit, while inferd builds.

--size resnet18: torchvision's ResNet-18 architecture, seeded weights, input
[N,3,224,224] (the GPU run). --size tiny: a small CNN with batch norm, input
[N,3,32,32] (the --cpu run in CI), without the fp16 variants (libtorch 1.13
has no half-precision convolutions on the CPU). Every variant serves the same
model.pt.

The .pt2 export needs torch >= 2.6 (and, for its compile step, a C++
compiler and Python's headers); tests/gpu/run.sh passes --pt2 only then.

Usage: make_models.py --size resnet18|tiny OUT
       make_models.py --size resnet18|tiny --pt2 cuda|cpu OUT
"""
import argparse
import json
import os
import shutil
import sys
import sysconfig
import time
import traceback

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


def architecture(size):
    """(the eager model with its initial weights, input shape, classes)."""
    if size == "resnet18":
        import torchvision
        return torchvision.models.resnet18(weights=None), [3, 224, 224], 1000
    return Tiny(), [3, 32, 32], 10


def eager_from(model_file, size):
    """The eager model with the weights of the TorchScript file model_file:
    the python reference the .pt2 package is checked against."""
    model = architecture(size)[0]
    model.load_state_dict(torch.jit.load(model_file, map_location="cpu").state_dict())
    return model.eval()


def torch_version():
    return tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])


def build(size):
    torch.manual_seed(0)
    model, shape, classes = architecture(size)
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


def export_pt2(model_file, size, shape, device, out_path):
    """Export the weights of model_file as an AOTInductor package for device
    with a dynamic batch dimension 1..MAX_BATCH, as models/export_pt2.py does
    for the default model (the range goes into the package's metadata, where
    inferd reads it). Returns the batch range."""
    model = eager_from(model_file, size)
    # IEEE fp32 kernels, as inferd runs them (it turns TF32 off on GPUs).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    lo, hi = 1, MAX_BATCH
    model = model.to(device)
    example = torch.zeros(2, *shape, device=device)
    dynamic = {"x": {0: torch.export.Dim("batch", min=lo, max=hi)}}
    with torch.no_grad():
        ep = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    options = {"aot_inductor.metadata": {"inferd.batch_min": str(lo), "inferd.batch_max": str(hi)}}
    if device == "cpu":
        # OpenMP teams sized at run time: each inferd instance's thread share.
        options["cpp.dynamic_threads"] = True
    torch._inductor.aoti_compile_and_package(ep, package_path=out_path, inductor_configs=options)
    return lo, hi


def write(folder, config, model_file, name="model.pt"):
    os.makedirs(folder, exist_ok=True)
    dst = os.path.join(folder, name)
    if not os.path.exists(dst):
        os.link(model_file, dst)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=["resnet18", "tiny"], required=True)
    ap.add_argument("--pt2", choices=["cuda", "cpu"],
                    help="only export OUT/model.pt's weights as a .pt2 package for this device")
    ap.add_argument("out")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model_file = os.path.join(args.out, "model.pt")
    if args.pt2:
        _, shape, classes = architecture(args.size)
        write_pt2(args, model_file, base_config(shape, classes), shape)
        return
    scripted, shape, classes = build(args.size)
    scripted.save(model_file)
    base = base_config(shape, classes)
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
    print(f"wrote {args.size} repositories under {args.out}", flush=True)


def base_config(shape, classes):
    return {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1] + shape}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, classes]}],
        "max_batch_size": MAX_BATCH,
        "max_queue_delay_us": 0,
    }


def write_pt2(args, model_file, base, shape):
    """OUT/pt2/pt2/ and OUT/pt2-export.json; a failure is reported there,
    not raised: the TorchScript half of the run goes on without it."""
    report = {"device": args.pt2, "torch": torch.__version__, "size": args.size}
    # Inductor's compile step (and Triton's launcher, on a GPU) build C
    # against Python's headers: say so up front when they are missing.
    python_h = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    report["python_h"] = os.path.exists(python_h)
    if not report["python_h"]:
        print(f"warning: no {python_h}: the .pt2 compile step may fail (python3-dev)", flush=True)
    start = time.time()
    try:
        if torch_version() < (2, 6):
            raise RuntimeError(f"torch {torch.__version__} cannot export AOTInductor packages "
                               "(needs 2.6 or newer)")
        tmp = os.path.join(args.out, "model.pt2")
        lo, hi = export_pt2(model_file, args.size, shape, args.pt2, tmp)
        folder = os.path.join(args.out, "pt2", "pt2")
        write(folder, {**base, "file": "model.pt2", "platform": "torch_aoti",
                       "max_batch_size": min(MAX_BATCH, hi)}, tmp, name="model.pt2")
        report.update(ok=True, batch_min=lo, batch_max=hi,
                      package=os.path.join(folder, "model.pt2"))
    except Exception as e:  # noqa: BLE001 - reported, and the check fails on it
        traceback.print_exc()
        report.update(ok=False, error=f"{type(e).__name__}: {e}"[-2000:])
    report["seconds"] = round(time.time() - start, 1)
    with open(os.path.join(args.out, "pt2-export.json"), "w") as f:
        json.dump(report, f, indent=1)
    if report["ok"]:
        print(f"exported {report['package']} for {args.pt2} (batch {report['batch_min']}.."
              f"{report['batch_max']}, torch {torch.__version__}) in {report['seconds']} s",
              flush=True)
    else:
        print(f"the .pt2 export failed after {report['seconds']} s: {report['error']}",
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
