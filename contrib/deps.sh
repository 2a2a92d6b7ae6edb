#!/bin/sh
# Install what wsgate needs to build (and, with --test, to run its test
# suite) on Debian 12. Idempotent; run as root.
set -e
pkgs="build-essential autoconf automake pkg-config libev-dev libssl-dev libinih-dev"
if [ "${1:-}" = "--test" ]; then
    pkgs="$pkgs libcmocka-dev python3 python3-websockets python3-pytest openssl procps"
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
