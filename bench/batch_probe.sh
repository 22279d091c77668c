#!/usr/bin/env bash
# batch_probe.sh BINARY [LABEL] - one inferd build alone under wrk: req/s,
# server CPU ms per request and the mean batch (inferences_total /
# executions_total from /metrics) over one load run, after a 3 s warm-up.
# Run two builds in turn, several times, to compare them.
#
#   bench/batch_probe.sh build/inferd main
#   PROBE_FLAGS="--batch-wait always" bench/batch_probe.sh build/inferd always
#
# Environment: PROBE_CONCURRENCY [32], PROBE_SECONDS [8], PROBE_REPO
# [models], PROBE_FLAGS (more inferd flags). Needs wrk and curl.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ $# -ge 1 ] || { echo "usage: bench/batch_probe.sh BINARY [LABEL]" >&2; exit 2; }
BIN=$1
LABEL=${2:-$1}
CONC=${PROBE_CONCURRENCY:-32}
SECS=${PROBE_SECONDS:-8}
# shellcheck source=bench/lib.sh
. bench/lib.sh
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
# shellcheck disable=SC2086
"$BIN" --host 127.0.0.1 --port "$PORT" --model-repository "${PROBE_REPO:-models}" \
    --log-level warn ${PROBE_FLAGS:-} >/dev/null 2>&1 &
D=$!
trap 'kill -TERM $D 2>/dev/null; wait $D 2>/dev/null || true' EXIT
wait_ready "$URL/v2/health/ready" $D || { echo "batch_probe.sh: $BIN did not get ready" >&2; exit 1; }
counts() { curl -s "$URL/metrics" | awk '/^inferd_inferences_total/ { i += $2 } /^inferd_executions_total/ { e += $2 } END { print i, e }'; }
wrk -t1 -c8 -d3s --timeout 30s -s bench/post.lua "$URL/predict" >/dev/null
read -r i0 e0 < <(counts)
t0=$(cpu_ticks $D)
rps=$(wrk -t1 -c"$CONC" -d"$SECS"s --timeout 30s -s bench/post.lua "$URL/predict" | awk '/Requests\/sec/ { print $2 }')
t1=$(cpu_ticks $D)
read -r i1 e1 < <(counts)
awk -v l="$LABEL" -v c="$CONC" -v rps="$rps" -v t="$((t1 - t0))" -v tck="$(getconf CLK_TCK)" \
    -v i="$((i1 - i0))" -v e="$((e1 - e0))" \
    'BEGIN { printf "%s c=%s rps=%s cpu_ms=%.3f mean_batch=%.2f\n", l, c, rps, 1000 * t / tck / i, i / e }'
