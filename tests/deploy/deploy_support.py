"""Helpers for the deploy tests: the docker CLI, Compose, the test's TLS
certificates and API key, reference outputs, gRPC stubs generated from
proto/, and bounded load generators that talk to nginx on loopback only
(HTTPS or gRPC over TLS, with the key)."""
import datetime
import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "models" / "examples"
MODEL = ROOT / "models" / "fashion_mnist" / "model.pt"

DOCKER = os.environ.get("DOCKER", "docker")
COMPOSE = os.environ.get("COMPOSE", "docker-compose").split()
PROJECT = os.environ.get("INFERD_DEPLOY_PROJECT", "inferddeploytest")
HTTPS_PORT = int(os.environ.get("INFERD_DEPLOY_PORT", "18443"))
HTTP_PORT = HTTPS_PORT + 37  # 18480 by default
PROMETHEUS_PORT = HTTPS_PORT + 647  # 19090 by default
GRPC_PORT = HTTPS_PORT + 1  # 18444 by default: nginx's gRPC server (8444)
GRPC_TARGET = f"127.0.0.1:{GRPC_PORT}"
BASE_URL = f"https://127.0.0.1:{HTTPS_PORT}"
HTTP_URL = f"http://127.0.0.1:{HTTP_PORT}"
PROMETHEUS_URL = f"http://127.0.0.1:{PROMETHEUS_PORT}"
CPU_FILES = "docker-compose.yml:docker-compose.cpu.yml"
# The test stack also reads its models from a polled volume
# (docker-compose.models.yml), so that test_model_update_under_load can
# replace a model file.
STACK_FILES = CPU_FILES + ":docker-compose.models.yml"
MODELS_VOLUME = PROJECT + "_models"
POLL_S = 2
PROFILES = ["--profile", "monitoring"]
CORS_ORIGIN = "https://app.example.com"
INFERD_UID = 10001  # the inferd image's user
NGINX_UID = 33      # www-data in the nginx image


@functools.lru_cache(maxsize=None)
def secrets():
    """The test's TLS folder (deploy/tls/make-dev-cert.sh) and secrets folder
    (an API key file, 0600, owned by the inferd user), made once per run
    under a temporary folder: {"tls": dir, "ca": path, "secrets": dir, "key": str}."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="inferd-deploy-secrets-"))
    os.chmod(base, 0o755)
    tls = base / "tls"
    run(["deploy/tls/make-dev-cert.sh", "-o", str(tls)], env={"NGINX_UID": str(NGINX_UID)})
    sec = base / "secrets"
    sec.mkdir(mode=0o755)
    key = run(["deploy/make-api-key.sh", str(sec / "api-keys")],
              env={"INFERD_UID": str(INFERD_UID)}).stdout.strip()
    assert len(key) == 64, key
    return {"base": str(base), "tls": str(tls), "ca": str(tls / "ca.crt"),
            "secrets": str(sec), "key": key}


def remove_secrets():
    if secrets.cache_info().currsize:
        shutil.rmtree(secrets()["base"], ignore_errors=True)


def auth():
    return {"Authorization": f"Bearer {secrets()['key']}"}


def https_session():
    """A session that trusts the test's CA and sends the API key."""
    s = requests.Session()
    s.trust_env = False
    s.verify = secrets()["ca"]
    s.headers.update(auth())
    return s


