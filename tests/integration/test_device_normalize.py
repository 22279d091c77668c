"""UINT8 pixels normalised on the device (issue 22, point 6): an image input
whose config says "normalize": "device" keeps the decoded pixels as UINT8 in
the batch and the shim computes (pixel * scale - mean) / std on the model's
device (the CPU here). Its answers must equal the host path's (the same
model with the normalisation done in C) and torch's own reference on the
same pixels, batched or not; v2 UINT8 tensors reach it too, at a quarter of
the FP32 bytes.
"""
import base64
import io
import json
import struct

import numpy as np
import pytest

from support import assert_error, dumps, finish, start_server

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
SIDE = 32
IMAGE = {"color": "rgb", "resize": 36, "crop": [SIDE, SIDE], "mean": MEAN, "std": STD}


def tiny_colour_net():
    import torch

    torch.manual_seed(22)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8 * 4 * 4, 5)

        def forward(self, x):
            y = torch.nn.functional.relu(self.conv(x))
            y = torch.nn.functional.adaptive_avg_pool2d(y, 4)
            return self.fc(y.flatten(1))

    return torch.jit.script(Net().eval())


def write_model(repo, name, module, normalize):
    folder = repo / name
    folder.mkdir()
    module.save(str(folder / "model.pt"))
    image = dict(IMAGE, normalize=normalize)
    config = {"name": name, "file": "model.pt",
              "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, SIDE, SIDE],
                          "image": image}],
              "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 5]}],
              "max_batch_size": 8, "max_queue_delay_us": 0}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("device-normalize")
    net = tiny_colour_net()
    write_model(repo, "colour_host", net, "host")
    write_model(repo, "colour_device", net, "device")
    return repo


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    daemon = start_server(tmp_path_factory.mktemp("inferd"), repo, model="colour_device")
    yield daemon
    finish(daemon)


