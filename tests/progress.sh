#!/bin/sh
# progress.sh - SH_LOG_COMPILER of make check: runs a test script (the lint,
# integration and browser suites) with its output going to its .log file as
# automake's driver wants and, when fd 9 is open (Makefile.am's
# AM_TESTS_FD_REDIRECT points it at make's stderr), to fd 9 as well, so a
# suite that runs for minutes shows its progress: pytest's line per test
# file, the browser tests' line per scenario. Exit status: the test's.
# (awk writes to the open fd: "tee /dev/fd/9" would open make's stderr anew,
# truncating it when it is a file and failing when it is a socket.)
if ! (true >&9) 2>/dev/null; then
	exec "$@"
fi
status=$(mktemp "${TMPDIR:-/tmp}/wsgate-progress.XXXXXX") || exit 99
trap 'rm -f "$status"' EXIT
trap 'exit 130' INT TERM
# pytest's stdout is a pipe here: unbuffered, or its lines come in 8 KB lumps.
PYTHONUNBUFFERED=1
export PYTHONUNBUFFERED
echo "---- $*" >&9
{
	"$@" 2>&1
	echo "$?" >"$status"
} | awk '{ print; fflush(); print >"/dev/stderr"; fflush("/dev/stderr") }' 2>&9
rc=$(cat "$status")
exit "${rc:-99}"
