#!/bin/sh
# PLACEHOLDER (haproxy-lab day-2 wiring): the real script is being written separately; this minimal
# version only fixes the interface the Pulumi program relies on. Replace it wholesale.
#
# haproxy-server-state.sh: take one web server out of HAProxy's rotation before its redeploy, and put
# it back after.
#
# Usage: haproxy-server-state.sh drain|ready SERVER_NAME      (run as root on the load balancer)
#   drain  set the server to DRAIN, wait (bounded) until it has no sessions left
#   ready  set the server to READY, wait (bounded) until its health check passes
# Exits non-zero on a timeout, or when HAProxy refuses (unknown server, no socket).
# Environment: SOCKET (default /run/haproxy/admin.sock), BACKEND (default web_servers),
#              WAIT_SECONDS (default 120)
set -eu

SOCKET=${SOCKET:-/run/haproxy/admin.sock}
BACKEND=${BACKEND:-web_servers}
WAIT_SECONDS=${WAIT_SECONDS:-120}

if [ "$#" -ne 2 ] || { [ "$1" != drain ] && [ "$1" != ready ]; }; then
    echo "usage: $0 drain|ready SERVER_NAME" >&2
    exit 64
fi
action=$1
server=$2

api() {
    printf '%s\n' "$1" | nc -U "$SOCKET"
}

# The server's sessions (scur, column 5) and status (column 18) come from `show stat`.
answer=$(api "set server $BACKEND/$server state $action")
if [ -n "$answer" ]; then
    echo "haproxy refused: $answer" >&2
    exit 1
fi

deadline=$(($(date +%s) + WAIT_SECONDS))
while :; do
    line=$(api "show stat" | awk -F, -v b="$BACKEND" -v s="$server" '$1 == b && $2 == s { print; exit }')
    if [ -z "$line" ]; then
        echo "haproxy does not know $BACKEND/$server" >&2
        exit 1
    fi
    sessions=$(printf '%s\n' "$line" | cut -d, -f5)
    status=$(printf '%s\n' "$line" | cut -d, -f18)
    if [ "$action" = drain ] && [ "$sessions" = 0 ]; then
        echo "$server drained"
        exit 0
    fi
    if [ "$action" = ready ] && [ "${status%% *}" = UP ]; then
        echo "$server ready"
        exit 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "$server: still $status with $sessions session(s) after ${WAIT_SECONDS}s" >&2
        exit 1
    fi
    sleep 1
done
