"""Model versions and repository control (issue 13): version folders and
version policies, poll mode swapping a model under load, explicit load and
unload with and without the admin token, a failing load that leaves the old
version serving, and the per-version metrics and log lines.

The models here are tiny TorchScript "scale" models: y = factor * x for an
FP32 [-1,4] input, so that every answer tells which model file produced it
(factor 2.0 or 3.0 for the swaps, the version number for the versions).
Everything runs on loopback; every loop and wait is bounded.
"""
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from loadtools import metric, scrape, wait_log_records
from support import HTTP_TIMEOUT_S, http_session

ROWS = 4  # rows per request: an answer mixing two models would show it


def scale_model_file(path, factor):
    """Write a TorchScript model y = factor * x (with a little real work so
    batches form) to path."""
    import torch

    class Scale(torch.nn.Module):
        def __init__(self, f):
            super().__init__()
            self.register_buffer("eye", torch.eye(4) * f)

        def forward(self, x):
            return x.matmul(self.eye)

    torch.jit.script(Scale(float(factor)).eval()).save(str(path))


SCALE_CONFIG = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
    "max_batch_size": 8,
    "max_queue_delay_us": 500,
    "instances": 1,
}


def add_scale_model(repo, name, factor=None, versions=None, **config):
    """repo/name with config.json; a flat model.pt of `factor`, or one
    version folder per {version: factor} in `versions`."""
    folder = Path(repo) / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**SCALE_CONFIG, **config}))
    if versions is None:
        scale_model_file(folder / "model.pt", factor)
    else:
        for v, f in versions.items():
            (folder / str(v)).mkdir(exist_ok=True)
            scale_model_file(folder / str(v) / "model.pt", f)
    return folder


def infer_body(tag):
    x = (np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4) + np.float32(tag % 1000))
    return x, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [ROWS, 4],
                           "data": x.ravel().tolist()}]}


def infer(session, daemon, model, tag, version=None):
    """POST one v2 request; returns (status, factor or None, body)."""
    x, body = infer_body(tag)
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    r = session.post(daemon.url(path), json=body, timeout=HTTP_TIMEOUT_S)
    if r.status_code != 200:
        return r.status_code, None, r.text
    reply = r.json()
    y = np.asarray(reply["outputs"][0]["data"], dtype=np.float32).reshape(ROWS, 4)
    factors = {float(f) for f in np.unique(np.round(y[x != 0] / x[x != 0], 4))}
    assert len(factors) == 1, f"one answer mixes models: factors {factors} in {reply}"
    return 200, factors.pop(), reply


