#!/usr/bin/python3
"""soak.py - many WebSocket sessions through wsgate for a long time.

    make soak [SOAK_SECONDS=600] [SOAK_CONNECTIONS=9000] [SOAK_ARGS=...]
    /usr/bin/python3 tests/soak/soak.py --wsgate build/src/wsgate \
        [--seconds 600] [--connections 9000] [--interval 3] [--report FILE]

Starts an echo backend (this script in --echo-server mode, a separate
process so that neither process needs more than ~9,000 sockets), starts
wsgate with a generated configuration (one route "/" to the echo backend),
opens the connections and keeps continuous echo traffic on every one: each
connection sends a binary message (a 16-byte header with magic, connection
id, sequence number and length, then random bytes; 64..2048 bytes in all),
waits until all of it came back, pauses a random part of --interval, and
sends the next. Every byte that comes back is compared with what was sent,
in order, so loss, duplication, reordering and corruption are all caught.

At the end it stops sending, waits for the echoes still in flight, closes
every session (close 1000, answered by 1000) and reports: messages and bytes
sent/received/lost, corrupt bytes, sessions dropped, and wsgate's VmRSS and
open fds before the connections, once they are all up (start), at the end
of the traffic (end) and after all are closed. Exit status 0 only when no
byte was lost or corrupted, no session dropped, RSS grew less than
--max-rss-growth percent from start to end and the fds came back to the
count before the connections.

With --record DIR (make soak-record: 9,000 connections for 2 minutes) every
session is recorded (raw) in DIR, and the soak passes only when each
session has exactly one recording (found by the client port in its header)
whose "i" chunks sum to the bytes that session sent, whose "o" chunks sum to
the bytes it got back, and which ends with "stop closed".
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAGIC = b"SOAK"
HEADER = struct.Struct("!4sIII")  # magic, connection id, sequence, total length

OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x2, 0x8, 0x9, 0xA


# ---------------------------------------------------------------- echo backend


class EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close our side too


def run_echo_server(port_file):
    raise_nofile()

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoServer, "127.0.0.1", 0, backlog=8192,
                                          reuse_address=True)
        port = server.sockets[0].getsockname()[1]
        with open(port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(port_file + ".tmp", port_file)
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        await stop
        server.close()

    asyncio.run(main())


# ---------------------------------------------------------------- process stats


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- WebSocket client


class Stats:
    def __init__(self):
        self.msgs_sent = self.msgs_recv = 0
        self.bytes_sent = self.bytes_recv = 0
        self.corrupt = 0
        self.handshake_failed = 0
        self.dropped = 0
        self.dropped_why = {}
        self.closed_clean = 0
        self.close_bad = 0
        self.pings = 0
        self.first_problems = []

    def problem(self, text):
        if len(self.first_problems) < 20:
            self.first_problems.append(text)


def mask_bytes(data, key):
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def client_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


class Client(asyncio.Protocol):
    """One WebSocket session: handshake, then messages echoed one at a time."""

    def __init__(self, soak, cid):
        self.soak = soak
        self.cid = cid
        self.stats = soak.stats
        self.transport = None
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.buf = bytearray()
        self.upgraded = False
        self.expect = bytearray()  # sent, not echoed yet
        self.msg_starts = []       # (offset in the stream, seq) of messages in flight
        self.stream_off = 0        # bytes of echo verified so far
        self.seq = 0
        self.sent = self.recv = 0  # payload bytes of this session
        self.port = None           # local port: the "client:" of its recording
        self.timer = None
        self.closing = False       # we sent our close frame
        self.closed = False
        self.close_code = None
        self.opened = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()

    # -- asyncio
    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = transport.get_extra_info("sockname")[1]
        req = ("GET /soak/%d HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (self.cid, self.soak.host_header, self.key))
        transport.write(req.encode())

    def data_received(self, data):
        self.buf += data
        if not self.upgraded:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(self.buf[:i]).decode("latin-1")
            del self.buf[:i + 4]
            want = base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()
            if not head.startswith("HTTP/1.1 101 ") or ("Sec-WebSocket-Accept: " + want) not in head:
                self.stats.handshake_failed += 1
                self.stats.problem("conn %d: handshake failed: %r" % (self.cid, head[:200]))
                self.finish("handshake failed")
                return
            self.upgraded = True
            if not self.opened.done():
                self.opened.set_result(True)
        self.parse_frames()

    def connection_lost(self, exc):
        if not self.closing:
            self.finish("TCP closed by wsgate (%s)" % (exc or "EOF"))
            return
        if self.close_code is None and not self.closed:
            self.stats.close_bad += 1
            self.stats.problem("conn %d: TCP closed without a close reply" % self.cid)
        self.finish(None)

    # -- frames
    def parse_frames(self):
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack_from("!H", buf, 2)[0]
                pos = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                pos = 10
            if b1 & 0x80:
                self.protocol_problem("masked server frame")
                return
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos:pos + n])
            del buf[:pos + n]
            op = b0 & 0x0F
            if op in (OP_BINARY, 0):
                self.on_data(payload)
            elif op == OP_PING:
                self.stats.pings += 1
                self.transport.write(client_frame(OP_PONG, payload))
            elif op == OP_PONG:
                pass
            elif op == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if self.closing:
                    if self.close_code == 1000:
                        self.stats.closed_clean += 1
                    else:
                        self.stats.close_bad += 1
                        self.stats.problem("conn %d: close reply %r" % (self.cid, payload))
                else:
                    self.finish("close %d %r from wsgate" % (self.close_code, payload[2:60]))
                return
            else:
                self.protocol_problem("opcode %d" % op)
                return

    def protocol_problem(self, what):
        self.stats.problem("conn %d: %s" % (self.cid, what))
        self.finish(what)

    def on_data(self, payload):
        n = len(payload)
        self.stats.bytes_recv += n
        self.recv += n
        if n > len(self.expect) or self.expect[:n] != payload:
            # Find the first bad byte and the message it belongs to.
            m = min(n, len(self.expect))
            bad = next((i for i in range(m) if self.expect[i] != payload[i]), m)
            off = self.stream_off + bad
            seq = next((s for o, s in reversed(self.msg_starts) if o <= off), None)
            self.stats.corrupt += n - bad
            self.stats.problem("conn %d: echo differs at stream offset %d (message seq %r); "
                               "got %d bytes, %d expected" % (self.cid, off, seq, n,
                                                              len(self.expect)))
            self.finish("corrupt echo")
            return
        del self.expect[:n]
        self.stream_off += n
        while len(self.msg_starts) > 1 and self.msg_starts[1][0] <= self.stream_off:
            self.msg_starts.pop(0)
        if not self.expect:
            self.msg_starts.clear()
            self.stats.msgs_recv += 1
            self.schedule()

    # -- traffic
    def schedule(self):
        if self.soak.stopping or self.closed:
            return
        delay = random.uniform(0.5, 1.5) * self.soak.interval
        self.timer = asyncio.get_running_loop().call_later(delay, self.send_message)

    def send_message(self):
        self.timer = None
        if self.soak.stopping or self.closed:
            return
        self.seq += 1
        total = random.randint(64, 2048)
        body = HEADER.pack(MAGIC, self.cid, self.seq, total) + os.urandom(total - HEADER.size)
        self.msg_starts.append((self.stream_off + len(self.expect), self.seq))
        self.expect += body
        self.transport.write(client_frame(OP_BINARY, body))
        self.stats.msgs_sent += 1
        self.stats.bytes_sent += total
        self.sent += total

    def start_close(self):
        if self.closed or self.closing:
            return
        if self.timer:
            self.timer.cancel()
        self.closing = True
        self.transport.write(client_frame(OP_CLOSE, struct.pack("!H", 1000)))

    def finish(self, why):
        if self.closed:
            return
        self.closed = True
        if self.timer:
            self.timer.cancel()
        if why is not None:
            if self.upgraded:
                self.stats.dropped += 1
                key = why.split(" (")[0][:60]
                self.stats.dropped_why[key] = self.stats.dropped_why.get(key, 0) + 1
                self.stats.problem("conn %d dropped: %s" % (self.cid, why))
        if self.transport is not None:
            self.transport.close()
        if not self.opened.done():
            self.opened.set_result(False)
        if not self.done.done():
            self.done.set_result(why)


# ---------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args):
        self.args = args
        self.interval = args.interval
        self.stats = Stats()
        self.stopping = False
        self.clients = []
        self.host_header = "127.0.0.1"

    def log(self, fmt, *a):
        print("[%7.1fs] " % (time.monotonic() - self.t0) + (fmt % a), flush=True)

    def snapshot(self, name):
        pid = self.gw.pid
        snap = {"rss_kib": rss_kib(pid), "fds": fd_count(pid), "cpu_s": round(cpu_seconds(pid), 1)}
        self.snaps[name] = snap
        self.log("wsgate %s: VmRSS %d KiB, %d open fds, %.1f CPU s", name, snap["rss_kib"],
                 snap["fds"], snap["cpu_s"])
        return snap

    def start_processes(self, tmp):
        port_file = os.path.join(tmp, "echo.port")
        self.echo = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--echo-server",
                                      port_file], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            assert self.echo.poll() is None, "echo server exited"
            assert time.monotonic() < deadline, "echo server did not start"
            time.sleep(0.05)
        with open(port_file) as f:
            echo_port = int(f.read())
        self.port = free_port()
        self.host_header = "127.0.0.1:%d" % self.port
        conf = os.path.join(tmp, "soak.ini")
        with open(conf, "w") as f:
            f.write("[gateway]\nlisten = 127.0.0.1:%d\nmax_connections = %d\n"
                    "log_level = %s\n\n[route:echo]\npath = /\nbackend = 127.0.0.1:%d\n"
                    % (self.port, self.args.connections + 1000, self.args.log_level, echo_port))
            if self.args.record:
                f.write("record = %s\n" % self.args.record)
        self.gw_log = os.path.join(tmp, "wsgate.stderr")
        self.gw_err = open(self.gw_log, "wb")
        self.gw = subprocess.Popen([self.args.wsgate, "-c", conf], stdin=subprocess.DEVNULL,
                                   stdout=self.gw_err, stderr=self.gw_err)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.gw.poll() is None, "wsgate exited: %s" % open(self.gw_log).read()
                assert time.monotonic() < deadline, "wsgate did not listen"
                time.sleep(0.05)
        self.log("echo backend on %d (pid %d), wsgate on %d (pid %d)", echo_port, self.echo.pid,
                 self.port, self.gw.pid)

    async def open_all(self):
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.args.open_concurrency)
        failed = 0

        async def open_one(cid):
            nonlocal failed
            async with sem:
                c = Client(self, cid)
                try:
                    await loop.create_connection(lambda: c, "127.0.0.1", self.port)
                except OSError as e:
                    failed += 1
                    self.stats.problem("conn %d: connect failed: %s" % (cid, e))
                    return None
                ok = await asyncio.wait_for(c.opened, 60)
                return c if ok else None

        t = time.monotonic()
        results = []
        batch = 500
        for i in range(0, self.args.connections, batch):
            n = min(batch, self.args.connections - i)
            results += await asyncio.gather(*(open_one(cid) for cid in range(i, i + n)))
            self.log("%d connections open", sum(1 for r in results if r is not None))
        self.clients = [c for c in results if c is not None]
        self.log("opened %d of %d sessions in %.1fs (%d connect failures, %d handshake failures)",
                 len(self.clients), self.args.connections, time.monotonic() - t, failed,
                 self.stats.handshake_failed)
        return failed

    async def run(self):
        self.t0 = time.monotonic()
        self.snaps = {}
        with tempfile.TemporaryDirectory(prefix="wsgate-soak.") as tmp:
            self.start_processes(tmp)
            try:
                return await self.run_traffic()
            finally:
                self.stop_processes()

    async def run_traffic(self):
        args = self.args
        stats = self.stats
        await asyncio.sleep(0.5)
        self.snapshot("before connections")
        connect_failed = await self.open_all()
        # Let traffic settle into its steady state, then take the start sample.
        for c in self.clients:
            c.schedule()
        await asyncio.sleep(min(10.0, max(1.0, args.seconds / 10)))
        start = self.snapshot("start")
        t_start = time.monotonic()
        last = (t_start, stats.msgs_recv, stats.bytes_recv)
        while time.monotonic() - t_start < args.seconds:
            await asyncio.sleep(min(10.0, args.seconds - (time.monotonic() - t_start)))
            now = time.monotonic()
            open_now = sum(1 for c in self.clients if not c.closed)
            rate = (stats.msgs_recv - last[1]) / max(0.001, now - last[0])
            brate = (stats.bytes_recv - last[2]) / max(0.001, now - last[0])
            last = (now, stats.msgs_recv, stats.bytes_recv)
            self.log("%d sessions open, %.0f msg/s, %.2f MB/s echoed, %d dropped, "
                     "wsgate VmRSS %d KiB, %d fds", open_now, rate, brate / 1e6, stats.dropped,
                     rss_kib(self.gw.pid), fd_count(self.gw.pid))
            if self.gw.poll() is not None:
                self.log("wsgate exited with %d", self.gw.returncode)
                break
        # Stop sending; wait for every echo in flight.
        self.stopping = True
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(c.closed or not c.expect for c in self.clients):
                break
            await asyncio.sleep(0.2)
        end = self.snapshot("end")
        lost = sum(len(c.expect) for c in self.clients)
        lost_open = sum(len(c.expect) for c in self.clients if not c.closed)

        # Close everything: close 1000 and its reply.
        for c in self.clients:
            c.start_close()
        pending = [c.done for c in self.clients if not c.done.done()]
        if pending:
            await asyncio.wait(pending, timeout=60)
        still_open = sum(1 for c in self.clients if not c.done.done())
        for c in self.clients:
            c.finish(None)
        # wsgate must come back to where it was before the connections.
        before = self.snaps["before connections"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and fd_count(self.gw.pid) > before["fds"]:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        after = self.snapshot("after closing all")

        recorded = recorded_bytes(args.record) if args.record else None
        rec_check = check_recordings(recorded[3], recorded[4], self.clients) \
            if args.record else None
        rss_growth = 100.0 * (end["rss_kib"] - start["rss_kib"]) / max(1, start["rss_kib"])
        report = {
            "seconds": args.seconds,
            "connections_requested": args.connections,
            "sessions_opened": len(self.clients),
            "connect_failures": connect_failed,
            "handshake_failures": stats.handshake_failed,
            "messages_sent": stats.msgs_sent,
            "messages_echoed": stats.msgs_recv,
            "bytes_sent": stats.bytes_sent,
            "bytes_received": stats.bytes_recv,
            "bytes_lost": lost,
            "bytes_lost_on_open_sessions": lost_open,
            "bytes_corrupt": stats.corrupt,
            "sessions_dropped": stats.dropped,
            "dropped_why": stats.dropped_why,
            "pings_from_wsgate": stats.pings,
            "clean_closes": stats.closed_clean,
            "bad_close_replies": stats.close_bad,
            "sessions_not_closed_in_60s": still_open,
            "wsgate": self.snaps,
            "rss_growth_percent_start_to_end": round(rss_growth, 2),
            "problems": stats.first_problems,
        }
        if recorded is not None:
            report["recorded_files"], report["recorded_in"], report["recorded_out"] = recorded[:3]
            report["recordings_matching"], report["recording_problems"] = rec_check
        ok = (lost == 0 and stats.corrupt == 0 and stats.dropped == 0 and connect_failed == 0
              and stats.handshake_failed == 0 and len(self.clients) == args.connections
              and stats.close_bad == 0 and still_open == 0
              and rss_growth < args.max_rss_growth and after["fds"] <= before["fds"]
              and (recorded is None or (recorded[0] == len(self.clients)
                                        and recorded[1] == stats.bytes_sent
                                        and recorded[2] == stats.bytes_recv
                                        and rec_check[0] == len(self.clients)
                                        and not rec_check[1]))
              and self.gw.poll() is None)
        report["result"] = "PASS" if ok else "FAIL"
        self.print_report(report)
        if args.report:
            with open(args.report, "w") as f:
                json.dump(report, f, indent=2)
        return 0 if ok else 1

    def print_report(self, r):
        s = r["wsgate"]
        print("\n==== wsgate soak report ====")
        print("duration            %d s of traffic, %d of %d sessions opened"
              % (r["seconds"], r["sessions_opened"], r["connections_requested"]))
        print("messages            %d sent, %d echoed" % (r["messages_sent"], r["messages_echoed"]))
        print("bytes               %d sent, %d received, %d lost, %d corrupt"
              % (r["bytes_sent"], r["bytes_received"], r["bytes_lost"], r["bytes_corrupt"]))
        print("sessions            %d dropped %r, %d connect and %d handshake failures, "
              "%d clean closes, %d bad close replies, %d not closed"
              % (r["sessions_dropped"], r["dropped_why"], r["connect_failures"],
                 r["handshake_failures"], r["clean_closes"], r["bad_close_replies"],
                 r["sessions_not_closed_in_60s"]))
        if "recorded_files" in r:
            print("recorded            %d files, %d bytes in, %d bytes out; %d sessions "
                  "recorded exactly (in = sent, out = echoed, ended \"closed\")"
                  % (r["recorded_files"], r["recorded_in"], r["recorded_out"],
                     r["recordings_matching"]))
            for p in r["recording_problems"]:
                print("  " + p)
        for name in ("before connections", "start", "end", "after closing all"):
            if name in s:
                print("wsgate %-19s VmRSS %7d KiB  fds %6d  CPU %7.1f s"
                      % (name, s[name]["rss_kib"], s[name]["fds"], s[name]["cpu_s"]))
        print("RSS growth start->end  %.2f%% (limit %.1f%%)"
              % (r["rss_growth_percent_start_to_end"], self.args.max_rss_growth))
        if r["problems"]:
            print("first problems:")
            for p in r["problems"]:
                print("  " + p)
        print("result              %s" % r["result"])

    def stop_processes(self):
        for p in (getattr(self, "gw", None), getattr(self, "echo", None)):
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if hasattr(self, "gw_err"):
            self.gw_err.close()
            with open(self.gw_log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            lines = [ln for ln in text.splitlines() if " access: " not in ln]
            if lines:
                print("---- wsgate stderr (without access lines), last 20 ----")
                print("\n".join(lines[-20:]))
            if self.gw.returncode not in (0, None):
                print("wsgate exit status %d" % self.gw.returncode)


def parse_recording(blob):
    """(client port, "i" bytes, "o" bytes, stop reason or None when the
    file has no stop line yet) of a raw recording; ValueError when it is
    not one."""
    end = blob.index(b"\n\n")
    head = dict(ln.split(b": ", 1) for ln in blob[:end].split(b"\n")[1:])
    if not blob.startswith(b"WSREC 1\n") or b"client" not in head:
        raise ValueError("no WSREC header")
    port = int(head[b"client"].rsplit(b":", 1)[1])
    pos, i, o = end + 2, 0, 0
    while pos < len(blob):
        nl = blob.index(b"\n", pos)
        parts = blob[pos:nl].split(b" ", 2)
        if parts[1] == b"stop":
            return port, i, o, parts[2].decode()
        n = int(parts[2])
        if parts[1] == b"i":
            i += n
        elif parts[1] == b"o":
            o += n
        else:
            raise ValueError("bad chunk line %r" % blob[pos:nl][:80])
        pos = nl + 1 + n + 1
    return port, i, o, None


def recorded_bytes(d, settle=30):
    """(files, "i" bytes, "o" bytes, {client port: [(i, o, stop reason)]},
    [unreadable files]) of the raw recordings in d, once every file ends
    with its stop line (the writer closes them off the loop)."""
    deadline = time.monotonic() + settle
    while True:
        files = ins = outs = 0
        per, bad = {}, []
        complete = True
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                blob = f.read()
            files += 1
            try:
                port, i, o, why = parse_recording(blob)
            except (ValueError, IndexError) as e:
                bad.append("%s: %s" % (name, e))
                complete = False
                continue
            complete = complete and why is not None
            ins += i
            outs += o
            per.setdefault(port, []).append((i, o, why))
        if complete or time.monotonic() > deadline:
            return files, ins, outs, per, bad


def check_recordings(per, bad, clients):
    """(sessions whose one recording holds exactly the bytes they sent as
    "i" and got back as "o" and ended "closed", first problems)."""
    good, problems = 0, ["unreadable recording " + b for b in bad[:10]]
    for c in clients:
        recs = per.get(c.port, [])
        if recs == [(c.sent, c.recv, "closed")]:
            good += 1
        elif len(problems) < 10:
            problems.append("conn %d (port %s): sent %d, echoed %d, recordings (i, o, stop) %r"
                            % (c.cid, c.port, c.sent, c.recv, recs))
    return good, problems


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--echo-server":
        run_echo_server(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wsgate", required=True, help="the wsgate binary")
    ap.add_argument("--seconds", type=float, default=600, help="traffic duration")
    ap.add_argument("--connections", type=int, default=9000)
    ap.add_argument("--interval", type=float, default=3.0,
                    help="mean pause between a message's echo and the next message")
    ap.add_argument("--open-concurrency", type=int, default=200)
    ap.add_argument("--max-rss-growth", type=float, default=5.0, help="percent, start to end")
    ap.add_argument("--log-level", default="warn", help="wsgate log_level")
    ap.add_argument("--report", help="also write the report as JSON to this file")
    ap.add_argument("--record", help="record every session in this directory (record = DIR); "
                    "the recorded bytes must equal the bytes relayed")
    args = ap.parse_args()
    soft, hard = raise_nofile()
    if soft < args.connections + 200:
        print("soak: open-files limit %d is too low for %d connections" % (soft, args.connections))
        return 1
    return asyncio.run(Soak(args).run())


if __name__ == "__main__":
    sys.exit(main())
