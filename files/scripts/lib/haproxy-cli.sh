# shellcheck shell=sh
# lib/haproxy-cli.sh: one command to an HAProxy CLI socket (admin socket or master socket).
# Not run on its own: render/shipping.py inlines it where a script says
# "# haproxy-lab: include lib/haproxy-cli.sh".
# Why python3: cloud-init is Python, so every lab VM has it, while socat is not installed by default
# and nc variants differ on the half-close the master CLI waits for before it answers.

# haproxy_cli SOCKET COMMAND: print HAProxy's answer; non-zero when the socket does not answer
# (missing, refused while the master re-executes, or silent for 5 s). COMMAND "-" reads the command (and a
# payload, which may hold a key: never on a command line) from stdin.
haproxy_cli() {
    python3 -c '
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(5)
try:
    sock.connect(sys.argv[1])
    command = sys.stdin.buffer.read() if sys.argv[2] == "-" else sys.argv[2].encode() + b"\n"
    sock.sendall(command)
    sock.shutdown(socket.SHUT_WR)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
except OSError as error:
    sys.stderr.write("%s: %s\n" % (sys.argv[1], error))
    sys.exit(1)
sys.stdout.write(b"".join(chunks).decode("utf-8", "replace"))
' "$1" "$2"
}
