"""Deploy test: docker-compose.yml (CPU switch, monitoring profile) and the
inferd-nginx image on a real engine.

Run by tests/deploy/run.sh, which starts an engine if none is reachable and
builds the images (inferd:cpu, inferd-nginx:1.30, inferd-prometheus:2). The
tests share one Compose project and run in file order: up with 3 replicas
and Prometheus, predictions over HTTPS (HTTP/1.1 and HTTP/2) with an API
key, the redirect from port 80, 401s, CORS, the public surface, gRPC
through nginx's gRPC port (outputs, request ids, keys, its public surface),
body limits, request ids and errors, Prometheus targets, scale to 5 under
load (targets and dashboard panels follow), kill one under load, scale to 2
under load (each with gRPC load beside the HTTPS load: no gRPC call fails),
every dashboard query, then nginx recreated with its defaults (plain HTTP,
no X-Upstream, a low rate limit: 429), all the way down. Traffic goes to
nginx and Prometheus on 127.0.0.1 only.
"""
import collections
import json
import os
import pathlib
import re
import socket
import ssl
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np
import pytest
import requests
import yaml

from deploy_support import (BASE_URL, COMPOSE, CORS_ORIGIN, CPU_FILES, GRPC_PORT, HTTP_URL,
                            HTTPS_PORT, MODELS_VOLUME, POLL_S, PROJECT, PROMETHEUS_PORT, ROOT,
                            GrpcLoad, Load, auth, compose, compose_env, docker,
                            first_healthy_time, grpc_auth, grpc_channel, grpc_infer_request,
                            grpc_logits, https_session, initial_md, label_index, log,
                            last_upstream, pb, prom_query, prom_targets, reference_outputs,
                            remove_secrets,
                            replicas, run, samples, secrets, site_conf, summarize, wait_for)

COMPOSE_TIMEOUT = 180


def post_predict(body, headers=None, timeout=30):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return https_session().post(f"{BASE_URL}/predict", data=json.dumps(body), headers=h,
                                timeout=timeout)


def public_get(path, headers=None, **kw):
    """GET through nginx over HTTPS, trusting the test CA, without a key
    unless headers bring one."""
    s = requests.Session()
    s.trust_env = False
    return s.get(f"{BASE_URL}{path}", headers=headers or {}, verify=secrets()["ca"],
                 timeout=kw.pop("timeout", 10), **kw)


def curl(*args, timeout=60):
    """curl against the stack (loopback only); returns CompletedProcess."""
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True,
                          text=True, timeout=timeout)


DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "inferd.json"


def dashboard_queries(per_replica=None, gpu=None):
    """[(panel title, PromQL)] of the dashboard, filtered by the panel's
    markers in its description ("[per-replica]", "[gpu]")."""
    out = []
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        d = p.get("description", "")
        if per_replica is not None and ("per-replica" in d) != per_replica:
            continue
        if gpu is not None and ("gpu]" in d or "gpu," in d) != gpu:
            continue
        out += [(p["title"], t["expr"]) for t in p["targets"]]
    return out


def serving_ips():
    return {r["ip"] for r in replicas() if r["status"] == "running"}


@pytest.fixture(scope="module")
def stack():
    """The Compose project with 3 CPU replicas behind nginx, and Prometheus
    with the nginx exporter (profile monitoring); always removed."""
    compose("down", "--remove-orphans", "--volumes", "--timeout", "5", check=False)
    t0 = time.time()
    try:
        # docs/operations.md: one container fills the new models volume
        # before several are created at once (Docker's copy of the image's
        # /models into an empty volume races: "mkdir ...: file exists").
        compose("run", "--rm", "--no-deps", "--entrypoint", "true", "inference",
                timeout=COMPOSE_TIMEOUT)
        log(f"models volume filled: {time.time() - t0:.1f} s")
        compose("up", "-d", "--no-build", "--scale", "inference=3", timeout=COMPOSE_TIMEOUT)
        log(f"compose up --scale inference=3: {time.time() - t0:.1f} s")
        wait_for(lambda: _nginx_ok(), 60, what="nginx /nginx-health")
        wait_for(lambda: len(serving_ips()) == 3 and all(
            r["health"] == "healthy" for r in replicas()), 90, what="3 healthy replicas")
        log(f"3 replicas healthy and nginx up: {time.time() - t0:.1f} s")
        yield
    finally:
        p = compose("down", "--remove-orphans", "--volumes", "--timeout", "10", check=False,
                    timeout=COMPOSE_TIMEOUT)
        if p.returncode != 0:
            log(f"compose down failed: {p.stderr}")
        remove_secrets()


