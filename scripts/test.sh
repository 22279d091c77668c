#!/bin/sh
# test.sh - the whole test suite on a fresh Debian 12 machine: installs what
# is missing, builds, runs unit and integration tests, the same again under
# ASan+UBSan, and a short fuzz run. The README's test command.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
JOBS=$(nproc)
make -j"$JOBS" all
make test
make -j"$JOBS" SANITIZE=1 all
make SANITIZE=1 test
make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
echo "all tests passed"
