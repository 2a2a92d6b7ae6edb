#!/bin/sh
# run.sh - wsgate end to end in a real browser (headless Chromium).
#
# Starts a TCP echo backend and wsgate, serves tests/browser/www, and runs
# e2e.mjs (playwright-core driving /usr/bin/chromium): binary and text echo
# checked byte for byte, the base64 subprotocol, an Origin the route refuses,
# an idle page kept alive by heartbeats, web_root as a browser sees it
# (Content-Type for modules and wasm, HEAD, 304, 301, 404, 405), the demo
# terminal page of contrib/web (served by a second wsgate whose web_root is
# contrib/web, its /echo route relaying typed lines to the echo backend), and
# noVNC (Debian's novnc package, served from web_root) showing a TigerVNC
# desktop reached through a token route; routing by Host on a tls listener
# (hosts: wss to a.test, x.b.test and names no route serves, Chromium mapping
# *.test to 127.0.0.1, the certificate made with openssl here and pinned by
# its key); and an asciicast recording made through wsgate replayed by
# contrib/web/replay.html with asciinema-player (replay).
#
# Environment:
#   WSGATE      the wsgate binary (required; exit 77 = skip when missing)
#   CHROMIUM    browser (default /usr/bin/chromium; missing -> exit 77)
#   NODE        node (default: node on PATH; missing -> exit 77)
#   PYTHON3     for serving the page while wsgate has no web_root (default /usr/bin/python3)
#   WSGATE_BROWSER_SCENARIOS  override the list (echo,echo-deflate,echo-b64,origin,heartbeat,
#                             static,demo,hosts,replay,novnc)
#   WSGATE_BROWSER_NOVNC=0    leave noVNC out
#   WSGATE_BROWSER_ARTIFACTS  keep screenshots and logs in this directory
# node_modules must be installed first: (cd tests/browser && npm ci); without
# it the run is skipped (77). Exit 0 all passed, 1 a scenario failed, 99 the
# harness itself could not start something.
#
# When wsgate does not accept web_root yet, the page is served by
# python3 -m http.server on another port and the page connects to wsgate's
# port ("split" mode); noVNC uses a plain backend route while token_file is
# not accepted. The mode is printed. The demo page connects to its own origin,
# so the demo scenario needs web_root and is left out in split mode.

here=$(cd "$(dirname "$0")" && pwd) || exit 99
: "${CHROMIUM:=/usr/bin/chromium}"
: "${NODE:=node}"
: "${PYTHON3:=/usr/bin/python3}"

# With WSGATE_REQUIRE_ALL=1 (tests/all.sh, CI) a missing prerequisite is
# a failure (exit 1), not a skip.
skip() {
	if [ "${WSGATE_REQUIRE_ALL:-0}" = 1 ]; then
		echo "run.sh: $*; WSGATE_REQUIRE_ALL=1: the browser tests must run" >&2
		exit 1
	fi
	echo "run.sh: $*; skipping the browser tests" >&2
	exit 77
}
if [ -z "$WSGATE" ] || [ ! -x "$WSGATE" ]; then
	skip "wsgate binary '${WSGATE}' is not executable"
fi
[ -x "$CHROMIUM" ] || skip "$CHROMIUM not found (Debian: apt-get install chromium)"
command -v "$NODE" >/dev/null 2>&1 || skip "node not found (Debian: apt-get install nodejs npm)"
[ -f "$here/node_modules/playwright-core/package.json" ] ||
	skip "playwright-core is not installed (cd tests/browser && npm ci)"
