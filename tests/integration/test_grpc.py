"""gRPC: inference.GRPCInferenceService (the KServe v2 / Triton protocol) and
grpc.health.v1.Health, with Debian's python3-grpcio and stubs generated here
from inferd's own proto/ files. Outputs are compared with python3-torch on
the same model files and byte for byte with the HTTP v2 binary answer to the
same request; every status code the front end maps is provoked.
"""
import concurrent.futures
import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import grpc_stubs
from support import REPO_ROOT, free_port, sample_image, start_server, finish
from loadtools import add_slow, log_records, metric, scrape, slow_input, wait_log_records
from v2_client import (CONFIGS, FASHION_TOL, NP_DTYPES, TEST_MODELS, TorchReference, assert_same,
                       decode_response, encode_request, infer_raw, make_inputs, tensor)

import make_test_models  # noqa: E402  (models/ is on sys.path: support puts it there)

grpc = pytest.importorskip("grpc")  # python3-grpcio; .ci installs it


# --------------------------------------------------------------------------
# Stubs and daemons

@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """The generated modules: pb.inference, pb.inference_grpc, pb.health,
    pb.health_grpc (grpc_stubs.py: grpc_tools.protoc on proto/*.proto)."""
    return grpc_stubs.generate(tmp_path_factory.mktemp("stubs"))


def grpc_flags(*extra):
    port = free_port()
    return port, ["--grpc-port", str(port), *extra]


def start_grpc(workdir, repo, *extra):
    port, flags = grpc_flags(*extra)
    daemon = start_server(workdir, repo, flags)
    daemon.grpc_port = port
    return daemon


def stub(pb, daemon, **kw):
    channel = grpc.insecure_channel(f"127.0.0.1:{daemon.grpc_port}", **kw)
    return pb.inference_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def g(tmp_path_factory, v2_repo):
    """A daemon on v2_repo (fashion_mnist and the v2 test models) with gRPC."""
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc"), v2_repo)
    yield daemon
    finish(daemon)


@pytest.fixture(scope="module")
def s(pb, g):
    return stub(pb, g)


def infer_request(pb, model, arrays, specs, request_id="", outputs=(), typed=False):
    """A ModelInferRequest for model with arrays by input name: raw bytes in
    raw_input_contents, or with typed the values in contents."""
    req = pb.inference.ModelInferRequest(model_name=model, id=request_id)
    for spec in specs:
        a = np.ascontiguousarray(arrays[spec["name"]], dtype=NP_DTYPES[spec["datatype"]])
        t = req.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=list(a.shape))
        if typed:
            field = {"BOOL": "bool_contents", "UINT8": "uint_contents", "INT8": "int_contents",
                     "INT16": "int_contents", "INT32": "int_contents",
                     "INT64": "int64_contents", "FP16": "fp32_contents",
                     "FP32": "fp32_contents", "FP64": "fp64_contents"}[spec["datatype"]]
            getattr(t.contents, field).extend(a.ravel().tolist())
        else:
            req.raw_input_contents.append(a.tobytes())
    for name, k in outputs:
        o = req.outputs.add(name=name)
        if k:
            o.parameters["classification"].int64_param = k
    return req


def arrays_of(resp):
    """{name: numpy array} of a ModelInferResponse's raw_output_contents."""
    assert len(resp.raw_output_contents) == len(resp.outputs)
    out = {}
    for o, raw in zip(resp.outputs, resp.raw_output_contents):
        if o.datatype == "BYTES":
            out[o.name] = raw
        else:
            out[o.name] = np.frombuffer(raw, NP_DTYPES[o.datatype]).reshape(list(o.shape))
    return out


def http_binary(daemon, model, arrays, specs, outputs=None):
    """The HTTP v2 answer to the same request, every output binary."""
    inputs = [tensor(s_["name"], s_["datatype"], arrays[s_["name"]], True) for s_ in specs]
    body, headers = encode_request(inputs, outputs=outputs, binary_output=True)
    return decode_response(infer_raw(daemon, model, body, headers))


