#!/bin/sh
# apply-keepalived-conf.sh: install keepalived's track script and a new keepalived.conf safely, then reload
# keepalived. The same atomic, verified apply as apply-haproxy-cfg.sh.
#
# Usage: apply-keepalived-conf.sh SRC_DIR   (no stdin; run as root)
#   SRC_DIR holds keepalived.conf and check-haproxy.sh; it is removed at the end, whatever the outcome.
# Steps: install the track script (atomic mv, mode 0755, root-owned: keepalived's script security); copy the
# config to a temp file next to the live one (same filesystem: mv is atomic); refuse it unless its last line
# is exactly the trailer of lib/apply-config.sh plus its newline (truncated upload); validate with `keepalived -t`; if it is
# byte-identical to the live file and keepalived runs, do nothing; otherwise keep the live file as
# <conf>.previous, mv the new one into place, reload, and check that keepalived still runs. A config that
# fails the check never replaces the live one (and the previous track script is put back); if the reload
# fails, the previous file is put back and reloaded, and the script exits non-zero.
# Exit 0 = new config live (or already live).
#
# Environment (for tests; defaults are right for the VMs):
#   KEEPALIVED_CONF     live file (default /etc/keepalived/keepalived.conf)
#   KEEPALIVED_SCRIPT   where the track script goes (default /etc/keepalived/check-haproxy.sh; the config names it)
#   KEEPALIVED_BIN      keepalived binary used for `-t` (default keepalived)
#   KEEPALIVED_RELOAD   reload command line, run with sh -c (default: enable, then reload-or-restart: a reload
#                       when keepalived runs, a start when it does not)
#   KEEPALIVED_RUNNING  command line that succeeds when keepalived runs (default systemctl is-active --quiet keepalived)
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 SRC_DIR" >&2
    exit 2
fi
SRC=$1
CONF=${KEEPALIVED_CONF:-/etc/keepalived/keepalived.conf}
SCRIPT=${KEEPALIVED_SCRIPT:-/etc/keepalived/check-haproxy.sh}
BIN=${KEEPALIVED_BIN:-keepalived}
RELOAD=${KEEPALIVED_RELOAD:-systemctl enable --quiet keepalived && systemctl reload-or-restart keepalived}
RUNNING=${KEEPALIVED_RUNNING:-systemctl is-active --quiet keepalived}

umask 022
# haproxy-lab: include lib/apply-config.sh
script_tmp=
script_previous=
trap 'rm -rf "$SRC"; apply_cleanup; rm -f "$script_tmp" "$script_previous"' EXIT
trap 'exit 1' HUP INT TERM

if [ ! -f "$SRC/keepalived.conf" ] || [ ! -f "$SRC/check-haproxy.sh" ]; then
    echo "$SRC does not hold keepalived.conf and check-haproxy.sh" >&2
    exit 2
fi
mkdir -p "$(dirname "$CONF")" "$(dirname "$SCRIPT")"
clear_leftovers "$CONF"
rm -f "$SCRIPT.new."* "$SCRIPT.previous."*

# The track script first: the new config names it, and `keepalived -t` disables a script it cannot find.
script_changed=0
if [ ! -f "$SCRIPT" ] || ! cmp -s "$SRC/check-haproxy.sh" "$SCRIPT"; then
    script_changed=1
    if [ -f "$SCRIPT" ]; then
        script_previous=$(mktemp "$SCRIPT.previous.XXXXXX")
        cp -p "$SCRIPT" "$script_previous"
    fi
    script_tmp=$(mktemp "$SCRIPT.new.XXXXXX")
    cat "$SRC/check-haproxy.sh" >"$script_tmp"
    chmod 0755 "$script_tmp"
    mv -f "$script_tmp" "$SCRIPT"
    script_tmp=
fi

# Put the previous track script back (or remove the new one) when the new config is refused.
undo_script() {
    if [ "$script_changed" -eq 1 ]; then
        if [ -n "$script_previous" ]; then
            mv -f "$script_previous" "$SCRIPT"
            script_previous=
        else
            rm -f "$SCRIPT"
        fi
    fi
}

staged=$(stage_config "$CONF" <"$SRC/keepalived.conf")
chmod 0644 "$staged"
if ! has_trailer "$staged"; then
    undo_script
    echo "refused: the configuration does not end with the line '$CONFIG_TRAILER' (truncated upload?); $CONF untouched" >&2
    exit 1
fi

check_rc=0
"$BIN" -t -f "$staged" >&2 || check_rc=$?
if [ "$check_rc" -ne 0 ]; then
    undo_script
    echo "refused: keepalived -t rejected the new configuration (exit $check_rc); $CONF untouched" >&2
    exit 1
fi

if [ -f "$CONF" ] && cmp -s "$staged" "$CONF" && [ "$script_changed" -eq 0 ]; then
    if ! reload_pending "$CONF" && sh -c "$RUNNING"; then
        echo "keepalived.conf unchanged and keepalived running: nothing to do"
        exit 0
    fi
    echo "keepalived.conf in place, but keepalived is not running or its reload was cut short: reloading"
    if sh -c "$RELOAD" && sh -c "$RUNNING"; then
        reload_confirmed "$CONF"
        echo "keepalived reloaded with the configuration in place"
        exit 0
    fi
    echo "reload failed or keepalived is not running: check 'systemctl status keepalived'" >&2
    exit 1
fi

swap_in "$staged" "$CONF"
staged=
echo "keepalived.conf replaced (previous kept as $CONF.previous); reloading"

reload_rc=0
sh -c "$RELOAD" || reload_rc=$?
if [ "$reload_rc" -eq 0 ] && sh -c "$RUNNING"; then
    reload_confirmed "$CONF"
    echo "keepalived reloaded with the new configuration"
    exit 0
fi

echo "reload failed or keepalived is not running (exit $reload_rc)" >&2
if ! put_back "$CONF"; then
    echo "no previous configuration to restore; the new one stays in $CONF" >&2
    exit 1
fi
undo_script
echo "previous configuration restored in $CONF; reloading it" >&2
if sh -c "$RELOAD" && sh -c "$RUNNING"; then
    reload_confirmed "$CONF"
    echo "keepalived reloaded with the previous configuration" >&2
else
    echo "reload of the previous configuration failed too: check 'systemctl status keepalived'" >&2
fi
exit 1
