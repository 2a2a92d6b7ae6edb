"""token_file routes (websockify's TokenFile), against the real binary.

?token=X in the request's query string picks the backend of a route from a
token file ("token: host:port" lines, # comments) or a directory of such
files. A missing or unknown token is answered 403; the source is re-read
when it changes (no restart, no SIGHUP needed) and on SIGHUP; token values
never appear in wsgate's logs. noVNC's "vnc.html?path=websockify?token=X"
makes the browser request "/websockify?token=X".

The backends are greeters: each sends its own name first and then echoes,
so a test can tell which backend a token reached.
"""

import asyncio
import os
import signal
import time

import pytest

import harness
from harness import OP_BINARY, build_frame


def uniq(prefix):
    """A token nobody could find in a log by accident."""
    return "%s-%s" % (prefix, os.urandom(6).hex())


def write_tokens(path, lines, bump=True):
    """(Re)write a token file in place. With bump, its mtime moves forward by
    a few seconds so that even a file system with coarse timestamps shows a
    change (the content and size change anyway)."""
    old = None
    if bump and os.path.exists(path):
        old = os.stat(path).st_mtime
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if old is not None:
        t = max(time.time(), old) + 2
        os.utime(path, (t, t))


# wsgate checks a token source for changes once a second, off the worker
# loops (DESIGN.md "Hardening"): a change shows within two intervals.
WATCH_WAIT = 3.0


