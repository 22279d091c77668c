"""Helpers for the deploy tests: the docker CLI, Compose, reference outputs
and a bounded load generator that talks to nginx on loopback only."""
import datetime
import json
import os
import pathlib
import subprocess
import threading
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "models" / "examples"
MODEL = ROOT / "models" / "fashion_mnist" / "model.pt"

DOCKER = os.environ.get("DOCKER", "docker")
COMPOSE = os.environ.get("COMPOSE", "docker-compose").split()
PROJECT = os.environ.get("INFERD_DEPLOY_PROJECT", "inferddeploytest")
PORT = int(os.environ.get("INFERD_DEPLOY_PORT", "18480"))
BASE_URL = f"http://127.0.0.1:{PORT}"
CPU_FILES = "docker-compose.yml:docker-compose.cpu.yml"


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


def compose_env():
    return {"COMPOSE_FILE": CPU_FILES, "COMPOSE_PROJECT_NAME": PROJECT,
            "NGINX_BIND": "127.0.0.1", "NGINX_PORT": str(PORT),
            "INFERD_IMAGE": os.environ.get("INFERD_IMAGE", "inferd:cpu"),
            "NGINX_IMAGE": os.environ.get("NGINX_IMAGE", "inferd-nginx:1.30")}


def compose(*args, **kw):
    env = compose_env()
    env.update(kw.pop("env", {}))
    return run([*COMPOSE, *args], env=env, **kw)


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
    """Closed-loop load on nginx: `threads` clients, each one request at a
    time on its own keep-alive session, until stop() or `max_s` seconds.
    Every result: (t_start, t_end, status or None, replica ip, ok, error)."""

    def __init__(self, threads=8, max_s=120.0, timeout=30.0):
        self.threads, self.max_s, self.timeout = threads, max_s, timeout
        self.bodies = [(json.dumps(b).encode(), label) for b, label in samples()]
        self.results = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = []

    def _work(self, k):
        session = requests.Session()
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
                session = requests.Session()
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
