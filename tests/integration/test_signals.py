"""Shutdown on SIGTERM/SIGINT (drain, then close 1001, exit 0) and the
plain-HTTP endpoints (health, metrics)."""

import signal
import time

import pytest

from harness import OP_BINARY, route


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_drain_closes_sessions_1001_and_exits_0(gw, echo, sig):
    gw.start({"gateway": {"drain_timeout": "1s"}, "route:e": route(echo.addr, "/")})
    c = gw.ws("/")
    c.send_frame(OP_BINARY, b"before")
    assert c.read_data(6) == b"before"
    t0 = time.monotonic()
    gw.terminate(sig)
    c.expect_close(1001, timeout=15)
    print("close 1001 %.2fs after the signal" % (time.monotonic() - t0))
    gw.proc.wait(15)
    assert gw.proc.returncode == 0, gw.stderr_text()


def test_idle_gateway_exits_0_quickly(gw, echo):
    gw.start({"route:e": route(echo.addr, "/")})
    gw.terminate()
    gw.proc.wait(10)
    assert gw.proc.returncode == 0, gw.stderr_text()


def http_get(gw, path):
    c = gw.client()
    c.send(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    return c.read_http_response()


def test_health_and_metrics(gw, echo):
    gw.start({"route:metered": route(echo.addr, "/ws")})
    resp = http_get(gw, "/healthz")
    assert resp.status == 200, resp
    assert resp.body.strip() == b"ok", resp
    c = gw.ws("/ws")
    c.send_frame(OP_BINARY, b"count me")
    assert c.read_data(8) == b"count me"
    resp = http_get(gw, "/metrics")
    assert resp.status == 200, resp
    text = resp.body.decode()
    assert "wsgate_sessions_active" in text, text[:2000]
    assert 'route="metered"' in text, text[:2000]