def log(msg):
    print(f"[deploy {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(args, check=True, timeout=300, env=None, **kw):
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def docker(*args, **kw):
    return run([DOCKER, *args], **kw)


# nginx as the main test stack runs it: TLS, port 80 redirecting, a rate
# limit far above what the load tests send (site_conf), and X-Upstream on
# (the scaling tests read which replica answered). The defaults (X-Upstream
# off, and a low rate for the 429 test, and plain HTTP) are tried on a
# recreated nginx.
NGINX_TEST_ENV = {"NGINX_TLS": "on", "NGINX_HTTP": "redirect", "NGINX_DEBUG_UPSTREAM": "1"}


def site_conf(rate, burst, read_timeout="60s", https_port=None):
    """A copy of deploy/nginx/site.conf, as a user makes one, with the
    redirect to https://localhost:PORT (HTTPS_PORT unless https_port), the
    given rate limit and proxy_read_timeout, in the test's temporary folder;
    its path, for NGINX_SITE."""
    port = https_port or HTTPS_PORT
    text = (ROOT / "deploy" / "nginx" / "site.conf").read_text()
    subs = [(r"default https://localhost;", f"default https://localhost:{port};"),
            (r"rate=50r/s;", f"rate={rate};"), (r"burst=100 ", f"burst={burst} "),
            (r"proxy_read_timeout 60s;", f"proxy_read_timeout {read_timeout};")]
    for old, new in subs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = pathlib.Path(secrets()["base"]) / \
        f"site-{rate.replace('/', '-')}-{burst}-{read_timeout}-{port}.conf"
    path.write_text(text)
    path.chmod(0o644)
    return str(path)


def compose_env():
    sec = secrets()
    return {"COMPOSE_FILE": STACK_FILES, "COMPOSE_PROJECT_NAME": PROJECT,
            "INFERD_REPOSITORY_POLL_S": str(POLL_S),
            "NGINX_BIND": "127.0.0.1", "NGINX_HTTPS_PORT": str(HTTPS_PORT),
            "NGINX_HTTP_PORT": str(HTTP_PORT), "NGINX_GRPC_PORT": str(GRPC_PORT),
            "NGINX_TLS_DIR": sec["tls"],
            "INFERD_SECRETS_DIR": sec["secrets"], "INFERD_CORS_ALLOW_ORIGIN": CORS_ORIGIN,
            "PROMETHEUS_BIND": "127.0.0.1", "PROMETHEUS_PORT": str(PROMETHEUS_PORT),
            "INFERD_IMAGE": os.environ.get("INFERD_IMAGE", "inferd:cpu"),
            "NGINX_IMAGE": os.environ.get("NGINX_IMAGE", "inferd-nginx:1.30"),
            "PROMETHEUS_IMAGE": os.environ.get("PROMETHEUS_IMAGE", "inferd-prometheus:2"),
            "NGINX_SITE": site_conf("10000r/s", 10000), **NGINX_TEST_ENV}


def compose(*args, **kw):
    env = compose_env()
    env.update(kw.pop("env", {}))
    return run([*COMPOSE, *PROFILES, *args], env=env, **kw)


def parse_docker_time(s):
    """Docker's RFC 3339 time with nanoseconds -> seconds since the epoch."""
    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".", 1)
        tz = ""
        for sep in ("+", "-"):
            if sep in frac:
                frac, tz = frac.split(sep, 1)
                tz = sep + tz
                break
        s = f"{head}.{frac[:6]}{tz}"
    dt = datetime.datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def replicas(project=PROJECT, service="inference", all_states=False):
    """The service's containers: [{id, name, ip, status, health, health_log}]."""
    flt = ["--filter", f"label=com.docker.compose.project={project}",
           "--filter", f"label=com.docker.compose.service={service}"]
    ids = docker("ps", "-q", *(["-a"] if all_states else []), *flt).stdout.split()
    if not ids:
        return []
    info = json.loads(docker("inspect", *ids).stdout)
    out = []
    for c in info:
        nets = c["NetworkSettings"]["Networks"] or {}
        ips = [n["IPAddress"] for n in nets.values() if n.get("IPAddress")]
        health = (c["State"].get("Health") or {})
        out.append({"id": c["Id"][:12], "name": c["Name"].lstrip("/"),
                    "ip": ips[0] if ips else None, "status": c["State"]["Status"],
                    "health": health.get("Status"), "health_log": health.get("Log") or []})
    return out


def first_healthy_time(rep):
    """When the container's first passing health check ended (epoch s), if seen."""
    ok = [parse_docker_time(e["End"]) for e in rep["health_log"] if e.get("ExitCode") == 0]
    return min(ok) if ok else None


# ---------------------------------------------------------------- the model

def samples():
    """[(body dict, expected label)] from models/examples."""
    labels = json.loads((EXAMPLES / "labels.json").read_text())
    return [(json.loads((EXAMPLES / name).read_text()), label)
            for name, label in sorted(labels.items())]


def reference_outputs(inputs):
    """Logits from Debian's torch on the committed model (the ground truth)."""
    import torch  # /usr/bin/python3's python3-torch
    model = torch.jit.load(str(MODEL), map_location="cpu").eval()
    x = torch.tensor(inputs, dtype=torch.float32).reshape(-1, 1, 28, 28)
    with torch.no_grad():
        return model(x).numpy()


