"""Deploy test: docker-compose.yml (CPU switch) + nginx.conf on a real engine.

Run by tests/deploy/run.sh, which starts an engine if none is reachable and
builds the images (inferd:cpu, inferd-nginx:1.30). The tests share one
Compose project and run in file order: up with 3 replicas, predictions,
request ids and errors, scale to 5 under load, kill one under load, scale to 2
under load, all the way down. Traffic goes to nginx on 127.0.0.1 only.
"""
import collections
import json
import os
import socket
import subprocess
import time

import numpy as np
import pytest
import requests
import yaml

from deploy_support import (BASE_URL, COMPOSE, CPU_FILES, PROJECT, ROOT, Load, compose,
                            compose_env, docker,
                            first_healthy_time, log, reference_outputs,
                            replicas, run, samples, summarize, wait_for)

COMPOSE_TIMEOUT = 180


def post_predict(body, headers=None, timeout=30):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return requests.post(f"{BASE_URL}/predict", data=json.dumps(body), headers=h, timeout=timeout)


def serving_ips():
    return {r["ip"] for r in replicas() if r["status"] == "running"}


@pytest.fixture(scope="module")
def stack():
    """The Compose project with 3 CPU replicas behind nginx; always removed."""
    compose("down", "--remove-orphans", "--timeout", "5", check=False)
    t0 = time.time()
    try:
        compose("up", "-d", "--no-build", "--scale", "inference=3", timeout=COMPOSE_TIMEOUT)
        log(f"compose up --scale inference=3: {time.time() - t0:.1f} s")
        wait_for(lambda: _nginx_ok(), 60, what="nginx /nginx-health")
        wait_for(lambda: len(serving_ips()) == 3 and all(
            r["health"] == "healthy" for r in replicas()), 90, what="3 healthy replicas")
        log(f"3 replicas healthy and nginx up: {time.time() - t0:.1f} s")
        yield
    finally:
        p = compose("down", "--remove-orphans", "--timeout", "10", check=False,
                    timeout=COMPOSE_TIMEOUT)
        if p.returncode != 0:
            log(f"compose down failed: {p.stderr}")


