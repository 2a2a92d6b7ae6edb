"""harness.py - helpers for the wsgate integration suite.

Everything the tests share lives here, written once:
  * Gateway      - writes an INI file, starts the real wsgate binary, waits for
                   its listener, stops it and checks exit status and sanitizer
                   output;
  * Backend      - in-process TCP servers (echo, sink, sender, reset, greeter)
                   on free loopback ports, one thread per connection;
  * Blackhole    - a listener whose accept queue is full, so connects hang;
  * RawClient    - a byte-level WebSocket client: hand-made upgrade requests,
                   masked frames of any shape (including malformed ones),
                   server frame parsing and HTTP response reading;
  * small utilities: free ports, polling, payload generators.

Nothing here asserts timing tighter than "within N seconds"; N is generous
because the suite may run under AddressSanitizer on a 2-core machine.
"""

import base64
import hashlib
import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

# Default upper bound for "this must happen": generous on purpose.
DEFAULT_TIMEOUT = 10.0


# ---------------------------------------------------------------- utilities


# Ports for wsgate's listeners come from below the kernel's ephemeral range,
# so a backend bound to port 0 or an outgoing connection can never take a
# port between the moment it is picked and the moment wsgate binds it.
_PORT_LOW, _PORT_HIGH = 20000, 32000


def free_port(host="127.0.0.1"):
    """A port outside the ephemeral range that was free on host a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = random.randint(_PORT_LOW, _PORT_HIGH)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in %d-%d" % (_PORT_LOW, _PORT_HIGH))


def has_ipv6_loopback():
    """True if the kernel has ::1 (a socket can bind it)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def refused_addr():
    """host:port of a loopback port with nothing listening on it."""
    return "127.0.0.1:%d" % free_port()