def photos():
    """Six smooth, noisy colour images of different sizes, as PNG and JPEG."""
    from PIL import Image

    rng = np.random.default_rng(6)
    out = []
    for k, (w, h) in enumerate([(40, 36), (64, 48), (36, 90), (120, 80), (37, 37), (50, 200)]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([128 + 100 * np.sin(xx / (5 + k) + c) * np.cos(yy / (7 + c))
                         for c in range(3)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buf, format="PNG" if k % 2 == 0 else "JPEG")
        out.append(buf.getvalue())
    return out


def infer_binary(server, model, inputs):
    """A v2 binary request; inputs: (datatype, shape, raw bytes) each named
    "input". Returns the logits as float32 [n, 5] and the body's size."""
    blob = b"".join(raw for _, _, raw in inputs)
    header = dumps({"inputs": [{"name": "input", "datatype": dt, "shape": list(shape),
                                "parameters": {"binary_data_size": len(raw)}}
                               for dt, shape, raw in inputs],
                    "outputs": [{"name": "logits",
                                 "parameters": {"binary_data": True}}]}).encode()
    r = server.post(f"/v2/models/{model}/infer", data=header + blob,
                    headers={"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text[:300]
    n = int(r.headers["Inference-Header-Content-Length"])
    return np.frombuffer(r.content[n:], dtype=np.float32).reshape(-1, 5), len(header) + len(blob)


def images_request(images):
    blob = b"".join(struct.pack("<I", len(b)) + b for b in images)
    return [("BYTES", [len(images)], blob)]


def test_images_equal_the_host_path_batched_and_not(server):
    images = photos()
    one_by_one = []
    for image in images:
        host, _ = infer_binary(server, "colour_host", images_request([image]))
        device, _ = infer_binary(server, "colour_device", images_request([image]))
        assert np.allclose(device, host, atol=1e-4, rtol=0), (device, host)
        one_by_one.append(device[0])
    # Same-sized outputs (the crop fixes them), so all six form one batch.
    batched, _ = infer_binary(server, "colour_device", images_request(images))
    assert batched.shape == (6, 5)
    assert np.allclose(batched, np.stack(one_by_one), atol=1e-5, rtol=0)
    worst = float(np.abs(batched - np.stack(one_by_one)).max())
    print(f"device vs host and batched vs one by one agree; batched diff {worst:.2e}")


def test_uint8_tensors_match_torch_and_the_fp32_path_at_a_quarter_of_the_bytes(server, repo):
    import torch

    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(4, 3, SIDE, SIDE), dtype=np.uint8)
    net = torch.jit.load(str(repo / "colour_device" / "model.pt")).eval()
    x = torch.from_numpy(pixels).float() / 255.0
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        reference = net(x).numpy()
    ours, u8_bytes = infer_binary(server, "colour_device",
                                  [("UINT8", pixels.shape, pixels.tobytes())])
    assert np.allclose(ours, reference, atol=1e-4, rtol=0), np.abs(ours - reference).max()
    fp32 = x.numpy().astype(np.float32)
    host, f32_bytes = infer_binary(server, "colour_host", [("FP32", fp32.shape, fp32.tobytes())])
    assert np.allclose(ours, host, atol=1e-4, rtol=0)
    # One at a time equals the batch of four.
    for i in range(4):
        single, _ = infer_binary(server, "colour_device",
                                 [("UINT8", (1, 3, SIDE, SIDE), pixels[i:i + 1].tobytes())])
        assert np.allclose(single[0], ours[i], atol=1e-5, rtol=0)
    assert pixels.nbytes * 4 == fp32.nbytes
    print(f"4 images of 3x{SIDE}x{SIDE}: UINT8 request {u8_bytes} bytes, FP32 {f32_bytes} bytes; "
          f"max |ours - torch| {np.abs(ours - reference).max():.2e}")


def test_metadata_says_uint8_and_config_says_the_model_type(server):
    meta = server.get("/v2/models/colour_device").json()
    assert meta["inputs"][0]["datatype"] == "UINT8"
    assert server.get("/v2/models/colour_host").json()["inputs"][0]["datatype"] == "FP32"
    config = server.get("/v2/models/colour_device/config").json()
    assert config["inputs"][0]["datatype"] == "FP32"
    assert config["inputs"][0]["image"]["normalize"] == "device"
    host = server.get("/v2/models/colour_host/config").json()
    assert host["inputs"][0]["image"]["normalize"] == "host"


def test_normalised_floats_are_refused_by_a_device_model(server):
    values = np.full((1, 3, SIDE, SIDE), -0.5, dtype=np.float32)
    header = dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                "shape": list(values.shape),
                                "parameters": {"binary_data_size": values.nbytes}}]}).encode()
    r = server.post("/v2/models/colour_device/infer", data=header + values.tobytes(),
                    headers={"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(header))})
    assert_error(r, 400)
    # A UINT8 tensor whose byte count does not match its shape is a 400 too.
    short = np.zeros((1, 3, SIDE, SIDE - 1), dtype=np.uint8)
    header = dumps({"inputs": [{"name": "input", "datatype": "UINT8",
                                "shape": [1, 3, SIDE, SIDE],
                                "parameters": {"binary_data_size": short.nbytes}}]}).encode()
    r = server.post("/v2/models/colour_device/infer", data=header + short.tobytes(),
                    headers={"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(header))})
    assert_error(r, 400)


def test_cpu_instances_report_no_gpu_memory(server):
    """Issue 22 point 7: the GPU memory figure is measured on GPU instances
    only; a CPU instance has none (absent, not 0), in the config endpoint,
    /metrics and the log alike (tests/gpu/run.sh checks the GPU side)."""
    status = server.get("/v2/models/colour_device/config").json()["instance_status"]
    assert status and all(s["device"] == "cpu" for s in status)
    assert all("gpu_memory_bytes" not in s for s in status)
    metrics = server.get("/metrics").text
    assert "# TYPE inferd_model_instance_gpu_memory_bytes gauge" in metrics
    assert "inferd_model_instance_gpu_memory_bytes{" not in metrics
    ready = [line for line in server.log_text().splitlines() if "instance ready" in line]
    assert ready and not any("gpu_memory_bytes" in line for line in ready)


def test_predict_image_bodies_agree(server):
    """/predict with a raw PNG and a JPEG body: the device model (the
    default) and the host model give the same outputs."""
    for image, ctype in zip(photos()[:2], ("image/png", "image/jpeg")):
        device = server.post("/predict", data=image, headers={"Content-Type": ctype})
        body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                            "data": [base64.b64encode(image).decode()]}]}
        host = server.post("/v2/models/colour_host/infer", data=dumps(body),
                           headers={"Content-Type": "application/json"})
        assert device.status_code == 200 and host.status_code == 200, (device.text, host.text)
        ours = np.array(device.json()["outputs"], dtype=np.float32).reshape(1, 5)
        theirs = np.array(host.json()["outputs"][0]["data"], dtype=np.float32).reshape(1, 5)
        assert np.allclose(ours, theirs, atol=1e-4, rtol=0), (ours, theirs)


def test_grpc_uint8_pixels_equal_http(repo, tmp_path):
    """The same UINT8 tensor over gRPC (raw_input_contents) gives the HTTP
    answer: the gRPC binding fills the same call."""
    import subprocess
    import sys

    grpc = pytest.importorskip("grpc")
    from support import REPO_ROOT, free_port

    out = tmp_path / "stubs"
    out.mkdir()
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO_ROOT / 'proto'}",
                    f"--python_out={out}", f"--grpc_python_out={out}",
                    str(REPO_ROOT / "proto" / "inference.proto")], check=True, timeout=60)
    sys.path.insert(0, str(out))
    try:
        import inference_pb2
        import inference_pb2_grpc
    finally:
        sys.path.remove(str(out))
    port = free_port()
    (tmp_path / "d").mkdir()
    daemon = start_server(tmp_path / "d", repo, ["--grpc-port", str(port)], model="colour_device")
    try:
        pixels = np.random.default_rng(9).integers(0, 256, size=(2, 3, SIDE, SIDE),
                                                   dtype=np.uint8)
        http, _ = infer_binary(daemon, "colour_device", [("UINT8", pixels.shape,
                                                          pixels.tobytes())])
        req = inference_pb2.ModelInferRequest(model_name="colour_device")
        req.inputs.add(name="input", datatype="UINT8", shape=list(pixels.shape))
        req.raw_input_contents.append(pixels.tobytes())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
            resp = stub.ModelInfer(req, timeout=30)
            meta = stub.ModelMetadata(inference_pb2.ModelMetadataRequest(name="colour_device"),
                                      timeout=30)
        assert meta.inputs[0].datatype == "UINT8"
        ours = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 5)
        assert np.allclose(ours, http, atol=1e-6, rtol=0), (ours, http)
    finally:
        finish(daemon)
