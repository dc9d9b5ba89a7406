#!/bin/sh
# apply-tls-cert.sh: install the site's certificate, chain and key for HAProxy, and hand a new one to the
# running HAProxy without a reload (runtime API: `set ssl cert` then `commit ssl cert` on the admin socket).
#
# Usage: apply-tls-cert.sh LIVE < pem   (run as root; stdin: certificate, chain, key, then the trailer line
# of lib/apply-config.sh; LIVE is the file haproxy.cfg's `crt` names)
# The key is never on a command line nor printed: the file is root-owned, mode 0600 in a 0700 directory
# (HAProxy reads it as root before it drops privileges; the runtime API gets it through the admin socket).
# Steps: stage beside LIVE (same filesystem: mv is atomic); refuse it unless it ends with the trailer (a
# truncated upload) and openssl reads a certificate and its private key from it; byte-identical to LIVE: nothing
# to do; else swap it in (LIVE.previous kept), then, if the running HAProxy has LIVE loaded, push it through
# the runtime API; if not, the next start or reload reads the file. HAProxy refusing it puts the previous file
# back (exit 1). A run cut between the swap and a confirmed push leaves lib/apply-config.sh's pending marker:
# the next run pushes the file in place again.
#
# Environment (for tests; the defaults are right for the VMs):
#   HAPROXY_ADMIN_SOCKET   the runtime API (default /run/haproxy/admin.sock, haproxy.cfg's `stats socket`)
set -eu

LIVE=${1:?usage: apply-tls-cert.sh LIVE < pem}
ADMIN_SOCKET=${HAPROXY_ADMIN_SOCKET:-/run/haproxy/admin.sock}

umask 077
# haproxy-lab: include lib/haproxy-cli.sh
# haproxy-lab: include lib/apply-config.sh
trap apply_cleanup EXIT
trap 'exit 1' HUP INT TERM

# Root only: the directory and every file in it (the staged copy, LIVE, LIVE.previous) hold the key.
private() {
    chmod 0600 "$1"
}

# push: hand LIVE to HAProxy through the runtime API, when HAProxy runs and serves LIVE; 0 when done or not needed.
push() {
    loaded=$(haproxy_cli "$ADMIN_SOCKET" "show ssl cert" 2>/dev/null) || {
        echo "HAProxy's admin socket does not answer: the file is read at its next start"
        return 0
    }
    if ! printf '%s\n' "$loaded" | grep -Fqx "$LIVE"; then
        echo "HAProxy does not serve $LIVE yet: its next configuration reload reads it"
        return 0
    fi
    # The payload ends at the first empty line: PEM needs none, and comments (the trailer) stay out.
    answer=$({
        printf 'set ssl cert %s <<\n' "$LIVE"
        grep -v -e '^#' -e '^[[:space:]]*$' "$LIVE"
        printf '\n'
    } | haproxy_cli "$ADMIN_SOCKET" -) || answer=
    case $answer in
        *Transaction*) ;;
        *)
            haproxy_cli "$ADMIN_SOCKET" "abort ssl cert $LIVE" >/dev/null 2>&1 || true
            echo "HAProxy refused the new certificate: ${answer:-no answer}" >&2
            return 1
            ;;
    esac
    answer=$(haproxy_cli "$ADMIN_SOCKET" "commit ssl cert $LIVE") || answer=
    case $answer in
        *Success*) echo "HAProxy serves the new certificate (runtime API, no reload)" ;;
        *)
            echo "HAProxy did not commit the new certificate: ${answer:-no answer}" >&2
            return 1
            ;;
    esac
}

mkdir -p "$(dirname "$LIVE")"
chmod 0700 "$(dirname "$LIVE")"
stage_checked "$LIVE" private "the certificate file"
# The certificate's public key and the one derived from the private key (only public keys are printed).
if ! cert_key=$(openssl x509 -in "$staged" -noout -pubkey 2>/dev/null) ||
    ! own_key=$(openssl pkey -in "$staged" -pubout 2>/dev/null); then
    echo "refused: openssl finds no certificate or no private key in the new file; $LIVE untouched" >&2
    exit 1
fi
if [ "$cert_key" != "$own_key" ]; then
    echo "refused: the private key does not match the certificate; $LIVE untouched" >&2
    exit 1
fi

if [ ! -f "$LIVE" ] || ! cmp -s "$staged" "$LIVE"; then
    swap_in "$staged" "$LIVE" private
    staged=
    echo "certificate replaced (previous kept as $LIVE.previous)"
elif reload_pending "$LIVE"; then
    echo "certificate in place, but its push to HAProxy was cut short: pushing it"
else
    echo "certificate unchanged: nothing to do"
    exit 0
fi
if ! push; then
    # Disk and HAProxy must agree: the next start would otherwise serve what HAProxy refused now.
    if put_back "$LIVE"; then
        echo "previous certificate put back in $LIVE" >&2
    fi
    reload_confirmed "$LIVE"
    exit 1
fi
reload_confirmed "$LIVE"
