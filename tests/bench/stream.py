#!/usr/bin/python3
"""stream.py - `make bench-stream`: what compression and recording cost.

  down  backend -> client bulk of a terminal-like text payload (TOTAL bytes)
        through one session: compression off (this build and $WSGATE_BASE,
        e.g. the main branch), compression on (level 1, window 12), and
        recording on (raw): payload MB/s, wire ratio, wsgate CPU s/GB. Each
        configuration runs STREAM_ROUNDS times, in alternation, and the
        medians are reported; a recording must hold every relayed byte (its
        chunk lengths are summed) or the run says INCOMPLETE.
  idle  RSS per idle session (N sessions, each having sent and received one
        compressed message, so both zlib streams exist), compression off
        and on; the difference is what one idle compressing session holds.
Figures only: nothing here is a timed assertion.
Env: WSGATE, WSGATE_BASE, STREAM_TOTAL (MB, default 1000: a round of
recording or of plain relay then lasts about a second, not a tenth, so the
start of a process and of a session weighs little), STREAM_IDLE (1000),
STREAM_ROUNDS (3), STREAM_PARTS (comma-separated subset of
down,deflate,record,idle; default all)."""

import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

WSGATE = os.environ.get("WSGATE", os.path.join(HERE, "..", "..", "build", "src", "wsgate"))
BASE = os.environ.get("WSGATE_BASE")
TOTAL = int(os.environ.get("STREAM_TOTAL", "1000")) << 20
IDLE = int(os.environ.get("STREAM_IDLE", "1000"))
ROUNDS = int(os.environ.get("STREAM_ROUNDS", "3"))
PARTS = os.environ.get("STREAM_PARTS", "down,deflate,record,idle").split(",")


def text_block(n):
    words = [b"ls", b"-la", b"drwxr-xr-x", b"root", b"4096", b"Dec", b"/var/log", b"\x1b[0m",
             b"\x1b[01;34m", b"syslog", b"kern.log", b"\r\n", b"total", b"12", b"journal"]
    rnd = harness.random_bytes(n, 1)
    out = bytearray()
    i = 0
    while len(out) < n:
        out += words[rnd[i % len(rnd)] % len(words)] + (b" " if rnd[i % len(rnd)] & 1 else b"\t")
        i += 1
    return bytes(out[:n])


BLOCK = text_block(1 << 20)


def sender(total):
    def handler(b, rec):
        left = total
        while left > 0:
            k = min(left, len(BLOCK))
            rec.sock.sendall(BLOCK[:k])
            left -= k
        rec.sock.shutdown(socket.SHUT_WR)
    return handler


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(binary, workdir, routes):
    g = harness.Gateway(binary, workdir)
    g.start({"gateway": {"workers": 1, "log_level": "warn"}, **routes})
    return g


def read_session(c, total):
    """Read frames until the close frame; returns wire bytes."""
    wire = 0
    buf = bytearray(c.buf)  # what came with the 101
    c.buf.clear()
    c.sock.settimeout(60)
    while True:
        while len(buf) < 2 or len(buf) < frame_len(buf):
            d = c.sock.recv(1 << 20)
            if not d:
                return wire
            buf += d
        n = frame_len(buf)
        op = buf[0] & 15
        wire += n
        del buf[:n]
        if op == 8:
            return wire


def frame_len(b):
    n = b[1] & 127
    if n < 126:
        return 2 + n
    if n == 126:
        return 4 + struct.unpack("!H", bytes(b[2:4]))[0] if len(b) >= 4 else 1 << 62
    return 10 + struct.unpack("!Q", bytes(b[2:10]))[0] if len(b) >= 10 else 1 << 62


def down(name, binary, opts, offer):
    backend = harness.Backend(sender(TOTAL))
    with tempfile.TemporaryDirectory() as d:
        if "record" in opts:
            os.mkdir(os.path.join(d, "rec"))
            opts = dict(opts, record=os.path.join(d, "rec"))
        g = start(binary, d, {"route:b": harness.route(backend.addr, "/", **opts)})
        c = harness.RawClient(g.host, g.port, 60)
        c.upgrade("/", extra_headers=[("Sec-WebSocket-Extensions", offer)] if offer else ())
        cpu0, t0 = cpu_seconds(g.proc.pid), time.monotonic()
        wire = read_session(c, TOTAL)
        dt, cpu = time.monotonic() - t0, cpu_seconds(g.proc.pid) - cpu0
        c.close()
        note = ""
        if "record" in opts:
            g.stop()  # the writer ends every file
            files = os.listdir(opts["record"])
            got = recorded_payload(os.path.join(opts["record"], files[0])) if files else None
            note = "  recorded %s payload bytes%s" % (
                got, "" if len(files) == 1 and got == TOTAL else " INCOMPLETE")
        g.stop()
    backend.close()
    print("%-22s %8.1f MB/s  ratio %5.2f  wsgate CPU %6.2f s/GB%s" % (
        name, TOTAL / dt / 1e6, TOTAL / wire, cpu / (TOTAL / 1e9), note))
    return TOTAL / dt, cpu / (TOTAL / 1e9)


