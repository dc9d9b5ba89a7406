#!/bin/sh
# Build the golden root filesystem the end-to-end run boots its guests from (e2e/guests), once per recipe,
# cached outside the repository:
#   $HAPROXY_LAB_CACHE (default /var/cache/haproxy-lab)/guest-image-<hash>/rootfs
# where <hash> covers this script and every file under e2e/guests/image/ (path, mode, content): a changed
# recipe builds a new directory, an unchanged one is reused at once. Prints that directory on its last line.
#
# The rootfs: Debian trixie (debootstrap minbase) with systemd, sshd, cloud-init (NoCloud only), Debian's
# Docker Engine and compose v2 plugin (installed, not enabled: install-docker.sh enables them as on a VM),
# and a stand-in for the web app's base image (a bookworm rootfs with python3 + pip, tagged
# python:3.12.12-slim-bookworm when a guest's Docker starts). Prepared once: empty machine-id, no SSH host
# keys, systemd-networkd enabled. docs/e2e.md, "Guests: what differs from an Ubuntu VM", says why for each.
#
# Usage: build-guest-image.sh [--print-dir]   (root; --print-dir: only print where the image is or would be)
# Needs debootstrap (tools/setup.sh installs it) and Debian's mirror (MIRROR, default http://deb.debian.org/debian).
set -eu

cd "$(dirname "$0")/.."
CACHE=${HAPROXY_LAB_CACHE:-/var/cache/haproxy-lab}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
BASE_SUITE=bookworm
RECIPE_FILES="tools/build-guest-image.sh e2e/guests/image"

GUEST_PACKAGES="systemd,systemd-sysv,dbus,openssh-server,cloud-init,python3,python3-cffi-backend,iproute2,\
sudo,ca-certificates,gpg,psmisc,curl,locales,netbase,docker.io,docker-cli,docker-buildx,docker-compose"
BASE_PACKAGES="python3,python3-pip,python-is-python3,ca-certificates"

log() { printf 'build-guest-image: %s\n' "$*" >&2; }

recipe_hash() {
    # shellcheck disable=SC2086 # a list of paths
    find $RECIPE_FILES -type f | LC_ALL=C sort | while read -r file; do
        printf '%s %s\n' "$file" "$(stat -c %a "$file")"
        cat "$file"
    done | sha256sum | cut -c1-16
}

DEST=$CACHE/guest-image-$(recipe_hash)
if [ "${1:-}" = --print-dir ]; then
    echo "$DEST"
    exit 0
fi
if [ -f "$DEST/ready" ]; then
    log "up to date: $DEST"
    echo "$DEST"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "build-guest-image.sh builds a root filesystem: run it as root" >&2
    exit 1
fi
command -v debootstrap >/dev/null 2>&1 || {
    echo "debootstrap is missing: run tools/setup.sh (or apt-get install debootstrap)" >&2
    exit 1
}

mkdir -p "$CACHE"
# One build at a time (a test and the e2e may ask together): the second waits, then finds it built.
exec 9>"$CACHE/.guest-image.lock"
flock 9
if [ -f "$DEST/ready" ]; then
    log "built meanwhile: $DEST"
    echo "$DEST"
    exit 0
fi
work=$(mktemp -d "$CACHE/.guest-image-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
start=$(date +%s)

log "the web app's base image stand-in: $BASE_SUITE with $BASE_PACKAGES"
debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$work/base" "$MIRROR" >"$work/base.log" 2>&1 ||
    { tail -n 20 "$work/base.log" >&2; exit 1; }
# The official image's pip installs into the system interpreter; Debian marks its own as externally managed.
rm -f "$work"/base/usr/lib/python3*/EXTERNALLY-MANAGED
chroot "$work/base" apt-get clean
rm -rf "$work"/base/var/lib/apt/lists/* "$work"/base/var/cache/apt/*.bin "$work"/base/usr/share/doc \
    "$work"/base/usr/share/man "$work"/base/usr/share/locale

log "guest rootfs: $SUITE with $GUEST_PACKAGES"
debootstrap --variant=minbase --include="$GUEST_PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" >"$work/rootfs.log" 2>&1 ||
    { tail -n 20 "$work/rootfs.log" >&2; exit 1; }
root=$work/rootfs
# One machine, many guests: each boot must mint its own machine id and SSH host keys (cloud-init does).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_* "$root/etc/hostname"
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
# Installed as Debian's packages would be on a VM that has Docker, but off until install-docker.sh starts it.
chroot "$root" systemctl disable docker.service docker.socket containerd.service >/dev/null 2>&1
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
cp -R e2e/guests/image/rootfs/. "$root/"
mkdir -p "$root/usr/local/share/haproxy-lab"
tar -C "$work/base" -cf "$root/usr/local/share/haproxy-lab/python-base.tar" .
base_python=$(chroot "$work/base" python3 --version)
rm -rf "$work/base"

{
    echo "suite=$SUITE"
    echo "base_python=$base_python"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$(($(date +%s) - start))"
    echo "size_bytes=$(du -sb "$root" | cut -f1)"
} >"$work/ready"
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$root" "$DEST/rootfs"
mv "$work/ready" "$DEST/ready"
log "built in $(($(date +%s) - start)) s: $DEST"
echo "$DEST"
