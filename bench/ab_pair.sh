#!/usr/bin/env bash
# ab_pair.sh OLD_BINARY NEW_BINARY - an A/B of two inferd builds that a
# shared machine's other load cannot bias: both daemons run side by side
# (same models/, default settings) and two wrk instances load them at the
# same time, so whatever else runs on the machine takes from both alike.
# Per round and concurrency it prints each one's req/s, their ratio
# (new/old) and each one's server CPU ms per request.
#
#   bench/ab_pair.sh /tmp/old/build/inferd build/inferd
#
# Environment: AB_CONCURRENCY [1 32], AB_ROUNDS [5], AB_SECONDS [8].
# Needs wrk, curl, bench/post.lua's request (written by bench/run.sh to
# bench/out/request.json; else models/examples/sample_0.json).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ $# = 2 ] || { echo "usage: bench/ab_pair.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$1
NEW=$2
CONCS=${AB_CONCURRENCY:-1 32}
ROUNDS=${AB_ROUNDS:-5}
SECS=${AB_SECONDS:-8}
[ -f bench/out/request.json ] && export BENCH_BODY="$ROOT/bench/out/request.json"
# shellcheck source=bench/lib.sh
. bench/lib.sh
field() { sed -n "s/^BENCH.* $2=\([0-9.]*\).*/\1/p" "$1"; }

PO=$(free_port)
PN=$(free_port)
"$OLD" --host 127.0.0.1 --port "$PO" --model-repository models --log-level warn >/dev/null 2>&1 &
O=$!
"$NEW" --host 127.0.0.1 --port "$PN" --model-repository models --log-level warn >/dev/null 2>&1 &
N=$!
trap 'kill -TERM $O $N 2>/dev/null; wait $O $N 2>/dev/null || true' EXIT
wait_ready "http://127.0.0.1:$PO/v2/health/ready" $O || true
wait_ready "http://127.0.0.1:$PN/v2/health/ready" $N || true
TMP=$(mktemp -d)
load_both() { # connections seconds
    wrk -t1 -c"$1" -d"$2"s --timeout 30s -s bench/post.lua "http://127.0.0.1:$PO/predict" >"$TMP/old" 2>&1 &
    local w=$!
    wrk -t1 -c"$1" -d"$2"s --timeout 30s -s bench/post.lua "http://127.0.0.1:$PN/predict" >"$TMP/new" 2>&1
    wait $w
}
load_both 8 3 # warm-up
TCK=$(getconf CLK_TCK)
for c in $CONCS; do
    for r in $(seq 1 "$ROUNDS"); do
        o0=$(cpu_ticks $O)
        n0=$(cpu_ticks $N)
        load_both "$c" "$SECS"
        o1=$(cpu_ticks $O)
        n1=$(cpu_ticks $N)
        awk -v c="$c" -v r="$r" -v ro="$(field "$TMP/old" rps)" -v rn="$(field "$TMP/new" rps)" \
            -v qo="$(field "$TMP/old" requests)" -v qn="$(field "$TMP/new" requests)" \
            -v co=$((o1 - o0)) -v cn=$((n1 - n0)) -v tck="$TCK" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
            'BEGIN { printf "c=%s round=%s old_rps=%.1f new_rps=%.1f ratio=%.3f old_cpu_ms=%.3f new_cpu_ms=%.3f load=%s\n",
                     c, r, ro, rn, rn / ro, 1000 * co / tck / qo, 1000 * cn / tck / qn, load }'
    done
done
rm -rf "$TMP"
