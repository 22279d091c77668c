"""Fashion-MNIST loader for Debian's dataset-fashion-mnist (idx files, gzip)."""
import gzip
import struct

import numpy as np

DATA_DIR = "/usr/share/datasets/fashion-mnist"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        ndim = magic & 0xFF
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def load(split):
    """Return (images float32 [N,1,28,28] scaled to [0,1], labels int64 [N])."""
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(f"{DATA_DIR}/{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(f"{DATA_DIR}/{prefix}-labels-idx1-ubyte.gz")
    x = images.astype(np.float32)[:, None, :, :] / 255.0
    return x, labels.astype(np.int64)
