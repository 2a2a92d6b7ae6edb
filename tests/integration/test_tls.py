"""wss:// listeners, TLS versions and suites, mutual TLS, TLS to backends,
certificate reload on SIGHUP, encrypted keys, stalled and garbage handshakes.

Independent clients: Python's ssl module (through python3-websockets and
through raw sockets, including a MemoryBIO client that chops its TLS bytes
into tiny TCP writes) and `openssl s_client`. Every key and certificate is
made at test time with the openssl command line (tls_helpers.Pki).
"""

import re
import json
import os
import random
import ssl
import subprocess
import threading
import time

import pytest

import harness
from harness import OP_BINARY, assert_http_error, assert_same, random_bytes, route, wait_log
from tls_helpers import (Pki, StalledHandshake, access_for, access_records,
                         client_context, copy_files, echo_check, log_count, peer_der,
                         s_client, sighup, tls_attempt, tls_client, tls_config,
                         tls_echo_backend, tls_ws, watch_until_closed, wsgate_fds,
                         wss_echo)

MIB = 1 << 20


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The test PKI, made once per module."""
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.ca_ = p.ca("ca", "wsgate test server CA")
    p.srv = p.server("srv", p.ca_)
    # client certificates
    p.client_ca = p.ca("client-ca", "wsgate test client CA")
    p.foreign_ca = p.ca("foreign-ca", "some other CA")
    p.alice = p.client("alice", p.client_ca, "alice.example")
    p.bob = p.client("bob", p.client_ca, "bob.example")
    p.carol = p.client("carol", p.client_ca, "carol", dns=("carol.example",))
    # same name as alice, wrong issuer
    p.mallory = p.client("mallory", p.foreign_ca, "alice.example")
    # backends
    p.backend_ca = p.ca("backend-ca", "wsgate test backend CA")
    p.backend = p.issue("backend", p.backend_ca, "localhost", dns=("localhost",),
                        ips=("127.0.0.1",))
    p.backend_other = p.issue("backend-other", p.backend_ca, "other.example",
                              dns=("other.example",))
    # an encrypted server key
    p.enc = p.server("enc", p.ca_, org="encrypted key", password="s3cret pass phrase")
    return p


def base_tls(pki, **extra):
    d = {"cert": pki.srv.cert, "key": pki.srv.key}
    d.update(extra)
    return d


@pytest.fixture
def wss_gw(gw, echo, pki):
    """A started gateway: TLS listener with the test server certificate,
    route "/" to an echo backend."""
    gw.start(tls_config(gw, base_tls(pki), {"echo": route(echo.addr, "/")}))
    gw.echo = echo
    return gw


def small_echo(gw, ctx, n=4096, seed=7):
    """A quick wss session through python3-websockets; returns TLS info."""
    data = random_bytes(n, seed)
    got, info = wss_echo(gw, [data], ctx)
    assert_same(got, data, "echo")
    return info


# ---------------------------------------------------------------- 1. wss echo


@pytest.mark.parametrize("tls_max", [None, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_wss_echo_1mib_each_way_websockets(wss_gw, pki, tls_max):
    ctx = client_context(pki.ca_, max_version=tls_max, alpn=["h2", "http/1.1"])
    rnd = random_bytes(MIB, seed=11)
    # one big message, then messages of assorted sizes: 1 MiB in all
    cuts = [0, MIB // 2]
    sizes = [1, 125, 126, 65535, 65536, 65537, 100000]
    pos = MIB // 2
    for i in range(1000):
        if pos >= MIB:
            break
        pos = min(MIB, pos + sizes[i % len(sizes)])
        cuts.append(pos)
    messages = [rnd[a:b] for a, b in zip(cuts, cuts[1:])]
    assert sum(map(len, messages)) == MIB
    got, info = wss_echo(wss_gw, messages, ctx)
    assert_same(got, rnd, "1 MiB echoed through wss")
    assert info["version"] == ("TLSv1.2" if tls_max else "TLSv1.3"), info
    assert info["alpn"] == "http/1.1", "ALPN should pick http/1.1: %r" % info
    assert info["peer_der"] == pki.srv.der, "not the configured certificate"
    assert wss_gw.echo.wait_connections(1).received >= MIB


def test_wss_echo_1mib_raw_chopped_tls_writes(wss_gw, pki):
    """Raw WebSocket over a TLS client whose TLS bytes reach wsgate in 1..64
    byte TCP writes at first (records split anywhere, even the handshake),
    then 1..1500; the client reads only when wsgate's writes would block."""
    c = tls_client(wss_gw, client_context(pki.ca_), mode="chopped", seed=3,
                   tiny_bytes=64 * 1024)
    c.upgrade("/")
    data = random_bytes(MIB, seed=12)
    frames = []
    pos, rnd = 0, random.Random(5)
    while pos < MIB:
        n = min(MIB - pos, rnd.choice([1, 7, 125, 126, 1000, 4096, 65536, 200000]))
        frames.append(harness.build_frame(OP_BINARY, data[pos:pos + n]))
        pos += n
    c.send(b"".join(frames))  # the send loop reads (and keeps) what comes back meanwhile
    got = c.read_data(MIB, timeout=90)
    assert_same(got, data, "1 MiB echoed through chopped TLS")
    assert c.sock.tcp_writes > 2000, "the TLS stream was not chopped (%d writes)" % c.sock.tcp_writes
    # and the session is still healthy: a close handshake
    c.send_close(1000)
    c.expect_close(1000)


