#!/usr/bin/env bash
# inferd benchmark: inferd vs the seed stack (Flask + gunicorn + PyTorch)
# vs the raw in-process libtorch forward, on loopback.
#
#   bench/run.sh            (or: make bench)
#
# Builds nothing: needs build/inferd (run `make` first). Starts one stack at a
# time on a free 127.0.0.1 port (so the two servers never compete for the
# cores while measured), warms it, runs wrk at each concurrency, stops it,
# then runs bench/raw_forward.py, then bench/report.py, which writes
#   bench/out/results.csv   every measurement (one row per stack/config/conc;
#                           stack=raw rows: rps=samples/s, p50_ms=ms/batch;
#                           loadavg1: 1-min load average when the point began)
#   bench/out/table.md      the markdown table + target check (also printed)
#   bench/out/throughput.png  req/s vs concurrency | p99 vs concurrency
# Raw wrk output is kept in bench/out/logs/.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS        wrk duration per concurrency [10]
#   BENCH_WARMUP_SECONDS wrk warm-up per stack, at c=8 [3]
#   BENCH_CONCURRENCY    wrk -c values [1 8 32 128]
#   BENCH_WRK_THREADS    wrk -t (capped at -c) [1]: wrk shares the 2 cores with
#                        the server, one event-loop thread is plenty here
#   BENCH_STACKS         which stacks, in order [inferd seed]
#   BENCH_INFERD_CONFIGS inferd variants, ';'-separated name=flags, e.g.
#                        "default=;qd1000=--max-queue-delay-us 1000" [default=];
#                        NAME=value words set the daemon's environment, e.g.
#                        "active=OMP_WAIT_POLICY=ACTIVE"; model.KEY=value words
#                        override models/fashion_mnist/config.json (which wins
#                        over --max-queue-delay-us/--max-batch-size), e.g.
#                        "qd500=model.max_queue_delay_us=500"; bin=PATH runs
#                        another inferd binary for that config (an A/B of
#                        two builds in one run: "old=bin=/tmp/old/inferd;new=")
#   BENCH_RAW_SECONDS    seconds per batch size in raw_forward.py, run before
#                        and after the servers; 0 skips it [2]
#   BENCH_RAW_THREADS    thread specs raw_forward.py tries [1,2,2p,2x1]
#                        (2p: OMP_WAIT_POLICY=passive; 2x1: two 1-thread processes)
#   BENCH_ROUNDS         measure all stacks this many times, alternating
#                        (inferd, seed, inferd, seed, ...); the report keeps
#                        each point's best round [1]
#   BENCH_RAW_BATCHES    [1,8,16,32,64]
#   BENCH_IMAGE          test-set index of the image posted [0]
#   BENCH_OUT            output folder [bench/out]
#   SEED_WORKERS         gunicorn workers [2]
#   SEED_WORKER_CLASS    gunicorn worker class (sync|gthread) [sync]
#   SEED_THREADS         gunicorn --threads (gthread only) [1]
#   SEED_TORCH_THREADS   torch.set_num_threads per seed worker [1]
#   INFERD               the daemon binary [build/inferd]
#   PYTHON               [/usr/bin/python3]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PY=${PYTHON:-/usr/bin/python3}
INFERD=${INFERD:-build/inferd}
SECONDS_PER=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP_SECONDS:-3}
CONCS=${BENCH_CONCURRENCY:-1 8 32 128}
WRK_T=${BENCH_WRK_THREADS:-1}
STACKS=${BENCH_STACKS:-inferd seed}
INFERD_CONFIGS=${BENCH_INFERD_CONFIGS:-default=}
RAW_SECONDS=${BENCH_RAW_SECONDS:-2}
RAW_THREADS=${BENCH_RAW_THREADS:-1,2,2p,2x1}
ROUNDS=${BENCH_ROUNDS:-1}
ROUND=1
RAW_BATCHES=${BENCH_RAW_BATCHES:-1,8,16,32,64}
IMAGE=${BENCH_IMAGE:-0}
OUT=${BENCH_OUT:-bench/out}
SEED_WORKERS=${SEED_WORKERS:-2}
SEED_WORKER_CLASS=${SEED_WORKER_CLASS:-sync}
SEED_THREADS=${SEED_THREADS:-1}
export SEED_TORCH_THREADS=${SEED_TORCH_THREADS:-1}
READY_TIMEOUT_S=60
CLK_TCK=$(getconf CLK_TCK)