case $WSGATE in
/*) ;;
*) WSGATE=$(pwd)/$WSGATE ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-browser.XXXXXX") || exit 99
pids=""
keep=0
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	for p in $pids; do
		wait "$p" 2>/dev/null
	done
	if [ "$keep" = 1 ]; then
		echo "run.sh: logs kept in $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "run.sh: $*" >&2
	keep=1
	exit 99
}

# A free TCP port on 127.0.0.1 (bound and released: good enough for a test).
free_port() {
	"$NODE" -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# wait_file FILE SECONDS
wait_file() {
	i=0
	while [ ! -s "$1" ]; do
		i=$((i + 1))
		[ "$i" -gt $(($2 * 20)) ] && return 1
		sleep 0.05
	done
}

# True when wsgate -t accepts the INI text in $1.
accepts() {
	printf '%s\n' "$1" >"$tmp/probe.ini"
	"$WSGATE" -t -c "$tmp/probe.ini" >"$tmp/probe.out" 2>&1
}

# start_wsgate NAME WHAT: check $tmp/NAME.ini with -t (die naming WHAT when
# it is refused), then run wsgate on it in the background, logging to
# $tmp/NAME.log.
start_wsgate() {
	"$WSGATE" -t -c "$tmp/$1.ini" >"$tmp/check.out" 2>&1 || {
		cat "$tmp/check.out" >&2
		die "wsgate rejects the $2 configuration"
	}
	"$WSGATE" -c "$tmp/$1.ini" >"$tmp/$1.log" 2>&1 &
	pids="$pids $!"
}

# ---- backends -----------------------------------------------------------
"$NODE" "$here/echo-server.mjs" "$tmp/echo.port" &
pids="$pids $!"
wait_file "$tmp/echo.port" 10 || die "the echo backend did not start"
echo_port=$(cat "$tmp/echo.port")

# ---- what this wsgate supports ----------------------------------------------
web_root=0
if accepts "[gateway]
listen = 127.0.0.1:1
web_root = $here/www
[route:x]
path = /x
backend = 127.0.0.1:1"; then
	web_root=1
fi
printf 'vnc: 127.0.0.1:1\n' >"$tmp/probe.tokens"
token_file=0
if accepts "[gateway]
listen = 127.0.0.1:1
[route:x]
path = /x
token_file = $tmp/probe.tokens"; then
	token_file=1
fi

ws_port=$(free_port) || die "no free port"
if [ "$web_root" = 1 ]; then
	echo "run.sh: mode: page served by wsgate's web_root"
	page_port=$ws_port
	web_line="web_root = $here/www"
else
	echo "run.sh: mode: split (wsgate does not accept web_root yet; the page is served by python3 -m http.server)"
	page_port=$(free_port) || die "no free port"
	web_line=""
	"$PYTHON3" -m http.server --bind 127.0.0.1 --directory "$here/www" "$page_port" \
		>"$tmp/http-page.log" 2>&1 &
	pids="$pids $!"
fi
origin="http://127.0.0.1:$page_port"

cat >"$tmp/wsgate.ini" <<EOF
[gateway]
listen = 127.0.0.1:$ws_port
workers = 1
log_level = info
$web_line

[route:echo]
path = /echo
backend = 127.0.0.1:$echo_port
allowed_origins = $origin
subprotocols = binary, base64

[route:deny]
path = /deny
backend = 127.0.0.1:$echo_port
allowed_origins = https://allowed.example

[route:z]
path = /z
backend = 127.0.0.1:$echo_port
allowed_origins = $origin
compression = on

[route:hb]
path = /hb
backend = 127.0.0.1:$echo_port
ping_interval = 1s
pong_timeout = 1s
EOF
start_wsgate wsgate test
wait_for="127.0.0.1:$ws_port,127.0.0.1:$page_port"

scenarios=${WSGATE_BROWSER_SCENARIOS:-echo,echo-deflate,echo-b64,origin,heartbeat}
if [ -z "$WSGATE_BROWSER_SCENARIOS" ] && [ "$web_root" = 1 ]; then
	scenarios="$scenarios,static,demo,hosts,replay"
elif [ -z "$WSGATE_BROWSER_SCENARIOS" ]; then
	echo "run.sh: demo scenario left out (the demo page needs wsgate's web_root)"
fi

# ---- the demo page of contrib/web, served by its own wsgate -------------------
demo_url=""
case ",$scenarios," in
*,demo,*)
	demo_root=$(cd "$here/../../contrib/web" && pwd) || die "contrib/web not found"
	[ -f "$demo_root/index.html" ] || die "$demo_root/index.html not found"
	demo_port=$(free_port) || die "no free port"
	cat >"$tmp/wsgate-demo.ini" <<EOF
[gateway]
listen = 127.0.0.1:$demo_port
workers = 1
log_level = info
web_root = $demo_root

[route:echo]
path = /echo
backend = 127.0.0.1:$echo_port
allowed_origins = http://127.0.0.1:$demo_port
subprotocols = binary, base64
EOF
	start_wsgate wsgate-demo demo
	demo_url="http://127.0.0.1:$demo_port/"
	wait_for="$wait_for,127.0.0.1:$demo_port"
	;;
esac

# ---- routing by Host on a tls listener ----------------------------------------
# Two routes on the same path, the wildcard first in the file: a gateway that
# ignored the Host header would send every name to one backend.
hosts_port=""
hosts_spki=""
case ",$scenarios," in
*,hosts,*)
	command -v openssl >/dev/null 2>&1 || die "openssl not found (the hosts scenario makes its certificate)"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=a.test -addext "subjectAltName=DNS:a.test,DNS:*.b.test" \
		-keyout "$tmp/hosts.key" -out "$tmp/hosts.crt" >"$tmp/openssl.log" 2>&1 || {
		cat "$tmp/openssl.log" >&2
		die "openssl req failed"
	}
	hosts_spki=$(openssl x509 -in "$tmp/hosts.crt" -noout -pubkey |
		openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64) ||
		die "cannot hash the test certificate's key"
	for b in A B; do
		"$NODE" "$here/echo-server.mjs" "$tmp/backend$b.port" "backend $b" &
		pids="$pids $!"
		wait_file "$tmp/backend$b.port" 10 || die "backend $b did not start"
	done
	hosts_port=$(free_port) || die "no free port"
	cat >"$tmp/wsgate-hosts.ini" <<EOF
[gateway]
listen = 127.0.0.1:$hosts_port tls
workers = 1
log_level = info

[tls]
cert = $tmp/hosts.crt
key = $tmp/hosts.key

[route:b]
host = *.b.test
path = /x
backend = 127.0.0.1:$(cat "$tmp/backendB.port")

[route:a]
host = a.test
path = /x
backend = 127.0.0.1:$(cat "$tmp/backendA.port")
EOF
	start_wsgate wsgate-hosts hosts
	wait_for="$wait_for,127.0.0.1:$hosts_port"
	;;
esac

# ---- an asciicast recording replayed by contrib/web/replay.html ----------------
# web_root is a copy of replay.html and the player's files; the route records
# into its rec/ directory, so the page fetches the recording from web_root.
replay_base=""
replay_root=""
replay_banner=$(printf '\033[1;32mwsgate replay check\033[0m\r\nsecond line: 42')
case ",$scenarios," in
*,replay,*)
	player="$here/node_modules/asciinema-player/dist/bundle"
	[ -f "$player/asciinema-player.min.js" ] ||
		die "$player/asciinema-player.min.js not found (cd tests/browser && npm ci)"
	replay_root="$tmp/replay-root"
	mkdir -p "$replay_root/asciinema-player" "$replay_root/rec" || die "cannot make $replay_root"
	cp "$here/../../contrib/web/replay.html" "$replay_root/" &&
		cp "$player"/* "$replay_root/asciinema-player/" || die "cannot copy replay.html and the player"
	"$NODE" "$here/echo-server.mjs" "$tmp/rec-backend.port" "$replay_banner" &
	pids="$pids $!"
	wait_file "$tmp/rec-backend.port" 10 || die "the recorded backend did not start"
	replay_port=$(free_port) || die "no free port"
	cat >"$tmp/wsgate-replay.ini" <<EOF
[gateway]
listen = 127.0.0.1:$replay_port
workers = 1
log_level = info
web_root = $replay_root

[route:rec]
path = /rec
backend = 127.0.0.1:$(cat "$tmp/rec-backend.port")
record = $replay_root/rec
record_format = asciicast
EOF
	start_wsgate wsgate-replay replay
	replay_base="http://127.0.0.1:$replay_port/"
	wait_for="$wait_for,127.0.0.1:$replay_port"
	;;
esac

# ---- noVNC behind a token route -------------------------------------------
novnc_url=""
if [ -z "$WSGATE_BROWSER_SCENARIOS" ] && [ "${WSGATE_BROWSER_NOVNC:-1}" != 0 ]; then
	if [ ! -f /usr/share/novnc/vnc.html ] || ! command -v Xvnc >/dev/null 2>&1 ||
		! command -v xsetroot >/dev/null 2>&1; then
		echo "run.sh: noVNC scenario left out (needs novnc, tigervnc-standalone-server, x11-xserver-utils)"
	else
		scenarios="$scenarios,novnc"
	fi
fi
case ",$scenarios," in
*,novnc,*)
	vnc_port=$(free_port) || die "no free port"
	# Xvnc picks a free display number itself and writes it to fd 9 once it
	# listens (-displayfd): a number chosen here by looking at /tmp/.X11-unix
	# can be taken, through the abstract socket namespace, by the X server of
	# another root on this machine (two test runs side by side), and then
	# xsetroot would draw on that one while our Xvnc had died.
	Xvnc -displayfd 9 -rfbport "$vnc_port" -localhost -SecurityTypes None -geometry 640x480 \
		-depth 24 -nolisten tcp 9>"$tmp/xdisplay" >"$tmp/xvnc.log" 2>&1 &
	pids="$pids $!"
	# Draw a red and blue pattern on the root window once the server is up.
	i=0
	n=""
	until [ -n "$n" ] && DISPLAY=":$n" xsetroot -mod 16 16 -fg '#ff0000' -bg '#0000ff' 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -gt 200 ] && {
			cat "$tmp/xvnc.log" >&2
			die "Xvnc did not start"
		}
		sleep 0.05
		n=$(tr -dc 0-9 <"$tmp/xdisplay")
	done

	token="e2e-$(date +%s)-$$"
	vnc_ws_port=$(free_port) || die "no free port"
	if [ "$token_file" = 1 ]; then
		printf '# browser test\n%s: 127.0.0.1:%s\n' "$token" "$vnc_port" >"$tmp/tokens"
		target_line="token_file = $tmp/tokens"
	else
		echo "run.sh: wsgate does not accept token_file yet: noVNC uses a plain backend route"
		target_line="backend = 127.0.0.1:$vnc_port"
	fi
	if [ "$web_root" = 1 ]; then
		novnc_web="web_root = /usr/share/novnc"
		novnc_url="http://127.0.0.1:$vnc_ws_port/vnc.html?autoconnect=1&path=websockify?token=$token"
		wait_for="$wait_for,127.0.0.1:$vnc_ws_port"
	else
		novnc_web=""
		novnc_page=$(free_port) || die "no free port"
		"$PYTHON3" -m http.server --bind 127.0.0.1 --directory /usr/share/novnc "$novnc_page" \
			>"$tmp/http-novnc.log" 2>&1 &
		pids="$pids $!"
		novnc_url="http://127.0.0.1:$novnc_page/vnc.html?autoconnect=1&host=127.0.0.1&port=$vnc_ws_port&path=websockify?token=$token"
		wait_for="$wait_for,127.0.0.1:$vnc_ws_port,127.0.0.1:$novnc_page"
	fi
	cat >"$tmp/wsgate-novnc.ini" <<EOF
[gateway]
listen = 127.0.0.1:$vnc_ws_port
workers = 1
$novnc_web

[route:vnc]
path = /websockify
$target_line
EOF
	start_wsgate wsgate-novnc noVNC
	;;
esac

# ---- the browser --------------------------------------------------------------
art=${WSGATE_BROWSER_ARTIFACTS:-$tmp/artifacts}
PAGE_BASE="http://127.0.0.1:$page_port/" \
	WS_BASE=$([ "$web_root" = 1 ] || echo "ws://127.0.0.1:$ws_port") \
	ROUTES="echo=/echo,deny=/deny,hb=/hb,z=/z" \
	SCENARIOS="$scenarios" \
	HOLD=5 \
	DEMO_URL="$demo_url" \
	DEMO_PATH=/echo \
	NOVNC_URL="$novnc_url" \
	HOSTS_PORT="$hosts_port" \
	HOSTS_SPKI="$hosts_spki" \
	REPLAY_BASE="$replay_base" \
	REPLAY_PATH=/rec \
	REPLAY_BANNER="$replay_banner" \
	REC_DIR="${replay_root:+$replay_root/rec}" \
	NOVNC_COLORS="255,0,0;0,0,255" \
	ARTIFACTS="$art" \
	CHROMIUM="$CHROMIUM" \
	WAIT_FOR="$wait_for" \
	"$NODE" "$here/e2e.mjs"
status=$?
if [ "$status" -ne 0 ]; then
	keep=1
	for f in "$tmp"/wsgate*.log; do
		[ -f "$f" ] || continue
		echo "---- last lines of $(basename "$f")" >&2
		tail -n 30 "$f" >&2
	done
	[ "$status" -eq 1 ] || status=1
fi
exit "$status"