def test_many_tls_records_in_one_segment(wss_gw, pki):
    """Hundreds of small TLS records arriving in one TCP write: every one
    is relayed (bytes left inside OpenSSL must not stall the session)."""
    c = tls_client(wss_gw, client_context(pki.ca_), mode="coalesce")
    c.upgrade("/")
    pieces = [random_bytes(37 + i % 50, seed=i) for i in range(600)]
    frames = [harness.build_frame(OP_BINARY, p) for p in pieces]
    c.sock.send_records(frames)
    want = b"".join(pieces)
    assert_same(c.read_data(len(want), timeout=30), want, "many-record echo")
    # the last record alone, after a pause: still delivered
    time.sleep(0.2)
    c.sock.send_records([harness.build_frame(OP_BINARY, b"tail"), harness.build_frame(OP_BINARY, b"!")])
    assert c.read_data(5) == b"tail!"


@pytest.mark.parametrize("backend_tls", [False, True], ids=["plain-backend", "tls-backend"])
def test_tls_records_larger_than_the_buffer(gw, backends, pki, backend_tls):
    """buffer_size 4k and 16 KiB TLS records: a read takes only part of a
    record and the rest waits inside OpenSSL (SSL_pending) with nothing
    left on the socket. Every message must still come back whole."""
    if backend_tls:
        be, info = tls_echo_backend(backends, pki.backend)
        r = route("localhost:%d" % be.port, "/", backend_tls="on", backend_ca=pki.backend_ca.cert)
    else:
        be = backends.echo()
        r = route(be.addr, "/")
    gw.start(tls_config(gw, base_tls(pki), {"echo": r}, gateway={"buffer_size": "4k"}))
    c = tls_ws(gw, client_context(pki.ca_))
    for i, size in enumerate([1, 4095, 4096, 16384, 16385, 40000, 100000, 7]):
        data = random_bytes(size, 60 + i)
        c.send_frame(OP_BINARY, data)  # one frame: records of 16 KiB from Python's ssl
        got = c.read_data(size, timeout=20)
        assert_same(got, data, "echo of %d bytes" % size)
    if backend_tls:
        assert info.sessions == 1


# ---------------------------------------------------------------- 2. versions


def run_old_tls_control(pki, flag):
    """`openssl s_server` that allows TLS 1.0/1.1 must accept the same
    s_client command: proves the client really speaks that version."""
    port = harness.free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
                            "-cert", pki.srv.cert, "-key", pki.srv.key, "-min_protocol", "TLSv1",
                            "-cipher", "DEFAULT@SECLEVEL=0", "-naccept", "1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        harness.wait_until(lambda: harness.is_listening(port), 10, what="s_server")
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, flag,
                            "-cipher", "DEFAULT@SECLEVEL=0"], input=b"", capture_output=True,
                           timeout=20)
        out = (r.stdout + r.stderr).decode(errors="replace")
        want = {"-tls1": "TLSv1\n", "-tls1_1": "TLSv1.1\n"}[flag]
        assert "Protocol  : " + want in out, "control: s_client %s failed against a permissive" \
            " s_server:\n%s" % (flag, out[-2000:])
    finally:
        srv.kill()
        srv.wait()


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_tls_versions_refused(gw, echo, pki, flag):
    run_old_tls_control(pki, flag)
    gw.start(tls_config(gw, base_tls(pki, min_version="1.2"), {"echo": route(echo.addr, "/")}))
    ctx = client_context(pki.ca_)
    live = tls_ws(gw, ctx)
    echo_check(live, b"before")
    for _ in range(3):
        rc, out = s_client(gw, flag, "-cipher", "DEFAULT@SECLEVEL=0")
        assert rc != 0, "s_client %s succeeded:\n%s" % (flag, out)
        assert "alert protocol version" in out, "no protocol_version alert from wsgate:\n%s" % out
        assert "Cipher is (NONE)" in out or "Cipher is" not in out, out
    wait_log(gw, "TLS handshake failed", 3)
    # others are still served: the live session and new ones
    echo_check(live, random_bytes(70000, 1))
    small_echo(gw, ctx)
    rc, out = s_client(gw, "-tls1_2", "-CAfile", pki.ca_.cert, "-verify_return_error",
                       stdin=b"")
    assert "Protocol  : TLSv1.2" in out and "Verify return code: 0 (ok)" in out, out


