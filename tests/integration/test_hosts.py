"""Routes by Host header, certificates by SNI, client_cert optional/required.

Certificates are made at test time with the openssl command line
(tls_helpers.Pki): a CA, a default certificate (localhost), a certificate for
two exact names and a wildcard one. `openssl s_client -servername NAME`
checks which certificate each name gets. Host routing is driven with raw
requests (byte-exact Host headers) and with python3-websockets.
"""

import asyncio
import os
import shutil
import socket
import ssl
import subprocess

import pytest

import harness
from harness import Backend, greeter_handler, route, wait_log
from tls_helpers import OPENSSL, Pki, client_context, sighup, tls_client, tls_config, tls_ws


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki-hosts"))
    p.ca_ = p.ca("ca", "hosts test CA")
    p.default = p.server("default", p.ca_, cn="default.test")
    p.two = p.issue("two", p.ca_, "two-cn.test", dns=("vnc.example.test", "ssh.example.test"))
    p.wild = p.issue("wild", p.ca_, "wild-cn.test", dns=("*.w.example.test",))
    p.cnonly = p.issue("cnonly", p.ca_, "cn.example.test")  # no SAN: the CN counts
    p.client_ca = p.ca("client-ca", "hosts client CA")
    p.alice = p.client("alice", p.client_ca, "alice.example")
    p.other_ca = p.ca("other-ca", "unrelated CA")
    p.eve = p.client("eve", p.other_ca, "alice.example")
    return p


@pytest.fixture
def greeters():
    made = {}

    def make(name):
        b = Backend(greeter_handler(name.encode() + b"\n"))
        made[name] = b
        return b

    yield make
    for b in made.values():
        b.close()


def which(gw, host, path="/", **kw):
    """Upgrade with this Host header; the greeting names the route's backend
    (or the HTTP status when there is no 101)."""
    c = gw.client()
    resp = c.handshake(path, host=host, **kw)
    if resp.status != 101:
        c.close()
        return resp.status
    data = c.read_data(1, at_least=True)
    while not data.endswith(b"\n"):
        data += c.read_data(1, at_least=True)
    c.close()
    return data.decode().strip()


def test_host_routing_raw(gateway_factory, greeters):
    gw = gateway_factory()
    cfg = {
        "route:exact": route(greeters("exact").addr, "/", host="vnc.example.test"),
        "route:exact-admin": route(greeters("exact-admin").addr, "/admin", host="VNC.example.test"),
        "route:wild": route(greeters("wild").addr, "/", host="*.example.test"),
        "route:deep": route(greeters("deep").addr, "/x/", host="*.b.example.test"),
        "route:v6": route(greeters("v6").addr, "/", host="[::1]"),
        "route:any": route(greeters("any").addr, "/any/"),
        "route:admin-only": route(greeters("admin-only").addr, "/admin", host="admin.test"),
    }
    gw.start(cfg)
    assert which(gw, "vnc.example.test") == "exact"
    assert which(gw, "vnc.example.test:%d" % gw.port) == "exact"     # port
    assert which(gw, "vnc.example.test.") == "exact"                # trailing dot
    assert which(gw, "VNC.EXAMPLE.TEST:443") == "exact"             # upper case
    assert which(gw, "vnc.example.test", "/admin") == "exact-admin"
    assert which(gw, "a.b.c.example.test") == "wild"                # any depth
    assert which(gw, "q.b.example.test", "/x/1") == "deep"          # longest suffix
    assert which(gw, "q.b.example.test", "/y") == "wild"            # next class
    assert which(gw, "[::1]:%d" % gw.port) == "v6"                  # IPv6 literal
    assert which(gw, "example.test", "/any/1") == "any"             # no host class
    assert which(gw, "admin.test", "/admin") == "admin-only"
    assert which(gw, "admin.test", "/any/1") == "any"               # exact: no path -> any
    assert which(gw, "example.test") == 404                         # domain itself: no wildcard
    assert which(gw, "elsewhere.test") == 404
    assert which(gw, "vnc.example.test:x") == 404                   # malformed: hostless only
    assert which(gw, None) == 400                                   # Host absent


