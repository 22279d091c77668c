#!/usr/bin/env python3
"""compose2stack.py - turn `docker compose config` output into a file that
`docker stack deploy` accepts.

docker-compose.yml is written for Compose (and so uses what Swarm's stack
loader rejects or ignores); this keeps the meaning and rewrites the form:

- `depends_on: {inference: {condition: service_healthy}}` -> a list (Swarm
  has no start order: nginx copes, it answers 502 JSON until a replica is up
  and finds replicas by DNS as they come);
- `tmpfs:` (ignored by Swarm) -> tmpfs mounts;
- `mem_limit:` -> deploy.resources.limits.memory; `pids_limit:` is dropped
  (the 3.9 stack format has no process limit; after deploying,
  `docker service update --limit-pids N <stack>_inference` sets one);
- `build:`, `restart:` (Swarm restarts by deploy.restart_policy),
  `container_name:` and `expose:` are dropped;
- `ports:` -> long syntax. Swarm cannot bind a host address: by default the
  port is published on the routing mesh (every node, every interface);
  --publish=host publishes on the node that runs the task, --publish=none not
  at all (reach nginx from inside the network);
- bind-mounted files (nginx.conf and the files it includes, the
  NGINX_SITE copy of site.conf with its rate limits and read timeout
  among them) -> Swarm `configs` (they reach every node; each named by
  its content's hash so that a changed file rolls out);
- GPU `devices` reservations are dropped with a warning: Swarm schedules GPUs
  as generic resources (`node-generic-resources` in daemon.json, then
  deploy.resources.reservations.generic_resources), not as device requests;
- services in a Compose profile (monitoring, grafana) are left out (but
  see --monitoring below): the stack is the serving part;
- `version: "3.9"`, which the stack loader of Docker < 25 requires.

For a cluster of several hosts (docs/deploy-swarm.md), where a host folder
exists on one machine only:

- --secret-dir TARGET (repeatable): a bind-mounted folder at TARGET (the
  API key folder /run/secrets/inferd, nginx's /etc/nginx/tls) becomes one
  Swarm secret per file, mounted at TARGET/<file> with the file's owner and
  mode; the managers keep them encrypted and hand them only to the nodes
  that run the service. Named by content hash: a changed file rolls out;
- --models-dir DIR: the `models` volume (docker-compose.models.yml) becomes
  a bind mount of DIR, a folder every node has at that path (shared storage:
  NFS, or the same folder on every node);
- --endpoint-mode dnsrr: every service is reached by DNS round robin, no
  virtual IP (kernels without IPVS, such as this test machine's, cannot run
  virtual IPs or the ingress routing mesh; publish with --publish=host);
- --max-per-node N: at most N inference replicas on one node
  (deploy.placement.max_replicas_per_node; spreading is the default);
- --edge-constraint EXPR: a placement constraint (`node.role == manager`,
  `node.labels.edge == true`) for the services that publish ports (nginx,
  Prometheus) and the nginx exporter: with --publish=host they answer on the
  node that runs them, so pin them to a node clients reach;
- --monitoring: keep the monitoring profile's services (Prometheus, the
  nginx exporter).

usage: docker compose -f docker-compose.yml -f docker-compose.cpu.yml config \
         | deploy/compose2stack.py [--publish=ingress|host|none] > stack.yml
"""
import argparse
import hashlib
import os
import re
import sys

