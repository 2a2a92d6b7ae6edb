"""Every websockify option answered: one test per accepted option (driving the
binary and checking the behaviour) and one for the refusals (exit 2 with a
message naming the wsgate way). The table is in doc/wsgate.8."""

import os
import socket
import ssl
import subprocess
import time

import pytest

import harness
from harness import Backend, echo_handler, greeter_handler
from tls_helpers import Pki, TlsEcho, client_context, tls_client


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki-flags"))
    p.ca_ = p.ca("ca", "flags CA")
    p.srv = p.server("srv", p.ca_)
    p.backend = p.server("backend", p.ca_)
    p.client_ca = p.ca("client-ca", "flags client CA")
    p.alice = p.client("alice", p.client_ca, "alice.example")
    p.other = p.ca("other", "other CA")
    p.eve = p.client("eve", p.other, "eve.example")
    return p


@pytest.fixture
def greeter():
    b = Backend(greeter_handler(b"hello\n"))
    yield b
    b.close()


def start(gateway_factory, *args, wait=True, env=None, host="127.0.0.1"):
    gw = gateway_factory(host)
    if env:
        gw._env = lambda: dict(os.environ, **env)
    gw.start(args=list(args[:-1]) + [gw.listen] + ([args[-1]] if args[-1] else []), wait=wait)
    return gw


def greets(gw, path="/", **kw):
    c = gw.client()
    resp = c.handshake(path, **kw)
    if resp.status != 101:
        return resp.status
    return c.read_data(6)


def tls_status(gw, ctx, path="/"):
    try:
        c = tls_client(gw, ctx, "localhost")
        return c.handshake(path).status
    except (ssl.SSLError, OSError, harness.ConnectionClosed):
        return "tls"


def test_ssl_target(gateway_factory, pki):
    info = TlsEcho(pki.backend)
    b = Backend(info.handler)
    try:
        gw = start(gateway_factory, "--ssl-target", "localhost:%d" % b.port,
                   env={"SSL_CERT_FILE": pki.ca_.cert})
        c = gw.ws("/")
        c.send_frame(harness.OP_BINARY, b"over tls")
        assert c.read_data(8) == b"over tls"
        assert info.sessions == 1 and info.sni == ["localhost"]
        gw.stop()
        # verified like websockify's default context: an unknown CA is refused
        gw2 = start(gateway_factory, "--ssl-target", "localhost:%d" % b.port,
                    env={"SSL_CERT_FILE": pki.other.cert})
        assert gw2.client().handshake("/").status == 502
    finally:
        b.close()