def _nginx_ok():
    try:
        return public_get("/nginx-health", timeout=2).status_code == 200
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
    # published: nginx (443 and 80) and, profile monitoring, Prometheus;
    # all on loopback unless NGINX_BIND / PROMETHEUS_BIND say otherwise
    for name, svc in cpu["services"].items():
        if name not in ("nginx", "prometheus", "grafana"):
            assert not svc.get("ports"), name
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert sorted(str(p).split(":", 1)[1].removesuffix("/tcp")
                  for p in cpu["services"]["nginx"]["ports"]) == \
        ["443:8443", "8001:8444", "80:8080"]
    # the replicas serve gRPC to nginx on the internal network
    assert inf["environment"]["INFERD_GRPC_PORT"] == "8001"
    assert sorted(str(x) for x in inf["expose"]) == ["8001", "8080"]
    for name in ("prometheus", "nginx-exporter"):
        assert base["services"][name]["profiles"] == ["monitoring"]
    assert base["services"]["grafana"]["profiles"] == ["grafana"]
    # the production defaults: TLS, a redirect, no X-Upstream, keys on; the
    # top-level nginx.conf and the files it includes, mounted as they are
    mounts = {v["target"]: v["source"] for v in cpu["services"]["nginx"]["volumes"]
              if isinstance(v, dict) and v["target"] != "/etc/nginx/tls"}
    nginx_dir = ROOT / "deploy" / "nginx"
    assert mounts == {"/etc/nginx/nginx.conf": str(ROOT / "nginx.conf"),
                      **{f"/etc/nginx/inferd/{name}": str(nginx_dir / src) for name, src in (
                          ("inferd-api.conf", "inferd-api.conf"),
                          ("inferd-proxy.conf", "inferd-proxy.conf"),
                          ("headers.conf", "headers.conf"),
                          ("inferd-grpc.conf", "inferd-grpc.conf"),
                          ("tls.conf", "tls.conf"),
                          ("servers.conf", "servers-tls-on.conf"),
                          ("grpc-server.conf", "grpc-tls-on.conf"),
                          ("port80.conf", "port80-redirect.conf"),
                          ("x-upstream.conf", "x-upstream-0.conf"),
                          ("site.conf", "site.conf"))}}, mounts
    # every include of the configuration is one of those files
    conf = "".join(pathlib.Path(f).read_text() for f in mounts.values())
    conf += "".join(f.read_text() for f in nginx_dir.glob("*.conf"))
    included = set(re.findall(r"^\s*include (/etc/nginx/inferd/\S+);", conf, re.M))
    assert included <= set(mounts), included - set(mounts)
    assert inf["environment"]["INFERD_API_KEY_FILE"] == "/run/secrets/inferd/api-keys"
    # nginx and inferd take the largest documented request (64 3x224x224
    # FP32 images as a binary tensor, 38,535,168 bytes plus a header)
    assert int(inf["environment"]["INFERD_MAX_BODY_BYTES"]) == 40 * 1024 * 1024
    api = (ROOT / "deploy" / "nginx" / "inferd-api.conf").read_text()
    assert "client_max_body_size 40m;" in api
    # memory and process bounds on both (docker-compose 1.29 honours these)
    ngx = cpu["services"]["nginx"]
    for name, svc in (("inference", inf), ("nginx", ngx)):
        assert svc.get("mem_limit") and int(svc.get("pids_limit", 0)) > 0, name
    # /tmp holds every large body nginx may buffer at once: site.conf's
    # big_bodies x 40 MiB (client_max_body_size), plus room for the rest
    site = (nginx_dir / "site.conf").read_text()
    big = int(re.search(r"^limit_conn big_bodies (\d+);$", site, re.M).group(1))
    (tmp,) = [t for t in ngx["tmpfs"] if t.startswith("/tmp:")]
    size = re.search(r"size=(\d+)m", tmp)
    assert size and int(size.group(1)) >= big * 40 + 16, (tmp, big)
    assert re.search(r"^limit_conn conn_per_client 64;$", site, re.M)
    assert re.search(r"^limit_req zone=per_client burst=100 nodelay;$", site, re.M)
    # no model control over HTTP: explicit mode would trust any loopback
    # client without an admin token file (docs/operations.md, "Who may change the repository")
    assert inf["environment"]["INFERD_MODEL_CONTROL_MODE"] in ("none", "poll")


def test_images():
    """The CPU image: non-root, healthcheck, /models, no compiler."""
    img = json.loads(docker("image", "inspect", compose_image())
                     .stdout)[0]["Config"]
    assert img["User"] not in ("", "root", "0", "0:0")
    assert img["Healthcheck"]["Test"] == ["CMD", "inferd-probe"]
    assert img["Entrypoint"] == ["inferd"]
    assert "8080/tcp" in img["ExposedPorts"] and "8001/tcp" in img["ExposedPorts"]
    assert img["StopSignal"] == "SIGTERM"
    assert "INFERD_MODEL_REPOSITORY=/models" in img["Env"]
    p = docker("run", "--rm", "--entrypoint", "sh", compose_image(), "-c",
               "id -u; ls /models/fashion_mnist; command -v cc gcc g++ c++ || true")
    uid, *rest = p.stdout.split()
    assert uid != "0"
    assert {"config.json", "model.pt", "labels.txt"} <= set(rest)
    assert not [x for x in rest if x.startswith("/")], f"compiler in the image: {rest}"
    # the gRPC libraries are in the image and the daemon links them
    p = docker("run", "--rm", "--entrypoint", "sh", compose_image(), "-c",
               "ldd /usr/local/bin/inferd")
    assert "not found" not in p.stdout, p.stdout
    for lib in ("libgrpc.so", "libprotobuf-c.so"):
        assert lib in p.stdout, (lib, p.stdout)


def compose_image():
    return os.environ.get("INFERD_IMAGE", "inferd:cpu")


def _nginx_mounts(site=None, tls="on"):
    """docker run arguments mounting the configuration as Compose does."""
    d = ROOT / "deploy" / "nginx"
    files = {"/etc/nginx/nginx.conf": ROOT / "nginx.conf",
             "/etc/nginx/inferd/servers.conf": d / f"servers-tls-{tls}.conf",
             "/etc/nginx/inferd/grpc-server.conf": d / f"grpc-tls-{tls}.conf",
             "/etc/nginx/inferd/port80.conf": d / "port80-redirect.conf",
             "/etc/nginx/inferd/x-upstream.conf": d / "x-upstream-0.conf",
             "/etc/nginx/inferd/site.conf": site or d / "site.conf"}
    for name in ("inferd-api.conf", "inferd-proxy.conf", "headers.conf", "inferd-grpc.conf",
                 "tls.conf"):
        files[f"/etc/nginx/inferd/{name}"] = d / name
    return [a for target, src in files.items() for a in ("-v", f"{src}:{target}:ro")]


