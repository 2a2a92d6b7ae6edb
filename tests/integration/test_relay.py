"""Relaying through an echo backend: the size and write-chunking matrix,
fragmentation with interleaved control frames, the base64 subprotocol, and
an independent client (python3-websockets)."""

import asyncio
import base64

import pytest

import harness
from harness import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, build_frame, route

SIZES = [0, 1, 125, 126, 127, 128, 65535, 65536, 1 << 20]
CHUNKS = {"one-write": None, "1-byte-writes": 1, "997-byte-writes": 997}


def payload_for(kind, size, seed):
    return harness.random_bytes(size, seed) if kind == "binary" else harness.random_utf8(size, seed)


def matrix():
    for size in SIZES:
        for kind in ("binary", "text"):
            for name, chunk in CHUNKS.items():
                if chunk == 1 and size > 65536:
                    continue
                yield pytest.param(size, kind, chunk, id="%s-%d-%s" % (kind, size, name))


@pytest.mark.parametrize("size,kind,chunk", list(matrix()))
def test_echo_matrix(echo_gw, size, kind, chunk):
    """One message of `size` bytes, its frame written whole or chopped; then
    a marker message: the bytes back are exactly payload + marker."""
    c = echo_gw.ws("/")
    payload = payload_for(kind, size, seed=size)
    marker = b"<end of %d>" % size
    op = OP_BINARY if kind == "binary" else OP_TEXT
    wire = build_frame(op, payload) + build_frame(OP_BINARY, marker)
    sender = c.send_in_background(wire, chunk)
    got = c.read_data(size + len(marker), timeout=60)
    c.join_sender(sender)
    harness.assert_same(got[:size], payload)
    assert got[size:] == marker
    assert c.controls == [], "unexpected control frames %r" % c.controls


@pytest.mark.parametrize("kind", ["binary", "text"])
def test_many_messages_back_to_back(echo_gw, kind):
    c = echo_gw.ws("/")
    msgs = [payload_for(kind, n, seed=n) for n in (0, 5, 300, 70000, 2, 126, 65535)]
    op = OP_BINARY if kind == "binary" else OP_TEXT
    wire = b"".join(build_frame(op, m) for m in msgs)
    sender = c.send_in_background(wire, 4093)
    got = c.read_data(sum(map(len, msgs)), timeout=60)
    c.join_sender(sender)
    harness.assert_same(got, b"".join(msgs))


def read_data_and_pongs(c, nbytes, last_ping, timeout=20):
    """Echoed data (binary frames) and pong payloads, in arrival order, up to
    the pong that answers last_ping."""
    data = c.read_data(nbytes, timeout=timeout, auto_pong=False)
    while not any(f.opcode == OP_PONG and f.payload == last_ping for f in c.controls):
        f = c.recv_frame(timeout=timeout)
        assert f.opcode in (OP_PONG, OP_PING), "unexpected frame %r" % f
        c.controls.append(f)
    pongs = [f.payload for f in c.controls if f.opcode == OP_PONG]
    return data, pongs


def assert_pongs_answer(pongs, pings):
    """RFC 6455 5.5.3: a pong may answer only the most recent of several
    pings. Every pong carries a ping's payload, in order, and the last one
    answers the last ping."""
    it = iter(pings)
    assert all(any(p == q for q in it) for p in pongs), (pongs, pings)
    assert pongs and pongs[-1] == pings[-1], (pongs, pings)


@pytest.mark.parametrize("kind", ["binary", "text"])
def test_fragmented_with_interleaved_pings(echo_gw, kind):
    c = echo_gw.ws("/")
    payload = payload_for(kind, 9001, seed=7)
    op = OP_BINARY if kind == "binary" else OP_TEXT
    # cut points fall inside multi-byte characters for the text case too
    cuts = [0, 1, 1, 2001, 4002, 9001]  # includes an empty fragment
    pings = [b"first", b"", b"p" * 125, b"\x00\xff"]
    wire = b""
    for i in range(len(cuts) - 1):
        part = payload[cuts[i]:cuts[i + 1]]
        last = i == len(cuts) - 2
        wire += build_frame(op if i == 0 else OP_CONT, part, fin=last)
        if i < len(pings):
            wire += build_frame(OP_PING, pings[i])
    c.send(wire)
    data, pongs = read_data_and_pongs(c, len(payload), pings[-1])
    harness.assert_same(data, payload)
    assert_pongs_answer(pongs, pings)


def test_ping_pong_payloads(echo_gw):
    c = echo_gw.ws("/")
    for p in [b"", b"x", b"\x00" * 125, harness.random_bytes(125)]:
        c.send_frame(OP_PING, p)
        f = c.recv_frame()
        assert f.opcode == OP_PONG and not f.masked, f
        assert f.payload == p


