#!/bin/sh
# tests/deploy/run.sh - the deploy test, from a clean Debian 12 machine:
#
#   1. installs what is missing (docker.io, docker-compose, debootstrap, pytest, node/npm, ...);
#   2. uses the Docker engine at $DOCKER_HOST or /var/run/docker.sock if one
#      answers, else starts a private one (overlay2, no iptables, no default
#      bridge; state under $INFERD_DOCKER_ROOT, default /tmp/inferd-deploy)
#      and stops it at the end;
#   3. makes the base images without Docker Hub (deploy/base-images.sh:
#      debootstrap; root file systems cached in $INFERD_DEPLOY_CACHE, default
#      /var/cache/inferd-deploy; images kept in the engine's data root);
#   4. builds inferd:cpu (Dockerfile, VARIANT=cpu), inferd-nginx:1.30 and
#      inferd-prometheus:2 (deploy/prometheus: Prometheus and the nginx
#      exporter);
#   5. runs pytest tests/deploy: Compose (3 -> 5 -> kill -> 2 replicas under
#      load, through nginx over TLS with an API key on 127.0.0.1, Prometheus
#      following the replicas), the rules (promtool), the Grafana dashboard
#      (@grafana/schema), Swarm, Kubernetes and KServe manifests, and a
#      three-node Swarm of Docker-in-Docker nodes (test_cluster.py; node
#      image inferd-swarm-node:1 from tests/deploy/cluster).
#
# Needs root (dockerd, debootstrap, apt). Exit status: pytest's.
# env: KEEP_ENGINE=1 leaves a started engine running; SKIP_BUILD=1 uses the
#      images as they are; PREPARE_ONLY=1 stops after building the images; PYTEST_ARGS adds pytest arguments, split at spaces
#      (e.g. -x -k test_deploy).
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"   # Debian's docker and python3 first
STATE=${INFERD_DOCKER_ROOT:-/tmp/inferd-deploy}
export INFERD_DEPLOY_CACHE="${INFERD_DEPLOY_CACHE:-/var/cache/inferd-deploy}"
T0=$(date +%s)
say() { echo "[deploy-run +$(( $(date +%s) - T0 ))s] $*"; }

# ---- 1. packages
need=""
for p in docker.io docker-compose debootstrap python3-pytest python3-requests python3-numpy \
         python3-yaml python3-torch nodejs npm curl openssl prometheus python3-jsonschema; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
done
# node and npm from elsewhere (nodesource) do as well
if command -v node >/dev/null && command -v npm >/dev/null; then
    need=$(echo "$need" | sed 's/ nodejs//; s/ npm//')
fi
if [ -n "$(echo "$need" | tr -d ' ')" ]; then
    say "installing:$need"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
export DOCKER="${DOCKER:-$(command -v docker)}"

