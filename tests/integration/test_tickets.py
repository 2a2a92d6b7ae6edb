"""TLS session resumption on wss:// listeners: stateless session tickets
(one per TLS 1.3 handshake), process-wide ticket keys rotated on SIGHUP with
the previous key still accepted until the next rotation, and `[tls]
session_tickets = off`.

What happens to a ticket across reloads (documented in doc/wsgate.ini.5):
a ticket sealed before one SIGHUP still resumes (and the client gets a new
ticket under the new key); a ticket sealed before two SIGHUPs no longer
resumes: the client falls back to a full handshake and its connection works.
"""

import socket
import ssl

import pytest

import harness
from harness import OP_BINARY, route, wait_log
from tls_helpers import Pki, client_context, sighup, tls_config

NEW_SESSION_TICKET = 4  # TLS handshake message type


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.ca_ = p.ca("ca", "wsgate ticket test CA")
    p.srv = p.server("srv", p.ca_)
    return p


def start(gw, echo, pki, **tls):
    keys = {"cert": pki.srv.cert, "key": pki.srv.key}
    keys.update(tls)
    gw.start(tls_config(gw, keys, {"echo": route(echo.addr, "/")}))


def counting_context(pki, max_version=None):
    """A verifying client context that counts the NewSessionTicket messages
    it reads (ctx.tickets)."""
    ctx = client_context(pki.ca_, max_version=max_version)
    ctx.tickets = 0

    def on_msg(conn, direction, version, content_type, msg_type, data):
        if direction == "read" and content_type == ssl._TLSContentType.HANDSHAKE and \
                msg_type == NEW_SESSION_TICKET:
            ctx.tickets += 1

    ctx._msg_callback = on_msg
    return ctx


def wss_round(gw, ctx, session=None):
    """One wss connection (offering session if given): upgrade, a 64-byte
    echo, close. Returns (session_reused, the session to offer next)."""
    s = socket.create_connection((gw.host, gw.port), timeout=10)
    ss = ctx.wrap_socket(s, server_hostname="localhost", session=session)
    c = harness.RawClient.__new__(harness.RawClient)
    c.sock, c.buf, c.eof, c.key, c.response, c.controls = ss, bytearray(), False, None, None, []
    try:
        c.upgrade("/")
        data = harness.random_bytes(64, seed=5)
        c.send_frame(OP_BINARY, data)
        harness.assert_same(c.read_data(64), data, "echo")
        return ss.session_reused, ss.session
    finally:
        ss.close()


def test_tls13_resumption_with_one_ticket(gw, echo, pki):
    start(gw, echo, pki)
    ctx = counting_context(pki)
    reused, sess = wss_round(gw, ctx)
    assert not reused
    assert ctx.tickets == 1, "one ticket after a full TLS 1.3 handshake (OpenSSL's default is 2)"
    assert sess.has_ticket
    for i in range(5):
        reused, sess = wss_round(gw, ctx, sess)
        assert reused, "resumption %d failed" % i
    # a ticket under the current key is not renewed: no write after a
    # resumed handshake
    assert ctx.tickets == 1


def test_tls12_resumption(gw, echo, pki):
    start(gw, echo, pki)
    ctx = counting_context(pki, max_version=ssl.TLSVersion.TLSv1_2)
    reused, sess = wss_round(gw, ctx)
    assert not reused and sess.has_ticket
    reused, _ = wss_round(gw, ctx, sess)
    assert reused


def test_keys_rotate_on_sighup(gw, echo, pki):
    start(gw, echo, pki)
    ctx = counting_context(pki)
    _, before_first = wss_round(gw, ctx)
    sighup(gw)
    wait_log(gw, "SIGHUP: reloaded")
    # sealed under the previous key: still resumes, and a new ticket comes
    tickets = ctx.tickets
    reused, after_first = wss_round(gw, ctx, before_first)
    assert reused, "a ticket from before one reload must still resume"
    assert ctx.tickets == tickets + 1, "renewed under the new key"
    sighup(gw)
    wait_log(gw, "SIGHUP: reloaded", count=2)
    # two rotations old: a full handshake, and the connection works
    reused, _ = wss_round(gw, ctx, before_first)
    assert not reused, "a ticket from before two reloads must not resume"
    # the ticket renewed after the first reload is under the previous key now
    reused, _ = wss_round(gw, ctx, after_first)
    assert reused


def test_ticket_keys_survive_a_reload_that_keeps_the_old_certificate(gw, echo, pki, tmp_path):
    """The keys are the process's, not the context's: when a reload keeps the
    old certificate (the new one cannot be loaded) they still rotate."""
    start(gw, echo, pki)
    ctx = counting_context(pki)
    _, sess = wss_round(gw, ctx)
    text = open(gw.config_path).read().replace(pki.srv.cert, str(tmp_path / "missing.pem"))
    with open(gw.config_path, "w") as f:
        f.write(text)
    sighup(gw)
    wait_log(gw, "new connections keep the old certificate")
    reused, _ = wss_round(gw, ctx, sess)
    assert reused
    sighup(gw)
    wait_log(gw, "new connections keep the old certificate", count=2)
    reused, _ = wss_round(gw, ctx, sess)
    assert not reused


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_tickets_off(gw, echo, pki, max_version):
    start(gw, echo, pki, session_tickets="off")
    ctx = counting_context(pki, max_version=max_version)
    reused, sess = wss_round(gw, ctx)
    assert not reused and ctx.tickets == 0
    reused, _ = wss_round(gw, ctx, sess)
    assert not reused, "no resumption (no ticket, no server-side session cache)"