def test_host_routing_websockets(gateway_factory, greeters):
    """An independent client (python3-websockets) sends the Host of its URI."""
    import websockets
    gw = gateway_factory()
    gw.start({
        "route:a": route(greeters("A").addr, "/", host="a.example.test"),
        "route:b": route(greeters("B").addr, "/", host="*.example.test"),
    })

    async def greet(host):
        sock = socket.create_connection((gw.host, gw.port))
        async with websockets.connect("ws://%s:%d/" % (host, gw.port), sock=sock,
                                      open_timeout=10) as ws:
            return await asyncio.wait_for(ws.recv(), 10)

    assert asyncio.run(greet("a.example.test")) == b"A\n"
    assert asyncio.run(greet("A.Example.Test")) == b"A\n"
    assert asyncio.run(greet("x.y.example.test")) == b"B\n"
    with pytest.raises(Exception) as e:
        asyncio.run(greet("other.test"))
    assert "404" in str(e.value)


def test_duplicate_host_path_refused(gateway_factory, tmp_path):
    gw = gateway_factory()
    path = gw.write_config("[route:a]\nhost = a.test\npath = /\nbackend = 127.0.0.1:1\n"
                           "[route:b]\nhost = A.TEST.\npath = /\nbackend = 127.0.0.1:1\n"
                           "[route:c]\nhost = a.test:80\npath = /c\nbackend = 127.0.0.1:1\n")
    r = subprocess.run([gw.binary, "-t", "-c", path], capture_output=True, text=True)
    assert r.returncode == 1
    assert "wsgate.ini:7: path: duplicate route path '/' (also in [route:a], line 3)" in r.stderr
    assert "wsgate.ini:10: host: 'a.test:80' is not a host name" in r.stderr


# ---------------------------------------------------------------- SNI