def test_nginx_and_prometheus_images():
    """Both run unprivileged; the nginx image refuses a missing or bad
    configuration clearly."""
    nginx = os.environ.get("NGINX_IMAGE", "inferd-nginx:1.30")
    prom = os.environ.get("PROMETHEUS_IMAGE", "inferd-prometheus:2")
    for image in (nginx, prom):
        cfg = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
        assert cfg["User"] not in ("", "root", "0", "0:0"), image
    p = docker("run", "--rm", nginx, check=False)  # no configuration mounted
    assert p.returncode != 0 and "mount inferd's nginx configuration" in p.stderr, p.stderr
    bad = pathlib.Path(secrets()["base"]) / "site-bad-rate.conf"
    bad.write_text((ROOT / "deploy" / "nginx" / "site.conf").read_text()
                   .replace("rate=50r/s", "rate=fast"))
    bad.chmod(0o644)
    p = docker("run", "--rm", *_nginx_mounts(site=bad, tls="off"), nginx, check=False)
    assert p.returncode != 0 and "rate=fast" in p.stderr and "site.conf" in p.stderr, p.stderr
    p = docker("run", "--rm", *_nginx_mounts(), nginx, check=False)  # TLS on, no certificate
    assert p.returncode != 0 and "/etc/nginx/tls/server.crt" in p.stderr, p.stderr
    # and with the default files and no TLS, the configuration passes nginx -t
    p = docker("run", "--rm", "--entrypoint", "nginx", *_nginx_mounts(tls="off"), nginx,
               "-t", "-e", "stderr", check=False)
    assert p.returncode == 0, p.stderr
    p = docker("run", "--rm", "--entrypoint", "sh", prom, "-c",
               "promtool check config /etc/prometheus/inferd/prometheus.yml && "
               "prometheus-nginx-exporter --version")
    assert "SUCCESS" in p.stdout + p.stderr


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
        # the CPU image's default model is the .pt2 package (Dockerfile)
        assert got["model"] == "fashion_mnist_pt2", got["model"]
    # a batch of every sample in one request
    batch = [b["inputs"][0] for b, _ in samples()]  # each sample is [1,1,28,28]
    r = post_predict({"inputs": batch})
    assert r.status_code == 200, r.text
    ref = reference_outputs(batch)
    assert float(np.max(np.abs(np.asarray(r.json()["outputs"]) - ref))) <= 1e-4
    assert r.json()["labels"] == [label for _, label in samples()]


def test_http2_and_tls_settings(stack):
    """HTTP/2 with the dev CA; TLS 1.2+ only; HSTS; no version in Server."""
    body = json.dumps(samples()[0][0])
    with tempfile.TemporaryDirectory() as tmp:
        p = curl("--http2", "--cacert", secrets()["ca"], "-H",
                 f"Authorization: Bearer {secrets()['key']}", "-H",
                 "Content-Type: application/json", "--data", body, "-D", f"{tmp}/head",
                 "-o", f"{tmp}/body", "-w", "%{http_version}",
                 f"https://localhost:{HTTPS_PORT}/predict")
        assert p.returncode == 0, p.stderr
        assert p.stdout == "2", p.stdout
        head = pathlib.Path(f"{tmp}/head").read_text()
        got = json.loads(pathlib.Path(f"{tmp}/body").read_text())
    assert head.startswith("HTTP/2 200"), head
    assert got["labels"] == [samples()[0][1]]
    lower = head.lower()
    assert "strict-transport-security: max-age=" in lower
    assert "\nserver: nginx\n" in lower  # server_tokens off: no version
    assert "x-upstream" in lower  # the test stack's debug switch is on
    # TLS 1.1 and older are refused
    p = curl("--cacert", secrets()["ca"], "--tlsv1.1", "--tls-max", "1.1",
             f"https://localhost:{HTTPS_PORT}/v2/health/ready")
    assert p.returncode != 0, p.stdout
    # HTTP/1.1 and TLS 1.3 work (requests, in the other tests, is HTTP/1.1)
    p = curl("--http1.1", "--tlsv1.3", "--cacert", secrets()["ca"], "-o", "/dev/null",
             "-w", "%{http_version} %{http_code}", f"https://localhost:{HTTPS_PORT}/v2/health/ready")
    assert p.stdout == "1.1 200", p.stdout + p.stderr


def test_port_80_redirects(stack):
    s = requests.Session()
    s.trust_env = False
    r = s.post(f"{HTTP_URL}/predict?x=1", data=b"{}", allow_redirects=False, timeout=10)
    assert r.status_code == 308
    # the configured address (site.conf's $inferd_https_origin), not the
    # Host the client sent
    want = f"https://localhost:{HTTPS_PORT}/predict?x=1"
    assert r.headers["Location"] == want
    for host in ("evil.example", "evil.example:443", "127.0.0.1"):
        r = s.post(f"{HTTP_URL}/predict?x=1", data=b"{}", allow_redirects=False, timeout=10,
                   headers={"Host": host})
        assert r.status_code == 308 and r.headers["Location"] == want, (host, r.headers)
    # followed, with the key and the body (308 keeps the method). X-API-Key:
    # requests drops Authorization when a redirect changes the port.
    r = s.post(f"{HTTP_URL}/predict", data=json.dumps(samples()[0][0]), timeout=30,
               headers={"Content-Type": "application/json", "X-API-Key": secrets()["key"]},
               verify=secrets()["ca"])
    assert r.status_code == 200 and r.url.startswith("https://"), (r.status_code, r.url)


def test_api_key_needed(stack):
    body = samples()[0][0]
    s = requests.Session()
    s.trust_env = False
    kw = {"verify": secrets()["ca"], "timeout": 30}
    r = s.post(f"{BASE_URL}/predict", json=body, **kw)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "API key" in r.json()["error"]
    r = s.post(f"{BASE_URL}/predict", json=body, headers={"X-API-Key": "0" * 64}, **kw)
    assert r.status_code == 401 and "invalid_token" in r.headers["WWW-Authenticate"]
    r = s.post(f"{BASE_URL}/predict", json=body, headers={"X-API-Key": secrets()["key"]}, **kw)
    assert r.status_code == 200 and r.json()["labels"] == [samples()[0][1]]
    r = s.get(f"{BASE_URL}/v2/models/fashion_mnist", **kw)
    assert r.status_code == 401
    assert s.get(f"{BASE_URL}/v2/models/fashion_mnist", headers=auth(), **kw).status_code == 200
    # health stays open
    for path in ("/v2/health/ready", "/v2/health/live"):
        assert s.get(f"{BASE_URL}{path}", **kw).status_code == 200, path
    # no key in any replica's log
    time.sleep(0.5)
    assert secrets()["key"] not in compose("logs", "--no-color", "inference").stdout


