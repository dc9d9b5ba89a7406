#!/bin/sh
# Set up a fresh Debian/Ubuntu machine for haproxy-lab, idempotently, for one purpose:
#   tools/setup.sh rehearsal   what ./tools/rehearse runs: HAProxy, keepalived, nft, curl, and a .venv with
#                              the renderers' and the web app's packages (no build, no Pulumi engine)
#   tools/setup.sh test        (default) all of the above, plus what ./tools/test runs: the linters' and
#                              cloud-init's packages, the HAProxy 3.0 build (cached outside the repo), every
#                              Python dependency, the Pulumi engine (tools/build-pulumi.sh) and, as root, the
#                              golden guest image for booted guests (tools/build-guest-image.sh)
# Needs root for apt (uses sudo when not root). Safe to run again: it only adds what is missing.
set -eu

cd "$(dirname "$0")/.."

PURPOSE=${1:-test}
case $PURPOSE in
    rehearsal | test) ;;
    *)
        printf 'usage: %s [rehearsal|test]\n' "$0" >&2
        exit 2
        ;;
esac

log() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi

# The rehearsal: real HAProxy and web servers on loopback; --ha adds keepalived, nft and curl (track script)
# in network namespaces (iproute2), and ping (load-balancer-state.sh: does the peer answer on the virtual IP,
# as on the VMs). dash runs the shipped scripts as the VMs' /bin/sh does; openssl is what apply-tls-cert.sh
# checks a certificate with (the tls rotation row).
REHEARSAL_APT="haproxy python3 python3-venv curl ca-certificates dash iproute2 keepalived nftables iputils-ping \
openssl"
# The tests: HAProxy 3.0's build deps, cloud-init's schema check, wrk for the benchmark, the scripts' tools,
# sshd (the fake Proxmox node's snippet uploads, the command plugin's tests), and for booted guests
# (e2e/guests) debootstrap, systemd-nspawn and the allow-list proxy.
TEST_APT="$REHEARSAL_APT python3-pip build-essential libssl-dev libpcre2-dev cloud-init wrk debian-archive-keyring \
util-linux mount psmisc openssh-server \
debootstrap systemd-container tinyproxy"

# apt_install PACKAGE...: install the packages that are not installed yet (one apt-get update, only then).
apt_install() {
    missing=
    for pkg in "$@"; do
        if ! dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing="$missing $pkg"
        fi
    done
    if [ -z "$missing" ]; then
        log "system packages already installed"
        return 0
    fi
    log "installing system packages:$missing"
    $SUDO apt-get -o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 update -qq
    # shellcheck disable=SC2086 # the package list is split into words on purpose
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 \
        install -y -qq --no-install-recommends $missing
}

# pip_install ARG...: into .venv (created if missing), every version pinned by constraints.txt.
pip_install() {
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        "${PYTHON:-python3}" -m venv .venv
    fi
    log "installing Python dependencies into .venv ($*)"
    # pip 25.1 reads dependency groups (--group); the venv's own pip may be older.
    if ! .venv/bin/python -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (25, 1))'; then
        .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=25.1"
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check "$@" -c constraints.txt
}

if [ "$PURPOSE" = rehearsal ]; then
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    apt_install $REHEARSAL_APT
    pip_install --group rehearsal
    log "setup for the rehearsal done"
    exit 0
fi

# shellcheck disable=SC2086 # word splitting of the package list is wanted
apt_install $TEST_APT
# cloud-init's package enables its boot services; on a workstation or CI runner they must stay off.
if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --quiet cloud-init-local cloud-init cloud-config cloud-final 2>/dev/null || true
    # tinyproxy is for the guests' allow-list proxy, started by the e2e on its own bridge: not as a service.
    $SUDO systemctl disable --now --quiet tinyproxy 2>/dev/null || true
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

pip_install -r requirements.txt --group dev

# Booted guests need root (tests/test_guests.py skips without it): build their image only where they run.
if [ "$(id -u)" -eq 0 ]; then
    log "golden guest image (Debian trixie rootfs) for the end-to-end run and tests/test_guests.py"
    sh tools/build-guest-image.sh >/dev/null
else
    log "not root: no golden guest image (booted guests need root; tests/test_guests.py skips)"
fi

log "Pulumi engine (CLI, language host, provider plugins) for tests/test_engine.py"
# Installed the ordinary way it is found as this user (their PATH and plugin cache); only a build needs root.
sh tools/build-pulumi.sh --installed || $SUDO sh tools/build-pulumi.sh
log "setup done"
