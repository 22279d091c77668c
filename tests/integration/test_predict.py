"""POST /predict on the default model: values against torch, shapes, labels,
the response format."""
import json
import re
import threading

import numpy as np
import pytest

from support import (EXAMPLES_DIR, FASHION_DIR, FASHION_MAX_BATCH, IMAGE_SIZE, LABELS,
                     dumps, fashion_mnist_data, float32_list, http_session)

MAX_ABS_DIFF = 1e-4


@pytest.fixture(scope="module")
def test_set():
    x, y = fashion_mnist_data.load("test")
    return x, y


@pytest.fixture(scope="module")
def reference():
    """The committed model.pt run by python3-torch: float32 [N,1,28,28] -> logits."""
    import torch

    torch.set_num_threads(1)  # leave the other core to the daemon
    model = torch.jit.load(str(FASHION_DIR / "model.pt"), map_location="cpu").eval()

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    return run


def predict_ok(server, body, session=None):
    """POST /predict, assert 200 and the response's structure; return the body."""
    data = body if isinstance(body, (bytes, str)) else dumps(body)
    http = session or server.http
    r = http.post(server.url("/predict"), data=data,
                  headers={"Content-Type": "application/json"}, timeout=15)
    assert r.status_code == 200, f"{r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json")
    out = r.json()
    n = len(out["outputs"])
    assert out["model"] == "fashion_mnist"
    assert out["shape"] == [n, 10]
    assert all(len(row) == 10 for row in out["outputs"])
    assert len(out["labels"]) == n
    return out


def assert_matches(out, expected):
    """Outputs within MAX_ABS_DIFF of `expected` logits, same top-1, labels by it."""
    got = np.asarray(out["outputs"], dtype=np.float64)
    assert got.shape == expected.shape
    diff = np.abs(got - expected).max()
    assert diff <= MAX_ABS_DIFF, f"max abs diff {diff} > {MAX_ABS_DIFF}"
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert out["labels"] == [LABELS[i] for i in expected.argmax(1)]


def test_values_match_torch(server, test_set, reference):
    """208 test images in 25 requests of 8 and 8 requests of 1 give torch's
    logits (max abs diff <= 1e-4), torch's argmax, and LABELS[argmax]."""
    x, _ = test_set
    images = x[:208]
    expected = reference(images)
    batches = [(start, start + 8) for start in range(0, 200, 8)]
    batches += [(i, i + 1) for i in range(200, 208)]
    got, labels = [], []
    for start, stop in batches:
        out = predict_ok(server, {"inputs": float32_list(images[start:stop])})
        got += out["outputs"]
        labels += out["labels"]
    got = np.asarray(got, dtype=np.float64)
    diff = np.abs(got - expected).max()
    assert diff <= MAX_ABS_DIFF, f"max abs diff {diff} over {len(got)} images"
    mismatched = np.flatnonzero(got.argmax(1) != expected.argmax(1))
    assert mismatched.size == 0, f"argmax differs for images {mismatched.tolist()}"
    assert labels == [LABELS[i] for i in expected.argmax(1)]


def test_labels_are_top1_class_names(server, test_set, reference):
    x, _ = test_set
    out = predict_ok(server, {"inputs": float32_list(x[:16])})
    assert_matches(out, reference(x[:16]))


def test_concurrent_requests_get_their_own_outputs(server, test_set, reference):
    """Requests from 4 clients at once (which the batcher may merge) each get
    the outputs of their own image."""
    x, _ = test_set
    images = x[300:332]
    expected = reference(images)
    results, errors = {}, []

    def client(indexes):
        session = http_session()
        try:
            for i in indexes:
                results[i] = predict_ok(server, {"inputs": float32_list(images[i:i + 1])},
                                        session=session)
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))
        finally:
            session.close()

    threads = [threading.Thread(target=client, args=(range(k, 32, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "clients still waiting after 60 s"
    assert not errors, errors
    for i in range(32):
        assert_matches(results[i], expected[i:i + 1])


def test_example_files(server, reference):
    """The request files in models/examples/ are accepted as they are."""
    names = json.loads((EXAMPLES_DIR / "labels.json").read_text())
    assert len(names) >= 4
    for name in sorted(names):
        assert names[name] in LABELS
        raw = (EXAMPLES_DIR / name).read_bytes()
        inputs = np.asarray(json.loads(raw)["inputs"], dtype=np.float32)
        assert inputs.shape == (1, 1, 28, 28)
        assert_matches(predict_ok(server, raw), reference(inputs))


def test_input_forms(server, test_set, reference):
    """Every accepted way of writing the inputs gives the same answer."""
    x, _ = test_set
    two = x[10:12]
    expected = reference(two)
    flat = float32_list(two.ravel())
    forms = {
        "nested [2,1,28,28]": {"inputs": float32_list(two)},
        "nested with matching shape": {"inputs": float32_list(two), "shape": [2, 1, 28, 28]},
        "flat, no shape": {"inputs": flat},
        "flat with shape": {"inputs": flat, "shape": [2, 1, 28, 28]},
    }
    for form, body in forms.items():
        out = predict_ok(server, body)
        assert out["shape"] == [2, 10], form
        assert_matches(out, expected)

    one = x[10]
    for form, body in {
        "single sample [1,28,28]": {"inputs": float32_list(one)},
        "flat 784": {"inputs": float32_list(one.ravel())},
        "flat with shape [1,1,28,28]": {"inputs": float32_list(one.ravel()),
                                        "shape": [1, 1, 28, 28]},
    }.items():
        out = predict_ok(server, body)
        assert out["shape"] == [1, 10], form
        assert_matches(out, expected[:1])


def test_max_batch_size_is_accepted(server, test_set, reference):
    x, _ = test_set
    images = x[:FASHION_MAX_BATCH]
    out = predict_ok(server, {"inputs": float32_list(images)})
    assert out["shape"] == [FASHION_MAX_BATCH, 10]
    assert_matches(out, reference(images))


def test_content_type_variants(server, test_set):
    """No Content-Type is taken as JSON; a charset parameter is fine."""
    body = dumps({"inputs": float32_list(test_set[0][:1])})
    r = server.post("/predict", data=body.encode())  # requests adds no Content-Type
    assert "Content-Type" not in r.request.headers
    assert r.status_code == 200, r.text[:300]
    r = server.post("/predict", data=body,
                    headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200, r.text[:300]


NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def significant_digits(token):
    mantissa = re.split(r"[eE]", token)[0].lstrip("-").replace(".", "")
    return len(mantissa.lstrip("0")) or 1


def test_output_floats_are_shortest_float32(server, test_set):
    """Every number in the response text is the shortest decimal that
    round-trips its float32 value: not a 17-digit double, not %.9g padding."""
    r = server.predict({"inputs": float32_list(test_set[0][:8])})
    assert r.status_code == 200, r.text[:300]
    outputs_text = r.text
    tokens = NUMBER.findall(outputs_text)
    assert len(tokens) >= 80, outputs_text[:300]
    for token in tokens:
        assert significant_digits(token) <= 9, f"{token} has more digits than a float32 needs"
        value = float(token)
        shortest = float(str(np.float32(value)))
        assert value == shortest, f"{token} is not the shortest repr of float32 {np.float32(value)}"


def test_flat_inputs_make_a_batch(server):
    """784 * 3 values without a shape make a batch of 3 (here 3 equal images)."""
    out = predict_ok(server, {"inputs": [0.5] * (IMAGE_SIZE * 3)})
    assert out["shape"] == [3, 10]
    rows = np.asarray(out["outputs"])
    assert np.abs(rows - rows[0]).max() <= MAX_ABS_DIFF
