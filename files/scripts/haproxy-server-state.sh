#!/bin/sh
# haproxy-server-state.sh: take one web server out of HAProxy's rotation before it is updated (drain)
# and put it back once its health check passes again (ready), through HAProxy's admin socket, so a
# rolling update never sends a request to a server that is restarting.
#
# Usage: haproxy-server-state.sh drain|ready SERVER_NAME   (run as root on the load balancer)
#   drain: `set server BACKEND/SERVER state drain` (no new requests; current ones finish), then wait
#          until the server has no current session and nothing queued.
#   ready: `set server BACKEND/SERVER state ready`, then wait until its health check reports it UP.
#   A server (or backend) HAProxy does not know yet, e.g. on a first deploy before haproxy.cfg lists
#   it, exits 0 with a note: there is no traffic to drain, and the next haproxy.cfg adds it checked.
#   Exit non-zero with a message on timeout, when HAProxy refuses, or when the socket does not answer.
# Idempotent: draining a drained server or readying a ready one only waits for the same state.
#
# Environment:
#   SOCKET   HAProxy's admin socket (default /run/haproxy/admin.sock, rendered in haproxy.cfg)
#   BACKEND  backend holding the web servers (default web_servers)
#   TIMEOUT  seconds to wait for the state (default 60)
set -eu

SOCKET=${SOCKET:-/run/haproxy/admin.sock}
BACKEND=${BACKEND:-web_servers}
TIMEOUT=${TIMEOUT:-60}

usage() {
    echo "usage: $0 drain|ready SERVER_NAME (env SOCKET, BACKEND, TIMEOUT)" >&2
    exit 2
}

[ "$#" -eq 2 ] || usage
action=$1
server=$2
case $action in drain | ready) ;; *) usage ;; esac
# Names go into a CLI command line, where ';' or a space would start another command or argument.
for name in "$server" "$BACKEND"; do
    case $name in
        "" | *[!A-Za-z0-9._:-]*)
            echo "refused: '$name' is not an HAProxy name (letters, digits, '.', '_', ':', '-')" >&2
            exit 2
            ;;
    esac
done
case $TIMEOUT in
    "" | *[!0-9]*)
        echo "refused: TIMEOUT='$TIMEOUT' is not a number of seconds" >&2
        exit 2
        ;;
esac

# haproxy-lab: include lib/haproxy-cli.sh

# "<scur> <qcur> <status>" of the server from `show stat` (status last: it may hold spaces, "UP 1/2").
server_stat() {
    haproxy_cli "$SOCKET" "show stat" | awk -F, -v be="$BACKEND" -v sv="$server" '
        NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 == be && $2 == sv { print $col["scur"], $col["qcur"], $col["status"]; found = 1 }
        END { if (!found) exit 1 }'
}

answer=$(haproxy_cli "$SOCKET" "set server $BACKEND/$server state $action") || {
    echo "cannot reach HAProxy's admin socket $SOCKET (is HAProxy running?)" >&2
    exit 1
}
case $answer in
    "") ;;
    "No such server."* | "No such backend."*)
        echo "note: HAProxy does not know $BACKEND/$server yet (${answer%%.*}): nothing to $action;" \
            "haproxy.cfg adds it with health checks"
        exit 0
        ;;
    *)
        echo "HAProxy refused 'set server $BACKEND/$server state $action': $answer" >&2
        exit 1
        ;;
esac

deadline=$(($(date +%s) + TIMEOUT))
last="unknown"
while :; do
    if stat=$(server_stat); then
        read -r scur qcur status <<EOF
$stat
EOF
        last="$status, $scur session(s), $qcur queued"
        if [ "$action" = drain ] && [ "$scur" = 0 ] && [ "${qcur:-0}" = 0 ]; then
            echo "$BACKEND/$server drained: no session left ($status)"
            exit 0
        fi
        if [ "$action" = ready ] && [ "$status" = UP ]; then
            echo "$BACKEND/$server ready: UP by its health check"
            exit 0
        fi
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        if [ "$action" = drain ]; then
            echo "timeout: $BACKEND/$server still busy after ${TIMEOUT}s ($last)" >&2
        else
            echo "timeout: $BACKEND/$server not UP after ${TIMEOUT}s ($last); is the app answering its health check?" >&2
        fi
        exit 1
    fi
    sleep 0.1
done
