"""conftest.py - fixtures for the wsgate integration suite.

The binary comes from $WSGATE (set by `make check`), else ../../src/wsgate
relative to this file. Helpers are in harness.py.
"""

import os
import signal

import pytest

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DEADLINE = 120  # seconds per test; a hung test fails instead of hanging the suite


# WSGATE_REQUIRE_ALL=1 (tests/all.sh, hence CI): a skipped test fails, so a
# run cannot be green with tests that never ran. Expected failures (xfail)
# stay what they are.
REQUIRE_ALL = os.environ.get("WSGATE_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_ALL and rep.skipped and not hasattr(rep, "wasxfail"):
        why = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = "WSGATE_REQUIRE_ALL=1 and the test was skipped: %s" % why


@pytest.hookimpl(hookwrapper=True)
def pytest_collectreport(report):
    yield
    if REQUIRE_ALL and report.skipped:
        report.outcome = "failed"
        report.longrepr = "WSGATE_REQUIRE_ALL=1 and a module was skipped: %s" % (report.longrepr,)


def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): per-test time limit (default %d)"
                            % DEFAULT_DEADLINE)
    config.addinivalue_line("markers", "slow: long-running (memory, load)")


@pytest.fixture(scope="session")
def wsgate_binary():
    path = os.environ.get("WSGATE") or os.path.join(HERE, "..", "..", "src", "wsgate")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.skip("wsgate binary not found at %s (set WSGATE)" % path)
    return path


@pytest.fixture(scope="session")
def asan(wsgate_binary):
    """True when wsgate was built with AddressSanitizer (RSS bounds do not apply)."""
    return harness.binary_has_asan(wsgate_binary)


class DeadlineExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def _deadline(request):
    """Fail (rather than hang) a test that runs longer than its deadline."""
    marker = request.node.get_closest_marker("deadline")
    seconds = marker.args[0] if marker else DEFAULT_DEADLINE

    def on_alarm(signum, frame):
        raise DeadlineExceeded("test exceeded its %ss deadline" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def gateway_factory(wsgate_binary, tmp_path):
    """gateway_factory(host='127.0.0.1') -> an unstarted harness.Gateway.
    Teardown stops every gateway (SIGTERM, SIGKILL after 10 s) and fails if
    one exited non-zero or printed a sanitizer report."""
    made = []

    def make(host="127.0.0.1"):
        g = harness.Gateway(wsgate_binary, tmp_path / ("gw%d" % len(made)), host=host)
        made.append(g)
        return g

    yield make
    failures = []
    for g in made:
        rc, problems = g.stop()
        if rc is None:
            continue
        text = g.stderr_text()
        print("---- wsgate stderr (%s, exit %s) ----\n%s" % (g.listen, rc, text[-20000:]))
        if problems:
            failures.append("%s: %s\n---- stderr ----\n%s"
                            % (g.listen, "; ".join(problems), text[-8000:]))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def gw(gateway_factory):
    """One unstarted Gateway on 127.0.0.1."""
    return gateway_factory()


class Backends:
    """Factory for in-process backends; everything is closed at teardown."""

    def __init__(self):
        self.made = []

    def _add(self, b):
        self.made.append(b)
        return b

    def echo(self, host="127.0.0.1"):
        return self._add(harness.Backend(harness.echo_handler, host=host))

    def sink(self, keep_data=False):
        return self._add(harness.Backend(harness.sink_handler, keep_data=keep_data))

    def sender(self, data):
        return self._add(harness.Backend(harness.sender_handler(data)))

    def greeter(self, greeting):
        return self._add(harness.Backend(harness.greeter_handler(greeting)))

    def reset(self, greeting=b"", after_bytes=1):
        return self._add(harness.Backend(harness.reset_handler(greeting, after_bytes)))

    def custom(self, handler, keep_data=False):
        """A backend running handler(backend, conn_record) per connection."""
        return self._add(harness.Backend(handler, keep_data=keep_data))

    def slow_accept(self, seconds):
        """An echo backend whose accept queue is full for its first
        `seconds`: a connect made then completes after at least that long."""
        return self._add(harness.Backend(harness.echo_handler, full_for=seconds))

    def blackhole(self):
        return self._add(harness.Blackhole())

    @staticmethod
    def refused():
        return harness.refused_addr()

    def close(self):
        for b in self.made:
            b.close()


@pytest.fixture
def backends():
    b = Backends()
    yield b
    b.close()


@pytest.fixture
def echo(backends):
    return backends.echo()


@pytest.fixture
def echo_gw(gw, echo):
    """A started gateway with route "echo" on "/" to an echo backend."""
    gw.start({"route:echo": harness.route(echo.addr, "/")})
    gw.echo = echo
    return gw