class Load:
    """`clients` threads sending v2 requests to `model` until stopped (or
    `limit_s` passes); every outcome is kept."""

    def __init__(self, daemon, model, clients=8, limit_s=240):
        self.daemon, self.model, self.limit_s = daemon, model, limit_s
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (monotonic time, status, factor, text)
        self.errors = []
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(clients)]

    def run(self, i):
        deadline = time.monotonic() + self.limit_s
        tag = i * 100000
        try:
            with http_session() as s:
                while not self.stop_event.is_set() and time.monotonic() < deadline:
                    tag += 1
                    status, factor, text = infer(s, self.daemon, self.model, tag)
                    with self.lock:
                        self.results.append((time.monotonic(), status, factor,
                                             text if status != 200 else ""))
        except BaseException as e:  # reported by stop()
            self.errors.append(repr(e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(HTTP_TIMEOUT_S + 5)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"
        assert not self.errors, f"client errors: {self.errors[:3]}"
        return self.results

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(HTTP_TIMEOUT_S + 5)

    def wait_factor(self, factor, timeout):
        """Wait until an answer from the model with this factor arrives."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if any(r[2] == factor and r[0] > t0 for r in self.results[-50:]):
                    return time.monotonic() - t0
            time.sleep(0.01)
        raise AssertionError(f"no answer from the factor-{factor} model within {timeout} s")


def replace_model(folder, factor, staging):
    """Swap folder/model.pt for a new file atomically (write beside, rename)."""
    tmp = Path(staging) / f"f{factor}.pt"
    if not tmp.exists():
        scale_model_file(tmp, factor)
    shutil.copyfile(tmp, folder / "model.pt.new")
    os.replace(folder / "model.pt.new", folder / "model.pt")


def index(daemon):
    r = daemon.post("/v2/repository/index")
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------
# Versions and policies

POLICIES = {  # model name: (version_policy, versions served of 1, 2, 3)
    "ver_default": (None, ["3"]),
    "ver_latest2": ({"latest": {"num_versions": 2}}, ["2", "3"]),
    "ver_all": ({"all": {}}, ["1", "2", "3"]),
    "ver_specific": ({"specific": {"versions": [1, 3]}}, ["1", "3"]),
}


def test_version_policies(start_daemon, tmp_path):
    """One model per policy, each with version folders 1, 2, 3 (y = v * x)."""
    repo = tmp_path / "repo"
    for name, (policy, _) in POLICIES.items():
        extra = {"version_policy": policy} if policy else {}
        add_scale_model(repo, name, versions={1: 1.0, 2: 2.0, 3: 3.0}, **extra)
    d = start_daemon(repo=repo, model="ver_default")
    rows = index(d)
    s = scrape(d)
    with http_session() as session:
        for name, (_, served) in POLICIES.items():
            assert d.get(f"/v2/models/{name}").json()["versions"] == served, name
            for v in ["1", "2", "3"]:
                status, factor, reply = infer(session, d, name, 7, version=v)
                ready = d.get(f"/v2/models/{name}/versions/{v}/ready").status_code
                if v in served:
                    assert (status, factor) == (200, float(v)), (name, v)
                    assert reply["model_version"] == v
                    assert ready == 200
                    meta = d.get(f"/v2/models/{name}/versions/{v}").json()
                    assert meta["versions"] == served
                else:
                    assert status == 404 and f"no version {v}" in reply, reply
                    assert ready == 404
            # without a version: the newest served one
            status, factor, reply = infer(session, d, name, 8)
            assert (status, factor, reply["model_version"]) == (200, float(served[-1]),
                                                                served[-1])
            assert [(r["version"], r["state"]) for r in rows if r["name"] == name] == \
                [(v, "READY") for v in served]
            for v in served:
                assert metric(s, "inferd_model_state", model=name, version=v,
                              state="READY") == 1
                assert metric(s, "inferd_model_state", model=name, version=v,
                              state="LOADING") == 0
                assert metric(s, "inferd_model_load_duration_seconds", model=name,
                              version=v) > 0
                assert metric(s, "inferd_requests_total", model=name, version=v,
                              status="200") >= 0
            assert metric(s, "inferd_model_load_failures_total", model=name) == 0
    # statistics per version: each served version counts its own requests
    st = d.get("/v2/models/ver_all/versions/2/stats").json()["model_stats"]
    assert [(x["name"], x["version"], x["inference_count"]) for x in st] == \
        [("ver_all", "2", ROWS)], st
    everything = d.get("/v2/models/stats").json()["model_stats"]
    assert sorted((x["name"], x["version"]) for x in everything) == sorted(
        (name, v) for name, (_, served) in POLICIES.items() for v in served)
    assert d.get("/v2/models/ver_all/versions/2/config").json()["version_policy"] == \
        {"all": {}}
    assert d.get("/v2/models/ver_default/versions/1/stats").status_code == 404
    # /predict: the default model's newest version
    r = d.predict({"inputs": [[1.0, 2.0, 3.0, 4.0]]})
    assert r.status_code == 200 and r.json()["outputs"] == [[3.0, 6.0, 9.0, 12.0]], r.text


def test_bad_version_policy_is_reported(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    add_scale_model(repo, "ok", factor=2.0)
    add_scale_model(repo, "badpolicy", versions={1: 1.0},
                    version_policy={"specific": {"versions": []}})
    d = start_daemon(repo=repo, model="ok", wait=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if d.get("/v2/models/ok/ready").status_code == 200:
                break
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)
    assert d.get("/v2/health/ready").status_code == 503  # one model is unavailable
    rows = [r for r in index(d) if r["name"] == "badpolicy"]
    assert rows and rows[0]["state"] == "UNAVAILABLE"
    assert "version_policy" in rows[0]["reason"]


def test_new_version_folder_is_served_in_poll_mode(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    folder = add_scale_model(repo, "ver", versions={1: 1.0})
    d = start_daemon(["--model-control-mode", "poll", "--repository-poll-s", "1",
                      "--log-format", "json"], repo=repo, model="ver")
    (folder / "2").mkdir()
    scale_model_file(folder / "2" / "model.pt", 2.0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and d.get("/v2/models/ver").json()["versions"] != ["2"]:
        time.sleep(0.1)
    assert d.get("/v2/models/ver").json()["versions"] == ["2"]
    with http_session() as s:
        assert infer(s, d, "ver", 1)[:2] == (200, 2.0)
        assert infer(s, d, "ver", 1, version="1")[0] == 404
    freed = wait_log_records(d, None, lambda rs: any(
        "version 1: freed after draining" in r.get("msg", "") for r in rs))
    assert any("version 1: freed after draining" in r.get("msg", "") for r in freed)


# --------------------------------------------------------------------------
# Poll mode: replace model.pt under load

SWAPS = 20


def test_poll_swaps_under_load_fail_no_request(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    staging = tmp_path / "staging"
    staging.mkdir()
    folder = add_scale_model(repo, "swap", factor=2.0)
    d = start_daemon(["--model-control-mode", "poll", "--repository-poll-s", "1",
                      "--log-format", "json"], repo=repo, model="swap")
    switch_s = []
    with Load(d, "swap", clients=8) as load:
        load.wait_factor(2.0, 10)
        for i in range(SWAPS):
            factor = 3.0 if i % 2 == 0 else 2.0
            replace_model(folder, factor, staging)
            if i > 0:  # the first swap is found by the timer alone; SIGHUP speeds the rest
                d.send_signal(signal.SIGHUP)
            switch_s.append(load.wait_factor(factor, 15))
            time.sleep(0.2)  # some traffic on each model
        results = load.stop()
    statuses = {}
    for _, status, _, text in results:
        statuses.setdefault(status, text)
    assert set(statuses) == {200}, f"failed requests: {statuses}"
    factors = {r[2] for r in results}
    assert factors == {2.0, 3.0}
    swapped = wait_log_records(d, "model swapped in", lambda rs: len(rs) >= SWAPS)
    assert len(swapped) >= SWAPS
    freed = wait_log_records(d, None, lambda rs: sum(
        "freed after draining" in r.get("msg", "") for r in rs) >= SWAPS)
    assert sum("freed after draining" in r.get("msg", "") for r in freed) >= SWAPS
    print(f"\n{len(results)} requests, 0 failed, {SWAPS} swaps; switch after "
          f"max {max(switch_s):.2f} s, median {sorted(switch_s)[len(switch_s) // 2]:.2f} s")


def test_poll_unloads_a_removed_model(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    add_scale_model(repo, "keep", factor=2.0)
    gone = add_scale_model(repo, "gone", factor=3.0)
    d = start_daemon(["--model-control-mode", "poll", "--repository-poll-s", "60"],
                     repo=repo, model="keep")
    with http_session() as s:
        assert infer(s, d, "gone", 1)[:2] == (200, 3.0)
        shutil.rmtree(gone)
        d.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and infer(s, d, "gone", 1)[0] == 200:
            time.sleep(0.05)
        status, _, text = infer(s, d, "gone", 1)
        assert status == 404 and "no model named 'gone'" in text
        assert infer(s, d, "keep", 1)[:2] == (200, 2.0)
    assert [r["name"] for r in index(d)] == ["keep"]


# --------------------------------------------------------------------------
# Explicit mode and the admin token

def control(daemon, verb, model, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return daemon.post(f"/v2/repository/models/{model}/{verb}", headers=headers, json=body,
                       timeout=60)


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_control_is_refused_unless_explicit(start_daemon, tmp_path, mode):
    repo = tmp_path / "repo"
    add_scale_model(repo, "m", factor=2.0)
    d = start_daemon(["--model-control-mode", mode], repo=repo, model="m")
    for verb in ("load", "unload"):
        r = control(d, verb, "m")
        assert r.status_code == 403, r.text
        assert "--model-control-mode explicit" in r.json()["error"]
    assert d.get("/v2/models/m/ready").status_code == 200


def test_admin_token(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    add_scale_model(repo, "m", factor=2.0)
    token_file = tmp_path / "admin-token"
    token = "s3cret-admin-token-0123456789"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    d = start_daemon(["--model-control-mode", "explicit", "--admin-token-file", str(token_file),
                      "--log-format", "json"], repo=repo, model="m")
    for bad in (None, "wrong", token + "x", token[:-1]):
        r = control(d, "unload", "m", token=bad)
        assert r.status_code == 403, r.text
        assert "admin token" in r.json()["error"]
        assert token not in r.text
    r = d.post("/v2/repository/models/m/unload", headers={"Authorization": token}, timeout=60)
    assert r.status_code == 403  # not a Bearer token
    assert d.get("/v2/models/m/ready").status_code == 200
    r = control(d, "unload", "m", token=token)
    assert r.status_code == 200 and r.json() == {"name": "m", "unloaded": True, "versions": []}
    assert d.get("/v2/models/m/ready").status_code == 404
    r = control(d, "load", "m", token=token)
    assert r.status_code == 200 and r.json()["versions"] == ["1"], r.text
    assert d.get("/v2/models/m/ready").status_code == 200
    time.sleep(0.2)  # the logger runs a few ms behind
    assert token not in d.log_text()


def test_without_token_file_only_loopback_may_control(start_daemon, tmp_path):
    """Explicit mode, no token file: loopback may; another address may not."""
    repo = tmp_path / "repo"
    add_scale_model(repo, "m", factor=2.0)
    d = start_daemon(["--model-control-mode", "explicit", "--host", "0.0.0.0"], repo=repo,
                     model="m")
    assert control(d, "load", "m").status_code == 200
    # this machine's own non-loopback address, if it has one (a request to
    # ourselves: the peer address is then not 127.0.0.1)
    a = own_outside_address()
    if a is None:
        pytest.skip("this machine has no non-loopback IPv4 address to send from")
    with http_session() as s:
        r = s.post(f"http://{a}:{d.port}/v2/repository/models/m/unload", timeout=30)
    assert r.status_code == 403, r.text
    assert "loopback" in r.json()["error"]
    assert d.get("/v2/models/m/ready").status_code == 200


def own_outside_address():
    """This machine's own non-loopback IPv4 address, or None. A connected UDP
    socket names the address the kernel would send from (nothing is sent);
    the host name is tried too (a chroot may not resolve it)."""
    import socket
    found = set()
    for target in ("10.255.255.255", "192.0.2.1"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.connect((target, 9))
                found.add(u.getsockname()[0])
        except OSError:
            pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(info[4][0])
    except OSError:
        pass
    outside = sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")
    return outside[0] if outside else None


def test_explicit_load_and_unload_under_load(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    staging = tmp_path / "staging"
    staging.mkdir()
    folder = add_scale_model(repo, "swap", factor=2.0)
    d = start_daemon(["--model-control-mode", "explicit", "--log-format", "json"], repo=repo,
                     model="swap")
    with Load(d, "swap", clients=8) as load:
        load.wait_factor(2.0, 10)
        for i in range(6):
            factor = 3.0 if i % 2 == 0 else 2.0
            replace_model(folder, factor, staging)
            r = control(d, "load", "swap")
            assert r.status_code == 200, r.text
            load.wait_factor(factor, 5)
        # a config override: a smaller batch, seen in the metadata
        override = {**SCALE_CONFIG, "max_batch_size": ROWS}
        r = control(d, "load", "swap", body={"parameters": {"config": json.dumps(override)}})
        assert r.status_code == 200, r.text
        assert d.get("/v2/models/swap").json()["max_batch_size"] == ROWS
        time.sleep(0.3)
        before_unload = time.monotonic()
        r = control(d, "unload", "swap")
        assert r.status_code == 200, r.text
        after_unload = time.monotonic()
        time.sleep(0.3)
        results = load.stop()
    bad = [(t, s, text) for t, s, _, text in results
           if s != 200 and not (s == 404 and t > before_unload)]
    assert not bad, f"failed requests: {bad[:3]}"
    late_ok = [t for t, s, _, _ in results if s == 200 and t > after_unload + 0.05]
    assert not late_ok, "answers from an unloaded model"
    gone = [text for t, s, _, text in results if s == 404]
    assert gone and all("not loaded" in text for text in gone)
    assert control(d, "load", "swap").status_code == 200
    with http_session() as s:
        assert infer(s, d, "swap", 1)[0] == 200


def test_failing_load_keeps_the_old_version(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    folder = add_scale_model(repo, "swap", factor=2.0)
    d = start_daemon(["--model-control-mode", "explicit", "--log-format", "json"], repo=repo,
                     model="swap")
    with Load(d, "swap", clients=4) as load:
        load.wait_factor(2.0, 10)
        (folder / "model.pt.new").write_bytes(b"this is not a TorchScript file")
        os.replace(folder / "model.pt.new", folder / "model.pt")
        r = control(d, "load", "swap")
        assert r.status_code == 400, r.text
        assert "version 1" in r.json()["error"]
        time.sleep(0.3)
        # a config that does not parse: refused too, old still serving
        r = control(d, "load", "swap", body={"config": "{not json"})
        assert r.status_code == 400 and "JSON" in r.json()["error"], r.text
        time.sleep(0.3)
        results = load.stop()
    assert {r[1] for r in results} == {200}, {r[3] for r in results}
    assert {r[2] for r in results} == {2.0}
    rows = [r for r in index(d) if r["name"] == "swap"]
    assert rows[0]["state"] == "READY"
    assert "last load failed" in rows[0]["reason"]
    assert metric(scrape(d), "inferd_model_load_failures_total", model="swap") == 2
    failed = wait_log_records(d, None, lambda rs: any(
        "load failed" in r.get("msg", "") for r in rs))
    assert any("load failed" in r.get("msg", "") for r in failed)
    assert d.get("/v2/health/ready").status_code == 200


def test_unknown_model_load_is_404(start_daemon, tmp_path):
    repo = tmp_path / "repo"
    add_scale_model(repo, "m", factor=2.0)
    d = start_daemon(["--model-control-mode", "explicit"], repo=repo, model="m")
    r = control(d, "load", "nosuch")
    assert r.status_code == 404, r.text
    r = control(d, "unload", "nosuch")
    assert r.status_code == 404, r.text
    r = d.post("/v2/repository/models/m/load", data="[1,2]",
               headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
