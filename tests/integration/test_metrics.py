"""GET metrics_path (issue 5, "Must show" 3): the Prometheus text is well
formed and its values match the traffic the test made - sessions by route
and result, payload bytes per direction, handshake failures by route and
status, backend connect histogram - and the counters survive SIGHUP."""

import re
import time

import pytest

from harness import (OP_BINARY, OP_TEXT, assert_http_error, build_frame, build_message,
                     random_bytes, route, run_wsgate, wait_until)
from ops_helpers import Metrics, http_request, scrape, send_hup, upgrade_status

FAMILIES = {
    "wsgate_build_info": "gauge",
    "wsgate_sessions_active": "gauge",
    "wsgate_sessions_total": "counter",
    "wsgate_handshake_failures_total": "counter",
    "wsgate_bytes_total": "counter",
    "wsgate_wire_bytes_total": "counter",
    "wsgate_buffered_bytes": "gauge",
    "wsgate_backend_connect_seconds": "histogram",
}
RESULTS = ("normal", "client_dropped", "protocol_error", "backend_error", "timeout",
           "shutdown", "error")

M_DOWN = 12345  # what the "beta" backend sends on connect


def greet_sink_handler(b, rec):
    """Send M_DOWN bytes, then count what arrives until EOF."""
    rec.sock.sendall(bytes(i % 251 for i in range(M_DOWN)))
    b.drain_to_eof(rec)
    rec.sock.close()


class Expect:
    """What the metrics must say, built up as the test makes traffic."""

    def __init__(self, routes):
        self.routes = list(routes)
        self.results = {}    # (route, result) -> n
        self.failures = {}   # (route, status) -> n
        self.up = {}
        self.down = {}
        self.connects = {}   # route -> successful backend connects

    def add(self, table, key, n=1):
        table[key] = table.get(key, 0) + n

    def session(self, rt, up, down, result="normal"):
        self.add(self.results, (rt, result))
        self.add(self.up, rt, up)
        self.add(self.down, rt, down)
        self.add(self.connects, rt)

    def check(self, m, active=None, histogram_routes=None):
        """Every series of the route families equals the expectation (zero
        unless counted); active: {route: n} (default 0 everywhere)."""
        active = active or {}
        errors = []
        for rt in self.routes:
            got = m.get("wsgate_sessions_active", route=rt)
            if got != active.get(rt, 0):
                errors.append("sessions_active{%s} = %r, expected %d" % (rt, got, active.get(rt, 0)))
            for res in RESULTS:
                got = m.get("wsgate_sessions_total", route=rt, result=res)
                exp = self.results.get((rt, res), 0)
                if got != exp:
                    errors.append("sessions_total{%s,%s} = %r, expected %d" % (rt, res, got, exp))
            for d, table in (("up", self.up), ("down", self.down)):
                got = m.get("wsgate_bytes_total", route=rt, direction=d)
                if got != table.get(rt, 0):
                    errors.append("bytes_total{%s,%s} = %r, expected %d"
                                  % (rt, d, got, table.get(rt, 0)))
                got = m.get("wsgate_buffered_bytes", route=rt, direction=d)
                if not active.get(rt) and got != 0:  # every session gave its bytes back
                    errors.append("buffered_bytes{%s,%s} = %r with no session" % (rt, d, got))
        for rt in histogram_routes or []:
            got = m.get("wsgate_backend_connect_seconds_count", route=rt)
            if got != self.connects.get(rt, 0):
                errors.append("backend_connect_seconds_count{%s} = %r, expected %d"
                              % (rt, got, self.connects.get(rt, 0)))
        # Handshake failures: every series, including route="".
        series = m.series("wsgate_handshake_failures_total")
        for (rt, status), n in self.failures.items():
            key = frozenset({"route": rt, "status": str(status)}.items())
            if series.get(key) != n:
                errors.append("handshake_failures_total{route=%r,status=%s} = %r, expected %d"
                              % (rt, status, series.get(key), n))
        for key, v in series.items():
            d = dict(key)
            st = d.get("status", "0")  # a number, or "proxy" (a bad PROXY header)
            if (d.get("route"), int(st) if st.isdigit() else st) not in self.failures and v != 0:
                errors.append("handshake_failures_total%r = %r, expected 0" % (d, v))
        assert not errors, "metrics differ from the traffic made:\n  %s\n---- metrics ----\n%s" % (
            "\n  ".join(errors), m.text)


