"""Every image the deploy test needs can be made on a fresh machine without
Docker Hub: the base images of the builds in tests/deploy/run.sh (read from
the Dockerfiles by deploy/dockerfile_bases.py) are all debian:<suite>-slim,
which deploy/base-images.sh makes with debootstrap; every Dockerfile in the
repository is either built by the deploy test or named here as needing a
registry; every service the test starts runs one of the images it builds.
No engine needed."""
import os
import re
import subprocess
import sys

import pytest
import yaml

from deploy_support import COMPOSE, PROFILES, ROOT, STACK_FILES

sys.path.insert(0, str(ROOT / "deploy"))
import dockerfile_bases  # noqa: E402

# Dockerfiles (with build arguments) that the deploy test does not build,
# and why: their bases come from a registry.
REGISTRY_ONLY = {
    "Dockerfile:VARIANT=gpu": "the CUDA image: pytorch/pytorch bases, no GPU containers here",
}


def builds():
    """run.sh's BUILDS: [(tag, context, dockerfile, {arg: value})]."""
    text = (ROOT / "tests" / "deploy" / "run.sh").read_text()
    m = re.search(r'^BUILDS="(.*?)"$', text, re.S | re.M)
    assert m, "no BUILDS list in tests/deploy/run.sh"
    out = []
    for line in m.group(1).splitlines():
        tag, ctx, dockerfile, args = line.split()
        args = {} if args == "-" else dict(a.split("=", 1) for a in args.split(","))
        out.append((tag, ctx, dockerfile, args))
    return out


def spec(dockerfile, args):
    return dockerfile + ("" if not args else ":" + ",".join(f"{k}={v}" for k, v in args.items()))


def test_run_sh_builds_only_what_debootstrap_can_base():
    specs = [spec(d, a) for _, _, d, a in builds()]
    p = subprocess.run([sys.executable, str(ROOT / "deploy" / "dockerfile_bases.py"), "--suites",
                        *specs], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    suites = set(p.stdout.split())
    # the CPU image on Debian 13, nginx 1.30 from sid, Prometheus on Debian 12
    # (the base that a hand-kept list once left out)
    assert suites == {"trixie", "sid", "bookworm"}, suites
    for _, ctx, dockerfile, _ in builds():
        assert (ROOT / dockerfile).is_file() and (ROOT / ctx).is_dir()
        assert (ROOT / dockerfile).resolve().is_relative_to((ROOT / ctx).resolve())


def test_every_dockerfile_is_accounted_for():
    built = {spec(d, a) for _, _, d, a in builds()}
    found = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("Dockerfile*")
                   if "node_modules" not in p.parts and ".git" not in p.parts
                   and not any(x.startswith("build") for x in p.relative_to(ROOT).parts[:-1]))
    assert found, "no Dockerfile found"
    covered = {s.split(":")[0] for s in built | set(REGISTRY_ONLY)}
    assert set(found) <= covered, f"Dockerfiles neither built nor listed: {set(found) - covered}"
    for s in REGISTRY_ONLY:
        images = dockerfile_bases.bases(*dockerfile_bases.parse_build(s))
        assert images and not any(dockerfile_bases.DEBIAN_SLIM.match(i) for i in images), images


def test_resolver_follows_stages_and_args(tmp_path):
    """The resolver reads what BuildKit builds: ARG defaults and overrides,
    the chosen stage and the stages it starts from or copies from."""
    f = tmp_path / "Dockerfile"
    f.write_text("ARG V=a\nARG B=debian:bookworm-slim\nARG G=example/gpu:1\n"
                 "FROM ${G} AS build-b\nRUN true\n"
                 "FROM $B AS build-a\n"
                 "FROM debian:sid-slim AS tools\n"
                 "FROM busybox:1 AS other\n"
                 "FROM build-${V} AS final\n"
                 "COPY --from=tools /x /x\n"
                 "COPY --from=alpine:3 /y \\\n  /y\n")
    assert dockerfile_bases.bases(str(f), {}) == {"debian:bookworm-slim", "debian:sid-slim",
                                                   "alpine:3"}
    assert dockerfile_bases.bases(str(f), {"V": "b"}) == {"example/gpu:1", "debian:sid-slim",
                                                           "alpine:3"}
    with pytest.raises(SystemExit):
        dockerfile_bases.bases(str(f), {"NOPE": "1"})


def test_started_services_run_built_images():
    """The services the deploy test starts (its Compose files and profiles)
    run images it builds; the rest (grafana: Docker Hub) sit in a profile it
    does not start."""
    tags = {t for t, _, _, _ in builds()}
    env = dict(os.environ, COMPOSE_FILE=STACK_FILES, INFERD_IMAGE="inferd:cpu",
               NGINX_IMAGE="inferd-nginx:1.30", PROMETHEUS_IMAGE="inferd-prometheus:2")
    p = subprocess.run([*COMPOSE, "config"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    started_profiles = {PROFILES[i + 1] for i, a in enumerate(PROFILES) if a == "--profile"}
    for name, svc in yaml.safe_load(p.stdout)["services"].items():
        profiles = set(svc.get("profiles", []))
        if not profiles or profiles & started_profiles:
            assert svc["image"] in tags, (name, svc["image"])
