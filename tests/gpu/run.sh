#!/usr/bin/env bash
# tests/gpu/run.sh - inferd's CUDA path in one call: build against the
# machine's torch, generate the bench models, check correctness against
# python torch on the CPU, benchmark against raw libtorch, check the CUDA
# shared memory extension (tests/gpu/cuda_shm_check.py), check the GPU memory
# each instance measures, UINT8 pixels normalised on the device and the GPU
# named by UUID (tests/gpu/memory_check.py), write the results.
#
#   tests/gpu/run.sh           on a GPU machine (python3 with a CUDA torch);
#                              results in $OUT (the device tool's folder) or
#                              $BUILD/gpu-results/
#   tests/gpu/run.sh --cpu     the same steps on the CPU with a tiny model
#                              (CI runs this, so the script cannot rot)
#
# Where the python torch is 2.6 or newer and the build serves .pt2 (`make
# help` says `.pt2: yes`), the bench model is also exported as an AOTInductor
# package (a CUDA package on the GPU, a CPU one with --cpu), checked against
# the eager model and python's aoti_load_package, and benchmarked beside the
# TorchScript rows (raw_shim and inferd). Elsewhere (Debian 12's torch 1.13)
# that part is skipped, and the log and the results say why. The export runs
# while inferd builds.
#
# env: BUILD (build folder; default build, or build-gpu on a GPU), PYTHON,
# GPU_BENCH_SECONDS (seconds per wrk point), OUT (results folder),
# PT2_EXPORT_TIMEOUT (seconds; default 240 on a GPU, 300 with --cpu),
# INFERD_TEST_PT2=1 (the .pt2 part must run: a skip is a failure; CI sets it
# in the Debian 13 root)
#
# libmicrohttpd, cJSON, TurboJPEG, libpng, zlib's headers and wrk come from
# .device/*.deb when the machine has none installed (they are unpacked under
# /tmp/inferd-deps; nothing is installed). Made here, on Debian 12:
#   mkdir -p .device && cd .device && apt-get download libmicrohttpd12 \
#     libmicrohttpd-dev libcjson1 libcjson-dev libturbojpeg0 libturbojpeg0-dev \
#     libpng16-16 libpng-dev zlib1g-dev wrk libluajit-5.1-2
# The .pt2 part needs nothing more from .device: its compile step uses the
# machine's g++ and python3 (Python's headers too: a missing Python.h is
# named in the log and pt2-export.json).
#
# Exit status 1 when a correctness check fails; benchmark targets are
# reported, never enforced.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
T0=$(date +%s)
say() { echo "[gpu +$(( $(date +%s) - T0 ))s] $*"; }

if [ "$MODE" = cpu ]; then
    PY=${PYTHON:-/usr/bin/python3}
    BUILD=${BUILD:-build}
    SIZE=tiny
    SECONDS_PER=${GPU_BENCH_SECONDS:-1}
    RAW_SECONDS=0.5
    PT2_EXPORT_TIMEOUT=${PT2_EXPORT_TIMEOUT:-300}
else
    PY=${PYTHON:-python3}
    BUILD=${BUILD:-build-gpu}
    SIZE=resnet18
    SECONDS_PER=${GPU_BENCH_SECONDS:-5}
    RAW_SECONDS=2
    PT2_EXPORT_TIMEOUT=${PT2_EXPORT_TIMEOUT:-240}
fi
OUTDIR=${OUT:-$BUILD/gpu-results}
mkdir -p "$OUTDIR"
exec > >(tee "$OUTDIR/run.log") 2>&1

