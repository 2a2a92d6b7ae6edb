"""Static files under [gateway] web_root, against the real binary.

Plain GET/HEAD requests (no Upgrade header) are answered from web_root:
Content-Type by extension, Content-Length and the exact bytes (sendfile),
HEAD without a body, Last-Modified / If-Modified-Since -> 304, index.html
for directories, 301 for a directory without its slash, 404, 405 with
Allow, and traversal attempts (encoded dots and slashes, ".." segments,
backslashes, NUL, hidden segments, symlinks out of the root) refused
without ever leaking a secret file placed next to web_root. Upgrades on
route paths keep working while web_root is set; health_path and
metrics_path take precedence over files of the same name.

Requests are sent over raw sockets so that the request target reaches
wsgate byte for byte (http.client and urllib normalise some paths); one
test uses http.client as an independent client. Every response closes the
connection, so "the body" is everything after the head until EOF.
"""

import email.utils
import hashlib
import http.client
import os
import shutil
import socket
import ssl
import threading
import time

import pytest

import harness
from harness import OP_BINARY, HttpResponse, build_frame

T_FIXED = 1600000000  # Sun, 13 Sep 2020 12:26:40 GMT: mtime of dated.html

# name -> exact Content-Type emitted by src/static.c
CONTENT_TYPES = {
    "page.html": "text/html; charset=utf-8",
    "old.htm": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "mod.mjs": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "logo.svg": "image/svg+xml",
    "img.png": "image/png",
    "favicon.ico": "image/x-icon",
    "mod.wasm": "application/wasm",
    "data.json": "application/json",
    "notes.txt": "text/plain; charset=utf-8",
    "photo.jpg": "image/jpeg",
    "anim.gif": "image/gif",
    "pic.webp": "image/webp",
    "font.woff2": "font/woff2",
    "app.js.map": "application/json",
    "UPPER.PNG": "image/png",          # extensions are case-insensitive
    "Page.HTML": "text/html; charset=utf-8",
    "blob.bin": "application/octet-stream",
    "README": "application/octet-stream",
    "archive.tar.gz": "application/octet-stream",
}


# ---------------------------------------------------------------- helpers


def raw_request(method, target, headers=(), host="localhost"):
    lines = ["%s %s HTTP/1.1" % (method, target)]
    if host is not None:
        lines.append("Host: %s" % host)
    lines += ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def fetch(gw, target, method="GET", headers=(), timeout=30.0):
    """Send one request with the target exactly as given and read until
    wsgate closes the connection (it must). Returns an HttpResponse whose
    body is every byte after the head; .wire holds the whole response."""
    c = gw.client(timeout)
    c.send(raw_request(method, target, headers))
    wire = c.read_until_eof(timeout)
    c.close()
    idx = wire.find(b"\r\n\r\n")
    assert idx >= 0, "no complete response head for %s %r: %r" % (method, target, wire[:300])
    resp = HttpResponse(wire[:idx], wire[idx + 4:])
    resp.wire = wire
    return resp


def assert_file_response(resp, path, ctype=None):
    """A 200 carrying exactly the file at path."""
    with open(path, "rb") as f:
        data = f.read()
    assert resp.status == 200, "expected 200 for %s, got %r" % (path, resp.raw)
    assert resp.get("content-length") == str(len(data)), resp.raw
    assert len(resp.get_all("content-length")) == 1, resp.raw
    harness.assert_same(resp.body, data, "body of %s" % os.path.basename(path))
    if ctype is not None:
        assert resp.get_all("content-type") == [ctype], resp.raw
    assert "close" in resp.tokens("connection"), resp.raw
    assert resp.get("date"), resp.raw
    return data


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


