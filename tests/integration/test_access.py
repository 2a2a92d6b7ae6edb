"""Access that scales out (DESIGN "Access that scales out"), against the real
binary and real components: redis-server on a free port (stopped, restarted,
shared by two gateways), a fake Redis that never answers, JWTs minted by
python3-jwt (an independent implementation), crypt(3) hashes from libxcrypt,
and a python3-dnslib DNS server whose answers, TTLs and delays the tests
change. Backends send a tag first and then echo, so a test sees which one a
session reached. Tokens, cookies and passwords never appear in the logs."""

import base64
import os
import select
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import harness
from access_helpers import Dns, Redis, SilentRedis, Tagged, crypt_hash, timed
from harness import OP_BINARY, wait_log


def uniq(prefix="tok"):
    return "%s-%s" % (prefix, os.urandom(6).hex())


def ws(gw, path, headers=(), timeout=10.0):
    """(response, client) of an upgrade to path."""
    c = gw.client(timeout=timeout)
    return c.handshake(path, extra_headers=list(headers)), c


def assert_reaches(gw, path, tag, headers=()):
    resp, c = ws(gw, path, headers)
    assert resp.status == 101, "%s: %r" % (path, resp)
    assert c.read_data(len(tag)) == tag
    c.send_frame(OP_BINARY, b"ping-" + tag)
    assert c.read_data(5 + len(tag)) == b"ping-" + tag
    c.close()


def assert_status(gw, path, status, headers=()):
    resp, c = ws(gw, path, headers)
    harness.assert_http_error(c, status, resp)
    return resp


def assert_never_logged(gw, *secrets):
    text = gw.stderr_text()
    for s in secrets:
        assert s not in text, "a secret reached the log"


