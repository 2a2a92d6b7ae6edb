"""Heartbeats (ping_interval, pong_timeout) and idle_timeout."""

import socket
import time

import harness
from harness import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, route


def start(gw, backend, **opts):
    gw.start({"route:h": route(backend.addr, "/", **opts)})


def frames_until_eof(c, timeout):
    """Read frames (without answering) until TCP closes; return them."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            frames.append(c.recv_frame(timeout=max(0.001, deadline - time.monotonic())))
        except harness.ConnectionClosed:
            return frames


# How late a timer may fire on a loaded two-core machine (possibly under
# ASan); how early: libev measures from its cached loop time, a little
# before the event that armed the timer.
LATE, EARLY = 1.5, 0.05
# Clients that must look alive send every CADENCE seconds: at least 5 times
# per ping_interval / idle_timeout they race against.
CADENCE = 0.2


def within(elapsed, period, what):
    """elapsed (measured from before the event that armed the timer) is the
    configured period, give or take the timer slack."""
    print("%s after %.2fs (configured %.1fs)" % (what, elapsed, period))
    assert period - EARLY <= elapsed <= period + LATE, (
        "%s after %.2fs, configured %.1fs" % (what, elapsed, period))


def test_silent_client_gets_ping(gw, echo):
    """The first ping comes ping_interval after the upgrade, not sooner and
    not much later."""
    start(gw, echo, ping_interval="1s", pong_timeout="10s")
    t0 = time.monotonic()
    c = gw.ws("/")
    f = c.recv_frame(timeout=10)
    within(time.monotonic() - t0, 1.0, "first ping")
    assert f.opcode == OP_PING, f
    assert not f.masked and f.fin and len(f.payload) <= 125, f
    c.send_frame(OP_PONG, f.payload)
    c.send_frame(OP_BINARY, b"still here")
    assert c.read_data(10) == b"still here"


def test_unresponsive_client_dropped(gw, echo):
    """A silent client gets a ping after ping_interval and, not answering,
    is dropped pong_timeout later."""
    start(gw, echo, ping_interval="1s", pong_timeout="1s")
    t0 = time.monotonic()
    c = gw.ws("/")
    rec = echo.wait_connections(1)
    f = c.recv_frame(timeout=10)
    within(time.monotonic() - t0, 1.0, "ping")
    assert f.opcode == OP_PING, f
    t1 = time.monotonic()
    frames = frames_until_eof(c, timeout=15)
    print("then %r" % frames)
    within(time.monotonic() - t1, 1.0, "drop after the ping")
    assert all(f.opcode == OP_CLOSE for f in frames), frames
    harness.wait_until(lambda: rec.eof_at, timeout=5, what="backend closed after the drop")


def test_client_answering_pings_stays(gw, echo):
    """Each ping comes ping_interval after the pong that answered the last
    one (the pong was the client's last frame); five rounds, and the session
    still relays."""
    start(gw, echo, ping_interval="1s", pong_timeout="1s")
    t0 = time.monotonic()
    c = gw.ws("/")
    for i in range(5):
        f = c.recv_frame(timeout=10)
        within(time.monotonic() - t0, 1.0, "ping %d" % i)
        assert f.opcode == OP_PING, "unexpected frame while answering pings: %r" % f
        t0 = time.monotonic()
        c.send_frame(OP_PONG, f.payload)
    c.send_frame(OP_BINARY, b"alive")
    assert c.read_data(5) == b"alive"


def test_client_pings_prove_life(gw, echo):
    """Any client frame proves life: a client sending its own pings every
    CADENCE (and never answering the server's) is not dropped over three
    times ping_interval + pong_timeout."""
    start(gw, echo, ping_interval="2s", pong_timeout="2s")
    c = gw.ws("/")
    end = time.monotonic() + 3 * 4
    while time.monotonic() < end:
        c.send_frame(OP_PING, b"me")
        time.sleep(CADENCE)
    c.send_frame(OP_BINARY, b"alive")
    assert c.read_data(5) == b"alive"  # skips server pings and pongs


def test_idle_timeout_1001(gw, echo):
    """No payload: the close comes idle_timeout after the upgrade, not at
    half of it."""
    start(gw, echo, ping_interval=0, idle_timeout="2s")
    t0 = time.monotonic()
    c = gw.ws("/")
    f = c.expect_close(1001, timeout=10)
    within(time.monotonic() - t0, 2.0, "idle close")
    assert f.close_reason == b"idle timeout"


def test_idle_timeout_ignores_pings(gw, echo):
    """Pings every CADENCE move no payload: the idle close still comes
    idle_timeout after the upgrade."""
    start(gw, echo, ping_interval=0, idle_timeout="2s")
    t0 = time.monotonic()
    c = gw.ws("/")
    while time.monotonic() - t0 < 12:
        c.send_frame(OP_PING, b"keep?")
        f = c.recv_frame(timeout=10)
        if f.opcode == OP_CLOSE:
            break
        assert f.opcode == OP_PONG, f
        time.sleep(CADENCE)
    else:
        raise AssertionError("no idle close in 12s although only pings moved")
    within(time.monotonic() - t0, 2.0, "idle close")
    assert f.close_code == 1001, f
    c.finish_close(f)


def test_idle_timeout_reset_by_client_payload(gw, echo):
    """Payload every CADENCE keeps the session over three idle_timeouts;
    then, silent, it is closed idle_timeout after the last payload."""
    start(gw, echo, ping_interval=0, idle_timeout="2s")
    c = gw.ws("/")
    end = time.monotonic() + 3 * 2
    i = 0
    while time.monotonic() < end:
        c.send_frame(OP_BINARY, b"%d" % (i % 10))
        assert c.read_data(1) == b"%d" % (i % 10)
        i += 1
        time.sleep(CADENCE)
    t0 = time.monotonic()
    c.send_frame(OP_BINARY, b"last")
    assert c.read_data(4) == b"last"
    f = c.expect_close(1001, timeout=10)
    within(time.monotonic() - t0, 2.0, "idle close after the last payload")


def ticker_handler(b, rec):
    """Backend that sends one byte every 200 ms for 6 s, then EOF."""
    end = time.monotonic() + 6
    while time.monotonic() < end:
        rec.sock.sendall(b".")
        time.sleep(0.2)
    rec.sock.shutdown(socket.SHUT_WR)
    b.drain_to_eof(rec)
    rec.sock.close()


def test_idle_timeout_reset_by_backend_payload(gw, backends):
    ticker = backends.custom(ticker_handler)
    start(gw, ticker, ping_interval=0, idle_timeout="2s")
    c = gw.ws("/")
    got = c.read_data(20, timeout=20)  # 20 ticks = 4 s > idle_timeout
    assert got == b"." * 20
    f, _ = c.next_close(timeout=20)
    assert f.close_code == 1000, "expected the backend EOF close (1000), got %r" % f


LATE_PING_INTERVAL = 1.0
LATE_PONG_TIMEOUT = 4.0
LATE_ANSWER_AFTER = LATE_PONG_TIMEOUT / 2  # the client's own delay; half the deadline is margin


def test_pong_late_within_pong_timeout_keeps_session(gw, echo):
    """The pong deadline is pong_timeout after the ping, not less (tests/mutate:
    pong-timeout-early): a client that answers late but within pong_timeout
    keeps its session."""
    gw.start({"route:h": route(echo.addr, "/", ping_interval="%gs" % LATE_PING_INTERVAL,
                               pong_timeout="%gs" % LATE_PONG_TIMEOUT)})
    c = gw.ws("/")
    f = c.recv_frame(timeout=LATE_PING_INTERVAL + 10)
    assert f.opcode == OP_PING, f
    time.sleep(LATE_ANSWER_AFTER)  # a slow client: answers within pong_timeout
    c.send_frame(OP_PONG, f.payload)
    c.send_frame(OP_BINARY, b"still here")
    assert c.read_data(10, timeout=10) == b"still here"  # skips later pings
