#!/bin/sh
# deploy-webapp.sh: install the Flask web app's files and (re)start it with
# docker compose, then wait until it answers its health check, so that the
# rolling update (one web server at a time) only moves on from a healthy server.
#
# Usage: deploy-webapp.sh SRC_DIR          (no stdin; run as root)
#   SRC_DIR: a directory copied to the VM by the previous step (app.py,
#   access_log.py, serve.py, requirements.txt, Dockerfile, .dockerignore, compose.yaml
#   whose top-level `name:` is the compose project, health-url: the URL to poll on this VM, one line).
#   It is removed at the end, whatever the outcome.
# Idempotent: when APP_DIR already holds the same files, the last deploy completed
# and the app is healthy, compose is not run. Otherwise the files are copied into a
# fresh sibling directory that then replaces APP_DIR (never a half-updated app dir),
# and `docker compose up -d --build --remove-orphans --wait` runs. If compose fails,
# the previous APP_DIR is put back (and brought up again, best effort) and the
# script exits non-zero.
# A run cut short (its step stopped by its time budget, a reboot) leaves a marker
# (.webapp.deploying beside APP_DIR) from before the swap until the deploy is
# confirmed or rolled back: the next run first puts the previous version back in
# APP_DIR (when the cut run had one), and does not trust "same files" to mean
# "running" until compose has brought them up.
#
# Environment (for tests; defaults are right for the VMs):
#   APP_DIR         install directory (default /opt/haproxy-lab/webapp)
#   DOCKER          docker CLI (default docker)
#   HEALTH_URL      polled until HTTP 200 (default: SRC_DIR/health-url)
#   HEALTH_TIMEOUT  seconds to wait for it (default 60)
#   COMPOSE_WAIT_TIMEOUT  compose --wait-timeout seconds (default 120)
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 SRC_DIR" >&2
    exit 2
fi
SRC=$1
APP_DIR=${APP_DIR:-/opt/haproxy-lab/webapp}
DOCKER=${DOCKER:-docker}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-60}
COMPOSE_WAIT_TIMEOUT=${COMPOSE_WAIT_TIMEOUT:-120}

if [ ! -d "$SRC" ] || [ ! -f "$SRC/compose.yaml" ] || [ ! -f "$SRC/Dockerfile" ]; then
    echo "$SRC is not a web app directory (no compose.yaml or Dockerfile)" >&2
    exit 2
fi
# The compose project is the shipped compose.yaml's `name:` (render/webapp.py defines it once); every compose
# call names it, so an older app directory put back after a failed deploy runs under the same project.
PROJECT=$(sed -n 's/^name: *//p' "$SRC/compose.yaml" | head -n 1 | tr -d "\"'")
if [ -z "$PROJECT" ]; then
    echo "$SRC/compose.yaml names no project (no top-level name:)" >&2
    exit 2
fi
if [ -z "${HEALTH_URL:-}" ]; then
    if [ ! -f "$SRC/health-url" ]; then
        echo "$SRC has no health-url file and HEALTH_URL is not set" >&2
        exit 2
    fi
    HEALTH_URL=$(head -n 1 "$SRC/health-url")
fi
src_abs=$(cd "$SRC" && pwd -P)
case $src_abs in
    / | "$APP_DIR" | "$APP_DIR"/*)
        echo "refusing SRC_DIR $src_abs" >&2
        exit 2
        ;;
esac

parent=$(dirname "$APP_DIR")
base=$(basename "$APP_DIR")
old="$parent/.$base.old"
failed="$parent/.$base.failed"
pending="$parent/.$base.deploying"
stage=
cleanup() {
    rm -rf "$SRC"
    [ -z "$stage" ] || rm -rf "$stage"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

compose_up() {
    "$DOCKER" compose --project-directory "$APP_DIR" -f "$APP_DIR/compose.yaml" -p "$PROJECT" \
        up -d --build --remove-orphans "$@"
}

healthy() {
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$HEALTH_URL" 2>/dev/null) || true
    [ "$code" = 200 ]
}

wait_healthy() {
    waited=0
    until healthy; do
        if [ "$waited" -ge "$HEALTH_TIMEOUT" ]; then
            echo "$HEALTH_URL did not answer 200 within ${HEALTH_TIMEOUT}s" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "healthy: $HEALTH_URL answers 200"
}

mkdir -p "$parent"
# Only one deploy runs at a time on a VM: a marker left behind is a run that was cut short.
confirmed=1
if [ -e "$pending" ]; then
    confirmed=0
    if [ -d "$old" ]; then
        # It had swapped (or was swapping) versions: the previous one is the last that was deployed.
        rm -rf "$failed"
        [ ! -d "$APP_DIR" ] || mv "$APP_DIR" "$failed"
        mv "$old" "$APP_DIR"
        echo "the last deploy was cut short: its previous version is back in $APP_DIR" >&2
    else
        echo "the last deploy was cut short: $APP_DIR is not known to be running" >&2
    fi
fi
# Leftovers of a run cut short: a staged copy, a previous version no run needs any more.
rm -rf "$parent/.$base.new."* "$old"
if [ -d "$APP_DIR" ] && diff -r "$SRC" "$APP_DIR" >/dev/null 2>&1; then
    if [ "$confirmed" -eq 1 ] && healthy; then
        echo "web app unchanged and healthy: nothing to do"
        exit 0
    fi
    echo "web app unchanged but not healthy or not known to be running: bringing it up again"
    : >"$pending"
    compose_up --wait --wait-timeout "$COMPOSE_WAIT_TIMEOUT"
    wait_healthy
    rm -f "$pending"
    exit 0
fi

# Stage the new version next to APP_DIR (same filesystem: the renames are atomic).
stage=$(mktemp -d "$parent/.$base.new.XXXXXX")
cp -R "$SRC/." "$stage/"
# Files arrive private (umask 077); make them readable for the image build.
chmod -R u=rwX,go=rX "$stage"
: >"$pending"
had_previous=0
if [ -d "$APP_DIR" ]; then
    had_previous=1
    mv "$APP_DIR" "$old"
fi
mv "$stage" "$APP_DIR"
stage=
echo "web app files installed in $APP_DIR; starting it"

rc=0
compose_up --wait --wait-timeout "$COMPOSE_WAIT_TIMEOUT" || rc=$?
if [ "$rc" -eq 0 ]; then
    wait_healthy || rc=$?
fi
if [ "$rc" -ne 0 ]; then
    echo "deploy failed (exit $rc)" >&2
    if [ "$had_previous" -eq 1 ]; then
        # Keep the failed version aside for diagnosis until the next run's cleanup.
        rm -rf "$failed"
        mv "$APP_DIR" "$failed"
        mv "$old" "$APP_DIR"
        echo "previous web app restored in $APP_DIR (failed version in $failed); bringing it up again" >&2
        # Once it runs again, nothing is left to finish; otherwise the marker makes the next run bring it up.
        if compose_up; then
            rm -f "$pending"
        else
            echo "could not bring the previous version up again" >&2
        fi
    fi
    exit 1
fi
# Confirmed: from here on, a cut leaves only garbage (no marker), which the next run removes.
rm -f "$pending"
rm -rf "$old" "$failed"
echo "web app deployed"