die() { echo "bench: $*" >&2; exit 1; }

# ---- preflight ----
[ -x "$INFERD" ] || die "$INFERD not found or not executable: build it first with \`make\`"
command -v wrk >/dev/null || die "wrk not installed (apt-get install -y wrk)"
command -v gunicorn >/dev/null || die "gunicorn not installed (apt-get install -y gunicorn python3-flask)"
"$PY" -c 'import torch, flask' 2>/dev/null || die "$PY lacks torch or flask (apt-get install -y python3-torch python3-flask)"
command -v gnuplot >/dev/null || echo "bench: gnuplot not installed: no PNG (apt-get install -y gnuplot-nox)" >&2
[ -f models/fashion_mnist/model.pt ] || die "models/fashion_mnist/model.pt missing (make model)"

mkdir -p "$OUT/logs"
# Snapshot the binary: others may rebuild build/inferd while this runs.
cp "$INFERD" "$OUT/inferd.bin"
echo "bench: inferd = $INFERD (built $(date -u -r "$INFERD" '+%F %T UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src shim include 2>/dev/null || echo '+dirty'))"
INFERD="$OUT/inferd.bin"
CSV="$OUT/results.csv"
BODY="$OUT/request.json"
export BENCH_BODY="$ROOT/$BODY"
[ "${OUT#/}" != "$OUT" ] && export BENCH_BODY="$BODY"

# ---- the request: one real test image, flat 784 floats ----
"$PY" - "$IMAGE" "$BODY" <<'EOF'
import json, sys
import numpy as np
sys.path.insert(0, "models")
idx, path = int(sys.argv[1]), sys.argv[2]
try:
    import fashion_mnist_data
    x, y = fashion_mnist_data.load("test")
    img, label = x[idx].ravel(), fashion_mnist_data.LABELS[int(y[idx])]
except Exception as e:  # dataset not installed: fall back to the shipped example
    print(f"bench: test set unavailable ({e}); using models/examples/sample_0.json", file=sys.stderr)
    with open("models/examples/sample_0.json") as f:
        img, label = np.asarray(json.load(f)["inputs"], dtype=np.float32).ravel(), "?"
# shortest text that round-trips each float32, as a numpy client would send
vals = ",".join(np.format_float_positional(np.float32(v), trim="-") for v in img)
with open(path, "w") as f:
    f.write('{"inputs":[' + vals + ']}')
print(f"bench: request = test image {idx} ({label}), {len(vals) + 13} bytes")
EOF

echo "stack,config,concurrency,wrk_threads,seconds,requests,rps,p50_ms,p90_ms,p99_ms,max_ms,mean_ms,non2xx,socket_errors,timeouts,server_cpu_s,cpu_ms_per_req,loadavg1,round" >"$CSV"

# ---- process bookkeeping ----
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do          # <= 15 s
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "bench: pid $SERVER_PID ignored SIGTERM; SIGKILL" >&2
            # its direct children first (gunicorn workers), by id
            for c in $(pgrep -P "$SERVER_PID" 2>/dev/null || true); do kill -KILL "$c" 2>/dev/null || true; done
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

# free_port, wait_ready
# shellcheck source=bench/lib.sh
. bench/lib.sh

# CPU seconds (user+sys) of a process and its direct children (gunicorn workers).
cpu_seconds() {
    local pid=$1 total=0 p t
    for p in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
        # fields 14,15 (utime, stime) after the ')' that ends comm
        t=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}