def last_upstream(resp):
    """The replica that answered: the last of X-Upstream's list (nginx lists
    every replica it tried)."""
    up = resp.headers.get("X-Upstream", "")
    return up.split(",")[-1].strip().rsplit(":", 1)[0] if up else None


# ------------------------------------------------------------ load generator

class Load:
    """Closed-loop load on nginx over HTTPS with the API key: `threads`
    clients, each one request at a time on its own keep-alive session, until
    stop() or `max_s` seconds.
    Every result: (t_start, t_end, status or None, replica ip, ok, error)."""

    def __init__(self, threads=8, max_s=120.0, timeout=30.0):
        self.threads, self.max_s, self.timeout = threads, max_s, timeout
        self.bodies = [(json.dumps(b).encode(), label) for b, label in samples()]
        self.results = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = []

    def _work(self, k):
        session = https_session()
        deadline = time.time() + self.max_s
        i = k
        while not self._stop.is_set() and time.time() < deadline:
            body, label = self.bodies[i % len(self.bodies)]
            i += 1
            t0 = time.time()
            status = up = err = None
            ok = False
            try:
                r = session.post(f"{BASE_URL}/predict", data=body, timeout=self.timeout,
                                 headers={"Content-Type": "application/json"})
                status, up = r.status_code, last_upstream(r)
                ok = status == 200 and r.json().get("labels") == [label]
                if not ok:
                    err = r.text[:200]
            except Exception as e:  # a failed request is data here
                err = repr(e)[:200]
                session = https_session()
            with self._lock:
                self.results.append((t0, time.time(), status, up, ok, err))

    def __enter__(self):
        self._workers = [threading.Thread(target=self._work, args=(k,), daemon=True)
                         for k in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def stop(self):
        self._stop.set()
        for w in self._workers:
            w.join(self.timeout + 5)
        return self.results

    def __exit__(self, *exc):
        self.stop()

    def snapshot(self):
        with self._lock:
            return list(self.results)


def summarize(results, since=None, until=None):
    rs = [r for r in results if (since is None or r[0] >= since) and (until is None or r[0] < until)]
    failed = [r for r in rs if not r[4]]
    return rs, failed


def wait_for(cond, timeout, interval=0.5, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ------------------------------------------------------------- Prometheus

def prom_query(expr, timeout=10):
    """An instant query: the result list (fails on a query error)."""
    r = requests.get(f"{PROMETHEUS_URL}/api/v1/query", params={"query": expr}, timeout=timeout)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (expr, r.text[:500])
    return body["data"]["result"]


def prom_targets(job):
    """{replica or instance: health} of the active targets of a job."""
    r = requests.get(f"{PROMETHEUS_URL}/api/v1/targets", params={"state": "active"}, timeout=10)
    r.raise_for_status()
    out = {}
    for t in r.json()["data"]["activeTargets"]:
        if t["labels"].get("job") == job:
            out[t["labels"].get("replica", t["labels"]["instance"])] = t["health"]
    return out


# ------------------------------------------------------------------ gRPC

@functools.lru_cache(maxsize=None)
def pb():
    """The modules generated from proto/ (tests/integration/grpc_stubs.py, the
    integration tests' generator, into a folder of the test's own):
    .inference, .inference_grpc, .health, .health_grpc."""
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    import grpc_stubs
    return grpc_stubs.generate(pathlib.Path(tempfile.mkdtemp(prefix="inferd-deploy-stubs-")))


# What a client behind a load balancer should do (docs/deployment.md,
# "gRPC"): retry a call that ended UNAVAILABLE (a replica killed while it
# held the call; nginx cannot resend a gRPC body it already forwarded).
GRPC_RETRY_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "inference.GRPCInferenceService"}],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "2s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def grpc_channel(retry=True):
    """A TLS channel to nginx's gRPC port on loopback, trusting the test CA
    (the certificate names localhost); with retry, the retry policy above."""
    import grpc
    creds = grpc.ssl_channel_credentials(root_certificates=pathlib.Path(
        secrets()["ca"]).read_bytes())
    opts = [("grpc.ssl_target_name_override", "localhost"),
            ("grpc.max_receive_message_length", 64 * 2**20),
            ("grpc.max_send_message_length", 64 * 2**20)]
    if retry:
        opts += [("grpc.enable_retries", 1), ("grpc.service_config", GRPC_RETRY_CONFIG)]
    else:
        opts += [("grpc.enable_retries", 0)]
    return grpc.secure_channel(GRPC_TARGET, creds, options=opts)


