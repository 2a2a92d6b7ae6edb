"""tls_helpers.py - helpers for test_tls.py (wss://, mutual TLS, TLS backends).

  * Pki          - a throw-away PKI made with the `openssl` command line in a
                   temporary directory: CAs, server/client certificates, an
                   encrypted key with its password file;
  * contexts     - Python ssl client/server contexts for those files;
  * TlsSocket    - a single-threaded TLS client socket (Python's ssl through
                   ssl.MemoryBIO) that can also chop its TLS bytes into tiny
                   TCP writes or coalesce many records into one write, and
                   reads only when it must; tls_client() puts it under a
                   harness.RawClient;
  * half-open handshakes (a ClientHello and nothing more) for the stall test;
  * a TLS echo backend (harness.Backend with a TLS handler);
  * wss echo with python3-websockets (asyncio API) over a given ssl context;
  * `openssl s_client` runs and access-log parsing.

Everything else comes from harness.py and conftest.py.
"""

import asyncio
import hashlib
import os
import random
import re
import select
import socket
import ssl
import subprocess
import threading
import time

import harness

OPENSSL = os.environ.get("OPENSSL", "openssl")


# ---------------------------------------------------------------- PKI


class CertFiles:
    """A certificate (PEM file), its key (PEM file) and what tests compare."""

    def __init__(self, name, cert, key, cn, serial, password_file=None, ca=None):
        self.name, self.cert, self.key, self.cn, self.serial = name, cert, key, cn, serial
        self.password_file = password_file
        self.ca = ca
        with open(cert) as f:
            pem = f.read()
        first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
        self.der = ssl.PEM_cert_to_DER_cert(first)
        self.sha256 = hashlib.sha256(self.der).hexdigest()

    def __repr__(self):
        return "CertFiles(%s CN=%s serial=%s sha256=%s...)" % (
            self.name, self.cn, self.serial, self.sha256[:16])


class Pki:
    """Keys and certificates made with the openssl CLI under directory."""

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._serial = random.Random().randrange(1 << 40, 1 << 48)

    def path(self, name):
        return os.path.join(self.dir, name)

    def openssl(self, *args, input=None):
        r = subprocess.run([OPENSSL] + [str(a) for a in args], cwd=self.dir, input=input,
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError("openssl %s failed (%d): %s" % (
                " ".join(map(str, args)), r.returncode, r.stderr.decode(errors="replace")))
        return r.stdout

    def next_serial(self):
        self._serial += 1
        return self._serial

    def _newkey(self, keyfile):
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", keyfile)

    def ca(self, name, cn, parent=None):
        """A CA: files NAME.pem, NAME.key; self-signed, or an intermediate
        signed by parent."""
        cert, key = self.path(name + ".pem"), self.path(name + ".key")
        self._newkey(key)
        serial = self.next_serial()
        if parent is None:
            self.openssl("req", "-x509", "-new", "-key", key, "-out", cert, "-days", "3",
                         "-subj", "/O=wsgate tests/CN=%s" % cn, "-set_serial", serial,
                         "-addext", "basicConstraints=critical,CA:TRUE",
                         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        else:
            csr, ext = self.path(name + ".csr"), self.path(name + ".ext")
            self.openssl("req", "-new", "-key", key, "-out", csr,
                         "-subj", "/O=wsgate tests/CN=%s" % cn)
            with open(ext, "w") as f:
                f.write("basicConstraints=critical,CA:TRUE\n"
                        "keyUsage=critical,keyCertSign,cRLSign\n")
            self.openssl("x509", "-req", "-in", csr, "-CA", parent.cert, "-CAkey", parent.key,
                         "-set_serial", serial, "-days", "3", "-extfile", ext, "-out", cert)
        return CertFiles(name, cert, key, cn, serial, ca=parent)

    def issue(self, name, ca, cn, dns=(), ips=(), usage="server", org="wsgate tests",
              password=None):
        """A leaf certificate NAME.pem with key NAME.key signed by ca.
        usage: "server" or "client" (extendedKeyUsage). With password the key
        is written encrypted (AES-256) and NAME.pw holds the password (first
        line, newline-terminated)."""
        cert, key = self.path(name + ".pem"), self.path(name + ".key")
        csr, ext = self.path(name + ".csr"), self.path(name + ".ext")
        self._newkey(key)
        self.openssl("req", "-new", "-key", key, "-out", csr, "-subj", "/O=%s/CN=%s" % (org, cn))
        lines = ["basicConstraints=CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=%s" % ("serverAuth" if usage == "server" else "clientAuth")]
        sans = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        serial = self.next_serial()
        self.openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
                     "-set_serial", serial, "-days", "3", "-extfile", ext, "-out", cert)
        pwfile = None
        if password is not None:
            pwfile = self.path(name + ".pw")
            with open(pwfile, "w") as f:
                f.write(password + "\n")
            enc = self.path(name + ".enc.key")
            self.openssl("pkey", "-in", key, "-aes256", "-passout", "file:" + pwfile, "-out", enc)
            os.replace(enc, key)
            with open(key) as f:
                assert "ENCRYPTED PRIVATE KEY" in f.read(), "key %s is not encrypted" % key
        return CertFiles(name, cert, key, cn, serial, pwfile, ca)

    def server(self, name, ca, cn="localhost", org="wsgate tests", **kw):
        """A server certificate for localhost and 127.0.0.1."""
        return self.issue(name, ca, cn, dns=("localhost",), ips=("127.0.0.1",), org=org, **kw)

    def client(self, name, ca, cn, dns=()):
        return self.issue(name, ca, cn, dns=dns, usage="client")

    def chain(self, cf, name):
        """NAME: cf's certificate followed by its issuer's (a PEM chain)."""
        path = self.path(name)
        with open(path, "w") as out:
            for p in (cf.cert, cf.ca.cert):
                with open(p) as f:
                    out.write(f.read())
        return path

    def combined(self, cf, name):
        """One PEM file holding cf's certificate and then its key."""
        path = self.path(name)
        with open(path, "w") as out:
            for p in (cf.cert, cf.key):
                with open(p) as f:
                    out.write(f.read())
        return path


def copy_files(src, dst):
    """Replace dst's certificate and key files by src's (rename: atomic)."""
    for a, b in ((src.cert, dst.cert), (src.key, dst.key)):
        with open(a, "rb") as f:
            data = f.read()
        tmp = b + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, b)


