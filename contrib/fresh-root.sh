#!/bin/sh
# fresh-root.sh - the README's Quick start, run as a newcomer would: in a new
# Debian 12 (minbase) root, as root, from the top of a clean clone.
#
# Usage (as root): sh contrib/fresh-root.sh DIR [STEPS]
#   DIR    the root to make; it must not exist (it is kept for inspection)
#   STEPS  1 (default): command 1; once the demo answers, check from outside
#            the root that http://127.0.0.1:8080/ serves the demo page and
#            that a line sent to ws://127.0.0.1:8080/echo comes back, then
#            press Ctrl-C (SIGINT to its process group) and check that
#            nothing is left running in the root
#          "1 2": then command 2, the whole test suite (about 30 minutes on
#            2 cores)
# Environment:
#   REPO      the git repository cloned into DIR/root/wsgate (default: this
#             checkout; its committed HEAD, not the work tree's changes)
#   MIRROR    Debian mirror (default http://deb.debian.org/debian)
#   BASE_TAR  a tar of a bookworm minbase root unpacked instead of running
#             debootstrap; made there after debootstrap when it does not exist
#   LOG       transcript with wall times (default DIR.log)
# The commands are taken from the clone's README.md, exactly as written, and
# run by bash (root's shell on Debian) in the chroot. The root shares this
# machine's network: ports 7000 and 8080 must be free. /proc, /sys, /dev and
# /dev/pts are bind-mounted into it (and a tmpfs on /dev/shm) until the end.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || {
	sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}
root=$1
steps=${2:-1}
: "${REPO:=$top}" "${MIRROR:=http://deb.debian.org/debian}" "${BASE_TAR:=}"
: "${LOG:=$root.log}"
python3=/usr/bin/python3
[ -x "$python3" ] || python3=python3
[ "$(id -u)" = 0 ] || {
	echo "fresh-root.sh: run as root" >&2
	exit 2
}
[ ! -e "$root" ] || {
	echo "fresh-root.sh: $root exists; give a new directory" >&2
	exit 2
}
mkdir -p "$root"
root=$(cd "$root" && pwd)
: >"$LOG"

say() {
	echo "fresh-root: $*" | tee -a "$LOG"
}

# in_root PROCESSES: the pids of the processes whose root is $root.
in_root() {
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && echo "${p#/proc/}"
	done
	return 0
}

