"""TLS 1.3 records sealed and opened by wsgate itself ([tls] record_offload,
src/tlsrec.c and io.c): once a TLS 1.3 session relays, wsgate frees the SSL
and does the record layer with the keys OpenSSL negotiated.

Independent clients check it byte for byte: python3-websockets over
Python's ssl, `openssl s_client -msg` (KeyUpdate both ways, shown record by
record), and a client built on ssl.SSLObject over a plain socket (RawTls
below) that sees and makes every TLS byte: corrupted and malformed records,
records dripped one byte at a time, a reader that stalls, close_notify.
Every test reads wsgate_tls_record_offload_total from an admin listener, so
each fails if wsgate left the records to OpenSSL (or offloaded what it must
not). Keys and certificates are made at test time with the openssl CLI.
"""

import asyncio
import re
import resource
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import harness
from harness import (OP_BINARY, OP_CLOSE, ConnectionClosed, accept_key, assert_same,
                     build_frame, make_request, new_key, random_bytes, route, wait_log,
                     wait_until)
from ops_helpers import access_lines, scrape
from tls_helpers import OPENSSL, Pki, client_context, wss_echo

MIB = 1 << 20
SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
OFFLOAD = "wsgate_tls_record_offload_total"
# wsgate's alert record: header, 2 bytes of alert, inner type, 16 bytes of tag
ALERT_RECORD_LEN = 5 + 2 + 1 + 16


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.ca_ = p.ca("ca", "wsgate record offload CA")
    p.srv = p.server("srv", p.ca_)
    return p


@pytest.fixture
def ctx(pki):
    return client_context(pki.ca_)


def start(gw, pki, backend_addr, tls=None, gateway=None, plain=False):
    """Start gw: its listener TLS (or plain), an admin listener serving
    /metrics (gw.admin_port), one route "/" to backend_addr."""
    gw.admin_port = gw.port
    while gw.admin_port == gw.port:
        gw.admin_port = harness.free_port()
    g = {"listen": [gw.listen + ("" if plain else " tls"), "127.0.0.1:%d admin" % gw.admin_port],
         "metrics_path": "/metrics", "ping_interval": "0"}
    g.update(gateway or {})
    t = {"cert": pki.srv.cert, "key": pki.srv.key}
    t.update(tls or {})
    gw.start({"gateway": g, "tls": t, "route:e": route(backend_addr, "/")})
    return gw


def offload_counts(gw):
    """(taken, openssl) of wsgate_tls_record_offload_total."""
    m = scrape(gw, host="127.0.0.1", port=gw.admin_port)
    return int(m.value(OFFLOAD, result="taken")), int(m.value(OFFLOAD, result="openssl"))


def access_of(gw, port, timeout=10):
    """The access line of the client whose local port is given (waited for:
    the logger thread writes it): ops_helpers.access_lines' dict, with
    "line" the whole line and "reason" its reason."""
    key = "127.0.0.1:%d" % port
    wait_log(gw, " access: client=%s " % key, timeout=timeout)
    rec = access_lines(gw)[key]
    rec["line"] = [ln for ln in gw.stderr_text().splitlines()
                   if " access: client=%s " % key in ln][-1]
    m = re.search(r' reason="([^"]*)"', rec["line"])
    rec["reason"] = m.group(1) if m else None
    return rec


def pattern(n, start=0):
    """Bytes (start + i) % 251: a stream whose every offset is checkable."""
    block = bytes(i % 251 for i in range(251)) * 2
    out = bytearray()
    off = start % 251
    while len(out) < n:
        out += block[off:off + 251]
        off = 0
    return bytes(out[:n])


# ---------------------------------------------------------------- a client that shows its TLS bytes


