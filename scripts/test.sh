#!/bin/sh
# test.sh - the whole test suite on a fresh Debian 12 machine (as root):
# installs what is missing, checks that no modules include each other in a
# cycle, builds, runs the C unit tests and the integration tests, the same
# again under ASan+UBSan, the CUDA-path compile check, the GPU check script in
# its CPU mode, a short fuzz run, and the deploy test (Docker engine, Compose,
# nginx, Swarm, k8s manifests). The README's test command; .ci/run calls it.
#
# The deploy images are prepared in the background (mostly network-bound:
# debootstrap and apt downloads) while the CPU-bound suites run.
# SKIP_DEPLOY=1 leaves the deploy test out.
set -eu
cd "$(dirname "$0")/.."
T0=$(date +%s)
say() { echo "[test +$(( $(date +%s) - T0 ))s] $*"; }
deploy=$([ "${SKIP_DEPLOY:-0}" = 1 ] && echo 0 || echo 1)
WITH_DEPLOY=$deploy scripts/install-deps.sh
mkdir -p build
prep=""
if [ "$deploy" = 1 ]; then
    PREPARE_ONLY=1 tests/deploy/run.sh >build/deploy-prepare.log 2>&1 &
    prep=$!
fi
JOBS=$(nproc)
say "layering: no include cycles between modules"
make check-layers
say "build"
make -j"$JOBS" all
say "unit + integration tests"
make test
say "the same under ASan + UBSan"
make -j"$JOBS" SANITIZE=1 all
make SANITIZE=1 test
make cuda-syntax
say "GPU check script, CPU mode (tiny model)"
tests/gpu/run.sh --cpu
say "fuzz"
make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
if [ -n "$prep" ]; then
    say "waiting for the deploy images"
    if ! wait "$prep"; then
        tail -40 build/deploy-prepare.log
        echo "deploy image preparation failed" >&2
        exit 1
    fi
    tail -3 build/deploy-prepare.log
    say "deploy test"
    SKIP_BUILD=1 tests/deploy/run.sh
fi
say "all tests passed"