# ------------------------------------------------------------------ JWT


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}

    def pub(name, priv):
        path = d / (name + ".pem")
        path.write_bytes(priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        out[name] = (priv, str(path))

    pub("ES256", ec.generate_private_key(ec.SECP256R1()))
    pub("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    pub("EdDSA", ed25519.Ed25519PrivateKey.generate())
    secret = os.urandom(32).hex()
    (d / "hs.key").write_text(secret + "\n")
    out["HS256"] = (secret, str(d / "hs.key"))
    return out


def mint(keys, alg, port, host="127.0.0.1", **claims):
    body = {"host": host, "port": claims.pop("port_claim", port), "exp": int(time.time()) + 300}
    body.update(claims)
    return jwt.encode(body, keys[alg][0], algorithm=alg)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def confused(pem_path, port):
    """HS256 with the ES256 public key's PEM as the secret (algorithm
    confusion), made by hand: python3-jwt refuses to."""
    import hashlib
    import hmac
    import json
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps({"host": "127.0.0.1", "port": port,
                            "exp": int(time.time()) + 300}).encode())
    sig = hmac.new(open(pem_path, "rb").read(), ("%s.%s" % (head, body)).encode(),
                   hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64u(sig))


def test_jwt_algorithms_claims_and_sources(gw, keys):
    be = Tagged(b"J")
    cfg = {"gateway": {"workers": 1, "log_level": "debug"}}
    for alg in ("ES256", "RS256", "HS256", "EdDSA"):
        cfg["route:%s" % alg] = {"path": "/%s" % alg.lower(), "token_jwt_key": keys[alg][1],
                                 "token_jwt_algorithms": alg}
    cfg["route:aud"] = {"path": "/aud", "token_jwt_key": keys["ES256"][1],
                        "token_jwt_algorithms": "ES256", "token_jwt_audience": "wsgate",
                        "token_cookie": "wstoken"}
    gw.start(cfg)
    secrets = []
    for alg in ("ES256", "RS256", "HS256", "EdDSA"):
        t = mint(keys, alg, be.port)
        secrets.append(t)
        assert_reaches(gw, "/%s?token=%s" % (alg.lower(), t), b"J")
    es = lambda **kw: mint(keys, "ES256", be.port, **kw)  # noqa: E731
    # a port claim as a string, a route claim equal to the route's name
    assert_reaches(gw, "/es256?token=" + es(port_claim=str(be.port), route="ES256"), b"J")
    bad = {
        "expired": es(exp=int(time.time()) - 120),  # beyond the 30 s leeway
        "not yet": es(nbf=int(time.time()) + 120),
        "other route": es(route="RS256"),
        "wrong key": mint(keys, "RS256", be.port),
        "alg none": jwt.encode({"host": "127.0.0.1", "port": be.port}, None, algorithm="none"),
        "HS256 signed with the public key": confused(keys["ES256"][1], be.port),
    }
    for what, t in bad.items():
        secrets.append(t)
        resp = assert_status(gw, "/es256?token=" + t, 403)
        assert b"invalid token" in resp.body, what
    # within the leeway: still valid
    assert_reaches(gw, "/es256?token=" + es(exp=int(time.time()) - 5), b"J")

    # audience, cookie, Bearer, an invalid ?token= that does not fall back
    good = es(aud="wsgate")
    secrets.append(good)
    assert_status(gw, "/aud?token=" + es(aud="other"), 403)
    assert_status(gw, "/aud?token=" + es(), 403)
    assert_reaches(gw, "/aud", b"J", [("Cookie", "a=1; wstoken=%s; b=2" % good)])
    assert_reaches(gw, "/aud", b"J", [("Authorization", "Bearer " + good)])
    assert_status(gw, "/aud?token=%zz", 403, [("Cookie", "wstoken=" + good)])
    assert_status(gw, "/aud", 403, [("Cookie", "other=" + good)])
    resp = assert_status(gw, "/aud", 403)
    assert b"missing token" in resp.body
    assert_never_logged(gw, *secrets)
    be.close()


def test_jwt_command_line_plugin(gw, keys):
    """--token-plugin JWTTokenApi infers the algorithm from the key."""
    be = Tagged(b"C")
    gw.start(args=["--token-plugin", "JWTTokenApi", "--token-source", keys["ES256"][1],
                   gw.listen])
    assert_reaches(gw, "/?token=" + mint(keys, "ES256", be.port), b"C")
    assert_status(gw, "/?token=" + mint(keys, "HS256", be.port), 403)
    be.close()


# ------------------------------------------------------------ allowed_backends


def test_allowed_backends(gw, keys, tmp_path):
    a, b = Tagged(b"A"), Tagged(b"B")
    dns = Dns(tmp_path)
    dns.set({"near.test": {"A": ["127.0.0.1"], "ttl": 60},
             "far.test": {"A": ["10.9.8.7"], "ttl": 60}})
    k = keys["ES256"][1]
    base = {"token_jwt_key": k, "token_jwt_algorithms": "ES256"}
    gw.start({"gateway": {"workers": 1, "resolver": "127.0.0.1:%d" % dns.port},
              "route:hp": dict(base, path="/hp", allowed_backends="127.0.0.1:%d" % a.port),
              "route:anyport": dict(base, path="/ap", allowed_backends="*:%d" % b.port),
              "route:hoststar": dict(base, path="/hs", allowed_backends="near.test:*"),
              "route:cidr": dict(base, path="/cidr", allowed_backends=["192.168.0.0/16",
                                                                       "127.0.0.0/30"]),
              "route:v6": dict(base, path="/v6", allowed_backends="10.0.0.0/8")})
    t = lambda port, host="127.0.0.1": "?token=" + mint(keys, "ES256", port, host=host)  # noqa
    assert_reaches(gw, "/hp" + t(a.port), b"A")
    assert_status(gw, "/hp" + t(b.port), 403)
    assert_status(gw, "/hp" + t(a.port, "near.test"), 403)  # host:port compares the name
    assert_reaches(gw, "/ap" + t(b.port), b"B")
    assert_status(gw, "/ap" + t(a.port), 403)
    assert_reaches(gw, "/hs" + t(a.port, "near.test"), b"A")
    assert_status(gw, "/hs" + t(a.port), 403)
    # CIDR: checked against what the name resolves to
    assert_reaches(gw, "/cidr" + t(a.port), b"A")
    assert_reaches(gw, "/cidr" + t(b.port, "near.test"), b"B")
    assert_status(gw, "/cidr" + t(a.port, "far.test"), 403)
    assert_status(gw, "/v6" + t(a.port), 403)
    assert_status(gw, "/v6" + t(a.port, "near.test"), 403)
    wait_log(gw, "outside allowed_backends")
    dns.close()
    a.close()
    b.close()


# ------------------------------------------------------------ basic auth


def basic(user, pw):
    return [("Authorization", "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode())
             .decode())]


def test_basic_auth(gw, tmp_path):
    be = Tagged(b"U")
    users = {"yes": ("pw-yes", "$y$"), "sha": ("pw-sha", "$6$"), "bc": ("pw-bc", "$2b$")}
    path = tmp_path / "users"
    path.write_text("".join("%s:%s\n" % (u, crypt_hash(p, pre))
                            for u, (p, pre) in users.items()))
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("hello\n")
    gw.start({"gateway": {"workers": 1, "web_root": str(web), "basic_auth_file": str(path)},
              "route:r": {"path": "/r", "backend": "127.0.0.1:%d" % be.port}})
    for u, (p, _) in users.items():
        assert_reaches(gw, "/r", b"U", basic(u, p))
    for hdrs in ([], basic("yes", "wrong"), basic("nobody", "pw-yes"),
                 [("Authorization", "Basic !!!")], [("Authorization", "Bearer x")]):
        resp = assert_status(gw, "/r", 401, hdrs)
        assert resp.get("www-authenticate") == 'Basic realm="wsgate"', resp
    # the five refusals count in wsgate_handshake_failures_total{status="401"}
    c = gw.client()
    c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n"
           % base64.b64encode(b"sha:pw-sha"))
    m = c.read_http_response()
    assert m.status == 200, m
    assert b'wsgate_handshake_failures_total{route="r",status="401"} 5\n' in m.body, m.body
    # the [gateway] value guards web_root files too
    c = gw.client()
    c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_http_response()
    assert r.status == 401 and r.get("www-authenticate") == 'Basic realm="wsgate"'
    c = gw.client()
    c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n"
           % base64.b64encode(b"sha:pw-sha"))
    r = c.read_http_response()
    assert r.status == 200 and r.body == b"hello\n"
    # re-read when the file changes: a new password, a removed user
    old = os.stat(path).st_mtime
    path.write_text("yes:%s\n" % crypt_hash("pw-new", "$6$"))
    os.utime(path, (old + 5, old + 5))
    harness.wait_until(lambda: ws(gw, "/r", basic("yes", "pw-new"))[0].status == 101,
                       timeout=5, what="new password accepted")
    assert_status(gw, "/r", 401, basic("yes", "pw-yes"))
    assert_status(gw, "/r", 401, basic("bc", "pw-bc"))
    assert_never_logged(gw, "pw-yes", "pw-new", "pw-sha", "pw-bc",
                        base64.b64encode(b"sha:pw-sha").decode())
    be.close()


