"""Image requests (issue 12): JPEG/PNG bodies, multipart/form-data, v2 BYTES
(binary and base64 JSON), image preprocessing declared in config.json, top-k
labels, Triton's classification extension, and every bad-input case.

Real data: Fashion-MNIST's 10,000 test images as PNGs, and photographs from
Debian's python3-skimage package, both prepared by models/make_image_data.py
under build/image-data/ (run here when missing). The reference for the
colour model is PIL decoding + torchvision transforms.
"""
import base64
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from support import (REPO_ROOT, LABELS, assert_error, assert_still_serves, dumps, http_session,
                     start_server, finish, fashion_mnist_data)

DATA = REPO_ROOT / "build" / "image-data"
PYTHON = "/usr/bin/python3"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
EXPECTED_ACCURACY = 0.8964  # the committed model on the JSON tensor path


@pytest.fixture(scope="module")
def data():
    """build/image-data, made by the committed script if missing."""
    if not (DATA / "fashion-png" / "labels.txt").exists() or \
            not (DATA / "repo" / "resnet18_image" / "model.pt").exists():
        subprocess.run([PYTHON, str(REPO_ROOT / "models" / "make_image_data.py"), str(DATA)],
                       check=True, timeout=600)
    return DATA


@pytest.fixture(scope="module")
def image_repo(data, tmp_path_factory):
    """The committed fashion_mnist (its config declares the image input and
    top_k 3) and the colour model, in a repository of their own."""
    repo = tmp_path_factory.mktemp("image-repo")
    shutil.copytree(REPO_ROOT / "models" / "fashion_mnist", repo / "fashion_mnist")
    shutil.copytree(data / "repo" / "resnet18_image", repo / "resnet18_image")
    return repo


@pytest.fixture(scope="module")
def server(image_repo, tmp_path_factory):
    daemon = start_server(tmp_path_factory.mktemp("inferd"), image_repo,
                          ["--max-image-pixels", "30000000"])
    yield daemon
    finish(daemon)


def photo_paths(data):
    paths = sorted((data / "photos").iterdir())
    assert len(paths) >= 15, paths
    assert any(p.suffix == ".jpg" for p in paths) and any(p.suffix == ".png" for p in paths)
    return paths


def content_type(path):
    return "image/jpeg" if path.suffix in (".jpg", ".jpeg") else "image/png"


def fashion_png(data, i):
    return (data / "fashion-png" / f"{i:05d}.png").read_bytes()