def check_families(m):
    for fam, typ in FAMILIES.items():
        assert m.types.get(fam) == typ, "TYPE of %s is %r, expected %s" % (fam, m.types.get(fam), typ)
        assert m.helps.get(fam), "no HELP text for %s" % fam


def close_normally(c):
    """Close handshake (1000), then close our socket too, so that wsgate
    ends the session at once."""
    c.send_close(1000)
    c.expect_close(1000)
    c.close()


def wait_results(gw, exp, rt):
    """Session ends are counted once the close completes: wait for them."""
    want = sum(n for (r, _), n in exp.results.items() if r == rt)
    wait_until(lambda: sum(v for lb, v in scrape(gw).series("wsgate_sessions_total").items()
                           if dict(lb)["route"] == rt) >= want,
               what="%d ended session(s) on %s" % (want, rt))


@pytest.mark.deadline(180)
@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_match_traffic(gw, backends, wsgate_binary, workers):
    """Every counter against the traffic that made it; with two workers the
    sessions spread over both and each scrape sums their slots."""
    echo = backends.echo()
    echo2 = backends.echo()
    beta_be = backends.custom(greet_sink_handler)
    reset_be = backends.reset(after_bytes=1)
    names = ["alpha", "beta", "orig", "lim", "sub", "dead", "rst"]
    cfg = {
        "gateway": {"workers": workers},
        "route:alpha": route(echo.addr, "/alpha"),
        "route:beta": route(beta_be.addr, "/beta"),
        "route:orig": route(echo.addr, "/orig", allowed_origins="https://good.example"),
        "route:lim": route(echo.addr, "/lim", max_connections=1),
        "route:sub": route(echo.addr, "/sub", subprotocols="binary"),
        "route:dead": route(backends.refused(), "/dead"),
        "route:rst": route(reset_be.addr, "/rst"),
    }
    gw.start(cfg)
    exp = Expect(names)

    m = scrape(gw)
    check_families(m)
    version = run_wsgate(wsgate_binary, ["-V"]).stdout.split()[-1]
    assert m.series("wsgate_build_info") == {frozenset({"version": version}.items()): 1.0}, \
        m.series("wsgate_build_info")
    exp.check(m)

    # -- sessions and bytes on alpha (echo): 2 live, then both closed.
    a1, a2 = gw.ws("/alpha"), gw.ws("/alpha")
    up1 = 0
    for n in (1000, 5000, 70000):          # 7-, 16- and 64-bit frame lengths
        data = random_bytes(n)
        a1.send_frame(OP_BINARY, data)
        assert a1.read_data(n) == data
        up1 += n
    text = "h\u00e9llo \u20ac".encode()    # a text message: payload bytes count
    a2.send_frame(OP_TEXT, text)
    assert a2.read_data(len(text)) == text
    frag = random_bytes(3001)
    a2.send(build_message(OP_BINARY, frag, fragments=3))
    assert a2.read_data(len(frag)) == frag
    a2.send_frame(0x9, b"ping payload is not counted")
    m = scrape(gw)
    exp_live = Expect(names)
    exp_live.add(exp_live.up, "alpha", up1 + len(text) + len(frag))
    exp_live.add(exp_live.down, "alpha", up1 + len(text) + len(frag))
    exp_live.add(exp_live.connects, "alpha", 2)
    exp_live.check(m, active={"alpha": 2}, histogram_routes=["alpha"])
    close_normally(a1)
    close_normally(a2)
    exp.session("alpha", up1, up1)
    exp.session("alpha", len(text) + len(frag), len(text) + len(frag))
    wait_results(gw, exp, "alpha")

    # -- beta: N up to a counting sink, M_DOWN down from its greeting.
    b = gw.ws("/beta")
    assert b.read_data(M_DOWN) == bytes(i % 251 for i in range(M_DOWN))
    n_up = 0
    for n in (1, 125, 126, 65535, 65536, 300):
        b.send_frame(OP_BINARY, random_bytes(n))
        n_up += n
    wait_until(lambda: beta_be.total_received() == n_up, what="beta backend got %d" % n_up)
    close_normally(b)
    exp.session("beta", n_up, M_DOWN)
    wait_results(gw, exp, "beta")

    # -- other results: a client that drops TCP, a protocol error, a
    # backend reset (1011).
    c = gw.ws("/alpha")
    c.send_frame(OP_BINARY, b"12345")
    assert c.read_data(5) == b"12345"
    c.abort()
    exp.session("alpha", 5, 5, "client_dropped")
    c = gw.ws("/alpha")
    c.send(build_frame(OP_BINARY, b"unmasked", mask=False))
    c.expect_close(1002)
    exp.session("alpha", 0, 0, "protocol_error")
    c = gw.ws("/rst")
    c.send_frame(OP_BINARY, b"x")
    f, _ = c.next_close()
    assert f.close_code == 1011, f
    c.send_close(1011)
    c.close()  # (how promptly wsgate closes TCP after a 1011 is test_close's business)
    exp.session("rst", 1, 0, "backend_error")
    wait_results(gw, exp, "alpha")
    wait_results(gw, exp, "rst")

    # -- handshake failures, by route and status.
    for path in ("/nope", "/nope/deeper", "/alphax"):
        assert upgrade_status(gw.host, gw.port, path) == 404
        exp.add(exp.failures, ("", 404))
    assert upgrade_status(gw.host, gw.port, "/orig", origin="https://evil.example") == 403
    assert upgrade_status(gw.host, gw.port, "/orig") == 403          # no Origin
    exp.add(exp.failures, ("orig", 403), 2)
    assert upgrade_status(gw.host, gw.port, "/orig", origin="https://good.example") == 101
    exp.session("orig", 0, 0)
    c = gw.client()
    assert_http_error(c, 400, c.handshake("/alpha", omit=("Sec-WebSocket-Key",)))
    exp.add(exp.failures, ("", 400))                                  # before routing
    assert upgrade_status(gw.host, gw.port, "/sub", protocols="chat") == 400
    exp.add(exp.failures, ("sub", 400))                               # after routing
    assert upgrade_status(gw.host, gw.port, "/alpha", version="8") == 426
    exp.add(exp.failures, ("", 426))
    held = gw.ws("/lim")
    for _ in range(2):
        c = gw.client()
        assert_http_error(c, 503, c.handshake("/lim"))
        exp.add(exp.failures, ("lim", 503))
    close_normally(held)
    exp.session("lim", 0, 0)
    c = gw.client()
    assert_http_error(c, 502, c.handshake("/dead"))
    exp.add(exp.failures, ("dead", 502))
    for r in ("orig", "lim"):
        wait_results(gw, exp, r)

    m = scrape(gw)
    check_families(m)
    exp.check(m, histogram_routes=["alpha", "beta", "orig", "lim", "rst"])
    for rt in ("alpha", "beta"):
        s = m.value("wsgate_backend_connect_seconds_sum", route=rt)
        assert 0 <= s < 10 * exp.connects[rt], "connect seconds sum %r on %s" % (s, rt)

    # -- counters survive a reload that removes beta, adds gamma and moves
    # alpha to another backend.
    before = dict(m.samples)
    cfg2 = {k: v for k, v in cfg.items() if k != "route:beta"}
    cfg2["route:alpha"] = route(echo2.addr, "/alpha")
    cfg2["route:gamma"] = route(echo.addr, "/gamma")
    gw.write_config(cfg2)
    send_hup(gw)
    c = upgrade_when_routed(gw, "/gamma", exp)
    close_normally(c)
    exp.session("gamma", 0, 0)
    exp.routes.append("gamma")
    wait_results(gw, exp, "gamma")
    assert upgrade_status(gw.host, gw.port, "/beta") == 404
    exp.add(exp.failures, ("", 404))
    m = scrape(gw)
    check_families(m)
    for key, v in before.items():
        d = dict(key[1])
        if d.get("route") == "beta" and key not in m.samples:
            continue  # a removed route's series may be left out while it is gone
        if key[0] == "wsgate_handshake_failures_total" and d == {"route": "", "status": "404"}:
            v += 1
        assert m.samples.get(key) == v, "after the reload %r = %r, before %r" % (
            key, m.samples.get(key), v)
    exp.check(m, histogram_routes=["alpha", "orig", "lim", "rst", "gamma"])

    # New traffic adds to the old counts, also on beta once it is back.
    c = gw.ws("/alpha")
    data = random_bytes(777)
    c.send_frame(OP_BINARY, data)
    assert c.read_data(777) == data
    close_normally(c)
    assert echo2.count == 1, "the reloaded alpha did not use its new backend"
    exp.session("alpha", 777, 777)
    gw.write_config(dict(cfg2, **{"route:beta": cfg["route:beta"]}))
    send_hup(gw)
    b = upgrade_when_routed(gw, "/beta", exp)
    assert b.read_data(M_DOWN) == bytes(i % 251 for i in range(M_DOWN))
    b.send_frame(OP_BINARY, random_bytes(4321))
    wait_until(lambda: beta_be.total_received() == n_up + 4321, what="beta backend got 4321")
    close_normally(b)
    exp.session("beta", 4321, M_DOWN)
    wait_results(gw, exp, "alpha")
    wait_results(gw, exp, "beta")
    m = scrape(gw)
    exp.check(m, histogram_routes=["alpha", "beta", "orig", "lim", "rst", "gamma"])
    print(m.text)


