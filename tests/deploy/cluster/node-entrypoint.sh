#!/bin/sh
# The cluster test's node: one dockerd with its own data root, iptables on
# (the node is its own network namespace: Swarm's overlay networks and
# published ports program its tables, never the host's), listening on the
# node's own socket and on /run/inferd-node/docker.sock (a host folder).
# Extra arguments go to dockerd.
#
# The node runs with every capability the host allows instead of
# --privileged (this sandbox lacks CAP_SYS_RESOURCE, and --privileged asks
# for all): Docker then mounts the cgroup hierarchies read-only, so they are
# mounted again here, writable, and the node's containers go under
# /inferd-swarm-node/<hostname> in each.
set -eu
awk '$5 ~ /^\/sys\/fs\/cgroup\// && $6 ~ /^ro/ {print $5, $NF}' /proc/self/mountinfo |
while read -r dir opts; do
    umount "$dir"
    mount -t cgroup -o "${opts#rw,}" cgroup "$dir"
done
mkdir -p /run/inferd-node
rm -f /run/inferd-node/docker.sock
exec dockerd --storage-driver=overlay2 --data-root /var/lib/docker \
    --cgroup-parent "/inferd-swarm-node/$(hostname)" \
    -H unix:///var/run/docker.sock -H unix:///run/inferd-node/docker.sock "$@"