MAKEVARS=(BUILD="$BUILD")
WRK=wrk
if [ ! -f /usr/include/microhttpd.h ] || ! command -v wrk >/dev/null; then
    DEPS=/tmp/inferd-deps
    rm -rf "$DEPS" && mkdir -p "$DEPS"
    for f in .device/*.deb; do dpkg -x "$f" "$DEPS"; done
    MAKEVARS+=(DEPS_ROOT="$DEPS")
    WRK="$DEPS/usr/bin/wrk"
    export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# gRPC's headers are not among the .deb files: build without the gRPC front end.
[ -f /usr/include/grpc/grpc.h ] || MAKEVARS+=(WITH_GRPC=0)
TORCH_DIR=$("$PY" -c 'import torch,os;print(os.path.dirname(torch.__file__))')
say "mode $MODE; torch $("$PY" -c 'import torch;print(torch.__version__, "cuda", torch.cuda.is_available())') at $TORCH_DIR"
[ "$MODE" = gpu ] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# The .pt2 part: python's torch must export packages, the build serve them.
PT2_DEVICE=$([ "$MODE" = gpu ] && echo cuda || echo cpu)
PT2_SKIP=()
"$PY" -c 'import sys, torch
sys.exit(tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (2, 6))' ||
    PT2_SKIP+=("python torch $("$PY" -c 'import torch;print(torch.__version__)') cannot export AOTInductor packages (needs 2.6 or newer)")
[[ $(make -s "${MAKEVARS[@]}" TORCH_DIR="$TORCH_DIR" help) == *".pt2: yes"* ]] ||
    PT2_SKIP+=("this build of inferd does not serve .pt2 (make help: .pt2: no; libtorch 2.6 or newer needed)")
if [ ${#PT2_SKIP[@]} -eq 0 ]; then
    PT2_ARGS=(--pt2)
    say ".pt2: exporting the bench model as a $PT2_DEVICE package too"
else
    PT2_WHY=${PT2_SKIP[0]}
    [ ${#PT2_SKIP[@]} -gt 1 ] && PT2_WHY+="; ${PT2_SKIP[1]}"
    PT2_ARGS=(--pt2-skip "$PT2_WHY")
    if [ "${INFERD_TEST_PT2:-0}" = 1 ]; then
        say "INFERD_TEST_PT2=1 but the .pt2 part cannot run: $PT2_WHY"
        exit 1
    fi
    say ".pt2 part skipped: $PT2_WHY"
fi

say "models ($SIZE)"
MODELS=$BUILD/gpu-models
rm -rf "$MODELS"
"$PY" tests/gpu/make_models.py --size "$SIZE" "$MODELS"

# The .pt2 export (a minute or two on a GPU) runs while inferd builds, under
# a time limit: a failed or slow export costs the TorchScript half nothing.
if [ ${#PT2_SKIP[@]} -eq 0 ]; then
    say ".pt2 export in the background (limit ${PT2_EXPORT_TIMEOUT}s): log in $OUTDIR/pt2-export.log"
    timeout "$PT2_EXPORT_TIMEOUT" "$PY" tests/gpu/make_models.py --size "$SIZE" --pt2 "$PT2_DEVICE" \
        "$MODELS" >"$OUTDIR/pt2-export.log" 2>&1 &
    export_pid=$!
fi

say "build"
make -j"$(nproc)" "${MAKEVARS[@]}" TORCH_DIR="$TORCH_DIR" PYTHON="$PY" all "$BUILD/bench/raw_shim" >"$OUTDIR/build.log" 2>&1 ||
    { tail -40 "$OUTDIR/build.log"; [ -z "${export_pid:-}" ] || kill "$export_pid" 2>/dev/null; exit 1; }
say "built: $("$BUILD/inferd" --help 2>&1 | head -1)"

if [ ${#PT2_SKIP[@]} -eq 0 ]; then
    export_rc=0
    wait "$export_pid" || export_rc=$?
    tail -5 "$OUTDIR/pt2-export.log"
    if [ ! -f "$MODELS/pt2-export.json" ]; then  # killed before it could say
        why="make_models.py --pt2 exited with status $export_rc"
        [ "$export_rc" -eq 124 ] && why="the export took longer than ${PT2_EXPORT_TIMEOUT} s and was stopped"
        printf '{"ok": false, "error": "%s"}\n' "$why" >"$MODELS/pt2-export.json"
    fi
    say ".pt2 export finished (exit $export_rc)"
fi

say "checks and benchmark"
rc=0
"$PY" tests/gpu/gpu_check.py --mode "$MODE" --inferd "$BUILD/inferd" --raw "$BUILD/bench/raw_shim" \
    --models "$MODELS" --out "$OUTDIR" --wrk "$WRK" --seconds "$SECONDS_PER" \
    --raw-seconds "$RAW_SECONDS" --command "tests/gpu/run.sh${1:+ $1}" "${PT2_ARGS[@]}" || rc=$?
say "CUDA shared memory ($MODE: $([ "$MODE" = gpu ] && echo "IPC handle from python torch, in and out" || echo "refused without CUDA"))"
"$PY" tests/gpu/cuda_shm_check.py --mode "$MODE" --inferd "$BUILD/inferd" --out "$OUTDIR" || rc=1
say "GPU memory per instance, UINT8 normalised on the device, the GPU by UUID ($MODE)"
"$PY" tests/gpu/memory_check.py --mode "$MODE" --inferd "$BUILD/inferd" --out "$OUTDIR" || rc=1
say "done (exit $rc); results in $OUTDIR/gpu-results.md"
exit $rc
