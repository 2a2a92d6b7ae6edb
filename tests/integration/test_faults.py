"""Fault injection: backends that refuse, reset at once, reset mid-stream,
half-close or never read, and a client that dribbles one byte per second.
Each case ends as DESIGN.md says, and afterwards wsgate holds no more open
fds than before the sessions (polled for up to 10 s) and its VmRSS does not
grow with the number of faulty sessions.

Helpers beyond harness.py are in faults_helpers.py."""

import os
import queue
import select
import threading
import time

import pytest

import faults_helpers as fh
import harness
from harness import OP_BINARY, OP_TEXT, build_frame, route
from ops_helpers import BUFFER_SIZES, MemoryWatch

pytestmark = pytest.mark.deadline(180)

ROUNDS = 4  # of repeated faults, to see RSS growth
PER_ROUND = 25


def start(gw, backend_addr, size="64k", **opts):
    """Start gw with buffer_size size and one route "/" to backend_addr;
    return its Resources baseline (taken once wsgate is idle)."""
    gw.start({"gateway": {"buffer_size": size}, "route:f": route(backend_addr, "/", **opts)})
    time.sleep(0.2)  # let every worker thread settle
    return fh.Resources(gw)


def expect_502(gw):
    c = gw.client()
    resp = c.handshake("/")
    harness.assert_http_error(c, 502, resp)
    c.close()
    gw.clients.remove(c)


# ---------------------------------------------------------------- refused


def test_backend_refuses_502(gw, asan):
    res = start(gw, harness.refused_addr())
    samples = []
    for _ in range(ROUNDS):
        for _ in range(PER_ROUND):
            expect_502(gw)
        res.wait_fds_back(what="502 responses")
        samples.append(res.rss())
    fh.check_rss_bounded(samples, asan, 2048, "refused backends")
    assert gw.alive()


# ---------------------------------------------------------------- resets


def run_concurrently(n, fn):
    """Run fn(i) for i in range(n) in n threads; re-raise the first error.
    Returns the results."""
    results = [None] * n
    errors = []

    def run(i):
        try:
            results[i] = fn(i)
        except BaseException as e:  # noqa: B902 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a session thread is still blocked"
    if errors:
        raise errors[0]
    return results


def expect_1011_and_reply(c):
    """A close 1011 arrives; the client answers it like a browser would and
    wsgate closes TCP within the close timeout."""
    f, before = c.next_close(timeout=fh.CLOSE_TIMEOUT + fh.MARGIN)
    assert f.close_code == 1011, "expected close 1011, got %r after %r" % (f, before[:3])
    f.close_reason.decode()
    c.send_quietly(fh.close_frame(1011))
    c.read_until_eof(timeout=fh.CLOSE_TIMEOUT + fh.MARGIN)


def outcome_of_early_reset(c):
    """The backend reset right after accepting, racing the 101: either the
    connect is judged failed (502) or the 101 comes and then close 1011
    (backend error), never a clean 1000."""
    resp = c.handshake("/")
    if resp.status == 502:
        harness.assert_http_error(c, 502, resp)
        return 502
    assert resp.status == 101, "expected 101 or 502, got %r" % resp
    assert resp.get("sec-websocket-accept") == harness.accept_key(c.key), resp
    expect_1011_and_reply(c)
    return 1011


def test_backend_resets_at_once_before_101(gw, backends, asan):
    """accept() then an immediate RST (SO_LINGER 0), before the client can
    have seen its 101. Rounds of concurrent sessions."""
    rst = backends.custom(fh.reset_at_once_handler)
    res = start(gw, rst.addr)
    seen = {}
    samples = []

    def session(i):
        c = harness.RawClient(gw.host, gw.port)
        try:
            return outcome_of_early_reset(c)
        finally:
            c.close()

    for _ in range(ROUNDS):
        for code in run_concurrently(PER_ROUND, session):
            seen[code] = seen.get(code, 0) + 1
        res.wait_fds_back(what="sessions whose backend reset at once")
        samples.append(res.rss())
    print("outcomes: %r" % seen)
    fh.check_rss_bounded(samples, asan, 2048, "resets before the 101")


