#!/bin/sh
# wait-for-cloud-init.sh: block until cloud-init has finished on a fresh VM, so
# that the next steps (apt installs, config files) do not race its own apt run
# and user/network setup.
#
# Usage: wait-for-cloud-init.sh            (no arguments, no stdin; run as root)
# Exit 0 when `cloud-init status --wait` reports done (0) or done with
# recoverable errors (2, cloud-init 23.4+); otherwise print
# `cloud-init status --long` to stderr and exit with cloud-init's status.
set -eu

rc=0
cloud-init status --wait >/dev/null || rc=$?

case $rc in
    0)
        echo "cloud-init: done"
        ;;
    2)
        echo "cloud-init: done with recoverable errors (accepted):" >&2
        cloud-init status --long >&2 || true
        ;;
    *)
        echo "cloud-init: failed (status exit $rc):" >&2
        cloud-init status --long >&2 || true
        exit "$rc"
        ;;
esac
