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
cloud-init wrk debian-archive-keyring util-linux mount iproute2 psmisc dash keepalived nftables \
debootstrap systemd-container tinyproxy openssh-client"

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
    # tinyproxy is for the guests' allow-list proxy, started by the e2e on its own bridge: not as a service.
    $SUDO systemctl disable --now --quiet tinyproxy 2>/dev/null || true
fi

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

# Booted guests need root (tests/test_guests.py skips without it): build their image only where they run.
if [ "$(id -u)" -eq 0 ]; then
    log "golden guest image (Debian trixie rootfs) for the end-to-end run and tests/test_guests.py"
    sh tools/build-guest-image.sh >/dev/null
else
    log "not root: no golden guest image (booted guests need root; tests/test_guests.py skips)"
fi

log "Pulumi engine (CLI, language host, provider plugins) for tests/test_engine.py"
$SUDO sh tools/build-pulumi.sh
log "setup done"