# ---------------------------------------------------------------- contexts


def client_context(ca=None, cert=None, min_version=None, max_version=None, alpn=None,
                   ciphers=None):
    """A client ssl context verifying the server against ca (CertFiles or
    path; None = no verification), presenting cert (CertFiles) if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        ctx.load_verify_locations(ca.cert if isinstance(ca, CertFiles) else ca)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if ciphers:
        ctx.set_ciphers(ciphers)
    # a TCP close without close_notify reads as EOF, like a plain socket
    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


def server_context(cf):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cf.cert, cf.key)
    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


# ---------------------------------------------------------------- gateway config


def tls_config(gw, tls, routes, gateway=None):
    """Config dict for a gateway whose listener is TLS. tls: the [tls] keys;
    routes: {name: route keys}."""
    g = {"listen": gw.listen + " tls", "handshake_timeout": "2s"}
    g.update(gateway or {})
    cfg = {"gateway": g, "tls": dict(tls)}
    for name, keys in routes.items():
        cfg["route:" + name] = keys
    return cfg


def sighup(gw):
    import signal
    gw.proc.send_signal(signal.SIGHUP)


def log_count(gw, text):
    return gw.stderr_text().count(text)


ACCESS_RE = re.compile(r' access: client=(?P<client>\S+) route=(?P<route>\S+) backend=(?P<backend>\S+)'
                       r' status=(?P<status>\d+) .*? reason="(?P<reason>[^"]*)"'
                       r'(?: client_cert="(?P<client_cert>[^"]*)")?')


def access_records(gw):
    """Parsed text-format access-log lines: list of dicts."""
    out = []
    for line in gw.stderr_text().splitlines():
        m = ACCESS_RE.search(line)
        if m:
            d = m.groupdict()
            d["line"] = line
            out.append(d)
    return out


def access_for(gw, sock_or_port):
    """Access records of the client whose local port is given (or a socket's)."""
    port = sock_or_port if isinstance(sock_or_port, int) else sock_or_port.getsockname()[1]
    return [r for r in access_records(gw) if r["client"].endswith(":%d" % port)]


def wsgate_fds(gw):
    return len(os.listdir("/proc/%d/fd" % gw.proc.pid))


# ---------------------------------------------------------------- TLS RawClient


def tls_client(gw, ctx, server_hostname="localhost", timeout=harness.DEFAULT_TIMEOUT,
               **kw):
    """A harness.RawClient connected to gw over TLS (handshake done), on a
    single-threaded MemoryBIO socket (TlsSocket: whole writes unless kw says
    otherwise). Closed with the gateway's clients. Python's SSLSocket is not
    used here: RawClient.send_in_background would read and write one SSL
    object from two threads."""
    sock = TlsSocket(gw.host, gw.port, ctx, server_hostname=server_hostname, timeout=timeout, **kw)
    c = harness.RawClient.__new__(harness.RawClient)
    c.sock, c.buf, c.eof, c.key, c.response, c.controls = sock, bytearray(), False, None, None, []
    gw.clients.append(c)
    return c


def tls_ws(gw, ctx, path="/", server_hostname="localhost", **kw):
    """tls_client() that has completed a successful upgrade."""
    c = tls_client(gw, ctx, server_hostname)
    c.upgrade(path, **kw)
    return c


def echo_check(c, data, chunk_frames=None):
    """Send data as binary frames (one, or of chunk_frames bytes each) on a
    tls_client() and read the same bytes back (its sendall keeps what
    arrives meanwhile, so one thread suffices)."""
    if chunk_frames:
        frames = b"".join(harness.build_frame(harness.OP_BINARY, data[i:i + chunk_frames])
                          for i in range(0, len(data), chunk_frames))
    else:
        frames = harness.build_frame(harness.OP_BINARY, data)
    c.send(frames)
    got = c.read_data(len(data), timeout=60)
    harness.assert_same(got, data, "echoed bytes")


def tls_attempt(gw, ctx, request=None, server_hostname="localhost", timeout=10):
    """Try a TLS connection (and, if the handshake passes, an upgrade
    request). Returns (outcome, detail): outcome is "handshake-error"
    (ssl error during the handshake), "closed" (handshake passed on the
    client side, then an alert/EOF/reset before any HTTP byte) or "http"
    (detail = the HttpResponse)."""
    s = socket.create_connection((gw.host, gw.port), timeout=timeout)
    try:
        try:
            ss = ctx.wrap_socket(s, server_hostname=server_hostname)
        except (ssl.SSLError, ConnectionError) as e:
            return "handshake-error", e
        c = harness.RawClient.__new__(harness.RawClient)
        c.sock, c.buf, c.eof, c.key, c.response, c.controls = ss, bytearray(), False, None, None, []
        try:
            c.send(request or harness.make_request("/"))
            resp = c.read_http_response(timeout=timeout)
        except (ssl.SSLError, ConnectionError, harness.ConnectionClosed) as e:
            return "closed", e
        return "http", resp
    finally:
        s.close()


# ---------------------------------------------------------------- chopped TLS


class TlsSocket:
    """A TLS client over a plain TCP socket through ssl.MemoryBIO, usable as
    a RawClient socket (sendall, recv, settimeout, setsockopt, close).

    mode "whole": TLS bytes are written as they come. "chopped": 1..64-byte
    TCP writes for the first `tiny_bytes` bytes (handshake included), then
    random 1..1500-byte writes. "coalesce": like whole, and send_records()
    puts many TLS records into one TCP write.
    Reading happens only when TCP cannot take more (or when asked), so
    wsgate meets a client that stops reading."""

    def __init__(self, host, port, ctx, server_hostname="localhost", mode="whole", seed=1,
                 tiny_bytes=32768, timeout=harness.DEFAULT_TIMEOUT):
        assert mode in ("whole", "chopped", "coalesce"), mode
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.rnd = random.Random(seed)
        self.tiny_left = tiny_bytes
        self.mode = mode
        self.timeout = timeout
        self.plain = bytearray()   # decrypted, not yet returned by recv()
        self.pending = bytearray()  # TLS bytes not yet on TCP
        self.tcp_eof = False
        self.tcp_writes = 0
        try:
            self._handshake()
        except BaseException:
            self.sock.close()
            raise

    # -- plumbing
    def _chunk(self):
        if self.mode != "chopped":
            return len(self.pending)
        if self.tiny_left > 0:
            n = self.rnd.randint(1, 64)
            self.tiny_left -= n
            return n
        return self.rnd.randint(1, 1500)

    def _collect(self):
        data = self.out.read()
        if data:
            self.pending += data

    def _read_tcp(self, wait):
        """Wait up to `wait` s for TCP bytes, feed them to OpenSSL."""
        if self.tcp_eof:
            return False
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.tcp_eof = True
            self.inc.write_eof()
            return True
        self.inc.write(data)
        return True

    def _decrypt(self):
        """Move decrypted bytes from OpenSSL into self.plain; True on TLS EOF."""
        while True:
            try:
                data = self.obj.read(1 << 18)
            except ssl.SSLWantReadError:
                return False
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return True
            if not data:
                return True
            self.plain += data

    def _flush(self, deadline):
        """Write all pending TLS bytes in chopped TCP writes; read (and
        decrypt) meanwhile only when TCP is full."""
        while self.pending:
            if time.monotonic() > deadline:
                raise TimeoutError("could not write %d TLS bytes in time" % len(self.pending))
            _, w, _ = select.select([], [self.sock], [], 0.05)
            if not w:
                if self._read_tcp(0):
                    self._decrypt()
                continue
            n = min(len(self.pending), self._chunk())
            try:
                k = self.sock.send(self.pending[:n])
            except BlockingIOError:
                continue
            self.tcp_writes += 1
            del self.pending[:k]

    def _handshake(self):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.obj.do_handshake()
                self._collect()
                self._flush(deadline)
                return
            except ssl.SSLWantReadError:
                self._collect()
                self._flush(deadline)
                if time.monotonic() > deadline:
                    raise TimeoutError("TLS handshake did not finish")
                if not self._read_tcp(0.2) and self.tcp_eof:
                    raise ConnectionResetError("EOF during the TLS handshake")

    # -- the socket interface RawClient uses
    def settimeout(self, t):
        self.timeout = t if t is not None else 3600

    def sendall(self, data):
        self.obj.write(bytes(data))
        self._collect()
        self._flush(time.monotonic() + max(self.timeout, 30))

    def send_records(self, pieces):
        """Each piece becomes its own TLS record(s); all of them go to TCP
        together (in coalesce mode: one write, many records per segment)."""
        for p in pieces:
            self.obj.write(bytes(p))
            self._collect()
        self._flush(time.monotonic() + max(self.timeout, 30))

    def recv(self, n):
        deadline = time.monotonic() + self.timeout
        while True:
            eof = self._decrypt()
            if self.plain:
                out = bytes(self.plain[:n])
                del self.plain[:n]
                return out
            if eof or self.tcp_eof:
                return b""
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            self._read_tcp(min(left, 0.2))

    def setsockopt(self, *a):
        self.sock.setsockopt(*a)

    def getsockname(self):
        return self.sock.getsockname()

    def version(self):
        return self.obj.version()

    def getpeercert(self, binary_form=False):
        return self.obj.getpeercert(binary_form)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- stalled handshakes


class StalledHandshake:
    """A TCP connection that sent a ClientHello (or only its first `prefix`
    bytes) and then does nothing but wait for wsgate to close it."""

    def __init__(self, host, port, ctx, prefix=None):
        self.sock = socket.create_connection((host, port), timeout=10)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        try:
            obj.do_handshake()
            raise AssertionError("a TLS handshake cannot finish without the server")
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        assert hello[:1] == b"\x16" and len(hello) > 100, "not a ClientHello: %r" % hello[:16]
        self.hello_len = len(hello)
        self.sock.sendall(hello if prefix is None else hello[:prefix])
        self.sent_at = time.monotonic()
        self.sock.setblocking(False)
        self.received = 0
        self.closed_at = None
        self.how = None

    def poll(self):
        """Read what is there; note the close. True once closed."""
        if self.closed_at is not None:
            return True
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.closed_at, self.how = time.monotonic(), "EOF"
                    return True
                self.received += len(data)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            self.closed_at, self.how = time.monotonic(), "reset"
            return True

    def close(self):
        self.sock.close()


def watch_until_closed(stalls, timeout):
    """Poll stalled connections until all closed or timeout. Runs in a
    thread (returns the thread; .done is set at the end)."""
    done = threading.Event()

    def run():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_ = [s for s in stalls if s.closed_at is None]
            if not open_:
                break
            r, _, _ = select.select([s.sock for s in open_], [], [], 0.1)
            for s in open_:
                if s.sock in r:
                    s.poll()
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.done = done
    t.start()
    return t


# ---------------------------------------------------------------- TLS backend


class TlsEcho:
    """What a TLS echo backend saw: SNI names and handshake errors."""

    def __init__(self, cf):
        self.cf = cf
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cf.cert, cf.key)
        # a TCP close without close_notify must show (Debian's Python sets
        # OP_IGNORE_UNEXPECTED_EOF by default)
        self.ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        self.sni = []
        self.errors = []
        self.ends = []      # per session: "close_notify", "truncated" or an error
        self.sessions = 0
        self.lock = threading.Lock()
        self.ctx.sni_callback = self._sni

    def _sni(self, sslobj, name, ctx):
        with self.lock:
            self.sni.append(name)
        return None

    def handler(self, b, rec):
        try:
            rec.sock.settimeout(30)
            ss = self.ctx.wrap_socket(rec.sock, server_side=True, suppress_ragged_eofs=False)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.errors.append(repr(e))
            return
        rec.sock = ss
        with self.lock:
            self.sessions += 1
        end = "close_notify"
        try:
            while True:
                data = ss.recv(1 << 16)
                if not data:
                    break
                rec.received += len(data)
                ss.sendall(data)
        except (ssl.SSLError, OSError) as e:
            end = "truncated" if ("UNEXPECTED_EOF" in str(e) or isinstance(e, ssl.SSLEOFError)) \
                else repr(e)
        finally:
            with self.lock:
                self.ends.append(end)
            ss.close()