def test_backend_resets_right_after_101(gw, backends, asan):
    """The backend resets as soon as the client has its 101: close 1011,
    then TCP close. Rounds of concurrent sessions."""
    got_101 = threading.Event()
    rst = backends.custom(fh.reset_on_event_handler(got_101))
    res = start(gw, rst.addr)
    samples = []
    for r in range(ROUNDS):
        got_101.clear()
        clients = []
        for _ in range(PER_ROUND):
            c = harness.RawClient(gw.host, gw.port)
            c.upgrade("/")
            clients.append(c)
        rst.wait_connections((r + 1) * PER_ROUND)
        got_101.set()
        try:
            run_concurrently(PER_ROUND, lambda i: expect_1011_and_reply(clients[i]))
        finally:
            for c in clients:
                c.close()
        res.wait_fds_back(what="sessions whose backend reset after the 101")
        samples.append(res.rss())
    fh.check_rss_bounded(samples, asan, 2048, "resets after the 101")


def test_backend_error_close_reply_ends_session_promptly(gw, backends):
    """RFC 6455 7.1.1: once the server has sent and received a close frame
    it closes TCP. After a backend reset the client's reply must end the
    session at once, not after the close timeout."""
    go = threading.Event()
    rst = backends.custom(fh.reset_on_event_handler(go))
    res = start(gw, rst.addr)
    c = gw.ws("/")
    rst.wait_connections(1)
    go.set()
    f, _ = c.next_close()
    assert f.close_code == 1011
    t0 = time.monotonic()
    c.send_close(1011)
    c.read_until_eof(timeout=fh.CLOSE_TIMEOUT + fh.MARGIN)
    took = time.monotonic() - t0
    print("TCP closed %.2fs after the client's close reply" % took)
    c.close()
    gw.clients.remove(c)
    res.wait_fds_back(what="a backend reset")
    assert took < 2.0, "wsgate closed TCP %.1fs after the client's close reply" % took