def retry(check, timeout=WATCH_WAIT):
    """Run check() until it passes; fail with its last error after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def greeting(name):
    return ("[backend %s]" % name).encode()


class TokenEnv:
    """Two distinguishable backends (alpha, beta) and helpers to reach them."""

    def __init__(self, gw, backends):
        self.gw = gw
        self.alpha = backends.greeter(greeting("alpha"))
        self.beta = backends.greeter(greeting("beta"))
        self.gamma = backends.greeter(greeting("gamma"))
        self.echo = backends.echo()
        self.t_alpha = uniq("tok-alpha")
        self.t_beta = uniq("tok-beta")
        self.t_gamma = uniq("tok-gamma")
        self.t_echo = uniq("tok-echo")
        self.t_unknown = uniq("tok-unknown")
        self.secrets = [self.t_alpha, self.t_beta, self.t_gamma, self.t_echo, self.t_unknown]

    def reaches(self, target, name, path="/websockify", wait=False):
        """Upgrade with ?token= target, check the greeting says `name`, and
        that bytes echo back through that backend. With wait (right after the
        source changed), retry until the watcher re-read it (WATCH_WAIT)."""
        if wait:
            return retry(lambda: self.reaches(target, name, path))
        c = self.gw.client()
        resp = c.handshake("%s?token=%s" % (path, target) if "?" not in path else path)
        assert resp.status == 101, "token for %s: expected 101, got %r" % (name, resp)
        g = greeting(name)
        got = c.read_data(len(g), timeout=15)
        assert got == g, "token for %s reached the wrong backend: %r" % (name, got)
        payload = harness.random_bytes(3000, seed=len(name))
        c.send(build_frame(OP_BINARY, payload))
        harness.assert_same(c.read_data(len(payload), timeout=15), payload, "echo via " + name)
        c.send_close(1000)
        c.expect_close(1000)

    def refused(self, target_path, status=403, wait=False):
        if wait:
            return retry(lambda: self.refused(target_path, status))
        c = self.gw.client()
        resp = c.handshake(target_path)
        harness.assert_http_error(c, status, resp)
        return resp

    def no_token_in_logs(self, text=None, extra=()):
        text = self.gw.stderr_text() if text is None else text
        for t in list(self.secrets) + list(extra):
            assert t not in text, "token %r appears in wsgate's stderr:\n%s" % (t, text[-4000:])


@pytest.fixture
def env(gw, backends):
    return TokenEnv(gw, backends)


def token_route(token_file, path="/websockify", **opts):
    d = {"path": path, "token_file": token_file}
    d.update(opts)
    return d


def start(gw, token_file, path="/websockify", log_level="debug", route_opts=None, **gateway):
    g = {"log_level": log_level}
    g.update(gateway)
    gw.start({"gateway": g, "route:vnc": token_route(token_file, path, **(route_opts or {}))})


def stop_checked(gw):
    """Stop wsgate now (to read its complete stderr) and fail on problems."""
    rc, problems = gw.stop()
    assert problems == [], problems
    assert rc == 0
    return gw.stderr_text()


# ---------------------------------------------------------------- basics


def test_each_token_reaches_its_backend(gw, env, tmp_path):
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["# websockify TokenFile",
                      "%s: %s" % (env.t_alpha, env.alpha.addr),
                      "",
                      "   # an indented comment",
                      "%s: %s" % (env.t_beta, env.beta.addr)])
    start(gw, tf)
    env.reaches(env.t_alpha, "alpha")
    env.reaches(env.t_beta, "beta")
    env.reaches(env.t_alpha, "alpha")
    assert env.alpha.count == 2 and env.beta.count == 1
    env.no_token_in_logs(stop_checked(gw))


def test_unknown_and_missing_token_403(gw, env, tmp_path):
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    start(gw, tf)
    env.refused("/websockify?token=%s" % env.t_unknown)
    env.refused("/websockify")                        # no query at all
    env.refused("/websockify?")                       # empty query
    env.refused("/websockify?token=")                 # empty token
    env.refused("/websockify?tok=%s" % env.t_alpha)   # other parameter name
    env.refused("/websockify?xtoken=%s" % env.t_alpha)
    env.refused("/websockify?token=%s" % env.t_alpha.upper())  # tokens are case-sensitive
    env.refused("/websockify?token=%s" % env.t_alpha[:-1])     # prefix
    env.refused("/websockify?token=%sx" % env.t_alpha)         # longer
    env.refused("/websockify?token=%zz")              # malformed escape
    assert env.alpha.count == 0, "a refused request reached the backend"
    env.reaches(env.t_alpha, "alpha")
    env.no_token_in_logs(stop_checked(gw))


def test_query_parameter_forms(gw, env, tmp_path):
    tf = str(tmp_path / "tokens")
    spaced = uniq("tok with space")
    slashed = uniq("tok/slash")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr),
                      "%s: %s" % (spaced, env.beta.addr),
                      "%s: %s" % (slashed, env.gamma.addr)])
    start(gw, tf)
    env.reaches("x", "alpha", path="/websockify?a=1&token=%s&b=2" % env.t_alpha)
    env.reaches("x", "alpha", path="/websockify?token=&token=%s" % env.t_alpha)  # first non-empty
    env.reaches("x", "beta", path="/websockify?token=%s" % spaced.replace(" ", "%20"))
    env.reaches("x", "beta", path="/websockify?token=%s" % spaced.replace(" ", "+"))
    env.reaches("x", "gamma", path="/websockify?token=%s" % slashed.replace("/", "%2F"))
    # the percent-encoded form of an ordinary token
    enc = "".join("%%%02X" % ord(ch) for ch in env.t_alpha)
    env.reaches("x", "alpha", path="/websockify?token=%s" % enc)
    env.no_token_in_logs(stop_checked(gw), extra=[spaced, slashed, enc])


def test_novnc_path_form(gw, env, tmp_path):
    """noVNC's vnc.html?path=websockify?token=X: the browser requests
    "/websockify?token=X" (route path /websockify; the query is not part
    of the path)."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr),
                      "%s: %s" % (env.t_beta, env.beta.addr)])
    start(gw, tf, path="/websockify", route_opts={"subprotocols": "binary, base64"})
    c = gw.client()
    c.send(("GET /websockify?token=%s HTTP/1.1\r\n"
            "Host: %s\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: binary\r\n"
            "Origin: http://%s\r\n\r\n"
            % (env.t_beta, gw.listen, "dGhlIHNhbXBsZSBub25jZQ==", gw.listen)).encode())
    resp = c.read_http_response()
    assert resp.status == 101, resp
    assert resp.get("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp
    assert resp.get("sec-websocket-protocol") == "binary", resp
    g = greeting("beta")
    assert c.read_data(len(g)) == g
    # the route path is exact: a token does not make another path match
    env.refused("/websockify/extra?token=%s" % env.t_alpha, status=404)
    env.no_token_in_logs(stop_checked(gw))


def test_independent_client(gw, env, tmp_path):
    """python3-websockets through a token route to an echo backend."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_echo, env.echo.addr)])
    start(gw, tf)
    msgs = [b"\x00\x01binary", "text \u00e9\u20ac", harness.random_bytes(100000, seed=4)]
    got = asyncio.run(harness.ws_echo_session(gw.url("/websockify?token=%s" % env.t_echo), msgs))
    expected = b"".join(m.encode() if isinstance(m, str) else m for m in msgs)
    harness.assert_same(got, expected)
    env.no_token_in_logs(stop_checked(gw))


def test_token_route_with_prefix_path(gw, env, tmp_path):
    """A token route on a prefix path (/console/) sees every path under it."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    start(gw, tf, path="/console/")
    env.reaches("x", "alpha", path="/console/rack1?token=%s" % env.t_alpha)
    env.reaches("x", "alpha", path="/console?token=%s" % env.t_alpha)
    env.refused("/console/rack1?token=%s" % env.t_unknown)


def test_file_format_details(gw, env, tmp_path):
    """Separators, whitespace, CRLF, comments, malformed lines (skipped, the
    rest still loads), a later duplicate wins, unix_socket targets."""
    tf = str(tmp_path / "tokens")
    t_tab, t_crlf, t_dup, t_bad = uniq("tab"), uniq("crlf"), uniq("dup"), uniq("bad")
    t_comment = uniq("commented")
    with open(tf, "w", newline="") as f:
        f.write("# comment line %s: 127.0.0.1:1\n" % t_comment)
        f.write("#%s: %s\n" % (t_comment, env.alpha.addr))
        f.write("  %s :\t%s  \n" % (t_tab, env.alpha.addr))
        f.write("%s: %s\r\n" % (t_crlf, env.beta.addr))
        f.write("%s: %s\n" % (t_dup, env.alpha.addr))
        f.write("%s %s\n" % (t_bad, env.alpha.addr))             # no ": " separator
        f.write("%s: not-an-address\n" % t_bad)                    # bad target
        f.write("%s:%s\n" % (t_bad, env.alpha.addr))               # ':' without a blank
        f.write("%s: %s\n" % (t_dup, env.gamma.addr))              # later line wins
    start(gw, tf)
    env.reaches(t_tab, "alpha")
    env.reaches(t_crlf, "beta")
    env.reaches(t_dup, "gamma")
    env.refused("/websockify?token=%s" % t_bad)
    env.refused("/websockify?token=%s" % t_comment)
    env.refused("/websockify?token=%%23%s" % t_comment)  # "#token" is a comment, not a token
    text = stop_checked(gw)
    env.no_token_in_logs(text, extra=[t_tab, t_crlf, t_dup, t_bad, t_comment])


def test_unreachable_token_target_502(gw, env, tmp_path):
    tf = str(tmp_path / "tokens")
    dead = uniq("dead")
    write_tokens(tf, ["%s: %s" % (dead, harness.refused_addr()),
                      "%s: %s" % (env.t_alpha, env.alpha.addr)])
    start(gw, tf)
    env.refused("/websockify?token=%s" % dead, status=502)
    env.reaches(env.t_alpha, "alpha")
    env.no_token_in_logs(stop_checked(gw), extra=[dead])


def test_unix_socket_target(gw, env, tmp_path, backends):
    """"token: unix_socket:/path" reaches a Unix-socket backend."""
    import socket
    import threading

    sock_path = str(tmp_path / "u.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(sock_path)
    ls.listen(4)
    stop = threading.Event()

    def serve():
        ls.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = ls.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.sendall(greeting("unix"))
                while True:
                    d = conn.recv(65536)
                    if not d:
                        break
                    conn.sendall(d)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        tf = str(tmp_path / "tokens")
        tu = uniq("unix")
        write_tokens(tf, ["%s: unix_socket:%s" % (tu, sock_path)])
        start(gw, tf)
        env.reaches(tu, "unix")
        env.no_token_in_logs(stop_checked(gw), extra=[tu])
    finally:
        stop.set()
        th.join(5)
        ls.close()


# ---------------------------------------------------------------- changes


def test_token_added_while_running(gw, env, tmp_path):
    """A token appended to the file works at once: no restart, no SIGHUP."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    start(gw, tf)
    env.reaches(env.t_alpha, "alpha")
    env.refused("/websockify?token=%s" % env.t_beta)
    pid = gw.proc.pid
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr),
                      "%s: %s" % (env.t_beta, env.beta.addr)])
    env.reaches(env.t_beta, "beta", wait=True)
    env.reaches(env.t_alpha, "alpha")
    assert gw.proc.pid == pid and gw.alive()
    assert "SIGHUP" not in gw.stderr_text()
    env.no_token_in_logs(stop_checked(gw))


def test_token_added_by_atomic_rename(gw, env, tmp_path):
    """Editors and config managers replace the file (write + rename): the
    new inode is noticed."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    start(gw, tf)
    env.reaches(env.t_alpha, "alpha")
    tmp = str(tmp_path / ".tokens.new")
    write_tokens(tmp, ["%s: %s" % (env.t_alpha, env.alpha.addr),
                       "%s: %s" % (env.t_gamma, env.gamma.addr)], bump=False)
    os.replace(tmp, tf)
    env.reaches(env.t_gamma, "gamma", wait=True)
    env.no_token_in_logs(stop_checked(gw))


def test_token_removed_and_retargeted_while_running(gw, env, tmp_path):
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr),
                      "%s: %s" % (env.t_beta, env.beta.addr)])
    start(gw, tf)
    env.reaches(env.t_alpha, "alpha")
    env.reaches(env.t_beta, "beta")
    # remove beta
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    env.refused("/websockify?token=%s" % env.t_beta, wait=True)
    env.reaches(env.t_alpha, "alpha")
    # point alpha somewhere else
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.gamma.addr)])
    env.reaches(env.t_alpha, "gamma", wait=True)
    # same length, same size content: only the target's port differs
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    env.reaches(env.t_alpha, "alpha", wait=True)
    # empty file: nothing works, and the gateway keeps running
    write_tokens(tf, ["# nothing here"])
    env.refused("/websockify?token=%s" % env.t_alpha, wait=True)
    # back again
    write_tokens(tf, ["%s: %s" % (env.t_beta, env.beta.addr)])
    env.reaches(env.t_beta, "beta", wait=True)
    env.no_token_in_logs(stop_checked(gw))


