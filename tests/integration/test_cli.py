"""The command line: -V, -h, usage errors, -t, the websockify-style
positional form."""

import re
import socket

import pytest

import harness
from harness import OP_BINARY, run_wsgate


def test_version(wsgate_binary):
    r = run_wsgate(wsgate_binary, ["-V"])
    assert r.returncode == 0, r
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr), r


def test_help(wsgate_binary):
    r = run_wsgate(wsgate_binary, ["-h"])
    assert r.returncode == 0, r
    assert "-c" in r.stdout + r.stderr, r


@pytest.mark.parametrize("args", [["--no-such-option"], ["-Q"], ["-c"]],
                         ids=["long", "short", "missing-arg"])
def test_bad_usage_exit_2(wsgate_binary, args):
    r = run_wsgate(wsgate_binary, args)
    assert r.returncode == 2, r
    assert r.stderr.strip(), "usage error should say something on stderr"


GOOD = """\
; a valid configuration
[gateway]
listen = 127.0.0.1:18080
listen = [::1]:18080
max_connections = 100
handshake_timeout = 5s
connect_timeout = 250ms
buffer_size = 64k
log_level = debug

[route:vnc]
path = /vnc
backend = 127.0.0.1:5900
backend = [::1]:5901
subprotocols = binary, base64
allowed_origins = https://a.example.org, https://*.example.com
max_connections = 10
ping_interval = 1m
pong_timeout = 10s
idle_timeout = 0
max_message_size = 16m

[route:all]
path = /
backend = 127.0.0.1:23
"""


def write(tmp_path, text, name="cfg.ini"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_check_good_config(wsgate_binary, tmp_path):
    r = run_wsgate(wsgate_binary, ["-t", "-c", write(tmp_path, GOOD)])
    assert r.returncode == 0, r


# (config text, line of the error, word that must be named)
BAD = {
    "unknown-key": ("[gateway]\nlisten = 127.0.0.1:1\nbogus_key = 1\n", 3, "bogus_key"),
    "bad-duration": ("[gateway]\nlisten = 127.0.0.1:1\n[route:r]\npath = /\nbackend = 127.0.0.1:2\n"
                     "ping_interval = 5 parsecs\n", 6, "ping_interval"),
    "bad-size": ("[gateway]\nlisten = 127.0.0.1:1\nbuffer_size = lots\n", 3, "buffer_size"),
    "bad-listen": ("[gateway]\nlisten = 127.0.0.1:99999\n", 2, "listen"),
    "bad-backend": ("[gateway]\nlisten = 127.0.0.1:1\n[route:r]\npath = /\nbackend = nocolon\n",
                    5, "backend"),
    "unknown-section": ("[gateway]\nlisten = 127.0.0.1:1\n[frobnicate]\nx = 1\n", 3, "frobnicate"),
    "bad-log-level": ("[gateway]\nlisten = 127.0.0.1:1\nlog_level = loud\n", 3, "log_level"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_check_bad_config(wsgate_binary, tmp_path, name):
    text, line, word = BAD[name]
    path = write(tmp_path, text)
    r = run_wsgate(wsgate_binary, ["-t", "-c", path])
    assert r.returncode == 1, r
    assert "%s:%d" % (path, line) in r.stderr, "stderr should name %s:%d: %r" % (path, line, r.stderr)
    assert word in r.stderr, r.stderr


def test_check_missing_backend(wsgate_binary, tmp_path):
    path = write(tmp_path, "[gateway]\nlisten = 127.0.0.1:1\n[route:r]\npath = /x\n")
    r = run_wsgate(wsgate_binary, ["-t", "-c", path])
    assert r.returncode == 1, r
    assert path in r.stderr and "backend" in r.stderr, r.stderr


def test_check_missing_file(wsgate_binary, tmp_path):
    r = run_wsgate(wsgate_binary, ["-t", "-c", str(tmp_path / "absent.ini")])
    assert r.returncode == 1, r
    assert "absent.ini" in r.stderr, r.stderr


def test_start_with_bad_config_exits_1(wsgate_binary, tmp_path):
    text, line, word = BAD["unknown-key"]
    path = write(tmp_path, text)
    r = run_wsgate(wsgate_binary, ["-c", path])
    assert r.returncode == 1, r
    assert "%s:%d" % (path, line) in r.stderr, r.stderr


def test_listen_address_in_use_exits_1(wsgate_binary, tmp_path, echo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        path = write(tmp_path, "[gateway]\nlisten = 127.0.0.1:%d\n[route:r]\npath = /\nbackend = %s\n"
                     % (port, echo.addr))
        r = run_wsgate(wsgate_binary, ["-c", path])
    assert r.returncode == 1, r
    assert r.stderr.strip(), r


@pytest.mark.parametrize("path", ["/", "/any/path", "/websockify?token=x"])
def test_positional_form(gw, echo, path):
    gw.start(args=[gw.listen, echo.addr])
    c = gw.ws(path)
    data = harness.random_bytes(100000)
    c.send_frame(OP_BINARY, data)
    harness.assert_same(c.read_data(len(data)), data)
    c.send_close(1000)
    c.expect_close(1000)


def test_positional_form_port_only(gw, echo):
    """`wsgate PORT TARGET` listens on all addresses; reach it on loopback."""
    gw.start(args=[str(gw.port), echo.addr])
    c = gw.ws("/")
    c.send_frame(OP_BINARY, b"port only")
    assert c.read_data(9) == b"port only"


def test_positional_heartbeat_flag(gw, echo):
    gw.start(args=["--heartbeat", "1", gw.listen, echo.addr])
    c = gw.ws("/")
    f = c.recv_frame(timeout=10)
    assert f.opcode == harness.OP_PING, f