run_wrk() { # stack config url conc seconds -> one CSV row
    local stack=$1 config=$2 url=$3 c=$4 secs=$5
    local t=$WRK_T
    [ "$t" -gt "$c" ] && t=$c
    local log="$OUT/logs/${stack}_${config}_c${c}_r${ROUND}.txt"
    local cpu0 cpu1 load
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpu0=$(cpu_seconds "$SERVER_PID")
    timeout $((secs + 60)) wrk -t"$t" -c"$c" -d"${secs}s" --timeout 30s --latency \
        -s bench/post.lua "$url" >"$log" 2>&1 || echo "bench: wrk exited non-zero, see $log" >&2
    cpu1=$(cpu_seconds "$SERVER_PID")
    local line
    line=$(grep '^BENCH ' "$log" | tail -1 || true)
    [ -n "$line" ] || { echo "bench: no result from wrk ($log):" >&2; tail -5 "$log" >&2; return 0; }
    "$PY" - "$stack" "$config" "$c" "$t" "$secs" "$((cpu1 - cpu0))" "$CLK_TCK" "$line" "$load" "$ROUND" >>"$CSV" <<'EOF'
import sys
stack, config, c, t, secs, dcpu, tck, line, load, rnd = sys.argv[1:11]
kv = dict(f.split("=", 1) for f in line.split()[1:])
req = int(kv["requests"])
cpu_s = int(dcpu) / int(tck)
ms = lambda k: f"{int(kv[k]) / 1000:.3f}"
print(",".join([stack, config, c, t, secs, str(req), kv["rps"], ms("p50_us"), ms("p90_us"),
                ms("p99_us"), ms("max_us"), f"{float(kv['mean_us']) / 1000:.3f}", kv["non2xx"],
                str(int(kv["connect_err"]) + int(kv["read_err"]) + int(kv["write_err"])),
                kv["timeouts"], f"{cpu_s:.2f}", f"{1000 * cpu_s / req:.3f}" if req else "", load, rnd]))
EOF
    tail -1 "$CSV" | awk -F, '{printf "  %-7s %-12s c=%-4s %9.1f req/s  p50 %8.2f ms  p99 %8.2f ms  errors %d/%d/%d  cpu %.3f ms/req  load %s\n", $1, $2, $3, $7, $8, $10, $13, $14, $15, $17, $18}'
}

measure_stack() { # stack config url
    local stack=$1 config=$2 url=$3 c
    echo "bench: warming $stack ($config) for ${WARMUP}s"
    timeout $((WARMUP + 60)) wrk -t1 -c8 -d"${WARMUP}s" --timeout 30s -s bench/post.lua "$url" \
        >"$OUT/logs/${stack}_${config}_warmup.txt" 2>&1 || true
    for c in $CONCS; do
        run_wrk "$stack" "$config" "$url" "$c" "$SECONDS_PER"
    done
}

# A model repository holding only fashion_mnist, whose config.json has the
# given KEY=value overrides (the model's config.json wins over the daemon's
# --max-batch-size / --max-queue-delay-us flags, so those are set here).
make_repo() { # dir KEY=value...
    local dir=$1
    shift
    rm -rf "$dir"
    mkdir -p "$dir/fashion_mnist"
    ln -s "$ROOT/models/fashion_mnist/model.pt" "$dir/fashion_mnist/model.pt"
    [ -f models/fashion_mnist/labels.txt ] && cp models/fashion_mnist/labels.txt "$dir/fashion_mnist/"
    "$PY" - models/fashion_mnist/config.json "$dir/fashion_mnist/config.json" "$@" <<'EOF'
import json, sys
src, dst, kv = sys.argv[1], sys.argv[2], sys.argv[3:]
cfg = json.load(open(src))
for item in kv:
    k, v = item.split("=", 1)
    cfg[k] = json.loads(v)
json.dump(cfg, open(dst, "w"), indent=2)
EOF
}

