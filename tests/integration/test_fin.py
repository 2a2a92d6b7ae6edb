"""Our last bytes and our FIN leave in one TCP segment: the close frame that
answers a client's close (plain and over TLS with wsgate's own records, the
close_notify alert in the same segment too) and an HTTP error answer. The
client then wakes once, for both, and the loopback carries one segment
less per session (tests/bench churn).

The segments are read off the loopback interface with an AF_PACKET socket
(needs root or CAP_NET_RAW, which the suite has) while the client runs.
"""

import select
import socket
import ssl
import struct
import time

import harness
from harness import OP_CLOSE, close_payload, route
from ops_helpers import scrape
from tls_helpers import Pki, client_context

ETH_P_ALL = 0x0003
TH_FIN, TH_RST = 0x01, 0x04


class Capture:
    """TCP segments on lo, from the moment it is made."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.segments = []  # (src port, dst port, flags, payload), each once

    def collect(self, src, dst, quiet=0.3, timeout=10.0):
        """Read until nothing came for `quiet` s; keep the segments from port
        src to port dst (loopback shows each one twice: sent and received)."""
        deadline = time.monotonic() + timeout
        seen = set()
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], quiet)
            if not r:
                break
            frame, meta = self.sock.recvfrom(65536)
            if meta[2] == socket.PACKET_OUTGOING:
                continue
            seg = parse_tcp(frame[14:])
            if seg and seg[0] == src and seg[1] == dst and seg[4] not in seen:
                seen.add(seg[4])
                self.segments.append(seg[:4])
        self.sock.close()
        return self.segments


def parse_tcp(ip):
    """(sport, dport, flags, payload, key) of an IPv4 TCP packet, or None."""
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:total]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    off = (tcp[12] >> 4) * 4
    flags = tcp[13]
    return sport, dport, flags, bytes(tcp[off:]), (seq, flags, len(tcp) - off)


def fin_segments(segs):
    return [s for s in segs if s[2] & TH_FIN]


def assert_fin_with_data(segs, tail):
    """One FIN from wsgate, in the segment that carries its last bytes (and
    no reset before it: one after it answers a client that wrote on)."""
    fins = fin_segments(segs)
    assert len(fins) == 1, "FIN segments from wsgate: %r" % fins
    before = segs[:segs.index(fins[0])]
    assert not [s for s in before if s[2] & TH_RST], "a reset from wsgate before its FIN"
    fin = fins[0]
    assert fin[3], "the FIN came alone, after the last bytes: %r" % segs[-3:]
    if tail is not None:
        assert fin[3].endswith(tail), "the FIN segment ends %r, not %r" % (fin[3][-16:], tail)


def test_close_reply_and_fin_in_one_segment(gw, echo):
    gw.start({"route:echo": route(echo.addr, "/")})
    c = gw.ws("/")
    c.send_frame(harness.OP_BINARY, b"ping")
    assert c.read_data(4) == b"ping"
    cap = Capture()
    port = c.sock.getsockname()[1]
    c.send_close(1000, b"bye")
    c.expect_close(1000)  # the close frame, then EOF
    segs = cap.collect(gw.port, port)
    c.close()
    reply = bytes([0x80 | OP_CLOSE, 2]) + close_payload(1000)
    assert_fin_with_data(segs, reply)
    assert [s[3] for s in segs if s[3]] == [reply], "bytes after the client's close: %r" % segs


def test_protocol_error_close_and_fin_in_one_segment(gw, echo):
    """A close wsgate starts and does not wait to have answered (1002 after a
    protocol error): the frame and the FIN together as well."""
    gw.start({"route:echo": route(echo.addr, "/")})
    c = gw.ws("/")
    cap = Capture()
    port = c.sock.getsockname()[1]
    c.send(harness.build_frame(harness.OP_BINARY, b"x", rsv=4))  # RSV3 without an extension
    c.expect_close(1002)
    segs = cap.collect(gw.port, port)
    c.close()
    assert_fin_with_data(segs, None)
    data = [s[3] for s in segs if s[3]]
    assert len(data) == 1 and data[0][0] == 0x80 | OP_CLOSE, data
    assert data[0][2:4] == struct.pack("!H", 1002)


def test_http_error_and_fin_in_one_segment(gw, echo):
    gw.start({"route:echo": route(echo.addr, "/ws")})
    c = harness.RawClient(gw.host, gw.port)
    cap = Capture()
    port = c.sock.getsockname()[1]
    resp = c.handshake("/nowhere")
    assert resp.status == 404
    c.expect_eof()
    segs = cap.collect(gw.port, port)
    c.close()
    assert_fin_with_data(segs, resp.body if resp.body else None)
    assert b"".join(s[3] for s in segs).startswith(b"HTTP/1.1 404 ")


def test_wss_close_notify_and_fin_in_one_segment(gw, echo, tmp_path):
    """Over TLS 1.3 with wsgate's own records: the close frame's record, the
    close_notify alert and the FIN leave together."""
    pki = Pki(tmp_path)
    ca = pki.ca("ca", "wsgate FIN CA")
    srv = pki.server("srv", ca)
    admin = harness.free_port()
    while admin == gw.port:
        admin = harness.free_port()
    gw.start({"gateway": {"listen": [gw.listen + " tls", "127.0.0.1:%d admin" % admin],
                          "metrics_path": "/metrics", "ping_interval": "0"},
              "tls": {"cert": srv.cert, "key": srv.key},
              "route:e": route(echo.addr, "/")})
    ctx = client_context(ca, min_version=ssl.TLSVersion.TLSv1_3)
    raw = socket.create_connection((gw.host, gw.port), timeout=harness.DEFAULT_TIMEOUT)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(harness.make_request("/", key=harness.new_key()))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    port = s.getsockname()[1]
    time.sleep(0.2)  # the session tickets and the 101 are all in
    cap = Capture()
    s.sendall(harness.build_frame(OP_CLOSE, close_payload(1000)))
    got = b""
    while True:
        k = s.recv(4096)  # the close frame, then b"" at wsgate's close_notify
        if not k:
            break
        got += k
    segs = cap.collect(gw.port, port)
    s.close()
    assert got == bytes([0x80 | OP_CLOSE, 2]) + close_payload(1000), got
    assert_fin_with_data(segs, None)
    data = [x[3] for x in segs if x[3]]
    assert len(data) == 1, "segments with data after the client's close: %d" % len(data)
    # in it, two records: application data (the close frame) and the alert
    wire = data[0]
    n1 = struct.unpack("!H", wire[3:5])[0]
    n2 = struct.unpack("!H", wire[5 + n1 + 3:5 + n1 + 5])[0]
    assert wire[0] == 23 and wire[5 + n1] == 23 and len(wire) == 10 + n1 + n2, wire.hex()
    m = scrape(gw, host="127.0.0.1", port=admin)
    assert int(m.value("wsgate_tls_record_offload_total", result="taken")) == 1
