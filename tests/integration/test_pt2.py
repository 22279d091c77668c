"""AOTInductor packages (.pt2): the default model's weights exported by
models/export_pt2.py with a dynamic batch, served through the runtime
interface.

Which half runs depends on the python torch beside the binary (the Makefile
builds against it): with torch >= 2.6 (scripts/trixie-root.sh's Debian 13
root) the package is served and checked against python's
torch._inductor.aoti_load_package and the eager model; with libtorch 1.13
(Debian 12) a .pt2 model must be UNAVAILABLE with a reason naming the
version, while a TorchScript model beside it serves. INFERD_TEST_PT2=1 (set by
scripts/test.sh in the Debian 13 root) turns the skip of the first half into
a failure, so that the suite cannot pass there without serving a package.

The package comes from $INFERD_TEST_PT2_DIR or models/fashion_mnist_pt2/
(`make model-pt2`) when it holds model.pt2, else it is exported here.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from support import (FASHION_CONFIG, LABELS, MODELS_DIR, add_fashion_mnist,
                     assert_error, dumps, float32_list, start_server, finish)
from loadtools import post_json, run_threads
import fashion_mnist_data  # noqa: E402  (models/ is on sys.path via support)

TORCH_2_6 = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 6)
REQUIRE_PT2 = os.environ.get("INFERD_TEST_PT2") == "1"
N_IMAGES = 256          # test-set images compared with python (>= 200)
ATOL = 1e-4             # against python's loader and the eager model
BATCH_ATOL = 1e-5       # batched against unbatched, same package
PACKAGE_MAX = 128       # the batch maximum export_pt2.py writes by default
MAX_BATCH = 32          # max_batch_size of the served .pt2 model

needs_aoti = pytest.mark.skipif(
    not TORCH_2_6 and not REQUIRE_PT2,
    reason=f"torch {torch.__version__}: AOTInductor needs 2.6 (scripts/trixie-root.sh)")


def test_pt2_runs_where_required():
    """Under INFERD_TEST_PT2=1 the environment must be able to serve .pt2."""
    if REQUIRE_PT2:
        assert TORCH_2_6, f"INFERD_TEST_PT2=1 but python torch is {torch.__version__}"


# --------------------------------------------------------------------------
# Packages

@pytest.fixture(scope="session")
def pt2_dir(tmp_path_factory):
    """A folder with model.pt2 (dynamic batch 1..128), its config.json and
    labels.txt."""
    given = Path(os.environ.get("INFERD_TEST_PT2_DIR", MODELS_DIR / "fashion_mnist_pt2"))
    if (given / "model.pt2").is_file():
        return given
    out = tmp_path_factory.mktemp("pt2") / "fashion_mnist_pt2"
    subprocess.run([sys.executable, str(MODELS_DIR / "export_pt2.py"), "--out", str(out),
                    "--max-batch", str(PACKAGE_MAX)], check=True, timeout=600)
    return out


def add_pt2(repo, pt2_dir, name="fm_pt2", package=None, **overrides):
    """repo/<name>: the package (or `package`, a path) with the default
    model's config (max_batch_size MAX_BATCH) plus overrides."""
    folder = Path(repo) / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(package or Path(pt2_dir) / "model.pt2", folder / "model.pt2")
    (folder / "labels.txt").write_text("".join(label + "\n" for label in LABELS))
    config = {**FASHION_CONFIG, "name": name, "file": "model.pt2", "max_batch_size": MAX_BATCH,
              **overrides}
    config = {k: v for k, v in config.items() if v is not None}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def rewrite_metadata(src, dst, **changes):
    """Copy the package at src to dst with its metadata JSON entries changed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("_metadata.json"):
                meta = json.loads(data)
                meta.update(changes)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)


def repository_index(daemon):
    """{name: entry} from /v2/repository/index; None while not listening."""
    try:
        r = daemon.post("/v2/repository/index")
    except requests.ConnectionError:
        return None
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()}


# --------------------------------------------------------------------------
# libtorch >= 2.6: serving the package

@pytest.fixture(scope="module")
def images():
    x, y = fashion_mnist_data.load("test")
    pick = np.arange(N_IMAGES) * 37 % len(x)
    return x[pick].copy(), y[pick].copy()


@pytest.fixture(scope="module")
def pt2_server(tmp_path_factory, pt2_dir):
    """fm_pt2 (the package) beside fashion_mnist (TorchScript)."""
    repo = tmp_path_factory.mktemp("pt2_repo")
    add_fashion_mnist(repo)
    add_pt2(repo, pt2_dir, max_queue_delay_us=2000)
    daemon = start_server(tmp_path_factory.mktemp("pt2"), repo, model="fm_pt2")
    yield daemon
    finish(daemon)


def serve_rows(daemon, x, chunk):
    """Logits for x from daemon's default model, `chunk` images a request."""
    rows = []
    for i in range(0, len(x), chunk):
        r, _ = post_json(daemon, "/predict", dumps({"inputs": float32_list(x[i:i + chunk])}))
        assert r.status_code == 200, f"images {i}..: {r.status_code} {r.text[:300]}"
        rows.extend(r.json()["outputs"])
    return np.asarray(rows, dtype=np.float32)