def wait_until(pred, timeout=DEFAULT_TIMEOUT, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value (returned) or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_log(gw, needle, count=1, after=0, timeout=15.0):
    """Wait until `needle` (a str, or a compiled regex) occurs `count` times in
    the gateway's stderr past offset `after`; returns the text past `after`.
    wsgate's log lines are written by its logger thread, so one may land
    after the response a test has already seen: wait for it, never read the
    log once."""
    def found():
        text = gw.stderr_text()[after:]
        n = text.count(needle) if isinstance(needle, str) else len(needle.findall(text))
        return text if n >= count else None
    try:
        return wait_until(found, timeout, interval=0.05, what="log %r x%d" % (needle, count))
    except AssertionError:
        raise AssertionError("wsgate did not log %r %d time(s) within %ss; stderr since then:\n%s"
                             % (needle, count, timeout, gw.stderr_text()[after:][-6000:])) from None


def accept_key(key):
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def mask_bytes(data, key):
    """XOR data with the 4-byte key (fast for large payloads)."""
    n = len(data)
    if n == 0:
        return b""
    k = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def random_bytes(n, seed=None):
    if seed is None:
        return os.urandom(n)
    return random.Random(seed).randbytes(n)


_UTF8_POOL = ["a", "Z", "0", " ", "\u00e9", "\u00df", "\u20ac", "\u4e2d", "\uffff",
              "\U0001d11e", "\U0001f600", "\U0010ffff", "\u07ff", "\u0800"]


def random_utf8(n, seed=None):
    """Valid UTF-8 of exactly n bytes mixing 1- to 4-byte sequences."""
    rnd = random.Random(seed)
    out = []
    total = 0
    while total < n - 4:
        chunk = "".join(rnd.choices(_UTF8_POOL, k=min(4096, (n - total) // 4 + 1)))
        enc = chunk.encode()
        if total + len(enc) > n - 4:
            # keep only whole characters that fit
            cut = n - 4 - total
            enc = enc[:cut].decode("utf-8", "ignore").encode()
            if not enc:
                break
        out.append(enc)
        total += len(enc)
    out.append(b"a" * (n - total))
    data = b"".join(out)
    assert len(data) == n
    data.decode("utf-8")
    return data


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None,
                length=None, length_form=None):
    """Bytes of one client frame.

    length overrides the advertised payload length (the payload bytes are
    still appended as given); length_form forces the 7, 16 or 64-bit length
    encoding. mask=False builds an (illegal) unmasked client frame.
    """
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if length_form is None:
        length_form = 7 if n < 126 else (16 if n < 65536 else 64)
    if length_form == 7:
        head = bytes([b0, mbit | n])
    elif length_form == 16:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def build_message(opcode, payload, fragments=1):
    """A data message split into `fragments` frames (fragments >= 1)."""
    if isinstance(payload, str):
        payload = payload.encode()
    if fragments <= 1:
        return build_frame(opcode, payload)
    step = max(1, -(-len(payload) // fragments))
    parts = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
    while len(parts) < fragments:
        parts.append(b"")
    out = []
    for i, part in enumerate(parts):
        op = opcode if i == 0 else OP_CONT
        out.append(build_frame(op, part, fin=(i == len(parts) - 1)))
    return b"".join(out)


class Frame:
    """One parsed server frame."""

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:] if self.opcode == OP_CLOSE else b""

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return "Frame(fin=%d rsv=%d op=0x%x masked=%d len=%d %r)" % (
            self.fin, self.rsv, self.opcode, self.masked, len(self.payload), p)


class HttpResponse:
    def __init__(self, raw_head, body):
        self.raw = raw_head
        lines = raw_head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), "bad status line %r" % lines[0]
        self.version = parts[0]
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            assert sep, "bad header line %r in %r" % (line, raw_head)
            self.headers.append((name.strip().lower(), value.strip()))
        self.body = body

    def get_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    def get(self, name, default=None):
        vals = self.get_all(name)
        return vals[0] if vals else default

    def tokens(self, name):
        """Comma-separated tokens of a header, lower-cased."""
        out = []
        for v in self.get_all(name):
            out.extend(t.strip().lower() for t in v.split(",") if t.strip())
        return out

    def __repr__(self):
        return "HttpResponse(%r, body=%r)" % (self.raw, self.body)


def make_request(path="/", host="localhost", key=None, version="13",
                 upgrade="websocket", connection="Upgrade", origin=None,
                 protocols=None, method="GET", http_version="HTTP/1.1",
                 extra_headers=(), omit=()):
    """Bytes of an upgrade request. Any standard header can be left out by
    name in omit (case-insensitive), or replaced through extra_headers."""
    omit = {o.lower() for o in omit}
    key = new_key() if key is None else key
    hdrs = [("Host", host), ("Upgrade", upgrade), ("Connection", connection),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
    if origin is not None:
        hdrs.append(("Origin", origin))
    if protocols is not None:
        hdrs.append(("Sec-WebSocket-Protocol", protocols))
    lines = ["%s %s %s" % (method, path, http_version)]
    lines += ["%s: %s" % (n, v) for n, v in hdrs if n.lower() not in omit and v is not None]
    lines += ["%s: %s" % (n, v) for n, v in extra_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---------------------------------------------------------------- raw client


class ConnectionClosed(Exception):
    """The peer closed TCP while a frame or response was expected."""


class RawClient:
    """A byte-level WebSocket client over one blocking TCP socket."""

    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.key = None
        self.response = None
        self.controls = []  # control frames seen while reading data
        self.close_sent = False

    # -- low level
    def send(self, data):
        self.sock.sendall(data)

    def send_quietly(self, data):
        """Send, ignoring a peer that already closed (for error cases)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def send_chunked(self, data, chunk):
        view = memoryview(data)
        for i in range(0, len(view), chunk):
            self.sock.sendall(view[i:i + chunk])

    def send_in_background(self, data, chunk=None):
        """Send data from a thread (so the caller can read meanwhile).
        Returns the thread; join_sender() re-raises its error."""
        def run():
            try:
                if chunk:
                    self.send_chunked(data, chunk)
                else:
                    self.sock.sendall(data)
            except BaseException as e:  # noqa: B902 - reported by join_sender
                t.error = e
        t = threading.Thread(target=run, daemon=True)
        t.error = None
        t.start()
        return t

    @staticmethod
    def join_sender(t, timeout=60):
        t.join(timeout)
        assert not t.is_alive(), "sender thread still blocked after %ss" % timeout
        if t.error:
            raise t.error

    def _fill(self, deadline):
        """Read more bytes into buf; False on EOF (or reset)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from wsgate in time (have %d bytes: %r)"
                               % (len(self.buf), bytes(self.buf[:64])))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("no data from wsgate in time (have %d bytes: %r)"
                               % (len(self.buf), bytes(self.buf[:64]))) from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_exact(self, n, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionClosed("connection closed after %d of %d bytes: %r"
                                       % (len(self.buf), n, bytes(self.buf[:64])))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until_eof(self, timeout=DEFAULT_TIMEOUT):
        """Everything until the server closes TCP; fails if it does not."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def expect_eof(self, timeout=DEFAULT_TIMEOUT):
        """Assert the server closes TCP and sends nothing more; then close
        our end too, as a real client does (wsgate lingers until it does)."""
        rest = self.read_until_eof(timeout)
        self.close()
        assert rest == b"", "unexpected bytes before TCP close: %r" % rest[:200]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Drop TCP with a reset (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    # -- HTTP
    def read_http_response(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            idx = self.buf.find(b"\r\n\r\n")
            if idx >= 0:
                break
            if len(self.buf) > 65536:
                raise AssertionError("response head too long: %r" % bytes(self.buf[:200]))
            if not self._fill(deadline):
                raise ConnectionClosed("closed before a complete response head: %r"
                                       % bytes(self.buf))
        head = bytes(self.buf[:idx])
        del self.buf[:idx + 4]
        resp = HttpResponse(head, b"")
        if resp.status != 101:
            clen = resp.get("content-length")
            if clen is not None:
                resp.body = self.read_exact(int(clen), timeout=max(0.1, deadline - time.monotonic()))
            else:
                resp.body = self.read_until_eof(timeout=max(0.1, deadline - time.monotonic()))
        self.response = resp
        return resp

    def handshake(self, path="/", extra=b"", **kw):
        """Send an upgrade request (plus extra bytes in the same write) and
        read the response head."""
        if kw.get("key") is None:
            kw["key"] = new_key()
        self.key = kw["key"]
        self.send(make_request(path, **kw) + extra)
        return self.read_http_response()

    def upgrade(self, path="/", **kw):
        """handshake() that must succeed with a correct 101."""
        resp = self.handshake(path, **kw)
        assert resp.status == 101, "expected 101, got %r" % resp
        assert resp.get("sec-websocket-accept") == accept_key(self.key), resp
        return resp

    # -- frames
    def send_frame(self, opcode, payload=b"", **kw):
        if opcode == OP_CLOSE:
            self.close_sent = True
        self.send(build_frame(opcode, payload, **kw))

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        left = lambda: max(0.001, deadline - time.monotonic())  # noqa: E731
        head = self.read_exact(2, left())
        fin, rsv, opcode = head[0] >> 7, (head[0] >> 4) & 7, head[0] & 0xF
        masked, n = head[1] >> 7, head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, left()))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, left()))[0]
            assert n < (1 << 40), "absurd frame length %d" % n
        key = self.read_exact(4, left()) if masked else None
        payload = self.read_exact(n, left())
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(fin, rsv, opcode, masked, payload)

    def read_data(self, n, timeout=DEFAULT_TIMEOUT, opcode=OP_BINARY, decode=None,
                  auto_pong=True, at_least=False):
        """Concatenate payloads of data frames until n bytes arrived.

        Frames must have the given opcode and be well-formed server frames;
        decode (e.g. base64.b64decode) is applied to each frame's payload.
        Pings are answered; control frames are kept in self.controls. A close
        frame before n bytes fails with what had arrived. More than n bytes
        is an error unless at_least (for endless streams)."""
        deadline = time.monotonic() + timeout
        got = bytearray()
        while len(got) < n:
            try:
                f = self.recv_frame(timeout=max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                raise TimeoutError("received %d of %d bytes in %ss" % (len(got), n, timeout)) from None
            except ConnectionClosed as e:
                raise ConnectionClosed("TCP closed after %d of %d bytes (%s)" % (len(got), n, e)) from None
            assert not f.masked, "server frame is masked: %r" % f
            assert f.rsv == 0, "server frame has RSV bits: %r" % f
            if f.opcode == OP_CLOSE:
                raise AssertionError("close frame (code %r reason %r) after %d of %d bytes"
                                     % (f.close_code, f.close_reason, len(got), n))
            if f.opcode in (OP_PING, OP_PONG):
                self.controls.append(f)
                if f.opcode == OP_PING and auto_pong:
                    self.send_frame(OP_PONG, f.payload)
                continue
            assert f.opcode in (opcode, OP_CONT), "expected opcode %d, got %r" % (opcode, f)
            got += decode(f.payload) if decode else f.payload
        assert at_least or len(got) == n, "received %d bytes, expected %d (extra: %r)" % (
            len(got), n, bytes(got[n:n + 64]))
        return bytes(got)

    def next_close(self, timeout=DEFAULT_TIMEOUT):
        """Read frames until a close frame; return (frame, data frames before)."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            try:
                f = self.recv_frame(timeout=max(0.001, deadline - time.monotonic()))
            except ConnectionClosed:
                raise AssertionError("TCP closed without a close frame; frames before: %r"
                                     % before) from None
            if f.opcode == OP_CLOSE:
                return f, before
            before.append(f)

    def expect_close(self, code, timeout=DEFAULT_TIMEOUT, eof=True):
        """A close frame with this code arrives (data frames before it are
        allowed); then, if eof, finish_close() (answer it, expect TCP to
        close promptly). With eof=False nothing is sent. Returns the frame."""
        f, before = self.next_close(timeout)
        assert not f.masked, "server close frame is masked: %r" % f
        assert f.close_code == code, "expected close %s, got %r (payload %r); frames before: %r" % (
            code, f.close_code, f.payload, before[:5])
        f.close_reason.decode("utf-8")  # the server's reason must be UTF-8
        if eof:
            self.finish_close(f)
        return f

    # After both close frames were exchanged the server must close TCP at
    # once (RFC 6455 7.1.1); a close timer running out is not "at once".
    CLOSE_PROMPTLY = 3.0

    def finish_close(self, f):
        """After the server's close frame f: answer with a close frame if the
        client has not sent one (as RFC 6455 5.5.1 says a client does), then
        expect the server to close TCP promptly."""
        if not self.close_sent:
            self.close_sent = True
            self.send_quietly(build_frame(OP_CLOSE, close_payload(f.close_code)))
        t0 = time.monotonic()
        self.expect_eof()
        waited = time.monotonic() - t0
        assert waited < self.CLOSE_PROMPTLY, (
            "server kept TCP open %.1fs after both close frames (close code %r)"
            % (waited, f.close_code))


def assert_http_error(c, status, resp=None):
    """The response is `status` with Connection: close and a short
    text/plain body, then the server closes TCP."""
    resp = resp or c.read_http_response()
    assert resp.status == status, "expected %d, got %r" % (status, resp)
    assert resp.version == "HTTP/1.1", resp
    assert "close" in resp.tokens("connection"), "no Connection: close in %r" % resp
    assert (resp.get("content-type") or "").startswith("text/plain"), resp
    assert 0 < len(resp.body) <= 1024, "body should be short text: %r" % resp
    assert resp.get("sec-websocket-accept") is None, resp
    c.expect_eof()
    return resp


# ---------------------------------------------------------------- backends


class ConnRecord:
    """What a backend saw on one accepted connection."""

    def __init__(self, sock):
        self.sock = sock
        self.accepted_at = time.monotonic()
        self.received = 0
        self.data = bytearray()
        self.eof_at = None       # monotonic time of EOF/reset from wsgate
        self.reset = False
        self.done = threading.Event()


class Backend:
    """A TCP server on a free loopback port; handler(backend, rec) runs for
    each accepted connection in its own thread."""

    def __init__(self, handler, host="127.0.0.1", keep_data=False, full_for=None):
        """full_for: seconds the listener's accept queue stays full (a
        Blackhole's) before the backend starts accepting: connects made
        meanwhile take at least that long."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.hole = Blackhole() if full_for is not None else None
        self.full_for = full_for
        if self.hole:
            self.lsock = self.hole.lsock
        else:
            self.lsock = socket.socket(family, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind((host, 0))
            self.lsock.listen(512)
        self.port = self.lsock.getsockname()[1]
        self.addr = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (host, self.port)
        self.handler = handler
        self.keep_data = keep_data
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        if self.hole:
            # full_for counts from a connect's SYN being dropped: from when
            # some socket is in SYN-SENT toward this port
            while not syn_sent_to(self.port):
                if self.stopping.wait(0.005):
                    return
            if self.stopping.wait(self.full_for):
                return
        while not self.stopping.is_set():
            r, _, _ = select.select([self.lsock], [], [], 0.05)
            if not r:
                continue
            try:
                sock, peer = self.lsock.accept()
            except OSError:
                continue
            if self.hole and peer in self.hole.filler_addrs:
                sock.close()  # a connection that only filled the queue
                continue
            sock.setblocking(True)
            rec = ConnRecord(sock)
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._run, args=(rec,), daemon=True).start()

    def _run(self, rec):
        try:
            self.handler(self, rec)
        except OSError:
            pass
        finally:
            rec.done.set()

    # helpers for handlers
    def recv_some(self, rec, size=1 << 20):
        """Read once; count; returns b'' on EOF or reset (recorded)."""
        try:
            data = rec.sock.recv(size)
        except ConnectionResetError:
            rec.reset = True
            data = b""
        except OSError:
            data = b""
        if data:
            rec.received += len(data)
            if self.keep_data:
                rec.data += data
        elif rec.eof_at is None:
            rec.eof_at = time.monotonic()
        return data

    def drain_to_eof(self, rec):
        while self.recv_some(rec):
            pass

    @property
    def count(self):
        with self.lock:
            return len(self.conns)

    def total_received(self):
        with self.lock:
            return sum(c.received for c in self.conns)

    def wait_connections(self, n, timeout=DEFAULT_TIMEOUT):
        wait_until(lambda: self.count >= n, timeout, what="%d backend connection(s)" % n)
        with self.lock:
            return self.conns[n - 1]

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.lsock.close()
        if self.hole:
            self.hole.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in I/O
            except OSError:
                pass
            try:
                c.sock.close()
            except OSError:
                pass


def echo_handler(b, rec):
    while True:
        data = b.recv_some(rec)
        if not data:
            break
        rec.sock.sendall(data)
    try:
        rec.sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    rec.sock.close()


def sink_handler(b, rec):
    b.drain_to_eof(rec)
    rec.sock.close()


def sender_handler(data):
    """Send data, then EOF (shutdown of the write side); keep reading until
    wsgate closes so the close is orderly (no reset)."""
    def handler(b, rec):
        rec.sock.sendall(data)
        rec.sock.shutdown(socket.SHUT_WR)
        b.drain_to_eof(rec)
        rec.sock.close()
    return handler


def greeter_handler(greeting):
    """Send greeting, then echo."""
    def handler(b, rec):
        rec.sock.sendall(greeting)
        echo_handler(b, rec)
    return handler


def reset_handler(greeting=b"", after_bytes=1):
    """Send greeting, wait for after_bytes from wsgate, then reset (RST)."""
    def handler(b, rec):
        if greeting:
            rec.sock.sendall(greeting)
        while rec.received < after_bytes:
            if not b.recv_some(rec):
                break
        rec.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rec.sock.close()
    return handler


class Blackhole:
    """A loopback listener with backlog 0 whose accept queue is full: the
    kernel drops further SYNs, so connects to it hang (until wsgate's
    timeout). The queue is filled with connections until a new connect
    does hang, whatever the kernel's exact limit; no kernel takes 64.
    A connect made while it is full completes once the queue has room, at
    the SYN's first retry (the initial RTO, 1 s) or later."""

    FILLERS_MAX = 64

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.fillers = []
        while not self.connect_hangs(0.3):
            assert len(self.fillers) < self.FILLERS_MAX, (
                "a listener with backlog 0 took %d connections" % len(self.fillers))
            self.fillers.append(self._connect())
        self.filler_addrs = {c.getsockname() for c in self.fillers}

    def _connect(self):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        return c

    def connect_hangs(self, wait=1.0):
        """Check that a new connect does not complete within `wait` seconds."""
        c = self._connect()
        try:
            _, w, _ = select.select([], [c], [], wait)
            return not w
        finally:
            c.close()

    def close(self):
        for c in self.fillers:
            c.close()
        self.lsock.close()


# ---------------------------------------------------------------- gateway


def ini_text(config):
    """INI text from {section: {key: value or [values]}}; list values become
    repeated keys."""
    out = []
    for section, keys in config.items():
        out.append("[%s]" % section)
        for k, v in keys.items():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                out.append("%s = %s" % (k, item))
        out.append("")
    return "\n".join(out)


def listening_inodes(port):
    """Inodes of the sockets in LISTEN state on this TCP port (one per
    SO_REUSEPORT worker socket)."""
    suffix = ":%04X" % port
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(suffix) and fields[3] == "0A":
                        out.add(int(fields[9]))
        except FileNotFoundError:
            continue
    return out


def syn_sent_to(port):
    """True if some loopback socket is connecting (SYN-SENT) to this port."""
    suffix = ":%04X" % port
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                if any(fl[2].endswith(suffix) and fl[3] == "02"
                       for fl in (line.split() for line in f)):
                    return True
        except FileNotFoundError:
            continue
    return False


def is_listening(port):
    """True if some socket is in LISTEN state on this TCP port."""
    return bool(listening_inodes(port))


def binary_has_asan(path):
    """True if the binary was built with AddressSanitizer."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


class Gateway:
    """One wsgate process under test."""

    def __init__(self, binary, workdir, host="127.0.0.1"):
        self.binary = binary
        self.workdir = str(workdir)
        self.host = host
        self.port = free_port(host)
        self.proc = None
        self.config_path = None
        self.stderr_path = os.path.join(self.workdir, "wsgate.stderr")
        self.stdout_path = os.path.join(self.workdir, "wsgate.stdout")
        self.clients = []
        self.returncode = None
        self.terminated = False
        os.makedirs(self.workdir, exist_ok=True)

    @property
    def listen(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def url(self, path="/"):
        return "ws://%s%s" % (self.listen, path)

    def write_config(self, config, name="wsgate.ini"):
        """Write config (dict or text) and return its path. A dict gets a
        [gateway] section with this gateway's listen address if it has none."""
        if isinstance(config, dict):
            config = dict(config)
            gw = dict(config.get("gateway", {}))
            gw.setdefault("listen", self.listen)
            gw.setdefault("log_level", os.environ.get("WSGATE_TEST_LOG_LEVEL", "info"))
            config = {"gateway": gw, **{k: v for k, v in config.items() if k != "gateway"}}
            text = ini_text(config)
        else:
            text = config
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _env(self):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        return env

    def start(self, config=None, args=None, wait=True):
        """Start `wsgate -c FILE` (config given) or `wsgate ARGS...`, and wait
        until it listens on self.port."""
        assert self.proc is None, "gateway already started"
        if config is not None:
            self.config_path = self.write_config(config)
            argv = [self.binary, "-c", self.config_path]
        else:
            argv = [self.binary] + list(args)
        self._stderr = open(self.stderr_path, "wb")
        self._stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._stdout,
                                     stderr=self._stderr, env=self._env(), cwd=self.workdir)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not is_listening(self.port):
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("wsgate exited with %d before listening; stderr:\n%s"
                                     % (rc, self.stderr_text()))
            if time.monotonic() > deadline:
                raise AssertionError("wsgate not listening on %d after %ss; stderr:\n%s"
                                     % (self.port, timeout, self.stderr_text()))
            time.sleep(0.02)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        """VmRSS of the wsgate process in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for wsgate")

    def client(self, timeout=DEFAULT_TIMEOUT):
        """A RawClient connected to this gateway (closed at stop())."""
        c = RawClient(self.host, self.port, timeout)
        self.clients.append(c)
        return c

    def ws(self, path="/", **kw):
        """A RawClient that has completed a successful upgrade on path."""
        c = self.client()
        c.upgrade(path, **kw)
        return c

    def terminate(self, sig=signal.SIGTERM):
        """Send sig now (the test watches the shutdown); stop() then only
        waits for the exit and checks it."""
        self.terminated = sig
        self.proc.send_signal(sig)

    def stop(self, timeout=10.0):
        """Close clients, SIGTERM, wait (SIGKILL after timeout). Returns
        (returncode, problems) where problems lists what is wrong."""
        for c in self.clients:
            c.close()
        self.clients = []
        if self.proc is None:
            return None, []
        problems = []
        if self.terminated:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("wsgate did not exit within %ss of %s"
                                % (timeout, signal.Signals(self.terminated).name))
        elif self.proc.poll() is not None:
            problems.append("wsgate died during the test (status %d)" % self.proc.returncode)
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("wsgate did not exit within %ss of SIGTERM" % timeout)
        self.returncode = self.proc.returncode
        if self.returncode != 0 and not problems:
            sig = signal.Signals(self.terminated or signal.SIGTERM).name
            how = ("killed by %s (default action: no handler installed yet?)"
                   % signal.Signals(-self.returncode).name if self.returncode < 0
                   else "exited with status %d" % self.returncode)
            problems.append("wsgate %s after %s" % (how, sig))
        self._stderr.close()
        self._stdout.close()
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                problems.append("sanitizer report %r in stderr" % marker)
        self.proc = None
        return self.returncode, problems


def run_wsgate(binary, args, cwd=None, timeout=30):
    """Run wsgate to completion (for -V, -h, -t ...)."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    return subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, cwd=cwd, env=env, text=True, errors="replace")


def route(backend, path="/", **opts):
    """The keys of a [route:NAME] section."""
    d = {"path": path, "backend": backend}
    d.update(opts)
    return d


def assert_same(got, expected, what="data"):
    """Byte equality with a short report (length, first differing offset)."""
    if got == expected:
        return
    n = min(len(got), len(expected))
    first = next((i for i in range(n) if got[i] != expected[i]), n)
    raise AssertionError("%s differs: got %d bytes, expected %d; first difference at offset %d:"
                         " got %r expected %r" % (what, len(got), len(expected), first,
                                                  bytes(got[first:first + 16]),
                                                  bytes(expected[first:first + 16])))


# ---------------------------------------------------------------- websockets client


async def ws_echo_session(url, messages, subprotocols=None, open_timeout=30, io_timeout=60):
    """With python3-websockets: connect, send each message (bytes = binary,
    str = text), and collect the echoed bytes (binary frames of any
    chunking) until as many bytes came back as were sent. Returns them."""
    import asyncio
    import websockets

    expected = sum(len(m.encode() if isinstance(m, str) else m) for m in messages)
    got = bytearray()
    async with websockets.connect(url, subprotocols=subprotocols, compression=None,
                                  max_size=None, ping_interval=None,
                                  open_timeout=open_timeout, close_timeout=10) as ws:
        async def reader():
            while len(got) < expected:
                msg = await ws.recv()
                assert isinstance(msg, bytes), "expected binary frames, got text %r" % msg[:60]
                got.extend(msg)

        task = asyncio.ensure_future(reader())
        for m in messages:
            await ws.send(m)
        await asyncio.wait_for(task, io_timeout)
    return bytes(got)


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread."""

    def __init__(self, gateway, interval=0.01):
        self.gw = gateway
        self.interval = interval
        self.samples = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_event.is_set():
            try:
                self.samples.append(self.gw.rss_kib())
            except (OSError, AssertionError):
                break
            self.stop_event.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)

    @property
    def max_kib(self):
        return max(self.samples) if self.samples else 0


def send_until_stuck(sock, make_frame, stuck_for=2.0, cap_seconds=120, cap_bytes=2 << 30):
    """Non-blocking sends of frames (make_frame() -> (payload, frame bytes))
    until the socket takes nothing for stuck_for seconds. Returns (payloads
    fully or partly sent, unsent tail of the current frame). A pause that is
    only the machine being slow ends the sending early, never fails: callers
    then wait for the event they check (a gauge, a log line). Sending
    cap_bytes or for cap_seconds without blocking fails: no backpressure."""
    sock.setblocking(False)
    payloads = []
    sent_bytes = 0
    start = time.monotonic()
    pending = b""
    while True:
        if not pending:
            payload, pending = make_frame()
            payloads.append(payload)
        try:
            n = sock.send(pending)
            pending = pending[n:]
            sent_bytes += n
        except BlockingIOError:
            _, w, _ = select.select([], [sock], [], stuck_for)
            if not w:
                break
        assert time.monotonic() - start < cap_seconds and sent_bytes < cap_bytes, (
            "sent %d bytes in %.0fs without being blocked: no backpressure"
            % (sent_bytes, time.monotonic() - start))
    print("client blocked after sending %d bytes in %.1fs" % (sent_bytes, time.monotonic() - start))
    sock.setblocking(True)
    return payloads, pending
