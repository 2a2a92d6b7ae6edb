"""Client sockets have TCP_NODELAY: the small writes after a handshake (TLS
session tickets, the 101, the first frames) must never wait for the client's
delayed ACK (40 ms on Linux, up to 200 ms on Windows).

The test takes a duplicate of wsgate's own accepted socket out of the
process with pidfd_open + pidfd_getfd (Linux 5.6; needs root or
CAP_SYS_PTRACE over wsgate, which the suite has) and reads the option on it.
"""

import ctypes
import os
import socket

import harness
from harness import route
from tls_helpers import Pki, client_context, tls_config

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def _syscall(*args):
    r = libc.syscall(*[ctypes.c_long(a) for a in args])
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def gateway_socket(gw, match, what):
    """A duplicate of the first connected socket of wsgate for which
    match(sock) is true."""
    pidfd = _syscall(SYS_PIDFD_OPEN, gw.proc.pid, 0)
    try:
        for name in os.listdir("/proc/%d/fd" % gw.proc.pid):
            try:
                if not os.readlink("/proc/%d/fd/%s" % (gw.proc.pid, name)).startswith("socket:"):
                    continue
            except OSError:
                continue
            s = socket.socket(fileno=_syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0))
            try:
                if s.type == socket.SOCK_STREAM and match(s):
                    return s
            except OSError:
                pass
            s.close()
    finally:
        os.close(pidfd)
    raise AssertionError("no socket in wsgate is connected to %s" % what)


def gateway_socket_of(gw, client):
    """A duplicate of the socket wsgate accepted for client (a connected
    socket.socket on this side)."""
    mine = client.getsockname()
    return gateway_socket(gw, lambda s: s.getpeername() == mine, repr(mine))


def nodelay(s):
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_ws_client_socket_has_nodelay(gw, echo):
    gw.start({"route:echo": route(echo.addr, "/")})
    c = gw.ws("/")
    s = gateway_socket_of(gw, c.sock)
    try:
        assert s.getsockname()[1] == gw.port, "the accepted socket, not the backend's"
        assert nodelay(s) == 1
    finally:
        s.close()


def test_client_socket_has_nodelay_before_the_upgrade(gw, echo):
    """Set when accept() returns, not later in the session."""
    gw.start({"route:echo": route(echo.addr, "/")})
    c = socket.create_connection((gw.host, gw.port), timeout=10)
    try:
        got = {}

        def found():
            try:
                got["s"] = gateway_socket_of(gw, c)
                return True
            except AssertionError:
                return False

        harness.wait_until(found, what="wsgate to accept the connection")
        assert nodelay(got["s"]) == 1
        got["s"].close()
    finally:
        c.close()


def test_wss_client_socket_has_nodelay(gw, echo, tmp_path):
    pki = Pki(tmp_path / "pki")
    pki.ca_ = pki.ca("ca", "nodelay test CA")
    pki.srv = pki.server("srv", pki.ca_)
    gw.start(tls_config(gw, {"cert": pki.srv.cert, "key": pki.srv.key},
                        {"echo": route(echo.addr, "/")}))
    raw = socket.create_connection((gw.host, gw.port), timeout=10)
    ss = client_context(pki.ca_).wrap_socket(raw, server_hostname="localhost")
    try:
        s = gateway_socket_of(gw, ss)
        try:
            assert nodelay(s) == 1
        finally:
            s.close()
    finally:
        ss.close()


def gateway_backend_socket(gw, backend_port):
    """A duplicate of wsgate's socket connected to the backend port."""
    return gateway_socket(gw, lambda s: s.getpeername()[1] == backend_port,
                          "port %d" % backend_port)


def test_backend_keepalive_once_the_session_lives(gw, echo):
    """DESIGN.md: backend sockets use TCP keepalive (60 s idle, 10 s
    interval, 6 probes). It is armed once a relay has lived 2 s, so the
    short sessions of connection churn skip its four setsockopt calls."""
    gw.start({"route:echo": route(echo.addr, "/")})
    c = gw.ws("/")
    c.send_frame(harness.OP_BINARY, b"x")
    assert c.read_data(1) == b"x"
    s = gateway_backend_socket(gw, echo.port)
    try:
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        harness.wait_until(lambda: s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1,
                           timeout=4, what="SO_KEEPALIVE on the backend socket")
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 6
    finally:
        s.close()
