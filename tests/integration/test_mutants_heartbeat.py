"""The pong deadline is pong_timeout after the ping, not less (tests/mutate:
pong-timeout-early). A live client that answers late but within pong_timeout
keeps its session."""

import time

from harness import OP_BINARY, OP_PING, OP_PONG, route

PING_INTERVAL = 1.0
PONG_TIMEOUT = 4.0
ANSWER_AFTER = PONG_TIMEOUT / 2  # the client's own delay; half the deadline is margin


def test_pong_late_within_pong_timeout_keeps_session(gw, echo):
    gw.start({"route:h": route(echo.addr, "/", ping_interval="%gs" % PING_INTERVAL,
                               pong_timeout="%gs" % PONG_TIMEOUT)})
    c = gw.ws("/")
    f = c.recv_frame(timeout=PING_INTERVAL + 10)
    assert f.opcode == OP_PING, f
    time.sleep(ANSWER_AFTER)  # a slow client: answers within pong_timeout
    c.send_frame(OP_PONG, f.payload)
    c.send_frame(OP_BINARY, b"still here")
    assert c.read_data(10, timeout=10) == b"still here"  # skips later pings