class RawTls:
    """A TLS client through ssl.SSLObject (MemoryBIOs) over a plain blocking
    TCP socket, with RawClient's socket interface (so harness.RawClient can
    sit on it: frames, upgrade), plus direct access to the TLS bytes: seal()
    gives the records of a plaintext without sending them, send_raw() puts
    any bytes on TCP, wire keeps every byte received after the handshake.
    A fatal alert from wsgate raises ssl.SSLError out of recv()."""

    def __init__(self, host, port, ctx, rcvbuf=None, timeout=harness.DEFAULT_TIMEOUT):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.plain = bytearray()
        self.wire = bytearray()
        self.tcp_eof = False
        self.tls_end = None  # "close_notify" or "eof" once the TLS stream ended
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionClosed("EOF during the TLS handshake")
                self.inc.write(data)
        self.sock.sendall(self.out.read())

    # -- TLS bytes
    def seal(self, data):
        """The TLS records carrying data (not sent)."""
        self.obj.write(bytes(data))
        return self.out.read()

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv_wire(self, timeout=None):
        """One TCP read (kept in self.wire and given to the SSLObject);
        b'' at EOF."""
        if self.tcp_eof:
            return b""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.tcp_eof = True
            self.inc.write_eof()
            return b""
        self.wire += data
        self.inc.write(data)
        return data

    def read_wire_until_eof(self, timeout=harness.DEFAULT_TIMEOUT):
        """Read TCP (without decrypting) until wsgate closes it."""
        deadline = time.monotonic() + timeout
        while not self.tcp_eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("wsgate did not close TCP in %ss" % timeout)
            self.recv_wire(left)

    def decrypt(self):
        """Move what the SSLObject can open into self.plain. Returns False
        when it needs more bytes; True once the TLS stream ended (then
        self.tls_end says how). An alert from wsgate raises ssl.SSLError."""
        while True:
            try:
                data = self.obj.read(1 << 20)
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLZeroReturnError:
                self.tls_end = "close_notify"
                return True
            except ssl.SSLEOFError:
                self.tls_end = "eof"
                return True
            if not data:
                self.tls_end = self.tls_end or "eof"
                return True
            self.plain += data

    # -- the socket interface harness.RawClient uses
    def settimeout(self, t):
        self.timeout = t if t is not None else 3600

    def sendall(self, data):
        self.sock.sendall(self.seal(data))

    def recv(self, n):
        deadline = time.monotonic() + self.timeout
        while True:
            ended = self.decrypt()
            if self.plain:
                out = bytes(self.plain[:n])
                del self.plain[:n]
                return out
            if ended or self.tcp_eof:
                return b""
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            self.recv_wire(left)

    def setsockopt(self, *a):
        self.sock.setsockopt(*a)

    def getsockname(self):
        return self.sock.getsockname()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_tls(gw, ctx, **kw):
    """A harness.RawClient on a RawTls connected to gw (closed with gw)."""
    t = RawTls(gw.host, gw.port, ctx, **kw)
    c = harness.RawClient.__new__(harness.RawClient)
    c.sock, c.buf, c.eof, c.key, c.response, c.controls = t, bytearray(), False, None, None, []
    c.close_sent = False
    gw.clients.append(c)
    return c


def records(wire):
    """[(type, length)] of the TLS records in wire (which must hold whole
    records only)."""
    out, p = [], 0
    while p < len(wire):
        assert len(wire) - p >= 5, "a partial record header at the end: %r" % bytes(wire[p:])
        typ, n = wire[p], struct.unpack("!H", wire[p + 3:p + 5])[0]
        assert wire[p + 1:p + 3] == b"\x03\x03", "bad record version at %d: %r" % (
            p, bytes(wire[p:p + 5]))
        assert len(wire) - p - 5 >= n, "a partial record at the end (%d of %d bytes)" % (
            len(wire) - p - 5, n)
        out.append((typ, n))
        p += 5 + n
    return out


# ---------------------------------------------------------------- websockets sessions


async def _ws_sizes(url, ctx, sizes, seed):
    """Echo one message of each size, in turn, each back byte-exact; close
    with 1000. Returns (client local port, TLS version, cipher)."""
    import websockets

    async with websockets.connect(url, ssl=ctx, server_hostname="localhost", compression=None,
                                  max_size=None, ping_interval=None, open_timeout=30,
                                  close_timeout=10) as ws:
        port = ws.transport.get_extra_info("sockname")[1]
        tls = ws.transport.get_extra_info("ssl_object")
        for i, n in enumerate(sizes):
            data = random_bytes(n, seed + i)
            await ws.send(data)
            got = bytearray()
            while len(got) < n:
                msg = await asyncio.wait_for(ws.recv(), 60)
                assert isinstance(msg, bytes), "a text frame came back"
                got += msg
            assert_same(bytes(got), data, "echo of a %d-byte message" % n)
        return port, tls.version(), tls.cipher()[0]