import yaml


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publish", choices=("ingress", "host", "none"), default="ingress")
    ap.add_argument("--secret-dir", action="append", default=[], metavar="TARGET")
    ap.add_argument("--models-dir")
    ap.add_argument("--endpoint-mode", choices=("vip", "dnsrr"))
    ap.add_argument("--max-per-node", type=int)
    ap.add_argument("--edge-constraint")
    ap.add_argument("--monitoring", action="store_true")
    args = ap.parse_args()

    doc = yaml.safe_load(sys.stdin)
    doc["version"] = "3.9"
    doc.pop("name", None)  # compose v2 adds the project name
    configs = doc.setdefault("configs", {})
    secrets = doc.setdefault("secrets", {})
    keep = {"monitoring"} if args.monitoring else set()

    for name in [n for n, svc in doc.get("services", {}).items()
                 if svc.get("profiles") and not set(svc["profiles"]) & keep]:
        del doc["services"][name]
    for svc in doc.get("services", {}).values():
        svc.pop("profiles", None)
    for name, svc in doc.get("services", {}).items():
        for key in ("build", "restart", "container_name", "expose", "pull_policy"):
            svc.pop(key, None)

        deps = svc.get("depends_on")
        if isinstance(deps, dict):
            svc["depends_on"] = sorted(deps)

        ports = []
        for p in svc.get("ports", []) or []:
            if isinstance(p, str):
                m = re.fullmatch(r"(?:(?:\[?[0-9a-fA-F.:]*\]?):)?(\d+):(\d+)(?:/(\w+))?", p)
                if not m:
                    sys.exit(f"compose2stack: cannot read port {p!r} of {name}")
                p = {"published": int(m.group(1)), "target": int(m.group(2)),
                     "protocol": m.group(3) or "tcp"}
            else:
                p = {k: v for k, v in p.items() if k != "host_ip"}
                p["published"] = int(p["published"])
                p["target"] = int(p["target"])
            p["mode"] = args.publish
            if args.publish != "none":
                ports.append(p)
        if "ports" in svc:
            if ports:
                svc["ports"] = ports
            else:
                del svc["ports"]

        # Swarm ignores `tmpfs:`; a tmpfs mount does the same. A service's
        # tmpfs mount is always noexec (the stack format has no option for
        # it before engine 27), so a tmpfs that needs exec (the .pt2
        # loader's /tmp) becomes an anonymous volume: writable, exec, and
        # gone with the task; the engine copies the image folder's mode.
        vols = []
        tmpfs = svc.pop("tmpfs", []) or []
        for t in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
            path, _, opts = t.partition(":")
            if "exec" in opts.split(","):
                vols.append({"type": "volume", "target": path})
                continue
            mount = {"type": "tmpfs", "target": path}
            size = re.search(r"size=(\d+)([kmg]?)", opts)
            if size:
                mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[size.group(2)]
                mount["tmpfs"] = {"size": int(size.group(1)) * mult}
            vols.append(mount)
        for v in svc.get("volumes", []) or []:
            src = v.get("source") if isinstance(v, dict) else v.split(":")[0]
            tgt = v.get("target") if isinstance(v, dict) else v.split(":")[1]
            if args.models_dir and src == "models" and tgt == "/models":
                vols.append({"type": "bind", "source": args.models_dir, "target": "/models",
                             "read_only": True})
                continue
            if tgt in args.secret_dir:
                if not (src and os.path.isdir(src)):
                    sys.exit(f"compose2stack: {name}: {tgt} is not a folder here ({src!r})")
                for fname in sorted(os.listdir(src)):
                    path = os.path.join(src, fname)
                    if not os.path.isfile(path) or fname.startswith("."):
                        continue
                    st = os.stat(path)
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()[:12]
                    sname = f"{re.sub(r'[^A-Za-z0-9_-]', '_', fname)}_{digest}"
                    secrets[sname] = {"file": path}
                    svc.setdefault("secrets", []).append(
                        {"source": sname, "target": f"{tgt.rstrip('/')}/{fname}",
                         "uid": str(st.st_uid), "gid": str(st.st_gid),
                         "mode": st.st_mode & 0o777})
                continue
            if isinstance(v, dict) and v.get("type") != "bind":
                vols.append(v)
                continue
            if src and os.path.isfile(src):
                with open(src, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()[:12]
                cname = f"{os.path.basename(src).replace('.', '_')}_{digest}"
                configs[cname] = {"file": src}
                svc.setdefault("configs", []).append({"source": cname, "target": tgt, "mode": 0o444})
            else:
                vols.append(v)
        if vols:
            svc["volumes"] = vols
        else:
            svc.pop("volumes", None)

        mem = svc.pop("mem_limit", None)
        if mem is not None:
            limits = svc.setdefault("deploy", {}).setdefault("resources", {}) \
                .setdefault("limits", {})
            limits.setdefault("memory", str(mem))
        svc.pop("pids_limit", None)

        res = svc.get("deploy", {}).get("resources", {}).get("reservations", {})
        if res.pop("devices", None):
            print(f"compose2stack: {name}: GPU device reservations dropped (Swarm uses "
                  "generic_resources; see docs/deployment.md, Docker Swarm)", file=sys.stderr)
            if not res:
                svc["deploy"]["resources"].pop("reservations")

        dep = svc.setdefault("deploy", {})
        if args.endpoint_mode:
            dep["endpoint_mode"] = args.endpoint_mode
        if args.max_per_node and name == "inference":
            dep.setdefault("placement", {})["max_replicas_per_node"] = args.max_per_node
        if args.edge_constraint and (svc.get("ports") or name == "nginx-exporter"):
            dep.setdefault("placement", {}).setdefault("constraints", []).append(
                args.edge_constraint)
        if not dep:
            del svc["deploy"]

    if args.models_dir:
        (doc.get("volumes") or {}).pop("models", None)
        if "volumes" in doc and not doc["volumes"]:
            del doc["volumes"]
    if not configs:
        del doc["configs"]
    if not secrets:
        del doc["secrets"]
    yaml.safe_dump(doc, sys.stdout, default_flow_style=False, sort_keys=False)


if __name__ == "__main__":
    main()
