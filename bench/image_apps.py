"""The Python stacks inferd is measured against on an image model
(bench/resnet_jpeg.py): the same TorchScript file, one JPEG per request as
the raw body, ImageNet preprocessing with PIL + torchvision (resize 256,
centre crop 224, normalise), the top-1 index and its logit in the answer.

- `seed`: Flask under gunicorn (sync workers), one image per forward: the
  usual "deploy a PyTorch model with Flask" app.
      IMAGE_MODEL=... gunicorn -w 2 -k sync -b 127.0.0.1:8000 --chdir bench image_apps:seed
- `batcher`: FastAPI under uvicorn, one process, an asyncio batcher: requests
  wait in an asyncio queue; one task takes up to BATCHER_MAX of them (waiting
  at most BATCHER_DELAY_MS after the first), decodes them and runs one
  forward in a worker thread (torch releases the GIL), then answers each.
      IMAGE_MODEL=... uvicorn --app-dir bench --host 127.0.0.1 --port 8001 image_apps:batcher

Environment: IMAGE_MODEL (the model.pt), IMAGE_TORCH_THREADS (intra-op
threads per process; default 1 for seed workers, 2 for the batcher),
BATCHER_MAX [8], BATCHER_DELAY_MS [2].
"""
import asyncio
import io
import os
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image
from torchvision import transforms

MODEL_PATH = os.environ.get("IMAGE_MODEL", "build/bench-models/resnet18/model.pt")
PREPROCESS = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def load_model(threads):
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    model = torch.jit.load(MODEL_PATH, map_location="cpu")
    return model.eval()


def decode(body):
    return PREPROCESS(Image.open(io.BytesIO(body)).convert("RGB"))


def answer(row):
    k = int(row.argmax())
    return {"index": k, "logit": float(row[k])}


# ---- seed: Flask + gunicorn, one image per forward ----

def _make_seed():
    from flask import Flask, jsonify, request
    app = Flask("seed")
    state = {}

    @app.post("/predict")
    def predict():
        if "model" not in state:  # per worker, after the fork
            state["model"] = load_model(int(os.environ.get("IMAGE_TORCH_THREADS", "1")))
        try:
            x = decode(request.get_data())
        except Exception as e:  # noqa: BLE001  a bad image is the client's error
            return jsonify(error=str(e)), 400
        with torch.inference_mode():
            y = state["model"](x.unsqueeze(0))
        return jsonify(answer(y[0]))

    @app.get("/v2/health/ready")
    def ready():
        return "", 200

    return app


# ---- batcher: FastAPI + uvicorn + an asyncio batcher ----

def _make_batcher():
    from fastapi import FastAPI, Request, Response
    app = FastAPI()
    max_batch = int(os.environ.get("BATCHER_MAX", "8"))
    delay = float(os.environ.get("BATCHER_DELAY_MS", "2")) / 1000
    state = {}

    def run_batch(bodies):
        xs = torch.stack([decode(b) for b in bodies])
        with torch.inference_mode():
            return state["model"](xs)

    def warm(most):
        x = torch.zeros(1, 3, 224, 224)
        with torch.inference_mode():
            for b in range(1, most + 1):
                for _ in range(2):
                    state["model"](x.expand(b, -1, -1, -1).contiguous())

    async def batcher():
        queue = state["queue"]
        loop = asyncio.get_running_loop()
        while True:
            items = [await queue.get()]
            deadline = loop.time() + delay
            while len(items) < max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                y = await loop.run_in_executor(state["pool"], run_batch, [b for b, _ in items])
                for (_, fut), row in zip(items, y):
                    fut.set_result(answer(row))
            except Exception as e:  # noqa: BLE001  every waiter gets the error
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(e)

    @app.on_event("startup")
    async def start():
        state["model"] = load_model(int(os.environ.get("IMAGE_TORCH_THREADS", "2")))
        # One thread runs every batch: each new thread calling torch gets its
        # own OpenMP team, whose spinning threads would starve the others.
        state["pool"] = ThreadPoolExecutor(max_workers=1)
        # Warm every batch size it can form, twice, on that thread: TorchScript
        # profiles and re-optimises for each new input shape, which costs
        # seconds per shape here (measured: the first forwards at a new size
        # took 1 to 4 s, then 0.04 to 0.14 s).
        await asyncio.get_running_loop().run_in_executor(state["pool"], warm, max_batch)
        state["queue"] = asyncio.Queue()
        state["task"] = asyncio.create_task(batcher())

    @app.post("/predict")
    async def predict(request: Request):
        fut = asyncio.get_running_loop().create_future()
        await state["queue"].put((await request.body(), fut))
        try:
            return await fut
        except Exception as e:  # noqa: BLE001
            return Response(content=str(e), status_code=400)

    @app.get("/v2/health/ready")
    async def ready():
        return Response(status_code=200)

    return app


seed = _make_seed() if os.environ.get("IMAGE_APP", "seed") == "seed" else None
batcher = _make_batcher() if os.environ.get("IMAGE_APP") == "batcher" else None
