"""SIGHUP reload (issue 5, "Must show" 1).

A valid changed file: listeners are opened and closed by difference (an
unchanged one keeps its sockets), routes and limits and timeouts apply to new
sessions, live sessions keep relaying with the configuration they started
under and lose no byte. An invalid file changes nothing and is logged with
file:line.
"""


import pytest

from harness import (OP_BINARY, RawClient, assert_http_error, free_port, random_bytes, route,
                     wait_until)
from ops_helpers import (RelayFleet, connect_refused, listening_inodes, scrape, send_hup,
                         upgrade_status)

HOST = "127.0.0.1"


def make_config(gw, echo, port, route_name, lim):
    """Before the reload: listeners gw.listen + port, routes keep, old (the
    route_name), lim. After it: another port and "new" instead of "old"."""
    return {
        "gateway": {"listen": [gw.listen, "%s:%d" % (HOST, port)], "workers": 2},
        "route:keep": route(echo.addr, "/keep"),
        "route:%s" % route_name: route(echo.addr, "/" + route_name),
        "route:lim": route(echo.addr, "/lim", max_connections=lim),
    }


def wait_route_idle(gw, name):
    """Wait until the gateway counts no live session on route name."""
    wait_until(lambda: scrape(gw).value("wsgate_sessions_active", route=name) == 0,
               what="route %s without live sessions" % name)


def check_limit(gw, path, limit):
    """Exactly `limit` concurrent sessions are admitted on path, the next
    one gets 503; everything is closed again afterwards."""
    held = []
    try:
        for _ in range(limit):
            held.append(gw.client())
            held[-1].upgrade(path)
        extra = gw.client()
        assert_http_error(extra, 503, extra.handshake(path))
    finally:
        for c in held:
            c.send_close(1000)
            c.expect_close(1000)
            c.close()


def check_echo(gw, port, path, n=3000):
    """A new session on port/path upgrades and echoes n bytes."""
    c = RawClient(HOST, port)
    gw.clients.append(c)
    c.upgrade(path)
    data = random_bytes(n)
    c.send_frame(OP_BINARY, data)
    assert c.read_data(n) == data
    c.send_close(1000)
    c.expect_close(1000)


@pytest.mark.deadline(240)
def test_reload_under_load_keeps_every_session(gw, backends):
    echo = backends.echo()
    p_removed = free_port()
    p_added = free_port()
    gw.start(make_config(gw, echo, p_removed, "old", lim=4))
    wait_until(lambda: listening_inodes(p_removed), what="second listener")

    # Before: the old routes answer, the route limit is 4 (3 sessions fit).
    assert upgrade_status(HOST, gw.port, "/old") == 101
    assert upgrade_status(HOST, gw.port, "/new") == 404
    held = [gw.ws("/lim") for _ in range(3)]
    for c in held:
        c.send_close(1000)
        c.expect_close(1000)
        c.close()
    wait_route_idle(gw, "lim")
    assert connect_refused(HOST, p_added), "port %d should not be listening yet" % p_added

    # 50 sessions: 20 on /keep, 20 on /old (removed by the reload), 10 on
    # /keep through the listener the reload removes.
    urls = (["ws://%s:%d/keep" % (HOST, gw.port)] * 20 + ["ws://%s:%d/old" % (HOST, gw.port)] * 20
            + ["ws://%s:%d/keep" % (HOST, p_removed)] * 10)
    fleet = RelayFleet(urls)
    try:
        fleet.start()
        main_inodes = listening_inodes(gw.port)
        assert main_inodes, "no listening socket on %d" % gw.port

        # -- reload with a changed file
        gw.write_config(make_config(gw, echo, p_added, "new", lim=2))
        log = send_hup(gw)
        assert "SIGHUP: reloaded %s: 2 listener(s), 3 route(s)" % gw.config_path in log, log
        at_reload = fleet.verified()

        # The new route answers, the removed one is 404, on every worker:
        # wait for the change, then check it several times.
        wait_until(lambda: upgrade_status(HOST, gw.port, "/new") == 101, what="/new answering")
        wait_until(lambda: upgrade_status(HOST, gw.port, "/old") == 404, what="/old gone")
        for _ in range(6):
            assert upgrade_status(HOST, gw.port, "/new") == 101
            assert upgrade_status(HOST, gw.port, "/old") == 404
            assert upgrade_status(HOST, gw.port, "/keep") == 101
        check_echo(gw, gw.port, "/new")

        # The new listener accepts (old and new routes), the removed one refuses.
        wait_until(lambda: listening_inodes(p_added), what="added listener on %d" % p_added)
        check_echo(gw, p_added, "/new")
        check_echo(gw, p_added, "/keep")
        wait_until(lambda: connect_refused(HOST, p_removed),
                   what="removed listener %d refusing" % p_removed)
        # The unchanged listener kept its sockets.
        assert listening_inodes(gw.port) == main_inodes, \
            "the unchanged listener's sockets were replaced: %r -> %r" % (
                main_inodes, listening_inodes(gw.port))

        # The lowered limit applies to new sessions: 2 fit, the 3rd is 503.
        check_limit(gw, "/lim", 2)
        wait_route_idle(gw, "lim")

        # Every live session (also those on /old and on the removed
        # listener) keeps relaying for a few seconds after the reload.
        fleet.wait_progress(at_reload, at_least=32 * 1024)
        fleet.wait_progress(fleet.verified(), at_least=32 * 1024)  # and on
        fleet.check_ok()

        # -- an invalid file changes nothing: it would bring back /old and
        # the removed listener, drop /new and raise the limit.
        bad = gw.write_config(make_config(gw, echo, p_removed, "old", lim=4))
        with open(bad) as f:
            lines = f.read().split("\n")
        idx = lines.index("max_connections = 4")
        lines[idx] = "max_connections = lots"
        with open(bad, "w") as f:
            f.write("\n".join(lines))
        before_invalid = fleet.verified()
        log = send_hup(gw, ok=False)
        wait_until(lambda: "%s:%d: max_connections" % (bad, idx + 1) in gw.stderr_text(),
                   what="file:line of the error in the log")
        assert "SIGHUP: reloaded" not in log, log
        # The handler is done once it logged the errors (main.c hup_cb: an
        # invalid file returns there, before anything is posted to a worker).
        for _ in range(6):
            assert upgrade_status(HOST, gw.port, "/new") == 101
            assert upgrade_status(HOST, gw.port, "/old") == 404
        assert connect_refused(HOST, p_removed), "invalid file reopened port %d" % p_removed
        check_echo(gw, p_added, "/new")
        check_limit(gw, "/lim", 2)

        fleet.wait_progress(before_invalid, at_least=16 * 1024)
        fleet.check_ok()
    finally:
        states = fleet.stop()
    fleet.check_ok()
    for s in states:
        assert s.close_code == 1000, "close code %r: %r" % (s.close_code, s)
        assert s.verified == s.sent, s
    total = sum(s.verified for s in states)
    print("50 sessions relayed and verified %d bytes in total (min %d per session)"
          % (total, min(s.verified for s in states)))
    assert gw.alive()


