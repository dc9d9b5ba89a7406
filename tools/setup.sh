#!/bin/sh
# Set up a fresh Debian/Ubuntu machine for haproxy-lab's rehearsal and tests, idempotently:
# system packages (HAProxy, linters' runtimes, build deps of HAProxy 3.0), the HAProxy 3.0 build
# the config checks need (cached outside the repo), and .venv with the Python dependencies.
# Needs root for apt (uses sudo when not root). Safe to run again: it only adds what is missing.
set -eu

cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi

APT_PACKAGES="haproxy python3 python3-venv python3-pip curl ca-certificates build-essential libssl-dev libpcre2-dev \
cloud-init wrk debian-archive-keyring util-linux mount iproute2 psmisc dash keepalived nftables openssh-server"

missing=
for pkg in $APT_PACKAGES; do
    if ! dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    log "installing system packages:$missing"
    $SUDO apt-get -o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 update -qq
    # shellcheck disable=SC2086 # the package list is split into words on purpose
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 \
        install -y -qq --no-install-recommends $missing
else
    log "system packages already installed"
fi

# cloud-init's package enables its boot services; on a workstation or CI runner they must stay off.
if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --quiet cloud-init-local cloud-init cloud-config cloud-final 2>/dev/null || true
fi
# openssh-server is here for its sshd binary only (the fake Proxmox node's sshd in the tests, e2e/pve_node.py,
# runs on loopback with its own config): when setup installed it, the machine's own SSH service stays off.
case "$missing" in *openssh-server*)
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now --quiet ssh.service ssh.socket 2>/dev/null || true
    fi ;;
esac

log "HAProxy 3.0 (for haproxy -c on both sides of the VMs' 2.8)"
$SUDO sh tools/build-haproxy3.sh

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$PYTHON" -m venv .venv
fi
log "installing Python dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=25.1"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt --group dev -c constraints.txt

log "Pulumi engine (CLI, language host, provider plugins) for tests/test_engine.py"
$SUDO sh tools/build-pulumi.sh
log "setup done"