class Site:
    """A web_root with files of every type, a subdirectory, hidden files,
    symlinks in and out of the root, and secrets just outside it."""

    def __init__(self, base):
        base = str(base)
        self.base = base
        self.root = os.path.join(base, "www")
        self.secret = ("TOP-SECRET-%s" % os.urandom(8).hex()).encode()
        os.makedirs(self.root)

        # outside the root
        write(os.path.join(base, "secret.txt"), self.secret + b" (file next to web_root)\n")
        write(os.path.join(base, "outside", "secret.txt"), self.secret + b" (outside dir)\n")
        write(os.path.join(base, "outside", "index.html"), self.secret + b" (outside index)\n")
        # a sibling whose name starts with the root's name: "/srv/www-evil" is
        # not under "/srv/www"
        write(os.path.join(base, "www-evil", "secret.txt"), self.secret + b" (prefix sibling)\n")

        # inside the root
        self.index = b"<!doctype html><title>root index</title>\n"
        write(self.p("index.html"), self.index)
        write(self.p("sub", "index.html"), b"<!doctype html><title>sub index</title>\n")
        write(self.p("sub", "inner.txt"), b"inner text\n")
        write(self.p("sub", "deeper", "x.json"), b'{"deep": true}\n')
        os.makedirs(self.p("noindex"))
        write(self.p("noindex", "file.txt"), b"no index here\n")
        for i, name in enumerate(sorted(CONTENT_TYPES)):
            write(self.p(name), ("content of %s\n" % name).encode() + harness.random_bytes(
                100 + 37 * i, seed=i))
        write(self.p("empty.txt"), b"")
        write(self.p("dated.html"), b"<p>dated</p>\n")
        os.utime(self.p("dated.html"), (T_FIXED, T_FIXED))
        write(self.p("with space.txt"), b"a file name with a space\n")
        write(self.p("healthz"), b"a FILE named healthz\n")
        write(self.p("metrics"), b"a FILE named metrics\n")
        write(self.p(".hidden"), self.secret + b" (hidden file inside the root)\n")
        write(self.p(".git", "config"), self.secret + b" (.git/config)\n")
        write(self.p("sub", ".env"), self.secret + b" (sub/.env)\n")

        # symlinks
        os.symlink(os.path.join(base, "secret.txt"), self.p("link_out"))          # absolute, out
        os.symlink("../secret.txt", self.p("rel_link_out"))                        # relative, out
        os.symlink(os.path.join(base, "outside"), self.p("dirlink"))              # dir, out
        os.symlink("../www-evil", self.p("pfx"))                                   # prefix sibling
        os.symlink("/etc/passwd", self.p("passwd"))
        os.symlink("/dev/zero", self.p("zero"))                                    # never stream it
        os.symlink("page.html", self.p("inlink.html"))                             # stays inside
        os.symlink(self.p("sub"), self.p("sublink"))                               # dir, inside
        os.symlink("loop_b", self.p("loop_a"))
        os.symlink("loop_a", self.p("loop_b"))
        os.mkfifo(self.p("fifo"))

    def p(self, *parts):
        return os.path.join(self.root, *parts)


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path / "site")


@pytest.fixture
def sgw(gw, site, echo):
    """A gateway with web_root = site.root and an echo route on /ws."""
    gw.start({"gateway": {"web_root": site.root},
              "route:echo": harness.route(echo.addr, "/ws")})
    gw.site = site
    return gw


def assert_refused(resp, site, target):
    assert resp.status in (400, 403, 404), (
        "traversal %r: expected 400/403/404, got %r" % (target, resp.wire[:400]))
    assert site.secret not in resp.wire, "traversal %r LEAKED the secret: %r" % (target, resp.wire)
    assert b"root:" not in resp.body, "traversal %r leaked /etc/passwd: %r" % (target, resp.wire)
    assert len(resp.body) <= 1024, "refusal body too large for %r: %d bytes" % (target, len(resp.body))
    assert resp.get("location") is None, resp.raw


# ---------------------------------------------------------------- content


@pytest.mark.parametrize("name", sorted(CONTENT_TYPES))
def test_content_type_length_and_bytes(sgw, name):
    resp = fetch(sgw, "/" + name)
    assert_file_response(resp, sgw.site.p(name), CONTENT_TYPES[name])
    assert resp.get("x-content-type-options") == "nosniff", resp.raw
    assert resp.get("last-modified"), resp.raw


def test_html_types_listed_in_issue(sgw):
    """The issue's list in one place: html, js, mjs, css, svg, png, ico,
    wasm, json each get a specific type (never the octet-stream default)."""
    for ext in ("html", "js", "mjs", "css", "svg", "png", "ico", "wasm", "json"):
        name = next(n for n in CONTENT_TYPES if n.endswith("." + ext))
        resp = fetch(sgw, "/" + name)
        assert resp.status == 200, resp.raw
        assert resp.get("content-type") != "application/octet-stream", (ext, resp.raw)
        assert resp.get("content-type") == CONTENT_TYPES[name], (ext, resp.raw)


