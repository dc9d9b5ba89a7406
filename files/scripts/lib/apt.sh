# shellcheck shell=sh
# lib/apt.sh: apt-get that first finishes an interrupted dpkg run, waits for the dpkg/apt locks and
# retries transient failures.
# Not run on its own: render/shipping.py inlines it where a script says
# "# haproxy-lab: include lib/apt.sh", so each script still travels as one text.
# Uses ROOT (path prefix for tests, default empty) from the including script; dpkg and dpkg-query
# honour DPKG_ROOT themselves.
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-600}
APT_RETRIES=${APT_RETRIES:-5}
APT_RETRY_DELAY=${APT_RETRY_DELAY:-15}

# Wait while another process holds an apt/dpkg lock. apt-get's DPkg::Lock::Timeout
# covers the dpkg frontend lock only; `apt-get update` takes /var/lib/apt/lists/lock
# and fails at once if it is held, so we look for holders ourselves. apt uses
# fcntl() locks, which flock(1) does not see: fuser (psmisc, in Ubuntu images)
# finds any process that has a lock file open. Without fuser, the retry loop in
# apt_get still covers a held lock.
wait_for_apt_locks() {
    command -v fuser >/dev/null 2>&1 || return 0
    waited=0
    while fuser "$ROOT/var/lib/dpkg/lock-frontend" "$ROOT/var/lib/dpkg/lock" \
        "$ROOT/var/lib/apt/lists/lock" "$ROOT/var/cache/apt/archives/lock" >/dev/null 2>&1; do
        if [ "$waited" -ge "$APT_LOCK_TIMEOUT" ]; then
            echo "apt/dpkg lock still held after ${APT_LOCK_TIMEOUT}s" >&2
            return 1
        fi
        if [ "$waited" -eq 0 ]; then
            echo "waiting for another apt/dpkg run to finish..." >&2
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# Whether a dpkg run was cut short (a step stopped by its time budget, a reboot): packages left
# unpacked or half-configured (`dpkg --audit`, read-only), or dpkg's journal not folded back
# (apt-get then refuses everything: "dpkg was interrupted, you must manually run 'dpkg --configure -a'").
dpkg_interrupted() {
    [ -z "$(dpkg --audit 2>/dev/null)" ] || return 0
    for entry in "$ROOT"/var/lib/dpkg/updates/[0-9]*; do
        [ ! -e "$entry" ] || return 0
    done
    return 1
}

# Finish what an interrupted dpkg run left (idempotent: nothing to do, nothing done). Call with the
# locks free (wait_for_apt_locks): dpkg itself fails at once on a held lock.
dpkg_recover() {
    dpkg_interrupted || return 0
    echo "finishing an interrupted dpkg run first: dpkg --configure -a" >&2
    DEBIAN_FRONTEND=noninteractive dpkg --force-confdef --force-confold --configure -a
}

# apt-get with lock waiting, download retries, and a bounded retry loop for
# transient failures (mirror hiccups, a lock taken between our check and apt).
apt_get() {
    attempt=1
    while :; do
        wait_for_apt_locks
        rc=0
        dpkg_recover || {
            rc=$?
            echo "dpkg --configure -a failed (exit $rc)" >&2
        }
        [ "$rc" -ne 0 ] || DEBIAN_FRONTEND=noninteractive apt-get -q \
            -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" \
            -o Acquire::Retries=5 \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "$@" || rc=$?
        [ "$rc" -eq 0 ] && return 0
        if [ "$attempt" -ge "$APT_RETRIES" ]; then
            echo "apt-get $1 failed $attempt times (exit $rc), giving up" >&2
            return "$rc"
        fi
        echo "apt-get $1 failed (exit $rc), retry $attempt/$((APT_RETRIES - 1)) in ${APT_RETRY_DELAY}s" >&2
        sleep "$APT_RETRY_DELAY"
        attempt=$((attempt + 1))
    done
}

# True when every named package is installed.
packages_installed() {
    for pkg in "$@"; do
        # shellcheck disable=SC2016 # ${Status} is dpkg-query's format, not ours
        dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null | grep -qx 'install ok installed' || return 1
    done
}