def _nginx_ok():
    try:
        return requests.get(f"{BASE_URL}/nginx-health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


# ---------------------------------------------------------------- static

def test_compose_files_static():
    """The files as written: no version key, the GPU reservation on the
    default path, none with the CPU switch, nginx the only published port."""
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "version" not in base
    inf = base["services"]["inference"]
    assert "container_name" not in inf and "ports" not in inf
    assert base["services"]["nginx"]["depends_on"]["inference"]["condition"] == "service_healthy"
    assert inf["restart"] == "unless-stopped" and inf["read_only"] is True

    def config(files):
        # COMPOSE_FILE empty: Compose's default files
        p = run([*COMPOSE, "config"], env={"COMPOSE_FILE": files or "", "INFERD_IMAGE": ""})
        return yaml.safe_load(p.stdout)

    gpu = config(None)  # default: docker-compose.yml + docker-compose.override.yml
    dev = gpu["services"]["inference"]["deploy"]["resources"]["reservations"]["devices"]
    assert dev == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert gpu["services"]["inference"]["image"] == "inferd:gpu"

    cpu = config(CPU_FILES)
    inf = cpu["services"]["inference"]
    assert "devices" not in json.dumps(inf.get("deploy", {}))
    assert inf["environment"]["INFERD_DEVICES"] == "cpu"
    assert inf["build"]["args"]["VARIANT"] == "cpu"
    # stop grace beyond the drain timeout, so that SIGKILL never cuts a drain
    assert int(inf["environment"]["INFERD_DRAIN_TIMEOUT_S"]) < 15
    assert inf["stop_grace_period"] == "15s"
    for name, svc in cpu["services"].items():
        if name != "nginx":
            assert not svc.get("ports"), name
    assert cpu["services"]["nginx"]["ports"][0].startswith("127.0.0.1:")


def test_images():
    """The CPU image: non-root, healthcheck, /models, no compiler."""
    img = json.loads(docker("image", "inspect", compose_image())
                     .stdout)[0]["Config"]
    assert img["User"] not in ("", "root", "0", "0:0")
    assert img["Healthcheck"]["Test"] == ["CMD", "inferd-probe"]
    assert img["Entrypoint"] == ["inferd"]
    assert "8080/tcp" in img["ExposedPorts"]
    assert img["StopSignal"] == "SIGTERM"
    assert "INFERD_MODEL_REPOSITORY=/models" in img["Env"]
    p = docker("run", "--rm", "--entrypoint", "sh", compose_image(), "-c",
               "id -u; ls /models/fashion_mnist; command -v cc gcc g++ c++ || true")
    uid, *rest = p.stdout.split()
    assert uid != "0"
    assert {"config.json", "model.pt", "labels.txt"} <= set(rest)
    assert not [x for x in rest if x.startswith("/")], f"compiler in the image: {rest}"


def compose_image():
    return os.environ.get("INFERD_IMAGE", "inferd:cpu")


# ------------------------------------------------------------ one host, 3

def test_predictions_match_reference(stack):
    for body, label in samples():
        r = post_predict(body)
        assert r.status_code == 200, r.text
        got = r.json()
        ref = reference_outputs(body["inputs"])
        out = np.asarray(got["outputs"], dtype=np.float64)
        assert out.shape == ref.shape == tuple(got["shape"])
        diff = float(np.max(np.abs(out - ref)))
        assert diff <= 1e-4, f"max abs diff {diff}"
        assert got["labels"] == [label]
    # a batch of every sample in one request
    batch = [b["inputs"][0] for b, _ in samples()]  # each sample is [1,1,28,28]
    r = post_predict({"inputs": batch})
    assert r.status_code == 200, r.text
    ref = reference_outputs(batch)
    assert float(np.max(np.abs(np.asarray(r.json()["outputs"]) - ref))) <= 1e-4
    assert r.json()["labels"] == [label for _, label in samples()]


def test_request_id_passes_through(stack):
    body = samples()[0][0]
    r = post_predict(body, headers={"X-Request-ID": "deploy-test-42"})
    assert r.status_code == 200
    assert r.headers["X-Request-ID"] == "deploy-test-42"
    r = post_predict(body)
    rid = r.headers.get("X-Request-ID", "")
    assert len(rid) == 32, rid  # nginx's $request_id when the client sent none
    # and the replica saw the same id (its access log names it)
    time.sleep(0.5)
    logs = compose("logs", "--no-color", "inference").stdout
    assert rid in logs and "deploy-test-42" in logs


def test_nginx_errors_are_json(stack):
    r = requests.get(f"{BASE_URL}/nginx-health", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    # 413 from nginx itself: Content-Length over client_max_body_size (16m),
    # refused before the body is read.
    with socket.create_connection(("127.0.0.1", int(BASE_URL.rsplit(":", 1)[1])), 5) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 17000000\r\nX-Request-ID: big-1\r\nConnection: close\r\n\r\n")
        data = b""
        # nginx answers at once, then lingers reading the body: read one answer
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
                data.lower().split(b"content-length:")[1].split(b"\r\n")[0]):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"X-Request-ID: big-1" in head
    assert "error" in json.loads(body)
    # a replica's own error passes through as its JSON
    r = requests.get(f"{BASE_URL}/no/such/path", timeout=5)
    assert r.status_code == 404 and "error" in r.json()


def test_requests_reach_all_three_replicas(stack):
    ips = serving_ips()
    assert len(ips) == 3
    seen = collections.Counter()
    with Load(threads=6, max_s=5) as load:
        time.sleep(4)
    res = load.results
    seen.update(r[3] for r in res if r[4])
    log(f"3 replicas, 4 s of load: {len(res)} requests, per replica {dict(seen)}")
    assert all(r[4] for r in res), [r for r in res if not r[4]][:3]
    assert set(seen) == ips


# ------------------------------------------------------ scaling under load

def test_scale_up_to_5_under_load(stack):
    """New replicas get traffic within 15 s of reporting healthy, nginx
    untouched; then every replica gets at least half its fair share."""
    nginx_before = [r["id"] for r in replicas(service="nginx")]
    old = serving_ips()
    with Load(threads=8, max_s=120) as load:
        time.sleep(2)
        t_scale = time.time()
        proc = subprocess.Popen(
            [*COMPOSE, "up", "-d", "--no-deps", "--no-recreate", "--no-build",
             "--scale", "inference=5", "inference"],
            cwd=ROOT, env={**os.environ, **compose_env()}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        healthy_at = {}
        first_seen = {}
        deadline = t_scale + 90
        while time.time() < deadline:
            reps = [r for r in replicas() if r["ip"] and r["ip"] not in old]
            for r in reps:
                t = first_healthy_time(r)
                if t and r["ip"] not in healthy_at:
                    healthy_at[r["ip"]] = t
            for t0, t1, status, up, ok, err in load.snapshot():
                if ok and up and up not in old and up not in first_seen:
                    first_seen[up] = t1
            if len(healthy_at) == 2 and len(first_seen) >= 2 and \
                    all(ip in first_seen for ip in healthy_at):
                break
            time.sleep(0.5)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        # the fair-share window: 10 s with all 5 serving
        t_win = time.time()
        time.sleep(10)
        window = [r for r in load.snapshot() if r[0] >= t_win and r[1] <= t_win + 10]
    res = load.results
    all_ips = serving_ips()
    assert len(all_ips) == 5, all_ips
    assert [r["id"] for r in replicas(service="nginx")] == nginx_before, "nginx was recreated"
    for ip in all_ips - old:
        assert ip in healthy_at, f"{ip} never reported healthy"
        assert ip in first_seen, f"{ip} got no traffic"
        lag = first_seen[ip] - healthy_at[ip]
        log(f"new replica {ip}: healthy {healthy_at[ip] - t_scale:.1f} s after scale, "
            f"first response {first_seen[ip] - t_scale:.1f} s after (lag {lag:+.1f} s)")
        assert lag <= 15, f"{ip}: traffic {lag:.1f} s after healthy"
    counts = collections.Counter(r[3] for r in window if r[4])
    total = sum(counts.values())
    log(f"10 s window over 5 replicas: {total} requests, per replica {dict(counts)}")
    for ip in all_ips:
        assert counts[ip] >= 0.5 * total / 5, f"{ip}: {counts[ip]} of {total}"
    rs, failed = summarize(res)
    log(f"scale-up load: {len(rs)} requests, {len(failed)} failed")
    assert not failed, failed[:3]


def test_kill_one_replica_under_load(stack):
    """SIGKILL one of 5 under load: <= 1 % failures, none after 15 s."""
    victim = sorted(replicas(), key=lambda r: r["name"])[0]
    with Load(threads=8, max_s=60) as load:
        time.sleep(4)
        t_kill = time.time()
        docker("kill", victim["id"])
        log(f"killed {victim['name']} ({victim['ip']})")
        time.sleep(22)
    res = load.results
    state = json.loads(docker("inspect", victim["id"], check=False).stdout or "[{}]")[0]
    log(f"{victim['name']} after the kill: {state.get('State', {}).get('Status')}, "
        f"restarts {state.get('RestartCount')}")
    rs, failed = summarize(res, since=t_kill - 1)
    late = [r for r in failed if r[0] >= t_kill + 15]
    log(f"kill: {len(rs)} requests from the kill on, {len(failed)} failed "
        f"({100.0 * len(failed) / max(1, len(rs)):.2f} %), {len(late)} after 15 s; "
        f"worst latency {max(r[1] - r[0] for r in rs):.2f} s")
    for r in failed[:5]:
        log(f"  failed at kill{r[0] - t_kill:+.2f} s: status {r[2]}, replica {r[3]}: {r[5]}")
    assert len(rs) > 100
    assert len(failed) <= 0.01 * len(rs), failed[:5]
    assert not late, late[:5]


def test_scale_down_to_2_under_load(stack):
    """Scale 5 -> 2 under load: the removed replicas drain, nothing fails."""
    with Load(threads=8, max_s=90) as load:
        time.sleep(3)
        t0 = time.time()
        compose("up", "-d", "--no-deps", "--no-recreate", "--no-build",
                "--scale", "inference=2", "inference", timeout=120)
        log(f"compose --scale inference=2 took {time.time() - t0:.1f} s")
        time.sleep(8)
    res = load.results
    rs, failed = summarize(res)
    log(f"scale-down: {len(rs)} requests, {len(failed)} failed; worst latency "
        f"{max(r[1] - r[0] for r in rs):.2f} s")
    for r in failed[:5]:
        log(f"  failed at scale{r[0] - t0:+.2f} s: status {r[2]}, replica {r[3]}: {r[5]}")
    if failed:  # what nginx saw, and where each replica stood
        errors = compose("logs", "--no-color", "--tail", "60", "nginx", check=False).stdout
        log("nginx error lines:\n" + "\n".join(
            line for line in errors.splitlines() if "[error]" in line or "[warn]" in line))
        log(docker("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
                   "--format", "{{.Names}} {{.Status}}").stdout)
    assert len(serving_ips()) == 2
    assert not failed, failed[:5]


def test_no_replica_json_error(stack):
    """With every replica stopped, nginx answers its own JSON error."""
    compose("stop", "--timeout", "10", "inference", timeout=120)
    time.sleep(6)  # past the resolver's valid=5s
    r = post_predict(samples()[0][0], headers={"X-Request-ID": "none-left"}, timeout=30)
    assert r.status_code in (502, 503, 504), r.status_code
    assert r.headers["X-Request-ID"] == "none-left"
    assert "error" in r.json()
    compose("start", "inference", timeout=120)


def test_down_leaves_nothing(stack):
    compose("down", "--remove-orphans", "--timeout", "10", timeout=COMPOSE_TIMEOUT)
    label = f"label=com.docker.compose.project={PROJECT}"
    assert docker("ps", "-aq", "--filter", label).stdout.split() == []
    assert docker("network", "ls", "-q", "--filter", label).stdout.split() == []
    assert docker("volume", "ls", "-q", "--filter", label).stdout.split() == []

