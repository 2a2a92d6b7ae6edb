#!/bin/sh
# Build wsgate and run the whole test suite: unit and integration tests on a
# normal build (build/), then again on an ASan+UBSan build (build-asan/).
# Installs missing Debian packages first. Run from anywhere, as root.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh contrib/deps.sh --test
[ -x configure ] || ./autogen.sh
jobs=$(nproc 2>/dev/null || echo 2)

run_suite() { # dir configure-args...
    dir=$1
    shift
    mkdir -p "$dir"
    (
        cd "$dir"
        [ -f Makefile ] || "$top/configure" -q "$@"
        make -j"$jobs"
        if ! make -j"$jobs" check; then
            for f in tests/unit/*.log tests/integration/*.log; do
                [ -f "$f" ] && { echo "==== $f"; tail -n 200 "$f"; }
            done
            exit 1
        fi
    )
}

run_suite build
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan --enable-sanitizers CFLAGS="-O1 -g"
echo "all tests passed (normal and ASan+UBSan builds)"