def test_cors_preflight(stack):
    s = requests.Session()
    s.trust_env = False
    r = s.options(f"{BASE_URL}/v2/models/fashion_mnist/infer", verify=secrets()["ca"], timeout=10,
                  headers={"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST",
                           "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    for h in ("Authorization", "Content-Type", "Inference-Header-Content-Length"):
        assert h in r.headers["Access-Control-Allow-Headers"]
    r = s.options(f"{BASE_URL}/predict", verify=secrets()["ca"], timeout=10,
                  headers={"Origin": "https://elsewhere.example",
                           "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers
    r = post_predict(samples()[0][0], headers={"Origin": CORS_ORIGIN})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN


def test_public_surface(stack):
    """Only inference, metadata and health reach the replicas: /metrics,
    repository control and statistics answer nginx's 404, even with a key."""
    for method, path in [("GET", "/metrics"), ("GET", "/v2/repository/index"),
                         ("POST", "/v2/repository/index"),
                         ("POST", "/v2/repository/models/fashion_mnist/load"),
                         ("GET", "/v2/models/fashion_mnist/stats"),
                         # every model's statistics: "stats" must not pass
                         # as a model name
                         ("GET", "/v2/models/stats"), ("GET", "/v2/models/%73tats"),
                         ("GET", "/v2/models/stats/ready"),
                         ("GET", "/v2/models/stats/versions/1"),
                         ("GET", "/nginx_status"), ("GET", "/stub_status"),
                         ("GET", "/v2/health/../../metrics")]:
        r = https_session().request(method, f"{BASE_URL}{path}", timeout=10)
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.json()["error"] == "no public endpoint at this path", (method, path)
        assert "inferd_" not in r.text
    # and through port 80 it is a redirect to the same 404s, never the replica
    s = requests.Session()
    s.trust_env = False
    r = s.get(f"{HTTP_URL}/metrics", allow_redirects=False, timeout=10)
    assert r.status_code == 308
    # what is public
    sess = https_session()
    assert sess.get(f"{BASE_URL}/v2", timeout=10).status_code == 200
    assert sess.get(f"{BASE_URL}/v2/models/fashion_mnist/ready", timeout=10).status_code == 200
    assert sess.get(f"{BASE_URL}/v2/models/fashion_mnist/versions/1", timeout=10).status_code \
        in (200, 404)


# ------------------------------------------------------------------ gRPC

def test_grpc_predictions_match_reference(stack):
    """ModelInfer through nginx's gRPC port (TLS, the key as metadata): the
    logits equal python's torch on the same inputs; the request id (message
    id and x-request-id metadata) comes back; health, metadata and config
    answer."""
    import grpc
    m = pb()
    with grpc_channel(retry=False) as ch:
        s = m.inference_grpc.GRPCInferenceServiceStub(ch)
        model = GrpcLoad.MODEL
        for n, (body, label) in enumerate(samples()):
            resp, call = s.ModelInfer.with_call(
                grpc_infer_request(model, body["inputs"], f"g-{n}"),
                metadata=grpc_auth(f"grpc-ref-{n}"), timeout=30)
            md = initial_md(call)
            assert resp.id == f"g-{n}" and resp.model_name == model
            assert md.get("x-request-id") == f"grpc-ref-{n}", md
            assert md.get("x-upstream"), md  # NGINX_DEBUG_UPSTREAM=1 in the test stack
            out = grpc_logits(resp).astype(np.float64)
            ref = reference_outputs(body["inputs"])
            assert out.shape == ref.shape
            diff = float(np.max(np.abs(out - ref)))
            assert diff <= 1e-4, f"max abs diff {diff}"
            assert int(np.argmax(out[0])) == label_index(label)
        # a batch of every sample in one call
        batch = [b["inputs"][0] for b, _ in samples()]
        resp = s.ModelInfer(grpc_infer_request(model, batch), metadata=grpc_auth(), timeout=30)
        assert float(np.max(np.abs(grpc_logits(resp) - reference_outputs(batch)))) <= 1e-4
        # a stream of two requests, answered in order
        reqs = [grpc_infer_request(model, samples()[k][0]["inputs"], f"st-{k}") for k in (0, 1)]
        got = list(s.ModelStreamInfer(iter(reqs), metadata=grpc_auth(), timeout=30))
        assert [r.infer_response.id for r in got] == ["st-0", "st-1"]
        assert all(not r.error_message for r in got)
        # health (no key), metadata, config
        h = m.health_grpc.HealthStub(ch).Check(m.health.HealthCheckRequest(service=""),
                                              timeout=10)
        assert h.status == m.health.HealthCheckResponse.SERVING
        assert s.ServerLive(m.inference.ServerLiveRequest(), timeout=10).live
        assert s.ServerReady(m.inference.ServerReadyRequest(), timeout=10).ready
        assert s.ModelReady(m.inference.ModelReadyRequest(name=model), metadata=grpc_auth(),
                            timeout=10).ready
        meta = s.ModelMetadata(m.inference.ModelMetadataRequest(name=model),
                               metadata=grpc_auth(), timeout=10)
        assert meta.name == model and meta.inputs[0].name == "input"
        assert s.ServerMetadata(m.inference.ServerMetadataRequest(), metadata=grpc_auth(),
                                timeout=10).name
        cfg = s.ModelConfig(m.inference.ModelConfigRequest(name=model), metadata=grpc_auth(),
                            timeout=10)
        assert cfg.config.name == model and cfg.config.max_batch_size > 0
        # the key is needed, as over HTTPS
        with pytest.raises(grpc.RpcError) as e:
            s.ModelInfer(grpc_infer_request(model, samples()[0][0]["inputs"]), timeout=30)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # a replica's own error passes through with its code
        with pytest.raises(grpc.RpcError) as e:
            s.ModelMetadata(m.inference.ModelMetadataRequest(name="no_such_model"),
                            metadata=grpc_auth(), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # with NGINX_TLS=on the gRPC port speaks TLS only: a plaintext (h2c)
    # client gets no answer
    with grpc.insecure_channel(f"127.0.0.1:{GRPC_PORT}") as plain:
        with pytest.raises(grpc.RpcError) as e:
            m.inference_grpc.GRPCInferenceServiceStub(plain).ServerLive(
                m.inference.ServerLiveRequest(), timeout=5)
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.DEADLINE_EXCEEDED), e.value


def test_grpc_public_surface(stack):
    """As over HTTP: statistics, repository control, shared memory and any
    other method are refused by nginx (UNIMPLEMENTED, with nginx's message,
    so they never reach a replica), even with a key; so are paths that
    would reach a public method only after normalisation."""
    import grpc
    with grpc_channel(retry=False) as ch:
        for path in ["/inference.GRPCInferenceService/ModelStatistics",
                     "/inference.GRPCInferenceService/RepositoryIndex",
                     "/inference.GRPCInferenceService/RepositoryModelLoad",
                     "/inference.GRPCInferenceService/RepositoryModelUnload",
                     "/inference.GRPCInferenceService/SystemSharedMemoryStatus",
                     "/inference.GRPCInferenceService/SystemSharedMemoryRegister",
                     "/inference.GRPCInferenceService/CudaSharedMemoryRegister",
                     "/inference.GRPCInferenceService/TraceSetting",
                     "/inference.GRPCInferenceService/LogSettings",
                     "/grpc.health.v1.Health/Watch",
                     "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                     "/inference.GRPCInferenceService/%4DodelStatistics",
                     "/inference.GRPCInferenceService/ModelInfer/../ModelStatistics",
                     "/inference.GRPCInferenceService/ModelStatistics/../ModelInfer",
                     "/inference.GRPCInferenceService//ModelInfer",
                     "/inference.GRPCInferenceService/ModelInfer?x=1"]:
            call = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as e:
                call(b"", metadata=grpc_auth("surface-1"), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, (path, e.value)
            assert e.value.details() == "no public method at this path", (path, e.value)
            # nginx's answer is trailers-only: its headers are the trailers
            assert dict(e.value.trailing_metadata() or ()).get("x-request-id") == "surface-1", path
        # what is public answers (ModelConfig: perf_analyzer needs it)
        s = pb().inference_grpc.GRPCInferenceServiceStub(ch)
        s.ModelConfig(pb().inference.ModelConfigRequest(name=GrpcLoad.MODEL),
                      metadata=grpc_auth(), timeout=10)


def test_body_limits(stack):
    """The largest documented request passes nginx and reaches a replica
    (which refuses its shape for this model: 400, not 413)."""
    n = 64 * 3 * 224 * 224 * 4
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                     "shape": [64, 3, 224, 224],
                                     "parameters": {"binary_data_size": n}}]}).encode()
    body = header + bytes(n)
    r = https_session().post(f"{BASE_URL}/v2/models/fashion_mnist/infer", data=body, timeout=120,
                             headers={"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert r.json()["error"]
    # over the limit: test_nginx_errors_are_json (413 before the body is read)


def test_prometheus_scrapes_every_replica(stack):
    want = serving_ips()
    t = wait_for(lambda: (lambda t: t if set(t) == want and set(t.values()) == {"up"} else None)(
        prom_targets("inferd")), 40, interval=1, what="Prometheus targets for 3 replicas")
    log(f"Prometheus inferd targets: {t}")
    wait_for(lambda: prom_targets("nginx") == {"nginx-exporter:9113": "up"}, 40, interval=1,
             what="the nginx exporter target")
    wait_for(lambda: prom_query('nginx_up{job="nginx"} == 1'), 30, interval=1, what="nginx_up")
    # the replicas' own series, with the replica label
    res = prom_query('inferd_uptime_seconds{job="inferd"}')
    assert {x["metric"]["replica"] for x in res} == want


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


def test_invalid_request_id_is_replaced_once(stack):
    """nginx checks X-Request-ID by inferd's rule (1 to 64 of A-Z a-z 0-9
    - _ . :): an invalid one is replaced by nginx's $request_id, and nginx's
    access log, the replica's log and the answer name that same id."""
    body = samples()[0][0]
    tag = f"{time.time_ns()}"
    for bad in (f"bad id {tag}", "x" * 60 + tag, f"bad;{tag}", f"bad\u00e9{tag}".encode()):
        r = post_predict(body, headers={"X-Request-ID": bad})
        assert r.status_code == 200, r.text
        rid = r.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid), (bad, rid)
        time.sleep(0.5)
        ngx = [json.loads(line.split("|", 1)[1]) for line in
               compose("logs", "--no-color", "nginx").stdout.splitlines()
               if "|" in line and line.split("|", 1)[1].strip().startswith("{")]
        mine = [e for e in ngx if e.get("request_id") == rid]
        assert len(mine) == 1 and mine[0]["uri"] == "/predict", (rid, mine)
        inf = compose("logs", "--no-color", "inference").stdout
        assert f'"request_id":"{rid}"' in inf.replace(" ", ""), rid
        text = bad.decode("latin-1") if isinstance(bad, bytes) else bad
        assert tag not in inf or text not in inf, bad
    # a valid one is kept by both, unchanged
    good = f"Ok-{tag}_a.b:c"
    r = post_predict(body, headers={"X-Request-ID": good})
    assert r.headers["X-Request-ID"] == good
    time.sleep(0.5)
    assert f'"request_id":"{good}"' in compose("logs", "--no-color", "nginx").stdout
    assert good in compose("logs", "--no-color", "inference").stdout


def _tls_socket():
    ctx = ssl.create_default_context(cafile=secrets()["ca"])
    raw = socket.create_connection(("127.0.0.1", HTTPS_PORT), 5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _stalled_upload(length, sent, path="/v2/models/fashion_mnist/infer"):
    """A TLS connection that sent a POST's headers (Content-Length: length)
    and `sent` bytes of the body, then stalls."""
    s = _tls_socket()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
              f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n"
              f"Authorization: Bearer {secrets()['key']}\r\n\r\n".encode() + bytes(sent))
    return s


def _answer_within(s, seconds):
    """The status line nginx sent on s within `seconds`, or None."""
    s.settimeout(seconds)
    try:
        data = s.recv(65536)
    except (socket.timeout, TimeoutError):
        return None
    return data.split(b"\r\n", 1)[0].decode() if data else "closed"


def test_large_uploads_are_bounded(stack):
    """Stalled uploads cannot fill nginx's /tmp: past site.conf's big_bodies (8)
    bodies over 2 MB in progress, a new one is refused at once with 429,
    while small requests still pass; a slot frees when an upload ends."""
    big = 30_000_000  # under client_max_body_size (40m), over the 2 MB buffer
    held = []
    try:
        for _ in range(8):  # each past the 2 MB buffer: now in /tmp
            held.append(_stalled_upload(big, 3 * 2**20))
        time.sleep(0.5)
        for s in held:
            assert _answer_within(s, 0.05) is None  # accepted, waiting for the body
        extra = _stalled_upload(big, 1024)
        line = _answer_within(extra, 5)
        extra.close()
        assert line and line.startswith("HTTP/1.1 429"), line
        r = post_predict(samples()[0][0])
        assert r.status_code == 200, r.text
        df = docker("exec", _nginx_container(), "df", "-m", "/tmp").stdout.split("\n")[1].split()
        log(f"nginx /tmp with 8 stalled uploads: {df[2]} of {df[1]} MiB used")
        assert int(df[2]) >= 8 * 2  # the bodies are buffered there
        assert int(df[1]) >= 8 * 40  # and 8 whole ones would fit
        held.pop().close()
        time.sleep(1)
        again = _stalled_upload(big, 1024)
        held.append(again)
        assert _answer_within(again, 1) is None  # a slot was free
    finally:
        for s in held:
            s.close()


def test_connections_per_address_are_limited(stack):
    """Past site.conf's conn_per_client (64) requests in progress from one address, nginx
    answers 429 at once; the limit lifts when they end."""
    held = []
    try:
        for _ in range(64):
            held.append(_stalled_upload(1000, 10, path="/predict"))
        time.sleep(0.5)
        r = public_get("/v2/health/ready", timeout=10)
        assert r.status_code == 429, r.status_code
        assert r.json()["error"].startswith("too many requests")
    finally:
        for s in held:
            s.close()
    time.sleep(1)
    assert public_get("/v2/health/ready", timeout=10).status_code == 200


def _nginx_container():
    (c,) = replicas(service="nginx")
    return c["id"]


def test_containers_run_with_limits(stack):
    """Memory and process limits, a read-only root and a bounded /tmp on
    every replica and on nginx, as the engine applied them."""
    ids = [r["id"] for r in replicas()] + [_nginx_container()]
    for c in json.loads(docker("inspect", *ids).stdout):
        hc, name = c["HostConfig"], c["Name"]
        assert hc["Memory"] > 0 and hc["PidsLimit"] and hc["PidsLimit"] > 0, (name, hc["Memory"],
                                                                               hc["PidsLimit"])
        assert hc["ReadonlyRootfs"] is True, name
        assert "size=" in hc["Tmpfs"]["/tmp"], (name, hc["Tmpfs"])
        if "nginx" in name:
            assert hc["Memory"] >= 352 * 2**20 + 256 * 2**20, hc["Memory"]  # the tmpfs counts


def test_loopback_cannot_control_models(stack):
    """Inside a replica, where a proxy in the same network namespace would
    put every client: loading and unloading are still refused (model
    control is off in the shipped Compose files)."""
    rid = replicas()[0]["id"]
    script = ("exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'POST "
              "/v2/repository/models/fashion_mnist/unload HTTP/1.1\\r\\nHost: x\\r\\n"
              "Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3")
    p = docker("exec", rid, "bash", "-c", script)
    assert p.stdout.startswith("HTTP/1.1 403"), p.stdout[:300]
    assert "model control is off" in p.stdout
    assert post_predict(samples()[0][0]).status_code == 200


def test_nginx_errors_are_json(stack):
    r = public_get("/nginx-health", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    # 413 from nginx itself: Content-Length over client_max_body_size (40m),
    # refused before the body is read.
    ctx = ssl.create_default_context(cafile=secrets()["ca"])
    with socket.create_connection(("127.0.0.1", HTTPS_PORT), 5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 42000000\r\nX-Request-ID: big-1\r\nConnection: close\r\n"
                  + f"Authorization: Bearer {secrets()['key']}\r\n\r\n".encode())
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
    r = public_get("/v2/models/no_such_model", headers=auth())
    assert r.status_code == 404 and "no_such_model" in r.json()["error"]


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

def _doubled_model(folder):
    """The committed fashion_mnist model with its logits doubled (same
    labels, outputs exactly 2x), saved by Debian's torch into folder."""
    import torch

    class Doubled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) * 2.0

    inner = torch.jit.load(str(ROOT / "models" / "fashion_mnist" / "model.pt"), map_location="cpu")
    torch.jit.script(Doubled(inner).eval()).save(str(folder / "doubled.pt"))
    (folder / "original.pt").write_bytes((ROOT / "models" / "fashion_mnist" / "model.pt")
                                         .read_bytes())


def _put_model(src_dir, name):
    """Write src_dir/name into the models volume as fashion_mnist/model.pt:
    beside it first, then renamed over it (atomic), as docs/operations.md's recipe says."""
    docker("run", "--rm", "--user", "0", "--network", "none", "--entrypoint", "sh",
           "-v", f"{MODELS_VOLUME}:/models", "-v", f"{src_dir}:/src:ro", compose_image(), "-c",
           f"cp /src/{name} /models/fashion_mnist/model.pt.new && "
           f"mv -f /models/fashion_mnist/model.pt.new /models/fashion_mnist/model.pt")


def test_model_update_under_load(stack):
    """The repository on a volume, poll mode on (docker-compose.models.yml):
    replace fashion_mnist's model.pt with one whose logits are doubled while
    8 clients send v2 requests through nginx, then put the original back.
    Every replica switches within the poll interval plus the warm-up, each
    answer is the old or the new model's whole, and no request fails."""
    bodies = []
    for body, _ in samples():
        x = np.asarray(body["inputs"], dtype=np.float32).reshape(1, 1, 28, 28)
        bodies.append((json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                               "shape": [1, 1, 28, 28],
                                               "data": x.ravel().tolist()}]}),
                       reference_outputs(x.ravel().tolist())[0]))
    src = pathlib.Path(tempfile.mkdtemp(prefix="inferd-model-update-"))
    os.chmod(src, 0o755)
    _doubled_model(src)
    results = []  # (t_start, t_end, replica, status, factor or None, text)
    lock = threading.Lock()
    stop = threading.Event()

    def client(k):
        session = https_session()
        deadline = time.time() + 150
        i = k
        while not stop.is_set() and time.time() < deadline:
            body, ref = bodies[i % len(bodies)]
            i += 1
            factor, text, status, up = None, "", None, None
            t0 = time.time()
            try:
                r = session.post(f"{BASE_URL}/v2/models/fashion_mnist/infer", data=body,
                                 headers={"Content-Type": "application/json"}, timeout=30)
                status, up = r.status_code, last_upstream(r)
                if status == 200:
                    y = np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32)
                    for f in (1.0, 2.0):
                        if np.allclose(y, f * ref, rtol=1e-3, atol=1e-3):
                            factor = f
                    if factor is None:
                        text = f"outputs match neither model: {y[:3]} vs {ref[:3]}"
                else:
                    text = r.text[:200]
            except Exception as e:  # a failed request is data here
                text = repr(e)[:200]
                session = https_session()
            with lock:
                results.append((t0, time.time(), up, status, factor, text))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        ips = serving_ips()
        swaps = []
        for name, factor in (("doubled.pt", 2.0), ("original.pt", 1.0)):
            t_put = time.time()
            _put_model(src, name)
            switched = {}
            deadline = t_put + POLL_S + 30
            while time.time() < deadline and set(switched) != ips:
                with lock:
                    for _, t, up, status, f, _ in results:
                        if t > t_put and f == factor and up not in switched:
                            switched[up] = t - t_put
                time.sleep(0.2)
            swaps.append((t_put, factor, switched))
            log(f"model update to x{factor:g}: replicas switched after "
                f"{ {ip: round(v, 2) for ip, v in switched.items()} } s")
            assert set(switched) == ips, f"replicas that never switched: {ips - set(switched)}"
            # within the poll interval plus the warm-up (a few seconds on a CPU)
            assert max(switched.values()) <= POLL_S + 15, switched
            time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(40)
        shutil.rmtree(src, ignore_errors=True)
    failed = [r for r in results if r[3] != 200 or r[4] is None]
    log(f"model update under load: {len(results)} requests, {len(failed)} failed")
    assert not failed, failed[:5]
    # once a replica answered from the new model, no request sent to it later
    # got the old one
    for t_put, factor, switched in swaps:
        nxt = [s[0] for s in swaps if s[0] > t_put]
        end = nxt[0] if nxt else float("inf")
        for ip, after in switched.items():
            old = [r for r in results if r[2] == ip and t_put + after < r[0] < end
                   and r[4] != factor]
            assert not old, f"{ip} answered from the old model after switching: {old[:3]}"


