#!/bin/sh
# demo.sh - where the README's first command ends: an echo service on
# 127.0.0.1:7000 (socat, each connection relayed to cat) and, in the
# foreground, wsgate on etc/wsgate.ini: the demo page of contrib/web on
# http://127.0.0.1:8080/ (and [::1]:8080), whose /echo route relays typed
# lines to that echo service. Ctrl-C stops both (open sessions get
# drain_timeout; a second Ctrl-C closes them at once). Run from anywhere.
#
# Environment: WSGATE  the wsgate binary (default: build/src/wsgate of this
# checkout).
top=$(cd "$(dirname "$0")/.." && pwd) || exit 1
: "${WSGATE:=$top/build/src/wsgate}"
[ -x "$WSGATE" ] || {
	echo "demo.sh: $WSGATE is not built yet" >&2
	exit 1
}
command -v socat >/dev/null 2>&1 || {
	echo "demo.sh: socat not found (sh contrib/deps.sh installs it)" >&2
	exit 1
}

# echo_up: true when something accepts connections on 127.0.0.1:7000.
echo_up() {
	socat -u OPEN:/dev/null TCP:127.0.0.1:7000 2>/dev/null
}

echo_pid=""
if echo_up; then
	echo "demo.sh: something already listens on 127.0.0.1:7000; the demo relays to it"
else
	socat TCP-LISTEN:7000,bind=127.0.0.1,fork,reuseaddr EXEC:cat &
	echo_pid=$!
	# Started in the background, socat ignores Ctrl-C: stop it on the way out.
	trap 'kill "$echo_pid" 2>/dev/null' EXIT
	trap 'exit 130' INT TERM
	i=0
	until echo_up; do
		i=$((i + 1))
		if [ "$i" -gt 100 ] || ! kill -0 "$echo_pid" 2>/dev/null; then
			echo "demo.sh: the echo service did not start on 127.0.0.1:7000" >&2
			exit 1
		fi
		sleep 0.05
	done
fi
cat <<MSG
demo.sh: echo service on 127.0.0.1:7000, wsgate on $top/etc/wsgate.ini.
demo.sh: open http://127.0.0.1:8080/ in a browser, press "connect", type a line:
demo.sh: it comes back through wsgate. Ctrl-C stops the demo.
MSG
"$WSGATE" -c "$top/etc/wsgate.ini"
