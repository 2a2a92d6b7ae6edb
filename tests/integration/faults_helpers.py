"""faults_helpers.py - helpers for test_faults.py (fault injection).

Resource accounting of the wsgate process (open fds, VmRSS) and backends that
misbehave in the ways test_faults.py needs. Everything else comes from
harness.py and conftest.py.
"""

import os
import socket
import struct
import threading
import time

import harness

# wsgate's close timeout (session.c CLOSE_WAIT) and what we allow on top of
# it for a loaded 2-core machine running the ASan build.
CLOSE_TIMEOUT = 5.0
MARGIN = 5.0


def fd_count(pid):
    """Number of open file descriptors of process pid."""
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_list(pid):
    """{fd: target} of process pid, for failure messages."""
    out = {}
    base = "/proc/%d/fd" % pid
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(os.path.join(base, name))
        except OSError:
            pass
    return out


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class Resources:
    """Baseline of a wsgate process's open fds (and RSS), taken once it is
    idle, and the check that it comes back there after the sessions end."""

    def __init__(self, gw):
        self.gw = gw
        self.pid = gw.proc.pid
        self.fds = fd_list(self.pid)
        self.fd_baseline = len(self.fds)
        self.rss_baseline = rss_kib(self.pid)

    def wait_fds_back(self, timeout=10.0, what="sessions ended"):
        """Poll until wsgate has no more open fds than at the baseline.
        Returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            n = fd_count(self.pid)
            if n <= self.fd_baseline:
                return time.monotonic() - t0
            if time.monotonic() >= deadline:
                now = fd_list(self.pid)
                extra = {k: v for k, v in now.items() if self.fds.get(k) != v}
                raise AssertionError(
                    "wsgate has %d open fds %.1fs after %s, baseline %d; new: %r"
                    % (n, timeout, what, self.fd_baseline, extra))
            time.sleep(0.05)

    def rss(self):
        return rss_kib(self.pid)


def check_rss_bounded(samples, asan, limit_kib, what):
    """samples: VmRSS (KiB) after each round of a repeated fault. RSS must not
    keep growing: the last round may exceed the first by at most limit_kib
    (four times that under ASan, whose quarantine holds freed memory)."""
    print("%s: VmRSS per round (KiB): %r" % (what, samples))
    if len(samples) < 2:
        return
    allowed = limit_kib * (4 if asan else 1)
    growth = samples[-1] - samples[0]
    assert growth <= allowed, ("wsgate VmRSS grew by %d KiB over %d rounds of %s (allowed %d)"
                               % (growth, len(samples) - 1, what, allowed))


def set_linger0(sock):
    """Make close() send a reset (RST) instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ---------------------------------------------------------------- backends


def reset_at_once_handler(b, rec):
    """Accept, then reset at once (SO_LINGER 0 close), reading nothing."""
    set_linger0(rec.sock)
    rec.sock.close()


def reset_on_event_handler(event, greeting=b""):
    """Send greeting, wait until event is set (e.g. the client got its 101),
    then reset."""
    def handler(b, rec):
        if greeting:
            rec.sock.sendall(greeting)
        event.wait(30)
        set_linger0(rec.sock)
        rec.sock.close()
    return handler


def echo_then_reset_handler(after_bytes):
    """Echo until after_bytes were received, then reset mid-stream."""
    def handler(b, rec):
        while rec.received < after_bytes:
            data = b.recv_some(rec, 65536)
            if not data:
                return
            rec.sock.sendall(data)
        set_linger0(rec.sock)
        rec.sock.close()
    return handler


# Send data, EOF (shut down the write side), keep reading until wsgate closes.
half_close_handler = harness.sender_handler


def never_read_handler(release):
    """Read nothing until release is set (or wsgate closes and the harness
    shuts the socket down); then drain to EOF."""
    def handler(b, rec):
        release.wait(120)
        b.drain_to_eof(rec)
        rec.sock.close()
    return handler


def dribble(sock, data, interval=1.0, stop=None):
    """Send data one byte per interval seconds."""
    for i in range(len(data)):
        if stop is not None and stop.is_set():
            return
        sock.sendall(data[i:i + 1])
        if i + 1 < len(data):
            time.sleep(interval)


def start_thread(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def close_frame(code=1000):
    return harness.build_frame(harness.OP_CLOSE, harness.close_payload(code))
