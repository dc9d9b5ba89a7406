#!/bin/sh
# install-docker.sh: install Docker Engine and the compose plugin from Docker's
# own apt repository for Ubuntu (as in the lab report: Ubuntu's docker.io has no
# compose v2 plugin), then enable and start docker.
#
# Usage: install-docker.sh                 (no arguments, no stdin; run as root)
# Idempotent: the keyring (/etc/apt/keyrings/docker.asc, no apt-key) and the
# sources list are rewritten only when their content changes; apt-get runs only
# when a package is missing or the repository definition changed.
# Robust on a fresh VM: waits for the dpkg/apt locks (cloud-init, apt-daily,
# unattended-upgrades may hold them) and retries transient download failures.
# A run cut short (its step's time budget, a reboot) is finished first: dpkg --configure -a.
#
# Docker's key is trusted only when it is the key Docker documents: one primary key
# whose fingerprint is DOCKER_KEY_FINGERPRINT (checked with gpg, nothing imported).
#
# Already present: when Docker's packages are not all installed but a Docker Engine with the
# compose v2 plugin is (dockerd on PATH and `docker compose version --short` giving 2.x, e.g.
# an image that ships its distribution's docker.io and compose v2 packages), that engine is used
# as it is: Docker's key and repository are left alone, nothing is installed, and only the
# units are enabled and started. When Docker's own packages are all installed, the normal path
# runs (it keeps their key and repository up to date).
#
# Environment (for tests; defaults are right for the VMs):
#   ROOT            prefix for /etc/apt/..., /etc/os-release and the apt lock files (default: empty)
#   DOCKER_APT_URL  repository (default https://download.docker.com/linux/ubuntu)
#   DOCKER_KEY_FINGERPRINT the signing key's fingerprint (default Docker's, 9DC8...CD88)
#   APT_LOCK_TIMEOUT seconds to wait for the apt/dpkg locks (default 600)
#   APT_RETRIES     attempts per apt-get command (default 5), APT_RETRY_DELAY seconds between (default 15)
set -eu

ROOT=${ROOT:-}
DOCKER_APT_URL=${DOCKER_APT_URL:-https://download.docker.com/linux/ubuntu}
# Docker's documented release key: 9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF CD88.
DOCKER_KEY_FINGERPRINT=${DOCKER_KEY_FINGERPRINT:-9DC858229FC7DD38854AE2D88D81803C0EBFCD88}
KEYRING=/etc/apt/keyrings/docker.asc
SOURCES=/etc/apt/sources.list.d/docker.list
PACKAGES="docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin"

# haproxy-lab: include lib/apt.sh

# Install the content of $2 as $1 (mode $3, octal) unless $1 already has exactly
# that content; sets changed=1 when $1 was replaced. The new file is written next
# to $1 and renamed over it (atomic). Called as a plain command, not in a
# condition, so that `set -e` stays active inside.
replace_if_changed() {
    if [ -f "$1" ] && cmp -s "$2" "$1"; then
        [ "$(stat -c %a "$1")" = "$3" ] || chmod "$3" "$1"
        return 0
    fi
    next=$(mktemp "$(dirname "$1")/.$(basename "$1").XXXXXX")
    cp "$2" "$next"
    chmod "$3" "$next"
    mv -f "$next" "$1"
    next=
    echo "updated $1"
    changed=1
}

# Enable and start containerd and docker (each only when it is not already).
start_docker() {
    for unit in containerd docker; do
        if ! systemctl is-enabled --quiet "$unit"; then
            systemctl enable "$unit"
        fi
        if ! systemctl is-active --quiet "$unit"; then
            systemctl start "$unit"
        fi
    done
    docker --version
    docker compose version
}

# A Docker Engine with the compose v2 plugin, whatever installed it.
engine_with_compose_v2() {
    command -v dockerd >/dev/null 2>&1 || return 1
    compose=$(docker compose version --short 2>/dev/null) || return 1
    case $compose in
        2.* | v2.*) return 0 ;;
        *) return 1 ;;
    esac
}

# shellcheck disable=SC2086 # $PACKAGES is a list of words
if ! packages_installed $PACKAGES && engine_with_compose_v2; then
    echo "Docker Engine and the compose v2 plugin are already installed (not Docker's packages):" \
        "using them; Docker's apt repository left alone"
    start_docker
    exit 0
fi

work=$(mktemp -d)
next=
trap 'rm -rf "$work"; [ -z "$next" ] || rm -f "$next"' EXIT
trap 'exit 1' HUP INT TERM

# The primary-key fingerprints in key file $1, one a line (gpg reads it in a
# throw-away home: nothing is imported anywhere).
primary_fingerprints() {
    install -d -m 0700 "$work/gnupg"
    gpg --homedir "$work/gnupg" --batch --no-tty --with-colons --show-keys "$1" 2>/dev/null |
        awk -F: '$1 == "pub" { primary = 1; next } $1 == "fpr" && primary { print $10; primary = 0 }'
}

# Whether key file $1 holds exactly one primary key, Docker's.
is_docker_key() {
    [ "$(primary_fingerprints "$1")" = "$DOCKER_KEY_FINGERPRINT" ]
}

changed=0
install -d -m 0755 "$ROOT/etc/apt/keyrings" "$ROOT/etc/apt/sources.list.d"
if ! command -v gpg >/dev/null 2>&1; then
    apt_get update
    apt_get install -y gpg
fi

# Docker's signing key (ASCII-armoured; apt reads .asc keyrings directly).
if curl -fsSL --retry 5 --retry-delay 3 --retry-connrefused --connect-timeout 20 \
    -o "$work/docker.asc" "$DOCKER_APT_URL/gpg" &&
    grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$work/docker.asc"; then
    if ! is_docker_key "$work/docker.asc"; then
        echo "refusing the key at $DOCKER_APT_URL/gpg: its fingerprint is not $DOCKER_KEY_FINGERPRINT" >&2
        echo "found: $(primary_fingerprints "$work/docker.asc" | tr '\n' ' ')" >&2
        exit 1
    fi
    replace_if_changed "$ROOT$KEYRING" "$work/docker.asc" 644
elif [ -s "$ROOT$KEYRING" ] && is_docker_key "$ROOT$KEYRING"; then
    echo "warning: could not refresh Docker's apt key, keeping $KEYRING" >&2
else
    echo "could not download Docker's apt key from $DOCKER_APT_URL/gpg" >&2
    exit 1
fi

# The repository line, for this machine's architecture and Ubuntu release.
arch=$(dpkg --print-architecture)
# shellcheck source=/dev/null # the VM's os-release
codename=$(. "$ROOT/etc/os-release"; echo "${VERSION_CODENAME:-}")
if [ -z "$codename" ]; then
    echo "no VERSION_CODENAME in $ROOT/etc/os-release" >&2
    exit 1
fi
printf 'deb [arch=%s signed-by=%s] %s %s stable\n' "$arch" "$KEYRING" "$DOCKER_APT_URL" "$codename" >"$work/docker.list"
replace_if_changed "$ROOT$SOURCES" "$work/docker.list" 644

# shellcheck disable=SC2086 # $PACKAGES is a list of words
if ! packages_installed $PACKAGES; then
    echo "installing $PACKAGES"
    apt_get update
    # shellcheck disable=SC2086
    apt_get install -y $PACKAGES
elif [ "$changed" -eq 1 ]; then
    echo "Docker's repository definition changed: refreshing the package index"
    apt_get update
else
    echo "Docker packages already installed"
fi

start_docker
