#!/usr/bin/python3
"""Test data and models for inferd's image requests (issue 12), all under
build/image-data/ (not committed; rerunning is cheap and skips what exists):

    fashion-png/NNNNN.png   Fashion-MNIST's 10,000 test images as 8-bit gray
                            PNGs (Debian's dataset-fashion-mnist), and
                            fashion-png/labels.txt (class index per line)
    photos/                 real photographs shipped in Debian's
                            python3-skimage package (skimage/data/: PNGs and
                            JPEGs: astronaut, coffee, chelsea, motorcycle,
                            rocket, retina, hubble_deep_field, ...), read
                            from the installed package, else extracted from
                            `apt-get download python3-skimage` (no install)
    repo/resnet18_image/    a colour model: torchvision's ResNet-18
                            architecture with seeded weights (no download),
                            TorchScript from Debian's torch 1.13, with
                            ImageNet preprocessing declared in config.json
                            (resize 256, center crop 224, mean/std). Its
                            forward returns (logits, input), so that a test
                            sees the input exactly as inferd preprocessed it.
    repo/fashion_mnist/     the default model with the committed config

Usage: /usr/bin/python3 models/make_image_data.py [OUT_DIR]
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fashion_mnist_data  # noqa: E402

SKIMAGE_DATA = "/usr/lib/python3/dist-packages/skimage/data"
PHOTOS = [  # photographs (not synthetic test patterns) in skimage/data
    "astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
    "motorcycle_right.png", "camera.png", "moon.png", "brick.png", "grass.png",
    "gravel.png", "coins.png", "page.png", "cell.png", "ihc.png", "horse.png",
    "rocket.jpg", "retina.jpg", "hubble_deep_field.jpg",
]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def write_fashion_pngs(out):
    from PIL import Image
    d = os.path.join(out, "fashion-png")
    if os.path.exists(os.path.join(d, "labels.txt")):
        return
    os.makedirs(d, exist_ok=True)
    images = fashion_mnist_data._read_idx(
        f"{fashion_mnist_data.DATA_DIR}/t10k-images-idx3-ubyte.gz")
    labels = fashion_mnist_data._read_idx(
        f"{fashion_mnist_data.DATA_DIR}/t10k-labels-idx1-ubyte.gz")
    for i, img in enumerate(images):
        Image.fromarray(img, mode="L").save(os.path.join(d, f"{i:05d}.png"))
    with open(os.path.join(d, "labels.txt"), "w") as f:
        f.write("".join(f"{int(v)}\n" for v in labels))
    print(f"wrote {len(images)} PNGs to {d}")


def copy_photos(out):
    d = os.path.join(out, "photos")
    if os.path.isdir(d) and len(os.listdir(d)) == len(PHOTOS):
        return
    os.makedirs(d, exist_ok=True)
    src = SKIMAGE_DATA
    tmp = None
    if not all(os.path.exists(os.path.join(src, p)) for p in PHOTOS):
        tmp = tempfile.mkdtemp()
        subprocess.run(["apt-get", "download", "python3-skimage"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        deb = glob.glob(os.path.join(tmp, "python3-skimage_*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
        src = os.path.join(tmp, "x", SKIMAGE_DATA.lstrip("/"))
    for p in PHOTOS:
        shutil.copy(os.path.join(src, p), os.path.join(d, p))
    if tmp:
        shutil.rmtree(tmp)
    print(f"copied {len(PHOTOS)} photos from python3-skimage to {d}")


def write_colour_model(out):
    import torch
    import torchvision
    d = os.path.join(out, "repo", "resnet18_image")
    if os.path.exists(os.path.join(d, "model.pt")):
        return
    os.makedirs(d, exist_ok=True)

    class WithInput(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x), x

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    torch.jit.script(WithInput(net)).save(os.path.join(d, "model.pt"))
    config = {
        "name": "resnet18_image",
        "file": "model.pt",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224],
                    "image": {"color": "rgb", "resize": 256, "crop": [224, 224],
                              "scale": 1 / 255, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                              "layout": "NCHW"}}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]},
                    {"name": "pixels", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
        "max_batch_size": 8,
        "max_queue_delay_us": 1000,
        "warmup": False,
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"wrote {d}")


def copy_fashion(out):
    d = os.path.join(out, "repo", "fashion_mnist")
    os.makedirs(d, exist_ok=True)
    for f in ("model.pt", "config.json", "labels.txt"):
        shutil.copy(os.path.join(HERE, "fashion_mnist", f), os.path.join(d, f))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "image-data")
    write_fashion_pngs(out)
    copy_photos(out)
    write_colour_model(out)
    copy_fashion(out)


if __name__ == "__main__":
    main()
