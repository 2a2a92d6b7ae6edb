"""Backpressure keeps wsgate small: bulk transfer and clients or backends
that stop reading must not make it grow (VmRSS sampled throughout), and no
byte is lost. Under AddressSanitizer the RSS bound is not asserted (shadow
memory and quarantine dominate), but the data checks still run."""

import os
import select
import socket
import time

import pytest

import harness
from harness import OP_BINARY, build_frame, route

RSS_LIMIT_KIB = 64 * 1024
pytestmark = [pytest.mark.slow, pytest.mark.deadline(240)]


def check_rss(sampler, asan):
    print("wsgate VmRSS: max %d KiB over %d samples" % (sampler.max_kib, len(sampler.samples)))
    assert len(sampler.samples) >= 3, "too few RSS samples"
    if asan:
        return
    assert sampler.max_kib < RSS_LIMIT_KIB, "wsgate VmRSS reached %d KiB" % sampler.max_kib


def test_256mb_to_sink(gw, backends, asan):
    sink = backends.sink()
    gw.start({"route:s": route(sink.addr, "/")})
    c = gw.ws("/")
    chunk = harness.random_bytes(1 << 20)
    frame = build_frame(OP_BINARY, chunk)
    total = 256 << 20
    with harness.RssSampler(gw) as rss:
        t0 = time.monotonic()
        for _ in range(total // len(chunk)):
            c.send(frame)
        rec = sink.wait_connections(1)
        harness.wait_until(lambda: rec.received >= total, timeout=120,
                           what="256 MiB at the sink")
        elapsed = time.monotonic() - t0
    print("256 MiB in %.1fs" % elapsed)
    assert rec.received == total
    check_rss(rss, asan)
    c.send_close(1000)
    c.expect_close(1000)


def send_until_stuck(sock, make_frame, stuck_for=2.0, cap_seconds=60, cap_bytes=2 << 30):
    """Non-blocking sends of frames until a send makes no progress for
    stuck_for seconds. Returns (payloads fully or partly sent, unsent tail of
    the current frame)."""
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


def test_client_never_reads_echo(gw, echo, asan):
    """The client floods an echo route and never reads: everything stalls
    (the send blocks) with wsgate small; then the client reads and gets every
    byte back."""
    gw.start({"route:e": route(echo.addr, "/")})
    c = gw.ws("/")

    def make_frame():
        payload = os.urandom(65536)
        return payload, build_frame(OP_BINARY, payload)

    with harness.RssSampler(gw) as rss:
        payloads, tail = send_until_stuck(c.sock, make_frame)
        time.sleep(1.0)
    check_rss(rss, asan)
    sender = c.send_in_background(tail)
    expected = b"".join(payloads)
    got = c.read_data(len(expected), timeout=120)
    c.join_sender(sender)
    harness.assert_same(got, expected, "echoed bytes after the stall")
    c.send_close(1000)
    c.expect_close(1000)


PATTERN = bytes(range(256)) * 256  # 64 KiB; the stream is this, repeated


def firehose_handler(b, rec):
    """Backend that writes the pattern until 256 MiB or until closed."""
    sent = 0
    try:
        while sent < (256 << 20):
            rec.sock.sendall(PATTERN)
            sent += len(PATTERN)
    except OSError:
        return
    rec.sock.shutdown(socket.SHUT_WR)
    b.drain_to_eof(rec)


def test_client_never_reads_backend_firehose(gw, backends, asan):
    hose = backends.custom(firehose_handler)
    gw.start({"route:f": route(hose.addr, "/")})
    c = gw.ws("/")
    hose.wait_connections(1)
    with harness.RssSampler(gw) as rss:
        time.sleep(4.0)  # the client reads nothing
    check_rss(rss, asan)
    got = c.read_data(32 << 20, timeout=60, at_least=True)
    expected = (PATTERN * (len(got) // len(PATTERN) + 1))[:len(got)]
    harness.assert_same(got, expected, "firehose stream")


def never_read_handler(b, rec):
    """Backend that accepts and never reads (until the test ends)."""
    b.stopping.wait(120)


def test_backend_never_reads(gw, backends, asan):
    """The backend reads nothing: the client's sends block, wsgate stays small."""
    stuck = backends.custom(never_read_handler)
    gw.start({"route:n": route(stuck.addr, "/")})
    c = gw.ws("/")
    stuck.wait_connections(1)

    def make_frame():
        payload = os.urandom(65536)
        return payload, build_frame(OP_BINARY, payload)

    with harness.RssSampler(gw) as rss:
        send_until_stuck(c.sock, make_frame)
        time.sleep(1.0)
    check_rss(rss, asan)
