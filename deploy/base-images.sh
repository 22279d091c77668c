#!/bin/sh
# base-images.sh - make the Debian base images the Dockerfiles name, without
# Docker Hub: debootstrap a minimal root file system and `docker import` it.
#
#   debian:trixie-slim    inferd's CPU image (Dockerfile, VARIANT=cpu: libtorch 2.6)
#   debian:bookworm-slim  the Prometheus image (deploy/prometheus/Dockerfile)
#   debian:sid-slim       the nginx image (deploy/nginx/Dockerfile: nginx 1.30
#                         has `server ... resolve`; bookworm's 1.22 has not)
#
# That list is not kept by hand: without arguments the suites are read from
# the Dockerfiles the deploy test builds (deploy/dockerfile_bases.py), and
# tests/deploy/run.sh does the same from its own list of builds.
#
# Only for machines that cannot pull from a registry: with Docker Hub at hand,
# `docker pull debian:bookworm-slim` does the same. Images already present are
# kept. The root file systems are cached as tarballs in $INFERD_DEPLOY_CACHE
# (default /var/cache/inferd-deploy), so a new engine imports them in seconds.
#
# usage: deploy/base-images.sh [SUITE...]   (default: what the Dockerfiles name)
# env:   DOCKER (docker), INFERD_DEPLOY_CACHE, DEBIAN_MIRROR (apt's own mirror)
set -eu
DOCKER=${DOCKER:-docker}
CACHE=${INFERD_DEPLOY_CACHE:-/var/cache/inferd-deploy}
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [ $# -eq 0 ]; then
    here=$(dirname "$0")
    # shellcheck disable=SC2046
    set -- $(/usr/bin/python3 "$here/dockerfile_bases.py" --suites "$here/../Dockerfile:VARIANT=cpu" \
             "$here/nginx/Dockerfile" "$here/prometheus/Dockerfile")
    [ $# -gt 0 ] || { echo "base-images: no suites found in the Dockerfiles" >&2; exit 1; }
fi

make_rootfs() { # suite tarball
    suite=$1 tarball=$2 root=$(mktemp -d "${TMPDIR:-/tmp}/rootfs-$1.XXXXXX")
    echo "base-images: debootstrap $suite from $MIRROR (about 30 s)"
    if ! debootstrap --variant=minbase "$suite" "$root" "$MIRROR" >"$root.log" 2>&1; then
        tail -20 "$root.log" >&2; rm -rf "$root" "$root.log"; exit 1
    fi
    # Keep what a docker "-slim" image keeps: no apt lists or caches, no docs.
    if [ "$suite" = bookworm ] && [ -f /etc/apt/sources.list.d/debian.sources ] &&
       grep -q bookworm /etc/apt/sources.list.d/debian.sources; then
        # same suites as this host (bookworm, -updates, -security)
        cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
        rm -f "$root/etc/apt/sources.list"
    else
        echo "deb $MIRROR $suite main" >"$root/etc/apt/sources.list"
    fi
    # A snapshot mirror's Release files can be past their Valid-Until date.
    printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
        >"$root/etc/apt/apt.conf.d/99snapshot"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$root/etc/apt/apt.conf.d/99slim"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
           "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* \
           "$root"/usr/share/man/* "$root"/usr/share/locale/*
    mkdir -p "$CACHE"
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root" "$root.log"
}

for suite in "$@"; do
    tag=debian:$suite-slim
    if $DOCKER image inspect "$tag" >/dev/null 2>&1; then
        echo "base-images: $tag present"; continue
    fi
    tarball=$CACHE/$suite-minbase.tar
    [ -s "$tarball" ] || make_rootfs "$suite" "$tarball"
    $DOCKER import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
        "$tarball" "$tag" >/dev/null
    echo "base-images: imported $tag from $tarball"
done
