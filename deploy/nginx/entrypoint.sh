#!/bin/sh
# entrypoint.sh - the inferd-nginx image's entry point: render the nginx
# configuration from the environment into /tmp/nginx (the root file system
# is read-only), check it, and run nginx in the foreground.
#
#   NGINX_TLS=on|off         on: TLS (HTTP/2, TLS 1.2+, HSTS) on 8443, with
#                            server.crt and server.key from /etc/nginx/tls
#                            (a mounted folder). Default on.
#   NGINX_HTTP=redirect|plain  what 8080 does when TLS is on: redirect to
#                            https (308; /nginx-health still answers) or serve
#                            the same API in plain HTTP. Default redirect.
#                            With NGINX_TLS=off, 8080 serves plain HTTP.
#   NGINX_SERVER_NAME        the name clients reach this server by (default
#                            localhost): the redirect's Location names it,
#                            never the client's Host header.
#   NGINX_HTTPS_PUBLIC_PORT  the port clients reach 8443 on, for the
#                            redirect's Location (default 443).
#   NGINX_RATE               requests per second (or minute) per client
#                            address, nginx syntax: 50r/s (default), 600r/m.
#   NGINX_BURST              requests over the rate accepted at once before
#                            429 (default 100).
#   NGINX_CONN               requests in progress per client address before
#                            429 (default 64).
#   NGINX_BIG_BODIES         uploads over 2 MB in progress at once, all
#                            clients together, before 429 (default 8); the
#                            /tmp tmpfs must hold NGINX_BIG_BODIES x 40 MiB
#                            (docker-compose.yml sizes it so).
#   NGINX_READ_TIMEOUT       how long a replica may take to answer (default
#                            60s); also how long a request waits on a
#                            replica whose host died before another replica
#                            gets it (docs/deploy-swarm.md).
#   NGINX_DEBUG_UPSTREAM=1   add X-Upstream (the replica's internal address)
#                            to answers; off by default: it reveals the
#                            internal network.
set -eu
SRC=/etc/nginx/inferd
OUT=/tmp/nginx
TLS=${NGINX_TLS:-on}
HTTP=${NGINX_HTTP:-redirect}
PUBLIC_PORT=${NGINX_HTTPS_PUBLIC_PORT:-443}
SERVER_NAME=${NGINX_SERVER_NAME:-localhost}
CONN=${NGINX_CONN:-64}
BIG_BODIES=${NGINX_BIG_BODIES:-8}
RATE=${NGINX_RATE:-50r/s}
BURST=${NGINX_BURST:-100}
DEBUG=${NGINX_DEBUG_UPSTREAM:-0}
READ_TIMEOUT=${NGINX_READ_TIMEOUT:-60s}

fail() { echo "inferd-nginx: $*" >&2; exit 2; }
case $TLS in on | off) ;; *) fail "NGINX_TLS must be on or off, not '$TLS'" ;; esac
case $HTTP in redirect | plain) ;; *) fail "NGINX_HTTP must be redirect or plain, not '$HTTP'" ;; esac
case $DEBUG in 0 | 1) ;; *) fail "NGINX_DEBUG_UPSTREAM must be 0 or 1, not '$DEBUG'" ;; esac
echo "$RATE" | grep -Eq '^[1-9][0-9]*r/[sm]$' ||
    fail "NGINX_RATE must look like 50r/s or 600r/m, not '$RATE'"
echo "$READ_TIMEOUT" | grep -Eq '^[1-9][0-9]*(ms|s|m)?$' ||
    fail "NGINX_READ_TIMEOUT must look like 60s or 500ms, not '$READ_TIMEOUT'"
echo "$BURST" | grep -Eq '^(0|[1-9][0-9]*)$' || fail "NGINX_BURST must be a whole number, not '$BURST'"
echo "$CONN" | grep -Eq '^[1-9][0-9]*$' || fail "NGINX_CONN must be a whole number above 0, not '$CONN'"
echo "$BIG_BODIES" | grep -Eq '^[1-9][0-9]*$' ||
    fail "NGINX_BIG_BODIES must be a whole number above 0, not '$BIG_BODIES'"
# a DNS name or an IPv4 address (it goes into the configuration as it is)
echo "$SERVER_NAME" | grep -Eq '^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$' ||
    fail "NGINX_SERVER_NAME must be a host name such as api.example.com, not '$SERVER_NAME'"
echo "$PUBLIC_PORT" | grep -Eq '^[1-9][0-9]*$' ||
    fail "NGINX_HTTPS_PUBLIC_PORT must be a port number, not '$PUBLIC_PORT'"
if [ "$TLS" = on ]; then
    for f in server.crt server.key; do
        [ -r "/etc/nginx/tls/$f" ] ||
            fail "NGINX_TLS=on needs /etc/nginx/tls/$f (readable by uid $(id -u)): mount a folder there (deploy/tls/make-dev-cert.sh makes one), or set NGINX_TLS=off"
    done
fi

mkdir -p "$OUT"
for t in "$SRC"/*.template; do
    sed -e "s|@NGINX_RATE@|$RATE|g" -e "s|@NGINX_BURST@|$BURST|g" -e "s|@NGINX_CONN@|$CONN|g" \
        -e "s|@NGINX_BIG_BODIES@|$BIG_BODIES|g" -e "s|@NGINX_READ_TIMEOUT@|$READ_TIMEOUT|g" "$t" \
        >"$OUT/$(basename "$t" .template)"
done

# shellcheck disable=SC2016  # nginx variables, written as they are
{
    echo 'add_header X-Request-ID $inferd_request_id always;'
    [ "$TLS" = on ] && echo 'add_header Strict-Transport-Security "max-age=31536000" always;'
    [ "$DEBUG" = 1 ] && echo 'add_header X-Upstream $upstream_addr always;'
    true
} >"$OUT/headers.conf"

# The configured name, not $host: a client's Host header must not choose
# where the redirect sends it.
redirect_to="https://$SERVER_NAME"
[ "$PUBLIC_PORT" = 443 ] || redirect_to="https://$SERVER_NAME:$PUBLIC_PORT"
{
    if [ "$TLS" = on ]; then
        cat <<CONF
server {
    listen 8443 ssl reuseport;
    server_name $SERVER_NAME;
    http2 on;
    ssl_certificate     /etc/nginx/tls/server.crt;
    ssl_certificate_key /etc/nginx/tls/server.key;
    include $SRC/tls-params.conf;
    include $OUT/inferd-api.conf;
}
CONF
    fi
    if [ "$TLS" = on ] && [ "$HTTP" = redirect ]; then
        cat <<CONF
server {
    listen 8080 reuseport;
    server_name $SERVER_NAME;
    limit_conn conn_per_client $CONN;
    location = /nginx-health {
        access_log off;
        default_type application/json;
        return 200 '{"status":"ok"}\n';
    }
    location / {
        return 308 $redirect_to\$request_uri;
    }
}
CONF
    else
        cat <<CONF
server {
    listen 8080 reuseport;
    server_name $SERVER_NAME;
    include $OUT/inferd-api.conf;
}
CONF
    fi
} >"$OUT/servers.conf"

echo "inferd-nginx: $SERVER_NAME, TLS $TLS, port 8080 $([ "$TLS" = on ] && echo "$HTTP" || echo plain), rate $RATE burst $BURST, $CONN per address, $BIG_BODIES large uploads, X-Upstream $([ "$DEBUG" = 1 ] && echo on || echo off)"
nginx -t -q -e stderr -c "$OUT/nginx.conf"
exec nginx -e stderr -c "$OUT/nginx.conf" -g 'daemon off;'