def grpc_auth(request_id=None):
    md = [("authorization", f"Bearer {secrets()['key']}")]
    if request_id:
        md.append(("x-request-id", request_id))
    return md


def grpc_infer_request(model, inputs, request_id=""):
    """A ModelInferRequest for model with one FP32 input `input` of the
    given nested list ([N,1,28,28]), as raw little-endian bytes."""
    import numpy as np
    a = np.asarray(inputs, dtype="<f4")
    req = pb().inference.ModelInferRequest(model_name=model, id=request_id)
    req.inputs.add(name="input", datatype="FP32", shape=list(a.shape))
    req.raw_input_contents.append(a.tobytes())
    return req


def grpc_logits(resp):
    """The first output of a ModelInferResponse as a numpy array."""
    import numpy as np
    o = resp.outputs[0]
    assert o.datatype == "FP32", o.datatype
    return np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(list(o.shape))


def initial_md(call):
    return {k: v for k, v in (call.initial_metadata() or ())}


class GrpcLoad:
    """Closed-loop gRPC load on nginx's gRPC port over TLS with the API key:
    `threads` clients, each one ModelInfer at a time on its own channel (with
    the retry policy), until stop(), `max_s` seconds or `max_calls` calls in
    all. Every result: (t_start, t_end, code name, replica ip, ok, retried,
    error): ok when the answer's label is the sample's; retried when the
    client needed more than one attempt (grpc-previous-rpc-attempts)."""

    MODEL = "fashion_mnist_pt2"  # the CPU image's default model

    def __init__(self, threads=4, max_s=120.0, max_calls=20000, timeout=30.0):
        self.threads, self.max_s, self.max_calls, self.timeout = threads, max_s, max_calls, timeout
        self.samples = samples()
        self.results = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = []

    def _work(self, k):
        import grpc
        import numpy as np
        channel = grpc_channel()
        stub = pb().inference_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.time() + self.max_s
        i = k
        while not self._stop.is_set() and time.time() < deadline:
            with self._lock:
                if len(self.results) >= self.max_calls:
                    break
            body, label = self.samples[i % len(self.samples)]
            i += 1
            t0 = time.time()
            code, up, err, ok, retried = "OK", None, None, False, False
            try:
                resp, call = stub.ModelInfer.with_call(
                    grpc_infer_request(self.MODEL, body["inputs"], f"load-{k}-{i}"),
                    metadata=grpc_auth(), timeout=self.timeout)
                md = initial_md(call)
                up = md.get("x-upstream", "").split(",")[-1].strip().rsplit(":", 1)[0] or None
                retried = "grpc-previous-rpc-attempts" in md
                ok = resp.id == f"load-{k}-{i}" and \
                    int(np.argmax(grpc_logits(resp)[0])) == label_index(label)
                if not ok:
                    err = f"wrong answer: id {resp.id!r}"
            except grpc.RpcError as e:
                code, err = e.code().name, (e.details() or "")[:200]
            except Exception as e:  # a failed call is data here
                code, err = "EXCEPTION", repr(e)[:200]
            with self._lock:
                self.results.append((t0, time.time(), code, up, ok, retried, err))
        channel.close()

    def __enter__(self):
        self._workers = [threading.Thread(target=self._work, args=(k,), daemon=True)
                         for k in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def stop(self):
        self._stop.set()
        for w in self._workers:
            w.join(self.timeout + 5)
        return self.results

    def __exit__(self, *exc):
        self.stop()

    def snapshot(self):
        with self._lock:
            return list(self.results)

    def summary(self):
        """(calls, failed, retried) of the results so far."""
        rs = self.snapshot()
        return len(rs), [r for r in rs if not r[4]], sum(1 for r in rs if r[5])


@functools.lru_cache(maxsize=None)
def _labels():
    return [line.strip() for line in (ROOT / "models" / "fashion_mnist" / "labels.txt")
            .read_text().splitlines() if line.strip()]


def label_index(label):
    """The class index of an example's expected label (models/examples/labels.json)."""
    return label if isinstance(label, int) else _labels().index(label)