def slow_users(tmp_path, cost=14):
    """A basic_auth_file whose one user's bcrypt hash costs about a second
    per check here (cost 14), and the time making it took (one check)."""
    path = tmp_path / "slow-users"
    h, took = timed(lambda: crypt_hash("right", "$2b$", cost))
    path.write_text("slow:%s\n" % h)
    return path, took


def test_password_checks_leave_the_worker_free(gw, tmp_path):
    """The one worker relays while a slow password is being hashed: an echo
    sent after a wrong password's upgrade comes back before that upgrade's
    401 (checked on the password thread, not on the worker loop)."""
    users, took = slow_users(tmp_path)
    assert took > 0.3, "the hash is too cheap for this test: %.3f s" % took
    be = Tagged(b"P")
    gw.start({"gateway": {"workers": 1},
              "route:r": {"path": "/r", "backend": "127.0.0.1:%d" % be.port,
                          "basic_auth_file": str(users)},
              "route:p": {"path": "/p", "backend": "127.0.0.1:%d" % be.port}})
    resp, live = ws(gw, "/p")
    assert resp.status == 101 and live.read_data(1) == b"P"
    c = gw.client(timeout=30)
    c.send(harness.make_request("/r", extra_headers=basic("slow", "wrong")))
    time.sleep(0.1)  # the check has started
    for i in range(20):
        live.send_frame(OP_BINARY, b"echo-%d" % i)
        assert live.read_data(len(b"echo-%d" % i)) == b"echo-%d" % i
    # the 401 is not there yet: the echoes did not wait for the hash
    c.sock.settimeout(0)
    try:
        early = c.sock.recv(1)
    except BlockingIOError:
        early = None
    c.sock.settimeout(30)
    assert early is None, "the 401 came before the echoes were done"
    resp = c.read_http_response()
    assert resp.status == 401 and resp.get("www-authenticate") == 'Basic realm="wsgate"', resp
    # the right password, checked the same way
    assert_reaches(gw, "/r", b"P", basic("slow", "right"))
    live.close()
    be.close()


