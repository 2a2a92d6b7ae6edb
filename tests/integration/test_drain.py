"""SIGTERM drain (issue 5, "Must show" 2).

On SIGTERM health_path turns 503 and new upgrades are refused with 503
while the listeners stay open; live sessions keep relaying until
drain_timeout, then each gets close 1001 "going away" after everything it is
owed was flushed; the process exits 0 once no session is left. A second
SIGTERM closes everything at once; with no session the exit is immediate.
"""

import signal
import threading
import time

import pytest

from harness import OP_BINARY, assert_http_error, random_bytes, route, wait_log, wait_until
from ops_helpers import (access_lines, check_stream_prefix, client_addr, http_request,
                         read_until_close, stream_handler)

DRAIN = 3.0


def health(gw):
    return http_request(gw.host, gw.port, "/healthz")


def echo_round(c, n, tag):
    data = tag + random_bytes(n)
    c.send_frame(OP_BINARY, data)
    got = c.read_data(len(data))
    assert got == data, "echo differs for %r" % tag


class Reader(threading.Thread):
    """Reads a session until its close frame (after an optional delay)."""

    def __init__(self, c, delay=0.0, timeout=60):
        super().__init__(daemon=True)
        self.c, self.delay, self.timeout = c, delay, timeout
        self.data = self.frame = self.t_close = self.error = None

    def run(self):
        try:
            if self.delay:
                time.sleep(self.delay)
            self.data, self.frame, self.t_close = read_until_close(self.c, self.timeout)
        except BaseException as e:  # noqa: B902 - checked by the test
            self.error = e

    def result(self):
        self.join(self.timeout + 10)
        assert not self.is_alive(), "reader still running"
        if self.error:
            raise self.error
        return self.data, self.frame, self.t_close


@pytest.mark.deadline(180)
def test_sigterm_drains_live_sessions(gw, backends):
    echo = backends.echo()
    streamer = backends.custom(stream_handler(chunk=16384, interval=0.01))
    gw.start({"gateway": {"drain_timeout": "%gs" % DRAIN},
              "route:echo": route(echo.addr, "/echo"),
              "route:stream": route(streamer.addr, "/stream")})
    resp = health(gw)
    assert (resp.status, resp.body) == (200, b"ok\n"), resp

    echoes = [gw.ws("/echo") for _ in range(5)]
    for i, c in enumerate(echoes):
        echo_round(c, 5000, b"before-%d:" % i)
    # A stream read all along, and one whose client stops reading, so that
    # wsgate holds pending data for it when drain_timeout expires.
    fast = gw.ws("/stream")
    slow = gw.ws("/stream")
    streamer.wait_connections(2)
    fast_before = fast.read_data(65536, at_least=True)
    check_stream_prefix(fast_before, "stream before SIGTERM")
    addrs = {client_addr(c): name for c, name in
             [(fast, "fast"), (slow, "slow")] + [(c, "echo%d" % i) for i, c in enumerate(echoes)]}

    t0 = time.monotonic()
    gw.terminate(signal.SIGTERM)
    readers_started = False
    try:
        # /healthz turns 503 "draining" (the listeners stay open).
        resp = wait_until(lambda: (lambda r: r if r.status == 503 else None)(health(gw)),
                          what="/healthz 503")
        assert resp.body.strip() == b"draining", resp
        # New upgrades are refused with 503, on every route.
        for path in ("/echo", "/stream", "/echo"):
            c = gw.client()
            assert_http_error(c, 503, c.handshake(path))
        # Every live session keeps relaying during the drain window.
        for i, c in enumerate(echoes):
            echo_round(c, 20000, b"after-%d:" % i)
        # ... and again a second into the 3 s window.
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        for i, c in enumerate(echoes):
            echo_round(c, 20000, b"later-%d:" % i)
        elapsed = time.monotonic() - t0
        print("drain-window checks done %.2fs after SIGTERM" % elapsed)
        assert gw.alive(), "wsgate exited during the drain window"

        fast_reader = Reader(fast)
        # slow starts reading only after drain_timeout has expired
        slow_reader = Reader(slow, delay=max(0.0, DRAIN + 1.5 - (time.monotonic() - t0)))
        echo_readers = [Reader(c) for c in echoes]
        for r in [fast_reader, slow_reader] + echo_readers:
            r.start()
        readers_started = True
    finally:
        if not readers_started:
            gw.proc.send_signal(signal.SIGTERM)  # do not wait for the drain on failure

    # Each echo session ends with 1001 "going away", not before drain_timeout,
    # with nothing left over (every echo had been read).
    for i, r in enumerate(echo_readers):
        data, f, t = r.result()
        assert f.close_code == 1001 and f.close_reason == b"going away", f
        assert data == b"", "echo%d: %d unexpected bytes before the close" % (i, len(data))
        assert t - t0 >= DRAIN - 0.2, "echo%d closed %.2fs after SIGTERM, drain_timeout is %s" % (
            i, t - t0, DRAIN)
    # The streams: all they got is the exact stream, and the close comes
    # after everything wsgate had read from the backend (access log down=).
    results = {}
    for name, c, r in (("fast", fast, fast_reader), ("slow", slow, slow_reader)):
        data, f, t = r.result()
        assert f.close_code == 1001 and f.close_reason == b"going away", (name, f)
        assert t - t0 >= DRAIN - 0.2, "%s closed %.2fs after SIGTERM" % (name, t - t0)
        results[name] = data

    gw.proc.wait(30)
    assert gw.proc.returncode == 0, "exit status %d" % gw.proc.returncode
    print("exit %.2fs after SIGTERM" % (time.monotonic() - t0))

    logs = access_lines(gw)
    for addr, name in addrs.items():
        assert addr in logs, "no access line for %s (%s)" % (name, addr)
        assert logs[addr]["close"] == 1001, logs[addr]["line"]
    # All each stream client got is the exact stream, and every byte wsgate
    # read from the backend (access log down=) reached the client before the
    # close: for the slow one, after drain_timeout, from wsgate's buffers.
    for name, data in (("fast", fast_before + results["fast"]), ("slow", results["slow"])):
        entry = logs[[a for a, n in addrs.items() if n == name][0]]
        check_stream_prefix(data, "%s stream" % name)
        assert len(data) == entry["down"], (
            "%s: the client received %d bytes, wsgate read down=%d from the backend: %s"
            % (name, len(data), entry["down"], entry["line"]))
        assert entry["down"] <= max(rec.sent for rec in streamer.conns)
    assert len(results["fast"]) >= 256 * 1024, \
        "the stream relayed only %d bytes during the drain window" % len(results["fast"])
    print("stream bytes delivered: fast %d, slow %d"
          % (len(fast_before) + len(results["fast"]), len(results["slow"])))