def ws_sizes(gw, ctx, sizes, seed=1):
    return asyncio.run(_ws_sizes("wss://%s/" % gw.listen, ctx, sizes, seed))


# ---------------------------------------------------------------- 1. echo


ECHO_SIZES = [0, 1, 100, 16383, 16384, 16385, 100000, 5 * MIB]


def test_echo_through_offload(gw, echo, pki, ctx):
    """Messages of 0 to 5 MiB (around the 16 KiB record size) echoed one
    after the other through an offloaded session, byte-exact; the access
    line counts every byte; one connection taken, none left."""
    start(gw, pki, echo.addr)
    assert offload_counts(gw) == (0, 0)
    port, version, _ = ws_sizes(gw, ctx, ECHO_SIZES)
    assert version == "TLSv1.3"
    total = sum(ECHO_SIZES)
    rec = access_of(gw, port)
    assert (rec["status"], rec["up"], rec["down"], rec["close"]) == (101, total, total, 1000), rec
    assert offload_counts(gw) == (1, 0), "the TLS 1.3 session was not taken over"
    assert echo.wait_connections(1).received == total


# ---------------------------------------------------------------- 2. suites


@pytest.mark.parametrize("suite", SUITES)
def test_each_tls13_suite(gw, echo, pki, ctx, suite):
    """wsgate allows one suite ([tls] ciphersuites), so the client uses it."""
    start(gw, pki, echo.addr, tls={"ciphersuites": suite})
    sizes = [1, 16384, 16385, 70000]
    port, version, cipher = ws_sizes(gw, ctx, sizes, seed=20)
    assert (version, cipher) == ("TLSv1.3", suite)
    rec = access_of(gw, port)
    assert (rec["up"], rec["down"], rec["close"]) == (sum(sizes), sum(sizes), 1000), rec
    assert offload_counts(gw) == (1, 0)


# ---------------------------------------------------------------- 3, 4. left to OpenSSL


def test_record_offload_off(gw, echo, pki, ctx):
    """record_offload = off: OpenSSL keeps the records; nothing is counted."""
    start(gw, pki, echo.addr, tls={"record_offload": "off"})
    sizes = [1, 16385, 300000]
    port, version, _ = ws_sizes(gw, ctx, sizes, seed=30)
    assert version == "TLSv1.3"
    rec = access_of(gw, port)
    assert (rec["up"], rec["down"], rec["close"]) == (sum(sizes), sum(sizes), 1000), rec
    assert offload_counts(gw) == (0, 0), "record_offload = off still counted"


def test_tls12_left_to_openssl(gw, echo, pki):
    """A TLS 1.2 session is looked at and left to OpenSSL."""
    start(gw, pki, echo.addr)
    sizes = [1, 16385, 300000]
    port, version, _ = ws_sizes(gw, client_context(pki.ca_, max_version=ssl.TLSVersion.TLSv1_2),
                                sizes, seed=40)
    assert version == "TLSv1.2"
    rec = access_of(gw, port)
    assert (rec["up"], rec["down"], rec["close"]) == (sum(sizes), sum(sizes), 1000), rec
    assert offload_counts(gw) == (0, 1), "a TLS 1.2 session must stay with OpenSSL"


# ---------------------------------------------------------------- 5. KeyUpdate


KU_RECEIVED = re.compile(r"^<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate\n\s+(.*)$",
                         re.M)
KU_SENT = re.compile(r"^>>> TLS 1\.3, Handshake \[length 0005\], KeyUpdate\n\s+(.*)$", re.M)


