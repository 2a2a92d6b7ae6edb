#!/bin/sh
# Install what wsgate needs to build (and, with --test, to run its test
# suite; with --image, to build the container image without a registry) on
# Debian 12. Idempotent; run as root.
set -e
pkgs="build-essential autoconf automake pkg-config libev-dev libssl-dev libinih-dev"
# Redis tokens, asynchronous DNS, JSON (JWT, Redis values), compression, crypt(3)
pkgs="$pkgs libhiredis-dev libc-ares-dev libjansson-dev zlib1g-dev libcrypt-dev"
if [ "${1:-}" = "--test" ]; then
    # unit and integration tests, packaging checks, make distcheck
    pkgs="$pkgs libcmocka-dev python3 python3-websockets python3-pytest python3-yaml openssl procps"
    pkgs="$pkgs groff-base man-db xz-utils"
    # fuzzing (libFuzzer), real peers: haproxy, nginx, redis, JWTs minted by
    # python3-jwt, a DNS server (dnslib), asciinema; profiling for the bench
    pkgs="$pkgs clang libclang-rt-14-dev haproxy nginx-light redis-server python3-jwt"
    pkgs="$pkgs python3-cryptography python3-dnslib asciinema strace"
    # make bench's chart (tests/bench/chart.py)
    pkgs="$pkgs gnuplot-nox"
    # browser and noVNC end-to-end tests
    pkgs="$pkgs chromium novnc tigervnc-standalone-server x11-xserver-utils fonts-dejavu-core"
    command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
fi
if [ "${1:-}" = "--image" ]; then
    # the container image without a registry: contrib/base-image.sh, podman build
    pkgs="$pkgs debootstrap podman"
fi
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
fi
if [ "${1:-}" = "--test" ] && [ ! -f "$(dirname "$0")/../tests/browser/node_modules/playwright-core/package.json" ]; then
    (cd "$(dirname "$0")/../tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
