#!/usr/bin/python3
"""Export the default model's weights (models/fashion_mnist/model.pt, the
SmallCNN of train_fashion_mnist.py) as an AOTInductor package with a dynamic
batch dimension, into a model folder inferd serves:

    <out>/model.pt2     the package (native code for this machine's CPU)
    <out>/config.json   the default model's config with "file": "model.pt2"
    <out>/labels.txt    copied

Needs torch 2.6 or newer (Debian 13's python3-torch; its compile step also
needs g++, python3-dev and python3-setuptools). A .pt2 holds code compiled for
the exporting machine and torch version: generate it where it runs, never
commit it.

The package carries its batch range in its metadata ("inferd.batch_min",
"inferd.batch_max"), where inferd reads it. Generated kernels size their
OpenMP teams at run time (cpp.dynamic_threads), so that each inferd CPU
instance uses its own share of the cores rather than the exporter's count.

Usage: python3 models/export_pt2.py [--weights model.pt] [--out DIR] [--max-batch N]
                                    [--static-batch N]
"""
import argparse
import json
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_fashion_mnist import SmallCNN  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def load_weights(path):
    """The SmallCNN with the weights of the TorchScript file at path."""
    scripted = torch.jit.load(path, map_location="cpu")
    model = SmallCNN()
    model.load_state_dict(scripted.state_dict())
    return model.eval()


def export(model, out_path, max_batch, static_batch):
    """Compile model into an AOTInductor package; returns the batch range."""
    if static_batch:
        lo = hi = static_batch
        example = torch.zeros(static_batch, 1, 28, 28)
        dynamic = None
    else:
        lo, hi = 1, max_batch
        example = torch.zeros(2, 1, 28, 28)
        dynamic = {"x": {0: torch.export.Dim("batch", min=lo, max=hi)}}
    with torch.no_grad():
        ep = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    options = {
        "aot_inductor.metadata": {"inferd.batch_min": str(lo), "inferd.batch_max": str(hi)},
        "cpp.dynamic_threads": True,
    }
    torch._inductor.aoti_compile_and_package(ep, package_path=out_path,
                                             inductor_configs=options)
    return lo, hi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=os.path.join(HERE, "fashion_mnist", "model.pt"))
    ap.add_argument("--out", default=os.path.join(HERE, "fashion_mnist_pt2"))
    ap.add_argument("--max-batch", type=int, default=128)
    ap.add_argument("--static-batch", type=int, default=0,
                    help="export a static batch of this size instead")
    args = ap.parse_args()
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 6):
        sys.exit(f"export_pt2: torch {torch.__version__} is too old; AOTInductor packages "
                 "need torch 2.6 or newer (scripts/trixie-root.sh has one)")
    start = time.time()
    os.makedirs(args.out, exist_ok=True)
    model = load_weights(args.weights)
    pt2 = os.path.join(args.out, "model.pt2")
    lo, hi = export(model, pt2, args.max_batch, args.static_batch)
    src_dir = os.path.dirname(os.path.abspath(args.weights))
    with open(os.path.join(src_dir, "config.json")) as f:
        config = json.load(f)
    config["name"] = os.path.basename(os.path.normpath(args.out))
    config["file"] = "model.pt2"
    if args.static_batch:
        config["max_batch_size"] = 0
        for io in config["inputs"] + config["outputs"]:
            io["shape"][0] = args.static_batch
    else:
        config["max_batch_size"] = min(config.get("max_batch_size", hi), hi)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    shutil.copy(os.path.join(src_dir, "labels.txt"), os.path.join(args.out, "labels.txt"))
    print(f"saved {pt2} (batch {lo}..{hi}, torch {torch.__version__}) "
          f"in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
