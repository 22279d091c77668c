#!/bin/sh
# serve.sh - run inferd on the default model on a fresh Debian 12 machine:
# installs what is missing, builds, and serves models/ on port 8080 (or $PORT).
# Extra arguments are passed to inferd, e.g. scripts/serve.sh --log-format json
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
make -j"$(nproc)" all
exec build/inferd --port "${PORT:-8080}" --model-repository models "$@"
