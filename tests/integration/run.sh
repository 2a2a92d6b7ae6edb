#!/bin/sh
# run.sh - automake entry for the wsgate integration suite (pytest).
#
# Environment (set by `make check` through AM_TESTS_ENVIRONMENT):
#   WSGATE      path to the wsgate binary (exit 77 = skip if not executable)
#   PYTHON3     interpreter with pytest and websockets (default /usr/bin/python3)
#   TOP_SRCDIR  source tree (default: two levels above this script)
#   WSGATE_PYTEST_ARGS  extra pytest arguments, e.g. "-k relay -x"
# Nothing is written into the source tree: pytest runs from a temporary
# directory, without its cache and without byte-code files.

: "${PYTHON3:=/usr/bin/python3}"
[ -n "$PYTHON3" ] || PYTHON3=/usr/bin/python3
if [ -z "$TOP_SRCDIR" ]; then
	TOP_SRCDIR=$(cd "$(dirname "$0")/../.." && pwd) || exit 99
fi

if [ -z "$WSGATE" ] || [ ! -x "$WSGATE" ]; then
	echo "run.sh: wsgate binary '${WSGATE}' is not executable; skipping" >&2
	[ "${WSGATE_REQUIRE_ALL:-0}" = 1 ] && exit 1 # CI: a skip is a failure
	exit 77
fi
case $WSGATE in
/*) ;;
*) WSGATE=$(pwd)/$WSGATE ;;
esac
export WSGATE

if ! "$PYTHON3" -c 'import pytest, websockets' 2>/dev/null; then
	echo "run.sh: $PYTHON3 lacks pytest or websockets (Debian: python3-pytest python3-websockets)" >&2
	exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-it.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

cd "$tmp" || exit 99
# shellcheck disable=SC2086 # WSGATE_PYTEST_ARGS is split on purpose
"$PYTHON3" -m pytest -p no:cacheprovider -rfEs --basetemp="$tmp/pytest" \
	-c "$TOP_SRCDIR/tests/integration/pytest.ini" --rootdir="$TOP_SRCDIR/tests/integration" \
	$WSGATE_PYTEST_ARGS "$TOP_SRCDIR/tests/integration"
status=$?
if [ "$status" -eq 5 ]; then
	echo "run.sh: pytest collected no tests" >&2
	status=99
fi
exit "$status"
