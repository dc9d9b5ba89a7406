#!/bin/sh
# apply-haproxy-cfg.sh: install a new haproxy.cfg safely, reload HAProxy gracefully and
# prove the new file is the one serving. The file carries the stats password: it is
# never printed and never world-readable.
#
# Usage: apply-haproxy-cfg.sh < haproxy.cfg   (no arguments; the NEW config on stdin; run as root)
# Steps: stdin -> temp file next to the live file (same filesystem: mv is atomic),
# mode 0640 root:haproxy; refuse it unless its last line is exactly the trailer
# of lib/apply-config.sh plus its newline (guards against a truncated upload); validate with `haproxy -c`; if it is
# byte-identical to the live file do nothing; otherwise keep the live file as
# <cfg>.previous, mv the new one into place and reload (graceful, never restart).
# A reload counts only once HAProxy's master CLI shows a worker serving the new file: Ubuntu's
# unit reloads with `kill -USR2`, so `systemctl reload` exits 0 even when the new worker cannot
# start (port in use) or the signal is lost. The proof is the file's own
# `setenv HAPROXY_LAB_CONFIG_ID <id>` read back from the newest worker (`show env`); a file
# without that line is proven by a new worker appearing with no failed reload.
# If the reload fails or is not confirmed, the previous file is put back and reloaded, and the
# script exits non-zero, so the next `pulumi up` retries. Exit 0 = new config live (or already live).
#
# Environment (for tests; defaults are right for the VMs):
#   HAPROXY_CFG     live file (default /etc/haproxy/haproxy.cfg)
#   HAPROXY_BIN     haproxy binary used for `-c` (default haproxy)
#   HAPROXY_RELOAD  reload command line, run with sh -c (default: systemctl reload-or-restart haproxy:
#                   a graceful reload when HAProxy runs, a start when it had stopped)
#   HAPROXY_GROUP   group owning the file when it exists (default haproxy)
#   HAPROXY_MASTER_SOCKET   master CLI (default /run/haproxy-master.sock, the packaged unit's `-S`)
#   HAPROXY_RELOAD_TIMEOUT  seconds to wait for the reload to be confirmed (default 30)
set -eu

CFG=${HAPROXY_CFG:-/etc/haproxy/haproxy.cfg}
BIN=${HAPROXY_BIN:-haproxy}
RELOAD=${HAPROXY_RELOAD:-systemctl reload-or-restart haproxy}
GROUP=${HAPROXY_GROUP:-haproxy}
MASTER_SOCKET=${HAPROXY_MASTER_SOCKET:-/run/haproxy-master.sock}
RELOAD_TIMEOUT=${HAPROXY_RELOAD_TIMEOUT:-30}

umask 077
# haproxy-lab: include lib/haproxy-cli.sh
# haproxy-lab: include lib/apply-config.sh
trap apply_cleanup EXIT
trap 'exit 1' HUP INT TERM

# Mode 0640, group haproxy when that group exists (the packaged service reads the
# file as root; the group is for operators' tools), never world-readable.
# shellcheck disable=SC2329 # called by name: stage_checked, swap_in
protect() {
    chmod 0640 "$1"
    if getent group "$GROUP" >/dev/null 2>&1; then
        chgrp "$GROUP" "$1"
    fi
}

# The master as `show proc` lists it: "<master pid> <reloads> <failed reloads> <newest worker or ->".
# The newest worker is the one with 0 reloads; after a failed reload there is none (old ones count 1+).
master_state() {
    haproxy_cli "$MASTER_SOCKET" "show proc" 2>/dev/null | awk '
        $2 == "master" { pid = $1; reloads = $3; failed = $5; sub(/[^0-9].*/, "", failed) }
        $2 == "worker" && $3 == "0" { worker = $1 }
        END { if (pid == "") exit 1; print pid, reloads, failed + 0, (worker == "" ? "-" : worker) }'
}

# The HAPROXY_LAB_CONFIG_ID that file $1 sets (empty when it sets none).
config_id() {
    sed -n 's/^[[:space:]]*setenv[[:space:]][[:space:]]*HAPROXY_LAB_CONFIG_ID[[:space:]][[:space:]]*\([0-9a-f][0-9a-f]*\)[[:space:]]*$/\1/p' "$1" |
        head -n 1
}

