#!/bin/sh
# install-keepalived.sh: install Ubuntu's own keepalived package (2.2 on 24.04), curl (its track script's
# HTTP client) and ping (load-balancer-state.sh: does the peer answer on the virtual IP after a handoff). keepalived starts once apply-keepalived-conf.sh has put a configuration in place (the packaged
# unit does not start without /etc/keepalived/keepalived.conf).
#
# Usage: install-keepalived.sh             (no arguments, no stdin; run as root)
# Idempotent: apt-get runs only when a package is missing. Waits for the dpkg/apt locks and retries transient
# download failures; a dpkg run cut short is finished first (dpkg --configure -a, lib/apt.sh).
#
# Environment (for tests; defaults are right for the VMs):
#   ROOT            prefix for the apt lock files (default: empty)
#   APT_LOCK_TIMEOUT seconds to wait for the apt/dpkg locks (default 600)
#   APT_RETRIES     attempts per apt-get command (default 5), APT_RETRY_DELAY seconds between (default 15)
set -eu

ROOT=${ROOT:-}

# haproxy-lab: include lib/apt.sh

if packages_installed keepalived curl iputils-ping; then
    echo "keepalived, curl and ping already installed"
else
    echo "installing keepalived, curl and ping"
    apt_get update
    apt_get install -y keepalived curl iputils-ping
fi
keepalived --version 2>&1 | head -n 1