def v2_bytes_binary(server, model, images, outputs):
    """POST a v2 binary request with one BYTES input holding `images`;
    returns {output name: raw bytes} and the JSON header."""
    blob = b"".join(struct.pack("<I", len(b)) + b for b in images)
    header = dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [len(images)],
                                "parameters": {"binary_data_size": len(blob)}}],
                    "outputs": outputs}).encode()
    r = server.post(f"/v2/models/{model}/infer", data=header + blob,
                    headers={"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text[:300]
    n = int(r.headers["Inference-Header-Content-Length"])
    head = json.loads(r.content[:n])
    parts, pos = {}, n
    for out in head["outputs"]:
        size = out["parameters"]["binary_data_size"]
        parts[out["name"]] = r.content[pos:pos + size]
        pos += size
    assert pos == len(r.content)
    return parts, head


# --------------------------------------------------------------------------
# Fashion-MNIST: 10,000 PNGs, one request each

def test_fashion_pngs_reach_the_tensor_paths_accuracy(server, data):
    labels = np.array([int(v) for v in (data / "fashion-png" / "labels.txt").read_text().split()])
    assert len(labels) == 10000
    x, y = fashion_mnist_data.load("test")
    assert (labels == y).all()
    http = http_session()  # one keep-alive connection for all 10,000
    url = server.url("/predict")
    start = time.monotonic()
    png_logits = np.empty((10000, 10), dtype=np.float64)
    for i in range(10000):
        r = http.post(url, data=fashion_png(data, i), headers={"Content-Type": "image/png"},
                      timeout=15)
        assert r.status_code == 200, (i, r.text[:300])
        body = r.json()
        png_logits[i] = body["outputs"][0]
        if i % 1000 == 0:  # label and top-k agree with the outputs
            assert body["labels"] == [LABELS[int(np.argmax(png_logits[i]))]]
            assert body["top_k"][0][0]["index"] == int(np.argmax(png_logits[i]))
        assert time.monotonic() - start < 240, f"too slow: {i} images"
    png_seconds = time.monotonic() - start
    json_logits = np.empty_like(png_logits)
    for b in range(0, 10000, 32):  # the tensor path, pixel / 255, as the model was trained
        r = http.post(url, data=dumps({"inputs": x[b:b + 32].tolist()}),
                      headers={"Content-Type": "application/json"}, timeout=15)
        assert r.status_code == 200, r.text[:300]
        json_logits[b:b + 32] = r.json()["outputs"]
    http.close()
    diff = np.abs(png_logits - json_logits).max()
    assert diff <= 1e-4, f"PNG path differs from the JSON path by {diff}"
    png_acc = (png_logits.argmax(1) == labels).mean()
    json_acc = (json_logits.argmax(1) == labels).mean()
    print(f"10,000 PNGs in {png_seconds:.1f} s ({10000 / png_seconds:.0f} req/s); "
          f"accuracy {png_acc:.4f} (JSON path {json_acc:.4f}); max |diff| {diff:.2e}")
    assert png_acc == json_acc == EXPECTED_ACCURACY


def test_curl_form_upload_answers_label_and_top_k(server, data):
    """The README's example: curl -F image=@<Fashion-MNIST PNG> .../predict."""
    path = data / "fashion-png" / "00000.png"
    out = subprocess.run(["curl", "-s", "--noproxy", "*", "-F", f"image=@{path}",
                          server.url("/predict")], capture_output=True, timeout=30, check=True)
    body = json.loads(out.stdout)
    assert body["labels"] == ["Ankle boot"]  # test image 0 is an ankle boot
    top = body["top_k"][0]
    assert len(top) == 3 and top[0]["label"] == "Ankle boot" and top[0]["index"] == 9
    logits = np.array(body["outputs"][0])
    soft = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    order = np.argsort(-soft)[:3]
    assert [t["index"] for t in top] == order.tolist()
    for t in top:
        assert t["score"] == pytest.approx(soft[t["index"]], rel=1e-5)
        assert t["label"] == LABELS[t["index"]]


def test_top_k_query_overrides_the_default(server, data):
    png = fashion_png(data, 1)
    r = server.post("/predict?top_k=10", data=png, headers={"Content-Type": "image/png"})
    top = r.json()["top_k"][0]
    assert len(top) == 10
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert sum(t["score"] for t in top) == pytest.approx(1.0, abs=1e-5)
    r = server.post("/predict?top_k=0", data=png, headers={"Content-Type": "image/png"})
    assert "top_k" not in r.json()
    # the JSON tensor path gets the config default too
    x, _ = fashion_mnist_data.load("test")
    r = server.predict({"inputs": x[:2].tolist()})
    assert [len(t) for t in r.json()["top_k"]] == [3, 3]
    for bad in ("-1", "x", "1001", "2.5"):
        assert_error(server.post(f"/predict?top_k={bad}", data=png,
                                 headers={"Content-Type": "image/png"}), 400)


def test_multipart_with_several_files_is_one_batch(server, data):
    files = [("image", (f"{i}.png", fashion_png(data, i), "image/png")) for i in range(5)]
    files.append(("note", (None, "a plain field is ignored")))
    r = server.post("/predict", files=files)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["shape"] == [5, 10] and len(body["top_k"]) == 5
    for i in range(5):
        one = server.post("/predict", data=fashion_png(data, i),
                          headers={"Content-Type": "image/png"}).json()
        assert np.allclose(body["outputs"][i], one["outputs"][0], atol=1e-5)
        assert body["labels"][i] == one["labels"][0]


# --------------------------------------------------------------------------
# The colour model: real photographs vs PIL + torchvision

def torchvision_reference(path):
    from PIL import Image
    import torchvision.transforms as T
    img = Image.open(path).convert("RGB")
    cropped = T.CenterCrop(224)(T.Resize(256)(img))
    tensor = T.Normalize(MEAN.tolist(), STD.tolist())(T.ToTensor()(cropped))
    return np.asarray(cropped), tensor


def test_photos_match_torchvision_within_one_lsb(server, data):
    import torch
    model = torch.jit.load(str(data / "repo" / "resnet18_image" / "model.pt")).eval()
    worst = 0.0
    for path in photo_paths(data):
        parts, head = v2_bytes_binary(server, "resnet18_image", [path.read_bytes()],
                                      [{"name": "logits", "parameters": {"binary_data": True}},
                                       {"name": "pixels", "parameters": {"binary_data": True}}])
        pixels = np.frombuffer(parts["pixels"], dtype=np.float32).reshape(3, 224, 224)
        logits = np.frombuffer(parts["logits"], dtype=np.float32)
        ref_u8, ref = torchvision_reference(path)
        # Undo the normalisation: back to 0..255 units of the 8-bit input.
        ours_255 = (pixels * STD[:, None, None] + MEAN[:, None, None]) * 255.0
        lsb = np.abs(ours_255 - ref_u8.transpose(2, 0, 1).astype(np.float32)).max()
        worst = max(worst, float(lsb))
        assert lsb <= 1.0 + 1e-3, f"{path.name}: {lsb:.4f} LSB from torchvision"
        with torch.no_grad():
            ref_logits, _ = model(ref[None])
        assert int(np.argmax(logits)) == int(ref_logits[0].argmax()), path.name
        assert np.allclose(logits, ref_logits[0].numpy(), atol=1e-3, rtol=1e-3), path.name
    print(f"{len(photo_paths(data))} photos: worst difference {worst:.4f} LSB")


def test_raw_jpeg_and_png_bodies_to_the_colour_model(image_repo, data, start_daemon):
    daemon = start_daemon(repo=image_repo, model="resnet18_image")
    for name in ("rocket.jpg", "chelsea.png"):
        path = data / "photos" / name
        r = daemon.post("/predict?top_k=5", data=path.read_bytes(),
                        headers={"Content-Type": content_type(path)})
        assert r.status_code == 200, r.text[:300]
        body = r.json()
        assert body["shape"] == [1, 1000]
        top = body["top_k"][0]
        assert len(top) == 5 and all("label" not in t for t in top)  # no labels file
        assert top[0]["index"] == int(np.argmax(body["outputs"][0]))


# --------------------------------------------------------------------------
# v2 BYTES and the classification extension

def test_v2_bytes_json_base64_and_binary_agree(server, data):
    images = [fashion_png(data, i) for i in range(3)]
    body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [3],
                        "data": [base64.b64encode(b).decode() for b in images]}]}
    r = server.post("/v2/models/fashion_mnist/infer", data=dumps(body),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    out = r.json()["outputs"][0]
    assert out["shape"] == [3, 10]
    json_values = np.array(out["data"]).reshape(3, 10)
    parts, _ = v2_bytes_binary(server, "fashion_mnist", images,
                               [{"name": "logits", "parameters": {"binary_data": True}}])
    binary_values = np.frombuffer(parts["logits"], dtype=np.float32).reshape(3, 10)
    assert np.allclose(json_values, binary_values, atol=1e-6)
    for i in range(3):
        one = server.post("/predict", data=images[i], headers={"Content-Type": "image/png"})
        assert np.allclose(one.json()["outputs"][0], binary_values[i], atol=1e-5)
    # shape [3, 1] with nested data, as some Triton clients send it
    body["inputs"][0].update(shape=[3, 1], data=[[d] for d in body["inputs"][0]["data"]])
    r = server.post("/v2/models/fashion_mnist/infer", data=dumps(body),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    assert np.allclose(np.array(r.json()["outputs"][0]["data"]).reshape(3, 10), binary_values,
                       atol=1e-6)


def test_classification_extension(server, data):
    images = [fashion_png(data, i) for i in range(2)]
    body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [2],
                        "data": [base64.b64encode(b).decode() for b in images]}],
            "outputs": [{"name": "logits", "parameters": {"classification": 3}}]}
    r = server.post("/v2/models/fashion_mnist/infer", data=dumps(body),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    out = r.json()["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [2, 3]
    plain = server.post("/v2/models/fashion_mnist/infer",
                        data=dumps({"inputs": body["inputs"]}),
                        headers={"Content-Type": "application/json"}).json()
    logits = np.array(plain["outputs"][0]["data"]).reshape(2, 10)
    for row in range(2):
        entries = [s.split(":", 2) for s in out["data"][row * 3:row * 3 + 3]]
        order = np.argsort(-logits[row], kind="stable")[:3]
        assert [int(e[1]) for e in entries] == order.tolist()
        for score, index, label in entries:
            assert float(score) == pytest.approx(logits[row][int(index)], abs=1e-5)
            assert label == LABELS[int(index)]
    # binary form: 4-byte length + string per element
    parts, head = v2_bytes_binary(server, "fashion_mnist", images,
                                  [{"name": "logits",
                                    "parameters": {"classification": 2, "binary_data": True}}])
    assert head["outputs"][0]["datatype"] == "BYTES"
    blob, strings = parts["logits"], []
    while blob:
        n = struct.unpack("<I", blob[:4])[0]
        strings.append(blob[4:4 + n].decode())
        blob = blob[4 + n:]
    assert strings[::2] == [s for s in out["data"][::3]]
    assert "classification" in server.get("/v2").json()["extensions"]


# --------------------------------------------------------------------------
# Bad input: the right status, a JSON error, and the server still serves

def post_image(server, body, ctype="image/png", path="/predict"):
    return server.post(path, data=body, headers={"Content-Type": ctype})


def test_corrupt_and_truncated_images_are_400(server, data):
    jpeg = (data / "photos" / "rocket.jpg").read_bytes()
    png = (data / "photos" / "chelsea.png").read_bytes()
    idat = png.index(b"IDAT")  # a flipped byte in the image data breaks its CRC
    cases = {
        "truncated JPEG": (jpeg[:len(jpeg) // 2], "image/jpeg"),
        "truncated PNG": (png[:len(png) // 2], "image/png"),
        "JPEG header only": (jpeg[:200], "image/jpeg"),
        "corrupt PNG CRC": (png[:idat + 20] + bytes([png[idat + 20] ^ 0xff]) + png[idat + 21:],
                            "image/png"),
        "garbage": (b"this is not an image at all", "image/jpeg"),
        "empty": (b"", "image/png"),
    }
    for name, (body, ctype) in cases.items():
        message = assert_error(post_image(server, body, ctype), 400)
        assert message, name
    assert_still_serves(server)


def test_unsupported_image_types_are_415(server, data, start_daemon):
    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    assert "GIF" in assert_error(post_image(server, gif, "image/png"), 415)
    assert_error(post_image(server, gif, "image/gif"), 415)
    assert_error(post_image(server, gif, "image/webp"), 415)
    # a model whose input is not declared as an image (the tests' own config)
    plain = start_daemon()
    message = assert_error(post_image(plain, fashion_png(data, 0)), 415)
    assert "image" in message
    body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(fashion_png(data, 0)).decode()]}]}
    assert_error(plain.post("/v2/models/fashion_mnist/infer", data=dumps(body),
                            headers={"Content-Type": "application/json"}), 415)
    assert_still_serves(plain)


def test_too_many_pixels_is_400_before_decoding(image_repo, data, start_daemon):
    daemon = start_daemon(repo=image_repo, flags=["--max-image-pixels", "784"])
    assert post_image(daemon, fashion_png(data, 0)).status_code == 200  # 28x28 = 784
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (29, 28)).save(buf, "PNG")
    message = assert_error(post_image(daemon, buf.getvalue()), 400)
    assert "812" in message and "784" in message
    # A decompression bomb: a PNG header declaring 100000 x 100000 and a
    # 300 KB zlib stream of zeros. Refused from the header, quickly.
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload +
                struct.pack(">I", zlib.crc32(kind + payload)))
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"\0" * 30_000_000, 9)) + chunk(b"IEND", b""))
    t0 = time.monotonic()
    message = assert_error(post_image(daemon, bomb), 400)
    assert "10000000000" in message and time.monotonic() - t0 < 2
    assert_still_serves(daemon)