def test_password_queue_is_bounded(gw, tmp_path):
    """At most PWCHECK_QUEUE (64) checks wait behind the one running: the
    rest are answered 503 at once. Clients that leave take their checks
    out of the queue: a good password is served right after."""
    users, _ = slow_users(tmp_path, cost=15)
    be = Tagged(b"Q")
    gw.start({"gateway": {"workers": 1},
              "route:r": {"path": "/r", "backend": "127.0.0.1:%d" % be.port,
                          "basic_auth_file": str(users)}})
    clients = []
    for i in range(70):
        c = gw.client(timeout=30)
        c.send(harness.make_request("/r", extra_headers=basic("slow", "wrong-%d" % i)))
        clients.append(c)
        if i == 0:
            time.sleep(0.3)  # the thread has taken the first: 64 more may wait
    # the five over the bound are answered at once (which five is up to the
    # order the worker reads them in); a check takes seconds (cost 15)
    deadline = time.monotonic() + 1.0
    answered = []
    while len(answered) < 5 and time.monotonic() < deadline:
        r, _, _ = select.select([c.sock for c in clients], [], [], 0.1)
        answered = [c for c in clients if c.sock in r]
    time.sleep(0.2)
    r, _, _ = select.select([c.sock for c in clients], [], [], 0)
    assert len(r) == 5, "%d clients answered" % len(r)
    for c in [c for c in clients if c.sock in r]:
        resp = c.read_http_response(timeout=5)
        assert resp.status == 503 and b"too many password checks waiting" in resp.body, resp
    for c in clients:
        if c.sock not in r:
            c.abort()
    # after the check running when the clients left, this one (64 checks
    # still queued would take a minute: past the client's timeout)
    assert_reaches(gw, "/r", b"Q", basic("slow", "right"))
    wait_log(gw, 'reason="503 too many password checks waiting"', count=5)
    wait_log(gw, 'reason="client gone during the password check"', count=65)
    assert gw.stderr_text().count("too many password checks waiting") == 5
    # stopped while a check runs: the session goes, the thread drops the
    # answer, wsgate exits cleanly (ASan checks the job is freed once)
    c = gw.client(timeout=30)
    c.send(harness.make_request("/r", extra_headers=basic("slow", "wrong-last")))
    time.sleep(0.2)
    gw.terminate()
    gw.proc.wait(15)
    rc, problems = gw.stop()
    assert rc == 0 and not problems, problems
    be.close()


# ------------------------------------------------------------ Redis


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


def test_redis_lookups_revocation_and_outage(gw, redis):
    a, b = Tagged(b"A"), Tagged(b"B")
    gw.start({"gateway": {"workers": 1},
              "route:tok": {"path": "/t", "token_redis": redis.url, "token_redis_prefix": "ws:",
                            "connect_timeout": "1s"},
              "route:plain": {"path": "/p", "backend": "127.0.0.1:%d" % b.port}})
    t1, t2, t3 = uniq(), uniq(), uniq()
    redis.cli("SET", "ws:" + t1, "127.0.0.1:%d" % a.port)
    redis.cli("SET", "ws:" + t2, '{"host": "127.0.0.1:%d"}' % b.port)
    redis.cli("SET", "ws:" + t3, '{"host": "127.0.0.1", "port": "%d"}' % a.port)
    assert_reaches(gw, "/t?token=" + t1, b"A")
    assert_reaches(gw, "/t?token=" + t2, b"B")
    assert_reaches(gw, "/t?token=" + t3, b"A")
    assert_status(gw, "/t?token=" + uniq(), 403)
    # a key deleted refuses the next upgrade
    redis.cli("DEL", "ws:" + t1)
    assert_status(gw, "/t?token=" + t1, 403)

    # outage: 503 within connect_timeout, other routes untouched, logged once
    redis.stop()
    for _ in range(4):
        resp, took = timed(lambda: assert_status(gw, "/t?token=" + t2, 503))
        assert took < 1.0 + 0.5 + 0.5, took
        assert_reaches(gw, "/p", b"B")
    assert gw.stderr_text().count("unavailable:") == 1, gw.stderr_text()
    redis.start()  # empty again: no persistence
    redis.cli("SET", "ws:" + t2, "127.0.0.1:%d" % a.port)
    harness.wait_until(lambda: ws(gw, "/t?token=" + t2)[0].status == 101, timeout=8,
                       what="reconnected (back-off capped at 5 s)")
    wait_log(gw, "available again")
    assert gw.stderr_text().count("unavailable:") == 1
    assert_never_logged(gw, t1, t2, t3)
    a.close()
    b.close()


