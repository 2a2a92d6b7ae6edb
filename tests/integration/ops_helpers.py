"""ops_helpers.py - helpers for the operations tests (test_reload.py,
test_drain.py, test_metrics.py, test_memory.py, test_faults.py): plain HTTP
requests, a Prometheus text parser with a format lint, log polling,
listening-socket inspection, memory bounds tied to buffer_size, a
streaming backend, and a fleet of python3-websockets sessions that relay
sequence-numbered data through an echo backend in a background thread and
verify every echoed byte.

Everything else comes from harness.py and conftest.py.
"""

import asyncio
import math
import random
import re
import signal
import socket
import struct
import threading
import time

import harness
from harness import RawClient, wait_log, wait_until

# ---------------------------------------------------------------- HTTP


def http_request(host, port, path, method="GET", timeout=harness.DEFAULT_TIMEOUT):
    """One plain HTTP/1.1 request (no upgrade) on a new connection; returns
    the harness.HttpResponse (body read by Content-Length or to EOF)."""
    c = RawClient(host, port, timeout)
    try:
        c.send(("%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
                % (method, path)).encode())
        if method != "HEAD":
            return c.read_http_response(timeout)
        # A HEAD response has no body whatever its Content-Length says:
        # everything after the head up to the close must be empty.
        rest = c.read_until_eof(timeout)
        idx = rest.find(b"\r\n\r\n")
        assert idx >= 0, "no complete response head: %r" % rest[:300]
        return harness.HttpResponse(rest[:idx], rest[idx + 4:])
    finally:
        c.close()


def upgrade_status(host, port, path, **kw):
    """Status of an upgrade request on a new connection; a 101 session is
    closed again with a close handshake (1000). Returns the status."""
    c = RawClient(host, port)
    try:
        resp = c.handshake(path, **kw)
        if resp.status == 101:
            c.send_close(1000)
            c.expect_close(1000)
        return resp.status
    finally:
        c.close()


def connect_refused(host, port):
    """True if a TCP connect to host:port is refused."""
    try:
        s = socket.create_connection((host, port), timeout=5)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


# ---------------------------------------------------------------- logs


def log_offset(gw):
    """Current length of the gateway's stderr (for wait_log's `after`)."""
    return len(gw.stderr_text())


ACCESS_RE = re.compile(r" access: client=(\S+) route=(\S*) backend=(\S*) status=(\d+) "
                       r"duration=(\S+) up=(\d+) down=(\d+) close=(-?\d+) by=(\S+)")


def access_lines(gw):
    """{client "addr:port": dict} of the text-format access lines so far."""
    out = {}
    for m in ACCESS_RE.finditer(gw.stderr_text()):
        out[m.group(1)] = {"route": m.group(2), "backend": m.group(3),
                           "status": int(m.group(4)), "up": int(m.group(6)),
                           "down": int(m.group(7)), "close": int(m.group(8)),
                           "by": m.group(9), "line": m.group(0)}
    return out


def client_addr(c):
    """"host:port" of a RawClient's local end, as wsgate logs it."""
    host, port = c.sock.getsockname()[:2]
    return "%s:%d" % (host, port)


def send_hup(gw, ok=True, timeout=harness.DEFAULT_TIMEOUT):
    """SIGHUP the gateway and wait for the log line that says the reload
    succeeded (ok) or was refused; returns the log text since the signal."""
    start = log_offset(gw)
    gw.proc.send_signal(signal.SIGHUP)
    if ok:
        return wait_log(gw, "SIGHUP: reloaded %s" % gw.config_path, after=start, timeout=timeout)
    return wait_log(gw, "SIGHUP: %s is invalid; keeping the running configuration"
                    % gw.config_path, after=start, timeout=timeout)


# ---------------------------------------------------------------- sockets


listening_inodes = harness.listening_inodes


# ---------------------------------------------------------------- Prometheus text

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_RE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)(?: -?\d+)?$" % _NAME)
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')
_HELP_RE = re.compile(r"^# HELP (%s) (.*)$" % _NAME)
_TYPE_RE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % _NAME)


def _parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    return float(s)  # ValueError for anything else


def _parse_labels(text, lineno, line):
    labels = {}
    pos = 0
    while pos < len(text):
        m = _LABEL_RE.match(text, pos)
        assert m, "line %d: bad label set at %r: %r" % (lineno, text[pos:], line)
        name = m.group(1)
        assert name not in labels, "line %d: label %s twice: %r" % (lineno, name, line)
        labels[name] = m.group(2)
        pos = m.end()
        if pos < len(text):
            assert text[pos] == ",", "line %d: expected ',' at %r: %r" % (lineno, text[pos:], line)
            pos += 1
    return labels