def test_scale_up_to_5_under_load(stack):
    """New replicas get traffic within 15 s of reporting healthy, nginx
    untouched; then every replica gets at least half its fair share. gRPC
    load through nginx's gRPC port at the same time: no call fails, and
    the new replicas serve gRPC calls too."""
    nginx_before = [r["id"] for r in replicas(service="nginx")]
    old = serving_ips()
    with Load(threads=8, max_s=120) as load, \
            GrpcLoad(threads=4, max_s=120, max_calls=30000) as gload:
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
        t_scaled = time.time()
        # the fair-share window: 10 s with all 5 serving
        t_win = time.time()
        time.sleep(10)
        window = [r for r in load.snapshot() if r[0] >= t_win and r[1] <= t_win + 10]
        # Prometheus found the new replicas by DNS, and every per-replica
        # panel of the dashboard shows 5 series, within 30 s of the scale
        want = serving_ips()
        wait_for(lambda: set(prom_targets("inferd")) == want, max(1, t_scaled + 30 - time.time()),
                 interval=1, what="5 Prometheus targets")
        for title, expr in dashboard_queries(per_replica=True):
            series = wait_for(lambda: (lambda r: r if len(r) == 5 else None)(prom_query(expr)),
                              max(1, t_scaled + 30 - time.time()), interval=1,
                              what=f"5 series in panel {title!r}")
            assert {x["metric"]["replica"] for x in series} == want, title
        log(f"Prometheus: 5 targets and 5 series per per-replica panel "
            f"{time.time() - t_scaled:.1f} s after the scale")
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
    _check_grpc_load(gload, "scale-up", new_ips=all_ips - old)


