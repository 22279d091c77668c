"""The seed stack: the usual "deploy a PyTorch model with Flask + gunicorn" app.

This is what inferd is measured against: a Flask app that loads the same
TorchScript file (torch.jit.load, eval), runs every request through the
model one at a time under torch.inference_mode(), and answers POST /predict
with the same JSON shapes as inferd:

    request : {"inputs": [784 floats]}  (or nested [N,1,28,28] / [N,784] / [28,28])
    answer  : {"model": ..., "outputs": [[10 floats]], "shape": [N,10], "labels": [...]}

Run under gunicorn (what bench/run.sh does; tuned for this 2-core box):

    SEED_TORCH_THREADS=1 gunicorn -w 2 -k sync -b 127.0.0.1:8000 \
        --chdir bench seed_app:app

Environment:
    SEED_MODEL_DIR      model folder (default: models/fashion_mnist next to bench/)
    SEED_TORCH_THREADS  intra-op threads per worker (default 1: one worker per core)
"""
import os

import torch
from flask import Flask, jsonify, request

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_DIR = os.environ.get("SEED_MODEL_DIR",
                           os.path.join(os.path.dirname(HERE), "models", "fashion_mnist"))
MODEL_NAME = os.path.basename(os.path.normpath(MODEL_DIR))

# One intra-op thread per worker process; the workers share the cores.
torch.set_num_threads(int(os.environ.get("SEED_TORCH_THREADS", "1")))
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # already set (only allowed once per process)
    pass

# Loaded in each worker at import (no --preload: torch thread pools and fork
# do not mix).
model = torch.jit.load(os.path.join(MODEL_DIR, "model.pt"), map_location="cpu")
model.eval()

try:
    with open(os.path.join(MODEL_DIR, "labels.txt")) as f:
        LABELS = [line.strip() for line in f if line.strip()]
except OSError:
    LABELS = []

app = Flask(__name__)


def _to_batch(inputs):
    x = torch.tensor(inputs, dtype=torch.float32)
    if x.numel() % 784 != 0 or x.numel() == 0:
        raise ValueError(f"expected a multiple of 784 values, got {x.numel()}")
    return x.reshape(-1, 1, 28, 28)


@app.post("/predict")
def predict():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or "inputs" not in body:
        return jsonify(error='body must be a JSON object with "inputs"'), 400
    try:
        x = _to_batch(body["inputs"])
    except (ValueError, TypeError, RuntimeError) as e:
        return jsonify(error=str(e)), 400
    with torch.inference_mode():
        y = model(x)
    idx = y.argmax(dim=1).tolist()
    labels = [LABELS[i] if i < len(LABELS) else str(i) for i in idx]
    return jsonify(model=MODEL_NAME, outputs=y.tolist(), shape=list(y.shape), labels=labels)


@app.get("/v2/health/ready")
def ready():
    return "", 200


if __name__ == "__main__":  # debugging only; the benchmark uses gunicorn
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
