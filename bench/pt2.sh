#!/usr/bin/env bash
# pt2.sh - the default model as TorchScript and as an AOTInductor package
# (.pt2), in one run, in the Debian 13 root with libtorch 2.6: raw forward
# through the shim (bench/raw_shim.c) at batch 1 and 32, then inferd serving
# each format and the seed stack (Flask + gunicorn) through wrk
# (bench/run.sh), with the ratios (bench/report.py).
#
#   scripts/trixie-root.sh run bench/pt2.sh      (Debian 12 host, as root)
#   bench/pt2.sh                                 (on Debian 13 itself)
#
# Environment: BENCH_OUT [bench/out-pt2], RAW_SHIM_SECONDS [3], and
# bench/run.sh's (BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONCURRENCY, ...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BENCH_OUT=${BENCH_OUT:-bench/out-pt2}
BUILD=build/trixie
RAW_SECONDS=${RAW_SHIM_SECONDS:-3}
PT2_DIR=$BUILD/bench-models/fashion_mnist_pt2

python3 -c 'import torch; assert tuple(map(int, torch.__version__.split(".")[:2])) >= (2, 6), torch.__version__' ||
    { echo "pt2.sh: needs torch >= 2.6 (run it in scripts/trixie-root.sh's root)" >&2; exit 1; }
make -j"$(nproc)" BUILD=$BUILD all $BUILD/bench/raw_shim >/dev/null
[[ $(make help BUILD=$BUILD) == *".pt2: yes"* ]] || { echo "pt2.sh: this build has no .pt2 support" >&2; exit 1; }
[ -f $PT2_DIR/model.pt2 ] || make model-pt2 PT2_OUT=$PT2_DIR
mkdir -p "$BENCH_OUT"
echo "pt2.sh: $(date -u '+%F %T UTC'), $(nproc) cores, torch $(python3 -c 'import torch; print(torch.__version__)'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

# Raw forward through the shim: 1 instance, and 2 instances of one thread
# each (what inferd runs on 2 cores).
for model in models/fashion_mnist/model.pt $PT2_DIR/model.pt2; do
    echo "pt2.sh: raw forward, $model"
    $BUILD/bench/raw_shim --model "$model" --shape 1,28,28 --device cpu --batches 1,32 \
        --threads 1,2 --seconds "$RAW_SECONDS" | sed "s|^RAW |RAW model=${model##*.} |"
done | tee "$BENCH_OUT/raw_shim.txt"

# The servers: TorchScript and .pt2 served by the same binary, same
# settings (the exported config.json keeps the default model's), then the seed.
INFERD=$BUILD/inferd \
BENCH_INFERD_CONFIGS="torchscript=;pt2=--model-repository $PT2_DIR/.. --default-model fashion_mnist_pt2" \
BENCH_RAW_SECONDS=0 PYTHON=python3 bench/run.sh