def upgrade_when_routed(gw, path, exp, timeout=10):
    """After a reload: upgrade on path, retrying while it is still 404 (each
    404 counted in exp). Returns the upgraded RawClient."""
    def attempt():
        c = gw.client()
        resp = c.handshake(path)
        if resp.status == 101:
            return c
        assert resp.status == 404, "%s answered %r" % (path, resp)
        exp.add(exp.failures, ("", 404))
        c.close()
        return None
    return wait_until(attempt, timeout, interval=0.05, what="%s routed" % path)


def test_metrics_endpoint_format(gw, echo):
    """HEAD and GET on metrics_path and health_path (custom paths), and the
    exposition lint on a scrape with live traffic."""
    gw.start({"gateway": {"metrics_path": "/stats", "health_path": "/alive"},
              "route:r": route(echo.addr, "/ws/")})
    c = gw.ws("/ws/x")
    c.send_frame(OP_BINARY, b"abc")
    assert c.read_data(3) == b"abc"
    resp = http_request(gw.host, gw.port, "/stats")
    assert resp.status == 200, resp
    body = resp.body.decode()
    m = Metrics(body)
    check_families(m)
    assert m.value("wsgate_sessions_active", route="r") == 1
    assert m.value("wsgate_bytes_total", route="r", direction="up") == 3
    # every sample line is `name{labels} value` and belongs to a family
    # with HELP and TYPE (Metrics() asserts it); spot-check the raw text too.
    for line in body.splitlines():
        if not line.startswith("#"):
            assert re.match(r'^wsgate_[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \d+(\.\d+)?$',
                            line), "odd sample line %r" % line
    head = http_request(gw.host, gw.port, "/stats", method="HEAD")
    assert head.status == 200, head
    assert head.body == b"", head
    alive = http_request(gw.host, gw.port, "/alive")
    assert (alive.status, alive.body) == (200, b"ok\n"), alive
    # the default paths are not special any more: they are upgrade
    # requests without a route (/healthz) -> not 200
    assert http_request(gw.host, gw.port, "/healthz").status != 200
    close_normally(c)


