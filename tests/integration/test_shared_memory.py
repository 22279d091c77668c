"""The system (and, on a CPU build, the refused CUDA) shared memory
extensions over HTTP: regions made with python's
multiprocessing.shared_memory (the calls Triton's client helpers make),
registered with inferd, named by inputs and outputs; values compared with
python3-torch on the same model files and with the same request sent in the
body. Endpoints and parameters are Triton's:

  POST /v2/systemsharedmemory/region/<name>/register {key, offset, byte_size}
  POST /v2/systemsharedmemory/region/<name>/unregister, /v2/systemsharedmemory/unregister
  GET  /v2/systemsharedmemory/region/<name>/status,    /v2/systemsharedmemory/status
  input/output parameters: shared_memory_region, shared_memory_byte_size,
  shared_memory_offset
"""
import os
import threading
import time

import numpy as np
import pytest
import requests

from multiprocessing import shared_memory

from support import add_fashion_mnist, assert_error, assert_still_serves, finish, start_server
from v2_client import (FASHION_TOL, TorchReference, assert_same, decode_response, encode_request,
                       infer_raw, make_inputs, tensor)

import make_slow_model  # noqa: E402  (models/ is on sys.path: support puts it there)
import make_test_models  # noqa: E402

SYS = "/v2/systemsharedmemory"
CUDA = "/v2/cudasharedmemory"
SLOW_MS = 700  # one forward of the slow model: the window an in-use unregister needs


@pytest.fixture(scope="module")
def shm_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("shmrepo")
    add_fashion_mnist(repo)
    make_test_models.make_model(repo, "two_io")
    make_test_models.make_model(repo, "no_batch")
    make_slow_model.make_slow_model(repo, target_ms=SLOW_MS, max_batch_size=4)
    return repo


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, shm_repo):
    d = start_server(tmp_path_factory.mktemp("inferd-shm"), shm_repo, ["--shared-memory"])
    yield d
    finish(d)


@pytest.fixture(scope="module")
def torch_ref(shm_repo):
    return TorchReference(shm_repo)


@pytest.fixture
def regions(daemon):
    """Make shared memory objects; each is unregistered (if registered) and
    unlinked after the test."""
    made = []

    def make(size):
        shm = shared_memory.SharedMemory(create=True, size=size)
        made.append(shm)
        return shm

    yield make
    daemon.post(f"{SYS}/unregister")
    for shm in made:
        shm.close()
        shm.unlink()


def register(daemon, name, key, byte_size, offset=0, headers=None):
    return daemon.post(f"{SYS}/region/{name}/register",
                       json={"key": key, "offset": offset, "byte_size": byte_size},
                       headers=headers)


def shm_params(region, size, offset=0):
    params = {"shared_memory_region": region, "shared_memory_byte_size": size}
    if offset:
        params["shared_memory_offset"] = offset
    return params


def shm_input(name, datatype, shape, region, size, offset=0):
    return {"name": name, "datatype": datatype, "shape": list(shape),
            "parameters": shm_params(region, size, offset)}


def put(shm, offset, array):
    raw = np.ascontiguousarray(array).tobytes()
    shm.buf[offset:offset + len(raw)] = raw
    return len(raw)


def get(shm, offset, dtype, shape):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(bytes(shm.buf[offset:offset + n]), dtype=dtype).reshape(shape)


def two_io_body(region, a_off, b_off, sum_off, batch=2, sum_size=None):
    return {
        "inputs": [shm_input("a", "FP32", [batch, 4], region, batch * 16, a_off),
                   shm_input("b", "INT64", [batch, 4], region, batch * 32, b_off)],
        "outputs": [{"name": "sum",
                     "parameters": shm_params(region, sum_size or batch * 16, sum_off)},
                    {"name": "prod_sum"}],
    }


# --------------------------------------------------------------------------
# The round trip