def test_empty_file(sgw):
    resp = fetch(sgw, "/empty.txt")
    assert_file_response(resp, sgw.site.p("empty.txt"), "text/plain; charset=utf-8")
    assert resp.body == b""


def test_query_string_is_ignored(sgw):
    resp = fetch(sgw, "/page.html?v=123&x=%2e%2e")
    assert_file_response(resp, sgw.site.p("page.html"), "text/html; charset=utf-8")


def test_percent_encoded_name(sgw):
    resp = fetch(sgw, "/with%20space.txt")
    assert_file_response(resp, sgw.site.p("with space.txt"), "text/plain; charset=utf-8")
    resp = fetch(sgw, "/%70age.html")  # %70 = 'p'
    assert_file_response(resp, sgw.site.p("page.html"))


def test_symlinks_inside_root_are_followed(sgw):
    resp = fetch(sgw, "/inlink.html")
    assert_file_response(resp, sgw.site.p("page.html"), "text/html; charset=utf-8")
    resp = fetch(sgw, "/sublink/inner.txt")
    assert_file_response(resp, sgw.site.p("sub", "inner.txt"))


@pytest.mark.deadline(180)
def test_large_file_5mib(sgw):
    """5 MiB of random bytes arrive whole (sendfile in several pieces)."""
    data = harness.random_bytes(5 * 1024 * 1024 + 123, seed=5)
    write(sgw.site.p("big.bin"), data)
    resp = fetch(sgw, "/big.bin", timeout=60)
    assert resp.status == 200, resp.raw
    assert resp.get("content-length") == str(len(data)), resp.raw
    assert len(resp.body) == len(data), "got %d of %d bytes" % (len(resp.body), len(data))
    assert hashlib.sha256(resp.body).digest() == hashlib.sha256(data).digest(), "5 MiB body differs"


@pytest.mark.deadline(180)
def test_large_file_slow_reader(sgw):
    """A client with a small receive buffer that starts reading late: the
    file still arrives whole (sendfile hits EAGAIN and resumes)."""
    data = harness.random_bytes(3 * 1024 * 1024, seed=3)
    write(sgw.site.p("big3.bin"), data)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(60)
    try:
        s.connect((sgw.host, sgw.port))
        s.sendall(raw_request("GET", "/big3.bin"))
        time.sleep(1.0)
        chunks = []
        while True:
            b = s.recv(4096 if len(chunks) < 200 else 1 << 20)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    wire = b"".join(chunks)
    idx = wire.find(b"\r\n\r\n")
    assert idx >= 0, wire[:200]
    resp = HttpResponse(wire[:idx], wire[idx + 4:])
    assert resp.status == 200 and resp.get("content-length") == str(len(data)), resp.raw
    harness.assert_same(resp.body, data, "slowly read 3 MiB body")


@pytest.mark.deadline(180)
def test_parallel_downloads(sgw):
    data = harness.random_bytes(2 * 1024 * 1024, seed=22)
    write(sgw.site.p("par.bin"), data)
    results = [None] * 8
    errors = []

    def worker(i):
        try:
            results[i] = fetch(sgw, "/par.bin", timeout=60)
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    digest = hashlib.sha256(data).digest()
    for r in results:
        assert r is not None and r.status == 200, r
        assert hashlib.sha256(r.body).digest() == digest


def test_http_client_independent(sgw):
    """http.client (the standard library's client) sees the same thing."""
    data = harness.random_bytes(5 * 1024 * 1024, seed=55)
    write(sgw.site.p("big5.wasm"), data)
    conn = http.client.HTTPConnection(sgw.host, sgw.port, timeout=60)
    try:
        conn.request("GET", "/big5.wasm")
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200
        assert r.getheader("Content-Type") == "application/wasm"
        assert int(r.getheader("Content-Length")) == len(data)
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    finally:
        conn.close()
    conn = http.client.HTTPConnection(sgw.host, sgw.port, timeout=30)
    try:
        conn.request("HEAD", "/style.css")
        r = conn.getresponse()
        assert r.status == 200
        assert r.getheader("Content-Type") == "text/css; charset=utf-8"
        assert int(r.getheader("Content-Length")) == os.path.getsize(sgw.site.p("style.css"))
        assert r.read() == b""
    finally:
        conn.close()


