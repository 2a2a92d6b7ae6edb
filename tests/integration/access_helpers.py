"""access_helpers.py - real components for test_access.py: redis-server on a
free port (no persistence), a silent fake Redis, the python3-dnslib DNS
server of tests/unit/dns_server.py with a zone the test rewrites, tagged
echo servers on a chosen address and port, JWT keys and crypt(3) hashes."""

import ctypes
import json
import os
import socket
import subprocess
import threading
import time

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
DNS_SERVER = os.path.join(HERE, "..", "unit", "dns_server.py")


class Redis:
    """redis-server on 127.0.0.1:port, nothing saved to disk."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.port = harness.free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: self.cli("PING") == "PONG", what="redis-server up")

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            harness.wait_until(lambda: not harness.is_listening(self.port), what="redis down")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port


class SilentRedis:
    """Accepts connections and never answers a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


class Tagged:
    """An echo server on host:port that first sends its tag."""

    def __init__(self, tag, host="127.0.0.1", port=0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.tag = tag
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.sendall(self.tag)
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


class Dns:
    """tests/unit/dns_server.py with a zone the test rewrites."""

    def __init__(self, workdir):
        self.zone_path = os.path.join(str(workdir), "zone.json")
        self.qlog = os.path.join(str(workdir), "queries.log")
        self.set({})
        self.proc = subprocess.Popen(["/usr/bin/python3", DNS_SERVER, self.zone_path, self.qlog],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def set(self, zone):
        tmp = self.zone_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(zone, f)
        os.replace(tmp, self.zone_path)

    def queries(self, name):
        if not os.path.exists(self.qlog):
            return 0
        with open(self.qlog) as f:
            return sum(1 for line in f if line.split()[0] == name)

    def close(self):
        self.proc.kill()
        self.proc.wait()


_libcrypt = ctypes.CDLL("libcrypt.so.1")
_libcrypt.crypt_gensalt.restype = ctypes.c_char_p
_libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
_libcrypt.crypt.restype = ctypes.c_char_p
_libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]


def crypt_hash(password, prefix, cost=None):
    """A crypt(3) hash of password: prefix "$y$" yescrypt, "$6$" sha512-crypt,
    "$2b$" bcrypt (libxcrypt's own salts and default costs, bcrypt at 4
    unless cost is given)."""
    if cost is None:
        cost = 4 if prefix == "$2b$" else 0
    salt = _libcrypt.crypt_gensalt(prefix.encode(), cost, None, 0)
    return _libcrypt.crypt(password.encode(), salt).decode()


def timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t