def subject_for(gw, servername):
    """The subject CN of the certificate wsgate presents for servername
    (None: send no SNI)."""
    argv = [OPENSSL, "s_client", "-connect", "%s:%d" % (gw.host, gw.port)]
    argv += ["-noservername"] if servername is None else ["-servername", servername]
    r = subprocess.run(argv, input=b"", capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN", 1)[1].lstrip(" =").strip()
    raise AssertionError("no subject in s_client output:\n" + out)


def sni_config(gw, pki, backend, two=None, **tls):
    cfg = tls_config(gw, dict({"cert": pki.default.cert, "key": pki.default.key}, **tls),
                     {"r": route(backend, "/")})
    cfg["tls:two"] = {"cert": (two or pki.two).cert, "key": (two or pki.two).key}
    cfg["tls:wild"] = {"cert": pki.wild.cert, "key": pki.wild.key}
    cfg["tls:cnonly"] = {"cert": pki.cnonly.cert, "key": pki.cnonly.key}
    return cfg


def test_sni_selects_certificate(gateway_factory, greeters, pki):
    gw = gateway_factory()
    gw.start(sni_config(gw, pki, greeters("x").addr))
    assert subject_for(gw, "vnc.example.test") == "two-cn.test"
    assert subject_for(gw, "SSH.Example.Test") == "two-cn.test"
    assert subject_for(gw, "a.w.example.test") == "wild-cn.test"
    assert subject_for(gw, "cn.example.test") == "cn.example.test"   # CN when no SAN
    # wildcards: one whole label only
    assert subject_for(gw, "b.a.w.example.test") == "default.test"
    assert subject_for(gw, "w.example.test") == "default.test"
    # absent, unknown, long, odd bytes -> the [tls] certificate
    assert subject_for(gw, None) == "default.test"
    assert subject_for(gw, "unknown.test") == "default.test"
    assert subject_for(gw, ("a" * 60 + ".") * 4 + "test") == "default.test"  # 248 bytes
    assert subject_for(gw, "vnc.example.test!") == "default.test"
    assert subject_for(gw, "vnc example.test") == "default.test"
    # the connection works on the switched certificate, verified by the CA
    ctx = client_context(pki.ca_)
    c = tls_ws(gw, ctx, "/", server_hostname="vnc.example.test")
    assert c.read_data(2, at_least=True).startswith(b"x")


def test_sni_reload_keeps_broken_certificate(gateway_factory, greeters, pki, tmp_path):
    """A reload where [tls:two]'s key does not match its certificate keeps the
    old certificate for those names; the other sections are reloaded."""
    work = tmp_path / "certs"
    work.mkdir()
    for name in ("two.pem", "two.key", "wild.pem", "wild.key"):
        shutil.copy(os.path.join(pki.dir, name), work / name)
    gw = gateway_factory()
    cfg = sni_config(gw, pki, greeters("x").addr)
    cfg["tls:two"] = {"cert": str(work / "two.pem"), "key": str(work / "two.key")}
    cfg["tls:wild"] = {"cert": str(work / "wild.pem"), "key": str(work / "wild.key")}
    gw.start(cfg)
    assert subject_for(gw, "vnc.example.test") == "two-cn.test"
    # two: a key that belongs to another certificate; wild: replaced by cnonly
    shutil.copy(pki.wild.key, work / "two.key")
    shutil.copy(pki.cnonly.cert, work / "wild.pem")
    shutil.copy(pki.cnonly.key, work / "wild.key")
    sighup(gw)
    log = wait_log(gw, "SIGHUP: reloaded")
    assert "[tls:two] key does not match the certificate" in log
    assert "new connections keep the old certificate" in log
    assert subject_for(gw, "vnc.example.test") == "two-cn.test"       # kept
    assert subject_for(gw, "cn.example.test") == "cn.example.test"
    assert subject_for(gw, "a.w.example.test") == "default.test"     # wild now holds cnonly
    # wsgate -t names the broken section
    r = subprocess.run([gw.binary, "-t", "-c", gw.config_path], capture_output=True, text=True)
    assert r.returncode == 1
    assert "[tls:two] key does not match the certificate" in r.stderr


def test_tls_cert_section_errors(gateway_factory):
    gw = gateway_factory()
    path = gw.write_config("[gateway]\nlisten = 127.0.0.1:1 tls\n[tls:x]\nkey = /k\n"
                           "[tls:x]\ncert = /c\n[tls:bad name]\ncert = /c\n"
                           "[route:r]\npath = /\nbackend = 127.0.0.1:1\n")
    r = subprocess.run([gw.binary, "-t", "-c", path], capture_output=True, text=True)
    assert r.returncode == 1
    assert "wsgate.ini:2: listen: a 'tls' listener needs [tls] cert" in r.stderr
    assert "wsgate.ini:3: cert: [tls:x] needs a cert" in r.stderr
    assert "wsgate.ini:5: [tls:x]: duplicate certificate name (first on line 3)" in r.stderr
    assert "wsgate.ini:7: [tls:bad name]: a certificate name must be non-empty" in r.stderr


# ---------------------------------------------------------------- client_cert


def mtls_gateway(gateway_factory, pki, backend, mode):
    gw = gateway_factory()
    tls = {"cert": pki.default.cert, "key": pki.default.key, "client_ca": pki.client_ca.cert}
    if mode:
        tls["client_cert"] = mode
    cfg = tls_config(gw, tls, {"open": route(backend, "/open"),
                               "named": route(backend, "/named",
                                              allowed_client_names="alice.example")})
    gw.start(cfg)
    return gw


def attempt(gw, ctx, path):
    """HTTP status of an upgrade on path, or 'tls' when the handshake fails."""
    try:
        c = tls_client(gw, ctx, "localhost")
        resp = c.handshake(path)
        c.close()
        return resp.status
    except (ssl.SSLError, ConnectionError, harness.ConnectionClosed, OSError):
        return "tls"


def test_client_cert_optional(gateway_factory, greeters, pki):
    gw = mtls_gateway(gateway_factory, pki, greeters("x").addr, "optional")
    anon = client_context(pki.ca_)
    alice = client_context(pki.ca_, cert=pki.alice)
    eve = client_context(pki.ca_, cert=pki.eve)
    assert attempt(gw, anon, "/open") == 101          # no certificate: allowed
    assert attempt(gw, anon, "/named") == 403         # names need a verified one
    assert attempt(gw, alice, "/named") == 101
    assert attempt(gw, alice, "/open") == 101
    assert attempt(gw, eve, "/open") == "tls"         # sent, so verified: wrong CA


def test_client_cert_required(gateway_factory, greeters, pki):
    for mode in (None, "required"):
        gw = mtls_gateway(gateway_factory, pki, greeters("x" + str(mode)).addr, mode)
        anon = client_context(pki.ca_)
        alice = client_context(pki.ca_, cert=pki.alice)
        assert attempt(gw, anon, "/open") == "tls"
        assert attempt(gw, alice, "/named") == 101
        gw.stop()


def test_client_cert_optional_needs_ca(gateway_factory):
    gw = gateway_factory()
    path = gw.write_config("[tls]\nclient_cert = optional\n"
                           "[route:r]\npath = /\nbackend = 127.0.0.1:1\n")
    r = subprocess.run([gw.binary, "-t", "-c", path], capture_output=True, text=True)
    assert r.returncode == 1
    assert "wsgate.ini:2: client_cert: optional needs [tls] client_ca" in r.stderr
