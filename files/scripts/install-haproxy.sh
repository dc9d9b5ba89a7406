#!/bin/sh
# install-haproxy.sh: install Ubuntu's own haproxy package (2.8 on 24.04, the
# version the lab report uses) and make sure the service is enabled and running.
# The configuration is pushed separately by apply-haproxy-cfg.sh.
#
# Usage: install-haproxy.sh                (no arguments, no stdin; run as root)
# Idempotent: apt-get runs only when haproxy is not installed yet. Waits for the
# dpkg/apt locks (cloud-init, apt-daily, unattended-upgrades may hold them) and
# retries transient download failures; a dpkg run cut short is finished first
# (dpkg --configure -a, lib/apt.sh).
#
# Environment (for tests; defaults are right for the VMs):
#   ROOT            prefix for the apt lock files (default: empty)
#   APT_LOCK_TIMEOUT seconds to wait for the apt/dpkg locks (default 600)
#   APT_RETRIES     attempts per apt-get command (default 5), APT_RETRY_DELAY seconds between (default 15)
set -eu

ROOT=${ROOT:-}

# haproxy-lab: include lib/apt.sh

if packages_installed haproxy; then
    echo "haproxy already installed"
else
    echo "installing haproxy"
    apt_get update
    apt_get install -y haproxy
fi

if ! systemctl is-enabled --quiet haproxy; then
    systemctl enable haproxy
fi
if ! systemctl is-active --quiet haproxy; then
    systemctl start haproxy
fi
haproxy -v | head -n 1
