#!/bin/sh
# layers.sh - automake entry for tests/lint/layers.py on the built library.
: "${PYTHON3:=/usr/bin/python3}"
[ -n "$TOP_SRCDIR" ] || TOP_SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
exec "$PYTHON3" "$TOP_SRCDIR/tests/lint/layers.py" src/libwsgate.a "$TOP_SRCDIR/src"
