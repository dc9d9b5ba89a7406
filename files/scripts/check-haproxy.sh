#!/bin/sh
# check-haproxy.sh: keepalived's track script (vrrp_script haproxy_alive). Is HAProxy answering HTTP?
#
# Usage: check-haproxy.sh URL   (URL: HAProxy's loopback liveness URI, e.g. http://127.0.0.1:8405/haproxy-alive)
# Exit 0: every probe answered (or one failure followed by a success); exit 1: two probes in a row failed.
# keepalived cannot run a script more often than once a second, so one run keeps probing, PAUSE seconds
# apart, for BUDGET_MS milliseconds, and stops at the second failure in a row: a dead HAProxy (connection
# refused) is noticed within about half a second, a frozen one (no answer within MAX_TIME) within about a
# second. The budget is a time, not a number of probes, so a busy VM cannot stretch a run past keepalived's
# one-second interval (keepalived skips the next run while one is still going: a blind second).
#
# Environment (for tests; defaults are right for the VMs):
#   BUDGET_MS  how long one run probes, in milliseconds (default 700)
#   PAUSE      seconds between probes (default 0.1)
#   MAX_TIME   seconds one probe may take (default 0.25)
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 URL" >&2
    exit 2
fi
URL=$1
BUDGET_MS=${BUDGET_MS:-700}
PAUSE=${PAUSE:-0.1}
MAX_TIME=${MAX_TIME:-0.25}

# Milliseconds since the epoch (GNU date, as on Ubuntu).
now_ms() {
    date +%s%3N
}

start=$(now_ms)
failed=0
while :; do
    if curl --fail --silent --output /dev/null --max-time "$MAX_TIME" "$URL"; then
        failed=0
    else
        failed=$((failed + 1))
        if [ "$failed" -ge 2 ]; then
            exit 1
        fi
    fi
    # Out of budget: done, unless the last probe failed (one more decides, so one lost probe never fails).
    if [ "$failed" -eq 0 ] && [ $(($(now_ms) - start)) -ge "$BUDGET_MS" ]; then
        exit 0
    fi
    sleep "$PAUSE"
done