@needs_aoti
def test_pt2_metadata_reports_platform(pt2_server):
    meta = pt2_server.get("/v2/models/fm_pt2").json()
    assert meta["platform"] == "torch_aoti", meta
    assert meta["state"] == "READY" and meta["max_batch_size"] == MAX_BATCH, meta
    assert meta["outputs"][0]["name"] == "logits"
    ts = pt2_server.get("/v2/models/fashion_mnist").json()
    assert ts["platform"] == "pytorch_torchscript", ts


@needs_aoti
def test_pt2_equals_python_loader_and_eager(pt2_server, pt2_dir, images):
    sys.path.insert(0, str(MODELS_DIR))
    from export_pt2 import load_weights

    x, y = images
    served = serve_rows(pt2_server, x, MAX_BATCH)
    runner = torch._inductor.aoti_load_package(str(Path(pt2_dir) / "model.pt2"))
    eager = load_weights(str(MODELS_DIR / "fashion_mnist" / "model.pt"))
    with torch.no_grad():
        via_python = np.concatenate([runner(torch.from_numpy(x[i:i + MAX_BATCH])).numpy()
                                     for i in range(0, len(x), MAX_BATCH)])
        via_eager = eager(torch.from_numpy(x)).numpy()
    assert served.shape == (N_IMAGES, 10)
    for name, ref in (("aoti_load_package", via_python), ("eager", via_eager)):
        diff = np.abs(served - ref).max()
        assert diff <= ATOL, f"inferd vs {name}: max abs diff {diff:.3g}"
        same = (served.argmax(1) == ref.argmax(1)).mean()
        assert same == 1.0, f"inferd vs {name}: argmax agrees on {same:.1%}"
    accuracy = (served.argmax(1) == y).mean()
    assert accuracy > 0.8, f"accuracy {accuracy:.1%} on {N_IMAGES} test images"


@needs_aoti
def test_pt2_concurrent_mixed_batches_equal_unbatched(pt2_server, images):
    x = images[0][:60]
    alone = serve_rows(pt2_server, x, 1)
    sizes = [1, 2, 3, 4, 5, 7, 9, 13, 16]
    bounds = np.cumsum([0] + sizes)
    bodies = [dumps({"inputs": float32_list(x[a:b])}) for a, b in zip(bounds[:-1], bounds[1:])]
    answers = run_threads([lambda b=b: post_json(pt2_server, "/predict", b) for b in bodies],
                          timeout=120)
    for (a, b), (r, _) in zip(zip(bounds[:-1], bounds[1:]), answers):
        assert r.status_code == 200, f"images {a}..{b - 1}: {r.status_code} {r.text[:300]}"
        got = np.asarray(r.json()["outputs"], dtype=np.float32)
        assert got.shape == (b - a, 10)
        diff = np.abs(got - alone[a:b]).max()
        assert diff <= BATCH_ATOL, f"images {a}..{b - 1}: {diff:.3g} from the unbatched rows"
        assert r.json()["labels"] == [LABELS[k] for k in alone[a:b].argmax(1)]


