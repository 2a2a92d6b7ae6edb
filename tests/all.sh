#!/bin/sh
# Build wsgate and run the whole test suite, as CI does:
#   1. build/       unit, integration and browser tests (make check),
#                   packaging checks (make check-packaging), make distcheck
#   2. build-asan/  the same tests on an ASan+UBSan build (leak checks on)
#   3. the libFuzzer harnesses, FUZZ_SECONDS each (default 60), seed FUZZ_SEED
#      (default 1)
# Installs missing Debian and npm packages first. Run from anywhere, as root.
set -e
# Every test must run: a missing prerequisite fails instead of skipping
# (pytest skips, the browser and integration runners' exit 77).
export WSGATE_REQUIRE_ALL=1
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh contrib/deps.sh --test
[ -x configure ] || ./autogen.sh
jobs=$(nproc 2>/dev/null || echo 2)

show_logs() {
    for f in tests/unit/*.log tests/integration/*.log tests/browser/*.log; do
        [ -f "$f" ] && { echo "==== $f"; tail -n 300 "$f"; }
    done
    return 1
}

build() { # dir configure-args...
    dir=$1
    shift
    mkdir -p "$top/$dir"
    cd "$top/$dir"
    [ -f Makefile ] || "$top/configure" -q "$@"
    make -j"$jobs"
}

# Tests run one program at a time: the integration and browser suites are
# timing-sensitive enough not to share two cores with each other.
run_checks() {
    make -j"$jobs" check TESTS=
    make check || show_logs
}

build build
run_checks
make check-packaging
make distcheck DISTCHECK_CONFIGURE_FLAGS="--disable-werror" TESTS="tests/integration/run.sh"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build build-asan --enable-sanitizers CFLAGS="-O1 -g"
run_checks
unset ASAN_OPTIONS UBSAN_OPTIONS

# The fuzzers start from the committed corpus with a fixed seed (FUZZ_SEED,
# default 1), so this step explores the same inputs on every run and a red
# CI always means a change broke something; new ground is for long runs with
# random seeds (make fuzz FUZZ_SECONDS=600), whose findings land in
# tests/fuzz/regress/.
cd "$top/build"
make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}" FUZZ_ARGS="-seed=${FUZZ_SEED:-1}"
echo "all tests passed: normal and ASan+UBSan builds, packaging, distcheck, fuzzers"
