"""Swarm: the same docker-compose.yml (CPU switch) through deploy/swarm.sh
(`docker stack deploy`) on a single-node swarm: 3 replicas serve through nginx.

The stack publishes no port (--publish none: Swarm cannot bind a port to
127.0.0.1 only): requests go to nginx from inside its own container, over
its loopback, with bash's /dev/tcp.
"""
import collections
import json
import re
import time

import numpy as np
import pytest

from deploy_support import ROOT, docker, log, reference_outputs, run, samples, wait_for

STACK = "inferdswarmtest"
# Plain HTTP inside the stack's network, no API keys, X-Upstream on: the
# client below talks to nginx over its loopback and reads which replica
# answered. (TLS, keys and the defaults are test_deploy.py's.)
SWARM_ENV = {"NGINX_TLS": "off", "INFERD_API_KEY_FILE": "", "NGINX_DEBUG_UPSTREAM": "1"}

# One POST /predict per line of output: status line, X-Upstream, body.
CLIENT = r"""
body=$(cat); n=$1
for i in $(seq "$n"); do
  exec 3<>/dev/tcp/127.0.0.1/8080 || exit 1
  printf 'POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "${#body}" "$body" >&3
  out=$(cat <&3); exec 3>&-
  printf '%s\n' "$out" | tr -d '\r' | sed -n -e 's/^HTTP\/1.1 \([0-9]*\).*/status=\1/p' -e 's/^X-Upstream: /upstream=/p' -e 's/^{/body={/p' | tr '\n' '\t'
  echo
done
"""


def tasks(service, all_states=False):
    p = docker("ps", "-q", *(["-a"] if all_states else []),
               "--filter", f"label=com.docker.swarm.service.name={STACK}_{service}")
    return p.stdout.split()


def healthy_tasks(service):
    ids = tasks(service)
    if not ids:
        return []
    info = json.loads(docker("inspect", *ids).stdout)
    return [c["Id"][:12] for c in info
            if c["State"]["Status"] == "running"
            and (c["State"].get("Health") or {}).get("Status", "healthy") == "healthy"]


@pytest.fixture(scope="module")
def swarm_stack():
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    joined = False
    if state != "active":
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        joined = True
    try:
        t0 = time.time()
        run(["deploy/swarm.sh", "up", "--cpu", "--replicas", "3", "--publish", "none",
             "--name", STACK], env={"INFERD_IMAGE": "inferd:cpu", "SWARM_RESOLVE_IMAGE": "never",
                                    "PYTHON": "/usr/bin/python3", **SWARM_ENV})
        wait_for(lambda: len(healthy_tasks("inference")) == 3 and healthy_tasks("nginx"),
                 150, interval=2, what="3 healthy inference tasks and nginx")
        log(f"swarm: stack with 3 healthy replicas in {time.time() - t0:.1f} s")
        yield
    finally:
        run(["deploy/swarm.sh", "down", "--name", STACK], check=False)
        label = f"label=com.docker.stack.namespace={STACK}"
        try:
            # stopped task containers go too, a moment after the services
            wait_for(lambda: not docker("ps", "-aq", "--filter", label).stdout.split()
                     and not docker("network", "ls", "-q", "--filter", label).stdout.split(),
                     60, interval=1, what="the stack to go")
        finally:
            left = docker("ps", "-aq", "--filter", label).stdout.split()
            if left:
                docker("rm", "-f", *left, check=False)
            if joined:
                docker("swarm", "leave", "--force", check=False)
                # made by `swarm init`, not removed by `leave`
                docker("network", "rm", "docker_gwbridge", check=False)


def test_stack_file_renders():
    p = run(["deploy/swarm.sh", "render", "--cpu", "--replicas", "3", "--publish", "none"],
            env={"PYTHON": "/usr/bin/python3", **SWARM_ENV})
    import yaml
    doc = yaml.safe_load(p.stdout)
    assert set(doc["services"]) == {"inference", "nginx"}  # no profile services
    inf = doc["services"]["inference"]
    assert inf["deploy"]["replicas"] == 3 and inf["deploy"]["endpoint_mode"] == "dnsrr"
    assert doc["services"]["nginx"]["depends_on"] == ["inference"]
    assert "ports" not in doc["services"]["nginx"]
    assert any((v.get("target") if isinstance(v, dict) else v.split(":")[1]) == "/etc/nginx/tls"
               for v in doc["services"]["nginx"]["volumes"])
    # nginx.conf and its includes reach every node as configs; NGINX_TLS=off
    # chose the plain server
    configs = {c["target"]: doc["configs"][c["source"]]["file"]
               for c in doc["services"]["nginx"]["configs"]}
    assert configs["/etc/nginx/nginx.conf"] == str(ROOT / "nginx.conf")
    assert configs["/etc/nginx/inferd/servers.conf"] == \
        str(ROOT / "deploy" / "nginx" / "servers-tls-off.conf")
    # and the gRPC server without TLS (h2c), with the public gRPC surface
    assert configs["/etc/nginx/inferd/grpc-server.conf"] == \
        str(ROOT / "deploy" / "nginx" / "grpc-tls-off.conf")
    assert configs["/etc/nginx/inferd/inferd-grpc.conf"] == \
        str(ROOT / "deploy" / "nginx" / "inferd-grpc.conf")
    # site.conf too (NGINX_SITE's default): its values, proxy_read_timeout
    # included, reach nginx as a config
    assert configs["/etc/nginx/inferd/site.conf"] == str(ROOT / "deploy" / "nginx" / "site.conf")
    # and the TLS folder is the only bind mount left
    binds = [v.split(":")[1] if isinstance(v, str) else v["target"]
             for v in doc["services"]["nginx"]["volumes"]
             if isinstance(v, str) or v.get("type") == "bind"]
    assert binds == ["/etc/nginx/tls"], doc["services"]["nginx"]["volumes"]
    p = run(["deploy/swarm.sh", "render", "--cpu", "--publish", "ingress"],
            env={"PYTHON": "/usr/bin/python3"})
    ports = yaml.safe_load(p.stdout)["services"]["nginx"]["ports"]
    assert sorted((p["published"], p["target"]) for p in ports) == \
        [(80, 8080), (443, 8443), (8001, 8444)]
    assert all(p["mode"] == "ingress" and p["protocol"] == "tcp" for p in ports)


def test_three_replicas_serve_through_nginx(swarm_stack):
    nginx = healthy_tasks("nginx")[0]
    replicas = {c["NetworkSettings"]["Networks"][f"{STACK}_default"]["IPAddress"]
                for c in json.loads(docker("inspect", *tasks("inference")).stdout)}
    assert len(replicas) == 3
    body, label = samples()[0]
    ref = reference_outputs(body["inputs"])
    seen = collections.Counter()
    # nginx may still be learning the replicas' addresses (valid=5s): ask
    # until all three answered, within 30 s.
    deadline = time.time() + 30
    while time.time() < deadline and len(seen) < 3:
        p = docker("exec", "-i", nginx, "bash", "-c", CLIENT, "_", "12",
                   input=json.dumps(body), timeout=60)
        for line in p.stdout.splitlines():
            f = dict(x.split("=", 1) for x in line.split("\t") if "=" in x)
            assert f.get("status") == "200", line
            got = json.loads(f["body"])
            assert got["labels"] == [label]
            assert float(np.max(np.abs(np.asarray(got["outputs"]) - ref))) <= 1e-4
            seen[re.sub(r":\d+$", "", f["upstream"].split(",")[-1].strip())] += 1
    log(f"swarm: per replica {dict(seen)}")
    assert set(seen) == replicas