@needs_aoti
def test_pt2_batch_above_max_is_400(pt2_server, images):
    x = np.concatenate([images[0]] * 2)[:MAX_BATCH + 1]
    r, _ = post_json(pt2_server, "/predict", dumps({"inputs": float32_list(x)}))
    message = assert_error(r, 400)
    assert str(MAX_BATCH) in message, message
    r, _ = post_json(pt2_server, "/predict", dumps({"inputs": float32_list(x[:MAX_BATCH])}))
    assert r.status_code == 200, r.text[:300]


@needs_aoti
def test_pt2_load_errors_are_unavailable_with_reason(start_daemon, tmp_path, pt2_dir):
    """A corrupt package, a package for another device, and a max_batch_size
    above the package's maximum each leave their model UNAVAILABLE with the
    reason, while the other models serve."""
    repo = tmp_path / "repo"
    add_fashion_mnist(repo)
    add_pt2(repo, pt2_dir, name="good")
    corrupt = tmp_path / "corrupt.pt2"
    corrupt.write_bytes((Path(pt2_dir) / "model.pt2").read_bytes()[:5000])
    add_pt2(repo, pt2_dir, name="corrupt", package=corrupt)
    cuda = tmp_path / "cuda.pt2"
    rewrite_metadata(Path(pt2_dir) / "model.pt2", cuda, AOTI_DEVICE_KEY="cuda")
    add_pt2(repo, pt2_dir, name="wrong_device", package=cuda)
    add_pt2(repo, pt2_dir, name="too_big", max_batch_size=PACKAGE_MAX + 1)
    static = tmp_path / "static.pt2"
    rewrite_metadata(Path(pt2_dir) / "model.pt2", static,
                     **{"inferd.batch_min": "4", "inferd.batch_max": "4"})
    add_pt2(repo, pt2_dir, name="static_batching", package=static)
    add_pt2(repo, pt2_dir, name="static", package=static, max_batch_size=0,
            inputs=[{"name": "input", "datatype": "FP32", "shape": [4, 1, 28, 28]}],
            outputs=[{"name": "logits", "datatype": "FP32", "shape": [4, 10]}])
    daemon = start_daemon(repo=repo, wait=False)
    index = wait_settled(daemon, ["good", "fashion_mnist", "corrupt", "wrong_device", "too_big",
                                  "static_batching", "static"])
    for name in ("good", "fashion_mnist", "static"):
        assert index[name]["state"] == "READY", index[name]
    expect = {
        "corrupt": "load failed",
        "wrong_device": 'compiled for device "cuda"',
        "too_big": f"max_batch_size {PACKAGE_MAX + 1} is above the package's batch maximum "
                   f"{PACKAGE_MAX}",
        "static_batching": "static batch of 4",
    }
    for name, words in expect.items():
        assert index[name]["state"] == "UNAVAILABLE", index[name]
        assert words in index[name]["reason"], index[name]
    r = daemon.post("/v2/models/good/infer", data=dumps({"inputs": [{
        "name": "input", "datatype": "FP32", "shape": [2, 1, 28, 28],
        "data": [0.5] * (2 * 784)}]}), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    # A static batch of 4 runs requests of exactly 4, one at a time.
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    r, _ = post_json(daemon, "/v2/models/static/infer", dumps({"inputs": [{
        "name": "input", "datatype": "FP32", "shape": [4, 1, 28, 28],
        "data": float32_list(x.ravel())}]}))
    assert r.status_code == 200, r.text[:300]
    assert r.json()["outputs"][0]["shape"] == [4, 10]
    r, _ = post_json(daemon, "/v2/models/static/infer", dumps({"inputs": [{
        "name": "input", "datatype": "FP32", "shape": [3, 1, 28, 28],
        "data": float32_list(x[:3].ravel())}]}))
    assert_error(r, 400)
    r = daemon.post("/v2/models/corrupt/infer", data=dumps({"inputs": []}),
                    headers={"Content-Type": "application/json"})
    assert_error(r, 503)


def wait_settled(daemon, names, timeout=60):
    """The repository index once every named model left LOADING."""
    deadline = time.monotonic() + timeout
    while True:
        assert daemon.proc.poll() is None, f"inferd exited\n{daemon.describe()}"
        index = repository_index(daemon)
        if index is not None and all(index.get(n, {}).get("state") in ("READY", "UNAVAILABLE")
                                     for n in names):
            return index
        assert time.monotonic() < deadline, f"models still loading: {index}\n{daemon.describe()}"
        time.sleep(0.2)


def worker_threads(daemon, prefix):
    """Threads of the daemon whose name starts with prefix: a worker and the
    OpenMP threads it started (a new thread inherits its creator's name)."""
    tasks = Path(f"/proc/{daemon.proc.pid}/task")
    names = []
    for t in tasks.iterdir():
        try:
            names.append((t / "comm").read_text().strip())
        except OSError:
            pass
    return [n for n in names if n.startswith(prefix)]


@needs_aoti
@pytest.mark.parametrize("instances", [1, 2])
def test_pt2_openmp_threads_follow_the_instance_share(start_daemon, tmp_path, pt2_dir, images,
                                                      instances):
    """inferd gives each CPU instance cores // instances intra-op threads; the
    package's OpenMP kernels must run with exactly that many threads."""
    repo = tmp_path / "repo"
    add_pt2(repo, pt2_dir, name="fm", instances=None)
    daemon = start_daemon(repo=repo, model="fm",
                          flags=["--instances-per-device", str(instances)])
    x = images[0][:MAX_BATCH]
    for _ in range(3 * instances):
        r, _ = post_json(daemon, "/predict", dumps({"inputs": float32_list(x)}))
        assert r.status_code == 200, r.text[:300]
    share = max(1, (os.cpu_count() or 1) // instances)
    for k in range(instances):
        threads = worker_threads(daemon, f"w{k}-fm")
        assert len(threads) == share, \
            f"instance {k}: {len(threads)} threads ({threads}), expected {share} " \
            f"({os.cpu_count()} cores, {instances} instance(s))"


# --------------------------------------------------------------------------
# libtorch 1.13: a .pt2 model is UNAVAILABLE, the rest serves

@pytest.mark.skipif(TORCH_2_6, reason="this libtorch serves .pt2 (the tests above)")
def test_pt2_on_old_libtorch_is_unavailable(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    add_fashion_mnist(repo)
    folder = repo / "fm_pt2"
    folder.mkdir()
    # Any bytes do: this build refuses the format before reading the file.
    (folder / "model.pt2").write_bytes(b"PK\x05\x06" + bytes(18))
    config = {**FASHION_CONFIG, "name": "fm_pt2", "file": "model.pt2"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "labels.txt").write_text("".join(label + "\n" for label in LABELS))
    daemon = start_daemon(repo=repo, wait=False)
    index = wait_settled(daemon, ["fashion_mnist", "fm_pt2"])
    assert index["fashion_mnist"]["state"] == "READY", index
    assert index["fm_pt2"]["state"] == "UNAVAILABLE", index
    reason = index["fm_pt2"]["reason"]
    major_minor = ".".join(torch.__version__.split(".")[:2])
    assert "libtorch 2.6 or newer" in reason and f"libtorch {major_minor}." in reason, reason
    meta = daemon.get("/v2/models/fm_pt2").json()
    assert meta["platform"] == "torch_aoti" and meta["state"] == "UNAVAILABLE", meta
    r = daemon.post("/v2/models/fashion_mnist/infer", data=dumps({"inputs": [{
        "name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.5] * 784}]}),
        headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