def test_redis_shared_by_two_gateways(gateway_factory, redis):
    a = Tagged(b"A")
    gws = [gateway_factory() for _ in range(2)]
    for g in gws:
        g.start({"route:tok": {"path": "/", "token_redis": redis.url}})
    t = uniq()
    redis.cli("SET", t, "127.0.0.1:%d" % a.port)
    for g in gws:
        assert_reaches(g, "/?token=" + t, b"A")
    redis.cli("DEL", t)
    for g in gws:
        assert_status(g, "/?token=" + t, 403)
    a.close()


def test_silent_redis_does_not_block_the_loop(gw):
    silent = SilentRedis()
    b = Tagged(b"B")
    gw.start({"gateway": {"workers": 1},
              "route:tok": {"path": "/t", "token_redis": "127.0.0.1:%d" % silent.port,
                            "connect_timeout": "2s"},
              "route:plain": {"path": "/p", "backend": "127.0.0.1:%d" % b.port}})
    t0 = time.monotonic()
    cs = []
    for _ in range(3):
        c = gw.client()
        c.send(harness.make_request("/t?token=" + uniq()))
        cs.append(c)
    for _ in range(5):
        _, took = timed(lambda: assert_reaches(gw, "/p", b"B"))
        assert took < 0.5, "the plain route waited %.2fs behind a silent Redis" % took
    for c in cs:
        harness.assert_http_error(c, 503)
    took = time.monotonic() - t0
    assert 1.8 < took < 2.0 + 0.5 + 1.0, took
    silent.close()
    b.close()


# ------------------------------------------------------------ DNS


@pytest.fixture
def dns(tmp_path):
    d = Dns(tmp_path)
    yield d
    d.close()


def test_backend_names_follow_dns(gw, dns, redis):
    one = Tagged(b"1", "127.0.0.1")
    two = Tagged(b"2", "127.0.0.2", one.port)
    six = Tagged(b"6", "::1")
    plain = Tagged(b"P")
    dns.set({"be.test": {"A": ["127.0.0.1"], "ttl": 1},
             "six.test": {"AAAA": ["::1"], "ttl": 60},
             "slow.test": {"A": ["127.0.0.1"], "ttl": 60, "delay": 1.5},
             "nodata.test": {"ttl": 60}})
    gw.start({"gateway": {"workers": 1, "resolver": "127.0.0.1:%d" % dns.port,
                          "connect_timeout": "8s"},
              "route:be": {"path": "/be", "backend": "be.test:%d" % one.port},
              "route:six": {"path": "/six", "backend": "six.test:%d" % six.port},
              "route:slow": {"path": "/slow", "backend": "slow.test:%d" % plain.port},
              "route:nx": {"path": "/nx", "backend": "nx.test:%d" % plain.port},
              "route:nodata": {"path": "/nodata", "backend": "nodata.test:%d" % plain.port},
              "route:tok": {"path": "/t", "token_redis": redis.url},
              "route:plain": {"path": "/p", "backend": "127.0.0.1:%d" % plain.port}})
    assert_reaches(gw, "/be", b"1")
    n = dns.queries("be.test")
    assert_reaches(gw, "/be", b"1")  # within the TTL: from the cache
    # the backend moves: followed once the TTL (1 s) expired, no reload
    dns.set({**{"be.test": {"A": ["127.0.0.2"], "ttl": 1}},
             "six.test": {"AAAA": ["::1"], "ttl": 60},
             "slow.test": {"A": ["127.0.0.1"], "ttl": 60, "delay": 1.5}})
    time.sleep(1.2)
    assert_reaches(gw, "/be", b"2")
    assert dns.queries("be.test") > n
    assert_reaches(gw, "/six", b"6")  # only AAAA records
    assert_status(gw, "/nx", 502)
    assert_status(gw, "/nodata", 502)
    # a slow answer delays no other route
    c = gw.client()
    c.send(harness.make_request("/slow"))
    for _ in range(3):
        _, took = timed(lambda: assert_reaches(gw, "/p", b"P"))
        assert took < 0.5, took
    r = c.read_http_response()
    assert r.status == 101
    # a Redis token whose target is a name
    t = uniq()
    redis.cli("SET", t, "be.test:%d" % one.port)
    assert_reaches(gw, "/t?token=" + t, b"2")
    for s in (one, two, six, plain):
        s.close()


