"""test_healthcheck.py - `wsgate --health-url` and the container health check
(contrib/docker/wsgate-healthcheck) against the real binary.

--health-url names the admin listener when there is one, else the first
listener that answers plain HTTP, with health_path; the health check script
probes that URL (or $WSGATE_HEALTH_URL) and says what the gateway answered.
"""

import os
import subprocess

import harness
from harness import route

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "contrib", "docker", "wsgate-healthcheck")


def health_url(binary, tmp_path, text):
    p = tmp_path / "h.ini"
    p.write_text(text)
    return harness.run_wsgate(binary, ["--health-url", "-c", str(p)])


ROUTE = "[route:a]\npath = /ws\nbackend = 127.0.0.1:9\n"


def test_health_url_picks_the_admin_listener(tmp_path, wsgate_binary):
    r = health_url(wsgate_binary, tmp_path, "[gateway]\nlisten = 0.0.0.0:7101\n"
                   "listen = [::]:7102 tls auto\nlisten = 0.0.0.0:7103 admin\n"
                   "health_path = /ready\n[tls]\ncert = /nonexistent.pem\n" + ROUTE)
    # no certificate is read: the probe must not fail on a rotated file
    assert (r.returncode, r.stdout, r.stderr) == (0, "http://127.0.0.1:7103/ready\n", "")


def test_health_url_without_admin_takes_the_first_plain_listener(tmp_path, wsgate_binary):
    r = health_url(wsgate_binary, tmp_path, "[gateway]\nlisten = 127.0.0.2:7201 tls\n"
                   "listen = 127.0.0.3:7202 proxy\nlisten = [::]:7203\n"
                   "listen = 127.0.0.1:7204\n[tls]\ncert = /x.pem\n" + ROUTE)
    assert (r.returncode, r.stdout) == (0, "http://[::1]:7203/healthz\n"), r.stderr


def test_health_url_of_the_websockify_form(wsgate_binary):
    r = harness.run_wsgate(wsgate_binary, ["--health-url", "7301", "127.0.0.1:5900"])
    assert (r.returncode, r.stdout) == (0, "http://127.0.0.1:7301/healthz\n"), r.stderr


def test_health_url_fails_when_nothing_serves_it(tmp_path, wsgate_binary):
    for text, why in (("[gateway]\nlisten = 127.0.0.1:7401\nhealth_path =\n" + ROUTE,
                       "health_path is empty"),
                      ("[gateway]\nlisten = 127.0.0.1:7402 tls\n[tls]\ncert = /x.pem\n" + ROUTE,
                       "no listener answers plain HTTP"),
                      ("[gateway]\nlisten = 127.0.0.1:7403\nlisten = 127.0.0.1:7404 admin proxy\n"
                       + ROUTE, "no admin listener answers plain HTTP")):
        r = health_url(wsgate_binary, tmp_path, text)
        assert r.returncode == 1 and r.stdout == "", (text, r.stdout, r.stderr)
        assert why in r.stderr, (text, r.stderr)


def run_check(url, binary):
    env = dict(os.environ, WSGATE_HEALTH_URL=url,
               PATH=os.path.dirname(binary) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=30)


def test_healthcheck_script_probes_what_health_url_names(gw, backends, wsgate_binary):
    echo = backends.echo()
    admin = harness.free_port()
    gw.start({"gateway": {"listen": [gw.listen, "127.0.0.1:%d admin" % admin],
                          "health_path": "/ready"},
              "route:app": route(echo.addr, "/ws")})
    url = harness.run_wsgate(wsgate_binary, ["--health-url", "-c", gw.config_path]).stdout.strip()
    assert url == "http://127.0.0.1:%d/ready" % admin
    r = run_check(url, wsgate_binary)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    # What the script's comments promise for a wrong URL:
    wrong = {  # the admin listener serves health_path only: 404
        "http://127.0.0.1:%d/healthz" % admin: "HTTP/1.1 404 Not Found",
        # health_path asked on the WebSocket listener while an admin one exists: 404
        "http://%s/ready" % gw.listen: "HTTP/1.1 404 Not Found",
        # another path on the WebSocket listener: no Upgrade header, 400
        "http://%s/healthz" % gw.listen: "HTTP/1.1 400 Bad Request",
    }
    for bad, status_line in wrong.items():
        r = run_check(bad, wsgate_binary)
        assert (r.returncode, r.stderr) == (1, "wsgate-healthcheck: %s: %s\n" % (bad, status_line))
    closed = "http://127.0.0.1:%d/ready" % harness.free_port()
    r = run_check(closed, wsgate_binary)
    assert r.returncode == 1 and "cannot connect" in r.stderr, r.stderr
