"""How sessions end: client close codes, backend EOF and reset, a client
that drops TCP, and that no data is lost on the way out."""

import time

import pytest

import harness
from harness import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, build_frame, close_payload,
                     route)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4000, 4999])
def test_client_close_code_echoed(echo_gw, code):
    c = echo_gw.ws("/")
    c.send_close(code, b"bye")
    c.expect_close(code)


def test_client_close_without_payload_gets_1000(echo_gw):
    c = echo_gw.ws("/")
    c.send_frame(OP_CLOSE, b"")
    c.expect_close(1000)


def test_client_close_with_long_reason(echo_gw):
    c = echo_gw.ws("/")
    c.send_close(1000, "\u20ac" * 41)  # 2 + 123 bytes: the largest legal close payload
    c.expect_close(1000)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_code_1002(echo_gw, code):
    c = echo_gw.ws("/")
    c.send_close(code)
    c.expect_close(1002)


def test_one_byte_close_payload_1002(echo_gw):
    """Even when the control frame before it left the bytes of a valid code
    (1000) where a second byte would be: one byte is no code."""
    c = echo_gw.ws("/")
    c.send_frame(OP_PING, b"\x03\xe8")
    f = c.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"\x03\xe8"), f
    c.send_frame(OP_CLOSE, b"\x03")
    c.expect_close(1002)


def test_close_reason_invalid_utf8_1007(echo_gw):
    c = echo_gw.ws("/")
    c.send_frame(OP_CLOSE, close_payload(1000, b"bad \xff reason"))
    c.expect_close(1007)


def test_nothing_relayed_after_close(gw, backends):
    """Frames after the client's close frame are not delivered."""
    sink = backends.sink(keep_data=True)
    gw.start({"route:s": route(sink.addr, "/")})
    c = gw.ws("/")
    c.send(build_frame(OP_BINARY, b"before") + build_frame(OP_CLOSE, close_payload(1000))
           + build_frame(OP_BINARY, b"after"))
    c.close_sent = True
    c.expect_close(1000)
    rec = sink.wait_connections(1)
    harness.wait_until(lambda: rec.eof_at, what="backend EOF")
    assert bytes(rec.data) == b"before"


def test_data_before_close_reaches_backend(gw, backends):
    """1 MiB then an immediate close: all of it reaches the sink, then the
    backend sees EOF."""
    sink = backends.sink(keep_data=True)
    gw.start({"route:s": route(sink.addr, "/")})
    c = gw.ws("/")
    data = harness.random_bytes(1 << 20)
    wire = b"".join(build_frame(OP_BINARY, data[i:i + 100000]) for i in range(0, len(data), 100000))
    sender = c.send_in_background(wire + build_frame(OP_CLOSE, close_payload(1000)))
    c.close_sent = True
    c.expect_close(1000, timeout=30)
    c.join_sender(sender)
    rec = sink.wait_connections(1)
    harness.wait_until(lambda: rec.eof_at, timeout=10, what="backend EOF after client close")
    harness.assert_same(bytes(rec.data), data, "bytes at the sink")
    assert not rec.reset, "backend connection was reset instead of closed"


def test_backend_eof_delivers_everything_then_1000(gw, backends):
    data = harness.random_bytes(300 * 1000, seed=300)
    sender = backends.sender(data)
    gw.start({"route:s": route(sender.addr, "/")})
    c = gw.ws("/")
    got = c.read_data(len(data), timeout=30)
    harness.assert_same(got, data)
    c.expect_close(1000)


def test_backend_eof_while_client_reads_slowly(gw, backends):
    """Backend sends 2 MB and EOF before the client reads anything: every
    byte still arrives before the close."""
    data = harness.random_bytes(2 << 20, seed=2)
    sender = backends.sender(data)
    gw.start({"route:s": route(sender.addr, "/")})
    c = gw.ws("/")
    sender.wait_connections(1)
    time.sleep(1.0)  # let the backend write (and EOF) while we do not read
    got = c.read_data(len(data), timeout=30)
    harness.assert_same(got, data)
    c.expect_close(1000)


def test_backend_eof_immediately(gw, backends):
    sender = backends.sender(b"")
    gw.start({"route:s": route(sender.addr, "/")})
    c = gw.ws("/")
    c.expect_close(1000)


def test_backend_reset_1011(gw, backends):
    rst = backends.reset(greeting=b"hello", after_bytes=4)
    gw.start({"route:r": route(rst.addr, "/")})
    c = gw.ws("/")
    assert c.read_data(5) == b"hello"
    c.send_frame(OP_BINARY, b"ping")
    f = c.expect_close(1011)
    print("close reason: %r" % f.close_reason)


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_client_drop_closes_backend(gw, backends, how):
    sink = backends.sink()
    gw.start({"route:s": route(sink.addr, "/")})
    c = gw.ws("/")
    c.send_frame(OP_BINARY, b"x" * 100)
    rec = sink.wait_connections(1)
    harness.wait_until(lambda: rec.received == 100, what="100 bytes at the sink")
    t0 = time.monotonic()
    if how == "reset":
        c.abort()
    else:
        c.close()
    harness.wait_until(lambda: rec.eof_at, timeout=5, what="backend EOF after client dropped TCP")
    print("backend EOF %.3fs after the client dropped" % (rec.eof_at - t0))


def test_client_drop_mid_frame_closes_backend(gw, backends):
    sink = backends.sink()
    gw.start({"route:s": route(sink.addr, "/")})
    c = gw.ws("/")
    c.send(build_frame(OP_TEXT, b"a" * 1000)[:500])
    rec = sink.wait_connections(1)
    c.close()
    harness.wait_until(lambda: rec.eof_at, timeout=5, what="backend EOF after client dropped TCP")


def test_access_log_line(gw, echo):
    name = "zebra_route_71"
    gw.start({"route:%s" % name: route(echo.addr, "/")})
    before = gw.stderr_text()
    c = gw.ws("/")
    c.send_frame(OP_BINARY, b"12345")
    assert c.read_data(5) == b"12345"
    c.send_close(1000)
    c.expect_close(1000)

    def new_lines_with_route():
        added = gw.stderr_text()[len(before):]
        return [ln for ln in added.splitlines() if name in ln]
    lines = harness.wait_until(new_lines_with_route, timeout=5,
                               what="an access-log line naming route %s" % name)
    print("access log: %r" % lines)
