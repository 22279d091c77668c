#!/usr/bin/env bash
# tests/gpu/run.sh - inferd's CUDA path in one call: build against the
# machine's torch, generate the bench models, check correctness against
# python torch on the CPU, benchmark against raw libtorch, write the results.
#
#   tests/gpu/run.sh           on a GPU machine (python3 with a CUDA torch);
#                              results in $OUT (the device tool's folder) or
#                              build-gpu/results/
#   tests/gpu/run.sh --cpu     the same steps on the CPU with a tiny model
#                              (CI runs this, so the script cannot rot)
#
# libmicrohttpd, cJSON, TurboJPEG, libpng and wrk come from .device/*.deb
# (libturbojpeg0, libturbojpeg0-dev, libpng16-16, libpng-dev, zlib1g-dev) when the machine has
# none installed (they are unpacked under /tmp/inferd-deps; nothing is
# installed). Exit status 1 when a correctness check fails; benchmark targets
# are reported, never enforced.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
T0=$(date +%s)
say() { echo "[gpu +$(( $(date +%s) - T0 ))s] $*"; }

if [ "$MODE" = cpu ]; then
    PY=${PYTHON:-/usr/bin/python3}
    BUILD=build
    SIZE=tiny
    SECONDS_PER=${GPU_BENCH_SECONDS:-1}
    RAW_SECONDS=0.5
else
    PY=${PYTHON:-python3}
    BUILD=build-gpu
    SIZE=resnet18
    SECONDS_PER=${GPU_BENCH_SECONDS:-5}
    RAW_SECONDS=2
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
TORCH_DIR=$("$PY" -c 'import torch,os;print(os.path.dirname(torch.__file__))')
say "mode $MODE; torch $("$PY" -c 'import torch;print(torch.__version__, "cuda", torch.cuda.is_available())') at $TORCH_DIR"
[ "$MODE" = gpu ] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

say "build"
make -j"$(nproc)" "${MAKEVARS[@]}" TORCH_DIR="$TORCH_DIR" PYTHON="$PY" all "$BUILD/bench/raw_shim" >"$OUTDIR/build.log" 2>&1 ||
    { tail -40 "$OUTDIR/build.log"; exit 1; }
say "built: $("$BUILD/inferd" --help 2>&1 | head -1)"

say "models ($SIZE)"
MODELS=$BUILD/gpu-models
rm -rf "$MODELS"
"$PY" tests/gpu/make_models.py --size "$SIZE" "$MODELS"

say "checks and benchmark"
rc=0
"$PY" tests/gpu/gpu_check.py --mode "$MODE" --inferd "$BUILD/inferd" --raw "$BUILD/bench/raw_shim" \
    --models "$MODELS" --out "$OUTDIR" --wrk "$WRK" --seconds "$SECONDS_PER" \
    --raw-seconds "$RAW_SECONDS" --command "tests/gpu/run.sh${1:+ $1}" || rc=$?
say "done (exit $rc); results in $OUTDIR/gpu-results.md"
exit $rc
