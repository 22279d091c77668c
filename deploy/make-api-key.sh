#!/bin/sh
# make-api-key.sh - make a random API key, append it to the key file that
# docker-compose.yml mounts into every replica, and print it once.
#
#   deploy/make-api-key.sh [FILE]     (default deploy/secrets/api-keys)
#
# The file is left mode 0600 and, as root, owned by uid 10001 (the inferd
# image's user), so that only the daemon can read it. Running replicas
# re-read it on SIGHUP: docker compose kill -s HUP inference
# To revoke a key, delete its line and send SIGHUP again.
set -eu
FILE=${1:-$(dirname "$0")/secrets/api-keys}
command -v openssl >/dev/null || { echo "make-api-key.sh: needs openssl" >&2; exit 2; }
mkdir -p "$(dirname "$FILE")"
umask 077
key=$(openssl rand -hex 32)
printf '%s\n' "$key" >>"$FILE"
chmod 600 "$FILE"
[ "$(id -u)" = 0 ] && chown "${INFERD_UID:-10001}:${INFERD_UID:-10001}" "$FILE"
echo "$key"
