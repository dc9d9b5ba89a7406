#!/bin/sh
# Provide the Pulumi engine that tests/test_engine.py runs: the pulumi CLI, a Python language host and
# the two provider plugins the program uses, at the versions of tools/pulumi-engine/versions.env.
#
# The engine installed the ordinary way (a pulumi CLI at PULUMI_VERSION on PATH, which bundles the Python language
# host, and both plugins installed with `pulumi plugin install`, as the users' CI does) is used as it is: nothing
# is built (`--installed`: only say whether it is there, exit 1 if not). A pulumi CLI at PULUMI_VERSION alone is
# used too, and the rest built. Otherwise everything is built from Go
# modules (go build -trimpath, each from a wrapper module of ours under tools/pulumi-engine/, whose
# go.mod/go.sum pin every module) and cached outside the repository:
#   $PULUMI_ENGINE_DIR (default /var/cache/haproxy-lab/pulumi-$PULUMI_VERSION)/bin, plus GOPATH,
#   GOMODCACHE and GOCACHE under /var/cache/haproxy-lab/go.
# A binary whose stamp (version + hash of its wrapper module) matches is not built again, so a warm run
# takes a second. The upstream modules that the Go module proxy refuses (language host, providers) are
# tried first and reported; in their place it builds haproxy-lab's substitutes (README, "The real engine").
#
# Needs Go (GO, default `go` on PATH or /usr/local/go/bin/go). A cold build takes a long while on 2 cores:
# progress lines name each step.
set -eu

cd "$(dirname "$0")/.."
ENGINE_SRC=$PWD/tools/pulumi-engine
# shellcheck disable=SC1091 # plain NAME=value lines, checked by tests/test_engine.py
. "$ENGINE_SRC/versions.env"

CACHE=${HAPROXY_LAB_CACHE:-/var/cache/haproxy-lab}
DEST=${PULUMI_ENGINE_DIR:-$CACHE/pulumi-$PULUMI_VERSION}
BIN=$DEST/bin
JOBS=${JOBS:-2}

log() { printf 'build-pulumi: %s\n' "$*"; }

# stamp NAME VERSION MODULE_DIR: what a built binary was built from (its version, its module's files).
stamp() {
    printf '%s %s %s\n' "$1" "$2" "$(cd "$3" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) |
        LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)"
}

# up_to_date NAME VERSION MODULE_DIR: the binary exists and was built from these pins.
up_to_date() {
    [ -x "$BIN/$1" ] && [ -f "$BIN/.$1.stamp" ] && [ "$(cat "$BIN/.$1.stamp")" = "$(stamp "$@")" ]
}

# installed_engine: the engine installed the ordinary way (users' CI, a workstation with Pulumi): a pulumi CLI
# at PULUMI_VERSION on PATH with the Python language host it bundles beside it, and both provider plugins at the
# versions the SDKs ask for in Pulumi's plugin cache (`pulumi plugin install resource NAME VERSION`).
installed_engine() {
    cli=$(command -v pulumi 2>/dev/null) || return 1
    [ "$("$cli" version 2>/dev/null)" = "v$PULUMI_VERSION" ] || return 1
    [ -x "$(dirname "$cli")/pulumi-language-python" ] || return 1
    plugins=${PULUMI_HOME:-$HOME/.pulumi}/plugins
    [ -x "$plugins/resource-proxmoxve-v$PROXMOXVE_PY_VERSION/pulumi-resource-proxmoxve" ] &&
        [ -x "$plugins/resource-command-v$COMMAND_PY_VERSION/pulumi-resource-command" ]
}

if installed_engine; then
    log "engine installed the ordinary way: $(command -v pulumi) v$PULUMI_VERSION and its plugins in" \
        "${PULUMI_HOME:-$HOME/.pulumi}/plugins; nothing to build"
    exit 0
fi
[ "${1:-}" = --installed ] && exit 1