mounted=""
cleanup() {
	pids=$(in_root)
	if [ -n "$pids" ]; then
		# shellcheck disable=SC2086 # a list of pids
		kill $pids 2>/dev/null || true
		sleep 1
		# shellcheck disable=SC2046
		kill -9 $(in_root) 2>/dev/null || true
	fi
	for m in $mounted; do
		umount "$root$m" 2>/dev/null || umount -l "$root$m" || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the root -----------------------------------------------------------------
t0=$(date +%s)
if [ -n "$BASE_TAR" ] && [ -f "$BASE_TAR" ]; then
	say "unpacking $BASE_TAR into $root"
	tar -C "$root" -xf "$BASE_TAR"
else
	if ! command -v debootstrap >/dev/null 2>&1; then
		say "installing debootstrap"
		apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq -o Dpkg::Use-Pty=0 \
			install -y debootstrap >>"$LOG" 2>&1
	fi
	say "debootstrap --variant=minbase bookworm $root $MIRROR"
	debootstrap --variant=minbase bookworm "$root" "$MIRROR" >>"$LOG" 2>&1 || {
		tail -n 20 "$LOG" >&2
		exit 1
	}
	[ -z "$BASE_TAR" ] || tar -C "$root" -cf "$BASE_TAR" .
fi
# What the Debian installer adds to a minbase: updates and security sources,
# /etc/hosts.
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
# This machine's own CAs (a proxy that intercepts TLS, as npm ci meets one):
# trusted in the root too once its ca-certificates package is installed.
if [ -d /usr/local/share/ca-certificates ]; then
	mkdir -p "$root/usr/local/share/ca-certificates"
	cp -R /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
cat >"$root/etc/hosts" <<EOF
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
EOF
say "root ready in $(($(date +%s) - t0)) s"

for m in /proc /sys /dev /dev/pts; do
	mount --bind "$m" "$root$m"
	mount --make-rslave "$root$m"
	mounted="$m $mounted"
done
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mounted="/dev/shm $mounted"

git clone -q "$REPO" "$root/root/wsgate"
say "cloned $REPO at $(git -C "$root/root/wsgate" log -1 --format='%h %s')"

# quick_start N: command N of the README's Quick start block.
quick_start() {
	awk -v n="# $1." '/^## Quick start/ { q = 1 }
		q && /^```sh/ { b = 1; next }
		b && /^```/ { exit }
		b && index($0, n) == 1 { getline; print; exit }' "$root/root/wsgate/README.md"
}

# run_in_root COMMAND: run COMMAND as root's login shell would, from the top
# of the clone, in a session of its own with SIGINT at its default.
run_in_root() {
	env --default-signal=INT,QUIT setsid chroot "$root" /usr/bin/env -i HOME=/root \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
		TERM=dumb /bin/bash -c "cd /root/wsgate && $1"
}

# ws_echo: send a line through ws://127.0.0.1:8080/echo, print the reply
# (Python's standard library only).
ws_echo() {
	"$python3" - <<'EOF'
import base64, os, socket, struct
s = socket.create_connection(("127.0.0.1", 8080), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n").encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
print(head.split(b"\r\n")[0].decode())
line = b"hello from outside the root\n"
mask = os.urandom(4)
s.sendall(bytes([0x82, 0x80 | len(line)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(line)))
got = b""
while len(got) < len(line):
    h = s.recv(2)
    n = h[1] & 0x7F
    data = b""
    while len(data) < n:
        data += s.recv(n - len(data))
    got += data
print(repr(got), "echoed" if got == line else "MISMATCH")
EOF
}

# ---- command 1 ------------------------------------------------------------------
cmd1=$(quick_start 1)
[ -n "$cmd1" ] || {
	say "no command 1 in README.md's Quick start"
	exit 1
}
if curl -s -o /dev/null http://127.0.0.1:8080/; then
	say "something already answers on 127.0.0.1:8080 on this machine; stop it first"
	exit 1
fi
say "command 1: $cmd1"
echo "\$ $cmd1" >>"$LOG"
t1=$(date +%s)
run_in_root "$cmd1" >>"$LOG" 2>&1 &
pid=$!
until curl -s -o /dev/null http://127.0.0.1:8080/; do
	if ! kill -0 "$pid" 2>/dev/null; then
		st=0
		wait "$pid" || st=$?
		say "command 1 ended (exit $st) after $(($(date +%s) - t1)) s before the demo answered"
		exit 1
	fi
	sleep 2
done
say "command 1: the demo answers after $(($(date +%s) - t1)) s"
ok=1
title=$(curl -s http://127.0.0.1:8080/ | sed -n 's:.*<title>\(.*\)</title>.*:\1:p')
say "GET http://127.0.0.1:8080/ from outside: title \"$title\""
[ "$title" = "wsgate demo: a line terminal" ] || ok=0
reply=$(ws_echo 2>&1) || true
say "ws://127.0.0.1:8080/echo from outside: $(echo "$reply" | tr '\n' ' ')"
case $reply in *" echoed"*) ;; *) ok=0 ;; esac

# The terminal's foreground process group: bash -c and all it started.
pgid=$(ps -o pgid= -p "$(in_root | head -n 1)" | tr -d ' ')
if [ -z "$pgid" ] || [ "$pgid" = "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then
	say "cannot find the process group of command 1"
	exit 1
fi
say "Ctrl-C: SIGINT to process group $pgid"
/bin/kill -s INT -- "-$pgid"
st=0
wait "$pid" || st=$?
sleep 1
left=$(in_root | tr '\n' ' ')
say "command 1 ended with exit status $st; processes left in the root: ${left:-none}"
[ -z "$left" ] || ok=0
[ "$ok" = 1 ] || {
	say "command 1: FAILED (see $LOG)"
	exit 1
}
say "command 1: OK"

# ---- command 2 ------------------------------------------------------------------
case " $steps " in
*" 2 "*)
	cmd2=$(quick_start 2)
	say "command 2: $cmd2"
	echo "\$ $cmd2" >>"$LOG"
	t2=$(date +%s)
	st=0
	# In the background so that a signal to this script ends it at once
	# (and the EXIT trap stops what runs in the root and unmounts).
	run_in_root "$cmd2" >>"$LOG" 2>&1 &
	wait "$!" || st=$?
	say "command 2: exit status $st after $(($(date +%s) - t2)) s"
	grep '^all\.sh: ' "$LOG" | sed 's/^/fresh-root: /' || true
	[ "$st" = 0 ] || exit 1
	;;
esac
say "done in $(($(date +%s) - t0)) s; transcript: $LOG"
