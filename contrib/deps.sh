#!/bin/sh
# Install what wsgate needs to build (and, with --test, to run its test
# suite; with --image, to build the container image without a registry) on
# Debian 12. Idempotent; run as root.
#
# apt's and dpkg's output goes to a log file ($DEPS_LOG, default
# ${TMPDIR:-/tmp}/wsgate-deps.log); one line says what was installed, and the
# end of the log is shown when apt fails.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
log=${DEPS_LOG:-${TMPDIR:-/tmp}/wsgate-deps.log}
pkgs="build-essential autoconf automake pkg-config libev-dev libssl-dev libinih-dev"
# Redis tokens, asynchronous DNS, JSON (JWT, Redis values), compression, crypt(3)
pkgs="$pkgs libhiredis-dev libc-ares-dev libjansson-dev zlib1g-dev libcrypt-dev"
# the echo service behind the Quick start's demo (contrib/demo.sh)
pkgs="$pkgs socat"

# The major version of node on PATH, 0 when there is none.
node_major() {
    node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

if [ "${1:-}" = "--test" ]; then
    # unit and integration tests, packaging checks, make distcheck
    pkgs="$pkgs libcmocka-dev python3 python3-websockets python3-pytest python3-yaml openssl procps"
    pkgs="$pkgs groff-base man-db xz-utils"
    # packaging checks that run only where these exist (contrib/check-packaging.py):
    # shell scripts, the systemd unit (systemd-analyze verify)
    pkgs="$pkgs shellcheck systemd"
    # fuzzing (libFuzzer: clang and its runtime), real peers: haproxy, nginx,
    # redis, JWTs minted by python3-jwt, a DNS server (dnslib), asciinema;
    # profiling for the bench
    pkgs="$pkgs clang libclang-rt-14-dev haproxy nginx-light redis-server python3-jwt"
    pkgs="$pkgs python3-cryptography python3-dnslib asciinema strace"
    # make bench's chart (tests/bench/chart.py)
    pkgs="$pkgs gnuplot-nox"
    # browser and noVNC end-to-end tests: Chromium driven by playwright-core,
    # which needs node >= 18 (Debian 12's nodejs is 18). A node from
    # elsewhere (nodesource) that is new enough is kept, with its own npm.
    pkgs="$pkgs chromium novnc tigervnc-standalone-server x11-xserver-utils fonts-dejavu-core"
    if [ "$(node_major)" -lt 18 ]; then
        pkgs="$pkgs nodejs npm"
    elif ! command -v npm >/dev/null 2>&1; then
        pkgs="$pkgs npm"
    fi
fi
if [ "${1:-}" = "--image" ]; then
    # the container image without a registry: contrib/base-image.sh, podman build
    # (runc: podman --runtime runc, where crun cannot set rlimits in a container)
    pkgs="$pkgs debootstrap podman runc"
fi

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    echo "deps.sh: installing$missing (and what they need; log: $log)"
    start=$(date +%s)
    # shellcheck disable=SC2086 # $missing is a list of package names
    if ! { apt-get update -qq && apt-get install -y -qq -o Dpkg::Use-Pty=0 \
        --no-install-recommends $missing; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "deps.sh: apt-get failed; the whole output is in $log" >&2
        exit 1
    fi
    echo "deps.sh: $(grep -c '^Setting up ' "$log") packages set up in $(($(date +%s) - start)) s"
fi

if [ "${1:-}" = "--test" ]; then
    if [ "$(node_major)" -lt 18 ]; then
        echo "deps.sh: node $(node --version 2>/dev/null) on PATH is older than 18, which" \
            "playwright-core needs (remove it, then run this again for Debian's nodejs)" >&2
        exit 1
    fi
    # npm ci when node_modules does not hold exactly what package-lock.json says.
    cd "$top/tests/browser"
    if ! node -e 'const p = require("./package-lock.json").packages;
        for (const k in p)
            if (k && require("./" + k + "/package.json").version !== p[k].version) process.exit(1);' \
        2>/dev/null; then
        echo "deps.sh: npm ci in tests/browser (node $(node --version))"
        npm ci --engine-strict --no-audit --no-fund --loglevel=error
    fi
fi
