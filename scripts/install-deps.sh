#!/bin/sh
# install-deps.sh - install the Debian 12 packages inferd needs to build, run
# and test. Installs only what is missing; needs root (or sudo).
set -eu
PACKAGES="build-essential libtorch-dev python3-torch python3-numpy libmicrohttpd-dev
libcjson-dev dataset-fashion-mnist libcmocka-dev python3-pytest python3-requests
clang-14 libclang-rt-14-dev prometheus wrk libturbojpeg0-dev libpng-dev python3-pil
python3-torchvision curl zlib1g-dev libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
python3-grpcio python3-grpc-tools python3-protobuf openssl python3-hpack nginx-light"
# python3-hpack and nginx-light: tests/integration/test_grpc_drain.py frames
# a gRPC call by hand and runs nginx (its own process, its own config) in
# front of two daemons; Debian's nginx-light also enables the system nginx
# service where systemd runs it.
# Test photos come from python3-skimage's data folder: models/make_image_data.py
# extracts them from `apt-get download python3-skimage` (no install: the
# package pulls in 40 others) unless the package is installed.
[ "${WITH_BENCH:-0}" = 1 ] && PACKAGES="$PACKAGES wrk python3-flask gunicorn gnuplot-nox valgrind python3-fastapi uvicorn"
[ "${WITH_DEPLOY:-0}" = 1 ] && PACKAGES="$PACKAGES docker.io docker-compose debootstrap python3-yaml nodejs npm curl openssl python3-jsonschema"
# node and npm installed from elsewhere (e.g. NodeSource's nodejs, which
# conflicts with Debian's npm package) do as well.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    PACKAGES=$(echo "$PACKAGES" | tr ' \n' '\n\n' | grep -v -x -e nodejs -e npm | tr '\n' ' ')
fi
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