def test_second_sigterm_closes_everything_at_once(gw, backends):
    echo = backends.echo()
    streamer = backends.custom(stream_handler(chunk=4096, interval=0.01))
    gw.start({"gateway": {"drain_timeout": "60s"},
              "route:echo": route(echo.addr, "/echo"),
              "route:stream": route(streamer.addr, "/stream")})
    echoes = [gw.ws("/echo") for _ in range(3)]
    stream = gw.ws("/stream")
    for i, c in enumerate(echoes):
        echo_round(c, 1000, b"x%d" % i)
    t0 = time.monotonic()
    gw.terminate(signal.SIGTERM)
    wait_until(lambda: health(gw).status == 503, what="/healthz 503")
    for i, c in enumerate(echoes):
        echo_round(c, 1000, b"y%d" % i)  # still relaying: the drain lasts 60 s
    assert gw.alive()
    gw.proc.send_signal(signal.SIGTERM)
    # Every session ends now, long before drain_timeout.
    for c in echoes + [stream]:
        c.read_until_eof(timeout=15)
    gw.proc.wait(15)
    took = time.monotonic() - t0
    assert gw.proc.returncode == 0, "exit status %d" % gw.proc.returncode
    assert took < 30, "exit took %.1fs after the first SIGTERM (drain_timeout 60s)" % took
    wait_log(gw, "received SIGTERM again")


def test_sigterm_without_sessions_exits_at_once(gw, echo):
    """No live session (some came and went): exit 0 at once, without
    waiting for drain_timeout (60 s)."""
    gw.start({"gateway": {"drain_timeout": "60s"}, "route:e": route(echo.addr, "/")})
    for i in range(3):
        c = gw.ws("/")
        echo_round(c, 100, b"%d" % i)
        c.send_close(1000)
        c.expect_close(1000)
        c.close()
    wait_until(lambda: len(access_lines(gw)) == 3, what="3 sessions ended")
    t0 = time.monotonic()
    gw.terminate(signal.SIGTERM)
    gw.proc.wait(20)
    assert gw.proc.returncode == 0, "exit status %d" % gw.proc.returncode
    print("exit %.2fs after SIGTERM" % (time.monotonic() - t0))


def test_sigint_drains_like_sigterm(gw, echo):
    gw.start({"gateway": {"drain_timeout": "1s"}, "route:e": route(echo.addr, "/")})
    c = gw.ws("/")
    gw.terminate(signal.SIGINT)
    wait_until(lambda: health(gw).status == 503, what="/healthz 503")
    echo_round(c, 3000, b"int")
    c.expect_close(1001, timeout=20)
    gw.proc.wait(20)
    assert gw.proc.returncode == 0


@pytest.mark.deadline(120)
def test_unanswered_close_is_cut_after_grace(gw, echo):
    """A client that never answers the 1001 (and keeps TCP open) does not
    keep wsgate alive: it exits 0 some seconds after drain_timeout."""
    gw.start({"gateway": {"drain_timeout": "1s"}, "route:e": route(echo.addr, "/")})
    c = gw.ws("/")
    echo_round(c, 100, b"mute")
    t0 = time.monotonic()
    gw.terminate(signal.SIGTERM)
    f, before = c.next_close(timeout=20)
    assert f.close_code == 1001, f
    # no reply; wsgate must give up on its own
    gw.proc.wait(30)
    assert gw.proc.returncode == 0, "exit status %d" % gw.proc.returncode
    print("exit %.2fs after SIGTERM" % (time.monotonic() - t0))
    c.read_until_eof(timeout=5)
