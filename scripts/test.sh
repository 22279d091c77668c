#!/bin/sh
# test.sh - the whole test suite on a fresh Debian 12 machine (as root):
# installs what is missing, checks that no modules include each other in a
# cycle, builds, runs the C unit tests and the integration tests, the same
# again under ASan+UBSan, the CUDA-path compile check, the GPU check script in
# its CPU mode, a short fuzz run, and the deploy test (Docker engine, Compose,
# nginx, Swarm, k8s manifests). The README's test command; .ci/run calls it.
#
# Then, in a cached Debian 13 root with libtorch 2.6 (scripts/trixie-root.sh):
# the build, the default model exported as an AOTInductor package (make
# model-pt2), the integration suite again, .pt2 tests included, and the GPU
# check script's CPU mode again, whose .pt2 part runs there (export, checks
# against the eager model and python's loader, raw_shim and wrk rows).
#
# The deploy images and the Debian 13 root are prepared in the background
# (mostly network-bound: debootstrap and apt downloads) while the CPU-bound
# suites run. SKIP_DEPLOY=1 leaves the deploy test out.
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
scripts/trixie-root.sh setup >build/trixie-setup.log 2>&1 &
trixie=$!
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
say "waiting for the Debian 13 root"
if ! wait "$trixie"; then
    tail -40 build/trixie-setup.log
    echo "Debian 13 root preparation failed" >&2
    exit 1
fi
say "libtorch 2.6 (Debian 13 root): build, make model-pt2, integration tests with .pt2, GPU check script (CPU mode, with .pt2)"
# The package goes under build/, not models/: the CPU image bakes models/ in.
scripts/trixie-root.sh run sh -c "make -j$JOBS BUILD=build/trixie all && \
    make model-pt2 PT2_OUT=build/trixie/fashion_mnist_pt2 && \
    INFERD_TEST_PT2=1 INFERD_TEST_PT2_DIR=build/trixie/fashion_mnist_pt2 \
    make BUILD=build/trixie test-integration && \
    INFERD_TEST_PT2=1 BUILD=build/trixie tests/gpu/run.sh --cpu"
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
