"""Batch sizes from measured cost, and the stage before the forward (issue 22):

- at warm-up each instance times its forward at batch 1, 2, 4, ... up to
  max_batch_size and reports the curve, the largest batch it forms (the
  smallest within 5% of the best cost per sample) and the preferred sizes,
  in the config endpoint and the log;
- config.json's "preferred_batch_sizes" fixes them: no forward is larger
  than the last, and with "pad_batches": true (forced here on the CPU) the
  batch is padded with zero rows that never reach an answer: every answer
  equals python torch running the same file one request at a time;
- "measure_batch_sizes": false turns measuring off;
- image requests are decoded straight into the instance's pooled batch
  buffer: no request bytes are copied for them, and a batch of images
  answers as each image alone does.
"""
import json
import shutil

import numpy as np
import pytest
import torch

from support import FASHION_DIR, REPO_ROOT, http_session
from loadtools import (add_fashion, fashion_body, post_json, request_lines, run_threads,
                       wait_log_records)
import fashion_mnist_data  # noqa: E402  (models/ is on sys.path via support)

DATA = REPO_ROOT / "build" / "image-data"
TOLERANCE = 0.05  # BATCH_PROFILE_TOLERANCE
ATOL = 1e-5


def config_of(daemon, model="fashion_mnist"):
    r = http_session().get(daemon.url(f"/v2/models/{model}/config"), timeout=15)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def torch_reference(images):
    """python torch running the committed file, one image at a time."""
    module = torch.jit.load(str(FASHION_DIR / "model.pt")).eval()
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(images[i:i + 1].copy())).numpy()
                               for i in range(len(images))]).astype(np.float64)


@pytest.fixture(scope="module")
def images():
    x, _ = fashion_mnist_data.load("test")
    return x[np.arange(40) * 131 % len(x)].copy()


def test_measured_curve_is_reported_and_chosen_by_the_rule(tmp_path, start_daemon):
    repo = tmp_path / "repo"
    repo.mkdir()
    add_fashion(repo, instances=2)
    daemon = start_daemon(["--log-format", "json"], repo=repo)
    cfg = config_of(daemon)
    assert cfg["measure_batch_sizes"] is True and cfg["preferred_batch_sizes"] == []
    assert cfg["pad_batches"] == "auto"
    status = cfg["instance_status"]
    assert [s["instance"] for s in status] == [0, 1]
    for s in status:
        b = s["batch_sizes"]
        assert b["source"] == "measured", s
        curve = b["curve"]
        assert [p["batch"] for p in curve] == [1, 2, 4, 8, 16, 32], curve
        costs = [p["ms_per_sample"] for p in curve]
        assert all(c > 0 for c in costs), curve
        best = min(costs)
        # the smallest batch within the tolerance of the best
        want = next(p["batch"] for p in curve if p["ms_per_sample"] <= best * (1 + TOLERANCE))
        assert b["limit"] == want, (b["limit"], curve)
        assert b["preferred"] == [p["batch"] for p in curve if p["batch"] <= want]
        assert s["padding"] is False  # auto: off on the CPU
    lines = wait_log_records(daemon, "batch sizes", lambda rs: len(rs) >= 2)
    by_instance = {r["instance"]: r for r in lines if r.get("model") == "fashion_mnist"}
    for s in status:
        line = by_instance[s["instance"]]
        assert line["max_batch"] == s["batch_sizes"]["limit"]
        assert line["source"] == "measured"
        assert len(line["ms_per_sample"].split()) == 6


def test_measuring_off(tmp_path, start_daemon):
    repo = tmp_path / "repo"
    repo.mkdir()
    add_fashion(repo, measure_batch_sizes=False)
    daemon = start_daemon((), repo=repo)
    for s in config_of(daemon)["instance_status"]:
        assert s["batch_sizes"]["source"] == "off"
        assert s["batch_sizes"]["curve"] == [] and s["batch_sizes"]["limit"] == 0


