#!/bin/sh
# Build HAProxy 3.0 for the test suite (configs are checked with `haproxy -c` on
# Debian's 2.6 AND on 3.0, bracketing the 2.8 that the lab VMs run).
#
# Source: ONLY the upstream tarball haproxy_3.0.*.orig.tar.gz of Debian trixie's
# haproxy source package. apt runs with a private configuration in a temp dir
# (own sources file, own lists and cache), so the machine's apt sources and
# lists are untouched. The tarball's SHA256 is taken from `apt-get
# --print-uris source`, i.e. from trixie's Sources index that apt verified
# against the Debian archive keyring, and checked after the download.
#
# Output: $HAPROXY3_BIN (default /var/cache/haproxy-lab/haproxy-3.0/haproxy).
# Cache: if that binary exists and `-v` reports 3.0, nothing is done.
# Needs root only to install missing build dependencies
# (build-essential libssl-dev libpcre2-dev curl) and to write the default path.
set -eu

DEST=${HAPROXY3_BIN:-/var/cache/haproxy-lab/haproxy-3.0/haproxy}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
JOBS=${JOBS:-2}

log() { printf 'build-haproxy3: %s\n' "$*"; }

if [ -x "$DEST" ] && "$DEST" -v 2>/dev/null | head -n 1 | grep -q 'version 3\.0\.'; then
    log "already built: $("$DEST" -v | head -n 1) at $DEST"
    exit 0
fi

missing=
for pkg in build-essential libssl-dev libpcre2-dev curl ca-certificates; do
    if ! dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    log "installing build dependencies:$missing"
    apt-get -o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 update
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 \
        install -y --no-install-recommends $missing
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt drops privileges to _apt for downloads; the private dirs are ours (0700), so download as us.
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
cat >"$work/trixie-src.sources" <<SOURCES
Types: deb-src
URIs: $MIRROR
Suites: trixie
Components: main
Signed-By: $KEYRING
SOURCES

apt_private() {
    apt-get -q \
        -o Dir::Etc::SourceList="$work/trixie-src.sources" \
        -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$work/lists" \
        -o Dir::Cache="$work/cache" \
        -o APT::Sandbox::User="$(id -un)" \
        -o Acquire::Retries=5 \
        "$@"
}

log "fetching Debian trixie's source index (private apt configuration in $work)"
apt_private update >"$work/update.log" 2>&1 || { cat "$work/update.log" >&2; exit 1; }

# Lines look like: 'URI' haproxy_3.0.11.orig.tar.gz SIZE SHA256:hex
line=$(apt_private --print-uris source haproxy 2>/dev/null | grep "haproxy_3\.0\.[0-9]*\.orig\.tar\.gz" | head -n 1) || true
if [ -z "$line" ]; then
    log "no haproxy_3.0.*.orig.tar.gz in trixie's haproxy source package" >&2
    exit 1
fi
uri=$(printf '%s\n' "$line" | cut -d' ' -f1 | tr -d "'")
file=$(printf '%s\n' "$line" | cut -d' ' -f2)
sha=$(printf '%s\n' "$line" | cut -d' ' -f4)
case $sha in
    SHA256:*) sha=${sha#SHA256:} ;;
    *) log "no SHA256 for $file in the index (got '$sha')" >&2; exit 1 ;;
esac

log "downloading $file"
curl -fsSL --retry 5 --retry-delay 2 --connect-timeout 20 -o "$work/$file" "$uri"
printf '%s  %s\n' "$sha" "$work/$file" | sha256sum -c --quiet -
log "SHA256 verified against trixie's signed Sources index"

tar -xzf "$work/$file" -C "$work/src" --strip-components=1
log "building (make -j$JOBS TARGET=linux-glibc USE_OPENSSL=1 USE_PCRE2=1 USE_PROMEX=1)"
make -C "$work/src" -j"$JOBS" TARGET=linux-glibc USE_OPENSSL=1 USE_PCRE2=1 USE_PROMEX=1 \
    >"$work/make.log" 2>&1 || { tail -n 50 "$work/make.log" >&2; exit 1; }

"$work/src/haproxy" -v | head -n 1 | grep -q 'version 3\.0\.' || {
    log "built binary does not report 3.0" >&2
    exit 1
}
mkdir -p "$(dirname "$DEST")"
install -m 0755 "$work/src/haproxy" "$DEST.tmp.$$"
mv -f "$DEST.tmp.$$" "$DEST"
log "installed $("$DEST" -v | head -n 1) at $DEST"