# ---- 2. an engine
STARTED_PID=""
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    rc=$?
    set +e
    if [ -n "$STARTED_PID" ] && [ "${KEEP_ENGINE:-0}" != 1 ]; then
        say "stopping the private engine (pid $STARTED_PID)"
        # leave nothing of the tests behind, even after a crash
        for label in com.docker.compose.project=inferddeploytest \
                     com.docker.stack.namespace=inferdswarmtest; do
            for c in $($DOCKER ps -aq --filter "label=$label" 2>/dev/null); do
                $DOCKER rm -f "$c" >/dev/null 2>&1
            done
            for n in $($DOCKER network ls -q --filter "label=$label" 2>/dev/null); do
                $DOCKER network rm "$n" >/dev/null 2>&1
            done
        done
        # the cluster test's node containers (and with them their swarm), volumes, network
        for c in $($DOCKER ps -aq --filter label=inferd.test=cluster 2>/dev/null); do
            $DOCKER rm -f -v "$c" >/dev/null 2>&1
        done
        for n in $($DOCKER network ls -q --filter label=inferd.test=cluster 2>/dev/null); do
            $DOCKER network rm "$n" >/dev/null 2>&1
        done
        for v in $($DOCKER volume ls -q --filter label=inferd.test=cluster 2>/dev/null); do
            $DOCKER volume rm -f "$v" >/dev/null 2>&1
        done
        [ "$($DOCKER info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ] &&
            $DOCKER swarm leave --force >/dev/null 2>&1
        kill "$STARTED_PID" 2>/dev/null
        i=0
        while kill -0 "$STARTED_PID" 2>/dev/null && [ "$i" -lt 30 ]; do sleep 1; i=$((i + 1)); done
        kill -9 "$STARTED_PID" 2>/dev/null
    fi
    say "done (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

engine_ok() { $DOCKER version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if [ -z "${DOCKER_HOST:-}" ] && ! engine_ok; then
    export DOCKER_HOST="unix://$STATE/docker.sock"
fi
if ! engine_ok; then
    export DOCKER_HOST="unix://$STATE/docker.sock"
    mkdir -p "$STATE/data" "$STATE/exec" "$STATE/docker-config"
    say "starting a private dockerd ($STATE)"
    dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
        --data-root "$STATE/data" --exec-root "$STATE/exec" \
        --pidfile "$STATE/docker.pid" -H "$DOCKER_HOST" >"$STATE/dockerd.log" 2>&1 &
    STARTED_PID=$!
    i=0
    until engine_ok; do
        i=$((i + 1))
        if [ $i -gt 60 ] || ! kill -0 "$STARTED_PID" 2>/dev/null; then
            tail -20 "$STATE/dockerd.log" >&2
            echo "deploy-run: dockerd did not start" >&2
            exit 1
        fi
        sleep 1
    done
fi
# No host credential helpers: only local images are used.
export DOCKER_CONFIG="${DOCKER_CONFIG:-$STATE/docker-config}"
mkdir -p "$DOCKER_CONFIG"
say "engine $($DOCKER version --format '{{.Server.Version}}') at ${DOCKER_HOST:-default socket}"

# ---- 3 and 4. images
# The images the tests run, one per line: tag, build context, Dockerfile,
# build arguments (comma-separated). The base images to make are read from
# these same Dockerfiles and arguments (deploy/dockerfile_bases.py), never
# listed by hand: a Dockerfile that changes its FROM changes what is made.
BUILDS="inferd:cpu . Dockerfile VARIANT=cpu
inferd-nginx:1.30 deploy/nginx deploy/nginx/Dockerfile -
inferd-prometheus:2 deploy/prometheus deploy/prometheus/Dockerfile -
inferd-swarm-node:1 tests/deploy/cluster tests/deploy/cluster/Dockerfile -"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    specs=$(echo "$BUILDS" | awk '{print $3 ($4 == "-" ? "" : ":" $4)}')
    # shellcheck disable=SC2086
    suites=$(/usr/bin/python3 deploy/dockerfile_bases.py --suites $specs) ||
        { echo "deploy-run: the Dockerfiles need base images this machine cannot make" >&2; exit 1; }
    say "base images the Dockerfiles need: $suites"
    # shellcheck disable=SC2086
    DOCKER=$DOCKER deploy/base-images.sh $suites
    say "base images ready"
    # one build at a time: the machine's cores are shared
    echo "$BUILDS" | while read -r tag ctx file bargs; do
        set -- -t "$tag" -f "$file"
        [ "$bargs" = - ] || for a in $(echo "$bargs" | tr , ' '); do set -- "$@" --build-arg "$a"; done
        log="$STATE/build-$(echo "$tag" | tr ':/' '__').log"
        DOCKER_BUILDKIT=1 $DOCKER build --network host --progress plain "$@" "$ctx" >"$log" 2>&1 ||
            { tail -40 "$log" >&2; echo "deploy-run: building $tag failed ($log)" >&2; exit 1; }
        say "built $tag ($($DOCKER image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
    done
    # the private engine keeps images between runs: drop the replaced ones
    [ -n "$STARTED_PID" ] && $DOCKER image prune -f >/dev/null
fi

if [ "${PREPARE_ONLY:-0}" = 1 ]; then
    say "images ready (PREPARE_ONLY: no tests)"
    exit 0
fi

# ---- 5. the tests
export INFERD_IMAGE=inferd:cpu NGINX_IMAGE=inferd-nginx:1.30 PROMETHEUS_IMAGE=inferd-prometheus:2
say "pytest tests/deploy"
set +e
# shellcheck disable=SC2086
# 15 minutes for the single-engine tests, 10 for the three-node cluster
timeout 1500 /usr/bin/python3 -m pytest -v -s -p no:cacheprovider -p no:hypothesispytest \
    --rootdir "$ROOT/tests/deploy" ${PYTEST_ARGS:-} tests/deploy
rc=$?
set -e
exit $rc