bench_inferd() {
    local entry name flags port
    IFS=';' read -r -a entries <<<"$INFERD_CONFIGS"
    for entry in "${entries[@]}"; do
        [ -n "$entry" ] || continue
        name=${entry%%=*}
        flags=${entry#*=}
        [ "$entry" = "$name" ] && flags=""
        port=$(free_port)
        echo "bench: inferd ($name) on 127.0.0.1:$port ${flags:+[$flags]}"
        # words of the form NAME=value set the daemon's environment,
        # model.KEY=value override the model's config.json, the rest are flags
        local envs=() args=() over=() w repo=models bin=$INFERD
        for w in $flags; do
            if [[ $w == bin=* ]]; then
                bin="$OUT/inferd_$name.bin"
                cp "${w#bin=}" "$bin" || die "cannot copy ${w#bin=}"
            elif [[ $w =~ ^[A-Z_][A-Z0-9_]*= ]]; then envs+=("$w");
            elif [[ $w == model.*=* ]]; then over+=("${w#model.}");
            else args+=("$w"); fi
        done
        if [ ${#over[@]} -gt 0 ]; then
            repo="$OUT/models_$name"
            make_repo "$repo" "${over[@]}"
        fi
        env ${envs[@]+"${envs[@]}"} "$bin" --host 127.0.0.1 --port "$port" \
            --model-repository "$repo" --log-level warn ${args[@]+"${args[@]}"} \
            >"$OUT/logs/inferd_${name}_server.log" 2>&1 &
        SERVER_PID=$!
        if ! wait_ready "http://127.0.0.1:$port/v2/health/ready" "$SERVER_PID"; then
            tail -20 "$OUT/logs/inferd_${name}_server.log" >&2
            die "inferd ($name) did not become ready within ${READY_TIMEOUT_S}s"
        fi
        measure_stack inferd "$name" "http://127.0.0.1:$port/predict"
        stop_server
    done
}

bench_seed() {
    local port config
    port=$(free_port)
    config="w${SEED_WORKERS}-${SEED_WORKER_CLASS}"
    [ "$SEED_WORKER_CLASS" = gthread ] && config="${config}${SEED_THREADS}"
    config="${config}-tt${SEED_TORCH_THREADS}"
    echo "bench: seed (gunicorn -w $SEED_WORKERS -k $SEED_WORKER_CLASS --threads $SEED_THREADS," \
        "torch threads $SEED_TORCH_THREADS) on 127.0.0.1:$port"
    gunicorn --bind "127.0.0.1:$port" --workers "$SEED_WORKERS" --worker-class "$SEED_WORKER_CLASS" \
        --threads "$SEED_THREADS" --chdir "$ROOT/bench" --log-level warning --timeout 120 \
        seed_app:app >"$OUT/logs/seed_server.log" 2>&1 &
    SERVER_PID=$!
    if ! wait_ready "http://127.0.0.1:$port/v2/health/ready" "$SERVER_PID"; then
        tail -20 "$OUT/logs/seed_server.log" >&2
        die "seed stack did not become ready within ${READY_TIMEOUT_S}s"
    fi
    # the seed is the baseline every ratio divides by: its config name is "default"
    echo "bench: seed config = $config"
    measure_stack seed default "http://127.0.0.1:$port/predict"
    stop_server
}

# ---- raw libtorch forward (no server running) ----
run_raw() { # pass
    echo "bench: raw libtorch forward ($1), ${RAW_SECONDS}s per batch size, threads $RAW_THREADS"
    "$PY" bench/raw_forward.py --seconds "$RAW_SECONDS" --threads "$RAW_THREADS" \
        --batches "$RAW_BATCHES" --csv "$OUT/raw_forward_$1.csv" | tee "$OUT/logs/raw_forward_$1.txt"
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    tail -n +2 "$OUT/raw_forward_$1.csv" | while IFS=, read -r b t sps ms iters; do
        echo "raw,batch=$b threads=$t $1,,,$RAW_SECONDS,$((iters * b)),$sps,$ms,,,,,,,,,,$load,"
    done >>"$CSV"
}

# The machine may be shared: the raw forward runs before and after the
# servers, and the report takes the best of the two as the ceiling.
[ "$RAW_SECONDS" = 0 ] || run_raw before
for ROUND in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" = 1 ] || echo "bench: round $ROUND of $ROUNDS"
    for s in $STACKS; do
        case $s in
        inferd) bench_inferd ;;
        seed) bench_seed ;;
        *) die "unknown stack '$s' in BENCH_STACKS" ;;
        esac
    done
done
[ "$RAW_SECONDS" = 0 ] || run_raw after

echo
echo "bench: seed config: gunicorn -w $SEED_WORKERS -k $SEED_WORKER_CLASS --threads $SEED_THREADS, torch threads $SEED_TORCH_THREADS; wrk -t$WRK_T (capped at -c), ${SECONDS_PER}s per point"
echo
"$PY" bench/report.py "$OUT"
