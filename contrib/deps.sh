#!/bin/sh
# Install what wsgate needs to build (and, with --test, to run its test
# suite) on Debian 12. Idempotent; run as root.
set -e
pkgs="build-essential autoconf automake pkg-config libev-dev libssl-dev libinih-dev"
if [ "${1:-}" = "--test" ]; then
    # unit and integration tests, packaging checks, make distcheck
    pkgs="$pkgs libcmocka-dev python3 python3-websockets python3-pytest python3-yaml openssl procps"
    pkgs="$pkgs groff-base man-db xz-utils"
    # browser and noVNC end-to-end tests
    pkgs="$pkgs chromium novnc tigervnc-standalone-server x11-xserver-utils fonts-dejavu-core"
    command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
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