# ---------------------------------------------------------------- HEAD


@pytest.mark.parametrize("name", ["page.html", "img.png", "mod.wasm", "empty.txt"])
def test_head_has_headers_but_no_body(sgw, name):
    get = fetch(sgw, "/" + name)
    head = fetch(sgw, "/" + name, method="HEAD")
    assert head.status == 200, head.raw
    assert head.body == b"", "HEAD response carried a body: %r" % head.body[:100]
    size = os.path.getsize(sgw.site.p(name))
    assert head.get("content-length") == str(size), head.raw
    for h in ("content-type", "content-length", "last-modified"):
        assert head.get(h) == get.get(h), (h, head.raw, get.raw)


def test_head_errors_have_no_body(sgw):
    for target, status in (("/missing.html", 404), ("/sub", 301), ("/.hidden", 403)):
        resp = fetch(sgw, target, method="HEAD")
        assert resp.status == status, (target, resp.raw)
        assert resp.body == b"", (target, resp.wire)


def test_head_redirect_with_long_query_has_no_body(sgw):
    """A 301 whose Location (path + long query) is large: whatever the
    status, a HEAD response carries no body (static.h: error bodies are
    left out for HEAD)."""
    target = "/sub?" + "q" * 5000
    get = fetch(sgw, target)
    assert get.status in (301, 414), get.raw
    head = fetch(sgw, target, method="HEAD")
    assert head.status == get.status, head.raw
    assert head.body == b"", "HEAD %d response carried a body: %r" % (head.status, head.body[:100])


# ---------------------------------------------------------------- dates


def test_last_modified_exact(sgw):
    resp = fetch(sgw, "/dated.html")
    assert resp.status == 200, resp.raw
    assert resp.get("last-modified") == email.utils.formatdate(T_FIXED, usegmt=True), resp.raw
    assert resp.get("last-modified") == "Sun, 13 Sep 2020 12:26:40 GMT"


@pytest.mark.parametrize("ims", [
    email.utils.formatdate(T_FIXED, usegmt=True),            # exactly the mtime
    email.utils.formatdate(T_FIXED + 3600, usegmt=True),     # newer
    "Sunday, 13-Sep-20 12:26:40 GMT",                        # RFC 850
    time.asctime(time.gmtime(T_FIXED)),                      # asctime
], ids=["same", "newer", "rfc850", "asctime"])
def test_if_modified_since_not_modified(sgw, ims):
    resp = fetch(sgw, "/dated.html", headers=[("If-Modified-Since", ims)])
    assert resp.status == 304, "IMS %r: %r" % (ims, resp.raw)
    assert resp.body == b"", "304 must have no body: %r" % resp.body
    assert resp.get("last-modified") == email.utils.formatdate(T_FIXED, usegmt=True), resp.raw
    # HEAD with the same date: 304 as well
    resp = fetch(sgw, "/dated.html", method="HEAD", headers=[("If-Modified-Since", ims)])
    assert resp.status == 304 and resp.body == b"", resp.wire


@pytest.mark.parametrize("ims", [
    email.utils.formatdate(T_FIXED - 1, usegmt=True),        # one second older
    email.utils.formatdate(T_FIXED - 86400 * 400, usegmt=True),
    "not a date",
    "Sun, 32 Sep 2020 12:26:40 GMT",
    "",
], ids=["older-1s", "older-400d", "garbage", "day-32", "empty"])
def test_if_modified_since_full_response(sgw, ims):
    resp = fetch(sgw, "/dated.html", headers=[("If-Modified-Since", ims)])
    assert_file_response(resp, sgw.site.p("dated.html"), "text/html; charset=utf-8")


def test_if_none_match_overrides_if_modified_since(sgw):
    resp = fetch(sgw, "/dated.html", headers=[
        ("If-Modified-Since", email.utils.formatdate(T_FIXED + 10, usegmt=True)),
        ("If-None-Match", '"x"')])
    assert_file_response(resp, sgw.site.p("dated.html"))


