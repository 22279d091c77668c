#!/usr/bin/python3
"""Generate the ResNet-18 benchmark model (torchvision's architecture, seeded
weights, no download) as TorchScript in build/bench-models/resnet18/ (a repository of its own, so that
`--model-repository models` does not load it), saved by Debian's
torch 1.13 so that every libtorch from 1.13 up loads it. Not committed: run
`make resnet18`.

Usage: /usr/bin/python3 models/make_resnet18.py [OUT_DIR]
"""
import json
import os
import sys

import torch
import torchvision


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "build", "bench-models", "resnet18")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    scripted = torch.jit.script(model)
    os.makedirs(out, exist_ok=True)
    scripted.save(os.path.join(out, "model.pt"))
    config = {
        "name": "resnet18",
        "file": "model.pt",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}],
        "max_batch_size": 32,
        "max_queue_delay_us": 2000,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"wrote {out}/model.pt and config.json")


if __name__ == "__main__":
    main()