def v2_binary_post(daemon, model, header, blob):
    """POST a v2 binary request: header (a dict) then blob."""
    head = json.dumps(header).encode()
    r = daemon.post(f"/v2/models/{model}/infer", data=head + blob,
                    headers={"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 200, r.text[:300]
    return r


def code_of(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as e:
        call(*args, **kwargs)
    return e.value.code(), e.value.details()


# --------------------------------------------------------------------------
# Health, metadata, configuration

def test_health_and_server_metadata(pb, g, s):
    assert s.ServerLive(pb.inference.ServerLiveRequest()).live
    assert s.ServerReady(pb.inference.ServerReadyRequest()).ready
    assert s.ModelReady(pb.inference.ModelReadyRequest(name="fashion_mnist")).ready
    assert s.ModelReady(pb.inference.ModelReadyRequest(name="fashion_mnist", version="1")).ready
    meta = s.ServerMetadata(pb.inference.ServerMetadataRequest())
    http = g.get("/v2").json()
    assert (meta.name, meta.version, list(meta.extensions)) == \
        (http["name"], http["version"], http["extensions"])
    health = pb.health_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{g.grpc_port}"))
    assert health.Check(pb.health.HealthCheckRequest()).status == \
        pb.health.HealthCheckResponse.SERVING
    assert health.Check(pb.health.HealthCheckRequest(
        service="inference.GRPCInferenceService")).status == pb.health.HealthCheckResponse.SERVING
    code, _ = code_of(health.Check, pb.health.HealthCheckRequest(service="nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = code_of(lambda: next(iter(health.Watch(pb.health.HealthCheckRequest()))))
    assert code == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("model", ["fashion_mnist", *TEST_MODELS])
def test_model_metadata_equals_http(pb, g, s, model):
    meta = s.ModelMetadata(pb.inference.ModelMetadataRequest(name=model))
    http = g.get(f"/v2/models/{model}").json()
    assert meta.name == http["name"] and list(meta.versions) == http["versions"]
    assert meta.platform == http["platform"]
    for got, want in ((meta.inputs, http["inputs"]), (meta.outputs, http["outputs"])):
        assert [(t.name, t.datatype, list(t.shape)) for t in got] == \
            [(t["name"], t["datatype"], t["shape"]) for t in want]


def test_model_config_is_tritons_message(pb, s):
    c = s.ModelConfig(pb.inference.ModelConfigRequest(name="fashion_mnist")).config
    assert (c.name, c.max_batch_size) == ("fashion_mnist", 32)
    assert [(i.name, i.data_type, list(i.dims)) for i in c.input] == \
        [("input", pb.inference.TYPE_FP32, [1, 28, 28])]
    assert [(o.name, o.data_type, list(o.dims)) for o in c.output] == \
        [("logits", pb.inference.TYPE_FP32, [10])]
    assert c.dynamic_batching.max_queue_delay_microseconds == 2000
    assert len(c.instance_group) == 1 and c.instance_group[0].count >= 1
    assert c.instance_group[0].kind == pb.inference.ModelInstanceGroup.KIND_CPU
    nb = s.ModelConfig(pb.inference.ModelConfigRequest(name="no_batch")).config
    assert nb.max_batch_size == 0 and list(nb.input[0].dims) == [3]
    assert not nb.HasField("dynamic_batching")
    all_types = s.ModelConfig(pb.inference.ModelConfigRequest(name="all_types")).config
    assert [i.data_type for i in all_types.input] == [
        pb.inference.DataType.Value(f"TYPE_{dt}") for dt, _ in make_test_models.ALL_TYPES]


def test_repository_index_and_statistics(pb, g, s):
    index = s.RepositoryIndex(pb.inference.RepositoryIndexRequest())
    http = g.post("/v2/repository/index").json()
    assert [(m.name, m.version, m.state) for m in index.models] == \
        [(m["name"], m["version"], m["state"]) for m in http]
    before = s.ModelStatistics(pb.inference.ModelStatisticsRequest(name="two_io")).model_stats[0]
    arrays = make_inputs("two_io", 2, np.random.default_rng(1))
    s.ModelInfer(infer_request(pb, "two_io", arrays, CONFIGS["two_io"]["inputs"]))
    after = s.ModelStatistics(pb.inference.ModelStatisticsRequest(name="two_io")).model_stats[0]
    assert after.inference_stats.success.count == before.inference_stats.success.count + 1
    assert after.inference_count == before.inference_count + 2
    every = s.ModelStatistics(pb.inference.ModelStatisticsRequest())
    assert {m.name for m in every.model_stats} == {"fashion_mnist", *TEST_MODELS}


# --------------------------------------------------------------------------
# Inference

@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
@pytest.mark.parametrize("model", TEST_MODELS)
def test_infer_matches_torch_and_http(pb, g, s, reference, rng, model, typed):
    specs = CONFIGS[model]["inputs"]
    arrays = make_inputs(model, 3, rng)  # batch 3 where the model batches
    resp = s.ModelInfer(infer_request(pb, model, arrays, specs, request_id="r-1", typed=typed))
    assert (resp.model_name, resp.model_version, resp.id) == (model, "1", "r-1")
    got = arrays_of(resp)
    expected = reference(model, [arrays[sp["name"]] for sp in specs])
    datatypes = {o["name"]: o["datatype"] for o in CONFIGS[model]["outputs"]}
    assert [o.name for o in resp.outputs] == [o["name"] for o in CONFIGS[model]["outputs"]]
    for name, want in expected.items():
        assert_same(got[name], want, datatypes[name], f"{model}.{name}")
    http = http_binary(g, model, arrays, specs)
    for o, raw in zip(resp.outputs, resp.raw_output_contents):
        assert raw == http.arrays[o.name].tobytes(), f"{model}.{o.name} differs from HTTP's"
        assert list(o.shape) == list(http.arrays[o.name].shape)


def test_fashion_mnist_matches_torch(pb, s, v2_repo):
    import torch

    images = np.stack([sample_image()] * 5).astype(np.float32)
    images[1:] *= np.linspace(0.5, 1.5, 4, dtype=np.float32)[:, None, None, None]
    resp = s.ModelInfer(infer_request(pb, "fashion_mnist", {"input": images},
                                      [{"name": "input", "datatype": "FP32"}]))
    got = arrays_of(resp)["logits"]
    model = torch.jit.load(str(v2_repo / "fashion_mnist" / "model.pt"), map_location="cpu")
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(images)).numpy()
    assert got.shape == (5, 10) and np.abs(got - want).max() <= FASHION_TOL


def test_requested_outputs_and_classification_equal_http(pb, g, s, rng):
    specs = CONFIGS["two_io"]["inputs"]
    arrays = make_inputs("two_io", 2, rng)
    resp = s.ModelInfer(infer_request(pb, "two_io", arrays, specs, outputs=[("prod_sum", 0)]))
    assert [o.name for o in resp.outputs] == ["prod_sum"]
    http = http_binary(g, "two_io", arrays, specs, outputs=[("prod_sum", True)])
    assert resp.raw_output_contents[0] == http.arrays["prod_sum"].tobytes()
    # classification: the top 3 of each row as BYTES, as over HTTP
    images = np.stack([sample_image()] * 2).astype(np.float32)
    req = infer_request(pb, "fashion_mnist", {"input": images},
                        [{"name": "input", "datatype": "FP32"}], outputs=[("logits", 3)])
    resp = s.ModelInfer(req)
    assert (resp.outputs[0].datatype, list(resp.outputs[0].shape)) == ("BYTES", [2, 3])
    r = v2_binary_post(g, "fashion_mnist", {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(images.shape),
                    "parameters": {"binary_data_size": images.nbytes}}],
        "outputs": [{"name": "logits", "parameters": {"classification": 3, "binary_data": True}}]},
        images.tobytes())
    assert r.status_code == 200
    n = int(r.headers["Inference-Header-Content-Length"])
    assert resp.raw_output_contents[0] == r.content[n:]
    first = resp.raw_output_contents[0]
    text = first[4:4 + int.from_bytes(first[:4], "little")].decode()
    assert text.count(":") == 2  # score:index:label


def test_image_bytes_inputs_equal_http(pb, tmp_path_factory):
    """The committed fashion_mnist declares its input an image: PNG bytes in
    bytes_contents and in raw_input_contents (length-prefixed) give what
    HTTP gives for the same PNG."""
    from PIL import Image

    repo = tmp_path_factory.mktemp("grpc-image-repo")
    shutil.copytree(REPO_ROOT / "models" / "fashion_mnist", repo / "fashion_mnist")
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc-image"), repo)
    try:
        buf = io.BytesIO()
        Image.fromarray((sample_image()[0] * 255).round().astype(np.uint8)).save(buf, "PNG")
        png = buf.getvalue()
        sv = stub(pb, daemon)
        req = pb.inference.ModelInferRequest(model_name="fashion_mnist")
        t = req.inputs.add(name="input", datatype="BYTES", shape=[2])
        t.contents.bytes_contents.extend([png, png])
        typed = sv.ModelInfer(req)
        del req.inputs[0].contents.bytes_contents[:]
        req.raw_input_contents.append((len(png).to_bytes(4, "little") + png) * 2)
        raw = sv.ModelInfer(req)
        assert typed.raw_output_contents == raw.raw_output_contents
        element = len(png).to_bytes(4, "little") + png
        r = v2_binary_post(daemon, "fashion_mnist", {
            "inputs": [{"name": "input", "datatype": "BYTES", "shape": [2],
                        "parameters": {"binary_data_size": 2 * len(element)}}],
            "parameters": {"binary_data_output": True}}, element * 2)
        assert r.status_code == 200, r.text[:300]
        m = int(r.headers["Inference-Header-Content-Length"])
        assert typed.raw_output_contents[0] == r.content[m:]
        # bytes that are no image
        req = pb.inference.ModelInferRequest(model_name="fashion_mnist")
        req.inputs.add(name="input", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
            b"not a png")
        code, details = code_of(sv.ModelInfer, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "PNG" in details
    finally:
        finish(daemon)


def test_concurrent_calls_each_get_their_own_answer(pb, g, s, reference):
    specs = CONFIGS["two_io"]["inputs"]
    rng = np.random.default_rng(7)
    jobs = [make_inputs("two_io", 1 + i % 4, rng) for i in range(48)]

    def one(i):
        resp = s.ModelInfer(infer_request(pb, "two_io", jobs[i], specs, request_id=f"c{i}"))
        return i, resp

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(len(jobs))))
    for i, resp in results:
        assert resp.id == f"c{i}"
        want = reference("two_io", [jobs[i]["a"], jobs[i]["b"]])
        got = arrays_of(resp)
        for name in want:
            assert_same(got[name], want[name], "FP32", f"call {i} {name}")


def test_stream_answers_in_order_with_errors_in_band(pb, g, s, reference):
    specs = CONFIGS["two_io"]["inputs"]
    rng = np.random.default_rng(11)
    batches = [1, 3, 8, 2, 1, 5]
    jobs = [make_inputs("two_io", b, rng) for b in batches]
    requests = [infer_request(pb, "two_io", a, specs, request_id=f"s{i}")
                for i, a in enumerate(jobs)]
    bad = pb.inference.ModelInferRequest(model_name="two_io", id="bad")
    bad.inputs.add(name="a", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1.0])
    requests.insert(3, bad)
    responses = list(s.ModelStreamInfer(iter(requests)))
    assert len(responses) == len(requests)
    assert responses[3].error_message and "a" in responses[3].error_message
    ok = [r for i, r in enumerate(responses) if i != 3]
    assert [r.infer_response.id for r in ok] == [f"s{i}" for i in range(len(jobs))]
    for r, a in zip(ok, jobs):
        assert not r.error_message
        want = reference("two_io", [a["a"], a["b"]])
        for name, got in arrays_of(r.infer_response).items():
            assert_same(got, want[name], "FP32", f"stream {r.infer_response.id} {name}")