def test_max_image_pixels_from_the_environment(image_repo, data, start_daemon, tmp_path):
    from support import child_env, free_port, Daemon
    port = free_port()
    d = Daemon(["--host", "127.0.0.1", "--port", str(port), "--model-repository",
                str(image_repo), "--devices", "cpu"], tmp_path / "env.log", port,
               env={"INFERD_MAX_IMAGE_PIXELS": "100"})
    try:
        d.wait_ready()
        assert "100" in assert_error(post_image(d, fashion_png(data, 0)), 400)
    finally:
        finish(d)
    help_text = subprocess.run([str(REPO_ROOT / os.environ.get("INFERD_BIN", "build/inferd")),
                                "--help"], capture_output=True, text=True).stdout
    assert "--max-image-pixels" in help_text


def test_bad_multipart_is_400(server, data):
    png = fashion_png(data, 0)
    ok = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
          b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--b--\r\n")
    assert post_image(server, ok, "multipart/form-data; boundary=b").status_code == 200
    cases = {
        "no file part": (b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nhi\r\n--b--\r\n",
                         "multipart/form-data; boundary=b"),
        "wrong boundary": (ok, "multipart/form-data; boundary=other"),
        "no boundary parameter": (ok, "multipart/form-data"),
        "no closing boundary": (ok[:-8], "multipart/form-data; boundary=b"),
        "empty body": (b"", "multipart/form-data; boundary=b"),
        "corrupt file part": (ok.replace(png[:40], b"\0" * 40), "multipart/form-data; boundary=b"),
    }
    for name, (body, ctype) in cases.items():
        message = assert_error(post_image(server, body, ctype), 400)
        if name == "no file part":
            assert "no file part" in message
    # more files than the model's max_batch_size (32)
    files = [("image", (f"{i}.png", png, "image/png")) for i in range(33)]
    assert "max_batch_size" in assert_error(server.post("/predict", files=files), 400)
    assert_still_serves(server)