def test_reload_timeouts_apply_to_new_sessions_only(gw, echo):
    """idle_timeout set by a reload closes a session opened after it; one
    opened before (idle for longer) keeps its configuration and lives on."""
    cfg = {"gateway": {"idle_timeout": 0}, "route:e": route(echo.addr, "/")}
    gw.start(cfg)
    old = gw.ws("/")
    old.send_frame(OP_BINARY, b"old")
    assert old.read_data(3) == b"old"
    cfg["gateway"]["idle_timeout"] = "1s"
    gw.write_config(cfg)
    send_hup(gw)
    wait_until(lambda: upgrade_status(HOST, gw.port, "/") == 101, what="route after reload")
    new = gw.ws("/")
    new.send_frame(OP_BINARY, b"new")
    assert new.read_data(3) == b"new"
    f = new.expect_close(1001, timeout=15)
    assert f.close_reason == b"idle timeout", f
    # old has been idle longer than new was: with the new timeout it would
    # have been closed already.
    old.send_frame(OP_BINARY, b"still here")
    assert old.read_data(10) == b"still here"
    old.send_close(1000)
    old.expect_close(1000)


def test_reload_invalid_file_logs_every_error_with_line(gw, echo):
    """Two errors in the file: both are logged with file:line, the running
    configuration stays, and a later valid reload still works."""
    gw.start({"route:a": route(echo.addr, "/a")})
    with open(gw.config_path) as f:
        good = f.read()
    text = good + "\n[route:b]\npath = /b\nbackend = %s\nbogus_key = 1\n" % echo.addr
    text += "\n[route:c]\npath = /c\nbackend = %s\nidle_timeout = forever\n" % echo.addr
    gw.write_config(text)
    lines = text.split("\n")
    l_bogus = lines.index("bogus_key = 1") + 1
    l_idle = lines.index("idle_timeout = forever") + 1
    send_hup(gw, ok=False)
    wait_until(lambda: "%s:%d: bogus_key" % (gw.config_path, l_bogus) in gw.stderr_text(),
               what="first error with file:line")
    log = gw.stderr_text()
    print(log[-2000:])
    assert "%s:%d: idle_timeout" % (gw.config_path, l_idle) in log, \
        "second error not logged with file:line:\n%s" % log[-3000:]
    # both errors logged: the reload handler is done (nothing was applied)
    assert upgrade_status(HOST, gw.port, "/a") == 101
    assert upgrade_status(HOST, gw.port, "/b") == 404
    assert upgrade_status(HOST, gw.port, "/c") == 404
    # A valid file afterwards is applied.
    gw.write_config(good + "\n[route:b]\npath = /b\nbackend = %s\n" % echo.addr)
    send_hup(gw)
    wait_until(lambda: upgrade_status(HOST, gw.port, "/b") == 101, what="/b after valid reload")
    assert upgrade_status(HOST, gw.port, "/a") == 101
