#!/bin/sh
# install-deps.sh - install the Debian 12 packages inferd needs to build, run
# and test. Installs only what is missing; needs root (or sudo).
set -eu
PACKAGES="build-essential libtorch-dev python3-torch python3-numpy libmicrohttpd-dev
libcjson-dev dataset-fashion-mnist libcmocka-dev python3-pytest python3-requests
clang-14 libclang-rt-14-dev prometheus"
[ "${WITH_BENCH:-0}" = 1 ] && PACKAGES="$PACKAGES wrk python3-flask gunicorn gnuplot-nox"
[ "${WITH_DEPLOY:-0}" = 1 ] && PACKAGES="$PACKAGES docker.io docker-compose debootstrap python3-yaml nodejs npm"
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