def test_register_infer_status_unregister(daemon, regions, torch_ref, rng):
    shm = regions(1 << 16)
    r = register(daemon, "io", shm.name, 1 << 16)
    assert r.status_code == 200, r.text
    arrays = make_inputs("two_io", 3, rng)
    put(shm, 0, arrays["a"])
    put(shm, 256, arrays["b"])
    r = daemon.post("/v2/models/two_io/infer", json=two_io_body("io", 0, 256, 4096, batch=3))
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    # The shared-memory output has no data, and its parameters are echoed.
    assert out[0] == {"name": "sum", "datatype": "FP32", "shape": [3, 4],
                      "parameters": {"shared_memory_region": "io",
                                     "shared_memory_byte_size": 48,
                                     "shared_memory_offset": 4096}}
    assert "data" in out[1] and out[1]["name"] == "prod_sum"
    expected = torch_ref("two_io", [arrays["a"], arrays["b"]])
    assert_same(get(shm, 4096, "<f4", (3, 4)), expected["sum"], "FP32", "sum in shared memory")
    assert_same(np.array(out[1]["data"], "<f4").reshape(3, 1), expected["prod_sum"], "FP32",
                "prod_sum in the body")
    # The same request with its tensors in the body gives the same bytes.
    body, headers = encode_request([tensor("a", "FP32", arrays["a"], True),
                                    tensor("b", "INT64", arrays["b"], True)],
                                   outputs=[("sum", True)])
    via_body = decode_response(infer_raw(daemon, "two_io", body, headers))
    assert via_body.arrays["sum"].tobytes() == bytes(shm.buf[4096:4096 + 48])

    status = daemon.get(f"{SYS}/status").json()
    assert status == [{"name": "io", "key": shm.name, "offset": 0, "byte_size": 1 << 16,
                       "in_use": 0}]
    assert daemon.get(f"{SYS}/region/io/status").json() == status
    assert daemon.post(f"{SYS}/region/io/unregister").status_code == 200
    assert daemon.get(f"{SYS}/status").json() == []
    assert_error(daemon.get(f"{SYS}/region/io/status"), 404)
    msg = assert_error(daemon.post("/v2/models/two_io/infer",
                                   json=two_io_body("io", 0, 256, 4096, batch=3)), 400)
    assert "no shared memory region \"io\"" in msg


def test_a_region_is_free_once_the_answer_is_in(daemon, regions, rng):
    """A client that has the answer may reuse or unregister the region at
    once: the server lets go of it before the answer leaves (it used to
    after, so a quick unregister could be refused as in use)."""
    shm = regions(1 << 16)
    assert register(daemon, "quick", shm.name, 1 << 16).status_code == 200
    arrays = make_inputs("two_io", 2, rng)
    put(shm, 0, arrays["a"])
    put(shm, 256, arrays["b"])
    for i in range(40):
        r = daemon.post("/v2/models/two_io/infer", json=two_io_body("quick", 0, 256, 4096))
        assert r.status_code == 200, r.text
        # on another connection: the one that had the answer is done with it
        st = requests.get(daemon.url(f"{SYS}/region/quick/status"), timeout=10)
        assert st.json()[0]["in_use"] == 0, (i, st.text)
    assert daemon.post(f"{SYS}/region/quick/unregister").status_code == 200


def test_image_sized_input_matches_body_and_torch(daemon, regions, torch_ref, rng):
    """fashion_mnist from a region at a page-unaligned offset and key form
    '/name', against the body request and python torch."""
    x = rng.random((4, 1, 28, 28), dtype=np.float32)
    shm = regions(3 * 4096 + x.nbytes)
    offset = 4096 + 12  # inside the object, not page aligned
    put(shm, offset + 100, x)
    r = register(daemon, "img", "/" + shm.name, x.nbytes + 100, offset=offset)
    assert r.status_code == 200, r.text
    body = {"inputs": [shm_input("input", "FP32", x.shape, "img", x.nbytes, 100)],
            "outputs": [{"name": "logits", "parameters": shm_params("img", 4 * 10 * 4)}]}
    r = daemon.post("/v2/models/fashion_mnist/infer", json=body)
    assert r.status_code == 200, r.text
    got = get(shm, offset, "<f4", (4, 10))
    want = torch_ref.torch.jit.load(str(torch_ref.repo / "fashion_mnist" / "model.pt")).eval()
    with torch_ref.torch.no_grad():
        expected = want(torch_ref.torch.from_numpy(x.copy())).numpy()
    assert np.abs(got - expected).max() <= FASHION_TOL
    b, h = encode_request([tensor("input", "FP32", x, True)], outputs=[("logits", True)])
    assert decode_response(infer_raw(daemon, "fashion_mnist", b, h)).arrays["logits"].tobytes() \
        == got.tobytes()


def test_misaligned_input_and_conversion(daemon, regions, rng):
    """An input at an odd offset (copied, not borrowed) and one sent as FP64
    for an FP32 input (converted) still give a + b."""
    shm = regions(4096)
    assert register(daemon, "odd", shm.name, 4096).status_code == 200
    a = rng.standard_normal((2, 4))  # float64
    b = np.arange(8, dtype="<i8").reshape(2, 4)
    put(shm, 3, a)
    put(shm, 200, b)
    body = {"inputs": [shm_input("a", "FP64", [2, 4], "odd", 64, 3),
                       shm_input("b", "INT64", [2, 4], "odd", 64, 200)],
            "outputs": [{"name": "sum", "parameters": shm_params("odd", 32, 1001)}]}
    r = daemon.post("/v2/models/two_io/infer", json=body)
    assert r.status_code == 200, r.text
    assert np.array_equal(get(shm, 1001, "<f4", (2, 4)),
                          a.astype(np.float32) + b.astype(np.float32))