class Metrics:
    """A parsed and linted Prometheus text exposition.

    samples: {(name, frozenset(labels.items())): value}
    types / helps: {family: type / help text}
    """

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        self.helps = {}
        self._lint_and_parse(text)

    def _family_of(self, name):
        if name in self.types:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                if self.types.get(base) in ("histogram", "summary"):
                    return base
        return None

    def _lint_and_parse(self, text):
        assert text.endswith("\n"), "exposition does not end with a newline: %r" % text[-80:]
        seen_families = []          # in order of first sample
        current = None
        for lineno, line in enumerate(text.split("\n")[:-1], 1):
            assert line == line.strip() or line.startswith("# HELP"), \
                "line %d has stray white space: %r" % (lineno, line)
            assert line, "line %d is empty" % lineno
            if line.startswith("#"):
                m = None
                for kind, regex, seen in (("HELP", _HELP_RE, self.helps),
                                          ("TYPE", _TYPE_RE, self.types)):
                    m = regex.match(line)
                    if m:
                        assert m.group(1) not in seen, "line %d: second %s for %s" % (
                            lineno, kind, m.group(1))
                        assert m.group(1) not in seen_families, \
                            "line %d: %s for %s after its samples" % (lineno, kind, m.group(1))
                        seen[m.group(1)] = m.group(2)
                        break
                if m:
                    continue
                assert not line.startswith("# HELP") and not line.startswith("# TYPE"), \
                    "line %d: malformed HELP/TYPE line %r" % (lineno, line)
                continue
            m = _SAMPLE_RE.match(line)
            assert m, "line %d does not parse as `name{labels} value`: %r" % (lineno, line)
            name, labeltext, value = m.group(1), m.group(2), m.group(3)
            labels = _parse_labels(labeltext, lineno, line) if labeltext else {}
            try:
                v = _parse_value(value)
            except ValueError:
                raise AssertionError("line %d: value %r is not a number: %r"
                                     % (lineno, value, line)) from None
            fam = self._family_of(name)
            assert fam is not None, "line %d: sample %s has no TYPE line before it" % (lineno, name)
            assert fam in self.helps, "line %d: family %s has no HELP line before it" % (
                lineno, fam)
            if fam != current:
                assert fam not in seen_families, \
                    "line %d: samples of %s are not contiguous" % (lineno, fam)
                seen_families.append(fam)
                current = fam
            if self.types[fam] == "histogram" and name == fam + "_bucket":
                assert "le" in labels, "line %d: bucket without le: %r" % (lineno, line)
            key = (name, frozenset(labels.items()))
            assert key not in self.samples, "line %d: duplicate series %r" % (lineno, line)
            assert not math.isnan(v), "line %d: NaN value %r" % (lineno, line)
            if self.types[fam] == "counter" or name.endswith(("_bucket", "_count")):
                assert v >= 0, "line %d: negative counter %r" % (lineno, line)
            self.samples[key] = v
        for fam, typ in self.types.items():
            assert fam in self.helps, "family %s has TYPE but no HELP" % fam
            if typ == "histogram":
                self._lint_histogram(fam)

    def _lint_histogram(self, fam):
        groups = {}
        for (name, labels), v in self.samples.items():
            if name == fam + "_bucket":
                d = dict(labels)
                le = d.pop("le")
                groups.setdefault(frozenset(d.items()), []).append((_parse_value(le), v))
        for labels, buckets in groups.items():
            buckets.sort()
            assert buckets[-1][0] == math.inf, "%s%r has no +Inf bucket" % (fam, dict(labels))
            values = [v for _, v in buckets]
            assert values == sorted(values), "%s%r buckets not cumulative: %r" % (
                fam, dict(labels), buckets)
            count = self.samples.get((fam + "_count", labels))
            assert count is not None, "%s%r has no _count" % (fam, dict(labels))
            assert (fam + "_sum", labels) in self.samples, "%s%r has no _sum" % (fam, dict(labels))
            assert count == values[-1], "%s%r: _count %r != +Inf bucket %r" % (
                fam, dict(labels), count, values[-1])

    def get(self, name, **labels):
        """The value of the series with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        """The value of the series with exactly these labels (must exist)."""
        v = self.get(name, **labels)
        if v is None:
            have = sorted(dict(lb) for n, lb in self.samples if n == name)
            raise AssertionError("no series %s%r; series of that name: %r"
                                 % (name, labels, have[:40]))
        return v

    def series(self, name):
        """{frozenset(labels): value} of every series called name."""
        return {lb: v for (n, lb), v in self.samples.items() if n == name}


def scrape(gw, path="/metrics", host=None, port=None):
    """GET the metrics endpoint, check status and content type, and return
    the parsed and linted Metrics."""
    resp = http_request(host or gw.host, port or gw.port, path)
    assert resp.status == 200, "metrics answered %r" % resp
    ctype = resp.get("content-type") or ""
    assert ctype.startswith("text/plain"), "metrics Content-Type %r" % ctype
    return Metrics(resp.body.decode("utf-8"))


# ---------------------------------------------------------------- memory bounds

# What one session may hold per direction beyond buffer_size: nothing.
# wsgate_buffered_bytes counts the bytes in a session's relay buffers, each
# buffer holds buffer_size bytes in all (the server frame header is built in
# headroom inside the buffer, and one wake-up reads at most min(buffer_size,
# 64 KiB) into the room left), and without compression there is one buffer
# per direction. So the gauge of one session is at most buffer_size.
BUFFERED_ALLOWANCE = 0
# Buffer sizes the bounds are checked at: the smallest usual one (below the
# 64 KiB per-wake-up budget) and a large one (above it).
BUFFER_SIZES = {"4k": 4096, "1m": 1 << 20}


def rss_allowance_kib(buffer_size):
    """VmRSS growth allowed for one session behind backpressure: its two
    buffers counted four times (the pool's free list and malloc's arenas keep
    freed buffers resident; a 1 MiB buffer is touched page by page), plus a
    fixed 8 MiB for what does not scale with it (the metrics scrapes, stdio,
    stacks touched). A buffer 64 times too large at 1m exceeds it."""
    return 8 * 1024 + 4 * 2 * buffer_size // 1024


def buffered(gw, route):
    """{"up": n, "down": n}: wsgate_buffered_bytes of route now."""
    m = scrape(gw)
    return {d: m.value("wsgate_buffered_bytes", route=route, direction=d) for d in ("up", "down")}


class MemoryWatch:
    """Samples wsgate's VmRSS and the buffered-bytes gauges of one route in a
    thread (every interval seconds) from a baseline taken at the start; check()
    holds them to the bounds of buffer_size."""

    def __init__(self, gw, route, buffer_size, interval=0.02):
        self.gw, self.route, self.buffer_size = gw, route, buffer_size
        self.interval = interval
        self.baseline_kib = gw.rss_kib()
        self.rss = []
        self.max = {"up": 0, "down": 0}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        self.rss.append(self.gw.rss_kib())
        for d, v in buffered(self.gw, self.route).items():
            self.max[d] = max(self.max[d], v)

    def _run(self):
        while not self.stop_event.is_set():
            try:
                self._sample()
            except (OSError, AssertionError):
                break
            self.stop_event.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)

    def wait_held(self, direction):
        """Wait until the route holds bytes in direction (the stall reached
        wsgate's buffer); returns the gauges then."""
        return wait_until(lambda: (lambda g: g if g[direction] > 0 else None)(
            buffered(self.gw, self.route)), what="bytes buffered %s" % direction)

    def check(self, asan):
        """One more sample, then: each direction's gauge never exceeded
        buffer_size + BUFFERED_ALLOWANCE, and (without ASan, whose shadow
        memory and quarantine dominate) VmRSS grew by at most
        rss_allowance_kib(buffer_size)."""
        self._sample()
        limit = self.buffer_size + BUFFERED_ALLOWANCE
        growth = max(self.rss) - self.baseline_kib
        print("buffer_size %d: buffered max up %d down %d; VmRSS +%d KiB (baseline %d, "
              "%d samples)" % (self.buffer_size, self.max["up"], self.max["down"], growth,
                               self.baseline_kib, len(self.rss)))
        assert len(self.rss) >= 3, "too few samples"
        for d in ("up", "down"):
            assert self.max[d] <= limit, ("wsgate_buffered_bytes{direction=%s} reached %d, "
                                          "buffer_size %d" % (d, self.max[d], self.buffer_size))
        if not asan:
            allowed = rss_allowance_kib(self.buffer_size)
            assert growth <= allowed, ("wsgate VmRSS grew by %d KiB with buffer_size %d "
                                       "(allowed %d)" % (growth, self.buffer_size, allowed))


# ---------------------------------------------------------------- streaming backend


def stream_bytes(offset, n):
    """n bytes of the reference stream starting at offset: the stream is the
    sequence of 32-bit big-endian counters 0, 1, 2, ... so a gap, a repeat or
    a corruption shows at its offset."""
    first = offset // 4
    last = (offset + n + 3) // 4
    words = struct.pack("!%dI" % (last - first), *range(first, last))
    skip = offset - first * 4
    return words[skip:skip + n]


def check_stream_prefix(data, what="stream"):
    """data must be the reference stream from offset 0 (any length)."""
    harness.assert_same(data, stream_bytes(0, len(data)), what)


def stream_handler(chunk=16384, interval=0.01):
    """A backend that sends the reference stream (chunk bytes every interval
    seconds) until wsgate closes the connection, and discards what it
    receives. rec.sent counts the bytes handed to the kernel."""
    def handler(b, rec):
        rec.sent = 0
        reader = threading.Thread(target=b.drain_to_eof, args=(rec,), daemon=True)
        reader.start()
        rec.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        while rec.eof_at is None:
            data = stream_bytes(rec.sent, chunk)
            try:
                rec.sock.sendall(data)
            except OSError:
                break
            rec.sent += len(data)
            time.sleep(interval)
        reader.join(10)
        rec.sock.close()
    return handler


def read_until_close(c, timeout=harness.DEFAULT_TIMEOUT):
    """Read server frames until a close frame; answer it (same code); wait
    for wsgate to close TCP. Returns (payload bytes of the data frames,
    close frame, monotonic time the close frame arrived)."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        try:
            f = c.recv_frame(timeout=max(0.001, deadline - time.monotonic()))
        except harness.ConnectionClosed:
            raise AssertionError("TCP closed without a close frame after %d data bytes"
                                 % len(data)) from None
        assert not f.masked and f.rsv == 0, "bad server frame %r" % f
        if f.opcode == harness.OP_CLOSE:
            t = time.monotonic()
            if not c.close_sent:
                c.close_sent = True
                c.send_quietly(harness.build_frame(harness.OP_CLOSE,
                                                   harness.close_payload(f.close_code)))
            c.expect_eof(timeout=max(1.0, deadline - time.monotonic()))
            return bytes(data), f, t
        if f.opcode == harness.OP_PING:
            c.send_quietly(harness.build_frame(harness.OP_PONG, f.payload))
            continue
        if f.opcode == harness.OP_PONG:
            continue
        assert f.opcode in (harness.OP_BINARY, harness.OP_CONT), "unexpected frame %r" % f
        data += f.payload


# ---------------------------------------------------------------- websockets fleet


class SessionState:
    def __init__(self, idx, url):
        self.idx = idx
        self.url = url
        self.connected = False
        self.sent = 0          # bytes sent (all of them must come back)
        self.verified = 0      # bytes echoed and found equal
        self.chunks = 0
        self.close_code = None
        self.error = None      # text of the first failure
        self.done = False

    def __repr__(self):
        return ("session %d (%s): connected=%s sent=%d verified=%d chunks=%d close=%r error=%s"
                % (self.idx, self.url, self.connected, self.sent, self.verified, self.chunks,
                   self.close_code, self.error))


class RelayFleet:
    """n sessions (python3-websockets) relaying continuously through echo
    backends: each sends chunks that carry (session, sequence number,
    length) and pseudo-random bytes, at most `window` bytes ahead of what has
    come back, and checks every echoed byte against what it sent. Runs its
    own asyncio loop in a background thread; stop() ends the sending, waits
    until every byte came back and closes each session with 1000."""

    def __init__(self, urls, chunk_min=64, chunk_max=4096, window=64 * 1024, pace=0.02):
        self.states = [SessionState(i, u) for i, u in enumerate(urls)]
        self.chunk_min, self.chunk_max = chunk_min, chunk_max
        self.window, self.pace = window, pace
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._thread, daemon=True)
        self.fatal = None

    # -- control (test thread)
    def start(self, timeout=60):
        """Connect every session and wait until each has verified some bytes."""
        self.thread.start()
        try:
            wait_until(lambda: self.fatal or all(s.error or s.verified >= 4 * self.chunk_max
                                                 for s in self.states),
                       timeout, interval=0.05, what="every session relaying")
        except AssertionError:
            raise AssertionError("sessions not relaying:\n%s" % self.report()) from None
        self.check_ok()

    def verified(self):
        return [s.verified for s in self.states]

    def check_ok(self):
        """Fail if any session had an error (lost, corrupted or closed early)."""
        assert self.fatal is None, "fleet failed: %s" % self.fatal
        bad = [s for s in self.states if s.error]
        assert not bad, "%d session(s) failed:\n%s" % (len(bad), "\n".join(map(repr, bad)))

    def wait_progress(self, since, at_least, timeout=30):
        """Wait until every session verified at least `at_least` bytes more
        than in `since` (a verified() snapshot)."""
        def ok():
            self.check_ok()
            return all(s.verified >= b + at_least for s, b in zip(self.states, since))
        try:
            wait_until(ok, timeout, interval=0.05, what="progress of every session")
        except AssertionError as e:
            if "progress" not in str(e):
                raise
            stuck = [(s, b) for s, b in zip(self.states, since) if s.verified < b + at_least]
            raise AssertionError("%d session(s) made no progress in %ss:\n%s" % (
                len(stuck), timeout, "\n".join("%r (was %d)" % sb for sb in stuck))) from None

    def stop(self, timeout=60):
        """Stop sending, let every byte come back, close each session with
        1000; returns the states."""
        self.stopping.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "fleet did not finish in %ss:\n%s" % (
            timeout, self.report())
        return self.states

    def report(self):
        return "\n".join(map(repr, self.states))

    # -- the asyncio side
    def _thread(self):
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: B902 - reported through self.fatal
            self.fatal = repr(e)

    async def _main(self):
        await asyncio.gather(*(self._session(s) for s in self.states))

    async def _session(self, st):
        import websockets

        rnd = random.Random(1000 + st.idx)
        pending = bytearray()
        room = asyncio.Event()
        room.set()
        drained = asyncio.Event()
        try:
            async with websockets.connect(st.url, compression=None, max_size=None,
                                          ping_interval=None, open_timeout=30,
                                          close_timeout=10) as ws:
                st.connected = True

                async def reader():
                    while True:
                        msg = await ws.recv()
                        if not isinstance(msg, bytes):
                            raise AssertionError("text frame %r" % msg[:40])
                        n = len(msg)
                        if n > len(pending) or pending[:n] != msg:
                            first = next((i for i in range(min(n, len(pending)))
                                          if pending[i] != msg[i]), min(n, len(pending)))
                            raise AssertionError(
                                "echo differs at stream offset %d (frame of %d bytes, %d "
                                "pending): got %r expected %r"
                                % (st.verified + first, n, len(pending),
                                   msg[first:first + 16], bytes(pending[first:first + 16])))
                        del pending[:n]
                        st.verified += n
                        if len(pending) < self.window:
                            room.set()
                        if not pending:
                            drained.set()

                rtask = asyncio.ensure_future(reader())
                seq = 0
                while not self.stopping.is_set():
                    n = rnd.randint(self.chunk_min, self.chunk_max)
                    chunk = struct.pack("!IIQ", st.idx, n, seq) + rnd.randbytes(n - 16)
                    drained.clear()
                    pending += chunk
                    st.sent += n
                    await ws.send(chunk)
                    st.chunks += 1
                    seq += 1
                    if len(pending) >= self.window:
                        room.clear()
                        await asyncio.wait([asyncio.ensure_future(room.wait()), rtask],
                                           timeout=60, return_when=asyncio.FIRST_COMPLETED)
                    if rtask.done():
                        rtask.result()  # raises the reader's failure
                        raise AssertionError("reader ended early")
                    await asyncio.sleep(self.pace)
                if pending:
                    await asyncio.wait([asyncio.ensure_future(drained.wait()), rtask],
                                       timeout=60, return_when=asyncio.FIRST_COMPLETED)
                    if rtask.done():
                        rtask.result()
                    if pending:
                        raise AssertionError("%d bytes never came back" % len(pending))
                rtask.cancel()
                try:
                    await rtask
                except asyncio.CancelledError:
                    pass
                await ws.close(1000)
                st.close_code = ws.close_code
        except BaseException as e:  # noqa: B902 - recorded, checked by the test
            code = getattr(e, "code", None)
            st.error = "%s: %s (close code %r)" % (type(e).__name__, e, code)
        finally:
            st.done = True
