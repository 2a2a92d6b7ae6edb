"""Backpressure keeps wsgate small, relative to its configuration: bulk
transfer and clients or backends that stop reading must not make it hold
more than buffer_size per direction (the wsgate_buffered_bytes gauges,
sampled throughout, at buffer_size 4k and 1m) nor grow its VmRSS by more
than a bound scaled by buffer_size (ops_helpers.rss_allowance_kib), and no
byte is lost. Under AddressSanitizer the RSS bound is not asserted (shadow
memory and quarantine dominate); the gauges and data checks still run."""

import os
import socket

import pytest

import harness
from harness import OP_BINARY, build_frame, route, send_until_stuck
from ops_helpers import BUFFER_SIZES, MemoryWatch

pytestmark = [pytest.mark.slow, pytest.mark.deadline(240)]
SIZES = pytest.mark.parametrize("size", list(BUFFER_SIZES))


def start(gw, backend_addr, size):
    gw.start({"gateway": {"buffer_size": size}, "route:m": route(backend_addr, "/")})
    return BUFFER_SIZES[size]


def frames_of(n):
    """make_frame for send_until_stuck: frames of n random bytes."""
    def make_frame():
        payload = os.urandom(n)
        return payload, build_frame(OP_BINARY, payload)
    return make_frame


def test_256mb_to_sink(gw, backends, asan):
    sink = backends.sink()
    bufsize = start(gw, sink.addr, "1m")
    c = gw.ws("/")
    chunk = harness.random_bytes(1 << 20)
    frame = build_frame(OP_BINARY, chunk)
    total = 256 << 20
    with MemoryWatch(gw, "m", bufsize) as watch:
        for _ in range(total // len(chunk)):
            c.send(frame)
        rec = sink.wait_connections(1)
        harness.wait_until(lambda: rec.received >= total, timeout=120,
                           what="256 MiB at the sink")
    assert rec.received == total
    watch.check(asan)
    c.send_close(1000)
    c.expect_close(1000)


@SIZES
def test_client_never_reads_echo(gw, echo, asan, size):
    """The client floods an echo route with frames of buffer_size and never
    reads: everything stalls (the send blocks) with wsgate holding at most
    buffer_size each way; then the client reads and gets every byte back."""
    bufsize = start(gw, echo.addr, size)
    c = gw.ws("/")
    with MemoryWatch(gw, "m", bufsize) as watch:
        payloads, tail = send_until_stuck(c.sock, frames_of(bufsize))
        watch.wait_held("down")
    watch.check(asan)
    sender = c.send_in_background(tail)
    expected = b"".join(payloads)
    got = c.read_data(len(expected), timeout=120)
    c.join_sender(sender)
    harness.assert_same(got, expected, "echoed bytes after the stall")
    c.send_close(1000)
    c.expect_close(1000)


PATTERN = bytes(range(256)) * 256  # 64 KiB; the stream is this, repeated


def firehose_handler(b, rec):
    """Backend that writes the pattern until 256 MiB or until closed;
    rec.received counts what it sent (it reads nothing)."""
    try:
        while rec.received < (256 << 20):
            rec.sock.sendall(PATTERN)
            rec.received += len(PATTERN)
    except OSError:
        return
    rec.sock.shutdown(socket.SHUT_WR)
    b.drain_to_eof(rec)


@SIZES
def test_client_never_reads_backend_firehose(gw, backends, asan, size):
    """The backend writes without end, the client reads nothing: once the
    stream stops (the firehose's send blocks behind a full wsgate) wsgate
    holds at most buffer_size toward the client."""
    hose = backends.custom(firehose_handler)
    bufsize = start(gw, hose.addr, size)
    c = gw.ws("/")
    rec = hose.wait_connections(1)
    with MemoryWatch(gw, "m", bufsize) as watch:
        watch.wait_held("down")
        harness.wait_until(stalled(lambda: rec.received), timeout=60,
                           what="the firehose to block")
    watch.check(asan)
    got = c.read_data(32 << 20, timeout=60, at_least=True)
    expected = (PATTERN * (len(got) // len(PATTERN) + 1))[:len(got)]
    harness.assert_same(got, expected, "firehose stream")


def stalled(progress, quiet=1.0):
    """A wait_until predicate: true once progress() has not changed for
    quiet seconds (a pause of a slow machine ends it early, which can only
    make the bounds checked after it easier to meet, never fail them)."""
    state = {"v": None, "since": 0.0}

    def pred():
        v, now = progress(), harness.time.monotonic()
        if v != state["v"]:
            state["v"], state["since"] = v, now
            return False
        return now - state["since"] >= quiet
    return pred


def never_read_handler(b, rec):
    """Backend that accepts and never reads (until the test ends)."""
    b.stopping.wait(120)


@SIZES
def test_backend_never_reads(gw, backends, asan, size):
    """The backend reads nothing: the client's sends block, wsgate holds at
    most buffer_size toward the backend."""
    stuck = backends.custom(never_read_handler)
    bufsize = start(gw, stuck.addr, size)
    c = gw.ws("/")
    stuck.wait_connections(1)
    with MemoryWatch(gw, "m", bufsize) as watch:
        send_until_stuck(c.sock, frames_of(bufsize))
        watch.wait_held("up")
    watch.check(asan)