def tls_echo_backend(backends, cf):
    """A threaded echo backend speaking TLS with certificate cf. Returns
    (backend, info)."""
    info = TlsEcho(cf)
    b = backends.custom(info.handler)
    return b, info


# ---------------------------------------------------------------- websockets


async def _wss_echo(url, messages, ssl_ctx, server_hostname, io_timeout):
    import websockets

    expected = sum(len(m) for m in messages)
    got = bytearray()
    async with websockets.connect(url, ssl=ssl_ctx, server_hostname=server_hostname,
                                  compression=None, max_size=None, ping_interval=None,
                                  open_timeout=30, close_timeout=10) as ws:
        tls = ws.transport.get_extra_info("ssl_object")
        info = {"version": tls.version(), "cipher": tls.cipher()[0],
                "alpn": tls.selected_alpn_protocol(),
                "peer_der": tls.getpeercert(binary_form=True)}

        async def reader():
            while len(got) < expected:
                msg = await ws.recv()
                assert isinstance(msg, bytes), "expected binary frames, got text"
                got.extend(msg)

        task = asyncio.ensure_future(reader())
        for m in messages:
            await ws.send(m)
        await asyncio.wait_for(task, io_timeout)
    return bytes(got), info


def wss_echo(gw, messages, ssl_ctx, path="/", server_hostname="localhost", io_timeout=60):
    """Echo messages (bytes) through wss:// with python3-websockets.
    Returns (echoed bytes, TLS info dict)."""
    url = "wss://%s%s" % (gw.listen, path)
    return asyncio.run(_wss_echo(url, messages, ssl_ctx, server_hostname, io_timeout))


# ---------------------------------------------------------------- openssl s_client


def s_client(gw, *args, stdin=b"", timeout=20):
    """Run `openssl s_client -connect gw ARGS` with stdin; returns
    (returncode, stdout+stderr text)."""
    argv = [OPENSSL, "s_client", "-connect", "%s:%d" % (gw.host, gw.port),
            "-servername", "localhost"] + list(args)
    r = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def peer_der(gw, ctx, server_hostname="localhost"):
    """DER of the certificate wsgate presents to a new client."""
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=server_hostname) as ss:
            return ss.getpeercert(binary_form=True)