def test_bad_v2_bytes_are_400(server, data):
    png = fashion_png(data, 0)

    def v2(body, extra=b"", header_len=None):
        text = dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if header_len is not None:
            headers = {"Content-Type": "application/octet-stream",
                       "Inference-Header-Content-Length": str(len(text))}
        return server.post("/v2/models/fashion_mnist/infer", data=text + extra, headers=headers)

    def inp(**kw):
        return {"inputs": [{"name": "input", "datatype": "BYTES", **kw}]}

    assert_error(v2(inp(shape=[1], data=["not base64!"])), 400)
    assert_error(v2(inp(shape=[2], data=[base64.b64encode(png).decode()])), 400)
    assert_error(v2(inp(shape=[1], data=[[1, 2, 3]])), 400)
    blob = struct.pack("<I", len(png) + 10) + png
    assert_error(v2(inp(shape=[1], parameters={"binary_data_size": len(blob)}), blob, True), 400)
    blob = struct.pack("<I", len(png)) + png
    assert_error(v2(inp(shape=[1], parameters={"binary_data_size": len(blob) + 4}), blob, True),
                 400)
    cls = {"inputs": inp(shape=[1], data=[base64.b64encode(png).decode()])["inputs"],
           "outputs": [{"name": "logits", "parameters": {"classification": 0}}]}
    assert_error(v2(cls), 400)
    assert_still_serves(server)


