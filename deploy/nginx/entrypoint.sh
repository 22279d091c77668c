#!/bin/sh
# entrypoint.sh - the inferd-nginx image's entry point. It writes nothing:
# it checks that inferd's configuration is mounted (docker-compose.yml
# mounts the repository's nginx.conf at /etc/nginx/nginx.conf and the
# files it includes under /etc/nginx/inferd/), lets nginx check it, and
# runs nginx in the foreground. Arguments are passed to nginx.
set -eu
for f in /etc/nginx/inferd/servers.conf /etc/nginx/inferd/site.conf; do
    [ -r "$f" ] || {
        echo "inferd-nginx: no $f: mount inferd's nginx configuration (nginx.conf and deploy/nginx/*.conf, as docker-compose.yml does)" >&2
        exit 2
    }
done
# nginx names the file and line of any error, e.g. a missing certificate
# when TLS is on: cannot load certificate "/etc/nginx/tls/server.crt".
nginx -t -q -e stderr
exec nginx -e stderr -g 'daemon off;' "$@"
