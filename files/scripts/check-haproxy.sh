#!/bin/sh
# check-haproxy.sh: keepalived's track script (vrrp_script haproxy_alive). Is HAProxy answering HTTP?
#
# Usage: check-haproxy.sh URL   (URL: HAProxy's loopback liveness URI, e.g. http://127.0.0.1:8405/haproxy-alive)
# Exit 0: every probe answered (or one failure followed by a success); exit 1: two probes in a row failed.
# keepalived cannot run a script more often than once a second, so one run probes PROBES times, PAUSE seconds
# apart (about 0.8 s in all), and stops at the second failure in a row: a dead HAProxy (connection refused) is
# noticed within about half a second, a frozen one (no answer within MAX_TIME) within about a second.
#
# Environment (for tests; defaults are right for the VMs):
#   PROBES    probes per run (default 6)
#   PAUSE     seconds between probes (default 0.15)
#   MAX_TIME  seconds one probe may take (default 0.25)
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 URL" >&2
    exit 2
fi
URL=$1
PROBES=${PROBES:-6}
PAUSE=${PAUSE:-0.15}
MAX_TIME=${MAX_TIME:-0.25}

failed=0
probe=0
# One more probe when the last one failed, so a single lost probe never fails the check.
while [ "$probe" -lt "$PROBES" ] || [ "$failed" -gt 0 ]; do
    if curl --fail --silent --output /dev/null --max-time "$MAX_TIME" "$URL"; then
        failed=0
    else
        failed=$((failed + 1))
        if [ "$failed" -ge 2 ]; then
            exit 1
        fi
    fi
    probe=$((probe + 1))
    sleep "$PAUSE"
done
exit 0