def test_metadata_and_metrics(daemon, regions):
    assert "system_shared_memory" in daemon.get("/v2").json()["extensions"]
    shm = regions(8192)
    assert register(daemon, "m1", shm.name, 5000).status_code == 200
    text = daemon.get("/metrics").text
    assert 'inferd_shared_memory_regions{kind="system"} 1' in text
    assert 'inferd_shared_memory_bytes{kind="system"} 5000' in text
    assert 'inferd_shared_memory_regions{kind="cuda"} 0' in text
    assert daemon.post(f"{SYS}/region/m1/unregister").status_code == 200
    assert 'inferd_shared_memory_regions{kind="system"} 0' in daemon.get("/metrics").text


# --------------------------------------------------------------------------
# Errors


def test_register_errors(daemon, regions):
    shm = regions(4096)
    assert register(daemon, "dup", shm.name, 4096).status_code == 200
    msg = assert_error(register(daemon, "dup", shm.name, 100), 409)
    assert "already registered" in msg
    # Past the object's end, by offset or size; overflowing sums.
    assert "does not fit" in assert_error(register(daemon, "r", shm.name, 4097), 400)
    assert "does not fit" in assert_error(register(daemon, "r", shm.name, 10, offset=4090), 400)
    assert "does not fit" in assert_error(register(daemon, "r", shm.name, 100,
                                                   offset=2 ** 53), 400)
    assert_error(register(daemon, "r", shm.name, 2 ** 53, offset=2 ** 53), 400)
    for bad in (-1, 1.5, 2 ** 64, 1e300, "10", None):
        assert_error(register(daemon, "r", shm.name, bad), 400)
    assert_error(register(daemon, "r", shm.name, 0), 400)
    # Keys: no path characters beyond one leading '/'; unknown keys.
    for key in ("../" + shm.name, "/dev/shm/" + shm.name, "a/b", "..", ".", "", "x" * 300,
                "name with space", "nul\u0000x"):
        msg = assert_error(register(daemon, "r", key, 16), 400)
    assert "cannot open" in assert_error(register(daemon, "r", "inferd-no-such-key", 16), 400)
    # Region names: bad characters, too long (the router's bound).
    assert_error(register(daemon, "b%40d", shm.name, 16), 400)
    assert_error(register(daemon, "%2E%2E", shm.name, 16), 400)
    assert_error(register(daemon, "bad~name", shm.name, 16), 400)
    assert_error(register(daemon, "x" * 64, shm.name, 16), 400)
    # Not JSON, no key.
    assert_error(daemon.post(f"{SYS}/region/r/register", data=b"{",
                             headers={"Content-Type": "application/json"}), 400)
    assert_error(daemon.post(f"{SYS}/region/r/register", json={"byte_size": 4}), 400)
    # Nothing but "dup" got registered.
    assert [s["name"] for s in daemon.get(f"{SYS}/status").json()] == ["dup"]


def test_unknown_regions(daemon):
    assert_error(daemon.post(f"{SYS}/region/nope/unregister"), 404)
    assert_error(daemon.get(f"{SYS}/region/nope/status"), 404)
    assert daemon.post(f"{SYS}/unregister").status_code == 200  # none: nothing to do


