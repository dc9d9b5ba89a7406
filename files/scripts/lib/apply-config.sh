# shellcheck shell=sh
# lib/apply-config.sh: the atomic apply of a config file that apply-haproxy-cfg.sh and apply-keepalived-conf.sh
# share: stage the new file beside the live one (same filesystem: mv is atomic), refuse a truncated one, swap
# it in keeping the live one as <live>.previous, and put the previous one back when the new one does not serve.
# A run cut short (the step's time bound, a lost SSH session) is finished by the next one: it removes the staged
# copies left beside the live file, and a marker kept from the swap until the reload is confirmed makes it
# reload a file that is in place but was never confirmed serving.
# Not run on its own: render/shipping.py inlines it where a script says
# "# haproxy-lab: include lib/apply-config.sh". The caller checks the staged file with its own tool between
# the steps, and removes what is left with apply_cleanup in its EXIT trap.

# The last line of every config haproxy-lab renders; render/shipping.py reads it from here (defined once).
CONFIG_TRAILER='# haproxy-lab: end of configuration'
staged=  # set by the caller: staged=$(stage_config LIVE)
restore=
previous=
had_live=0

# stage_config LIVE: print the path of a new temp file beside LIVE (mode from the caller's umask) holding stdin.
stage_config() {
    new=$(mktemp "$(dirname "$1")/.$(basename "$1").new.XXXXXX")
    cat >"$new"
    printf '%s\n' "$new"
}

# clear_leftovers LIVE: remove the staged copies a run cut short left beside LIVE (they may hold secrets; one
# apply runs at a time on a VM).
clear_leftovers() {
    rm -f "$(dirname "$1")/.$(basename "$1").new."* "$(dirname "$1")/.$(basename "$1").previous."*
}

# reload_marker LIVE: the file that says LIVE was swapped in and its reload not yet confirmed.
reload_marker() {
    printf '%s\n' "$(dirname "$1")/.$(basename "$1").reload-pending"
}

# reload_pending LIVE: a run swapped LIVE in and ended before its reload was confirmed.
reload_pending() {
    [ -e "$(reload_marker "$1")" ]
}

# reload_confirmed LIVE: the file in place serves; the marker goes.
reload_confirmed() {
    rm -f "$(reload_marker "$1")"
}

# has_trailer FILE: its last line is exactly the trailer, newline included; else the upload was cut short
# (HAProxy itself rejects a last line without LF as possibly truncated).
has_trailer() {
    [ "$(tail -n 1 "$1")" = "$CONFIG_TRAILER" ] && [ -z "$(tail -c 1 "$1")" ]
}

# stage_checked LIVE FIX_MODE WHAT: remove leftovers beside LIVE, stage stdin there (path in $staged), give it
# its mode with the FIX_MODE function, and exit 1 naming WHAT when it lacks the trailer (a truncated upload).
# shellcheck disable=SC2329 # apply-keepalived-conf.sh stages two files its own way
stage_checked() {
    clear_leftovers "$1"
    staged=$(stage_config "$1")
    "$2" "$staged"
    if ! has_trailer "$staged"; then
        echo "refused: $3 does not end with the line '$CONFIG_TRAILER' (truncated upload?); $1 untouched" >&2
        exit 1
    fi
}

# swap_in STAGED LIVE [FIX_MODE]: keep LIVE as LIVE.previous (and a private copy to put back, both passed to
# the FIX_MODE function when given), mark the reload pending, then move STAGED into place.
swap_in() {
    had_live=0
    if [ -f "$2" ]; then
        had_live=1
        restore=$(mktemp "$(dirname "$2")/.$(basename "$2").previous.XXXXXX")
        cp -p "$2" "$restore"
        [ -z "${3:-}" ] || "$3" "$restore"
        previous=$(mktemp "$(dirname "$2")/.$(basename "$2").previous.XXXXXX")
        cp -p "$restore" "$previous"
        mv -f "$previous" "$2.previous"
        previous=
    fi
    : >"$(reload_marker "$2")"
    mv -f "$1" "$2"
}

# put_back LIVE: the file swap_in replaced back in place; non-zero when there was none.
put_back() {
    [ "$had_live" -eq 1 ] || return 1
    mv -f "$restore" "$1"
    restore=
}

# apply_cleanup: remove the temp files an interrupted apply leaves.
# shellcheck disable=SC2329 # run by the callers' EXIT trap
apply_cleanup() {
    rm -f "$staged" "$restore" "$previous"
}
