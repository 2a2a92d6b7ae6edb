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


def test_silent_client_gets_ping(gw, echo):
    start(gw, echo, ping_interval="1s", pong_timeout="10s")
    c = gw.ws("/")
    t0 = time.monotonic()
    f = c.recv_frame(timeout=10)
    print("ping after %.2fs" % (time.monotonic() - t0))
    assert f.opcode == OP_PING, f
    assert not f.masked and f.fin and len(f.payload) <= 125, f
    c.send_frame(OP_PONG, f.payload)
    c.send_frame(OP_BINARY, b"still here")
    assert c.read_data(10) == b"still here"


def test_unresponsive_client_dropped(gw, echo):
    start(gw, echo, ping_interval="1s", pong_timeout="1s")
    c = gw.ws("/")
    rec = echo.wait_connections(1)
    t0 = time.monotonic()
    frames = frames_until_eof(c, timeout=15)
    elapsed = time.monotonic() - t0
    print("dropped after %.2fs; frames: %r" % (elapsed, frames))
    assert any(f.opcode == OP_PING for f in frames), "dropped without a ping first: %r" % frames
    assert elapsed >= 1.0, "dropped before ping_interval + pong_timeout (%.2fs)" % elapsed
    assert all(f.opcode in (OP_PING, OP_CLOSE) for f in frames), frames
    harness.wait_until(lambda: rec.eof_at, timeout=5, what="backend closed after the drop")


def test_client_answering_pings_stays(gw, echo):
    start(gw, echo, ping_interval="1s", pong_timeout="1s")
    c = gw.ws("/")
    pings = 0
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            f = c.recv_frame(timeout=max(0.05, end - time.monotonic()))
        except TimeoutError:
            break
        assert f.opcode == OP_PING, "unexpected frame while answering pings: %r" % f
        pings += 1
        c.send_frame(OP_PONG, f.payload)
    assert pings >= 2, "expected several pings in 5s with ping_interval 1s, got %d" % pings
    c.send_frame(OP_BINARY, b"alive")
    assert c.read_data(5) == b"alive"


def test_client_pings_prove_life(gw, echo):
    """Any client frame proves life: a client sending its own pings (and
    never answering the server's) is not dropped."""
    start(gw, echo, ping_interval="1s", pong_timeout="1s")
    c = gw.ws("/")
    end = time.monotonic() + 5
    while time.monotonic() < end:
        c.send_frame(OP_PING, b"me")
        time.sleep(0.25)
    c.send_frame(OP_BINARY, b"alive")
    assert c.read_data(5) == b"alive"  # skips server pings and pongs


def test_idle_timeout_1001(gw, echo):
    start(gw, echo, ping_interval=0, idle_timeout="1s")
    c = gw.ws("/")
    t0 = time.monotonic()
    f = c.expect_close(1001, timeout=10)
    elapsed = time.monotonic() - t0
    print("idle close after %.2fs reason %r" % (elapsed, f.close_reason))
    assert f.close_reason == b"idle timeout"
    assert elapsed >= 0.5, "idle close before idle_timeout (%.2fs)" % elapsed


def test_idle_timeout_ignores_pings(gw, echo):
    start(gw, echo, ping_interval=0, idle_timeout="2s")
    c = gw.ws("/")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 12:
        c.send_frame(OP_PING, b"keep?")
        f = c.recv_frame(timeout=10)
        if f.opcode == OP_CLOSE:
            break
        assert f.opcode == OP_PONG, f
        time.sleep(0.2)
    else:
        raise AssertionError("no idle close in 12s although only pings moved")
    assert f.close_code == 1001, f
    c.finish_close(f)


def test_idle_timeout_reset_by_client_payload(gw, echo):
    start(gw, echo, ping_interval=0, idle_timeout="2s")
    c = gw.ws("/")
    end = time.monotonic() + 6
    i = 0
    while time.monotonic() < end:
        c.send_frame(OP_BINARY, b"%d" % (i % 10))
        assert c.read_data(1) == b"%d" % (i % 10)
        i += 1
        time.sleep(0.2)
    c.send_close(1000)
    c.expect_close(1000)


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
