"""Unix-socket listeners (mode, stale file replaced, live socket and other
files refused, file removed at exit and when a reload drops it), websockify's
--unix-listen, and systemd socket activation (a bound socket passed as fd 3
with LISTEN_FDS/LISTEN_PID as systemd does)."""

import os
import signal
import socket
import stat
import subprocess
import time

import harness
from harness import OP_BINARY, build_frame, route


def unix_client(path, timeout=harness.DEFAULT_TIMEOUT):
    """A harness.RawClient over a Unix socket."""
    c = harness.RawClient.__new__(harness.RawClient)
    c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.sock.settimeout(timeout)
    c.sock.connect(path)
    c.buf = bytearray()
    c.eof = False
    c.key = None
    c.response = None
    c.controls = []
    c.close_sent = False
    return c


def echo_through(c, data=b"hello over unix"):
    c.upgrade("/")
    c.send(build_frame(OP_BINARY, data))
    assert c.read_data(len(data)) == data
    c.close()


def config(gw, echo, *listens):
    return {"gateway": {"listen": [gw.listen] + list(listens)},
            "route:echo": route(echo.addr, "/")}


def test_unix_listener_relay_mode_and_removal(gw, echo, tmp_path):
    path = str(tmp_path / "ws.sock")
    gw.start(config(gw, echo, "unix:%s mode=0640" % path))
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    for _ in range(3):  # every worker's watcher shares the one socket
        echo_through(unix_client(path))
    rc, problems = gw.stop()
    assert rc == 0 and not problems, problems
    assert not os.path.exists(path), "socket file left behind at exit"


def test_default_mode_and_stale_file_replaced(gw, echo, tmp_path):
    path = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays; nobody listens
    assert os.path.exists(path)
    gw.start(config(gw, echo, "unix:%s" % path))
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
    echo_through(unix_client(path))


def test_live_socket_and_other_file_refused(wsgate_binary, gw, echo, tmp_path):
    live = str(tmp_path / "live.sock")
    other = str(tmp_path / "plain")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(live)
    s.listen(1)
    with open(other, "w") as f:
        f.write("x")
    for p, why in ((live, "another process listens there"),
                   (other, "a file that is not a socket is in the way")):
        cfg = gw.write_config(config(gw, echo, "unix:%s" % p), name="bad.ini")
        r = harness.run_wsgate(wsgate_binary, ["-c", cfg], timeout=20)
        assert r.returncode == 1, r.stderr
        assert "bad.ini:3: listen: cannot listen on unix:%s: %s" % (p, why) in r.stderr, r.stderr
    assert os.path.exists(live) and open(other).read() == "x"  # untouched
    s.close()


def test_reload_adds_and_drops_unix_listener(gw, echo, tmp_path):
    path = str(tmp_path / "r.sock")
    gw.start(config(gw, echo))
    assert not os.path.exists(path)
    gw.write_config(config(gw, echo, "unix:%s" % path))
    gw.proc.send_signal(signal.SIGHUP)
    harness.wait_until(lambda: os.path.exists(path), what="unix socket after reload")
    echo_through(unix_client(path))
    gw.write_config(config(gw, echo))
    gw.proc.send_signal(signal.SIGHUP)
    harness.wait_until(lambda: not os.path.exists(path), what="unix socket removed on reload")
    # the TCP listener is untouched
    echo_through(gw.client())


def test_websockify_unix_listen(gw, echo, tmp_path):
    path = str(tmp_path / "wsf.sock")
    gw.start(args=["--unix-listen", path, "--unix-listen-mode", "600", echo.addr], wait=False)
    harness.wait_until(lambda: os.path.exists(path), what="--unix-listen socket")
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    echo_through(unix_client(path))


def start_activated(gw, cfg_path, sock, names="web"):
    """Start wsgate as systemd does: the bound socket as fd 3, LISTEN_FDS=1
    and LISTEN_PID = the pid of the process that execs wsgate."""
    fd = sock.fileno()
    script = 'exec env LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=%s "$0" -c "$1" 3<&%d %d<&-' % (
        names, fd, fd)
    gw._stderr = open(gw.stderr_path, "wb")
    gw._stdout = open(gw.stdout_path, "wb")
    env = gw._env()
    for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(k, None)
    gw.proc = subprocess.Popen(["bash", "-c", script, gw.binary, cfg_path], pass_fds=(fd,),
                               stdin=subprocess.DEVNULL, stdout=gw._stdout, stderr=gw._stderr,
                               env=env, cwd=gw.workdir)


def test_socket_activation(gw, echo):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", gw.port))
    sock.listen(16)
    cfg = gw.write_config({"gateway": {"listen": "systemd:web"},
                           "route:echo": route(echo.addr, "/")})
    start_activated(gw, cfg, sock)
    sock.close()  # only wsgate holds it now
    harness.wait_until(lambda: "started" in gw.stderr_text(), what="wsgate start")
    for _ in range(3):
        echo_through(gw.client())
    # SIGHUP with the same file, then with a file that drops the listener and
    # one that brings it back: the passed socket is never closed
    gw.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    echo_through(gw.client())
    gw.write_config({"gateway": {"listen": ["systemd:web", "unix:%s/x.sock" % gw.workdir]},
                     "route:echo": route(echo.addr, "/")})
    gw.proc.send_signal(signal.SIGHUP)
    harness.wait_until(lambda: os.path.exists("%s/x.sock" % gw.workdir), what="reload")
    echo_through(gw.client())
    assert harness.is_listening(gw.port)
    rc, problems = gw.stop()
    assert rc == 0 and not problems, problems


def test_systemd_name_missing_is_startup_error(gw, echo):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    cfg = gw.write_config({"gateway": {"listen": "systemd:other"},
                           "route:echo": route(echo.addr, "/")})
    start_activated(gw, cfg, sock)
    assert gw.proc.wait(20) == 1
    assert "listen: systemd:other: no such socket passed by systemd" in gw.stderr_text()
    gw.proc = None
    gw._stderr.close()
    gw._stdout.close()
    sock.close()
