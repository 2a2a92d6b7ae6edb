"""test_edge.py - who is connecting (DESIGN.md "Who is connecting") and the
handshake limits of "Hardening": PROXY listeners (against haproxy), the
client address through nginx, backend PROXY headers (proven by haproxy's
accept-proxy), per-address limits from accept on, max_handshakes, the admin
listener, and `tls auto`.

haproxy and nginx-light (Debian) are started by the tests with their own
configuration and prefix on free ports."""

import os
import re
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import harness
from harness import Backend, RawClient, free_port, route, wait_log, wait_until
from tls_helpers import Pki, access_records, client_context, tls_client, wsgate_fds

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.fixture(autouse=True, scope="module")
def _nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def proxy_v1(src, sport, dst="127.0.0.1", dport=80):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


def proxy_v2(src, sport, dst="127.0.0.1", dport=80, cmd=0x21, fam=0x11, tlvs=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([cmd, fam]) + struct.pack("!H", len(body)) + body


def connect_from(src, port, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def recv_all(s, timeout=5):
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d
    except (ConnectionResetError, socket.timeout):
        return out


def upgrade_on(s, path="/", extra=b"", timeout=5):
    """Send an upgrade on socket s and return the response head."""
    key = harness.new_key()
    s.sendall(harness.make_request(path, key=key)[:-2] + extra + b"\r\n")
    s.settimeout(timeout)
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            break
        head += d
    return head


def echo_on(s, data=b"hello edge"):
    s.sendall(harness.build_frame(harness.OP_BINARY, data))
    got = b""
    s.settimeout(5)
    while len(got) < 2 + len(data):
        d = s.recv(4096)
        assert d, "closed during echo"
        got += d
    assert got[2:] == data


def metric(gw, port, name_re):
    c = RawClient("127.0.0.1", port)
    c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    body = c.read_until_eof().decode()
    c.close()
    m = re.search(name_re + r" (\d+)", body)
    return int(m.group(1)) if m else None


def start_haproxy(tmp_path, name, text):
    d = tmp_path / name
    d.mkdir()
    cfg = d / "haproxy.cfg"
    cfg.write_text("global\n  maxconn 4000\n  log stderr format raw local0 info\n"
                   "defaults\n  mode tcp\n  log global\n  timeout connect 5s\n"
                   "  timeout client 60s\n  timeout server 60s\n" + text)
    p = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                         stderr=open(d / "stderr", "wb"))
    return p


def wait_port(port, proc, timeout=10):
    def up():
        assert proc.poll() is None, "helper process exited"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_until(up, timeout, what="port %d" % port)


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def access(gw):
    """Access lines as dicts: client, peer (or None), status."""
    out = []
    for line in gw.stderr_text().splitlines():
        if " access: " not in line:
            continue
        m = re.search(r"client=(\S+) .*status=(\d+)", line)
        p = re.search(r" peer=(\S+)", line)
        out.append({"client": m.group(1), "status": int(m.group(2)),
                    "peer": p.group(1) if p else None, "line": line})
    return out


# ---------------------------------------------------------------- haproxy in front


@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_haproxy_in_front(gw, echo, tmp_path, send):
    gw.start({"gateway": {"listen": gw.listen + " proxy"}, "route:e": route(echo.addr)})
    hport = free_port()
    hp = start_haproxy(tmp_path, "front", "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
                       "backend be\n  server w %s %s\n" % (hport, gw.listen, send))
    try:
        wait_port(hport, hp)
        s = connect_from("127.0.0.5", hport)
        assert b" 101 " in upgrade_on(s)
        echo_on(s)
        sport = s.getsockname()[1]
        s.close()
        wait_until(lambda: any(r["status"] == 101 for r in access(gw)), what="access line")
        rec = [r for r in access(gw) if r["status"] == 101][0]
        assert rec["client"] == "127.0.0.5:%d" % sport
        assert rec["peer"].startswith("127.0.0.1:")
        # haproxy's own health-check style connection without a header is refused
        c = RawClient(gw.host, gw.port)
        c.send(harness.make_request("/"))
        assert c.read_until_eof() == b""
    finally:
        stop(hp)


# ---------------------------------------------------------------- haproxy behind


def pp_echo_handler(seen):
    def handler(b, rec):
        buf = b""
        while b"\r\n" not in buf:
            d = rec.sock.recv(4096)
            if not d:
                return
            buf += d
        line, rest = buf.split(b"\r\n", 1)
        seen.append(line.decode())
        if rest:
            rec.sock.sendall(rest)
        while True:
            d = rec.sock.recv(65536)
            if not d:
                return
            rec.sock.sendall(d)
    return handler


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_backend_proxy_header_read_by_haproxy(gw, tmp_path, version):
    """wsgate -> haproxy (accept-proxy) -> send-proxy -> echo: haproxy
    re-states the source it parsed from wsgate's header."""
    seen = []
    be = Backend(pp_echo_handler(seen))
    hport = free_port()
    hp = start_haproxy(tmp_path, "behind", "frontend fe\n  bind 127.0.0.1:%d accept-proxy\n"
                       "  default_backend be\nbackend be\n  server e %s send-proxy\n"
                       % (hport, be.addr))
    try:
        wait_port(hport, hp)
        gw.start({"route:e": route("127.0.0.1:%d" % hport, backend_proxy_protocol=version)})
        s = connect_from("127.0.0.7", gw.port)
        assert b" 101 " in upgrade_on(s)
        echo_on(s)
        sport = s.getsockname()[1]
        wait_until(lambda: seen, what="haproxy's header")
        assert seen[0] == "PROXY TCP4 127.0.0.7 127.0.0.1 %d %d" % (sport, gw.port)
        s.close()
    finally:
        stop(hp)
        be.close()


def test_backend_proxy_header_v2_bytes(gw):
    """The exact v2 bytes: addresses, ports, AUTHORITY from Host (port
    stripped), before any client byte."""
    got = []
    ev = threading.Event()

    def handler(b, rec):
        got.append(recv_all(rec.sock, timeout=2))
        ev.set()
    be = Backend(handler)
    gw.start({"route:e": route(be.addr, backend_proxy_protocol="v2")})
    s = connect_from("127.0.0.8", gw.port)
    key = harness.new_key()
    s.sendall(harness.make_request("/", host="app.example:8080", key=key))
    recv_all(s, timeout=0.5)
    s.sendall(harness.build_frame(harness.OP_BINARY, b"XY"))
    sport = s.getsockname()[1]
    s.close()
    ev.wait(10)
    data = got[0]
    assert data[:12] == V2_SIG and data[12:14] == b"\x21\x11"
    ln = struct.unpack("!H", data[14:16])[0]
    hdr = data[16:16 + ln]
    assert hdr[:8] == socket.inet_aton("127.0.0.8") + socket.inet_aton("127.0.0.1")
    assert struct.unpack("!HH", hdr[8:12]) == (sport, gw.port)
    assert hdr[12:] == b"\x02\x00\x0bapp.example"
    assert data[16 + ln:] == b"XY"


# ---------------------------------------------------------------- nginx in front


def test_nginx_in_front(gw, echo, tmp_path):
    gw.start({"gateway": {"trusted_proxies": "127.0.0.1/32", "real_ip_header": "X-Forwarded-For"},
              "route:e": route(echo.addr)})
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    nport = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text("""
daemon off;
worker_processes 1;
pid %(p)s/nginx.pid;
error_log %(p)s/logs/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %(p)s/tmp_body;
  proxy_temp_path %(p)s/tmp_proxy;
  fastcgi_temp_path %(p)s/tmp_fcgi;
  uwsgi_temp_path %(p)s/tmp_uwsgi;
  scgi_temp_path %(p)s/tmp_scgi;
  server {
    listen 127.0.0.1:%(n)d;
    location / {
      proxy_pass http://%(w)s;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
    }
  }
}
""" % {"p": prefix, "n": nport, "w": gw.listen})
    ng = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(nport, ng)
        s = connect_from("127.0.0.6", nport)
        assert b" 101 " in upgrade_on(s)
        echo_on(s, b"through nginx")
        s.close()
        wait_until(lambda: any(r["status"] == 101 for r in access(gw)), what="access line")
        rec = [r for r in access(gw) if r["status"] == 101][0]
        assert rec["client"] == "127.0.0.6:0"
        assert rec["peer"].startswith("127.0.0.1:")
    finally:
        stop(ng)


# ---------------------------------------------------------------- bad input


def test_bad_proxy_input(gw, echo):
    gw.start({"gateway": {"listen": gw.listen + " proxy", "handshake_timeout": "1s"},
              "route:e": route(echo.addr)})
    base = wsgate_fds(gw)
    # split over many writes: accepted
    s = socket.create_connection((gw.host, gw.port))
    for b in proxy_v2("10.1.2.3", 4000):
        s.send(bytes([b]))
        time.sleep(0.002)
    assert b" 101 " in upgrade_on(s)
    echo_on(s)
    s.close()
    bad = [
        proxy_v2("10.1.2.3", 1)[:14] + b"\xff\xff",        # oversized v2 length
        V2_SIG + b"\x23\x11\x00\x0c" + b"\x00" * 12,        # unknown command
        V2_SIG + b"\x21\x41\x00\x0c" + b"\x00" * 12,        # unknown family
        b"PROXY TCP4 " + b"1" * 120,                          # v1 without CRLF in 107
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",                  # bare LF
        harness.make_request("/"),                            # no header at all
    ]
    for data in bad:
        s = socket.create_connection((gw.host, gw.port))
        s.sendall(data)
        t0 = time.monotonic()
        assert recv_all(s, timeout=3) == b"", data
        assert time.monotonic() - t0 < 0.9, "closed at once, not at the handshake timeout"
        s.close()
    # truncated: the handshake timeout ends it
    s = socket.create_connection((gw.host, gw.port))
    s.sendall(proxy_v1("10.0.0.1", 5)[:20])
    t0 = time.monotonic()
    assert recv_all(s, timeout=5) == b""
    assert 0.8 < time.monotonic() - t0 < 3
    s.close()
    wait_until(lambda: wsgate_fds(gw) == base, what="fd count back to %d" % base)
    wait_log(gw, "PROXY header refused", len(bad) + 1)
    assert gw.stderr_text().count("PROXY header refused") == len(bad) + 1


def test_forwarded_garbage_and_many_entries(gw, echo):
    gw.start({"gateway": {"trusted_proxies": "127.0.0.1/32", "real_ip_header": "X-Forwarded-For"},
              "route:e": route(echo.addr, allowed_networks="127.0.0.0/8")})
    base = wsgate_fds(gw)
    # garbage: the walk stops, the peer stands (and is allowed)
    s = socket.create_connection((gw.host, gw.port))
    assert b" 101 " in upgrade_on(s, extra=b"X-Forwarded-For: garbage!!, ;;;, 999.1.1.1\r\n")
    s.close()
    # 1,000 entries: the rightmost untrusted one is the client, outside allowed_networks -> 403
    many = ", ".join("10.0.%d.%d" % (i // 250, i % 250) for i in range(1000))
    s = socket.create_connection((gw.host, gw.port))
    assert b" 403 " in upgrade_on(s, extra=("X-Forwarded-For: %s\r\n" % many).encode())
    s.close()
    wait_until(lambda: len(access(gw)) == 2, what="two access lines")
    recs = {r["status"]: r for r in access(gw)}
    assert recs[101]["peer"] is None and recs[101]["client"].startswith("127.0.0.1:")
    assert recs[403]["client"] == "10.0.3.249:0" and recs[403]["peer"].startswith("127.0.0.1:")
    wait_until(lambda: wsgate_fds(gw) == base, what="fd count back")


# ---------------------------------------------------------------- per-address limits


def test_route_rate_and_connection_limits(gw, echo):
    gw.start({"route:e": route(echo.addr, handshake_rate_per_ip="3",
                               max_connections_per_ip="2")})
    held = []
    for _ in range(2):
        s = connect_from("127.0.0.11", gw.port)
        assert b" 101 " in upgrade_on(s)
        held.append(s)
    s = connect_from("127.0.0.11", gw.port)
    head = upgrade_on(s)
    assert b" 429 " in head and b"Retry-After" not in head
    s = connect_from("127.0.0.11", gw.port)
    head = upgrade_on(s)  # the 4th upgrade within a second: the rate
    assert b" 429 " in head and b"\r\nRetry-After: 1\r\n" in head
    s = connect_from("127.0.0.12", gw.port)  # another address is not affected
    assert b" 101 " in upgrade_on(s)


def test_partial_heads_do_not_stop_upgrades(gw, echo, tmp_path):
    """Issue 11: 600 partial heads from 127.0.0.2-4 with per-address and
    handshake limits; 8 upgrades from 127.0.0.9 each get 101 within 2 s.
    The gateway runs with 512 file descriptors, so without the limits the
    partial heads would take them all."""
    wrapper = tmp_path / "wsgate-512"
    wrapper.write_text("#!/bin/sh\nulimit -n 512\nexec %s \"$@\"\n" % gw.binary)
    wrapper.chmod(0o755)
    gw.binary = str(wrapper)
    gw.start({"gateway": {"max_connections_per_ip": "40", "max_handshakes": "200",
                          "handshake_timeout": "20s", "log_level": "warn"},
              "route:e": route(echo.addr)})
    attackers = []
    refused = 0
    for i in range(600):
        s = connect_from("127.0.0.%d" % (2 + i % 3), gw.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        attackers.append(s)
    time.sleep(0.5)
    for s in attackers:
        s.setblocking(False)
        try:
            if s.recv(10) == b"":
                refused += 1
        except BlockingIOError:
            pass
        except ConnectionResetError:
            refused += 1
    assert refused == 600 - 3 * 40
    for _ in range(8):
        t0 = time.monotonic()
        s = connect_from("127.0.0.9", gw.port)
        assert b" 101 " in upgrade_on(s, timeout=2)
        assert time.monotonic() - t0 < 2
        s.close()
    for s in attackers:
        s.close()


def test_max_handshakes_pauses_accepts(gw, echo):
    gw.start({"gateway": {"max_handshakes": "5", "handshake_timeout": "1s", "workers": "1"},
              "route:e": route(echo.addr)})
    pend = [socket.create_connection((gw.host, gw.port)) for _ in range(5)]
    for s in pend:
        s.sendall(b"GET / HTTP/1.1\r\n")
    time.sleep(0.2)
    s = socket.create_connection((gw.host, gw.port))  # in the backlog, not accepted
    t0 = time.monotonic()
    head = upgrade_on(s, timeout=5)
    waited = time.monotonic() - t0
    assert b" 101 " in head
    assert 0.6 < waited < 2.5, waited  # answered once the pending ones timed out
    for p in pend:
        p.close()


def test_rss_per_pending_handshake(gw, echo):
    gw.start({"gateway": {"max_handshakes": "5000", "handshake_timeout": "60s",
                          "log_level": "warn", "workers": "2"},
              "route:e": route(echo.addr)})
    warm = [socket.create_connection((gw.host, gw.port)) for _ in range(100)]
    for s in warm:
        s.sendall(b"GET / HTTP/1.1\r\n")
    time.sleep(0.3)
    for s in warm:
        s.close()
    time.sleep(0.3)
    before = gw.rss_kib()
    pend = []
    for i in range(2000):
        s = socket.create_connection((gw.host, gw.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        pend.append(s)
    time.sleep(1.0)
    after = gw.rss_kib()
    per = (after - before) * 1024 / 2000
    print("RSS per pending plain handshake: %.0f bytes (%d KiB -> %d KiB)" % (per, before, after))
    assert per <= 8192
    for s in pend:
        s.close()


def test_100k_client_addresses_rss_bounded(gw, echo, monkeypatch):
    # AddressSanitizer's quarantine keeps freed sessions resident: off here
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "detect_leaks=1") +
                       ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    gw.start({"gateway": {"listen": gw.listen + " proxy", "max_connections_per_ip": "10",
                          "log_level": "warn"},
              "route:e": route(echo.addr)})
    before = gw.rss_kib()
    def run(lo, hi):
        for i in range(lo, hi):
            s = socket.create_connection((gw.host, gw.port))
            s.sendall(proxy_v1("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), 1000) +
                      b"GET /x HTTP/1.1\r\n\r\n")
            s.recv(100)
            s.close()
    ts = [threading.Thread(target=run, args=(k * 25000, (k + 1) * 25000)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    after = gw.rss_kib()
    print("100k addresses: RSS %d KiB -> %d KiB" % (before, after))
    assert after - before <= 4096


# ---------------------------------------------------------------- admin listener


def test_admin_listener_split(gw, echo):
    aport = free_port()
    gw.start({"gateway": {"listen": [gw.listen, "127.0.0.1:%d admin" % aport]},
              "route:e": route(echo.addr)})
    for path in ("/healthz", "/metrics"):
        c = RawClient(gw.host, gw.port)
        c.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        assert c.read_until_eof().startswith(b"HTTP/1.1 404 ")
        c = RawClient(gw.host, aport)
        c.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        assert c.read_until_eof().startswith(b"HTTP/1.1 200 ")
    c = RawClient(gw.host, aport)
    c.send(harness.make_request("/"))
    assert c.read_until_eof().startswith(b"HTTP/1.1 404 ")
    gw.ws("/").close()


# ---------------------------------------------------------------- tls auto


def test_tls_auto_serves_both(gw, echo, tmp_path):
    pki = Pki(tmp_path / "pki")
    ca = pki.ca("ca", "edge CA")
    srv = pki.server("srv", ca)
    gw.start({"gateway": {"listen": gw.listen + " tls auto"}, "tls": {"cert": srv.cert, "key": srv.key},
              "route:e": route(echo.addr)})
    c = gw.ws("/")
    c.send_frame(harness.OP_BINARY, b"plain")
    assert c.read_data(5) == b"plain"
    t = tls_client(gw, client_context(ca=ca.cert))
    t.upgrade("/")
    t.send_frame(harness.OP_BINARY, b"tls")
    assert t.read_data(3) == b"tls"