def test_metrics_lint_rejects_bad_text():
    """The lint used above is able to fail."""
    good = ("# HELP a_total A.\n# TYPE a_total counter\na_total{route=\"x\"} 1\n")
    Metrics(good)
    bad = [
        good.replace("# HELP a_total A.\n", ""),                       # no HELP
        good.replace("# TYPE a_total counter\n", ""),                   # no TYPE
        good + "a_total{route=\"x\"} 2\n",                              # duplicate
        good.replace("} 1", "} one"),                                   # value
        good.replace('{route="x"}', '{route=x}'),                       # label quoting
        good.rstrip("\n"),                                              # final newline
        good + "# HELP b B.\n# TYPE b histogram\nb_bucket{le=\"1\"} 2\n"
               "b_bucket{le=\"+Inf\"} 1\nb_sum 1\nb_count 1\n",           # not cumulative
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            Metrics(text)


def test_connect_histogram_known_delay(gw, backends):
    """A backend whose accept queue stays full for DELAY seconds after
    wsgate's SYN is dropped (harness.Backend full_for): the connect takes at
    least DELAY (in fact until the SYN's first retry, about 1 s) and at most
    as long as the client waited for its 101. The histogram has that one
    observation: its sum in seconds within those bounds, and every bucket
    counts it exactly when its bound is at or above the sum."""
    delay = 0.3
    slow = backends.slow_accept(delay)
    gw.start({"route:slow": route(slow.addr, "/", connect_timeout="20s")})
    t0 = time.monotonic()
    c = gw.ws("/")
    waited = time.monotonic() - t0
    c.send_frame(OP_BINARY, b"late")
    assert c.read_data(4) == b"late"
    m = scrape(gw)
    assert m.value("wsgate_backend_connect_seconds_count", route="slow") == 1
    s = m.value("wsgate_backend_connect_seconds_sum", route="slow")
    print("connect took %.3fs; the 101 came after %.3fs" % (s, waited))
    assert delay <= s <= waited, "connect seconds sum %r, expected %.1f..%.3f" % (s, delay, waited)
    buckets = {dict(k)["le"]: v for k, v in m.series("wsgate_backend_connect_seconds_bucket").items()
               if dict(k)["route"] == "slow"}
    assert len(buckets) == 11, buckets
    for le, v in buckets.items():
        want = 1 if float(le) >= s else 0
        assert v == want, "bucket le=%s counts %r, expected %d (sum %r)" % (le, v, want, s)
    close_normally(c)


def test_connect_histogram_fast_connect(gw, backends):
    """A loopback connect lands in a finite bucket: every bucket whose bound
    is at or above the time the client waited for its 101 counts it, every
    bucket below the recorded sum does not (tests/mutate: connect-bucket-last
    counts every connect in +Inf only)."""
    echo = backends.echo()
    gw.start({"route:fast": route(echo.addr, "/")})
    t0 = time.monotonic()
    c = gw.ws("/")
    waited = time.monotonic() - t0
    m = scrape(gw)
    assert m.value("wsgate_backend_connect_seconds_count", route="fast") == 1
    s = m.value("wsgate_backend_connect_seconds_sum", route="fast")
    assert 0 < s <= waited, (s, waited)
    buckets = {dict(k)["le"]: v for k, v in m.series("wsgate_backend_connect_seconds_bucket").items()
               if dict(k)["route"] == "fast"}
    assert waited < 1.0, "the 101 took %.3f s: no finite bucket to check" % waited
    for le, v in buckets.items():
        if float(le) >= waited:
            assert v == 1, "bucket le=%s counts %r, expected 1 (waited %.4f s)" % (le, v, waited)
        elif float(le) < s:
            assert v == 0, "bucket le=%s counts %r, expected 0 (sum %r)" % (le, v, s)
    close_normally(c)
