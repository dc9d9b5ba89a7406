#!/bin/sh
# apply-haproxy-cfg.sh: install a new haproxy.cfg safely and reload HAProxy
# gracefully. The file carries the stats password: it is never printed and
# never world-readable.
#
# Usage: apply-haproxy-cfg.sh < haproxy.cfg   (no arguments; the NEW config on stdin; run as root)
# Steps: stdin -> temp file next to the live file (same filesystem: mv is atomic),
# mode 0640 root:haproxy; refuse it unless its last line is exactly the trailer
# below plus its newline (guards against a truncated upload); validate with `haproxy -c`; if it is
# byte-identical to the live file do nothing; otherwise keep the live file as
# <cfg>.previous, mv the new one into place and reload (graceful, never restart).
# If the reload fails, the previous file is put back and reloaded, and the script
# exits non-zero. Exit 0 = new config live (or already live).
#
# Environment (for tests; defaults are right for the VMs):
#   HAPROXY_CFG     live file (default /etc/haproxy/haproxy.cfg)
#   HAPROXY_BIN     haproxy binary used for `-c` (default haproxy)
#   HAPROXY_RELOAD  reload command line, run with sh -c (default: systemctl reload-or-restart haproxy:
#                   a graceful reload when HAProxy runs, a start when it had stopped)
#   HAPROXY_GROUP   group owning the file when it exists (default haproxy)
set -eu

CFG=${HAPROXY_CFG:-/etc/haproxy/haproxy.cfg}
BIN=${HAPROXY_BIN:-haproxy}
RELOAD=${HAPROXY_RELOAD:-systemctl reload-or-restart haproxy}
GROUP=${HAPROXY_GROUP:-haproxy}
TRAILER='# haproxy-lab: end of configuration'

dir=$(dirname "$CFG")
base=$(basename "$CFG")
umask 077
tmp=
restore=
previous=
trap 'rm -f "$tmp" "$restore" "$previous"' EXIT
trap 'exit 1' HUP INT TERM

# Mode 0640, group haproxy when that group exists (the packaged service reads the
# file as root; the group is for operators' tools), never world-readable.
protect() {
    chmod 0640 "$1"
    if getent group "$GROUP" >/dev/null 2>&1; then
        chgrp "$GROUP" "$1"
    fi
}

reload() {
    sh -c "$RELOAD"
}

tmp=$(mktemp "$dir/.$base.new.XXXXXX")
cat >"$tmp"
protect "$tmp"

# The last line must be exactly the trailer, newline included (HAProxy itself
# rejects a last line without LF as possibly truncated).
if [ "$(tail -n 1 "$tmp")" != "$TRAILER" ] || [ -n "$(tail -c 1 "$tmp")" ]; then
    echo "refused: the configuration does not end with the line '$TRAILER' (truncated upload?); $CFG untouched" >&2
    exit 1
fi

# HAProxy's own messages go to stderr; they name lines and keywords, not the file's content.
check_rc=0
"$BIN" -c -f "$tmp" >&2 || check_rc=$?
if [ "$check_rc" -ne 0 ]; then
    echo "refused: haproxy -c rejected the new configuration (exit $check_rc); $CFG untouched" >&2
    exit 1
fi

if [ -f "$CFG" ] && cmp -s "$tmp" "$CFG"; then
    echo "haproxy.cfg unchanged: nothing to do"
    exit 0
fi

had_live=0
if [ -f "$CFG" ]; then
    had_live=1
    restore=$(mktemp "$dir/.$base.previous.XXXXXX")
    cp "$CFG" "$restore"
    protect "$restore"
    previous=$(mktemp "$dir/.$base.previous.XXXXXX")
    cp -p "$restore" "$previous"
    mv -f "$previous" "$CFG.previous"
    previous=
fi

mv -f "$tmp" "$CFG"
tmp=
echo "haproxy.cfg replaced (previous kept as $CFG.previous); reloading"

reload_rc=0
reload || reload_rc=$?
if [ "$reload_rc" -eq 0 ]; then
    echo "haproxy reloaded with the new configuration"
    exit 0
fi

echo "reload failed (exit $reload_rc)" >&2
if [ "$had_live" -eq 0 ]; then
    echo "no previous configuration to restore; the new one stays in $CFG" >&2
    exit 1
fi
mv -f "$restore" "$CFG"
restore=
echo "previous configuration restored in $CFG; reloading it" >&2
if reload; then
    echo "haproxy reloaded with the previous configuration" >&2
else
    echo "reload of the previous configuration failed too: check 'systemctl status haproxy'" >&2
fi
exit 1