def test_file_changed_after_date(sgw):
    """After the file changes, the old date no longer yields 304."""
    ims = email.utils.formatdate(T_FIXED, usegmt=True)
    assert fetch(sgw, "/dated.html", headers=[("If-Modified-Since", ims)]).status == 304
    write(sgw.site.p("dated.html"), b"<p>changed</p>\n")
    os.utime(sgw.site.p("dated.html"), (T_FIXED + 60, T_FIXED + 60))
    resp = fetch(sgw, "/dated.html", headers=[("If-Modified-Since", ims)])
    assert_file_response(resp, sgw.site.p("dated.html"))
    assert resp.body == b"<p>changed</p>\n"
    assert resp.get("last-modified") == email.utils.formatdate(T_FIXED + 60, usegmt=True)


# ---------------------------------------------------------------- directories


def test_index_for_root(sgw):
    resp = fetch(sgw, "/")
    assert_file_response(resp, sgw.site.p("index.html"), "text/html; charset=utf-8")
    resp = fetch(sgw, "/?foo=bar")
    assert_file_response(resp, sgw.site.p("index.html"), "text/html; charset=utf-8")


def test_index_for_subdirectory(sgw):
    resp = fetch(sgw, "/sub/")
    assert_file_response(resp, sgw.site.p("sub", "index.html"), "text/html; charset=utf-8")
    assert fetch(sgw, "/sub/inner.txt").body == b"inner text\n"
    assert_file_response(fetch(sgw, "/sub/deeper/x.json"), sgw.site.p("sub", "deeper", "x.json"),
                         "application/json")


@pytest.mark.parametrize("target,location", [
    ("/sub", "/sub/"),
    ("/sub?a=1&b=2", "/sub/?a=1&b=2"),
    ("/sub/deeper", "/sub/deeper/"),
    ("/sublink", "/sublink/"),
    ("/s%75b", "/s%75b/"),       # percent-encoding kept as sent
])
def test_directory_without_slash_redirects(sgw, target, location):
    resp = fetch(sgw, target)
    assert resp.status == 301, resp.raw
    assert resp.get_all("location") == [location], resp.raw
    assert sgw.site.secret not in resp.wire
    assert "close" in resp.tokens("connection"), resp.raw


def test_directory_without_index_is_404(sgw):
    resp = fetch(sgw, "/noindex/")
    assert resp.status == 404, resp.raw
    assert fetch(sgw, "/noindex/file.txt").status == 200


@pytest.mark.parametrize("target", ["/missing.html", "/sub/missing", "/nodir/x.js",
                                    "/page.html/", "/page.html/x", "/fifo", "/loop_a"])
def test_not_found(sgw, target):
    """Missing files, a file used as a directory, a FIFO (never opened
    blocking) and a symlink loop: an error, never a hang."""
    resp = fetch(sgw, target, timeout=15)
    assert resp.status in (403, 404), (target, resp.raw)
    if target in ("/missing.html", "/sub/missing", "/nodir/x.js", "/fifo"):
        assert resp.status == 404, (target, resp.raw)
    assert (resp.get("content-type") or "").startswith("text/plain"), resp.raw
    assert int(resp.get("content-length")) == len(resp.body), resp.raw


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("target", ["/page.html", "/", "/missing"])
def test_other_methods_405(sgw, method, target):
    resp = fetch(sgw, target, method=method, headers=[("Content-Length", "0")])
    assert resp.status == 405, (method, target, resp.raw)
    assert resp.get("allow") == "GET, HEAD", resp.raw
    assert "close" in resp.tokens("connection"), resp.raw
    assert b"content of" not in resp.body


def test_connection_close_after_one_request(sgw):
    """Keep-alive is not offered: a second pipelined request is not answered
    and the connection closes after the first response."""
    c = sgw.client()
    c.send(raw_request("GET", "/notes.txt") + raw_request("GET", "/app.js"))
    wire = c.read_until_eof(20)
    assert wire.count(b"HTTP/1.1 ") == 1, wire[:300]
    assert wire.startswith(b"HTTP/1.1 200 "), wire[:300]


# ---------------------------------------------------------------- traversal

