"""Framing errors: the server answers with a close frame carrying the
right code (1002, 1007, 1009) and then closes TCP. Valid edge cases are
checked alongside, so a gateway that rejects everything fails too."""

import struct

import pytest

import harness
from harness import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, build_frame, route


def expect_protocol_error(c, wire, code):
    c.send_quietly(wire)
    return c.expect_close(code)


# ---------------------------------------------------------------- 1002


def test_unmasked_frame_1002(echo_gw):
    c = echo_gw.ws("/")
    expect_protocol_error(c, build_frame(OP_BINARY, b"hello", mask=False), 1002)


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_rsv_bits_1002(echo_gw, rsv):
    c = echo_gw.ws("/")
    expect_protocol_error(c, build_frame(OP_BINARY, b"hello", rsv=rsv), 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_1002(echo_gw, opcode):
    c = echo_gw.ws("/")
    expect_protocol_error(c, build_frame(opcode, b"x"), 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_1002(echo_gw, opcode):
    c = echo_gw.ws("/")
    payload = struct.pack("!H", 1000) if opcode == OP_CLOSE else b"ctl"
    expect_protocol_error(c, build_frame(opcode, payload, fin=False), 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_1002(echo_gw, opcode):
    c = echo_gw.ws("/")
    payload = struct.pack("!H", 1000) + b"r" * 124 if opcode == OP_CLOSE else b"p" * 126
    expect_protocol_error(c, build_frame(opcode, payload), 1002)


def test_control_frame_125_ok(echo_gw):
    c = echo_gw.ws("/")
    c.send_frame(OP_PING, b"q" * 125)
    f = c.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"q" * 125, f


@pytest.mark.parametrize("fin", [True, False], ids=["final", "non-final"])
def test_continuation_without_message_1002(echo_gw, fin):
    c = echo_gw.ws("/")
    expect_protocol_error(c, build_frame(OP_CONT, b"orphan", fin=fin), 1002)


def test_continuation_after_finished_message_1002(echo_gw):
    c = echo_gw.ws("/")
    c.send_frame(OP_BINARY, b"done")
    assert c.read_data(4) == b"done"
    expect_protocol_error(c, build_frame(OP_CONT, b"late"), 1002)


@pytest.mark.parametrize("first,second", [(OP_BINARY, OP_BINARY), (OP_TEXT, OP_BINARY),
                                          (OP_BINARY, OP_TEXT), (OP_TEXT, OP_TEXT)])
def test_new_message_inside_fragmented_1002(echo_gw, first, second):
    c = echo_gw.ws("/")
    wire = build_frame(first, b"part one", fin=False) + build_frame(second, b"intruder")
    expect_protocol_error(c, wire, 1002)


def test_64bit_length_top_bit_1002(echo_gw):
    c = echo_gw.ws("/")
    head = bytes([0x80 | OP_BINARY, 0x80 | 127]) + struct.pack("!Q", (1 << 63) | 5)
    expect_protocol_error(c, head + b"\x00\x00\x00\x00" + b"hello", 1002)


def test_errors_after_valid_traffic(echo_gw):
    """A protocol error mid-session: earlier data was relayed, then 1002."""
    c = echo_gw.ws("/")
    c.send_frame(OP_BINARY, b"fine")
    assert c.read_data(4) == b"fine"
    expect_protocol_error(c, build_frame(OP_BINARY, b"bad", mask=False), 1002)


# ---------------------------------------------------------------- UTF-8 (1007)


INVALID_UTF8 = {
    "ff": b"ab\xffcd",
    "overlong-nul": b"ab\xc0\x80cd",
    "overlong-3byte": b"\xe0\x80\xafz",
    "surrogate": b"x\xed\xa0\x80y",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "lone-continuation": b"\x80",
    "truncated-at-end": b"ok \xe2\x82",
    "f5": b"\xf5\x80\x80\x80",
}


@pytest.mark.parametrize("name", list(INVALID_UTF8))
def test_invalid_utf8_text_1007(echo_gw, name):
    c = echo_gw.ws("/")
    expect_protocol_error(c, build_frame(OP_TEXT, INVALID_UTF8[name]), 1007)


def test_valid_utf8_edges_pass(echo_gw):
    c = echo_gw.ws("/")
    text = "\u007f\u0080\u07ff\u0800\ud7ff\ue000\ufffd\uffff\U00010000\U0010ffff".encode()
    c.send_frame(OP_TEXT, text)
    assert c.read_data(len(text)) == text


def test_invalid_utf8_split_across_fragments_1007(echo_gw):
    """First fragment ends with the start of a 3-byte sequence; the next
    starts with a non-continuation byte. The message is not finished."""
    c = echo_gw.ws("/")
    wire = build_frame(OP_TEXT, b"abc\xe2\x82", fin=False) + build_frame(OP_CONT, b"A", fin=False)
    expect_protocol_error(c, wire, 1007)


def test_valid_utf8_split_across_fragments_passes(echo_gw):
    c = echo_gw.ws("/")
    euro = "\u20ac".encode()  # e2 82 ac
    wire = (build_frame(OP_TEXT, b"abc" + euro[:1], fin=False) + build_frame(OP_CONT, euro[1:2], fin=False)
            + build_frame(OP_CONT, euro[2:] + b"!"))
    c.send(wire)
    assert c.read_data(7) == b"abc" + euro + b"!"


def test_truncated_utf8_at_message_end_across_fragments_1007(echo_gw):
    c = echo_gw.ws("/")
    wire = build_frame(OP_TEXT, b"abc", fin=False) + build_frame(OP_CONT, b"\xf0\x9f\x98")
    expect_protocol_error(c, wire, 1007)


def test_invalid_utf8_fail_fast_in_frame(echo_gw):
    """A frame announcing 1 MB whose first bytes are invalid: the close must
    arrive though the frame (and message) is far from complete."""
    c = echo_gw.ws("/")
    payload = b"valid start \xff" + b"a" * (1 << 20)
    frame = build_frame(OP_TEXT, payload)
    c.send(frame[:14 + 40])  # header (2 + 8 + 4) and 40 payload bytes
    c.expect_close(1007)


def test_invalid_utf8_fail_fast_in_fragment(echo_gw):
    c = echo_gw.ws("/")
    c.send(build_frame(OP_TEXT, b"good", fin=False) + build_frame(OP_CONT, b"\xc3(", fin=False))
    c.expect_close(1007)


def test_binary_message_not_utf8_checked(echo_gw):
    c = echo_gw.ws("/")
    data = b"\xff\xfe\xc0\x80\xed\xa0\x80"
    c.send_frame(OP_BINARY, data)
    assert c.read_data(len(data)) == data


# ---------------------------------------------------------------- 1009


@pytest.fixture
def limited_gw(gw, echo):
    gw.start({"route:m": route(echo.addr, "/", max_message_size=1000)})
    return gw


@pytest.mark.parametrize("kind", [OP_BINARY, OP_TEXT])
def test_message_at_limit_passes(limited_gw, kind):
    c = limited_gw.ws("/")
    data = b"z" * 1000
    c.send(harness.build_message(kind, data, fragments=3))
    assert c.read_data(1000) == data


@pytest.mark.parametrize("fragments", [1, 2, 5])
def test_message_over_limit_1009(limited_gw, fragments):
    c = limited_gw.ws("/")
    expect_protocol_error(c, harness.build_message(OP_BINARY, b"y" * 1001, fragments=fragments), 1009)


def test_message_size_is_per_message(limited_gw):
    """Many messages each under the limit add up to far more: no 1009."""
    c = limited_gw.ws("/")
    wire = b"".join(build_frame(OP_BINARY, b"%03d" % i * 250) for i in range(20))
    c.send(wire)
    got = c.read_data(20 * 750)
    assert got == b"".join(b"%03d" % i * 250 for i in range(20))


def test_max_message_size_units(gw, echo):
    gw.start({"route:m": route(echo.addr, "/", max_message_size="2k")})
    c = gw.ws("/")
    c.send_frame(OP_BINARY, b"k" * 2048)
    assert c.read_data(2048) == b"k" * 2048
    expect_protocol_error(c, build_frame(OP_BINARY, b"k" * 2049), 1009)
