#!/bin/sh
# load-balancer-state.sh: before a load balancer is rebooted or deleted, hand its pair's virtual IP to the
# peer; once it is back, wait until it serves again. Which one holds the virtual IP is known only here, at
# run time (both keepalived BACKUP with nopreempt), so both load balancers run the same steps.
#
# Usage (as root on the load balancer):
#   load-balancer-state.sh handoff VIP   before a reboot: when this load balancer holds VIP, stop keepalived (it
#                                        drops the address and sends priority 0: the peer takes over at once),
#                                        then wait until VIP answers from elsewhere. If nothing answers within
#                                        WAIT seconds, start keepalived again and fail: the reboot must not take
#                                        the site down. Not holding VIP: nothing to hand off, keepalived stays.
#   load-balancer-state.sh release VIP   before a delete (replacement or destroy): the same, but never fails:
#                                        this load balancer goes whatever happens (a destroy takes both).
#   load-balancer-state.sh back [URL]    after a boot or a provisioning: wait until HAProxy answers on its admin
#                                        socket; with URL (a pair: HAProxy's loopback liveness URL), also until
#                                        keepalived runs and URL has answered for RISE seconds in a row
#                                        (keepalived leaves FAULT after two passing checks, one a second).
# Idempotent: a second handoff finds keepalived stopped and VIP elsewhere; back only waits.
#
# Environment (for tests; defaults are right for the VMs):
#   SOCKET   HAProxy's admin socket (default /run/haproxy/admin.sock)
#   WAIT     seconds for the peer to answer on VIP (default 10)
#   TIMEOUT  seconds `back` waits (default 240)
#   RISE     seconds the liveness URL must answer in a row (default 3)
set -eu

: "${SOCKET:=/run/haproxy/admin.sock}" "${WAIT:=10}" "${TIMEOUT:=240}" "${RISE:=3}"

usage() {
    echo "usage: $0 handoff|release VIP | back [URL] (env SOCKET, WAIT, TIMEOUT, RISE)" >&2
    exit 2
}

[ "$#" -ge 1 ] || usage
action=$1
case $action in
    handoff | release) [ "$#" -eq 2 ] || usage ;;
    back) [ "$#" -le 2 ] || usage ;;
    *) usage ;;
esac
for number in "$WAIT" "$TIMEOUT" "$RISE"; do
    case $number in
        "" | *[!0-9]*)
            echo "refused: '$number' is not a number of seconds (WAIT, TIMEOUT, RISE)" >&2
            exit 2
            ;;
    esac
done

# haproxy-lab: include lib/haproxy-cli.sh

holds() {
    ip -o -4 addr show | grep -q " inet $1/"
}

# Someone answers on VIP. Run only once this host no longer holds it: the answer then comes from another host.
answered() {
    ping -c 1 -W 1 "$1" >/dev/null 2>&1
}

hand_off() {
    vip=$1
    strict=$2
    case $vip in
        *[!0-9.]* | "")
            echo "refused: '$vip' is not an IPv4 address" >&2
            exit 2
            ;;
    esac
    if ! holds "$vip"; then
        echo "this load balancer does not hold $vip: nothing to hand off"
        return 0
    fi
    systemctl stop keepalived
    deadline=$(($(date +%s) + WAIT))
    while holds "$vip"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            break
        fi
        sleep 0.1
    done
    while ! { ! holds "$vip" && answered "$vip"; }; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            if [ "$strict" = yes ]; then
                systemctl start keepalived
                echo "no peer took $vip within ${WAIT}s: keepalived started again here, nothing rebooted;" \
                    "is keepalived running on the other load balancer?" >&2
                exit 1
            fi
            echo "warning: no peer took $vip within ${WAIT}s; this load balancer goes anyway" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "$vip handed off: keepalived stopped here, the peer answers on it"
}

back() {
    url=${1:-}
    deadline=$(($(date +%s) + TIMEOUT))
    passed=0
    last="HAProxy's admin socket does not answer"
    while :; do
        if haproxy_cli "$SOCKET" "show info" >/dev/null 2>&1; then
            if [ -z "$url" ]; then
                echo "HAProxy answers on its admin socket"
                return 0
            fi
            if ! systemctl is-active --quiet keepalived; then
                last="keepalived is not running"
                systemctl start keepalived || true
                passed=0
            elif curl --fail --silent --output /dev/null --max-time 1 "$url"; then
                passed=$((passed + 1))
                if [ "$passed" -gt "$RISE" ]; then
                    echo "HAProxy and keepalived in service (liveness passed ${RISE}s in a row)"
                    return 0
                fi
            else
                last="HAProxy's liveness URL $url does not answer"
                passed=0
            fi
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "timeout: not in service after ${TIMEOUT}s ($last)" >&2
            exit 1
        fi
        sleep 1
    done
}

case $action in
    handoff) hand_off "$2" yes ;;
    release) hand_off "$2" no ;;
    back) back "${2:-}" ;;
esac