class SClient:
    """`openssl s_client -tls1_3 -msg` driven through stdin: its stdout
    (records both ways, and what wsgate sent) and stderr are collected."""

    def __init__(self, gw):
        self.p = subprocess.Popen([OPENSSL, "s_client", "-connect", "%s:%d" % (gw.host, gw.port),
                                   "-servername", "localhost", "-tls1_3", "-quiet",
                                   "-no_ign_eof", "-msg"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.out, self.err = bytearray(), bytearray()
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                        for src, dst in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.readers:
            t.start()

    def _pump(self, src, dst):
        for chunk in iter(lambda: src.read1(65536), b""):
            with self.lock:
                dst.extend(chunk)

    def text(self):
        with self.lock:
            return self.out.decode("latin-1")

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def wait_out(self, needle, count=1, after=0, what=None):
        def have():
            with self.lock:
                return bytes(self.out[after:]).count(needle) >= count
        wait_until(have, 15, what=(what or "%r in s_client's output" % needle)
                   + "; s_client stderr: %r" % bytes(self.err[-400:]))

    def key_update(self, letter, n):
        """Send a KeyUpdate (s_client command k or K) and wait until s_client
        says it sent it (the n-th)."""
        self.write(letter + b"\n")
        wait_until(lambda: self.err.count(b"KEYUPDATE") >= n, 15, what="s_client KEYUPDATE %d" % n)
        wait_until(lambda: len(KU_SENT.findall(self.text())) >= n, 15,
                   what="s_client's KeyUpdate record %d in -msg" % n)

    def echo(self, payload):
        """A masked frame out; wait for wsgate's frame with it in the output.
        Returns the output offset of the echoed frame."""
        mark = len(self.out)
        self.write(build_frame(OP_BINARY, payload, mask_key=b"\x11\x22\x33\x44"))
        server_frame = bytes([0x82, len(payload)]) + payload
        self.wait_out(server_frame, after=mark, what="the echo of %r" % payload)
        with self.lock:
            return bytes(self.out).index(server_frame, mark)

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            rc = self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        for t in self.readers:
            t.join(5)
        return rc


def test_key_update_both_kinds(gw, echo, pki):
    """s_client sends KeyUpdate update_not_requested (k), then
    update_requested (K), each followed by echoes. wsgate must switch its
    read key both times, answer only K with a KeyUpdate of its own
    (update_not_requested, RFC 8446 4.6.3), sent before its next record,
    and seal what follows with its next key."""
    start(gw, pki, echo.addr)
    sc = SClient(gw)
    try:
        key = new_key()
        sc.write(make_request("/", key=key))
        sc.wait_out(b"HTTP/1.1 101 Switching Protocols", what="the 101 through s_client")
        sc.wait_out(accept_key(key).encode())
        sc.echo(b"first")
        # k: update_not_requested - wsgate switches its read key, sends none
        sc.key_update(b"k", 1)
        sc.echo(b"after k")
        sc.echo(b"after k again")
        text = sc.text()
        assert KU_SENT.findall(text) == ["18 00 00 01 00"], "s_client did not send k"
        assert KU_RECEIVED.findall(text) == [], "wsgate answered update_not_requested" \
            " with a KeyUpdate"
        # K: update_requested - wsgate sends its KeyUpdate before its next record
        mark = len(text)
        sc.key_update(b"K", 2)
        at = sc.echo(b"after K")
        sc.echo(b"after K again")
        sc.echo(b"after K thrice")
        text = sc.text()
        assert KU_SENT.findall(text) == ["18 00 00 01 00", "18 00 00 01 01"], text[-3000:]
        got = [(m.start(), m.group(1)) for m in KU_RECEIVED.finditer(text)]
        assert len(got) == 1, "expected exactly one KeyUpdate from wsgate, got %d:\n%s" % (
            len(got), text[mark:][-3000:])
        pos, body = got[0]
        assert body == "18 00 00 01 00", \
            "wsgate's KeyUpdate must be update_not_requested: %r" % body
        assert mark < pos < at, "wsgate's KeyUpdate is not between the K and the echo after it"
    finally:
        rc = sc.close()
    assert rc == 0, "s_client exited %d: %r" % (rc, bytes(sc.err[-600:]))
    got = b"".join([b"first", b"after k", b"after k again", b"after K", b"after K again",
                    b"after K thrice"])
    assert echo.wait_connections(1).received == len(got)
    assert offload_counts(gw) == (1, 0)


# ---------------------------------------------------------------- 6. bad records


def bad_record_case(gw, ctx, make_bad, expect_reason):
    """Upgrade, echo a frame, then send make_bad(client) (one TCP write);
    expect wsgate's alert (an SSLError with expect_reason), then EOF."""
    c = raw_tls(gw, ctx)
    c.upgrade("/")
    payload = random_bytes(3000, 61)
    c.send_frame(OP_BINARY, payload)
    assert_same(c.read_data(len(payload)), payload, "echo before the bad record")
    t = c.sock
    assert not t.plain and not c.buf
    mark = len(t.wire)
    t.send_raw(make_bad(t))
    with pytest.raises(ssl.SSLError) as ei:
        c.read_data(1)
    assert expect_reason in str(ei.value), "expected %s, got %r" % (expect_reason, ei.value)
    t.read_wire_until_eof()
    recs = records(t.wire[mark:])
    assert recs == [(0x17, ALERT_RECORD_LEN - 5)], "wsgate sent %r after the bad record," \
        " not one alert record" % recs
    return c


BAD_HEADERS = {
    "handshake-type": (lambda t: b"\x16\x03\x03\x00\x20" + bytes(32),
                       "SSLV3_ALERT_UNEXPECTED_MESSAGE"),
    "overflow-header-only": (lambda t: b"\x17\x03\x03\x42\x00", "TLSV1_ALERT_RECORD_OVERFLOW"),
    "too-short": (lambda t: b"\x17\x03\x03\x00\x10" + bytes(16), "TLSV1_ALERT_DECODE_ERROR"),
}


def flipped_tag(t):
    """A record whose last byte (the tag's) is flipped."""
    bad = bytearray(t.seal(build_frame(OP_BINARY, b"never delivered")))
    bad[-1] ^= 0x01
    return bytes(bad)


@pytest.mark.parametrize("case", ["bad-tag"] + list(BAD_HEADERS))
def test_bad_record_gets_alert(gw, backends, pki, ctx, case):
    """After an echo, a bad record: its tag flipped (bad_record_mac), outer
    type handshake (unexpected_message), a header announcing 0x4200 bytes
    and nothing more (record_overflow, without waiting for the body), a
    length under 17 (decode_error). wsgate sends that one alert record,
    closes TCP, and logs a read error."""
    echo = backends.custom(harness.echo_handler, keep_data=True)
    start(gw, pki, echo.addr)
    make, reason = (flipped_tag, "SSLV3_ALERT_BAD_RECORD_MAC") if case == "bad-tag" \
        else BAD_HEADERS[case]
    c = bad_record_case(gw, ctx, make, reason)
    rec = access_of(gw, c.sock.getsockname()[1])
    assert rec["up"] == 3000 and rec["down"] == 3000, rec
    assert (rec["close"], rec["reason"]) == (0, "client read error: Protocol error"), rec["line"]
    be = echo.wait_connections(1)
    assert be.done.wait(10), "wsgate did not close the backend connection"
    assert be.data == random_bytes(3000, 61)
    assert offload_counts(gw) == (1, 0)


def test_good_record_then_bad_tag_in_one_write(gw, backends, pki, ctx):
    """One TCP write: a good record with a frame, then a record with its tag
    flipped. The good record's frame is relayed to the backend whole, then
    wsgate sends bad_record_mac and closes. Both records come in one read,
    and the failure is acted on in the same turn of the event loop (the
    plaintext before the bad record first, the failure next: tlsrec_open),
    so the backend's echo is never read (access down=0) and the client gets
    the alert record and nothing else."""
    echo = backends.custom(harness.echo_handler, keep_data=True)
    start(gw, pki, echo.addr)
    c = raw_tls(gw, ctx)
    c.upgrade("/")
    t = c.sock
    mark = len(t.wire)
    payload = random_bytes(5000, 62)
    good = t.seal(build_frame(OP_BINARY, payload))
    assert len(records(good)) == 1
    t.send_raw(good + flipped_tag(t))
    with pytest.raises(ssl.SSLError) as ei:
        c.read_data(len(payload))
    assert "SSLV3_ALERT_BAD_RECORD_MAC" in str(ei.value), ei.value
    assert not t.plain and not c.buf, "data before the alert: %r" % bytes(t.plain or c.buf)[:100]
    t.read_wire_until_eof()
    assert records(t.wire[mark:]) == [(0x17, ALERT_RECORD_LEN - 5)], records(t.wire[mark:])
    rec = access_of(gw, t.getsockname()[1])
    assert (rec["up"], rec["down"], rec["close"]) == (5000, 0, 0), rec
    assert rec["reason"] == "client read error: Protocol error", rec["line"]
    be = echo.wait_connections(1)
    assert be.done.wait(10), "wsgate did not close the backend connection"
    assert be.data == payload, "the good record's frame was not relayed whole"
    assert offload_counts(gw) == (1, 0)


# ---------------------------------------------------------------- 7. small buffers


def test_small_buffer_reads_one_record_at_a_time(gw, echo, pki, ctx):
    """buffer_size at its minimum (4k, wsgate.ini(5)): every read is smaller
    than two records, so records are read and opened one at a time and a
    16 KiB record's plaintext is handed out in pieces."""
    start(gw, pki, echo.addr, gateway={"buffer_size": "4k"})
    data = random_bytes(MIB, 70)
    messages = [data[:MIB // 2], data[MIB // 2:MIB // 2 + 1], data[MIB // 2 + 1:]]
    got, info = wss_echo(gw, messages, ctx, io_timeout=30)
    assert_same(got, data, "1 MiB echoed with buffer_size 4k")
    assert info["version"] == "TLSv1.3"
    assert echo.wait_connections(1).received == MIB
    assert offload_counts(gw) == (1, 0)


# ---------------------------------------------------------------- 8. backpressure


def test_client_stalls_while_backend_sends_8mib(gw, backends, pki, ctx):
    """The backend sends 8 MiB (bytes i % 251) at once; the client reads
    nothing for a while and has a 4 KiB receive buffer, so wsgate's socket
    takes only part of what it offers (records cut mid-way) and it holds
    data (the buffered-bytes gauge). Then the client reads: every byte
    arrives, in order, each record whole (the SSLObject opens them)."""
    total = 8 * MIB
    data = pattern(total)
    src = backends.sender(data)
    start(gw, pki, src.addr)
    c = raw_tls(gw, ctx, rcvbuf=4096)
    c.upgrade("/")
    src.wait_connections(1)
    m = lambda: scrape(gw, host="127.0.0.1", port=gw.admin_port).value(  # noqa: E731
        "wsgate_buffered_bytes", route="e", direction="down")
    wait_until(lambda: m() > 0, 15, what="wsgate to hold bytes for the stalled client")
    time.sleep(1.0)  # the client keeps not reading
    assert m() > 0
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MIB)  # now read at speed
    got = c.read_data(total, timeout=60)
    assert_same(got, data, "8 MiB after the stall")
    port = c.sock.getsockname()[1]
    f, before = c.next_close()  # the backend's EOF, after the last byte
    assert before == [] and f.close_code == 1000, (f, before)
    c.finish_close(f)
    rec = access_of(gw, port)
    assert (rec["up"], rec["down"], rec["close"], rec["by"]) == (0, total, 1000, "backend"), rec
    assert offload_counts(gw) == (1, 0)


# ---------------------------------------------------------------- 9. slow drip


def test_records_dripped_one_byte_at_a_time(gw, echo, pki, ctx):
    """A 20 KiB frame (two records) reaches wsgate one byte per TCP write,
    with pauses inside the header, mid-record and before the tag's last
    byte: partial records wait, whole ones open."""
    start(gw, pki, echo.addr)
    c = raw_tls(gw, ctx)
    c.upgrade("/")
    t = c.sock
    port = t.getsockname()[1]
    payload = random_bytes(20 * 1024, 90)
    wire = t.seal(build_frame(OP_BINARY, payload))
    recs = records(wire)
    assert len(recs) == 2, recs
    pauses, p = set(), 0
    for _, n in recs:
        pauses.update({p + 1, p + 3, p + 5, p + 5 + n // 2, p + 5 + n - 1})
        p += 5 + n
    for i in range(len(wire)):
        if i in pauses:
            time.sleep(0.02)
        t.send_raw(wire[i:i + 1])
    assert_same(c.read_data(len(payload)), payload, "echo of the dripped frame")
    tail = random_bytes(1000, 91)
    c.send_frame(OP_BINARY, tail)
    assert_same(c.read_data(len(tail)), tail, "echo after the drip")
    c.send_close(1000)
    c.expect_close(1000)
    rec = access_of(gw, port)
    assert (rec["up"], rec["down"], rec["close"]) == (20 * 1024 + 1000, 20 * 1024 + 1000, 1000), rec
    assert offload_counts(gw) == (1, 0)


# ---------------------------------------------------------------- 10. close_notify


def test_close_frame_then_close_notify(gw, echo, pki, ctx):
    """The client sends a close frame and its close_notify in one write:
    wsgate answers with its close frame (1000) and its own close_notify,
    then closes TCP; nothing else comes."""
    start(gw, pki, echo.addr)
    c = raw_tls(gw, ctx)
    c.upgrade("/")
    t = c.sock
    c.send_frame(OP_BINARY, b"hello")
    assert c.read_data(5) == b"hello"
    mark = len(t.wire)
    out = t.seal(build_frame(OP_CLOSE, harness.close_payload(1000)))
    with pytest.raises(ssl.SSLWantReadError):
        t.obj.unwrap()  # close_notify out, not received yet
    notify = t.out.read()
    assert records(notify) == [(0x17, ALERT_RECORD_LEN - 5)]
    t.send_raw(out + notify)
    f = c.recv_frame()
    assert (f.opcode, f.payload) == (OP_CLOSE, b"\x03\xe8"), f
    assert not c.buf, "data after the close frame: %r" % bytes(c.buf)
    assert c.sock.recv(1) == b"" and t.tls_end == "close_notify", \
        "wsgate did not end TLS with close_notify (%r)" % t.tls_end
    t.read_wire_until_eof()
    assert records(t.wire[mark:]) == [(0x17, 4 + 1 + 16), (0x17, ALERT_RECORD_LEN - 5)], \
        records(t.wire[mark:])
    rec = access_of(gw, t.getsockname()[1])
    assert (rec["up"], rec["down"], rec["close"]) == (5, 5, 1000), rec
    assert offload_counts(gw) == (1, 0)


# ---------------------------------------------------------------- 11. idle memory


IDLE = 1000
IDLE_BOUND_KIB = 12  # what an idle wss session may cost beyond a plain ws one


def hold_handler(b, rec):
    """A backend that accepts and keeps the connection (closed at teardown)."""


def open_idle(gw, n, ctx):
    """n sessions upgraded (101 read on each) and left idle; ctx None for
    plain ws. Returns the client sockets."""
    socks = []
    for _ in range(n):
        s = socket.create_connection((gw.host, gw.port), timeout=20)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        key = new_key()
        s.sendall(make_request("/", key=key))
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            assert data, "EOF before the 101 (%d sessions up)" % len(socks)
            head += data
        assert head.startswith(b"HTTP/1.1 101 "), head[:200]
        assert accept_key(key).encode() in head, head
        socks.append(s)
    return socks


def idle_cost(gw, backends, pki, tls, ctx):
    """Bytes of wsgate's VmRSS per idle session: IDLE sessions opened on a
    fresh gateway (workers = 1, so one thread's heap), after a few sessions
    opened and closed (warm caches, pools, per-thread cipher contexts)."""
    hold = backends.custom(hold_handler)
    start(gw, pki, hold.addr, tls=tls, plain=ctx is None, gateway={"workers": "1"})
    warm = open_idle(gw, 20, ctx)
    for s in warm:
        s.close()
    wait_until(lambda: gw.stderr_text().count(" access: ") >= 20, 15,
               what="warm-up sessions to end")
    before = gw.rss_kib()
    socks = open_idle(gw, IDLE, ctx)
    hold.wait_connections(20 + IDLE)
    after = gw.rss_kib()
    counts = offload_counts(gw)
    for s in socks:
        s.close()
    return (after - before) * 1024 / IDLE, counts


@pytest.fixture
def nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8 * IDLE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.deadline(120)
def test_idle_wss_session_memory(gateway_factory, backends, pki, ctx, asan, nofile):
    """1000 idle sessions each on three gateways with the same settings:
    plain ws, wss offloaded, wss with record_offload = off. An offloaded
    idle wss session holds no SSL: it may cost at most 12 KiB more than a
    ws one; the same measure with OpenSSL's SSL kept must exceed that.
    Under AddressSanitizer the numbers are printed, not bounded."""
    plain, counts = idle_cost(gateway_factory(), backends, pki, None, None)
    assert counts == (0, 0)
    wss, counts = idle_cost(gateway_factory(), backends, pki, None, ctx)
    assert counts == (20 + IDLE, 0), counts
    kept, counts = idle_cost(gateway_factory(), backends, pki, {"record_offload": "off"}, ctx)
    assert counts == (0, 0), counts
    print("idle session: plain ws %.0f B, wss offloaded %.0f B (+%.0f), wss with OpenSSL %.0f B"
          " (+%.0f)" % (plain, wss, wss - plain, kept, kept - plain))
    if asan:
        return  # shadow memory and quarantine: RSS says nothing under ASan
    assert wss - plain <= IDLE_BOUND_KIB * 1024, \
        "an idle offloaded wss session costs %.0f B more than a ws one" % (wss - plain)
    # the same measure sees OpenSSL's idle SSL: it can fail
    assert kept - plain > IDLE_BOUND_KIB * 1024, \
        "with record_offload = off an idle wss session costs only %.0f B more" % (kept - plain)


# ---------------------------------------------------------------- 12. backend TLS


def test_backend_tls_records_taken_over(gw, pki):
    """backend_tls to `openssl s_server -tls1_3`: wsgate's side of the
    backend connection is taken over too (the client's is plain ws, so
    taken == 1). The server's tickets pass; the server asks for a KeyUpdate
    (K): its next data is read with its new key, and wsgate's own KeyUpdate
    (update_not_requested) reaches it before wsgate's next data."""
    port = harness.free_port()
    srv = subprocess.Popen([OPENSSL, "s_server", "-accept", "127.0.0.1:%d" % port, "-naccept", "1",
                            "-cert", pki.srv.cert, "-key", pki.srv.key, "-tls1_3", "-msg"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    out = bytearray()

    def pump():
        while True:
            b = srv.stdout.read1(65536)
            if not b:
                return
            out.extend(b)
    threading.Thread(target=pump, daemon=True).start()
    try:
        wait_until(lambda: b"ACCEPT" in out, 10, what="s_server up")
        gw.admin_port = harness.free_port()
        gw.start({"gateway": {"listen": [gw.listen, "127.0.0.1:%d admin" % gw.admin_port],
                              "metrics_path": "/metrics", "ping_interval": "0"},
                  "route:e": route("localhost:%d" % port, "/", backend_tls="on",
                                   backend_ca=pki.ca_.cert)})
        c = gw.ws("/")
        c.send_frame(OP_BINARY, b"hello\n")
        wait_until(lambda: b"hello\n" in out, 10, what="s_server got hello")
        assert offload_counts(gw) == (1, 0)
        mark = len(out)
        srv.stdin.write(b"K\n")
        srv.stdin.flush()
        wait_until(lambda: b"KeyUpdate" in out[mark:], 10, what="s_server sent its KeyUpdate")
        srv.stdin.write(b"to the client\n")
        srv.stdin.flush()
        assert c.read_data(14) == b"to the client\n"
        mark = len(out)
        c.send_frame(OP_BINARY, b"again\n")
        wait_until(lambda: b"again\n" in out[mark:], 10, what="s_server got again")
        got = out[mark:].decode("latin1")
        # wsgate's KeyUpdate, received by the server before the data
        m = re.search(r"<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate\s+18 00 00 01 00", got)
        assert m and m.start() < got.index("again\n"), got
        assert offload_counts(gw) == (1, 0)
        c.close()
    finally:
        srv.kill()
        srv.wait()