def test_infer_errors(daemon, regions):
    shm = regions(4096)
    assert register(daemon, "e", shm.name, 1024, offset=1024).status_code == 200
    infer = lambda body: daemon.post("/v2/models/two_io/infer", json=body)  # noqa: E731
    # Offsets and sizes past the region (1024 bytes), and overflowing ones.
    msg = assert_error(infer(two_io_body("e", 1000, 0, 512)), 400)
    assert "past the end of region \"e\" (1024 bytes)" in msg
    assert_error(infer(two_io_body("e", 0, 0, 1020)), 400)
    assert_error(infer(two_io_body("e", 2 ** 53, 0, 0)), 400)
    for bad in (-8, 0.5, 2 ** 60, "8", None):
        body = two_io_body("e", 0, 64, 512)
        body["inputs"][0]["parameters"]["shared_memory_offset"] = bad
        assert_error(infer(body), 400)
    body = two_io_body("e", 0, 64, 512)
    del body["inputs"][0]["parameters"]["shared_memory_byte_size"]
    assert "missing" in assert_error(infer(body), 400)
    # A byte size that does not match the shape.
    body = two_io_body("e", 0, 64, 512)
    body["inputs"][0]["parameters"]["shared_memory_byte_size"] = 31
    assert "does not match" in assert_error(infer(body), 400)
    # Data in the body as well as a region; an output asking for binary too.
    body = two_io_body("e", 0, 64, 512)
    body["inputs"][0]["data"] = [0] * 8
    assert "also carries data" in assert_error(infer(body), 400)
    body = two_io_body("e", 0, 64, 512)
    body["outputs"][0]["parameters"]["binary_data"] = True
    assert_error(infer(body), 400)
    # Offset without a region; a bad region name.
    body = two_io_body("e", 0, 64, 512)
    del body["inputs"][0]["parameters"]["shared_memory_region"]
    assert_error(infer(body), 400)
    body = two_io_body("e", 0, 64, 512)
    body["inputs"][0]["parameters"]["shared_memory_region"] = "../e"
    assert_error(infer(body), 400)
    # An output larger than its region part: 400 with both sizes.
    msg = assert_error(infer(two_io_body("e", 0, 64, 512, sum_size=20)), 400)
    assert "needs 32 bytes" in msg and "only 20" in msg
    # After all that, nothing holds the region and it still works.
    assert daemon.get(f"{SYS}/region/e/status").json()[0]["in_use"] == 0
    assert infer(two_io_body("e", 0, 64, 512)).status_code == 200
    assert daemon.post(f"{SYS}/region/e/unregister").status_code == 200


def test_unregister_in_use_fails_then_succeeds(daemon, regions):
    """A region held by a queued or running request is not unregistered (409);
    once the request ends it is."""
    shm = regions(4096)
    x = np.arange(4, dtype="<f4").reshape(1, 4)
    put(shm, 0, x)
    assert register(daemon, "busy", shm.name, 4096).status_code == 200
    body = {"inputs": [shm_input("x", "FP32", [1, 4], "busy", 16)],
            "outputs": [{"name": "y", "parameters": shm_params("busy", 16, 64)}]}
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        daemon.post("/v2/models/slow/infer", json=body, timeout=60))) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while daemon.get(f"{SYS}/region/busy/status").json()[0]["in_use"] == 0:
        assert time.monotonic() < deadline, "the requests never held the region"
        time.sleep(0.005)
    msg = assert_error(daemon.post(f"{SYS}/region/busy/unregister"), 409)
    assert "in use" in msg
    assert_error(daemon.post(f"{SYS}/unregister"), 409)
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert np.array_equal(get(shm, 64, "<f4", (1, 4)), x * 2)
    assert daemon.get(f"{SYS}/region/busy/status").json()[0]["in_use"] == 0
    assert daemon.post(f"{SYS}/region/busy/unregister").status_code == 200


def test_shrunk_region_is_an_error_not_a_crash(daemon, regions):
    shm = regions(8192)
    assert register(daemon, "shrink", shm.name, 8192).status_code == 200
    put(shm, 0, np.ones((2, 4), "<f4"))
    put(shm, 64, np.ones((2, 4), "<i8"))
    assert daemon.post("/v2/models/two_io/infer",
                       json=two_io_body("shrink", 0, 64, 6000)).status_code == 200
    os.ftruncate(shm._fd, 100)  # the client shrinks its object underneath
    for body in (two_io_body("shrink", 0, 64, 6000), two_io_body("shrink", 0, 64, 32)):
        msg = assert_error(daemon.post("/v2/models/two_io/infer", json=body), 400)
        assert "shrunk" in msg
    assert_still_serves(daemon)
    assert daemon.post(f"{SYS}/region/shrink/unregister").status_code == 200


def test_shrunk_region_output_only(daemon, regions, rng):
    """Only the output in the region, which shrinks: the write is refused."""
    shm = regions(8192)
    assert register(daemon, "outonly", shm.name, 8192).status_code == 200
    os.ftruncate(shm._fd, 4096)
    arrays = make_inputs("two_io", 2, rng)
    body, headers = encode_request([tensor("a", "FP32", arrays["a"], True),
                                    tensor("b", "INT64", arrays["b"], True)])
    import json
    head_len = int(headers["Inference-Header-Content-Length"])
    request = json.loads(body[:head_len])
    request["outputs"] = [{"name": "sum", "parameters": shm_params("outonly", 32, 6000)}]
    head = json.dumps(request).encode()
    r = infer_raw(daemon, "two_io", head + body[head_len:],
                  {"Content-Type": "application/octet-stream",
                   "Inference-Header-Content-Length": str(len(head))})
    assert "shrunk" in assert_error(r, 400)
    assert_still_serves(daemon)