def _check_grpc_load(gload, what, new_ips=()):
    """No gRPC call of the load failed (after the client's retry policy);
    logs how many calls needed a retry, and the replicas that served. A
    draining replica answers the calls that reach it after SIGTERM
    UNAVAILABLE and closes its connections before it shuts its gRPC server
    down, so that none ends CANCELLED (issue 20)."""
    calls, failed, retried = gload.summary()
    served = collections.Counter(r[3] for r in gload.results if r[4])
    log(f"{what} gRPC load: {calls} calls, {len(failed)} failed, {retried} retried by the "
        f"client (UNAVAILABLE, then served); per replica {dict(served)}")
    t_first = gload.results[0][0] if gload.results else 0
    for r in failed[:5]:
        log(f"  gRPC call failed at load{r[0] - t_first:+.2f} s, after {r[1] - r[0]:.2f} s: "
            f"{r[2]}: {r[6]}")
    if failed:  # what nginx saw
        lines = compose("logs", "--no-color", "--tail", "300", "nginx", check=False).stdout
        log("nginx lines of the failed gRPC calls and its errors:\n" + "\n".join(
            line for line in lines.splitlines()
            if "[error]" in line or "[warn]" in line or
            ("/inference.GRPCInferenceService/" in line and '"status":200' not in line)))
    assert calls > 20, calls
    assert not failed, failed[:5]
    for ip in new_ips:
        assert served[ip] > 0, f"{ip} served no gRPC call"