def test_backend_resets_mid_stream_1011(gw, backends):
    """The client streams to an echo backend that resets after 256 KiB: the
    client gets the echoed data that made it, then close 1011 and EOF; the
    stream never stalls."""
    limit = 256 * 1024
    rst = backends.custom(fh.echo_then_reset_handler(limit))
    res = start(gw, rst.addr)
    c = gw.ws("/")
    payload = harness.random_bytes(16 * 1024, seed=16)
    stop = threading.Event()

    def pump():
        try:
            while not stop.is_set():
                c.sock.sendall(build_frame(OP_BINARY, payload))
        except OSError:
            pass

    t = fh.start_thread(pump)
    echoed = bytearray()
    deadline = time.monotonic() + 30
    while True:
        f = c.recv_frame(timeout=max(0.1, deadline - time.monotonic()))
        if f.opcode == harness.OP_CLOSE:
            break
        assert f.opcode == OP_BINARY, f
        echoed += f.payload
    stop.set()
    assert f.close_code == 1011, "expected close 1011, got %r" % f
    f.close_reason.decode()
    # What came back is a prefix of what was sent (payload repeated).
    n = len(echoed)
    assert n <= limit + len(payload) * 4
    harness.assert_same(bytes(echoed), (payload * (n // len(payload) + 1))[:n], "echo")
    print("echoed %d bytes before the reset" % n)
    c.send_quietly(fh.close_frame(1011))
    c.read_until_eof(timeout=fh.CLOSE_TIMEOUT + fh.MARGIN)
    t.join(10)
    c.close()
    gw.clients.remove(c)
    res.wait_fds_back(what="a mid-stream reset")


# ---------------------------------------------------------------- half-close


def test_backend_half_close(gw, backends):
    """The backend sends 1 MB and EOF but keeps reading: the client gets
    every byte and close 1000; what the client sends after that still reaches
    the backend until the client's close, then the backend sees EOF."""
    data = harness.random_bytes(1 << 20, seed=1)
    hc = backends.custom(fh.half_close_handler(data), keep_data=True)
    res = start(gw, hc.addr)
    c = gw.ws("/")
    before = harness.random_bytes(5000, seed=5)
    c.send_frame(OP_BINARY, before)
    got = c.read_data(len(data), timeout=30)
    harness.assert_same(got, data, "backend data before its EOF")
    f = c.expect_close(1000, eof=False)
    assert f.close_code == 1000

    # After wsgate's close: more client data, in several messages.
    after = [harness.random_bytes(n, seed=n) for n in (1, 125, 126, 70000)]
    for m in after:
        c.send_frame(OP_BINARY, m)
    c.send_frame(OP_TEXT, "caf\u00e9")
    rec = hc.wait_connections(1)
    want = before + b"".join(after) + "caf\u00e9".encode()
    harness.wait_until(lambda: rec.received >= len(want), timeout=10,
                       what="client data sent after wsgate's close at the backend")
    assert rec.eof_at is None, "backend closed before the client's close frame"
    harness.assert_same(bytes(rec.data), want, "client data at the backend")

    c.send_close(1000)
    c.expect_eof(timeout=fh.CLOSE_TIMEOUT + fh.MARGIN)
    harness.wait_until(lambda: rec.eof_at, timeout=fh.CLOSE_TIMEOUT + fh.MARGIN,
                       what="backend EOF after the client's close")
    assert rec.received == len(want)
    c.close()
    gw.clients.remove(c)
    res.wait_fds_back(what="a half-closed session")


def test_backend_half_close_client_never_closes(gw, backends):
    """Backend EOF, and the client never answers wsgate's close frame: the
    session still ends within the close timeout."""
    hc = backends.custom(fh.half_close_handler(b"bye"))
    res = start(gw, hc.addr)
    c = gw.ws("/")
    assert c.read_data(3) == b"bye"
    t0 = time.monotonic()
    c.expect_close(1000, eof=False)
    c.expect_eof(timeout=fh.CLOSE_TIMEOUT + fh.MARGIN)
    print("TCP closed %.1fs after the close frame" % (time.monotonic() - t0))
    rec = hc.wait_connections(1)
    harness.wait_until(lambda: rec.eof_at, timeout=fh.MARGIN, what="backend EOF")
    c.close()
    gw.clients.remove(c)
    res.wait_fds_back(what="an unanswered close")


# ---------------------------------------------------------------- slow backend


def send_until_blocked(sock, frame, stuck_for=2.0):
    """harness.send_until_stuck with one frame over and over; the socket is
    left non-blocking. Returns the bytes sent."""
    payloads, pending = harness.send_until_stuck(sock, lambda: (frame, frame), stuck_for)
    sock.setblocking(False)
    return len(payloads) * len(frame) - len(pending)


def blocked_behind(gw, c, frame, bufsize, asan):
    """The client sends frame until its sends block behind a backend that
    reads nothing; wsgate holds bytes for the backend, at most buffer_size,
    and its VmRSS grows by no more than the bound for bufsize
    (ops_helpers.MemoryWatch). Returns the bytes sent."""
    with MemoryWatch(gw, "f", bufsize) as watch:
        sent = send_until_blocked(c.sock, frame)
        watch.wait_held("up")
    print("client blocked after %d bytes" % sent)
    watch.check(asan)
    return sent


def slow_backend_session(gw, backends, asan, **route_opts):
    """A backend that never reads; the client sends until its sends block
    (buffer_size 64k: the memory bounds of blocked_behind). Returns (client,
    resources, release event, backend, bytes sent)."""
    release = threading.Event()
    slow = backends.custom(fh.never_read_handler(release))
    res = start(gw, slow.addr, **route_opts)
    c = gw.ws("/")
    sent = blocked_behind(gw, c, build_frame(OP_BINARY, os.urandom(64 * 1024)), 65536, asan)
    return c, res, release, slow, sent


def test_slow_backend_dead_client_reaped_by_heartbeat(gw, backends, asan):
    """Backend never reads: the client's sends block while wsgate stays
    small. The client then gives up (close frame if it fits, then TCP
    close). With heartbeats on (ping_interval 2s, pong_timeout 2s) the
    session is gone, fds and all, within close timeout + margin."""
    c, res, release, slow, _ = slow_backend_session(gw, backends, asan, ping_interval="2s",
                                                    pong_timeout="2s")
    try:
        c.sock.send(fh.close_frame(1000))
    except BlockingIOError:
        pass
    t0 = time.monotonic()
    c.close()
    gw.clients.remove(c)
    res.wait_fds_back(timeout=fh.CLOSE_TIMEOUT + fh.MARGIN,
                      what="the client closed behind a slow backend")
    print("session gone %.1fs after the client closed" % (time.monotonic() - t0))
    release.set()


def test_slow_backend_live_client_not_dropped(gw, backends):
    """The backend stalls for 8 s (four pong timeouts) while the client is
    alive and answers every ping it gets; then the backend reads again.
    Its pongs sit behind data wsgate does not read (backpressure), but its
    TCP acknowledges every ping, which is what wsgate judges it by then
    (wsgate.8, HEARTBEATS). Nothing is lost and the session closes
    normally."""
    release = threading.Event()
    slow = backends.custom(fh.never_read_handler(release), keep_data=True)
    res = start(gw, slow.addr, ping_interval="2s", pong_timeout="2s")
    c = gw.ws("/")
    payload = harness.random_bytes(64 * 1024, seed=65)
    frame = build_frame(OP_BINARY, payload)
    sent = send_until_blocked(c.sock, frame, stuck_for=1.0)
    rest = (len(frame) - sent % len(frame)) % len(frame)
    nframes = (sent + rest) // len(frame)
    # One sender thread, like a browser's socket: the rest of the frame in
    # progress first, then the pongs, each after what was queued before.
    outq = queue.Queue()
    outq.put(frame[len(frame) - rest:])

    def sender():
        while True:
            data = outq.get()
            if data is None or not c.send_quietly(data):
                return

    c.sock.setblocking(True)
    tail = fh.start_thread(sender)
    deadline = time.monotonic() + 8
    try:
        while time.monotonic() < deadline:
            if not c.buf and not select.select([c.sock], [], [], 0.2)[0]:
                continue
            f = c.recv_frame()
            if f.opcode == harness.OP_PING:
                outq.put(build_frame(harness.OP_PONG, f.payload))
            assert f.opcode != harness.OP_CLOSE, "wsgate closed a live client: %r" % f
    except harness.ConnectionClosed:
        raise AssertionError("wsgate dropped a live client while the backend stalled")
    finally:
        release.set()
        outq.put(None)
    tail.join(30)
    all_delivered_then_close(gw, c, res, slow, payload, nframes, "the stalled session closed")


def test_slow_backend_unreading_client_dropped(gw, backends):
    """The counterpart: the backend sends 8 MiB and then stalls; the client
    reads nothing and sends until it blocks. wsgate's ping cannot reach it
    (its window is full), so nothing acknowledges it and the heartbeat ends
    the session: ping_interval + pong_timeout after the last byte heard."""
    release = threading.Event()

    def handler(b, rec):
        try:
            rec.sock.sendall(b"\x5a" * (8 << 20))
        except OSError:
            pass
        release.wait(120)
        rec.sock.close()

    slow = backends.custom(handler)
    res = start(gw, slow.addr, ping_interval="2s", pong_timeout="2s")
    c = gw.ws("/")
    frame = build_frame(OP_BINARY, harness.random_bytes(64 * 1024, seed=66))
    send_until_blocked(c.sock, frame, stuck_for=1.0)
    t0 = time.monotonic()
    try:
        harness.wait_until(lambda: "pong timeout: the backend took nothing" in gw.stderr_text(),
                           timeout=4 + fh.MARGIN, what="the pong timeout of an unreading client")
        res.wait_fds_back(timeout=fh.MARGIN, what="the unreading client's session")
    finally:
        release.set()
    print("dropped %.1fs after the client blocked" % (time.monotonic() - t0))
    c.close()
    gw.clients.remove(c)


def all_delivered_then_close(gw, c, res, slow, payload, nframes, what):
    """The slow backend got nframes copies of payload, every byte and in
    order; then a close handshake ends the session and its fds."""
    rec = slow.wait_connections(1)
    harness.wait_until(lambda: rec.received >= nframes * len(payload), timeout=60,
                       what="every payload byte at the backend")
    assert rec.received == nframes * len(payload)
    assert bytes(rec.data) == payload * nframes
    c.send_close(1000)
    c.expect_close(1000)
    c.close()
    gw.clients.remove(c)
    res.wait_fds_back(what=what)


@pytest.mark.parametrize("how", [
    pytest.param("close", marks=pytest.mark.xfail(strict=True, reason=(
        "documented limitation: the client's FIN queues behind the data "
        "wsgate does not read (zero window), so the kernel does not show it; "
        "the heartbeat ends the session"))),
    "reset",
])
def test_slow_backend_client_drops(gw, backends, asan, how):
    """As above with the default heartbeat (30 s): DESIGN.md says a client
    that drops TCP makes wsgate close the backend at once, so the session
    must end within close timeout + margin."""
    c, res, release, slow, _ = slow_backend_session(gw, backends, asan)
    try:
        c.sock.send(fh.close_frame(1000))
    except BlockingIOError:
        pass
    if how == "reset":
        c.abort()
    else:
        c.close()
    gw.clients.remove(c)
    try:
        res.wait_fds_back(timeout=fh.CLOSE_TIMEOUT + fh.MARGIN,
                          what="the client dropped behind a slow backend")
    finally:
        release.set()


@pytest.mark.parametrize("size", list(BUFFER_SIZES))
def test_slow_backend_then_reads(gw, backends, asan, size):
    """The backend reads nothing for a while (wsgate holds at most
    buffer_size for it, at 4k and 1m), then everything: not one byte is
    lost, and the client's close then ends the session."""
    release = threading.Event()
    slow = backends.custom(fh.never_read_handler(release), keep_data=True)
    bufsize = BUFFER_SIZES[size]
    res = start(gw, slow.addr, size)
    c = gw.ws("/")
    payload = harness.random_bytes(bufsize, seed=64)
    frame = build_frame(OP_BINARY, payload)
    sent = blocked_behind(gw, c, frame, bufsize, asan)
    # Finish the frame in progress, so the stream is whole frames.
    rest = (len(frame) - sent % len(frame)) % len(frame)
    release.set()
    c.sock.setblocking(True)
    c.sock.sendall(frame[len(frame) - rest:] if rest else b"")
    nframes = (sent + rest) // len(frame)
    all_delivered_then_close(gw, c, res, slow, payload, nframes, "the slow backend caught up")


# ---------------------------------------------------------------- slow client


@pytest.mark.deadline(240)
def test_client_one_byte_per_second(gw, echo):
    """A masked frame dribbled one byte per second (about 12 s) is relayed
    whole: a slow client is not a dead one while ping_interval is longer
    than the gaps. The echo comes back, then a dribbled close ends it."""
    res = start(gw, echo.addr, ping_interval="20s", pong_timeout="5s")
    c = gw.ws("/")
    payload = b"slow!!"
    frame = build_frame(OP_BINARY, payload)
    assert len(frame) == 12
    t0 = time.monotonic()
    fh.dribble(c.sock, frame, interval=1.0)
    got = c.read_data(len(payload), timeout=10)
    assert got == payload
    print("frame dribbled over %.1fs, echo received" % (time.monotonic() - t0))

    # A second one interleaved with a dribbled ping (pong comes back).
    fh.dribble(c.sock, build_frame(harness.OP_PING, b"p"), interval=1.0)
    f = c.recv_frame()
    assert f.opcode == harness.OP_PONG and f.payload == b"p", f
    fh.dribble(c.sock, fh.close_frame(1000), interval=1.0)
    c.expect_close(1000)
    c.close()
    gw.clients.remove(c)
    res.wait_fds_back(what="the slow client closed")


def test_client_dribble_beyond_ping_interval(gw, echo):
    """Each byte is news from the client: bytes 1 s apart keep a session with
    ping_interval 2s alive far longer than 2 s, and the frame is relayed."""
    res = start(gw, echo.addr, ping_interval="2s", pong_timeout="3s")
    c = gw.ws("/")
    payload = b"0123456789"
    t0 = time.monotonic()
    fh.dribble(c.sock, build_frame(OP_BINARY, payload), interval=1.0)
    got = c.read_data(len(payload), timeout=10)
    assert got == payload
    print("relayed after %.1fs with %d pings seen" % (time.monotonic() - t0, len(c.controls)))
    c.send_close(1000)
    c.expect_close(1000)
    c.close()
    gw.clients.remove(c)
    res.wait_fds_back(what="the dribbling client closed")


# ---------------------------------------------------------------- unix: backends


class UnixEcho:
    """An echo backend on a Unix socket (accepting only while serving)."""

    def __init__(self, path, backlog=8, serve=True):
        import socket
        self.path = path
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(path)
        self.ls.listen(backlog)
        self.stop = threading.Event()
        self.th = None
        if serve:
            self.th = threading.Thread(target=self.serve, daemon=True)
            self.th.start()

    def serve(self):
        import socket
        self.ls.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.ls.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self.echo, args=(conn,), daemon=True).start()

    @staticmethod
    def echo(conn):
        with conn:
            while True:
                d = conn.recv(65536)
                if not d:
                    return
                conn.sendall(d)

    def close(self):
        self.stop.set()
        if self.th:
            self.th.join(5)
        self.ls.close()


def test_unix_backend_relays(gw, tmp_path):
    """backend = unix:/path: bytes both ways, and a 1000 close."""
    be = UnixEcho(str(tmp_path / "echo.sock"))
    try:
        start(gw, "unix:" + be.path)
        c = gw.ws("/")
        for n in (1, 125, 70000):
            data = os.urandom(n)
            c.send_frame(OP_BINARY, data)
            assert c.read_data(n) == data
        c.send_close(1000)
        c.expect_close(1000)
    finally:
        be.close()


def test_unix_backend_missing_502(gw, tmp_path):
    """A Unix socket path nobody listens on: 502, nothing leaked."""
    res = start(gw, "unix:" + str(tmp_path / "nobody.sock"))
    for _ in range(PER_ROUND):
        expect_502(gw)
    res.wait_fds_back(what="502 responses")
    assert gw.alive()


def test_unix_backend_backlog_full_502(gw, tmp_path):
    """A Unix listener whose backlog is full refuses a non-blocking connect
    with EAGAIN: that is a failed connect (502), not one in progress."""
    import socket
    be = UnixEcho(str(tmp_path / "full.sock"), backlog=0, serve=False)
    fillers = []
    try:
        while True:  # fill the backlog (never accepted)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(be.path)
            except BlockingIOError:
                s.close()
                break
            fillers.append(s)
            assert len(fillers) < 100, "the backlog never filled"
        res = start(gw, "unix:" + be.path)
        for _ in range(5):
            expect_502(gw)
        res.wait_fds_back(what="502 responses")
        assert gw.alive()
    finally:
        for s in fillers:
            s.close()
        be.close()