def test_gzip_compressed_calls(pb, g, reference):
    sc = stub(pb, g, compression=grpc.Compression.Gzip)
    arrays = make_inputs("dict_out", 4, np.random.default_rng(3))
    resp = sc.ModelInfer(infer_request(pb, "dict_out", arrays, CONFIGS["dict_out"]["inputs"]))
    want = reference("dict_out", [arrays["x"]])
    for name, got in arrays_of(resp).items():
        assert_same(got, want[name], "FP32", name)


# --------------------------------------------------------------------------
# Status codes

def test_client_errors_map_to_their_codes(pb, g, s):
    cases = []
    cases.append((pb.inference.ModelInferRequest(model_name="nope"), grpc.StatusCode.NOT_FOUND,
                  "nope"))
    cases.append((pb.inference.ModelInferRequest(model_name="two_io", model_version="7"),
                  grpc.StatusCode.NOT_FOUND, "version"))
    r = pb.inference.ModelInferRequest(model_name="two_io")
    r.inputs.add(name="a", datatype="FP32", shape=[1, 5])
    r.inputs.add(name="b", datatype="INT64", shape=[1, 4])
    r.raw_input_contents.extend([b"\0" * 20, b"\0" * 32])
    cases.append((r, grpc.StatusCode.INVALID_ARGUMENT, "shape"))
    r = pb.inference.ModelInferRequest(model_name="two_io")
    r.inputs.add(name="a", datatype="FP32", shape=[1, 4])
    r.raw_input_contents.extend([b"\0" * 16, b"\0" * 16])
    cases.append((r, grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents"))
    r = pb.inference.ModelInferRequest(model_name="two_io")
    r.inputs.add(name="a", datatype="FP32", shape=[1, 4]).contents.int64_contents.extend([1] * 4)
    cases.append((r, grpc.StatusCode.INVALID_ARGUMENT, "fp32_contents"))
    r = pb.inference.ModelInferRequest(model_name="two_io")
    r.inputs.add(name="a", datatype="FP32", shape=[1, 10 ** 12, 10 ** 12])
    r.raw_input_contents.append(b"")
    cases.append((r, grpc.StatusCode.INVALID_ARGUMENT, "too large"))
    r = pb.inference.ModelInferRequest(model_name="two_io")
    r.inputs.add(name="a", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1] * 4)
    cases.append((r, grpc.StatusCode.INVALID_ARGUMENT, "missing input"))
    r = pb.inference.ModelInferRequest(model_name="two_io")
    r.inputs.add(name="a", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"x")
    cases.append((r, grpc.StatusCode.INVALID_ARGUMENT, "not declared as an image"))
    for req, code, word in cases:
        got, details = code_of(s.ModelInfer, req)
        assert got == code and word in details, (req, got, details)
    # bytes that are no ModelInferRequest
    raw = grpc.insecure_channel(f"127.0.0.1:{g.grpc_port}").unary_unary(
        "/inference.GRPCInferenceService/ModelInfer")
    got, details = code_of(raw, b"\xff\xff\xff\xff")
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "ModelInferRequest" in details
    # a method inferd does not serve
    raw = grpc.insecure_channel(f"127.0.0.1:{g.grpc_port}").unary_unary(
        "/inference.GRPCInferenceService/TraceSetting")
    assert code_of(raw, b"")[0] == grpc.StatusCode.UNIMPLEMENTED
    # load and unload while model control is off
    got, details = code_of(s.RepositoryModelLoad,
                           pb.inference.RepositoryModelLoadRequest(model_name="two_io"))
    assert got == grpc.StatusCode.PERMISSION_DENIED and "explicit" in details
    # still serving
    assert s.ServerLive(pb.inference.ServerLiveRequest()).live


def test_message_limit_is_max_body_bytes(pb, tmp_path_factory, v2_repo):
    specs = CONFIGS["two_io"]["inputs"]
    arrays = make_inputs("two_io", 8, np.random.default_rng(5))
    req = infer_request(pb, "two_io", arrays, specs)
    limit = req.ByteSize()
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc-limit"), v2_repo,
                        "--max-body-bytes", str(limit))
    try:
        sv = stub(pb, daemon, options=[("grpc.max_send_message_length", -1)])
        assert sv.ModelInfer(req).model_name == "two_io"  # exactly at the limit
        req.id = "x"  # three bytes more
        code, details = code_of(sv.ModelInfer, req)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and str(limit) in details, details
        assert sv.ServerLive(pb.inference.ServerLiveRequest()).live
    finally:
        finish(daemon)


