"""Connection limits: [gateway] max_connections and per-route
max_connections answer 503 beyond the limit and free their slot when a
session ends."""

import time

import harness
from harness import OP_BINARY, assert_http_error, make_request, route


def expect_503(gw, path="/"):
    c = gw.client()
    c.send(make_request(path))
    assert_http_error(c, 503)


def upgrade_eventually(gw, path="/", timeout=5):
    """Upgrade, retrying while wsgate still answers 503 (a freed slot may
    take a moment to be counted as free)."""
    deadline = time.monotonic() + timeout
    while True:
        c = gw.client()
        resp = c.handshake(path)
        if resp.status == 101:
            assert resp.get("sec-websocket-accept") == harness.accept_key(c.key)
            return c
        assert resp.status == 503, resp
        c.close()
        assert time.monotonic() < deadline, "still 503 %ss after a session ended" % timeout
        time.sleep(0.1)


def check_echo(c, data=b"limit"):
    c.send_frame(OP_BINARY, data)
    assert c.read_data(len(data)) == data


def test_global_limit(gw, backends):
    a, b = backends.echo(), backends.echo()
    gw.start({"gateway": {"max_connections": 2},
              "route:a": route(a.addr, "/a"), "route:b": route(b.addr, "/b")})
    c1 = gw.ws("/a")
    c2 = gw.ws("/b")
    check_echo(c1)
    check_echo(c2)
    expect_503(gw, "/a")
    expect_503(gw, "/b")
    c1.send_close(1000)
    c1.expect_close(1000)
    c3 = upgrade_eventually(gw, "/b")
    check_echo(c3)
    check_echo(c2)
    expect_503(gw, "/a")


def test_route_limit(gw, backends):
    a, b = backends.echo(), backends.echo()
    gw.start({"route:a": route(a.addr, "/a", max_connections=1), "route:b": route(b.addr, "/b")})
    c1 = gw.ws("/a")
    check_echo(c1)
    expect_503(gw, "/a")
    others = [gw.ws("/b") for _ in range(3)]  # the other route is not limited
    for o in others:
        check_echo(o)
    c1.send_close(1000)
    c1.expect_close(1000)
    c2 = upgrade_eventually(gw, "/a")
    check_echo(c2)
    expect_503(gw, "/a")


def test_slot_freed_when_client_drops(gw, echo):
    gw.start({"gateway": {"max_connections": 1}, "route:e": route(echo.addr, "/")})
    c1 = gw.ws("/")
    check_echo(c1)
    for _ in range(3):
        expect_503(gw)
    c1.abort()
    c2 = upgrade_eventually(gw)
    check_echo(c2)


def test_slot_freed_when_backend_ends(gw, backends):
    sender = backends.sender(b"bye")
    gw.start({"gateway": {"max_connections": 1}, "route:s": route(sender.addr, "/")})
    c1 = gw.ws("/")
    assert c1.read_data(3) == b"bye"
    c1.expect_close(1000)
    c2 = upgrade_eventually(gw)
    assert c2.read_data(3) == b"bye"


def test_failed_handshakes_do_not_hold_slots(gw, echo):
    gw.start({"gateway": {"max_connections": 1}, "route:e": route(echo.addr, "/e")})
    for _ in range(5):
        c = gw.client()
        c.send(make_request("/nope"))
        assert_http_error(c, 404)
    c1 = upgrade_eventually(gw, "/e")
    check_echo(c1)