def test_control_frames_never_reach_backend(gw, backends):
    sink = backends.sink(keep_data=True)
    gw.start({"route:s": route(sink.addr, "/")})
    c = gw.ws("/")
    c.send_frame(OP_PING, b"PING-DATA")
    c.send_frame(OP_PONG, b"PONG-DATA")
    c.send_frame(OP_TEXT, b"abc")
    c.send_frame(OP_BINARY, b"def", fin=False)
    c.send_frame(OP_PING, b"MID")
    c.send_frame(OP_CONT, b"ghi")
    pongs = []
    while not pongs or pongs[-1] != b"MID":
        f = c.recv_frame()
        assert f.opcode == OP_PONG, f
        pongs.append(f.payload)
    assert_pongs_answer(pongs, [b"PING-DATA", b"MID"])
    rec = sink.wait_connections(1)
    harness.wait_until(lambda: rec.received >= 9, what="9 bytes at the sink")
    c.send_close(1000)
    c.expect_close(1000)
    harness.wait_until(lambda: rec.eof_at, what="backend EOF")
    assert bytes(rec.data) == b"abcdefghi"


def test_unsolicited_pong_ignored(echo_gw):
    c = echo_gw.ws("/")
    c.send_frame(OP_PONG, b"unsolicited")
    c.send_frame(OP_BINARY, b"after")
    assert c.read_data(5) == b"after"
    assert c.controls == [], "server answered a pong: %r" % c.controls


# ---------------------------------------------------------------- base64


@pytest.fixture
def b64_gw(gw, echo):
    gw.start({"route:b": route(echo.addr, "/", subprotocols="binary, base64")})
    return gw


def b64(data):
    return base64.b64encode(data)


def b64_strict(data):
    return base64.b64decode(data, validate=True)


def test_base64_subprotocol_roundtrip(b64_gw):
    c = b64_gw.ws("/", protocols="base64")
    assert c.response.get("sec-websocket-protocol") == "base64"
    msgs = [harness.random_bytes(n, seed=n) for n in (1, 2, 3, 4, 1000, 70001, 300000)]
    wire = b"".join(build_frame(OP_TEXT, b64(m)) for m in msgs)
    sender = c.send_in_background(wire, 8191)
    got = c.read_data(sum(map(len, msgs)), opcode=OP_TEXT, decode=b64_strict, timeout=60)
    c.join_sender(sender)
    harness.assert_same(got, b"".join(msgs))


def test_base64_fragmented_message(b64_gw):
    """A base64 message split across fragments at non-multiple-of-4 offsets."""
    c = b64_gw.ws("/", protocols="base64")
    data = harness.random_bytes(5000, seed=3)
    text = b64(data)
    wire = (build_frame(OP_TEXT, text[:5], fin=False) + build_frame(OP_CONT, text[5:1003], fin=False)
            + build_frame(OP_CONT, text[1003:]))
    c.send(wire)
    got = c.read_data(len(data), opcode=OP_TEXT, decode=b64_strict)
    harness.assert_same(got, data)


def test_base64_backend_bytes_are_text_frames(gw, backends):
    data = harness.random_bytes(200000, seed=11)
    sender = backends.sender(data)
    gw.start({"route:b": route(sender.addr, "/", subprotocols="binary, base64")})
    c = gw.ws("/", protocols="base64")
    got = c.read_data(len(data), opcode=OP_TEXT, decode=b64_strict)
    harness.assert_same(got, data)
    c.expect_close(1000)


def test_binary_subprotocol_is_binary(b64_gw):
    c = b64_gw.ws("/", protocols="binary")
    assert c.response.get("sec-websocket-protocol") == "binary"
    data = harness.random_bytes(1000)
    c.send_frame(OP_BINARY, data)
    assert c.read_data(len(data), opcode=OP_BINARY) == data


# ---------------------------------------------------------------- independent client


def test_websockets_client_echo(echo_gw):
    msgs = [b"", b"binary\x00\xff", "text \u20ac\U0001f600", harness.random_bytes(200000),
            harness.random_utf8(70000).decode()]
    got = asyncio.run(harness.ws_echo_session(echo_gw.url("/any/path"), msgs))
    expected = b"".join(m.encode() if isinstance(m, str) else m for m in msgs)
    harness.assert_same(got, expected)


def test_websockets_client_base64(b64_gw):
    import websockets

    async def run():
        async with websockets.connect(b64_gw.url("/"), subprotocols=["base64"], compression=None,
                                      ping_interval=None) as ws:
            assert ws.subprotocol == "base64"
            data = harness.random_bytes(50000)
            await ws.send(base64.b64encode(data).decode())
            got = bytearray()
            while len(got) < len(data):
                msg = await asyncio.wait_for(ws.recv(), 10)
                assert isinstance(msg, str), "base64 mode must send text frames"
                got += base64.b64decode(msg, validate=True)
            harness.assert_same(bytes(got), data)
    asyncio.run(run())