def test_api_keys_from_metadata(pb, tmp_path_factory, v2_repo):
    work = tmp_path_factory.mktemp("inferd-grpc-keys")
    key = "k-" + "7" * 30
    (work / "keys").write_text(key + "\n")
    os.chmod(work / "keys", 0o600)
    daemon = start_grpc(work, v2_repo, "--api-key-file", str(work / "keys"))
    try:
        sv = stub(pb, daemon)
        req = pb.inference.ModelMetadataRequest(name="two_io")
        code, details = code_of(sv.ModelMetadata, req)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, _ = code_of(sv.ModelMetadata, req, metadata=[("authorization", "Bearer wrong")])
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert sv.ModelMetadata(req, metadata=[("authorization", f"Bearer {key}")]).name == "two_io"
        assert sv.ModelMetadata(req, metadata=[("x-api-key", key)]).name == "two_io"
        assert sv.ServerLive(pb.inference.ServerLiveRequest()).live  # health stays open
        code, _ = code_of(lambda: list(sv.ModelStreamInfer(iter([]))))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert key not in daemon.log_text()
    finally:
        finish(daemon)


def test_tls(pb, tmp_path_factory, v2_repo):
    work = tmp_path_factory.mktemp("inferd-grpc-tls")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    daemon = start_grpc(work, v2_repo, "--grpc-tls-cert", str(cert), "--grpc-tls-key", str(key))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        channel = grpc.secure_channel(f"localhost:{daemon.grpc_port}", creds)
        sv = pb.inference_grpc.GRPCInferenceServiceStub(channel)
        assert sv.ServerLive(pb.inference.ServerLiveRequest()).live
        plain = stub(pb, daemon)
        code, _ = code_of(plain.ServerLive, pb.inference.ServerLiveRequest(), timeout=3)
        assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        finish(daemon)