def test_verify_client_cafile(gateway_factory, pki, greeter):
    gw = start(gateway_factory, "--cert", pki.srv.cert, "--key", pki.srv.key, "--verify-client",
               "--cafile", pki.client_ca.cert, greeter.addr)
    assert tls_status(gw, client_context(pki.ca_)) == "tls"
    assert tls_status(gw, client_context(pki.ca_, cert=pki.alice)) == 101
    assert tls_status(gw, client_context(pki.ca_, cert=pki.eve)) == "tls"
    r = subprocess.run([gw.binary, "--verify-client", "6080", "127.0.0.1:1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--verify-client needs --cafile" in r.stderr


def test_cafile_alone_verifies_when_sent(gateway_factory, pki, greeter):
    gw = start(gateway_factory, "--cert", pki.srv.cert, "--key", pki.srv.key, "--cafile",
               pki.client_ca.cert, greeter.addr)
    assert tls_status(gw, client_context(pki.ca_)) == 101
    assert tls_status(gw, client_context(pki.ca_, cert=pki.alice)) == 101
    assert tls_status(gw, client_context(pki.ca_, cert=pki.eve)) == "tls"


def test_ssl_version(gateway_factory, pki, greeter):
    tls12 = client_context(pki.ca_, max_version=ssl.TLSVersion.TLSv1_2)
    gw = start(gateway_factory, "--cert", pki.srv.cert, "--key", pki.srv.key, "--ssl-version",
               "tlsv1_3", greeter.addr)
    assert tls_status(gw, tls12) == "tls"
    assert tls_status(gw, client_context(pki.ca_)) == 101
    gw.stop()
    gw = start(gateway_factory, "--cert", pki.srv.cert, "--key", pki.srv.key, "--ssl-version",
               "tlsv1_1", greeter.addr)
    assert tls_status(gw, tls12) == 101
    r = subprocess.run([gw.binary, "--ssl-version", "sslv3", "6080", "127.0.0.1:1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--ssl-version: 'sslv3'" in r.stderr


def test_ssl_ciphers(gateway_factory, pki, greeter):
    gw = start(gateway_factory, "--cert", pki.srv.cert, "--key", pki.srv.key, "--ssl-ciphers",
               "ECDHE-ECDSA-AES128-GCM-SHA256", greeter.addr)
    v12 = ssl.TLSVersion.TLSv1_2
    ok = client_context(pki.ca_, max_version=v12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    other = client_context(pki.ca_, max_version=v12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
    assert tls_status(gw, ok) == 101
    assert tls_status(gw, other) == "tls"


def test_log_file(gateway_factory, greeter, tmp_path):
    log = tmp_path / "wsgate.log"
    gw = start(gateway_factory, "--log-file", str(log), greeter.addr)
    c = gw.ws("/")
    c.send_close(1000)
    c.next_close()
    harness.wait_until(lambda: " access: " in log.read_text(), 10, what="access line in log")
    text = log.read_text()
    assert "started: 1 listener(s), 1 route(s)" in text
    assert "started" not in gw.stderr_text()


def test_run_once(gateway_factory, greeter):
    gw = start(gateway_factory, "--run-once", greeter.addr)
    first = gw.client()
    first.upgrade("/")
    assert gw.client().handshake("/").status == 503     # one session at a time
    assert gw.alive()
    first.send_close(1000)
    first.next_close()
    gw.proc.wait(timeout=10)
    gw.terminated = True  # an expected exit
    assert gw.proc.returncode == 0
    assert "--run-once: the WebSocket session ended: exiting" in gw.stderr_text()


def test_timeout(gateway_factory, greeter):
    t0 = time.monotonic()
    gw = start(gateway_factory, "--timeout", "2", greeter.addr)
    c = gw.ws("/")                       # a session open at the deadline delays the exit
    time.sleep(2.5)
    assert gw.alive()
    c.send_close(1000)
    c.next_close()
    gw.proc.wait(timeout=10)
    gw.terminated = True  # an expected exit
    assert gw.proc.returncode == 0 and time.monotonic() - t0 >= 2
    assert "--timeout: no session open: exiting" in gw.stderr_text()


def test_file_only(gateway_factory, greeter, tmp_path):
    web = tmp_path / "web"
    (web / "sub").mkdir(parents=True)
    (web / "sub" / "f.txt").write_text("file\n")
    gw = start(gateway_factory, "--web", str(web), "--file-only", greeter.addr)
    c = gw.client()
    c.send(b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_http_response().status == 404         # never a listing
    c = gw.client()
    c.send(b"GET /sub/f.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_http_response().status == 200


def test_host_token(gateway_factory, greeter, tmp_path):
    other = Backend(greeter_handler(b"other\n"))
    try:
        tokens = tmp_path / "tokens"
        tokens.write_text("vnc.test: %s\nssh.test: %s\n" % (greeter.addr, other.addr))
        gw = start(gateway_factory, "--token-plugin", "TokenFile", "--token-source", str(tokens),
                   "--host-token", None)
        assert greets(gw, host="vnc.test:%d" % gw.port) == b"hello\n"
        assert greets(gw, host="SSH.test") == b"other\n"
        assert greets(gw, host="nope.test") == 404
        r = subprocess.run([gw.binary, "--host-token", "6080", "127.0.0.1:1"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "--host-token needs --token-plugin" in r.stderr
    finally:
        other.close()


def test_prefer_ipv6(gateway_factory, greeter):
    gw = gateway_factory("::1")
    gw.start(args=["-6", str(gw.port), greeter.addr])
    assert greets(gw) == b"hello\n"
    with socket.create_connection(("::1", gw.port), timeout=5):
        pass


def test_target_config(gateway_factory, greeter, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("abc: %s\n" % greeter.addr)
    gw = start(gateway_factory, "--target-config", str(tokens), None)
    assert greets(gw, "/?token=abc") == b"hello\n"
    assert greets(gw, "/?token=zzz") == 403


REFUSED = [
    (["--daemon"], "--daemon is not supported: wsgate stays in the foreground: run it under "
                   "systemd or in a container"),
    (["-D"], "--daemon is not supported"),
    (["--inetd"], "--inetd is not supported: wsgate opens its own listeners"),
    (["--libserver"], "--libserver is not supported"),
    (["--syslog", "/dev/log"], "--syslog is not supported: wsgate logs to stderr: journald"),
    (["--legacy-syslog"], "--legacy-syslog is not supported"),
    (["--wrap-mode", "respawn"], "--wrap-mode is not supported: wrap mode is not supported"),
    (["--traffic"], "--traffic is not supported: per-frame traces"),
    (["--key-password", "x"], "--key-password is not supported: a password never goes on the "
                              "command line: use [tls] key_password_file"),
]


def test_refusals(wsgate_binary):
    for extra, message in REFUSED:
        r = subprocess.run([wsgate_binary] + extra + ["6080", "127.0.0.1:1"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (extra, r.stderr)
        assert message in r.stderr, (extra, r.stderr)
    r = subprocess.run([wsgate_binary, "6080", "--", "vncserver", ":1"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2
    assert "wrap mode (-- COMMAND) is not supported: wrap mode is not supported: run the " \
           "program as its own service" in r.stderr


def test_auth_plugin_basic(gateway_factory, greeter, tmp_path):
    """--auth-plugin BasicHTTPAuth --auth-source user:pass guards upgrades;
    with --web-auth, web files too; other plugins are refused."""
    import base64
    web = tmp_path / "web"
    web.mkdir()
    (web / "a.txt").write_text("A\n")
    ok = [("Authorization", "Basic " + base64.b64encode(b"joe:s3cret").decode())]
    bad = [("Authorization", "Basic " + base64.b64encode(b"joe:nope").decode())]
    gw = start(gateway_factory, "--auth-plugin", "BasicHTTPAuth", "--auth-source", "joe:s3cret",
               "--web", str(web), "127.0.0.1:%d" % greeter.port)
    assert greets(gw, extra_headers=ok) == b"hello\n"
    assert greets(gw, extra_headers=bad) == 401
    assert greets(gw) == 401
    c = gw.client()
    c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_http_response().status == 200  # files open without --web-auth
    assert "s3cret" not in gw.stderr_text()
    gw2 = start(gateway_factory, "--web-auth", "--auth-plugin", "BasicHTTPAuth", "--auth-source",
                "joe:s3cret", "--web", str(web), "127.0.0.1:%d" % greeter.port)
    c = gw2.client()
    c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_http_response()
    assert r.status == 401 and r.get("www-authenticate") == 'Basic realm="wsgate"'
    assert greets(gw2, extra_headers=ok) == b"hello\n"
    for args in (["--auth-plugin", "ClientCertCNAuth", "--auth-source", "x"],
                 ["--auth-plugin", "BasicHTTPAuth"], ["--auth-plugin", "BasicHTTPAuth",
                                                     "--auth-source", "nocolon"]):
        r = harness.run_wsgate(gw.binary, args + ["6080", "127.0.0.1:1"])
        assert r.returncode == 2 and "--auth-" in r.stderr, r.stderr


def test_token_plugin_redis_and_jwt(gateway_factory, greeter, tmp_path):
    """TokenRedis in websockify 0.13's host:port:db:password:namespace form;
    JWTTokenApi with the algorithm inferred from the key."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from access_helpers import Redis
    r = Redis(tmp_path)
    try:
        r.cli("SET", "ns:tok1", "127.0.0.1:%d" % greeter.port)
        gw = start(gateway_factory, "--token-plugin", "TokenRedis", "--token-source",
                   "127.0.0.1:%d:0::ns" % r.port, None)
        assert greets(gw, "/?token=tok1") == b"hello\n"
        assert greets(gw, "/?token=tok2") == 403
    finally:
        r.stop()
    for name, priv in (("es", ec.generate_private_key(ec.SECP256R1())),
                       ("rs", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                       ("ed", ed25519.Ed25519PrivateKey.generate()), ("hs", None)):
        path = tmp_path / name
        if priv is None:
            secret = os.urandom(32).hex()
            path.write_text(secret)
            signer, alg = secret, "HS256"
        else:
            path.write_bytes(priv.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            signer = priv
            alg = {"es": "ES256", "rs": "RS256", "ed": "EdDSA"}[name]
        gw = start(gateway_factory, "--token-plugin", "JWTTokenApi", "--token-source", str(path),
                   None)
        tok = pyjwt.encode({"host": "127.0.0.1", "port": greeter.port}, signer, algorithm=alg)
        assert greets(gw, "/?token=" + tok) == b"hello\n", alg
        other = "HS384" if alg != "HS384" else "HS256"
        bad = pyjwt.encode({"host": "127.0.0.1", "port": greeter.port}, "x" * 64,
                           algorithm=other)
        assert greets(gw, "/?token=" + bad) == 403
        gw.stop()