def test_concurrent_requests_share_a_region(daemon, regions, rng):
    """8 clients, each with its own slice of one region, 15 requests each."""
    shm = regions(8 * 1024)
    assert register(daemon, "conc", shm.name, 8 * 1024).status_code == 200
    errors = []

    def client(k):
        base = k * 1024
        local = np.random.default_rng(k)
        session = requests.Session()
        for i in range(15):
            a = local.standard_normal((2, 4)).astype("<f4")
            b = local.integers(-9, 9, (2, 4)).astype("<i8")
            put(shm, base, a)
            put(shm, base + 64, b)
            r = session.post(daemon.url("/v2/models/two_io/infer"),
                             json=two_io_body("conc", base, base + 64, base + 256), timeout=30)
            if r.status_code != 200:
                errors.append(r.text)
                return
            got = get(shm, base + 256, "<f4", (2, 4))
            if not np.array_equal(got, a + b.astype("<f4")):
                errors.append(f"client {k} request {i}: {got} != {a + b}")
                return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert daemon.get(f"{SYS}/region/conc/status").json()[0]["in_use"] == 0


def test_cuda_register_refused_without_cuda(daemon):
    handle = {"b64": "A" * 88}
    r = daemon.post(f"{CUDA}/region/g/register",
                    json={"raw_handle": handle, "device_id": 0, "byte_size": 64})
    assert "CUDA is not available" in assert_error(r, 400)
    assert daemon.get(f"{CUDA}/status").json() == []
    assert_error(daemon.post(f"{CUDA}/region/g/unregister"), 404)
    assert "cuda_shared_memory" not in daemon.get("/v2").json()["extensions"]


# --------------------------------------------------------------------------
# Flags and access


def test_off_by_default(start_daemon, model_repo):
    d = start_daemon()
    shm = shared_memory.SharedMemory(create=True, size=4096)
    try:
        for r in (register(d, "r", shm.name, 4096), d.get(f"{SYS}/status"),
                  d.post(f"{SYS}/unregister"), d.get(f"{SYS}/region/r/status"),
                  d.post(f"{CUDA}/region/r/register", json={}),
                  d.post("/v2/models/fashion_mnist/infer",
                         json={"inputs": [shm_input("input", "FP32", [1, 1, 28, 28], "r",
                                                    3136)]})):
            assert "start inferd with --shared-memory" in assert_error(r, 400)
        assert "system_shared_memory" not in d.get("/v2").json()["extensions"]
    finally:
        shm.close()
        shm.unlink()


def test_limits(start_daemon):
    d = start_daemon(["--shared-memory", "--shared-memory-max-regions", "2",
                      "--shared-memory-max-bytes", "6000"])
    shms = [shared_memory.SharedMemory(create=True, size=4096) for _ in range(3)]
    try:
        assert register(d, "a", shms[0].name, 4096).status_code == 200
        assert "--shared-memory-max-bytes" in assert_error(register(d, "b", shms[1].name, 4096),
                                                           400)
        assert register(d, "b", shms[1].name, 1000).status_code == 200
        assert "--shared-memory-max-regions" in assert_error(register(d, "c", shms[2].name, 10),
                                                             400)
        assert d.post(f"{SYS}/unregister").status_code == 200
        assert d.get(f"{SYS}/status").json() == []
        assert register(d, "c", shms[2].name, 4096).status_code == 200
    finally:
        for s in shms:
            s.close()
            s.unlink()


def test_register_needs_the_admin_token(start_daemon, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-admin-token\n")
    token.chmod(0o600)
    d = start_daemon(["--shared-memory", "--admin-token-file", str(token)])
    shm = shared_memory.SharedMemory(create=True, size=4096)
    try:
        assert "admin token" in assert_error(register(d, "t", shm.name, 4096), 403)
        assert_error(register(d, "t", shm.name, 4096,
                              headers={"Authorization": "Bearer wrong"}), 403)
        ok = {"Authorization": "Bearer s3cret-admin-token"}
        assert register(d, "t", shm.name, 4096, headers=ok).status_code == 200
        assert d.get(f"{SYS}/status").status_code == 200  # status: as inference
        assert_error(d.post(f"{SYS}/region/t/unregister"), 403)
        assert d.post(f"{SYS}/region/t/unregister", headers=ok).status_code == 200
    finally:
        shm.close()
        shm.unlink()
