#!/bin/sh
# make-dev-cert.sh - a local certificate authority and a server certificate
# signed by it, for development and for the deploy test (openssl only).
# Not for production: use your organisation's CA or ACME (e.g. certbot)
# and put server.crt (with its chain) and server.key in the same folder.
#
#   deploy/tls/make-dev-cert.sh [-o DIR] [NAME ...]
#
# Writes into DIR (default deploy/tls/out, which docker-compose.yml mounts
# at /etc/nginx/tls):
#   ca.crt      the local CA: give it to clients (curl --cacert ca.crt)
#   ca.key      its key (kept here so that more server certificates can be
#               signed; an existing CA is reused)
#   server.crt  for localhost, 127.0.0.1, ::1 and every NAME (DNS names or
#               IP addresses), valid 825 days
#   server.key  its key, mode 0600; as root, owned by uid 33 (www-data,
#               the nginx image's user) so that nginx can read it
# env: NGINX_UID (33) the owner of server.key when run as root.
set -eu
DIR=$(dirname "$0")/out
if [ "${1:-}" = -o ]; then
    [ $# -ge 2 ] || { echo "make-dev-cert.sh: -o needs a folder" >&2; exit 2; }
    DIR=$2
    shift 2
fi
command -v openssl >/dev/null || { echo "make-dev-cert.sh: needs openssl (apt-get install openssl)" >&2; exit 2; }
mkdir -p "$DIR"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
    case $name in
        *[!0-9.]*) case $name in *:*) san="$san,IP:$name" ;; *) san="$san,DNS:$name" ;; esac ;;
        *) san="$san,IP:$name" ;;
    esac
done

if [ ! -s "$DIR/ca.key" ] || [ ! -s "$DIR/ca.crt" ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$DIR/ca.key" -out "$DIR/ca.crt" -days 3650 -sha256 \
        -subj "/O=inferd development/CN=inferd development CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    echo "make-dev-cert.sh: new CA $DIR/ca.crt"
fi

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" \
    -subj "/O=inferd development/CN=${1:-localhost}" 2>/dev/null
cat >"$tmp/ext.cnf" <<CNF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
CNF
openssl x509 -req -in "$tmp/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -out "$tmp/server.crt" -days 825 -sha256 \
    -extfile "$tmp/ext.cnf" 2>/dev/null
openssl verify -CAfile "$DIR/ca.crt" "$tmp/server.crt" >/dev/null

chmod 600 "$tmp/server.key"
chmod 644 "$tmp/server.crt"
chmod 644 "$DIR/ca.crt"
chmod 755 "$DIR"
[ "$(id -u)" = 0 ] && chown "${NGINX_UID:-33}:${NGINX_UID:-33}" "$tmp/server.key"
mv "$tmp/server.key" "$DIR/server.key"
mv "$tmp/server.crt" "$DIR/server.crt"
echo "make-dev-cert.sh: $DIR/server.crt for $san (CA: $DIR/ca.crt)"
