"""test_logging.py - what the log says, driving the real binary.

wsgate(8) LOGGING: with log_format = json every line is one JSON object with
time, level and msg (access lines: msg "access", event "session"); requests
answered by health_path and metrics_path are access-logged only with
log_health_checks = on, while a refused one (404 on a listener that is not
the admin one) is always logged.

Absence is proved after an event, not after a sleep: the gateway is stopped
(SIGTERM) and its "stopped" line waited for; every session was freed and every
queued line written before it.
"""

import json
import re
import signal

import harness
from harness import route, wait_log
from ops_helpers import ACCESS_RE, client_addr, send_hup

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def stop_and_read(gw):
    """SIGTERM, wait for the exit, return the whole stderr."""
    gw.terminate(signal.SIGTERM)
    gw.proc.wait(30)
    text = gw.stderr_text()
    assert text.rstrip("\n").endswith("stopped") or '"msg":"stopped"}' in text, text[-2000:]
    return text


def probe(gw, path, port=None):
    """GET path on a new connection; returns (status, the client's "addr:port")."""
    c = harness.RawClient(gw.host, port or gw.port)
    try:
        addr = client_addr(c)
        c.send(("GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n" % path).encode())
        return c.read_http_response().status, addr
    finally:
        c.close()


def echo_session(gw, payload):
    """One WebSocket session on /ws, closed with 1000; returns its client address."""
    c = gw.ws("/ws")
    addr = client_addr(c)
    c.send_frame(harness.OP_BINARY, payload)
    assert c.read_data(len(payload)) == payload
    c.send_close(1000)
    c.expect_close(1000)
    return addr


def json_lines(text):
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        obj = json.loads(line)  # every line is one JSON object
        assert isinstance(obj, dict), "line %d is not an object: %r" % (n, line)
        out.append(obj)
    return out


def test_every_json_line_has_time_level_and_msg(gw, backends):
    echo = backends.echo()
    gw.start({"gateway": {"log_format": "json", "log_health_checks": "on"},
              "route:app": route(echo.addr, "/ws")})
    ws_client = echo_session(gw, b"json-msg")
    health_status, health_client = probe(gw, "/healthz")
    assert health_status == 200
    miss_status, miss_client = probe(gw, "/nothing")
    assert miss_status == 400  # a plain GET on a WebSocket listener: no Upgrade header
    objs = json_lines(stop_and_read(gw))
    for obj in objs:
        assert TIME_RE.match(obj.get("time", "")), obj
        assert obj.get("level") in ("error", "warn", "info", "debug"), obj
        assert isinstance(obj.get("msg"), str) and obj["msg"], obj
    access = {o["client"]: o for o in objs if o.get("event") == "session"}
    assert set(access) == {ws_client, health_client, miss_client}, objs
    for o in access.values():
        assert o["msg"] == "access" and o["level"] == "info", o
    ws = access[ws_client]
    assert (ws["route"], ws["status"], ws["bytes_up"], ws["bytes_down"], ws["close_code"]) == \
        ("app", 101, 8, 8, 1000), ws
    assert (access[health_client]["status"], access[miss_client]["status"]) == (200, 400)
    assert [o["msg"] for o in objs if o.get("event") != "session"][-1] == "stopped"


def admin_config(gw, echo, admin_port, **gateway):
    return {"gateway": dict({"listen": [gw.listen, "127.0.0.1:%d admin" % admin_port]},
                            **gateway),
            "route:app": route(echo.addr, "/ws")}


def test_health_and_metrics_are_not_access_logged_by_default(gw, backends):
    echo = backends.echo()
    admin = harness.free_port()
    gw.start(admin_config(gw, echo, admin))
    health_status, health_client = probe(gw, "/healthz", port=admin)
    metrics_status, metrics_client = probe(gw, "/metrics", port=admin)
    assert (health_status, metrics_status) == (200, 200)
    # health_path on the WebSocket listener while an admin one exists: refused, logged
    moved_status, moved_client = probe(gw, "/healthz")
    assert moved_status == 404
    ws_client = echo_session(gw, b"x")
    access = {m.group(1): m for m in ACCESS_RE.finditer(stop_and_read(gw))}
    assert health_client not in access and metrics_client not in access, access.keys()
    assert set(access) == {moved_client, ws_client}, access.keys()
    assert " status=404 " in access[moved_client].group(0)


def test_log_health_checks_on_logs_them(gw, backends):
    echo = backends.echo()
    admin = harness.free_port()
    gw.start(admin_config(gw, echo, admin, log_health_checks="on"))
    health_status, health_client = probe(gw, "/healthz", port=admin)
    metrics_status, metrics_client = probe(gw, "/metrics", port=admin)
    assert (health_status, metrics_status) == (200, 200)
    wait_log(gw, "access: client=%s route=- backend=- status=200" % health_client)
    wait_log(gw, "access: client=%s route=- backend=- status=200" % metrics_client)


def test_log_health_checks_follows_a_reload(gw, backends):
    """SIGHUP with log_health_checks = on: the next probe is logged."""
    echo = backends.echo()
    admin = harness.free_port()
    cfg = admin_config(gw, echo, admin)
    gw.start(cfg)
    _, quiet_client = probe(gw, "/healthz", port=admin)
    cfg["gateway"]["log_health_checks"] = "on"
    gw.write_config(cfg)
    send_hup(gw)
    _, loud_client = probe(gw, "/healthz", port=admin)
    wait_log(gw, "access: client=%s route=- backend=- status=200" % loud_client)
    access = {m.group(1) for m in ACCESS_RE.finditer(stop_and_read(gw))}
    assert loud_client in access and quiet_client not in access, access


def test_log_health_checks_takes_a_boolean(tmp_path, wsgate_binary):
    p = tmp_path / "bad.ini"
    p.write_text("[gateway]\nlisten = 127.0.0.1:%d\nlog_health_checks = sometimes\n"
                 "[route:a]\npath = /\nbackend = 127.0.0.1:9\n" % harness.free_port())
    r = harness.run_wsgate(wsgate_binary, ["-t", "-c", str(p)])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "%s:3: log_health_checks:" % p in r.stderr, r.stderr
