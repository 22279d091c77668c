#!/bin/sh
# trixie-root.sh - a cached Debian 13 (trixie) root with libtorch 2.6, for
# building and testing inferd's AOTInductor (.pt2) runtime on a Debian 12
# machine (whose libtorch is 1.13). Needs root, debootstrap and chroot.
#
#   scripts/trixie-root.sh setup              make or update the root (cached)
#   scripts/trixie-root.sh run CMD [ARGS...]  run CMD in the root, in a copy-free
#                                             bind mount of this checkout, as root
#
# The root lives in $INFERD_TRIXIE_ROOT (default /var/cache/inferd-env/trixie).
# Setup debootstraps it once (about 30 s) and installs the packages below (a
# few minutes the first time, mostly downloads: about 2.3 GB in all); later
# setups only install what a changed package list adds. `run` bind-mounts
# /proc, /dev and this checkout (at /inferd) and unmounts them when CMD ends,
# whatever its status.
#
# env: INFERD_TRIXIE_ROOT, DEBIAN_MIRROR (default: apt's own mirror)
set -eu
ROOT=${INFERD_TRIXIE_ROOT:-/var/cache/inferd-env/trixie}
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# libtorch-dev 2.6 to build; python3-torch 2.6 to export .pt2 packages (its
# AOTInductor compile step needs g++, python3-dev and python3-setuptools);
# the rest builds and tests inferd as on Debian 12, and benchmarks it.
PACKAGES="libtorch-dev python3-torch python3-numpy g++ make python3-setuptools python3-dev
libmicrohttpd-dev libcjson-dev libcmocka-dev python3-pytest python3-requests libturbojpeg0-dev libpng-dev zlib1g-dev
libgrpc-dev libprotobuf-c-dev protobuf-c-compiler python3-grpcio python3-grpc-tools python3-protobuf openssl
dataset-fashion-mnist wrk python3-flask gunicorn curl procps prometheus python3-pil python3-torchvision"
SRC=$(cd "$(dirname "$0")/.." && pwd)

setup() {
    if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
        command -v debootstrap >/dev/null || {
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        }
        mkdir -p "$(dirname "$ROOT")"
        echo "trixie-root: debootstrap trixie into $ROOT from $MIRROR (about 30 s)"
        debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
            tail -20 "$ROOT.debootstrap.log" >&2; exit 1; }
        printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
            >"$ROOT/etc/apt/apt.conf.d/99inferd"
    fi
    want=$(echo $PACKAGES | tr ' ' '\n' | sort | tr '\n' ' ')
    [ "$(cat "$ROOT/.inferd-packages" 2>/dev/null)" = "$want" ] && return 0
    echo "trixie-root: installing packages into $ROOT (a few minutes the first time)"
    in_root sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $(echo $PACKAGES) >/dev/null && apt-get clean"
    echo "$want" >"$ROOT/.inferd-packages"
}

# Run a command in the root with /proc, /dev, /dev/pts and this checkout (at
# /inferd) mounted; unmount what this call mounted when it ends.
in_root() {
    mounted=""
    cleanup() {
        for m in $mounted; do umount -l "$m" 2>/dev/null || true; done
        mounted=""
    }
    trap cleanup EXIT INT TERM
    mkdir -p "$ROOT/inferd"
    mount --bind "$SRC" "$ROOT/inferd" && mounted="$ROOT/inferd"
    mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc" && mounted="$ROOT/proc $mounted"; }
    mountpoint -q "$ROOT/dev" || { mount --bind /dev "$ROOT/dev" && mounted="$ROOT/dev $mounted"; }
    mountpoint -q "$ROOT/dev/pts" || { mount --bind /dev/pts "$ROOT/dev/pts" && mounted="$ROOT/dev/pts $mounted"; }
    rc=0
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        TERM="${TERM:-dumb}" /bin/sh -c 'cd /inferd && exec "$@"' sh "$@" || rc=$?
    cleanup
    trap - EXIT INT TERM
    return $rc
}

run() {
    [ -f "$ROOT/.inferd-packages" ] || setup
    in_root "$@"
}

case "${1:-}" in
setup) setup ;;
run) shift; [ $# -gt 0 ] || { echo "usage: $0 run CMD [ARGS...]" >&2; exit 2; }; run "$@" ;;
*) echo "usage: $0 setup | run CMD [ARGS...]" >&2; exit 2 ;;
esac