def test_tls13_only_with_one_suite(gw, echo, pki):
    gw.start(tls_config(gw, base_tls(pki, min_version="1.3", ciphersuites="TLS_AES_256_GCM_SHA384"),
                        {"echo": route(echo.addr, "/")}))
    info = small_echo(gw, client_context(pki.ca_), n=300000)
    assert info["version"] == "TLSv1.3" and info["cipher"] == "TLS_AES_256_GCM_SHA384", info

    rc, out = s_client(gw, "-tls1_3", "-CAfile", pki.ca_.cert)
    assert "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" in out, out
    rc, out = s_client(gw, "-tls1_2")
    assert rc != 0 and "alert protocol version" in out, "TLS 1.2 not refused:\n%s" % out
    rc, out = s_client(gw, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
    assert rc != 0 and "alert handshake failure" in out, "a suite not configured was used:\n%s" % out
    # Python's ssl limited to 1.2 is refused too
    outcome, detail = tls_attempt(gw, client_context(pki.ca_, max_version=ssl.TLSVersion.TLSv1_2))
    assert outcome == "handshake-error", (outcome, detail)
    small_echo(gw, client_context(pki.ca_))


def test_tls12_cipher_list_applies(gw, echo, pki):
    suite = "ECDHE-ECDSA-CHACHA20-POLY1305"
    gw.start(tls_config(gw, base_tls(pki, ciphers=suite), {"echo": route(echo.addr, "/")}))
    info = small_echo(gw, client_context(pki.ca_, max_version=ssl.TLSVersion.TLSv1_2))
    assert info["version"] == "TLSv1.2" and info["cipher"] == suite, info
    rc, out = s_client(gw, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert rc != 0 and "alert handshake failure" in out, out


def test_certificate_chain_is_sent(gw, echo, pki):
    """cert = leaf + intermediate: a client that trusts only the root
    verifies, so wsgate sends the whole chain."""
    inter = pki.ca("inter", "wsgate test intermediate", parent=pki.ca_)
    leaf = pki.server("leaf", inter)
    gw.start(tls_config(gw, {"cert": pki.chain(leaf, "leaf-chain.pem"), "key": leaf.key},
                        {"echo": route(echo.addr, "/")}))
    info = small_echo(gw, client_context(pki.ca_))
    assert info["peer_der"] == leaf.der
    rc, out = s_client(gw, "-CAfile", pki.ca_.cert, "-showcerts", "-verify_return_error")
    assert out.count("BEGIN CERTIFICATE") == 2, out
    assert "Verify return code: 0 (ok)" in out, out


def test_tls13_key_update_mid_session(wss_gw):
    """`openssl s_client` upgrades, then sends KeyUpdate (K: update
    requested, k: not) between WebSocket frames; relaying continues."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", "%s:%d" % (wss_gw.host, wss_gw.port),
                          "-servername", "localhost", "-tls1_3"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = bytearray(), bytearray()

    def pump(src, dst):
        for chunk in iter(lambda: src.read1(65536), b""):
            dst.extend(chunk)

    readers = [threading.Thread(target=pump, args=(p.stdout, out), daemon=True),
               threading.Thread(target=pump, args=(p.stderr, err), daemon=True)]
    for t in readers:
        t.start()
    try:
        def write(data):
            p.stdin.write(data)
            p.stdin.flush()

        write(harness.make_request("/"))
        harness.wait_until(lambda: b"101 Switching Protocols" in out, 15, what="101 via s_client")
        for i, cmd in enumerate([b"K\n", b"k\n", b"K\n"]):
            write(cmd)
            harness.wait_until(lambda: err.count(b"KEYUPDATE") >= i + 1, 15,
                               what="s_client KeyUpdate %d" % (i + 1))
            payload = b"after key update %d" % i
            write(harness.build_frame(OP_BINARY, payload, mask_key=b"\x11\x22\x33\x44"))
            harness.wait_until(lambda: payload in out, 15,
                               what="echo after KeyUpdate %d; s_client stderr: %r" % (i, bytes(err[-500:])))
    finally:
        p.stdin.close()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for t in readers:
            t.join(5)
    assert wss_gw.echo.wait_connections(1).received == sum(len(b"after key update %d" % i)
                                                            for i in range(3))


def test_renegotiation_refused(wss_gw, pki):
    rc, out = s_client(wss_gw, "-tls1_2", stdin=b"R\n", timeout=30)
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out, "renegotiation was not refused:\n%s" % out
    small_echo(wss_gw, client_context(pki.ca_))


def test_websockify_cert_key_ssl_only_flags(gw, echo, pki):
    gw.start(args=["--cert", pki.srv.cert, "--key", pki.srv.key, "--ssl-only",
                   gw.listen, echo.addr])
    info = small_echo(gw, client_context(pki.ca_))
    assert info["peer_der"] == pki.srv.der
    # plain ws:// on that port gets no HTTP answer
    c = gw.client()
    c.send(harness.make_request("/"))
    rest = c.read_until_eof(timeout=15)
    assert b"HTTP/" not in rest, rest[:200]


def test_websockify_cert_without_ssl_only_serves_both(gw, echo, pki):
    """As websockify: --cert without --ssl-only serves wss and plain ws on
    one port (tls auto)."""
    gw.start(args=["--cert", pki.srv.cert, "--key", pki.srv.key, gw.listen, echo.addr])
    info = small_echo(gw, client_context(pki.ca_))
    assert info["peer_der"] == pki.srv.der
    c = gw.ws("/")
    echo_check(c, random_bytes(5000, 9))


# ---------------------------------------------------------------- 3. mutual TLS


def refusal(gw, ctx):
    outcome, detail = tls_attempt(gw, ctx)
    assert outcome != "http", "wsgate answered HTTP %r to a refused client certificate" % (detail,)
    return outcome, detail


def test_client_certificates_verified(gw, echo, pki):
    gw.start(tls_config(gw, base_tls(pki, client_ca=pki.client_ca.cert),
                        {"echo": route(echo.addr, "/")}))
    # signed by client_ca: accepted, relayed, and named in the access log
    for tls_max in (None, ssl.TLSVersion.TLSv1_2):
        c = tls_ws(gw, client_context(pki.ca_, cert=pki.alice, max_version=tls_max))
        echo_check(c, random_bytes(100000, 3))
        port = c.sock.getsockname()[1]
        c.send_close(1000)
        c.expect_close(1000)
        recs = harness.wait_until(lambda: access_for(gw, port), 10, what="access line")
        assert recs[0]["client_cert"] == "alice.example", recs[0]["line"]
        assert recs[0]["status"] == "101", recs[0]["line"]

    failures = 0
    for tls_max in (None, ssl.TLSVersion.TLSv1_2):
        # no client certificate at all
        refusal(gw, client_context(pki.ca_, max_version=tls_max))
        # right name, foreign issuer
        refusal(gw, client_context(pki.ca_, cert=pki.mallory, max_version=tls_max))
        failures += 2
    text = wait_log(gw, "TLS handshake failed", failures)
    assert "peer did not return a certificate" in text or "certificate required" in text, text
    assert "unknown ca" in text or "unable to get" in text or "certificate verify failed" in text, text
    for r in access_records(gw):
        if "TLS handshake failed" in r["reason"]:
            assert r["client_cert"] is None, "refused client named in the log: %s" % r["line"]
            assert r["status"] != "101", r["line"]
    assert echo.count == 2, "refused clients reached the backend (%d connections)" % echo.count
    # the gateway still serves good clients
    small_echo(gw, client_context(pki.ca_, cert=pki.bob))


def test_allowed_client_names(gw, echo, pki):
    gw.start(tls_config(gw, base_tls(pki, client_ca=pki.client_ca.cert), {
        "a": route(echo.addr, "/a", allowed_client_names="alice.example"),
        "b": route(echo.addr, "/b", allowed_client_names="bob.example, carol.example"),
        "open": route(echo.addr, "/open"),
    }))
    ctx = {n: client_context(pki.ca_, cert=getattr(pki, n)) for n in ("alice", "bob", "carol")}
    cases = [("alice", "/a", 101), ("alice", "/b", 403), ("bob", "/b", 101), ("bob", "/a", 403),
             ("carol", "/b", 101), ("carol", "/a", 403), ("bob", "/open", 101)]
    seen = {}
    for who, path, want in cases:
        c = tls_client(gw, ctx[who])
        port = c.sock.getsockname()[1]
        if want == 101:
            c.upgrade(path)
            echo_check(c, ("%s on %s" % (who, path)).encode())
            c.send_close(1000)
            c.expect_close(1000)
        else:
            resp = assert_http_error(c, 403, c.handshake(path))
            assert resp.status == 403
        seen[port] = (who, path, want)
    assert echo.count == sum(1 for _, _, w in cases if w == 101)
    cn = {"alice": "alice.example", "bob": "bob.example", "carol": "carol"}
    for port, (who, path, want) in seen.items():
        recs = harness.wait_until(lambda: access_for(gw, port), 10, what="access line %d" % port)
        assert recs[0]["status"] == str(want), (who, path, recs[0]["line"])
        assert recs[0]["client_cert"] == cn[who], (who, path, recs[0]["line"])


def test_allowed_client_names_on_a_plain_listener_gives_403(gw, echo, pki):
    """A route with allowed_client_names, reached through a plain (non-TLS)
    listener of the same gateway, has no verified name: 403."""
    plain_port = harness.free_port()
    cfg = tls_config(gw, base_tls(pki, client_ca=pki.client_ca.cert), {
        "a": route(echo.addr, "/a", allowed_client_names="alice.example"),
        "open": route(echo.addr, "/open")})
    cfg["gateway"]["listen"] = [gw.listen + " tls", "127.0.0.1:%d" % plain_port]
    gw.start(cfg)
    harness.wait_until(lambda: harness.is_listening(plain_port), 10, what="plain listener")
    c = harness.RawClient("127.0.0.1", plain_port)
    gw.clients.append(c)
    assert_http_error(c, 403, c.handshake("/a"))
    c = harness.RawClient("127.0.0.1", plain_port)
    gw.clients.append(c)
    c.upgrade("/open")
    c.send_frame(OP_BINARY, b"plain ok")
    assert c.read_data(8) == b"plain ok"
    c = tls_ws(gw, client_context(pki.ca_, cert=pki.alice), "/a")
    echo_check(c, b"alice over tls")


def test_wildcard_client_certificate_is_not_an_allowed_name(gw, echo, pki):
    """allowed_client_names lists identities. A client certificate whose
    CN or SAN is the pattern "*.corp.example" is not "alice.corp.example"
    and must get 403 (X509_check_host treats the certificate's name as a
    wildcard pattern unless X509_CHECK_FLAG_NO_WILDCARDS is set)."""
    wild_cn = pki.client("wild-cn", pki.client_ca, "*.corp.example")
    wild_san = pki.client("wild-san", pki.client_ca, "wild", dns=("*.corp.example",))
    alice = pki.client("alice-corp", pki.client_ca, "alice.corp.example")
    gw.start(tls_config(gw, base_tls(pki, client_ca=pki.client_ca.cert), {
        "a": route(echo.addr, "/", allowed_client_names="alice.corp.example")}))
    c = tls_ws(gw, client_context(pki.ca_, cert=alice))
    echo_check(c, b"the real alice")
    statuses = {}
    for cf in (wild_cn, wild_san):
        c = tls_client(gw, client_context(pki.ca_, cert=cf))
        statuses[cf.name] = c.handshake("/").status
    assert statuses == {"wild-cn": 403, "wild-san": 403}, \
        "wildcard client certificates admitted as alice.corp.example: %r" % statuses


def test_client_cert_name_cannot_forge_access_log_lines(gw, echo, pki):
    """The certificate name is attacker-chosen text (any CA-signed client):
    quotes and a newline in the CN must not end the field or start a new,
    forged log line in the text access log."""
    evil_cn = 'x" route="admin\nFORGED access: client=6.6.6.6:1'
    evil = pki.client("evil", pki.client_ca, evil_cn)
    gw.start(tls_config(gw, base_tls(pki, client_ca=pki.client_ca.cert),
                        {"echo": route(echo.addr, "/")}))
    c = tls_ws(gw, client_context(pki.ca_, cert=evil))
    echo_check(c, b"hello")
    port = c.sock.getsockname()[1]
    c.send_close(1000)
    c.expect_close(1000)
    harness.wait_until(lambda: ":%d " % port in gw.stderr_text(), 10, what="access line")
    lines = gw.stderr_text().splitlines()
    forged = [ln for ln in lines if ln.startswith("FORGED")]
    assert not forged, "a client certificate CN forged a log line: %r" % forged
    mine = [ln for ln in lines if ":%d " % port in ln]
    # Quoted values may hold any text, escaped: outside the quotes there must
    # be exactly one route field, and the quoted value must carry no raw quote.
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', mine[0]) if len(mine) == 1 else ""
    assert len(mine) == 1 and unquoted.count(" route=") == 1, \
        "the CN injected fields into the access line: %r" % mine
    assert 'client_cert="x\\x22 route=\\x22admin\\x0aFORGED' in mine[0], mine


def test_client_cert_in_json_access_log(gw, echo, pki):
    odd = pki.client("odd", pki.client_ca, 'q"uo{te} <x>')
    gw.start(tls_config(gw, base_tls(pki, client_ca=pki.client_ca.cert),
                        {"echo": route(echo.addr, "/")}, gateway={"log_format": "json"}))
    for cf in (pki.alice, odd):
        c = tls_ws(gw, client_context(pki.ca_, cert=cf))
        echo_check(c, b"json")
        c.send_close(1000)
        c.expect_close(1000)
    def sessions():
        out = []
        for ln in gw.stderr_text().splitlines():
            obj = json.loads(ln)  # every line is JSON
            if obj.get("event") == "session":
                out.append(obj)
        return out if len(out) >= 2 else None
    recs = harness.wait_until(sessions, 10, what="2 JSON session lines")
    assert sorted(r.get("client_cert") for r in recs) == sorted(["alice.example", 'q"uo{te} <x>']), recs


def test_allowed_client_names_requires_client_ca(tmp_path, wsgate_binary, pki, echo):
    p = tmp_path / "bad.ini"
    p.write_text(harness.ini_text({
        "gateway": {"listen": "127.0.0.1:%d tls" % harness.free_port()},
        "tls": {"cert": pki.srv.cert, "key": pki.srv.key},
        "route:a": route(echo.addr, "/", allowed_client_names="alice.example")}))
    r = harness.run_wsgate(wsgate_binary, ["-t", "-c", str(p)])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "allowed_client_names" in r.stdout + r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------- 4. TLS backends


def test_backend_over_tls(gw, backends, pki):
    good, good_info = tls_echo_backend(backends, pki.backend)
    other, other_info = tls_echo_backend(backends, pki.backend_other)
    tls_on = {"backend_tls": "on"}
    gw.start(tls_config(gw, base_tls(pki), {
        "good": route("localhost:%d" % good.port, "/good", backend_ca=pki.backend_ca.cert, **tls_on),
        "ip": route("127.0.0.1:%d" % good.port, "/ip", backend_ca=pki.backend_ca.cert, **tls_on),
        "badca": route("localhost:%d" % good.port, "/badca", backend_ca=pki.foreign_ca.cert,
                       **tls_on),
        "noverify": route("localhost:%d" % good.port, "/noverify", backend_ca=pki.foreign_ca.cert,
                          backend_tls_verify="off", **tls_on),
        "wronghost": route("localhost:%d" % other.port, "/wronghost",
                           backend_ca=pki.backend_ca.cert, **tls_on),
        "system": route("localhost:%d" % good.port, "/system", **tls_on),
    }))
    ctx = client_context(pki.ca_)
    data = random_bytes(300000, 21)
    for path in ("/good", "/ip", "/noverify"):
        n0 = good_info.sessions
        got, _ = wss_echo(gw, [data[:150000], data[150000:]], ctx, path=path)
        assert_same(got, data, "echo through TLS backend %s" % path)
        assert good_info.sessions == n0 + 1, "%s did not use TLS to the backend" % path
    assert "localhost" in good_info.sni, "no SNI 'localhost' sent: %r" % good_info.sni

    for path in ("/badca", "/wronghost", "/system"):
        c = tls_client(gw, ctx)
        assert_http_error(c, 502, c.handshake(path))
    # the log line is written by the logger thread, maybe after the 502
    wait_log(gw, "TLS handshake failed", 3)
    assert other_info.sessions == 0, "backend with the wrong host name was accepted"
    # the good route still works after the failures
    got, _ = wss_echo(gw, [b"still fine"], ctx, path="/good")
    assert got == b"still fine"


def test_backend_tls_handshake_stall_gives_504(gw, backends, pki):
    """A backend that accepts TCP and never answers the ClientHello: the
    connect timeout covers the TLS handshake (504), the gateway goes on."""
    mute = backends.sink()
    good, info = tls_echo_backend(backends, pki.backend)
    gw.start(tls_config(gw, base_tls(pki), {
        "mute": route(mute.addr, "/mute", backend_tls="on", backend_ca=pki.backend_ca.cert,
                      connect_timeout="1s"),
        "good": route("localhost:%d" % good.port, "/good", backend_tls="on",
                      backend_ca=pki.backend_ca.cert)}))
    ctx = client_context(pki.ca_)
    c = tls_client(gw, ctx)
    c.send(harness.make_request("/mute"))
    got, _ = wss_echo(gw, [b"meanwhile"], ctx, path="/good")
    assert got == b"meanwhile"
    resp = c.read_http_response(timeout=15)
    assert_http_error(c, 504, resp)
    assert mute.wait_connections(1).received > 0, "no ClientHello reached the mute backend"


def test_backend_tls_session_ends_with_close_notify(gw, backends, pki):
    """Client closes: wsgate ends the backend TLS session with close_notify
    (not a bare TCP close), after delivering every byte."""
    be, info = tls_echo_backend(backends, pki.backend)
    gw.start(tls_config(gw, base_tls(pki), {
        "r": route("localhost:%d" % be.port, "/", backend_tls="on",
                   backend_ca=pki.backend_ca.cert)}))
    c = tls_ws(gw, client_context(pki.ca_))
    data = random_bytes(200000, 77)
    echo_check(c, data)
    c.send_close(1000)
    c.expect_close(1000)
    harness.wait_until(lambda: info.ends, 10, what="backend session end")
    assert info.ends == ["close_notify"], \
        "the backend saw %r: wsgate ended its TLS session without close_notify" % info.ends
    assert be.wait_connections(1).received == len(data)


def test_backend_tls_plain_backend_gives_502(gw, echo, pki):
    """backend_tls = on against a backend that speaks plain TCP: 502."""
    gw.start(tls_config(gw, base_tls(pki), {
        "r": route(echo.addr, "/", backend_tls="on", backend_ca=pki.backend_ca.cert,
                   connect_timeout="3s")}))
    c = tls_client(gw, client_context(pki.ca_))
    resp = c.handshake("/")
    assert resp.status in (502, 504), resp
    assert_http_error(c, resp.status, resp)


# ---------------------------------------------------------------- 5. rotation


def test_certificate_rotation_on_sighup(gw, echo, pki):
    # the files the configuration names; start with A
    a = pki.server("rot-a", pki.ca_, org="cert A")
    b = pki.server("rot-b", pki.ca_, org="cert B")
    c3 = pki.server("rot-c", pki.ca_, org="cert C")
    live_cert = pki.server("rot-live", pki.ca_, org="placeholder")
    copy_files(a, live_cert)
    gw.start(tls_config(gw, {"cert": live_cert.cert, "key": live_cert.key},
                        {"echo": route(echo.addr, "/")}))
    ctx = client_context(pki.ca_)
    assert peer_der(gw, ctx) == a.der, "did not start with certificate A"

    old = tls_ws(gw, ctx)
    assert old.sock.getpeercert(binary_form=True) == a.der
    echo_check(old, random_bytes(200000, 31))

    # rotate to B
    copy_files(b, live_cert)
    sighup(gw)
    harness.wait_until(lambda: peer_der(gw, ctx) == b.der, 15, interval=0.2,
                       what="new clients to see certificate B")
    assert old.sock.getpeercert(binary_form=True) == a.der
    echo_check(old, random_bytes(200000, 32), chunk_frames=3000)
    got, info = wss_echo(gw, [b"new session on B"], ctx)
    assert got == b"new session on B" and info["peer_der"] == b.der

    # a broken certificate file: B stays, and the log says why
    hups = log_count(gw, "SIGHUP")
    with open(live_cert.cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nthis is not base64 at all\n-----END CERTIFICATE-----\n")
    sighup(gw)
    text = wait_log(gw, "SIGHUP", hups + 1)
    text = wait_log(gw, "keep the old certificate", 1)
    line = [ln for ln in text.splitlines() if "keep the old certificate" in ln][-1]
    assert live_cert.cert in line and "cannot load certificate" in line, \
        "the log does not say which file failed and why: %r" % line
    for _ in range(3):
        assert peer_der(gw, ctx) == b.der, "a broken certificate replaced B"
    echo_check(old, b"old session after the broken reload")

    # the key of B with the certificate of C: a mismatch, B stays
    with open(c3.cert) as src, open(live_cert.cert, "w") as dst:
        dst.write(src.read())
    sighup(gw)
    text = wait_log(gw, "keep the old certificate", 2)
    line = [ln for ln in text.splitlines() if "keep the old certificate" in ln][-1]
    assert "does not match" in line or "mismatch" in line, line
    assert peer_der(gw, ctx) == b.der, "a certificate without its key replaced B"

    # a correct pair again: C
    copy_files(c3, live_cert)
    sighup(gw)
    harness.wait_until(lambda: peer_der(gw, ctx) == c3.der, 15, interval=0.2, what="certificate C")
    # the first session lived through all of it, both ways
    echo_check(old, random_bytes(100000, 33))
    assert old.sock.getpeercert(binary_form=True) == a.der
    old.send_close(1000)
    old.expect_close(1000)


def test_sighup_applies_new_tls_settings_to_new_connections(gw, echo, pki):
    """client_ca and min_version come from the re-read file: new clients
    meet the new rules, a live session made under the old ones goes on."""
    routes = {"echo": route(echo.addr, "/")}
    gw.start(tls_config(gw, base_tls(pki, client_ca=pki.client_ca.cert), routes))
    live = tls_ws(gw, client_context(pki.ca_, cert=pki.alice, max_version=ssl.TLSVersion.TLSv1_2))
    echo_check(live, b"before reload")
    assert tls_attempt(gw, client_context(pki.ca_, cert=pki.mallory))[0] != "http"

    gw.write_config(tls_config(gw, base_tls(pki, client_ca=pki.foreign_ca.cert, min_version="1.3"),
                               routes))
    sighup(gw)
    wait_log(gw, "SIGHUP: reloaded")
    harness.wait_until(lambda: tls_attempt(gw, client_context(pki.ca_, cert=pki.mallory))[0]
                       == "http", 15, interval=0.2, what="the foreign CA's client to be accepted")
    outcome, detail = tls_attempt(gw, client_context(pki.ca_, cert=pki.alice))
    assert outcome != "http", "old client CA still accepted: %r" % (detail,)
    outcome, detail = tls_attempt(gw, client_context(pki.ca_, cert=pki.mallory,
                                                     max_version=ssl.TLSVersion.TLSv1_2))
    assert outcome == "handshake-error", "TLS 1.2 still accepted after min_version = 1.3: %r" \
        % (detail,)
    echo_check(live, random_bytes(150000, 88))
    assert live.sock.version() == "TLSv1.2"


# ---------------------------------------------------------------- 6. keys


def test_encrypted_key_with_password_file(gw, echo, pki):
    gw.start(tls_config(gw, {"cert": pki.enc.cert, "key": pki.enc.key,
                             "key_password_file": pki.enc.password_file},
                        {"echo": route(echo.addr, "/")}))
    got, info = wss_echo(gw, [random_bytes(200000, 41)], client_context(pki.ca_))
    assert_same(got, random_bytes(200000, 41), "echo with an encrypted key")
    assert info["peer_der"] == pki.enc.der
    assert "s3cret" not in gw.stderr_text()


def start_fails(wsgate_binary, tmp_path, config, name):
    """Run wsgate with config and expect exit 1 (killed if it runs)."""
    p = tmp_path / name
    p.write_text(harness.ini_text(config))
    proc = subprocess.Popen([wsgate_binary, "-c", str(p)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("wsgate started with %s:\n%s" % (name, err.decode(errors="replace")))
    return proc.returncode, (out + err).decode(errors="replace")


@pytest.mark.parametrize("case", ["wrong-password", "no-password-file"])
def test_encrypted_key_bad_password_fails_to_start(tmp_path, wsgate_binary, pki, case):
    tls = {"cert": pki.enc.cert, "key": pki.enc.key}
    if case == "wrong-password":
        pw = tmp_path / "wrong.pw"
        pw.write_text("not the password\n")
        tls["key_password_file"] = str(pw)
    rc, text = start_fails(wsgate_binary, tmp_path, {
        "gateway": {"listen": "127.0.0.1:%d tls" % harness.free_port()}, "tls": tls,
        "route:r": route("127.0.0.1:9", "/")}, case + ".ini")
    assert rc == 1, (rc, text)
    assert pki.enc.key in text or "key" in text, text
    assert "s3cret" not in text and "not the password" not in text, text


def test_key_in_the_certificate_file(gw, echo, pki):
    both = pki.combined(pki.srv, "srv-with-key.pem")
    gw.start(tls_config(gw, {"cert": both}, {"echo": route(echo.addr, "/")}))
    info = small_echo(gw, client_context(pki.ca_))
    assert info["peer_der"] == pki.srv.der


# ---------------------------------------------------------------- 7. stalled handshakes


@pytest.mark.deadline(90)
def test_stalled_handshakes_time_out_while_others_are_served(gw, echo, pki):
    gw.start(tls_config(gw, base_tls(pki), {"echo": route(echo.addr, "/")},
                        gateway={"handshake_timeout": "2s"}))
    ctx = client_context(pki.ca_)
    small_echo(gw, ctx)  # warm
    fds0 = wsgate_fds(gw)
    stalls = []
    for i in range(50):
        # half send a whole ClientHello, half only its first bytes
        stalls.append(StalledHandshake(gw.host, gw.port, ctx, prefix=None if i % 2 else 40))
    # and a few that finish the TLS handshake but never send a request
    silent = [tls_client(gw, ctx) for _ in range(5)]
    watcher = watch_until_closed(stalls, timeout=30)
    t_setup = time.monotonic()
    # meanwhile: full sessions, both clients
    served = 0
    for i in range(4):
        data = random_bytes(50000 + i, 50 + i)
        got, _ = wss_echo(gw, [data], ctx)
        assert_same(got, data, "echo %d during the stall" % i)
        c = tls_ws(gw, ctx)
        echo_check(c, data)
        c.close()
        served += 2
    t_served = time.monotonic()
    still_open = sum(1 for s in stalls if s.closed_at is None)
    watcher.done.wait(35)
    not_closed = [i for i, s in enumerate(stalls) if s.closed_at is None]
    assert not not_closed, "stalled handshakes never closed by wsgate: %r" % not_closed
    late = [(i, round(s.closed_at - s.sent_at, 2)) for i, s in enumerate(stalls)
            if s.closed_at - s.sent_at > 15]
    assert not late, "closed later than 15 s: %r" % late
    early = [(i, round(s.closed_at - s.sent_at, 2)) for i, s in enumerate(stalls)
             if s.closed_at - s.sent_at < 1.0]
    assert not early, "closed long before handshake_timeout (2s): %r" % early
    print("%d sessions served in %.2fs while %d of 50 stalled were open; closes after %.2f..%.2fs"
          % (served, t_served - t_setup, still_open,
             min(s.closed_at - s.sent_at for s in stalls),
             max(s.closed_at - s.sent_at for s in stalls)))
    for c in silent:
        try:
            rest = c.read_until_eof(timeout=15)
        except TimeoutError:
            raise AssertionError("a TLS client that sent no request was not closed") from None
        assert b"HTTP/" not in rest, rest[:200]
        c.close()
    for s in stalls:
        s.close()
    # wsgate released their descriptors and still serves
    harness.wait_until(lambda: wsgate_fds(gw) <= fds0, 10, what="wsgate fds back to %d" % fds0)
    small_echo(gw, ctx)
    wait_log(gw, "handshake timeout", 50)


# ---------------------------------------------------------------- 8. garbage


def test_plain_http_and_garbage_on_tls_port(wss_gw, pki):
    ctx = client_context(pki.ca_)
    live = tls_ws(wss_gw, ctx)
    echo_check(live, b"live before")
    # a real ClientHello's bytes
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    client_hello = out.read()
    garbage = {
        "plain-http-upgrade": harness.make_request("/"),
        "plain-http-get": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "random": random_bytes(4096, 99),
        "zeros": b"\0" * 2000,
        "huge-record": b"\x16\x03\x01\xff\xff" + random_bytes(3000, 98),
        "alert-first": b"\x15\x03\x03\x00\x02\x02\x28",
        # SSLv2-format ClientHello: 7 cipher specs, 16-byte challenge
        "sslv2-hello": (b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"
                        + bytes.fromhex("010080030080070c0006004000400200800000040000ff")[:21]
                        + os.urandom(16)),
        "hello-then-garbage": client_hello + random_bytes(2000, 97),
        "hello-corrupted": client_hello[:60] + bytes(b ^ 0x5A for b in client_hello[60:]),
    }
    for name, payload in garbage.items():
        c = wss_gw.client()
        c.send_quietly(payload)
        try:
            rest = c.read_until_eof(timeout=15)
        except TimeoutError as e:
            raise AssertionError("%s: wsgate did not close the connection: %s" % (name, e))
        assert b"HTTP/" not in rest, "%s: got an HTTP answer in clear text: %r" % (name, rest[:100])
        if name.startswith("plain-http"):
            assert b"101 Switching" not in rest
        echo_check(live, ("live after %s" % name).encode())
    # a client that connects and resets, or leaves at once
    for _ in range(3):
        c = wss_gw.client()
        c.send_quietly(client_hello)
        c.abort()
        wss_gw.client().close()
    wait_log(wss_gw, "TLS handshake failed", 5)
    echo_check(live, random_bytes(300000, 96))
    small_echo(wss_gw, ctx)
    assert wss_gw.alive()