def test_live_session_survives_token_removal(gw, env, tmp_path):
    """Removing a token affects new sessions only."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_echo, env.echo.addr)])
    start(gw, tf)
    c = gw.ws("/websockify?token=%s" % env.t_echo)
    write_tokens(tf, ["# emptied"])
    env.refused("/websockify?token=%s" % env.t_echo, wait=True)
    c.send(build_frame(OP_BINARY, b"still relayed"))
    assert c.read_data(13) == b"still relayed"
    c.send_close(1000)
    c.expect_close(1000)


def test_token_file_deleted_then_restored(gw, env, tmp_path):
    """A source that disappears counts as empty (403, no crash) until it
    comes back."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    start(gw, tf)
    env.reaches(env.t_alpha, "alpha")
    os.unlink(tf)
    env.refused("/websockify?token=%s" % env.t_alpha, wait=True)
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.beta.addr)])
    env.reaches(env.t_alpha, "beta", wait=True)
    env.no_token_in_logs(stop_checked(gw))


# ---------------------------------------------------------------- directories


def test_directory_source(gw, env, tmp_path):
    d = tmp_path / "tokens.d"
    d.mkdir()
    write_tokens(str(d / "a.conf"), ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    write_tokens(str(d / "b"), ["# second file", "%s: %s" % (env.t_beta, env.beta.addr)])
    hidden = uniq("hidden")
    write_tokens(str(d / ".hidden"), ["%s: %s" % (hidden, env.gamma.addr)])  # ignored
    (d / "subdir").mkdir()                                                     # not a file
    write_tokens(str(d / "subdir" / "c"), ["%s: %s" % (env.t_gamma, env.gamma.addr)])
    start(gw, str(d))
    env.reaches(env.t_alpha, "alpha")
    env.reaches(env.t_beta, "beta")
    env.refused("/websockify?token=%s" % hidden)
    env.refused("/websockify?token=%s" % env.t_gamma)

    # a file added to the directory while running
    write_tokens(str(d / "c.conf"), ["%s: %s" % (env.t_gamma, env.gamma.addr)])
    env.reaches(env.t_gamma, "gamma", wait=True)
    # a file removed
    os.unlink(str(d / "b"))
    env.refused("/websockify?token=%s" % env.t_beta, wait=True)
    # a file edited in place
    write_tokens(str(d / "a.conf"), ["%s: %s" % (env.t_alpha, env.alpha.addr),
                                     "%s: %s" % (env.t_echo, env.echo.addr)])
    c = retry(lambda: gw.ws("/websockify?token=%s" % env.t_echo))
    c.send(build_frame(OP_BINARY, b"dir echo"))
    assert c.read_data(8) == b"dir echo"
    c.send_close(1000)
    c.expect_close(1000)
    env.reaches(env.t_alpha, "alpha", wait=True)
    env.no_token_in_logs(stop_checked(gw), extra=[hidden])


def test_directory_later_file_wins(gw, env, tmp_path):
    """Files are read in name order; a later line for a token wins."""
    d = tmp_path / "tokens.d"
    d.mkdir()
    write_tokens(str(d / "10-first"), ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    write_tokens(str(d / "20-second"), ["%s: %s" % (env.t_alpha, env.beta.addr)])
    start(gw, str(d))
    env.reaches(env.t_alpha, "beta")
    env.no_token_in_logs(stop_checked(gw))


# ---------------------------------------------------------------- SIGHUP


def wait_reloaded(gw, n):
    harness.wait_until(lambda: gw.stderr_text().count("SIGHUP: reloaded") >= n or not gw.alive(),
                       timeout=15, what="reload #%d in the log" % n)
    assert gw.alive(), "wsgate died on SIGHUP (status %s); stderr:\n%s" % (
        gw.proc.returncode, gw.stderr_text()[-3000:])


def sighup(gw):
    """Send SIGHUP once wsgate has said it started. wsgate opens its
    listeners before it installs its signal handlers, so a SIGHUP sent as
    soon as the port listens may kill it (see test_sighup_as_soon_as_listening,
    which shows that on purpose); the other tests wait past that window."""
    harness.wait_until(lambda: " started: " in gw.stderr_text(), timeout=15,
                       what="the start-up log line")
    time.sleep(0.2)
    gw.proc.send_signal(signal.SIGHUP)


def test_sighup_rereads_token_source(gw, env, tmp_path):
    """SIGHUP with token_file pointing at another file: the new file's
    tokens apply to new sessions, the old file's do not."""
    tf1, tf2 = str(tmp_path / "tokens1"), str(tmp_path / "tokens2")
    write_tokens(tf1, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    write_tokens(tf2, ["%s: %s" % (env.t_beta, env.beta.addr)])
    start(gw, tf1)
    env.reaches(env.t_alpha, "alpha")
    env.refused("/websockify?token=%s" % env.t_beta)
    live = gw.ws("/websockify?token=%s" % env.t_alpha)
    g = greeting("alpha")
    assert live.read_data(len(g)) == g

    gw.write_config({"gateway": {"log_level": "debug"}, "route:vnc": token_route(tf2)})
    sighup(gw)
    wait_reloaded(gw, 1)
    env.reaches(env.t_beta, "beta")
    env.refused("/websockify?token=%s" % env.t_alpha)
    # the session that started before the reload goes on
    live.send(build_frame(OP_BINARY, b"after reload"))
    assert live.read_data(12) == b"after reload"
    live.send_close(1000)
    live.expect_close(1000)

    # a second SIGHUP with the same configuration: same tokens, fresh read
    write_tokens(tf2, ["%s: %s" % (env.t_beta, env.beta.addr),
                       "%s: %s" % (env.t_gamma, env.gamma.addr)])
    sighup(gw)
    wait_reloaded(gw, 2)
    env.reaches(env.t_gamma, "gamma")
    env.reaches(env.t_beta, "beta")
    env.no_token_in_logs(stop_checked(gw))


def test_sighup_from_backend_route_to_token_route(gw, env, tmp_path):
    """A route that had a fixed backend becomes a token route on reload."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_beta, env.beta.addr)])
    gw.start({"gateway": {"log_level": "debug"},
              "route:vnc": harness.route(env.alpha.addr, "/websockify")})
    c = gw.ws("/websockify")
    assert c.read_data(len(greeting("alpha"))) == greeting("alpha")
    c.close()
    gw.write_config({"gateway": {"log_level": "debug"}, "route:vnc": token_route(tf)})
    sighup(gw)
    wait_reloaded(gw, 1)
    env.refused("/websockify")
    env.reaches(env.t_beta, "beta")
    env.no_token_in_logs(stop_checked(gw))


def test_sighup_with_unreadable_source_keeps_old_config(gw, env, tmp_path):
    """Reload naming a token source that does not exist is refused with an
    error; the running configuration stays."""
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    start(gw, tf)
    gw.write_config({"gateway": {"log_level": "debug"},
                     "route:vnc": token_route(str(tmp_path / "missing-tokens"))})
    sighup(gw)
    harness.wait_until(lambda: "keeping the running configuration" in gw.stderr_text(),
                       timeout=15, what="the reload error")
    env.reaches(env.t_alpha, "alpha")
    env.no_token_in_logs(stop_checked(gw))


# ---------------------------------------------------------------- configuration


def test_config_checks(gw, env, tmp_path):
    tf = str(tmp_path / "tokens")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr)])
    # token route without backend: valid
    r = harness.run_wsgate(gw.binary, ["-t", "-c", gw.write_config(
        {"route:vnc": token_route(tf)}, name="ok.ini")])
    assert r.returncode == 0, (r.stdout, r.stderr)
    # missing token source: invalid, named
    r = harness.run_wsgate(gw.binary, ["-t", "-c", gw.write_config(
        {"route:vnc": token_route(str(tmp_path / "nope"))}, name="bad.ini")])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "token_file" in r.stdout + r.stderr
    for out in (r.stdout, r.stderr):
        assert env.t_alpha not in out


def test_malformed_lines_warn_without_tokens(gw, env, tmp_path):
    """Warnings about malformed and duplicate lines name the file and line,
    never the token or the text of the line."""
    tf = str(tmp_path / "tokens")
    bad1, bad2, dup = uniq("malformed"), uniq("badtarget"), uniq("dup")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr),
                      "%s %s" % (bad1, env.alpha.addr),
                      "%s: 999.999.999.999:notaport" % bad2,
                      "%s: %s" % (dup, env.alpha.addr),
                      "%s: %s" % (dup, env.beta.addr)])
    start(gw, tf)
    env.reaches(env.t_alpha, "alpha")
    env.reaches(dup, "beta")
    env.refused("/websockify?token=%s" % bad1)
    text = stop_checked(gw)
    env.no_token_in_logs(text, extra=[bad1, bad2, dup])
    assert "999.999" not in text, "a malformed line's text was logged"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tokens_never_logged(gw, env, tmp_path, log_format):
    """Every kind of request at log_level debug, then the whole stderr is
    searched for every token (known, unknown, percent-encoded forms)."""
    tf = str(tmp_path / "tokens")
    dead = uniq("dead")
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr),
                      "%s: %s" % (env.t_beta, env.beta.addr),
                      "%s: %s" % (dead, harness.refused_addr())])
    start(gw, tf, log_format=log_format, handshake_timeout="1s")
    env.reaches(env.t_alpha, "alpha")
    env.reaches(env.t_beta, "beta")
    env.refused("/websockify?token=%s" % env.t_unknown)
    env.refused("/websockify?token=%s" % dead, status=502)
    enc_unknown = "".join("%%%02x" % ord(ch) for ch in env.t_unknown)
    env.refused("/websockify?token=%s" % enc_unknown)
    env.refused("/websockify?token=%s%%zz" % env.t_unknown)   # malformed
    # requests that fail before the token is looked up, each carrying a token
    q = "/websockify?token=%s" % env.t_alpha
    for raw in (("GET %s HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n" % q).encode(),
                ("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % q).encode(),
                ("POST %s HTTP/1.1\r\nHost: x\r\n\r\n" % q).encode(),
                ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % q).encode(),     # no Upgrade
                harness.make_request(q, version="8"),
                harness.make_request(q, omit=("host",)),
                harness.make_request(q, protocols="not-offered"),
                harness.make_request(q, extra_headers=[("X-Big", "a" * 17000)]),
                ("GET %s HTTP/1.1\r\nHost: x\r\n" % q).encode()):           # never completed
        c = gw.client()
        c.send_quietly(raw)
        got = c.read_until_eof(timeout=15)
        assert not got.startswith(b"HTTP/1.1 101"), got[:200]
        c.close()
    # a session closed by the client, one dropped, one ended by the backend
    c = gw.ws("/websockify?token=%s" % env.t_alpha)
    c.read_data(len(greeting("alpha")))
    c.abort()
    # a rewrite with a bad line and a duplicate
    write_tokens(tf, ["%s: %s" % (env.t_alpha, env.alpha.addr),
                      "%s no separator" % env.t_unknown,
                      "%s: %s" % (env.t_beta, env.alpha.addr),
                      "%s: %s" % (env.t_beta, env.beta.addr)])
    env.reaches(env.t_beta, "beta")
    time.sleep(0.3)  # let the aborted session's access line be written
    text = stop_checked(gw)
    assert "access" in text or "client" in text, "no access lines at all?\n" + text[-2000:]
    env.no_token_in_logs(text, extra=[dead, enc_unknown])
    # the query string itself is not logged either
    assert "token=" not in text, text[-4000:]


@pytest.mark.deadline(240)
def test_sighup_as_soon_as_listening(gateway_factory, tmp_path, backends):
    """A reload requested right after start-up (a deployment that adds a
    token and reloads at once) must not kill wsgate: once its port accepts
    connections, SIGHUP must already mean "reload". Repeated because the
    window is short."""
    alpha = backends.greeter(greeting("alpha"))
    tf = str(tmp_path / "tokens")
    tok = uniq("tok")
    write_tokens(tf, ["%s: %s" % (tok, alpha.addr)])
    deaths = []
    for i in range(30):
        g = gateway_factory()
        g.start({"gateway": {"workers": 2}, "route:vnc": token_route(tf)})
        g.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "SIGHUP: reloaded" in g.stderr_text() or not g.alive(),
                           timeout=15, what="reload or exit")
        if not g.alive():
            deaths.append((i, g.proc.returncode, g.stderr_text()[-300:]))
            g.proc = None  # already gone: nothing to stop
            g._stderr.close()
            g._stdout.close()
            continue
        rc, problems = g.stop()
        assert problems == [] and rc == 0, (rc, problems, g.stderr_text()[-2000:])
    assert not deaths, ("%d of 30 wsgate processes died from a SIGHUP sent as soon as their port "
                        "listened (status -1 = killed by SIGHUP): %r" % (len(deaths), deaths))