# ---------------------------------------------------------------- access log


def access_records(gw):
    """{client "addr:port": fields} of every session line so far, text or
    JSON format, with the text format's names (ops_helpers.ACCESS_RE)."""
    import json
    from ops_helpers import ACCESS_RE
    out = {}
    for line in gw.stderr_text().splitlines():
        if line.startswith("{"):
            j = json.loads(line)
            if j.get("event") != "session":
                continue
            rec = {"client": j["client"], "route": j["route"], "backend": j["backend"],
                   "status": j["status"], "duration": j["duration"], "up": j["bytes_up"],
                   "down": j["bytes_down"], "close": j["close_code"], "by": j["closed_by"]}
        else:
            m = ACCESS_RE.search(line)
            if not m:
                continue
            rec = dict(zip(("client", "route", "backend", "status", "duration", "up", "down",
                            "close", "by"), m.groups()))
            for k in ("status", "up", "down", "close"):
                rec[k] = int(rec[k])
            rec["duration"] = float(rec["duration"])
        out[rec["client"]] = rec
    return out


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_access_line_fields(gw, backends, log_format):
    """Every field of a session's access line against the traffic made: the
    client's address and port, route, backend, status 101, payload bytes
    each way, the close code and who closed, and a duration within the
    time the test measured around the session. Two sessions: the client
    closes an echo session (4001, by client); a backend sends M bytes and
    EOF (1000, by backend)."""
    from ops_helpers import client_addr
    echo = backends.echo()
    m_down = 54321
    sender = backends.sender(bytes(i % 253 for i in range(m_down)))
    gw.start({"gateway": {"log_format": log_format},
              "route:e": harness.route(echo.addr, "/e"),
              "route:s": harness.route(sender.addr, "/s")})
    up = [harness.random_bytes(n) for n in (1, 125, 126, 70000)]
    t0 = time.monotonic()
    c = gw.ws("/e")
    e_addr = client_addr(c)
    for data in up:
        c.send_frame(OP_BINARY, data)
        assert c.read_data(len(data)) == data
    c.send_close(4001)
    c.expect_close(4001)
    e_took = time.monotonic() - t0

    t0 = time.monotonic()
    s = gw.ws("/s")
    s_addr = client_addr(s)
    assert s.read_data(m_down) == bytes(i % 253 for i in range(m_down))
    s.expect_close(1000)
    s_took = time.monotonic() - t0

    recs = harness.wait_until(lambda: (lambda r: r if e_addr in r and s_addr in r else None)(
        access_records(gw)), what="both access lines")
    total = sum(len(d) for d in up)
    want = {
        e_addr: {"client": e_addr, "route": "e", "backend": echo.addr, "status": 101,
                 "up": total, "down": total, "close": 4001, "by": "client"},
        s_addr: {"client": s_addr, "route": "s", "backend": sender.addr, "status": 101,
                 "up": 0, "down": m_down, "close": 1000, "by": "backend"},
    }
    for addr, took in ((e_addr, e_took), (s_addr, s_took)):
        got = dict(recs[addr])
        duration = got.pop("duration")
        assert got == want[addr], "access line of %s: %r, expected %r" % (addr, got, want[addr])
        assert 0 < duration <= took + 0.01, "duration %r, the session took %.3fs" % (duration, took)
