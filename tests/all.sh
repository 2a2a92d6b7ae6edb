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

# show_logs: the end of the log of every test that failed; returns 1.
show_logs() {
    for t in tests/*/*.trs; do
        case $(result "${t%.trs}") in
        FAIL | ERROR) echo "==== ${t%.trs}.log" && tail -n 300 "${t%.trs}.log" ;;
        esac
    done
    return 1
}

# build DIR CONFIGURE-ARGS...: configure DIR (again when an earlier configure
# ran before the test dependencies were installed, as the README's first
# command does: make check would refuse to run) and build it.
build() {
    dir=$1
    shift
    mkdir -p "$top/$dir"
    cd "$top/$dir"
    if [ ! -f Makefile ]; then
        "$top/configure" -q "$@"
    elif ! make -s check-test-deps >/dev/null 2>&1; then
        echo "all.sh: $dir/ was configured before the test dependencies were installed; configuring it again"
        ./config.status --recheck >/dev/null
        ./config.status >/dev/null
    fi
    make -j"$jobs"
}

# result TEST: the result automake recorded for TEST (PASS, FAIL, SKIP...).
result() {
    sed -n 's/^:global-test-result: //p' "$1.trs" 2>/dev/null | grep . || echo "not run"
}

# summary DIR: one line per build, counting the unit test programs that ran.
summary() {
    ran=0
    passed=0
    for t in tests/unit/*.trs; do
        [ -f "$t" ] || continue
        ran=$((ran + 1))
        if [ "$(result "${t%.trs}")" = PASS ]; then passed=$((passed + 1)); fi
    done
    echo "all.sh: $1/: $ran unit test programs ran, $passed passed;" \
        "lint $(result tests/lint/layers), integration $(result tests/integration/run)," \
        "browser $(result tests/browser/run)"
}

# Tests run one program at a time: the integration and browser suites are
# timing-sensitive enough not to share two cores with each other.
run_checks() { # dir
    make -j"$jobs" check TESTS=
    if ! make check; then
        summary "$1"
        show_logs
    fi
    summary "$1"
}

build build
run_checks build
make check-packaging
make distcheck DISTCHECK_CONFIGURE_FLAGS="--disable-werror" TESTS="tests/integration/run.sh"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build build-asan --enable-sanitizers CFLAGS="-O1 -g"
run_checks build-asan
unset ASAN_OPTIONS UBSAN_OPTIONS

# The fuzzers start from the committed corpus with a fixed seed (FUZZ_SEED,
# default 1), so this step explores the same inputs on every run and a red
# CI always means a change broke something; new ground is for long runs with
# random seeds (make fuzz FUZZ_SECONDS=600), whose findings land in
# tests/fuzz/regress/.
cd "$top/build"
make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}" FUZZ_ARGS="-seed=${FUZZ_SEED:-1}"
echo "all tests passed: normal and ASan+UBSan builds, packaging, distcheck, fuzzers"
