#!/bin/bash
# profile.sh - where wsgate spends its cycles in the single-connection 64 KiB
# bulk echo case (the runner's "bulk1" scenario), behind `make bench-profile`.
#
# Starts the echo backend and wsgate (workers = 0), drives one WebSocket
# connection with loadgen, and records wsgate alone with `perf record -g`;
# prints the top symbols (self time), the split by binary (kernel, wsgate,
# libc, libev) and the throughput during the profile. Where perf is missing or
# cannot record (e.g. perf_event_paranoid in a container), it falls back to
# valgrind --tool=callgrind on a shorter run.
#
# Environment: WSGATE, LOADGEN, ECHO_SERVER (the programs; `make` sets them),
# PROFILE_SECONDS (5), PROFILE_TOP (30 symbols), PROFILE_CALLGRAPH (dwarf:
# user-space call chains without frame pointers; fp is lighter), PROFILE_FREQ
# (999 samples/s), PROFILE_TOOL (perf | callgrind: force one), PYTHON3
# (/usr/bin/python3).
set -euo pipefail

: "${WSGATE:?set WSGATE to the wsgate binary}"
: "${LOADGEN:?set LOADGEN to the loadgen binary}"
: "${ECHO_SERVER:?set ECHO_SERVER to the echo binary}"
secs=${PROFILE_SECONDS:-5}
top=${PROFILE_TOP:-30}
callgraph=${PROFILE_CALLGRAPH:-dwarf}
freq=${PROFILE_FREQ:-999}
py=${PYTHON3:-/usr/bin/python3}

tmp=$(mktemp -d /tmp/wsgate-profile.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# wait_port PORT: wait until 127.0.0.1:PORT accepts connections (10 s).
wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "profile.sh: nothing listens on port $1" >&2
    exit 1
}

# start_wsgate [WRAPPER...]: start wsgate (optionally under a wrapper such as
# valgrind) in front of the echo backend; sets wpid and wport.
start_wsgate() {
    wport=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$tmp/wsgate.ini" <<EOF
[gateway]
listen = 127.0.0.1:$wport
workers = 0
log_level = warn

[route:echo]
path = /echo
backend = 127.0.0.1:$eport
EOF
    "$@" "$WSGATE" -c "$tmp/wsgate.ini" 2>"$tmp/wsgate.log" &
    wpid=$!
    pids+=("$wpid")
    wait_port "$wport"
}

# load SECONDS: one 64 KiB bulk WebSocket connection through wsgate.
load() {
    "$LOADGEN" -m bulk -c 1 -s 65536 -w 4 -W 0.5 -d "$1" -u /echo -l wsgate \
        "127.0.0.1:$wport" >"$tmp/load.json" 2>"$tmp/load.txt"
}

"$ECHO_SERVER" 127.0.0.1:0 >"$tmp/echo.port" &
pids+=($!)
for _ in $(seq 100); do
    [ -s "$tmp/echo.port" ] && break
    sleep 0.05
done
eport=$(awk '{print $2}' "$tmp/echo.port")

tool=${PROFILE_TOOL:-}
if [ -z "$tool" ]; then
    tool=callgrind
    if command -v perf >/dev/null && perf record -q -o "$tmp/probe.data" -- true >/dev/null 2>&1; then
        tool=perf
    fi
fi

# report ARGS...: perf report of the recording, without comments and blank
# lines (head may close the pipe early: that is not an error).
report() {
    perf report -i "$tmp/perf.data" --stdio "$@" 2>/dev/null | grep -v -e '^#' -e '^$' || true
}

if [ "$tool" = perf ]; then
    start_wsgate
    load $((secs + 2)) &
    lpid=$!
    sleep 1
    perf record -q -F "$freq" --call-graph "$callgraph" -p "$wpid" -o "$tmp/perf.data" -- sleep "$secs" \
        2>"$tmp/perf.log" || { cat "$tmp/perf.log" >&2; exit 1; }
    wait "$lpid" || true
    echo "== wsgate, bulk 1 x 64 KiB WebSocket echo, perf record --call-graph $callgraph, ${secs} s"
    cat "$tmp/load.txt"
    echo
    echo "== by binary (self time)"
    report -g none --no-children --sort dso -F overhead,dso | sort -rn | head -n 10
    echo
    echo "== top $top symbols (self time)"
    report -g none --no-children --sort dso,sym -F overhead,dso,sym | sort -rn >"$tmp/self.txt"
    head -n "$top" "$tmp/self.txt"
    echo
    echo "== top $top call-chain entries (time including callees, then self)"
    report -g none --children --sort dso,sym | head -n "$top"
    if [ "$callgraph" = dwarf ]; then
        ksyms=$(awk '$3 == "[k]" { print $4 }' "$tmp/self.txt" | head -n 3 | paste -sd, -)
        echo
        echo "== who calls the top kernel symbols ($ksyms)"
        report --no-children -S "$ksyms" -g caller,0.5,callee,function,percent --percent-limit 2 |
            head -n 120
    fi
else
    command -v valgrind >/dev/null || { echo "profile.sh: neither perf nor valgrind works here" >&2; exit 1; }
    short=$(((secs + 1) / 2))
    start_wsgate valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out"
    load "$short"
    kill -TERM "$wpid"
    wait "$wpid" || true
    echo "== wsgate, bulk 1 x 64 KiB WebSocket echo, callgrind, ${short} s (slowed down by valgrind;"
    echo "   counts user-space instructions only: time in the kernel is not shown)"
    cat "$tmp/load.txt"
    echo
    echo "== top $top functions (instructions, self)"
    { callgrind_annotate "$tmp/callgrind.out" 2>/dev/null || true; } | sed -n '/file:function/,$p' |
        head -n $((top + 3)) || true
fi