# --------------------------------------------------------------------------
# Cancellation, deadlines, drain (the slow model)

@pytest.fixture(scope="module")
def slow_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("grpc-slow-repo")
    add_slow(repo, instances=1)
    return repo


def slow_request(pb, tag, rows=1, request_id=""):
    x = slow_input(tag, rows)
    req = pb.inference.ModelInferRequest(model_name="slow", id=request_id)
    req.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return x, req


def test_cancelled_and_late_calls_leave_the_queue(pb, tmp_path_factory, slow_repo):
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc-cancel"), slow_repo,
                        "--log-format", "json")
    try:
        sv = stub(pb, daemon)
        # four rows fill a batch: the one instance is busy with two of them
        busy = [sv.ModelInfer.future(slow_request(pb, 1 + i, 4)[1]) for i in range(2)]
        time.sleep(0.05)
        cancelled = sv.ModelInfer.future(slow_request(pb, 9)[1])
        time.sleep(0.02)
        cancelled.cancel()
        code, _ = code_of(sv.ModelInfer, slow_request(pb, 10)[1], timeout=0.02)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        for f in busy:
            x = np.frombuffer(f.result(timeout=30).raw_output_contents[0], np.float32)
            assert x.size == 16
        lines = wait_log_records(daemon, "request", lambda rs: len(
            [r for r in rs if r.get("protocol") == "grpc"]) >= 4)
        statuses = sorted(r["status"] for r in lines if r.get("protocol") == "grpc")
        assert statuses.count("OK") == 2, statuses
        assert set(statuses) - {"OK"} <= {"CANCELLED", "DEADLINE_EXCEEDED"}, statuses
        assert len(statuses) == 4, statuses  # neither ran: both left the queue
        s_ = scrape(daemon)
        assert metric(s_, "inferd_inferences_total", model="slow") == 8
    finally:
        finish(daemon)


def test_drain_answers_calls_in_flight_then_refuses(pb, tmp_path_factory, slow_repo):
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc-drain"), slow_repo)
    sv = stub(pb, daemon)
    x, req = slow_request(pb, 3, 2)
    pending = [sv.ModelInfer.future(req) for _ in range(3)]
    stream_reqs = [slow_request(pb, 20 + i)[1] for i in range(50)]

    def slow_iter():
        for r in stream_reqs:
            yield r
            time.sleep(0.05)
    stream = sv.ModelStreamInfer(slow_iter())
    first = next(stream)
    assert not first.error_message
    hold = threading.Event()

    def idle_iter():  # one message, then a client that says nothing more
        yield slow_request(pb, 90)[1]
        hold.wait(60)
    idle = sv.ModelStreamInfer(idle_iter())
    assert not next(idle).error_message
    time.sleep(0.05)
    t0 = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    for f in pending:
        got = np.frombuffer(f.result(timeout=30).raw_output_contents[0], np.float32)
        assert np.array_equal(got.reshape(x.shape), 2 * x)
    with pytest.raises(grpc.RpcError) as e:
        for _ in stream:
            pass
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as e:  # the idle stream ends at once, not at the timeout
        next(idle)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert daemon.wait_exit() == 0
    hold.set()
    assert time.monotonic() - t0 < 6, "an idle stream held the drain"  # --drain-timeout-s 8
    daemon.stopped = True


def test_metrics_and_log_name_the_protocol(pb, g, s):
    s.ServerLive(pb.inference.ServerLiveRequest())
    samples = scrape(g)
    assert metric(samples, "inferd_grpc_calls_total", protocol="grpc", method="ServerLive",
                  code="OK") >= 1
    assert "protocol=grpc method=ServerLive status=OK" in g.log_text()