def recorded_payload(path):
    """Payload bytes of a raw recording that ended normally, else None."""
    with open(path, "rb") as f:
        blob = f.read()
    pos, total = blob.index(b"\n\n") + 2, 0
    while pos < len(blob):
        nl = blob.index(b"\n", pos)
        parts = blob[pos:nl].split(b" ")
        if parts[1] == b"stop":
            return total if parts[2] == b"closed" else None
        total += int(parts[2])
        pos = nl + 1 + int(parts[2]) + 1
    return None


def idle(name, opts, offer):
    backend = harness.Backend(harness.echo_handler)
    msg = BLOCK[:2000]
    with tempfile.TemporaryDirectory() as d:
        g = start(WSGATE, d, {"route:i": harness.route(backend.addr, "/", **opts)})
        time.sleep(0.3)
        rss0 = g.rss_kib()
        clients = []
        for i in range(IDLE):
            c = harness.RawClient(g.host, g.port, 30)
            c.upgrade("/", extra_headers=[("Sec-WebSocket-Extensions", offer)] if offer else ())
            comp = zlib.compressobj(1, zlib.DEFLATED, -12)
            z = comp.compress(msg) + comp.flush(zlib.Z_SYNC_FLUSH)
            c.send(harness.build_frame(harness.OP_BINARY, z[:-4] if offer else msg,
                                       rsv=4 if offer else 0))
            got = 0
            inf = zlib.decompressobj(-12)
            while got < len(msg):
                f = c.recv_frame()
                got += len(inf.decompress(f.payload + b"\0\0\xff\xff") if f.rsv else f.payload)
            clients.append(c)
        time.sleep(0.5)
        per = (g.rss_kib() - rss0) / IDLE
        for c in clients:
            c.close()
        g.stop()
    backend.close()
    print("%-22s %8.1f KiB RSS per idle session (%d sessions)" % (name, per, IDLE))
    return per


def main():
    print("load average: %s" % open("/proc/loadavg").read().split()[:3])
    z = dict(compression="on", compression_level=1, compression_window_bits=12)
    offer = "permessage-deflate; client_max_window_bits"
    plan = []
    if BASE and "down" in PARTS:
        plan.append(("off (base)", BASE, {}, None))
    if "down" in PARTS or "record" in PARTS:
        plan.append(("off (this build)", WSGATE, {}, None))
    if "deflate" in PARTS:
        plan.append(("on, level 1, 12 bits", WSGATE, z, offer))
    if "record" in PARTS:
        plan.append(("off, recording raw", WSGATE, {"record": "x"}, None))
    rates, cpus = {}, {}
    for _ in range(ROUNDS):
        for name, binary, opts, off in plan:
            rate, cpu = down(name, binary, opts, off)
            rates.setdefault(name, []).append(rate)
            cpus.setdefault(name, []).append(cpu)
    if plan:
        print("medians of %d rounds, %d MB each:" % (ROUNDS, TOTAL >> 20))
    for name, _, _, _ in plan:
        print("  %-22s %8.1f MB/s  wsgate CPU %5.2f s/GB" % (
            name, statistics.median(rates[name]) / 1e6, statistics.median(cpus[name])))
    if "record" in PARTS:
        on, off = rates["off, recording raw"], rates["off (this build)"]
        print("recording on / off throughput: %.0f%% (median of the per-round ratios %.0f%%)" % (
            100 * statistics.median(on) / statistics.median(off),
            100 * statistics.median(a / b for a, b in zip(on, off))))
    if "idle" in PARTS:
        a = idle("idle, compression off", {}, None)
        b = idle("idle, compression on", z, offer)
        print("idle compressing session costs %.1f KiB more than a plain one" % (b - a))


if __name__ == "__main__":
    main()