# The config id worker $1 runs with, asked through the master CLI.
served_id() {
    haproxy_cli "$MASTER_SOCKET" "@!$1 show env HAPROXY_LAB_CONFIG_ID" 2>/dev/null |
        sed -n 's/^HAPROXY_LAB_CONFIG_ID=//p'
}

# reload_and_confirm FILE: run the reload command, then wait (bounded) until the master CLI shows a
# worker started from FILE as it is now; says why on stderr when it cannot.
reload_and_confirm() {
    want=$(config_id "$1")
    before=$(master_state) || before="- - - -"
    read -r b_pid b_reloads _ b_worker <<EOF
$before
EOF
    rc=0
    sh -c "$RELOAD" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "the reload command failed (exit $rc)" >&2
        return 1
    fi
    deadline=$(($(date +%s) + RELOAD_TIMEOUT))
    served=
    while :; do
        # The master CLI refuses connections while the master re-executes: just ask again.
        if now=$(master_state); then
            read -r pid reloads failed worker <<EOF
$now
EOF
            changed=0
            if [ "$pid" != "$b_pid" ] || [ "$reloads" != "$b_reloads" ]; then
                changed=1
            fi
            if [ "$worker" != - ] && [ -n "$want" ]; then
                served=$(served_id "$worker")
                if [ "$served" = "$want" ]; then
                    echo "confirmed: HAProxy worker $worker serves config $want"
                    return 0
                fi
            elif [ "$worker" != - ] && [ "$changed" -eq 1 ] && [ "$failed" -eq 0 ] && [ "$worker" != "$b_worker" ]; then
                echo "confirmed: new HAProxy worker $worker (the file has no config id to compare)"
                return 0
            fi
            # The master counts a failed reload once it has given up on the file and kept the old workers.
            if [ "$changed" -eq 1 ] && [ "$failed" -gt 0 ]; then
                echo "HAProxy could not start a worker with $1 ($failed failed reload(s); a port in use?" \
                    "see 'journalctl -u haproxy'); the old workers keep serving" >&2
                return 1
            fi
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "the reload was not confirmed within ${RELOAD_TIMEOUT}s: no HAProxy worker serves" \
                "${want:-a new configuration} (newest serves ${served:-unknown}); signal lost, or the master" \
                "CLI $MASTER_SOCKET does not answer" >&2
            return 1
        fi
        sleep 0.1
    done
}

stage_checked "$CFG" protect "the configuration"

# HAProxy's own messages go to stderr; they name lines and keywords, not the file's content.
check_rc=0
"$BIN" -c -f "$staged" >&2 || check_rc=$?
if [ "$check_rc" -ne 0 ]; then
    echo "refused: haproxy -c rejected the new configuration (exit $check_rc); $CFG untouched" >&2
    exit 1
fi

if [ -f "$CFG" ] && cmp -s "$staged" "$CFG"; then
    if ! reload_pending "$CFG"; then
        echo "haproxy.cfg unchanged: nothing to do"
        exit 0
    fi
    echo "haproxy.cfg in place, but its reload was cut short: reloading"
    if reload_and_confirm "$CFG"; then
        reload_confirmed "$CFG"
        echo "haproxy reloaded with the configuration in place"
        exit 0
    fi
    echo "reload failed: the configuration in place is not serving" >&2
    exit 1
fi

swap_in "$staged" "$CFG" protect
staged=
echo "haproxy.cfg replaced (previous kept as $CFG.previous); reloading"

if reload_and_confirm "$CFG"; then
    reload_confirmed "$CFG"
    echo "haproxy reloaded with the new configuration"
    exit 0
fi

echo "reload failed: the new configuration is not serving" >&2
if ! put_back "$CFG"; then
    echo "no previous configuration to restore; the new one stays in $CFG" >&2
    exit 1
fi
echo "previous configuration restored in $CFG; reloading it" >&2
if reload_and_confirm "$CFG" >&2; then
    reload_confirmed "$CFG"
    echo "haproxy reloaded with the previous configuration" >&2
else
    echo "reload of the previous configuration failed too: check 'systemctl status haproxy'" >&2
fi
exit 1