ambient_cli=
if command -v pulumi >/dev/null 2>&1 && [ "$(command -v pulumi)" != "$BIN/pulumi" ]; then
    if [ "$(pulumi version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
        ambient_cli=$(command -v pulumi)
    fi
fi

need=
[ -n "$ambient_cli" ] || up_to_date pulumi "$PULUMI_VERSION" "$ENGINE_SRC/cli" || need="$need pulumi"
{ up_to_date pulumi-language-python "$PULUMI_VERSION" "$ENGINE_SRC/standins" &&
    [ -x "$BIN/pulumi-language-python-exec" ] && [ -x "$BIN/pulumi-resource-pulumi-python" ]; } ||
    need="$need pulumi-language-python"
up_to_date pulumi-resource-command "$COMMAND_PY_VERSION" "$ENGINE_SRC/standins" || need="$need pulumi-resource-command"
up_to_date pulumi-resource-proxmoxve "$PROXMOXVE_PY_VERSION" "$ENGINE_SRC/proxmoxve" ||
    need="$need pulumi-resource-proxmoxve"

if [ -z "$need" ]; then
    log "engine up to date in $BIN${ambient_cli:+ (CLI from PATH: $ambient_cli)}"
    exit 0
fi

GO=${GO:-}
if [ -z "$GO" ]; then
    if command -v go >/dev/null 2>&1; then GO=go; elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
fi
if [ -z "$GO" ]; then
    log "no Go toolchain: cannot build$need; install the engine instead (docs/engine.md, \"Where the engine" \
        "comes from\"): tests/test_engine.py fails under CI, is skipped elsewhere" >&2
    [ -z "${CI:-}" ] || exit 1
    exit 0
fi

export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local GOFLAGS=-mod=readonly
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"
log "building:$need ($("$GO" version | cut -d' ' -f3), -p $JOBS, caches in $GOPATH)"

# Report the upstream modules the proxy refuses, once per build, with its exact answer.
refused=$DEST/refused-modules.txt
: >"$refused.tmp"
for module in "$UPSTREAM_LANGUAGE_PYTHON" "$UPSTREAM_PROXMOXVE" "$UPSTREAM_COMMAND"; do
    if out=$(cd "$ENGINE_SRC/standins" && GOFLAGS=-mod=mod "$GO" mod download -json "$module" 2>&1); then
        log "upstream $module is now served: consider building it instead of our substitute"
    else
        printf '%s\n  %s\n' "$module" "$(printf '%s\n' "$out" | grep -E '"Error"|403|404|410|not available' | head -n 2 |
            tr '\n' ' ')" >>"$refused.tmp"
    fi
done
mv -f "$refused.tmp" "$refused"
[ -s "$refused" ] && log "refused by the Go module proxy (substitutes built instead; see $refused):" &&
    sed 's/^/build-pulumi:   /' "$refused"

# build NAME VERSION MODULE_DIR PACKAGE LDFLAGS
build() {
    log "go build $1 $2 ($4)"
    start=$(date +%s)
    (cd "$3" && "$GO" build -trimpath -p "$JOBS" -ldflags "$5" -o "$BIN/$1.tmp.$$" "$4")
    mv -f "$BIN/$1.tmp.$$" "$BIN/$1"
    stamp "$1" "$2" "$3" >"$BIN/.$1.stamp"
    log "built $1 in $(($(date +%s) - start)) s"
}

for name in $need; do
    case $name in
        pulumi)
            build pulumi "$PULUMI_VERSION" "$ENGINE_SRC/cli" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
                "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
            ;;
        pulumi-language-python)
            build pulumi-language-python "$PULUMI_VERSION" "$ENGINE_SRC/standins" ./cmd/pulumi-language-python \
                "-X main.Version=$PULUMI_VERSION"
            # The scripts the Python SDK's Go module ships: the program runner, which the host runs with the
            # project's venv, and the dynamic provider (pulumi.dynamic), which the engine starts as a plugin
            # with the project's runtime options (PULUMI_RUNTIME_VIRTUALENV).
            sdk=$(cd "$ENGINE_SRC/standins" && "$GO" list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
            install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
            install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
            ;;
        pulumi-resource-command)
            build pulumi-resource-command "$COMMAND_PY_VERSION" "$ENGINE_SRC/standins" ./cmd/pulumi-resource-command \
                "-X main.Version=$COMMAND_PY_VERSION"
            ;;
        pulumi-resource-proxmoxve)
            build pulumi-resource-proxmoxve "$PROXMOXVE_PY_VERSION" "$ENGINE_SRC/proxmoxve" . \
                "-X main.Version=$PROXMOXVE_PY_VERSION"
            ;;
    esac
done
log "engine ready in $BIN"
