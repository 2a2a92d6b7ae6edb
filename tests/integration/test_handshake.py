"""The upgrade handshake: every HTTP status wsgate answers, routing,
origins, subprotocols, backend connect results and pipelined bytes."""

import base64
import time

import pytest

import harness
from harness import OP_BINARY, make_request, route


def send_expect(gw, raw, status):
    """Send raw request bytes on a fresh connection; expect status."""
    c = gw.client()
    c.send_quietly(raw)
    return harness.assert_http_error(c, status)


# ---------------------------------------------------------------- success


def test_101_accept_key_and_relay(echo_gw):
    c = echo_gw.client()
    key = harness.new_key()
    resp = c.handshake("/", key=key)
    assert resp.status == 101, resp
    assert resp.status_line.startswith("HTTP/1.1 101"), resp
    assert resp.get("sec-websocket-accept") == harness.accept_key(key), resp
    assert "websocket" in resp.tokens("upgrade"), resp
    assert "upgrade" in resp.tokens("connection"), resp
    assert resp.get("sec-websocket-protocol") is None, resp
    c.send_frame(OP_BINARY, b"hello")
    assert c.read_data(5) == b"hello"


def test_accept_key_rfc_example(echo_gw):
    # The sample nonce of RFC 6455 section 1.3.
    c = echo_gw.client()
    resp = c.handshake("/", key="dGhlIHNhbXBsZSBub25jZQ==")
    assert resp.status == 101, resp
    assert resp.get("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp


@pytest.mark.parametrize("kw", [
    dict(connection="keep-alive, Upgrade"),
    dict(connection="upgrade"),
    dict(connection="Upgrade, keep-alive"),
    dict(upgrade="WebSocket"),
    dict(upgrade="WEBSOCKET"),
], ids=["conn-list", "conn-lower", "conn-list-first", "upgrade-WebSocket", "upgrade-upper"])
def test_valid_header_variants(echo_gw, kw):
    c = echo_gw.ws("/", **kw)
    c.send_frame(OP_BINARY, b"variant")
    assert c.read_data(7) == b"variant"


def test_lowercase_header_names(echo_gw):
    key = harness.new_key()
    raw = ("GET / HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
           "sec-websocket-key: %s\r\nsec-websocket-version: 13\r\n\r\n" % key).encode()
    c = echo_gw.client()
    c.send(raw)
    resp = c.read_http_response()
    assert resp.status == 101, resp
    assert resp.get("sec-websocket-accept") == harness.accept_key(key)


@pytest.mark.parametrize("size", [1, 3000, 200000])
def test_pipelined_frame_after_request(echo_gw, size):
    """A masked frame sent in the same write as the request is relayed."""
    c = echo_gw.client()
    payload = harness.random_bytes(size)
    resp = c.handshake("/", extra=harness.build_frame(OP_BINARY, payload))
    assert resp.status == 101, resp
    harness.assert_same(c.read_data(len(payload)), payload)


def test_compression_offer_not_accepted(echo_gw):
    """wsgate implements no extension: an offered permessage-deflate is not
    accepted, and frames stay plain."""
    c = echo_gw.ws("/", extra_headers=[("Sec-WebSocket-Extensions",
                                        "permessage-deflate; client_max_window_bits")])
    assert c.response.get("sec-websocket-extensions") is None, c.response
    c.send_frame(OP_BINARY, b"plain" * 100)
    assert c.read_data(500) == b"plain" * 100


def test_head_just_under_16k_ok(echo_gw):
    filler = [("X-Filler-%d" % i, "f" * 1000) for i in range(14)]  # about 14.5 KiB
    c = echo_gw.ws("/", extra_headers=filler)
    c.send_frame(OP_BINARY, b"big head")
    assert c.read_data(8) == b"big head"


# ---------------------------------------------------------------- request errors


def test_not_get_405(echo_gw):
    send_expect(echo_gw, make_request("/", method="POST"), 405)


def test_http10_505(echo_gw):
    send_expect(echo_gw, make_request("/", http_version="HTTP/1.0"), 505)


@pytest.mark.parametrize("raw", [
    b"GETHTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1 junk\r\nHost: x\r\n\r\n",
], ids=["no-spaces", "extra-token"])
def test_malformed_request_line_400(echo_gw, raw):
    send_expect(echo_gw, raw, 400)


@pytest.mark.parametrize("line", ["Host localhost-no-colon", "Bad Name: value",
                                  "Host : spaced"],
                         ids=["no-colon", "space-in-name", "space-before-colon"])
def test_malformed_header_line_400(echo_gw, line):
    raw = make_request("/", extra_headers=[]).replace(b"\r\n\r\n", b"\r\n" + line.encode() + b"\r\n\r\n")
    send_expect(echo_gw, raw, 400)


def test_head_over_16k_431(echo_gw):
    filler = [("X-Filler-%d" % i, "f" * 1000) for i in range(17)]
    send_expect(echo_gw, make_request("/", extra_headers=filler), 431)


def test_head_over_16k_unterminated_431(echo_gw):
    """The limit applies while the head is still incomplete (no blank line)."""
    c = echo_gw.client()
    head = make_request("/")[:-2]  # drop the final CRLF
    c.send_quietly(head + b"X-Long: " + b"a" * 17000 + b"\r\n")
    harness.assert_http_error(c, 431)


def test_missing_host_400(echo_gw):
    send_expect(echo_gw, make_request("/", omit=["Host"]), 400)


@pytest.mark.parametrize("kw", [
    dict(omit=["Sec-WebSocket-Key"]),
    dict(key="not base64!!"),
    dict(key=base64.b64encode(b"x" * 15).decode()),
    dict(key=base64.b64encode(b"x" * 17).decode()),
    dict(key=""),
], ids=["missing", "not-base64", "15-bytes", "17-bytes", "empty"])
def test_bad_key_400(echo_gw, kw):
    send_expect(echo_gw, make_request("/", **kw), 400)


def test_duplicate_key_400(echo_gw):
    raw = make_request("/", extra_headers=[("Sec-WebSocket-Key", harness.new_key())])
    send_expect(echo_gw, raw, 400)


@pytest.mark.parametrize("kw", [
    dict(omit=["Upgrade"]),
    dict(upgrade="h2c"),
    dict(omit=["Connection"]),
    dict(connection="keep-alive"),
    dict(connection="close"),
], ids=["no-upgrade", "upgrade-h2c", "no-connection", "conn-keep-alive", "conn-close"])
def test_upgrade_connection_tokens_400(echo_gw, kw):
    send_expect(echo_gw, make_request("/", **kw), 400)


@pytest.mark.parametrize("kw", [dict(omit=["Sec-WebSocket-Version"]), dict(version="8"),
                                dict(version="14")], ids=["missing", "8", "14"])
def test_version_426(echo_gw, kw):
    resp = send_expect(echo_gw, make_request("/", **kw), 426)
    assert resp.get("sec-websocket-version") == "13", resp


# ---------------------------------------------------------------- routing


def test_routing_exact_prefix_longest_query(gw, backends):
    exact = backends.greeter(b"EXACT")
    pre = backends.greeter(b"PREFIX")
    longer = backends.greeter(b"LONGER")
    gw.start({
        "route:exact": route(exact.addr, "/echo"),
        "route:pre": route(pre.addr, "/a/"),
        "route:longer": route(longer.addr, "/a/b/"),
    })
    for path, greeting in [("/echo", b"EXACT"), ("/echo?x=1&y=2", b"EXACT"),
                           ("/a/x", b"PREFIX"), ("/a/", b"PREFIX"), ("/a/b/c/d", b"LONGER"),
                           ("/a/b/", b"LONGER"), ("/a/bc", b"PREFIX")]:
        c = gw.ws(path)
        assert c.read_data(len(greeting)) == greeting, path
        c.close()
    for path in ["/echo/more", "/echox", "/", "/b"]:
        send_expect(gw, make_request(path), 404)


def test_unknown_path_404(gw, echo):
    gw.start({"route:echo": route(echo.addr, "/echo")})
    send_expect(gw, make_request("/nope"), 404)
    assert echo.count == 0


# ---------------------------------------------------------------- origins


ORIGINS = "https://good.example.org, https://*.example.com"


@pytest.fixture
def origin_gw(gw, echo):
    gw.start({"route:o": route(echo.addr, "/", allowed_origins=ORIGINS)})
    gw.echo = echo
    return gw


@pytest.mark.parametrize("origin", ["https://good.example.org", "https://a.example.com",
                                    "https://sub-1.example.com"])
def test_origin_allowed(origin_gw, origin):
    c = origin_gw.ws("/", origin=origin)
    c.send_frame(OP_BINARY, b"o")
    assert c.read_data(1) == b"o"


@pytest.mark.parametrize("origin", [None, "https://evil.org", "http://good.example.org",
                                    "https://good.example.org.evil.org",
                                    "https://a.example.com.evil.org", "http://a.example.com",
                                    "https://aexample.com", "null"])
def test_origin_forbidden_403(origin_gw, origin):
    send_expect(origin_gw, make_request("/", origin=origin), 403)
    assert origin_gw.echo.count == 0, "backend connected for a forbidden origin"


# ---------------------------------------------------------------- subprotocols


@pytest.fixture
def proto_gw(gw, echo):
    gw.start({"route:p": route(echo.addr, "/p", subprotocols="binary, base64"),
              "route:plain": route(echo.addr, "/plain")})
    return gw


@pytest.mark.parametrize("offer,chosen", [("base64, binary", "binary"),
                                          ("binary, base64", "binary"),
                                          ("base64", "base64"), ("foo, base64", "base64"),
                                          ("binary", "binary")])
def test_subprotocol_server_preference(proto_gw, offer, chosen):
    c = proto_gw.ws("/p", protocols=offer)
    assert c.response.get_all("sec-websocket-protocol") == [chosen], c.response


def test_subprotocol_offer_in_two_headers(proto_gw):
    c = proto_gw.client()
    key = harness.new_key()
    c.key = key
    c.send(make_request("/p", key=key, extra_headers=[("Sec-WebSocket-Protocol", "foo"),
                                                      ("Sec-WebSocket-Protocol", "base64")]))
    resp = c.read_http_response()
    assert resp.status == 101, resp
    assert resp.get_all("sec-websocket-protocol") == ["base64"], resp


def test_subprotocol_no_offer_no_header(proto_gw):
    c = proto_gw.ws("/p")
    assert c.response.get("sec-websocket-protocol") is None, c.response


@pytest.mark.parametrize("path", ["/p", "/plain"])
def test_subprotocol_none_acceptable_400(proto_gw, path):
    send_expect(proto_gw, make_request(path, protocols="chat, superchat"), 400)


# ---------------------------------------------------------------- backends


def test_backend_refused_502(gw):
    gw.start({"route:r": route(harness.refused_addr(), "/")})
    send_expect(gw, make_request("/"), 502)


def test_backend_connect_timeout_504(gw, backends):
    hole = backends.blackhole()  # its connects hang on every kernel (or it fails)
    gw.start({"route:h": route(hole.addr, "/", connect_timeout="500ms")})
    t0 = time.monotonic()
    c = gw.client(timeout=20)
    c.send(make_request("/"))
    resp = c.read_http_response(timeout=20)
    elapsed = time.monotonic() - t0
    print("504 after %.2fs" % elapsed)
    harness.assert_http_error(c, 504, resp)
    assert elapsed >= 0.3, "504 before connect_timeout elapsed (%.2fs)" % elapsed


def test_failover_second_backend(gw, echo):
    gw.start({"route:f": route([harness.refused_addr(), echo.addr], "/")})
    c = gw.ws("/")
    data = harness.random_bytes(10000)
    c.send_frame(OP_BINARY, data)
    assert c.read_data(len(data)) == data
    assert echo.count == 1


def test_failover_all_refused_502(gw):
    gw.start({"route:f": route([harness.refused_addr(), harness.refused_addr()], "/")})
    send_expect(gw, make_request("/"), 502)


# ---------------------------------------------------------------- handshake timeout


@pytest.mark.parametrize("partial", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"],
                         ids=["nothing", "half-head"])
def test_handshake_timeout_closes(gw, echo, partial):
    gw.start({"gateway": {"handshake_timeout": "1s"}, "route:e": route(echo.addr, "/")})
    c = gw.client(timeout=20)
    t0 = time.monotonic()
    if partial:
        c.send(partial)
    c.read_until_eof(timeout=8)  # a response before the close is allowed
    elapsed = time.monotonic() - t0
    print("closed after %.2fs" % elapsed)
    assert elapsed >= 0.5, "closed before handshake_timeout (%.2fs)" % elapsed
    assert echo.count == 0


def test_slow_but_complete_handshake_ok(gw, echo):
    """Bytes trickling in within handshake_timeout are fine."""
    gw.start({"gateway": {"handshake_timeout": "5s"}, "route:e": route(echo.addr, "/")})
    c = gw.client()
    c.key = harness.new_key()
    c.send_chunked(make_request("/", key=c.key), 7)
    resp = c.read_http_response()
    assert resp.status == 101 and resp.get("sec-websocket-accept") == harness.accept_key(c.key)


# ---------------------------------------------------------------- IPv6


def test_ipv6_listener(gateway_factory, echo):
    if not harness.has_ipv6_loopback():
        pytest.skip("the kernel has no ::1")
    g = gateway_factory(host="::1")
    g.start({"route:e": route(echo.addr, "/")})
    assert g.listen.startswith("[::1]:")
    c = g.ws("/")
    c.send_frame(OP_BINARY, b"over v6")
    assert c.read_data(7) == b"over v6"


def test_failover_after_connect_timeout(gw, backends, echo):
    hole = backends.blackhole()  # its connects hang on every kernel (or it fails)
    gw.start({"route:f": route([hole.addr, echo.addr], "/", connect_timeout="500ms")})
    c = gw.client(timeout=20)
    c.key = harness.new_key()
    c.send(make_request("/", key=c.key))
    resp = c.read_http_response(timeout=20)
    assert resp.status == 101, resp
    c.send_frame(OP_BINARY, b"second")
    assert c.read_data(6) == b"second"


def test_ipv6_backend(gw, backends):
    if not harness.has_ipv6_loopback():
        pytest.skip("the kernel has no ::1")
    echo6 = backends.echo(host="::1")
    assert echo6.addr.startswith("[::1]:")
    gw.start({"route:e": route(echo6.addr, "/")})
    c = gw.ws("/")
    c.send_frame(OP_BINARY, b"to v6 backend")
    assert c.read_data(13) == b"to v6 backend"