TRAVERSALS = [
    "/../secret.txt",
    "/../../../../../../../../etc/passwd",
    "/sub/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/%2e%2e%2fsecret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/.%2e/secret.txt",
    "/%2fetc/passwd",
    "/%2Fetc%2Fpasswd",
    "//etc/passwd",
    "///secret.txt",
    "/sub//../../secret.txt",
    "/sub/..%5csecret.txt",
    "/sub/..%5C..%5Csecret.txt",
    "/sub\\..\\..\\secret.txt",
    "/..\\secret.txt",
    "/sub/%00",
    "/index.html%00.png",
    "/%00../secret.txt",
    "/sub/%0a",
    "/%",
    "/%2",
    "/%zz",
    "/%252e%252e/secret.txt",        # double encoding: decoded once only
    "/%c0%ae%c0%ae/secret.txt",      # overlong UTF-8 dots
    "/..;/secret.txt",
    "/link_out",
    "/rel_link_out",
    "/dirlink/secret.txt",
    "/dirlink/",
    "/dirlink",
    "/pfx/secret.txt",
    "/passwd",
    "/zero",
    "/./index.html",
    "/%2e/index.html",
    "/sub/.",
    "/sub/..",
    "/sub/%2e%2e",
    "/..",
    "/.",
    "/.hidden",
    "/%2ehidden",
    "/.git/config",
    "/.git/",
    "/sub/.env",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_refused(sgw, target):
    resp = fetch(sgw, target, timeout=15)
    assert_refused(resp, sgw.site, target)
    # HEAD too
    resp = fetch(sgw, target, method="HEAD", timeout=15)
    assert_refused(resp, sgw.site, target)
    assert resp.body == b""


def test_traversal_specific_statuses(sgw):
    """The statuses static.h documents for the main classes of attack."""
    expect = {
        "/%2e%2e/secret.txt": 403,       # decodes to a ".." segment
        "/..%2fsecret.txt": 403,         # encoded slash
        "/sub/..%5csecret.txt": 403,     # backslash
        "//etc/passwd": 403,             # empty segment
        "/sub/%00": 400,                 # NUL
        "/%zz": 400,                     # bad escape
        "/link_out": 403,                # symlink out of the root
        "/dirlink/secret.txt": 403,      # through a directory symlink out of the root
        "/pfx/secret.txt": 403,          # "www-evil" is not under "www"
        "/.hidden": 403,                 # hidden segment
        "/./index.html": 403,            # dot segment
    }
    got = {t: fetch(sgw, t).status for t in expect}
    assert got == expect


def test_traversal_not_served_even_with_upgrade_header(sgw):
    """An upgrade request for a path that is no route is a 404 from the
    router, not a file (upgrades never reach web_root)."""
    c = sgw.client()
    resp = c.handshake("/page.html")
    harness.assert_http_error(c, 404, resp)
    c = sgw.client()
    resp = c.handshake("/../secret.txt")
    assert resp.status in (400, 403, 404), resp
    assert sgw.site.secret not in resp.raw + resp.body


def test_root_itself_symlinked(gw, tmp_path):
    """web_root given through a symlink: files are served, and the real
    root's parent is still out of reach."""
    site = Site(tmp_path / "s2")
    link = str(tmp_path / "rootlink")
    os.symlink(site.root, link)
    gw.start({"gateway": {"web_root": link}, "route:x": harness.route(harness.refused_addr(), "/ws")})
    assert_file_response(fetch(gw, "/page.html"), site.p("page.html"), "text/html; charset=utf-8")
    for t in ("/../secret.txt", "/link_out", "/dirlink/secret.txt", "/pfx/secret.txt"):
        assert_refused(fetch(gw, t), site, t)


# ---------------------------------------------------------------- precedence


def test_websocket_route_still_upgrades(sgw):
    c = sgw.ws("/ws")
    payload = harness.random_bytes(70000, seed=9)
    c.send(build_frame(OP_BINARY, payload))
    harness.assert_same(c.read_data(len(payload), timeout=30), payload)
    c.send_close(1000)
    c.expect_close(1000)


def test_route_on_root_with_web_root(gw, site, echo):
    """path = / matches every upgrade, while plain GETs on the same paths
    are files: the Upgrade header decides."""
    gw.start({"gateway": {"web_root": site.root}, "route:all": harness.route(echo.addr, "/")})
    assert_file_response(fetch(gw, "/"), site.p("index.html"))
    assert_file_response(fetch(gw, "/app.js"), site.p("app.js"))
    for path in ("/", "/app.js", "/anything?x=1"):
        c = gw.ws(path)
        c.send(build_frame(OP_BINARY, b"hello " + path.encode()))
        assert c.read_data(6 + len(path)) == b"hello " + path.encode()
        c.send_close(1000)
        c.expect_close(1000)


def test_health_and_metrics_take_precedence(sgw):
    resp = fetch(sgw, "/healthz")
    assert resp.status == 200 and resp.body == b"ok\n", resp.wire
    resp = fetch(sgw, "/metrics")
    assert resp.status == 200, resp.raw
    assert b"a FILE named metrics" not in resp.body
    assert b"wsgate_" in resp.body


def test_static_requests_do_not_count_as_sessions(sgw):
    """Serving files leaves no session behind: the metrics show no active
    sessions and the echo route still works afterwards."""
    for _ in range(20):
        assert fetch(sgw, "/page.html").status == 200
    text = fetch(sgw, "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith("wsgate_sessions_active"):
            assert line.rstrip().endswith(" 0"), line
    c = sgw.ws("/ws")
    c.send(build_frame(OP_BINARY, b"still alive"))
    assert c.read_data(11) == b"still alive"


def test_without_web_root_plain_get_is_not_a_file(gw, site, echo):
    """No web_root: a plain GET of a path is not served from anywhere."""
    gw.start({"route:echo": harness.route(echo.addr, "/ws")})
    resp = fetch(gw, "/page.html")
    assert resp.status != 200, resp.raw
    assert b"content of" not in resp.body


def test_web_root_must_exist(gw, tmp_path):
    r = harness.run_wsgate(gw.binary, ["-t", "-c", gw.write_config(
        {"gateway": {"web_root": str(tmp_path / "does-not-exist")},
         "route:x": harness.route("127.0.0.1:1", "/ws")})])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "web_root" in (r.stdout + r.stderr)


# ---------------------------------------------------------------- TLS


def fetch_tls(gw, ctx, target, method="GET", timeout=60.0):
    """fetch() over TLS (python's ssl module): the file goes through wsgate's
    buffered TLS path instead of sendfile."""
    raw = socket.create_connection((gw.host, gw.port), timeout=timeout)
    chunks = []
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(raw_request(method, target))
        while True:
            try:
                b = s.recv(1 << 20)
            except ssl.SSLEOFError:
                break
            if not b:
                break
            chunks.append(b)
    wire = b"".join(chunks)
    idx = wire.find(b"\r\n\r\n")
    assert idx >= 0, "no complete response head for %r: %r" % (target, wire[:300])
    resp = HttpResponse(wire[:idx], wire[idx + 4:])
    resp.wire = wire
    return resp


@pytest.mark.deadline(180)
def test_static_over_tls(gw, site, tmp_path):
    if not shutil.which(os.environ.get("OPENSSL", "openssl")):
        pytest.skip("no openssl command line to make a certificate")
    import tls_helpers
    pki = tls_helpers.Pki(tmp_path / "pki")
    ca = pki.ca("ca", "wsgate static test CA")
    srv = pki.server("srv", ca)
    gw.start(tls_helpers.tls_config(
        gw, {"cert": srv.cert, "key": srv.key},
        {"x": harness.route(harness.refused_addr(), "/ws")},
        gateway={"web_root": site.root}))
    ctx = tls_helpers.client_context(ca)
    data = harness.random_bytes(5 * 1024 * 1024 + 7, seed=77)
    write(site.p("tls.bin"), data)
    resp = fetch_tls(gw, ctx, "/tls.bin")
    assert resp.status == 200 and resp.get("content-length") == str(len(data)), resp.raw
    assert hashlib.sha256(resp.body).digest() == hashlib.sha256(data).digest(), \
        "5 MiB over TLS differs (got %d bytes)" % len(resp.body)
    assert_file_response(fetch_tls(gw, ctx, "/"), site.p("index.html"), "text/html; charset=utf-8")
    head = fetch_tls(gw, ctx, "/app.js", method="HEAD")
    assert head.status == 200 and head.body == b"", head.wire[:300]
    assert head.get("content-type") == "text/javascript; charset=utf-8"
    for t in ("/../secret.txt", "/%2e%2e/secret.txt", "/link_out", "/dirlink/secret.txt"):
        assert_refused(fetch_tls(gw, ctx, t), site, t)