def test_fixed_sizes_bound_the_batch_and_padding_is_invisible(tmp_path, start_daemon, images):
    repo = tmp_path / "repo"
    repo.mkdir()
    add_fashion(repo, max_batch_size=8, max_queue_delay_us=200000, instances=1,
                preferred_batch_sizes=[2, 5], pad_batches=True)
    daemon = start_daemon(["--log-format", "json", "--batch-wait", "always"], repo=repo)
    reference = torch_reference(images)
    s = config_of(daemon)["instance_status"][0]
    assert s["batch_sizes"]["source"] == "config"
    assert s["batch_sizes"]["limit"] == 5 and s["batch_sizes"]["preferred"] == [2, 5]
    assert s["padding"] is True
    sizes = [1, 2, 1, 3, 1, 1, 2, 1, 4, 1, 2, 1, 3, 1]  # 24 images, 14 clients
    bounds = np.cumsum([0] + sizes)
    ids = [f"pad-{k}" for k in range(len(sizes))]
    answers = run_threads([lambda a=a, b=b, i=i: post_json(daemon, "/predict",
                                                            fashion_body(images[a:b]),
                                                            request_id=i)
                           for a, b, i in zip(bounds[:-1], bounds[1:], ids)], timeout=90)
    for (response, _), a, b, i in zip(answers, bounds[:-1], bounds[1:], ids):
        assert response.status_code == 200, (i, response.text[:300])
        body = response.json()
        assert body["shape"] == [b - a, 10], (i, body["shape"])  # no padding row
        diff = np.abs(np.asarray(body["outputs"], dtype=np.float64) - reference[a:b]).max()
        assert diff <= ATOL, f"{i}: differs from python torch by {diff}"
    lines = request_lines(daemon, ids)
    batches = [lines[i]["batch"] for i in ids]
    assert max(batches) <= 5, f"a forward larger than the fixed limit: {batches}"
    assert max(batches) > 1, f"nothing batched: {batches}"
    after = config_of(daemon)["instance_status"][0]
    # Every forward whose rows were not 1, 2 or 5 was padded.
    assert after["padding_rows"] > 0, after
    assert after["staged_requests"] >= len(sizes)


@pytest.mark.skipif(not (DATA / "fashion-png" / "labels.txt").exists(),
                    reason="build/image-data is made by test_images.py's fixture "
                           "(models/make_image_data.py)")
def test_images_decode_straight_into_the_batch(tmp_path, start_daemon):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(FASHION_DIR, repo / "fashion_mnist")  # declares the image input
    config = json.loads((repo / "fashion_mnist" / "config.json").read_text())
    config.update(max_queue_delay_us=100000, instances=1)
    (repo / "fashion_mnist" / "config.json").write_text(json.dumps(config))
    daemon = start_daemon(["--log-format", "json", "--batch-wait", "always"], repo=repo)
    pngs = [(DATA / "fashion-png" / f"{i:05d}.png").read_bytes() for i in range(16)]
    http = http_session()
    alone = []
    for png in pngs:
        r = http.post(daemon.url("/predict"), data=png, headers={"Content-Type": "image/png"},
                      timeout=15)
        assert r.status_code == 200, r.text[:300]
        alone.append(r.json()["outputs"][0])
    ids = [f"img-{k}" for k in range(len(pngs))]
    answers = run_threads([lambda p=p, i=i: http_session().post(
        daemon.url("/predict"), data=p, headers={"Content-Type": "image/png",
                                                 "X-Request-ID": i}, timeout=30)
        for p, i in zip(pngs, ids)], timeout=90)
    for k, r in enumerate(answers):
        assert r.status_code == 200, r.text[:300]
        diff = np.abs(np.asarray(r.json()["outputs"][0]) - np.asarray(alone[k])).max()
        assert diff <= ATOL, f"image {k}: batched differs from alone by {diff}"
    batches = [rec["batch"] for rec in request_lines(daemon, ids).values()]
    assert max(batches) > 1, f"the concurrent images never shared a forward: {batches}"
    s = config_of(daemon)["instance_status"][0]
    assert s["staged_requests"] == 2 * len(pngs)
    assert s["input_bytes_copied"] == 0, s  # decoded in place, never copied
    assert s["input_bytes_decoded_in_place"] == 2 * len(pngs) * 28 * 28 * 4, s