# --------------------------------------------------------------------------
# Decoding runs off the HTTP polling threads

def test_large_image_does_not_stall_other_clients(image_repo, data, start_daemon):
    """While a large JPEG (about 24 MP) is decoded and resized, other clients
    keep getting answers: decoding runs on the colour model's worker, not
    on the polling thread that read the request."""
    from PIL import Image
    daemon = start_daemon(repo=image_repo, flags=["--http-threads", "1"])
    big = Image.open(data / "photos" / "rocket.jpg").convert("RGB").resize((6000, 4000))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    done, big_times = threading.Event(), []

    def post_big():
        http = http_session()
        while not done.is_set():
            t0 = time.monotonic()
            r = http.post(daemon.url("/v2/models/resnet18_image/infer"),
                          data=dumps({"inputs": [{"name": "input", "datatype": "BYTES",
                                                  "shape": [1],
                                                  "data": [base64.b64encode(jpeg).decode()]}],
                                      "outputs": [{"name": "logits"}]}),
                          headers={"Content-Type": "application/json"}, timeout=30)
            assert r.status_code == 200, r.text[:200]
            big_times.append(time.monotonic() - t0)
        http.close()

    thread = threading.Thread(target=post_big)
    thread.start()
    try:
        time.sleep(0.5)
        http = http_session()
        latencies = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            assert http.get(daemon.url("/v2/health/ready"), timeout=10).status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.01)
        http.close()
    finally:
        done.set()
        thread.join(timeout=60)
    assert big_times, "no large image finished"
    big_ms = 1000 * float(np.median(big_times))
    p99 = 1000 * float(np.percentile(latencies, 99))
    print(f"large image request {big_ms:.0f} ms (median of {len(big_times)}); "
          f"health checks meanwhile: p50 {1000 * np.median(latencies):.1f} ms, "
          f"p99 {p99:.1f} ms, max {1000 * max(latencies):.1f} ms over {len(latencies)}")
    # With one polling thread, decoding there would hold every health check
    # for about a large request's time.
    assert p99 < big_ms / 4, (p99, big_ms)
