#!/bin/sh
# check-packaging.sh - check contrib/ and the man pages without a container engine.
#
# Usage: contrib/check-packaging.sh [--root DIR] [--self-test]
#
# Checks contrib/Dockerfile, contrib/kubernetes/sidecar.yaml,
# contrib/systemd/wsgate.service, contrib/docker/wsgate.ini, doc/doc.am and
# the man pages doc/wsgate.8 and doc/wsgate.ini.5 against each other and the
# sources (see contrib/check-packaging.py); exits 1 with one line per problem.
# --self-test breaks copies of those files in known ways and fails unless the
# checker reports every breakage. WSGATE=/path/to/wsgate also runs
# `wsgate -t` on the shipped container and Kubernetes configurations.
#
# Needs (Debian): python3 python3-yaml groff-base. Used when present: man-db
# (man -l --warnings), mandoc (mandoc -T lint), systemd (systemd-analyze
# verify), shellcheck.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# Debian's python3 (with python3-yaml), not another python3 first on PATH.
py=/usr/bin/python3
if [ ! -x "$py" ]; then
    py=$(command -v python3 || true)
fi
if [ -z "$py" ]; then
    echo "check-packaging: python3 not found (Debian package python3)" >&2
    exit 1
fi
if ! "$py" -c 'import yaml' 2>/dev/null; then
    echo "check-packaging: $py cannot import yaml (Debian package python3-yaml)" >&2
    exit 1
fi
if ! command -v groff >/dev/null 2>&1; then
    echo "check-packaging: groff not found (Debian package groff-base)" >&2
    exit 1
fi
exec "$py" "$here/check-packaging.py" "$@"
