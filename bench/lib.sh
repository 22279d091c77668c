# lib.sh - shell helpers the bench scripts share (sourced, not run): a free
# loopback port, waiting for a server to answer ready, a process's CPU ticks.

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    "${PY:-/usr/bin/python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready URL PID: 0 once URL answers 200, 1 if PID exits or
# READY_TIMEOUT_S (60) passes first.
wait_ready() {
    local url=$1 pid=$2 _i
    for _i in $(seq 1 $((${READY_TIMEOUT_S:-60} * 10))); do
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# User + system CPU ticks (getconf CLK_TCK per second) of process PID.
cpu_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
