#!/bin/sh
# swarm.sh - run docker-compose.yml on a Docker Swarm with `docker stack deploy`.
#
#   deploy/swarm.sh up [--cpu] [--replicas N] [--publish ingress|host|none] [--name NAME]
#   deploy/swarm.sh render [same options]      # print the stack file only
#   deploy/swarm.sh down [--name NAME]
#
# Several hosts (docs/deploy-swarm.md) add, passed on to compose2stack.py:
#   --models DIR             docker-compose.models.yml (poll mode), the
#                            repository a bind mount of DIR on every node
#   --monitoring             Prometheus and the nginx exporter too
#   --secret-dir TARGET      a mounted folder (/run/secrets/inferd,
#                            /etc/nginx/tls) as Swarm secrets, one per file
#   --endpoint-mode dnsrr    no virtual IPs (no IPVS in the kernel)
#   --max-per-node N         inference replicas per node at most
#   --edge-constraint EXPR   where the services with published ports run
#
# The stack is docker-compose.yml (plus docker-compose.cpu.yml with --cpu)
# as `docker compose config` resolves it, rewritten by deploy/compose2stack.py
# into the form the stack loader accepts (no long depends_on, no build,
# tmpfs mounts, bind-mounted files as Swarm configs, no profile services).
# Images must be in a registry every node can pull from, or present on
# every node: INFERD_IMAGE and
# NGINX_IMAGE name them (defaults inferd:gpu / inferd:cpu, inferd-nginx:1.30);
# SWARM_RESOLVE_IMAGE=never for images that exist only locally.
#
# nginx finds the replicas by DNS: the inference service uses
# endpoint_mode dnsrr, so `inference` resolves to every task's address.
# GPUs: Swarm has no device requests; see docs/deployment.md, "Docker Swarm".
set -eu
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
PYTHON=${PYTHON:-python3}
if [ -z "${COMPOSE:-}" ]; then
    if $DOCKER compose version >/dev/null 2>&1; then COMPOSE="$DOCKER compose"; else COMPOSE=docker-compose; fi
fi

cmd=${1:-}; [ $# -gt 0 ] && shift
edge=""
name=inferd files="-f docker-compose.yml" publish=ingress replicas=${INFERD_REPLICAS:-3}
cpu="" models="" profiles="" extra=""
while [ $# -gt 0 ]; do
    case $1 in
        --cpu) cpu="-f docker-compose.cpu.yml" ;;
        --models) models="-f docker-compose.models.yml"; extra="$extra --models-dir=$2"; shift ;;
        --monitoring) profiles="--profile monitoring"; extra="$extra --monitoring" ;;
        --secret-dir|--endpoint-mode|--max-per-node)
            extra="$extra $1=$2"; shift ;;
        --edge-constraint) edge=$2; shift ;;
        --replicas) replicas=$2; shift ;;
        --replicas=*) replicas=${1#*=} ;;
        --publish) publish=$2; shift ;;
        --publish=*) publish=${1#*=} ;;
        --name) name=$2; shift ;;
        --name=*) name=${1#*=} ;;
        *) echo "swarm.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

files="$files $cpu $models"

render() {
    # shellcheck disable=SC2086
    INFERD_REPLICAS=$replicas $COMPOSE $files $profiles config 2>/dev/null |
        $PYTHON deploy/compose2stack.py --publish="$publish" $extra \
            ${edge:+"--edge-constraint=$edge"}
}

case $cmd in
    render) render ;;
    up)
        if [ "$($DOCKER info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
            echo "swarm.sh: this engine is not in a swarm: run 'docker swarm init' first" >&2
            exit 1
        fi
        stack=$(mktemp "${TMPDIR:-/tmp}/inferd-stack.XXXXXX.yml")
        trap 'rm -f "$stack"' EXIT
        render >"$stack"
        $DOCKER stack deploy --resolve-image "${SWARM_RESOLVE_IMAGE:-always}" -c "$stack" "$name"
        echo "swarm.sh: deployed stack $name ($replicas inference replicas); watch: $DOCKER stack ps $name"
        ;;
    down) $DOCKER stack rm "$name" ;;
    *) sed -n '2,7p' "$0" >&2; exit 2 ;;
esac