def test_repository_load_and_unload(pb, tmp_path_factory, v2_repo):
    """Explicit mode, no token file: a loopback client may unload and load."""
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc-control"), v2_repo,
                        "--model-control-mode", "explicit")
    try:
        sv = stub(pb, daemon)
        ready = pb.inference.ModelReadyRequest(name="dict_out")
        assert sv.ModelReady(ready).ready
        sv.RepositoryModelUnload(pb.inference.RepositoryModelUnloadRequest(model_name="dict_out"))
        assert code_of(sv.ModelReady, ready)[0] == grpc.StatusCode.NOT_FOUND
        assert daemon.get("/v2/models/dict_out/ready").status_code == 404
        sv.RepositoryModelLoad(pb.inference.RepositoryModelLoadRequest(model_name="dict_out"))
        assert sv.ModelReady(ready).ready
        code, details = code_of(sv.RepositoryModelLoad,
                                pb.inference.RepositoryModelLoadRequest(model_name="no_such"))
        assert code == grpc.StatusCode.NOT_FOUND, (code, details)
        req = pb.inference.RepositoryModelLoadRequest(model_name="dict_out")
        req.parameters["config"].string_param = "{not json"
        code, details = code_of(sv.RepositoryModelLoad, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert sv.ModelReady(ready).ready  # the served version stays
    finally:
        finish(daemon)


# --------------------------------------------------------------------------
# Shared memory (Triton's system shared memory extension over gRPC; the CUDA
# one answers as HTTP does on a CPU build)

SHM_SLOW_MS = 700  # one forward of the slow model: the window an in-use unregister needs


@pytest.fixture(scope="module")
def gshm(tmp_path_factory):
    """A daemon with --shared-memory and gRPC on two_io and a slow model."""
    import make_slow_model

    repo = tmp_path_factory.mktemp("grpc-shm-repo")
    make_test_models.make_model(repo, "two_io")
    make_slow_model.make_slow_model(repo, target_ms=SHM_SLOW_MS, max_batch_size=4)
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc-shm"), repo, "--shared-memory")
    daemon.repo = repo
    yield daemon
    finish(daemon)


@pytest.fixture
def sysshm(pb, gshm):
    """Make shared memory objects; after the test every region is
    unregistered and the objects unlinked."""
    from multiprocessing import shared_memory

    made = []

    def make(size):
        made.append(shared_memory.SharedMemory(create=True, size=size))
        return made[-1]

    yield make
    stub(pb, gshm).SystemSharedMemoryUnregister(pb.inference.SystemSharedMemoryUnregisterRequest())
    for m in made:
        m.close()
        m.unlink()


def shm_put(region, offset, array):
    raw = np.ascontiguousarray(array).tobytes()
    region.buf[offset:offset + len(raw)] = raw


def shm_get(region, offset, dtype, shape):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(bytes(region.buf[offset:offset + n]), dtype=dtype).reshape(shape)


def shm_param(params, region, size, offset=None):
    params["shared_memory_region"].string_param = region
    params["shared_memory_byte_size"].int64_param = size
    if offset is not None:
        params["shared_memory_offset"].int64_param = offset


def two_io_shm_request(pb, region, batch, a_off, b_off, sum_off, sum_size=None, raw_b=None):
    """two_io with a (and b, unless raw_b gives its array) in region and sum
    written there; prod_sum in the reply."""
    req = pb.inference.ModelInferRequest(model_name="two_io")
    shm_param(req.inputs.add(name="a", datatype="FP32", shape=[batch, 4]).parameters, region,
              batch * 16, a_off)
    b = req.inputs.add(name="b", datatype="INT64", shape=[batch, 4])
    if raw_b is None:
        shm_param(b.parameters, region, batch * 32, b_off)
    else:
        req.raw_input_contents.append(np.ascontiguousarray(raw_b, "<i8").tobytes())
    shm_param(req.outputs.add(name="sum").parameters, region, sum_size or batch * 16, sum_off)
    req.outputs.add(name="prod_sum")
    return req


def sys_register(pb, sv, name, key, size, offset=0, **kw):
    return sv.SystemSharedMemoryRegister(pb.inference.SystemSharedMemoryRegisterRequest(
        name=name, key=key, offset=offset, byte_size=size), **kw)


def test_shm_register_infer_status_unregister(pb, gshm, sysshm, rng):
    sv = stub(pb, gshm)
    region = sysshm(1 << 16)
    sys_register(pb, sv, "io", region.name, 1 << 16)
    status = sv.SystemSharedMemoryStatus(pb.inference.SystemSharedMemoryStatusRequest())
    assert list(status.regions) == ["io"]
    row = status.regions["io"]
    assert (row.name, row.key, row.offset, row.byte_size) == \
        ("io", gshm.get("/v2/systemsharedmemory/status").json()[0]["key"], 0, 1 << 16)
    one = sv.SystemSharedMemoryStatus(pb.inference.SystemSharedMemoryStatusRequest(name="io"))
    assert list(one.regions) == ["io"]

    arrays = make_inputs("two_io", 3, rng)
    shm_put(region, 0, arrays["a"])
    shm_put(region, 256, arrays["b"])
    resp = sv.ModelInfer(two_io_shm_request(pb, "io", 3, 0, 256, 4096))
    assert [o.name for o in resp.outputs] == ["sum", "prod_sum"]
    out = resp.outputs[0]
    assert (out.datatype, list(out.shape)) == ("FP32", [3, 4])
    assert out.parameters["shared_memory_region"].string_param == "io"
    assert out.parameters["shared_memory_byte_size"].int64_param == 48
    assert out.parameters["shared_memory_offset"].int64_param == 4096
    # an empty raw_output_contents entry keeps the entries in step with the outputs
    assert len(resp.raw_output_contents) == 2 and resp.raw_output_contents[0] == b""
    ref = TorchReference(gshm.repo)("two_io", [arrays["a"], arrays["b"]])
    assert_same(shm_get(region, 4096, "<f4", (3, 4)), ref["sum"], "FP32", "sum in shared memory")
    prod = np.frombuffer(resp.raw_output_contents[1], "<f4").reshape(3, 1)
    assert_same(prod, ref["prod_sum"], "FP32", "prod_sum in the reply")
    # the same request over HTTP writes the same bytes
    shm_bytes = bytes(region.buf[4096:4096 + 48])
    region.buf[4096:4096 + 48] = bytes(48)
    body = {"inputs": [{"name": n, "datatype": dt, "shape": [3, 4],
                        "parameters": {"shared_memory_region": "io",
                                       "shared_memory_byte_size": size,
                                       "shared_memory_offset": off}}
                       for n, dt, size, off in (("a", "FP32", 48, 0), ("b", "INT64", 96, 256))],
            "outputs": [{"name": "sum", "parameters": {"shared_memory_region": "io",
                                                       "shared_memory_byte_size": 48,
                                                       "shared_memory_offset": 4096}},
                        {"name": "prod_sum", "parameters": {"binary_data": True}}]}
    r = gshm.post("/v2/models/two_io/infer", json=body)
    assert r.status_code == 200, r.text
    assert bytes(region.buf[4096:4096 + 48]) == shm_bytes
    assert r.content.endswith(resp.raw_output_contents[1])
    # a mix: b in the request (raw_input_contents holds only the inputs not in a region)
    resp = sv.ModelInfer(two_io_shm_request(pb, "io", 3, 0, 0, 8192, raw_b=arrays["b"]))
    assert bytes(region.buf[8192:8192 + 48]) == shm_bytes
    # and unregister: gone from the status
    sv.SystemSharedMemoryUnregister(pb.inference.SystemSharedMemoryUnregisterRequest(name="io"))
    status = sv.SystemSharedMemoryStatus(pb.inference.SystemSharedMemoryStatusRequest())
    assert len(status.regions) == 0
    code, details = code_of(sv.SystemSharedMemoryStatus,
                            pb.inference.SystemSharedMemoryStatusRequest(name="io"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_shm_errors_map_to_their_codes(pb, gshm, sysshm):
    sv = stub(pb, gshm)
    region = sysshm(4096)
    shm_put(region, 0, np.ones((1, 4), "<f4"))
    shm_put(region, 64, np.ones((1, 4), "<i8"))
    sys_register(pb, sv, "e", region.name, 4096)
    cases = [
        (lambda: sys_register(pb, sv, "e", region.name, 4096),
         grpc.StatusCode.ALREADY_EXISTS, ""),
        (lambda: sys_register(pb, sv, "big", region.name, 8192),
         grpc.StatusCode.INVALID_ARGUMENT, ""),
        (lambda: sys_register(pb, sv, "../x", region.name, 16),
         grpc.StatusCode.INVALID_ARGUMENT, ""),
        (lambda: sv.SystemSharedMemoryUnregister(
            pb.inference.SystemSharedMemoryUnregisterRequest(name="nope")),
         grpc.StatusCode.NOT_FOUND, ""),
        (lambda: sv.ModelInfer(two_io_shm_request(pb, "nope", 1, 0, 64, 512)),
         grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        (lambda: sv.ModelInfer(two_io_shm_request(pb, "e", 1, 4090, 64, 512)),
         grpc.StatusCode.INVALID_ARGUMENT, ""),
        (lambda: sv.ModelInfer(two_io_shm_request(pb, "e", 1, 0, 64, 512, sum_size=8)),
         grpc.StatusCode.INVALID_ARGUMENT, ""),
        (lambda: sv.CudaSharedMemoryRegister(pb.inference.CudaSharedMemoryRegisterRequest(
            name="g", raw_handle=bytes(64), device_id=0, byte_size=64)),
         grpc.StatusCode.FAILED_PRECONDITION, "CUDA is not available"),
        (lambda: sv.CudaSharedMemoryUnregister(
            pb.inference.CudaSharedMemoryUnregisterRequest(name="g")),
         grpc.StatusCode.NOT_FOUND, ""),
    ]
    for call, code, word in cases:
        got, details = code_of(call)
        assert got == code and word in details, (code, got, details)
    # a byte size without a region, a region that is no string
    req = two_io_shm_request(pb, "e", 1, 0, 64, 512)
    del req.inputs[0].parameters["shared_memory_region"]
    got, details = code_of(sv.ModelInfer, req)
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "shared_memory_region" in details
    req = two_io_shm_request(pb, "e", 1, 0, 64, 512)
    req.inputs[0].parameters["shared_memory_region"].int64_param = 3
    assert code_of(sv.ModelInfer, req)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # an input in a region that carries data too
    req = two_io_shm_request(pb, "e", 1, 0, 64, 512)
    req.raw_input_contents.extend([b"\0" * 16, b"\0" * 32])
    got, details = code_of(sv.ModelInfer, req)
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "also carries data" in details
    assert len(sv.CudaSharedMemoryStatus(pb.inference.CudaSharedMemoryStatusRequest()).regions) \
        == 0
    # nothing holds the region after all that, and it still serves
    assert gshm.get("/v2/systemsharedmemory/region/e/status").json()[0]["in_use"] == 0
    sv.ModelInfer(two_io_shm_request(pb, "e", 1, 0, 64, 512))
    assert np.array_equal(shm_get(region, 512, "<f4", (1, 4)), np.full((1, 4), 2, "<f4"))
    meta = sv.ServerMetadata(pb.inference.ServerMetadataRequest())
    assert list(meta.extensions) == gshm.get("/v2").json()["extensions"]
    assert "system_shared_memory" in meta.extensions


def test_shm_unregister_in_use_fails_then_succeeds(pb, gshm, sysshm):
    sv = stub(pb, gshm)
    region = sysshm(4096)
    x = np.arange(4, dtype="<f4").reshape(1, 4)
    shm_put(region, 0, x)
    sys_register(pb, sv, "busy", region.name, 4096)
    req = pb.inference.ModelInferRequest(model_name="slow")
    shm_param(req.inputs.add(name="x", datatype="FP32", shape=[1, 4]).parameters, "busy", 16)
    shm_param(req.outputs.add(name="y").parameters, "busy", 16, 64)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(sv.ModelInfer, req, timeout=60) for _ in range(2)]
        deadline = time.monotonic() + 10
        while gshm.get("/v2/systemsharedmemory/region/busy/status").json()[0]["in_use"] == 0:
            assert time.monotonic() < deadline, "the calls never held the region"
            time.sleep(0.005)
        got, details = code_of(sv.SystemSharedMemoryUnregister,
                               pb.inference.SystemSharedMemoryUnregisterRequest(name="busy"))
        assert got == grpc.StatusCode.FAILED_PRECONDITION and "in use" in details
        got, _ = code_of(sv.SystemSharedMemoryUnregister,
                         pb.inference.SystemSharedMemoryUnregisterRequest())
        assert got == grpc.StatusCode.FAILED_PRECONDITION
        for f in futures:
            f.result()
    assert np.array_equal(shm_get(region, 64, "<f4", (1, 4)), x * 2)
    sv.SystemSharedMemoryUnregister(pb.inference.SystemSharedMemoryUnregisterRequest(name="busy"))


def test_shm_off_and_admin_token(pb, tmp_path_factory, v2_repo, g, s):
    from multiprocessing import shared_memory

    region = shared_memory.SharedMemory(create=True, size=4096)
    try:
        # g runs without --shared-memory: every call says so, as HTTP's
        for call in (lambda: sys_register(pb, s, "r", region.name, 4096),
                     lambda: s.SystemSharedMemoryStatus(
                         pb.inference.SystemSharedMemoryStatusRequest()),
                     lambda: s.SystemSharedMemoryUnregister(
                         pb.inference.SystemSharedMemoryUnregisterRequest()),
                     lambda: s.CudaSharedMemoryRegister(
                         pb.inference.CudaSharedMemoryRegisterRequest(name="r"))):
            got, details = code_of(call)
            assert got == grpc.StatusCode.FAILED_PRECONDITION, (got, details)
            assert "start inferd with --shared-memory" in details
        req = pb.inference.ModelInferRequest(model_name="two_io")
        shm_param(req.inputs.add(name="a", datatype="FP32", shape=[1, 4]).parameters, "r", 16)
        got, details = code_of(s.ModelInfer, req)
        assert got == grpc.StatusCode.INVALID_ARGUMENT and "--shared-memory" in details

        work = tmp_path_factory.mktemp("inferd-grpc-shm-admin")
        (work / "token").write_text("s3cret-admin-token\n")
        os.chmod(work / "token", 0o600)
        daemon = start_grpc(work, v2_repo, "--shared-memory", "--admin-token-file",
                            str(work / "token"))
        try:
            sv = stub(pb, daemon)
            ok = [("authorization", "Bearer s3cret-admin-token")]
            for md in (None, [("authorization", "Bearer wrong")]):
                got, _ = code_of(sys_register, pb, sv, "t", region.name, 4096, metadata=md)
                assert got == grpc.StatusCode.PERMISSION_DENIED
            sys_register(pb, sv, "t", region.name, 4096, metadata=ok)
            assert list(sv.SystemSharedMemoryStatus(
                pb.inference.SystemSharedMemoryStatusRequest()).regions) == ["t"]
            unreg = pb.inference.SystemSharedMemoryUnregisterRequest(name="t")
            assert code_of(sv.SystemSharedMemoryUnregister, unreg)[0] == \
                grpc.StatusCode.PERMISSION_DENIED
            got, _ = code_of(sv.CudaSharedMemoryRegister,
                             pb.inference.CudaSharedMemoryRegisterRequest(name="g"))
            assert got == grpc.StatusCode.PERMISSION_DENIED
            sv.SystemSharedMemoryUnregister(unreg, metadata=ok)
        finally:
            finish(daemon)
    finally:
        region.close()
        region.unlink()


def test_shm_limits_are_resource_exhausted(pb, tmp_path_factory, v2_repo):
    from multiprocessing import shared_memory

    regions = [shared_memory.SharedMemory(create=True, size=4096) for _ in range(2)]
    daemon = start_grpc(tmp_path_factory.mktemp("inferd-grpc-shm-limits"), v2_repo,
                        "--shared-memory", "--shared-memory-max-regions", "1")
    try:
        sv = stub(pb, daemon)
        sys_register(pb, sv, "a", regions[0].name, 4096)
        got, details = code_of(sys_register, pb, sv, "b", regions[1].name, 4096)
        assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "--shared-memory-max-regions" in \
            details
    finally:
        finish(daemon)
        for r in regions:
            r.close()
            r.unlink()
