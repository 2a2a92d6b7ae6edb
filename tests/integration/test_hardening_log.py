"""Logging never blocks a worker (issue 11, DESIGN.md "Hardening").

wsgate runs with stderr on a pipe nobody reads (Docker's blocking log mode,
a stalled journald). 2,000 bad requests each log an access line: the pipe
fills at once, then the log queue (LOG_QUEUE_LINES lines in src/log.h), then
lines are dropped and counted. Meanwhile open sessions keep echoing within
100 ms, /metrics reports the drops, and SIGTERM drains and exits 0 within a
few seconds although the log thread is stuck in write(2)."""

import fcntl
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import OP_BINARY, Backend, Gateway, RawClient, echo_handler, route
from ops_helpers import scrape

QUEUE_LINES = 1024  # LOG_QUEUE_LINES in src/log.h
PIPE_BYTES = 4096   # the pipe's capacity, set below
MIN_LINE = 60       # no log line is shorter (timestamp, level, "access: client=...")
BAD = 2000
ECHO_BOUND = 0.100
DRAIN = 1.0


def bad_request(host, port, deadline):
    """One upgrade request without Sec-WebSocket-Key: answered 400 and
    logged. Returns the status, or None when no answer came in time."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as s:
            s.settimeout(max(0.1, min(2.0, deadline - time.monotonic())))
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    except (OSError, ValueError, IndexError):
        return None


class Echoer(threading.Thread):
    """Echo 16 bytes on each open session in turn until stopped; records
    every round trip (a missing echo counts as the time waited)."""

    def __init__(self, clients):
        super().__init__(daemon=True)
        self.clients = clients
        self.stop = threading.Event()
        self.times = []  # (start, round trip)
        self.failed = None

    def run(self):
        i = 0
        while not self.stop.is_set():
            c = self.clients[i % len(self.clients)]
            payload = b"%016d" % i
            t0 = time.monotonic()
            try:
                c.send_frame(OP_BINARY, payload)
                got = c.read_data(len(payload), timeout=5.0)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.times.append((t0, time.monotonic() - t0))
                self.failed = repr(e)
                return
            self.times.append((t0, time.monotonic() - t0))
            if got != payload:
                self.failed = "echo %r != %r" % (got, payload)
                return
            i += 1
            time.sleep(0.001)


@pytest.mark.deadline(90)
def test_unread_stderr_pipe(wsgate_binary, tmp_path):
    backend = Backend(echo_handler)
    gw = Gateway(wsgate_binary, tmp_path)
    cfg = gw.write_config({
        "gateway": {"workers": 2, "metrics_path": "/metrics", "log_level": "info",
                    "drain_timeout": "%gs" % DRAIN},
        "route:echo": route(backend.addr, "/echo"),
    })
    rfd, wfd = os.pipe()
    fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    assert fcntl.fcntl(wfd, fcntl.F_GETPIPE_SZ) == PIPE_BYTES
    proc = subprocess.Popen([wsgate_binary, "-c", cfg], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=wfd, env=gw._env(), cwd=gw.workdir)
    os.close(wfd)
    gw.proc = proc
    clients = []
    try:
        gw.wait_listening()
        for _ in range(4):  # on both workers, whatever the accept order
            c = RawClient(gw.host, gw.port)
            c.upgrade("/echo")
            clients.append(c)
        echoer = Echoer(clients)
        echoer.start()

        statuses = []
        lock = threading.Lock()
        deadline = time.monotonic() + 40

        def flood(n):
            for _ in range(n):
                if time.monotonic() > deadline:
                    return
                st = bad_request(gw.host, gw.port, deadline)
                with lock:
                    statuses.append(st)
                if st is None:
                    return  # a worker stopped answering: no point going on

        floods = [threading.Thread(target=flood, args=(BAD // 4,), daemon=True) for _ in range(4)]
        time.sleep(0.2)
        t0 = time.monotonic()
        for t in floods:
            t.start()
        for t in floods:
            t.join(45)
        t1 = time.monotonic()
        time.sleep(0.5)  # the queue is still full and stderr still unread
        echoer.stop.set()
        echoer.join(10)

        answered = sum(1 for s in statuses if s == 400)
        during = [d for start, d in echoer.times if t0 <= start <= t1]
        times = sorted(d for _, d in echoer.times)
        worst = times[-1] if times else None
        print("bad requests answered: %d/%d in %.2fs; echoes: %d (%d during the flood), worst "
              "%.1f ms, p99 %.1f ms" % (answered, BAD, t1 - t0, len(times), len(during),
                                       (worst or 0) * 1000,
                                       (times[int(len(times) * 0.99)] if times else 0) * 1000))
        assert answered == BAD, "only %d of %d bad requests answered 400 (statuses %r)" % (
            answered, BAD, sorted(set(statuses), key=str))
        assert echoer.failed is None, "echo failed: %s" % echoer.failed
        assert len(during) >= 5 and len(times) >= 50, (len(during), len(times))
        assert worst < ECHO_BOUND, "an echo took %.1f ms (bound %d ms)" % (
            worst * 1000, ECHO_BOUND * 1000)

        # Every line beyond what the pipe and the queue hold was dropped.
        m = scrape(gw)
        dropped = m.get("wsgate_log_lines_dropped_total")
        assert m.types.get("wsgate_log_lines_dropped_total") == "counter"
        floor = BAD - QUEUE_LINES - PIPE_BYTES // MIN_LINE
        print("dropped log lines: %s (at least %d expected)" % (dropped, floor))
        assert dropped is not None and dropped >= floor, (dropped, floor)

        # SIGTERM drains (sessions get 1001 after drain_timeout) and exits 0
        # although stderr still takes nothing.
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for c in clients:
            c.expect_close(1001, timeout=DRAIN + 5)
        rc = proc.wait(timeout=DRAIN + 5)
        took = time.monotonic() - t0
        print("SIGTERM to exit: %.2fs, exit status %d" % (took, rc))
        assert rc == 0
        assert took < DRAIN + 3, "exit took %.2fs" % took

        # What did reach stderr is whole lines, none cut or interleaved.
        os.set_blocking(rfd, False)
        out = b""
        while True:
            try:
                chunk = os.read(rfd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            out += chunk
        assert out.endswith(b"\n") and len(out) <= PIPE_BYTES, len(out)
        for line in out.decode().splitlines():
            assert len(line) + 1 >= MIN_LINE and line[:4].isdigit() and line[23:24] == "Z", line
            assert " info: " in line or " warn: " in line or " access: " in line, line
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(rfd)
        backend.close()