def test_kill_one_replica_under_load(stack):
    """SIGKILL one of 5 under load: <= 1 % failures, none after 15 s; no
    gRPC call fails (calls the victim held come back UNAVAILABLE and the
    client's retry policy serves them elsewhere)."""
    victim = sorted(replicas(), key=lambda r: r["name"])[0]
    with Load(threads=8, max_s=60) as load, \
            GrpcLoad(threads=4, max_s=60, max_calls=20000) as gload:
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
    _check_grpc_load(gload, "kill")


def test_scale_down_to_2_under_load(stack):
    """Scale 5 -> 2 under load: the removed replicas drain, nothing fails,
    over HTTPS or gRPC."""
    with Load(threads=8, max_s=90) as load, \
            GrpcLoad(threads=4, max_s=90, max_calls=20000) as gload:
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
    # the removed replicas leave DNS, and Prometheus's targets with it
    t0 = time.time()
    wait_for(lambda: set(prom_targets("inferd")) == serving_ips(), 30, interval=1,
             what="Prometheus targets down to 2")
    log(f"Prometheus: 2 targets {time.time() - t0:.1f} s after the scale-down load ended")
    _check_grpc_load(gload, "scale-down")


def test_every_dashboard_query_returns_data(stack):
    """After the load above: each panel's PromQL, evaluated by the real
    Prometheus, returns data. The GPU panels' queries must evaluate, and
    are empty here (CPU replicas export no GPU series)."""
    with Load(threads=4, max_s=15) as load:  # fresh traffic for the rate windows
        time.sleep(12)
    assert all(r[4] for r in load.results)
    empty = []
    for title, expr in dashboard_queries(gpu=False):
        if not prom_query(expr):
            empty.append((title, expr))
    assert not empty, empty
    for title, expr in dashboard_queries(gpu=True):
        assert prom_query(expr) == [], (title, "GPU series from a CPU replica?")
    n = len(dashboard_queries())
    log(f"dashboard: {n} queries, {len(dashboard_queries(gpu=True))} GPU ones (empty on CPU)")
    # the recording rules evaluate too
    for rule in ("replica:inferd_requests:rate1m", "model:inferd_requests:rate1m",
                 "model:inferd_request_duration_seconds:p99_rate5m",
                 "replica_model:inferd_queue:saturation"):
        assert prom_query(rule), rule
    r = requests.get(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/rules", timeout=10).json()
    groups = {g["name"]: g for g in r["data"]["groups"]}
    assert {"inferd-recording", "inferd-alerts"} <= set(groups)
    assert all(rule["health"] == "ok" for g in groups.values() for rule in g["rules"])


def test_nginx_defaults_plain_http_and_rate_limit(stack):
    """nginx recreated with NGINX_HTTP=plain, X-Upstream at its default
    (off) and a low rate: port 80 serves the API, no internal address
    leaks, and a bounded burst from one address gets JSON 429s with
    Retry-After. Restored afterwards."""
    low = {"NGINX_HTTP": "plain", "NGINX_DEBUG_UPSTREAM": "0",
           "NGINX_SITE": site_conf("5r/s", 5)}
    compose("up", "-d", "--no-deps", "--no-build", "nginx", env=low, timeout=COMPOSE_TIMEOUT)
    try:
        wait_for(lambda: _nginx_ok(), 60, what="recreated nginx")
        s = requests.Session()
        s.trust_env = False
        r = s.post(f"{HTTP_URL}/predict", data=json.dumps(samples()[0][0]), timeout=30,
                   headers={"Content-Type": "application/json", **auth()}, allow_redirects=False)
        assert r.status_code == 200 and r.json()["labels"] == [samples()[0][1]]
        assert "X-Upstream" not in r.headers
        assert "Strict-Transport-Security" in r.headers  # TLS is on: browsers ignore it on http
        assert "X-Upstream" not in post_predict(samples()[0][0]).headers
        # a burst of 40 at once from this address: 5 r/s with a burst of 5
        time.sleep(1.5)  # the requests above drain from the bucket first
        statuses = []
        sess = https_session()
        for _ in range(40):
            r = sess.get(f"{BASE_URL}/v2/health/ready", timeout=10)
            statuses.append(r.status_code)
            if r.status_code == 429:
                limited = r
        counts = collections.Counter(statuses)
        log(f"burst of 40 at 5r/s burst 5: {dict(counts)}")
        assert counts[429] >= 10 and counts[200] >= 5, counts
        assert set(counts) <= {200, 429}, counts
        assert limited.headers["Retry-After"] == "1"
        assert limited.json()["error"].startswith("too many requests")
        time.sleep(1.5)  # the bucket refills
        assert sess.get(f"{BASE_URL}/v2/health/ready", timeout=10).status_code == 200
    finally:
        compose("up", "-d", "--no-deps", "--no-build", "nginx", timeout=COMPOSE_TIMEOUT)
        wait_for(lambda: _nginx_ok(), 60, what="nginx restored")


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
    # --volumes: Prometheus's series (a named volume) go too
    compose("down", "--remove-orphans", "--volumes", "--timeout", "10", timeout=COMPOSE_TIMEOUT)
    label = f"label=com.docker.compose.project={PROJECT}"
    assert docker("ps", "-aq", "--filter", label).stdout.split() == []
    assert docker("network", "ls", "-q", "--filter", label).stdout.split() == []
    assert docker("volume", "ls", "-q", "--filter", label).stdout.split() == []

