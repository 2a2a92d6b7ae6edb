#!/usr/bin/python3
"""run.py - the runner behind `make bench`.

Starts one echo backend and, in front of it, haproxy (mode tcp, nbthread 2),
websockify (the Debian package; it forks one process per connection) and
wsgate (workers = 0), then drives each with the load generator, side by side:

  direct      raw TCP straight to the echo backend (the machine's limit)
  haproxy     raw TCP through haproxy: a relay with no WebSocket framing
  websockify  WebSocket through websockify
  wsgate      WebSocket through wsgate

Scenarios: single-connection 64 KiB bulk echo; 64-byte round-trip latency;
100 connections x 4 KiB bulk echo with the relay's CPU seconds per GB; churn
(connect, upgrade, one echo, close) with 16 concurrent workers; 9,000 idle
connections held (wsgate over WebSocket, haproxy over raw TCP) with the time
to open them and the relay's RSS growth per connection; wss bulk echo (one
connection x 64 KiB and 100 x 4 KiB) through wsgate's TLS listener, each
next to the same over plain WebSocket in the same run, with wsgate's CPU
seconds per GB (issue 3; the self-signed EC P-256 certificate is made with
the openssl command for each run), and beside it haproxy terminating TLS
(`mode tcp`, `bind ... ssl crt`, same certificate; both TLS 1.3 only with
TLS_AES_256_GCM_SHA384): wss1, wss100, wsschurn (churn with full
handshakes), wssresume (churn resuming each worker's last session) and
wssidle (BENCH_IDLE_CONNS idle connections held over TLS, beside the same
over plain WebSocket: the relay's RSS growth per connection);
loaded: the 64-byte echo latency while 100 other connections stream bulk
data through the same relay (direct, haproxy, wsgate; issue 16). Prints a
table, the
ratios wsgate/haproxy and wsgate/websockify, and how the numbers compare with
the goals of issue 4. The numbers are information, never assertions: the exit
status is 1 only when a tool failed (a server did not start or died, or a
connection saw corrupted bytes).

usage: run.py [--wsgate BIN] [--loadgen BIN] [--echo BIN]
       (defaults: $WSGATE, $LOADGEN, $ECHO_SERVER, as `make bench` sets them)

Environment (all optional):
  BENCH_SECONDS        measured seconds per scenario and target (5)
  BENCH_WARMUP         unmeasured seconds before each measurement (0.5)
  BENCH_SAMPLES        latency round trips recorded (20000)
  BENCH_LATENCY_MAX    latency: seconds at most per target (10)
  BENCH_BULK_CONNS     connections in the many-connection bulk case (100)
  BENCH_CHURN          concurrent churn workers (16)
  BENCH_IDLE_CONNS     idle connections (9000)
  BENCH_IDLE_HOLD      seconds the idle connections are held (1)
  BENCH_REPEAT         rounds per scenario, targets taking turns in an order
                       that rotates each round; the table shows each target's
                       median round (3)
  BENCH_SCENARIOS      comma list of bulk1,latency,bulk100,churn,idle,wss1,
                       wss100,wsschurn,wssresume,wssidle,loaded,
                       access (churn: Redis token, ES256 JWT, plain),
                       routes (churn: 1,000 host+path routes vs 1 route),
                       edge (churn and latency through haproxy into a plain
                       listener, a proxy listener, and one with per-IP limits)
                       (all; wss* measure haproxy's and wsgate's TLS listeners)
  BENCH_TARGETS        comma list of direct,haproxy,websockify,wsgate (all)
  BENCH_WSGATE_LOG     wsgate log_level (warn: no access-log line per session,
                       as haproxy here logs nothing)
  BENCH_OUT            file for all results as JSON (tests/bench/results.json); the
                       table is also drawn next to it as an SVG chart (.svg) by
                       chart.py when gnuplot is installed (Debian: gnuplot-nox)
  BENCH_BASELINE       another wsgate binary (an older build) measured as target
                       "baseline" beside "wsgate" in the same rounds (plain
                       WebSocket scenarios): before/after in one run
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import chart  # tests/bench/chart.py: the table as an SVG chart

TARGETS = ["direct", "haproxy", "websockify", "wsgate"]
if os.environ.get("BENCH_BASELINE"):
    TARGETS.append("baseline")
SCENARIOS = ["bulk1", "latency", "bulk100", "churn", "idle", "wss1", "wss100", "wsschurn",
             "wssresume", "wssidle", "loaded", "access", "routes", "edge"]
WSS_SCENARIOS = ("wss1", "wss100", "wsschurn", "wssresume", "wssidle")
# TLS on both sides of the comparison (what issue 16 asks for)
TLS_SUITE = "TLS_AES_256_GCM_SHA384"
# routes: the Host every churn connection sends, served by the echo route.
ROUTES_HOST = "echo.bench.test"
ROUTES_N = 1000
# The result that orders the rounds of a scenario when BENCH_REPEAT > 1.
MEDIAN_KEY = {"bulk1": "mb_per_s", "latency": "p50_us", "bulk100": "mb_per_s",
              "churn": "per_s", "idle": "open_s", "wss1": "mb_per_s", "wss100": "mb_per_s",
              "wsschurn": "per_s", "wssresume": "per_s", "loaded": "p99_us", "access": "per_s",
              "routes": "per_s", "edge": "per_s", "edge-latency": "p50_us"}


def env_num(name, default):
    """The number in environment variable name, or default."""
    v = os.environ.get(name, "")
    return type(default)(v) if v else default


def env_list(name, allowed):
    """The comma list in environment variable name (default: all allowed)."""
    v = os.environ.get(name, "")
    items = [x.strip() for x in v.split(",") if x.strip()] if v else list(allowed)
    bad = [x for x in items if x not in allowed]
    if bad:
        sys.exit(f"run.py: {name}: unknown {', '.join(bad)} (known: {', '.join(allowed)})")
    return items


def haproxy_config(port, server, tls_frontend=""):
    """haproxy in mode tcp on 127.0.0.1:port in front of one server line
    (and, given, a TLS frontend to the same backend). haproxy needs two
    descriptors per connection and refuses to start when maxconn needs more
    than the hard limit allows."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    maxconn = 10000 if hard == resource.RLIM_INFINITY else min(10000, (hard - 200) // 2)
    return f"""global
    nbthread 2
    maxconn {maxconn}
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend relay
    bind 127.0.0.1:{port}
    default_backend echo
{tls_frontend}backend echo
    {server}
"""


def cpu_busy_s():
    """CPU seconds all processes of the machine have used (from /proc/stat),
    and this runner's own plus its waited-for children's."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime
    return busy / os.sysconf("SC_CLK_TCK"), ours


def other_cores(start, wall0):
    """Cores kept busy on average by processes outside this run since start."""
    (busy0, ours0), (busy1, ours1) = start, cpu_busy_s()
    return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (time.monotonic() - wall0)


def child_pids(pid):
    """Process ids whose parent is pid (from /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # the command may contain spaces: the parent follows ") S "
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what, timeout=10.0):
    """Wait until 127.0.0.1:port accepts connections; fail if proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def tail(path, lines=15):
    """The last lines of a log file, for error reports."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Server:
    """One process under test (or the echo backend), with its log file."""

    def __init__(self, name, argv, port, log, proto, path="/", tls_port=None):
        self.name, self.argv, self.port, self.log = name, argv, port, log
        self.proto, self.path, self.tls_port = proto, path, tls_port
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_listening(self.port, self.proc, self.name)
            if self.tls_port:
                wait_listening(self.tls_port, self.proc, f"{self.name} (tls listener)")
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}; log tail:\n{tail(self.log)}") from None

    def check(self):
        """Raise if the process died (a crash under load is a finding)."""
        if self.proc and self.proc.poll() is not None:
            rc = self.proc.returncode
            how = f"signal {-rc}" if rc < 0 else f"status {rc}"
            raise RuntimeError(f"{self.name} died ({how}); log tail:\n{tail(self.log)}")

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL if self.name == "websockify" else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self.logf.close()


class Bench:
    def __init__(self, args):
        self.args = args
        self.seconds = env_num("BENCH_SECONDS", 5.0)
        self.warmup = env_num("BENCH_WARMUP", 0.5)
        self.samples = env_num("BENCH_SAMPLES", 20000)
        self.latency_max = env_num("BENCH_LATENCY_MAX", 10.0)
        self.bulk_conns = env_num("BENCH_BULK_CONNS", 100)
        self.churn = env_num("BENCH_CHURN", 16)
        self.idle_conns = env_num("BENCH_IDLE_CONNS", 9000)
        self.idle_hold = env_num("BENCH_IDLE_HOLD", 1.0)
        self.repeat = max(1, env_num("BENCH_REPEAT", 3))
        self.scenarios = env_list("BENCH_SCENARIOS", SCENARIOS)
        self.targets = env_list("BENCH_TARGETS", TARGETS)
        self.log_level = os.environ.get("BENCH_WSGATE_LOG", "warn")
        self.out = os.environ.get("BENCH_OUT", os.path.join("tests", "bench", "results.json"))
        self.dir = tempfile.mkdtemp(prefix="wsgate-bench.")
        self.rounds = {}  # (scenario, target) -> [loadgen JSON of each round]
        self.results = {}  # (scenario, target) -> the median round
        self.failures = []
        self.servers = {}
        self.cert = None  # (cert, key) PEM files for wsgate's tls listener

    # ---- servers ----------------------------------------------------------
    def start_echo(self):
        log = os.path.join(self.dir, "echo.log")
        self.echo = subprocess.Popen([self.args.echo, "127.0.0.1:0"], stdout=subprocess.PIPE,
                                     stderr=open(log, "wb"), stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        line = self.echo.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "port":
            raise RuntimeError(f"echo backend did not start: {tail(log)}")
        self.echo_port = int(line[1])

    def make_server(self, name):
        port = free_port()
        log = os.path.join(self.dir, f"{name}.log")
        backend = f"127.0.0.1:{self.echo_port}"
        if name == "direct":
            return Server(name, None, self.echo_port, log, "tcp")
        if name == "haproxy":
            cfg = os.path.join(self.dir, "haproxy.cfg")
            tls_port = free_port() if self.cert else None
            while tls_port == port:
                tls_port = free_port()
            tls_frontend = f"""frontend relay_tls
    bind 127.0.0.1:{tls_port} ssl crt {self.cert[2]} ssl-min-ver TLSv1.3 ciphersuites {TLS_SUITE}
    default_backend echo
""" if tls_port else ""
            with open(cfg, "w") as f:
                f.write(haproxy_config(port, f"server echo {backend}", tls_frontend))
            return Server(name, ["haproxy", "-db", "-f", cfg], port, log, "tcp",
                          tls_port=tls_port)
        if name == "websockify":
            return Server(name, ["websockify", f"127.0.0.1:{port}", backend], port, log, "ws")
        cfg = os.path.join(self.dir, f"{name}.ini")
        binary = os.environ["BENCH_BASELINE"] if name == "baseline" else self.args.wsgate
        tls_port = free_port() if self.cert else None
        while tls_port == port:
            tls_port = free_port()
        tls_listen = f"listen = 127.0.0.1:{tls_port} tls\n" if tls_port else ""
        tls_section = (f"[tls]\ncert = {self.cert[0]}\nkey = {self.cert[1]}\nmin_version = 1.3\n"
                       f"ciphersuites = {TLS_SUITE}\n\n" if tls_port else "")
        with open(cfg, "w") as f:
            f.write(f"""[gateway]
listen = 127.0.0.1:{port}
{tls_listen}workers = 0
max_connections = 10000
log_level = {self.log_level}

{tls_section}[route:echo]
path = /echo
backend = {backend}
""")
        return Server(name, [binary, "-c", cfg], port, log, "ws", "/echo", tls_port)

    def make_cert(self):
        """A self-signed EC P-256 certificate and key for wsgate's tls listener
        (self.cert stays None, and the wss scenarios are skipped, on failure)."""
        cert, key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                "-keyout", key, "-out", cert]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.failures.append(f"wss: cannot make a certificate: {e}")
            return
        if p.returncode != 0:
            self.failures.append(f"wss: openssl req failed: {p.stderr.strip()[-300:]}")
            return
        combined = os.path.join(self.dir, "combined.pem")  # haproxy's crt: both in one
        with open(combined, "w") as out:
            for path in (cert, key):
                with open(path) as f:
                    out.write(f.read())
        self.cert = (cert, key, combined)

    def start(self, name):
        srv = self.make_server(name)
        if srv.argv:
            srv.start()
        self.servers[name] = srv
        return srv

    def restart(self, name):
        """A fresh process, so memory measurements start from a clean one."""
        self.servers[name].stop()
        return self.start(name)

    # ---- load -------------------------------------------------------------
    def loadgen(self, scenario, target, extra, timeout, tls=False, key=None):
        """Run the load generator against target (with tls: its tls listener);
        the result is kept under (scenario, key or target)."""
        srv = self.servers[target]
        key = key or target
        argv = [self.args.loadgen, "-p", srv.proto, "-u", srv.path, "-l", key] + extra
        if tls:
            argv += ["--tls", "--sni", "localhost"]
        if srv.proc:
            argv += ["-P", str(srv.proc.pid)]
        argv.append(f"127.0.0.1:{srv.tls_port if tls else srv.port}")
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.failures.append(f"{scenario}/{target}: loadgen did not finish in {timeout:.0f} s")
            srv.check()
            return None
        sys.stderr.write(p.stderr)
        srv.check()
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{") and '"mode"' in ln]
        if not lines:
            self.failures.append(f"{scenario}/{target}: loadgen failed: {p.stderr.strip()}")
            return None
        r = json.loads(lines[-1])
        if r["verify_failures"]:
            self.failures.append(f"{scenario}/{key}: {r['verify_failures']} connections got "
                                 f"corrupted echo bytes ({r['first_error']})")
        elif r["errors"]:
            self.failures.append(f"{scenario}/{key}: {r['errors']} connection errors, first: "
                                 f"{r['first_error']}")
        self.rounds.setdefault((scenario, key), []).append(r)
        return r

    def run_scenario(self, scenario):
        s, w = self.seconds, self.warmup
        common = ["-d", str(s), "-W", str(w)]
        budget = s + w + 60
        bulk1 = ["-m", "bulk", "-c", "1", "-s", "65536", "-w", "4"] + common
        bulk100 = ["-m", "bulk", "-c", str(self.bulk_conns), "-s", "4096", "-w", "4"] + common
        if scenario in WSS_SCENARIOS:
            # haproxy's and wsgate's tls listeners; bulk also wsgate over
            # plain WebSocket in the same run for comparison.
            churn = ["-m", "churn", "-c", str(self.churn), "-s", "64"] + common
            idle = ["-m", "idle", "-c", str(self.idle_conns), "-H", str(self.idle_hold),
                    "-C", "256"]
            extra = {"wss1": bulk1, "wss100": bulk100, "wsschurn": churn,
                     "wssresume": churn + ["--resume"], "wssidle": idle}[scenario]
            runs = [(t, key, True) for t, key in (("haproxy", "haproxy-tls"),
                                                   ("wsgate", "wsgate-wss"))
                    if t in self.targets and self.servers[t].tls_port]
            if "wsgate" in self.targets and scenario in ("wss1", "wss100", "wssidle"):
                runs.append(("wsgate", "wsgate-ws", False))
            for round_no in range(self.repeat):
                k = round_no % len(runs) if runs else 0
                for target, key, tls in runs[k:] + runs[:k]:
                    if scenario == "wssidle":
                        self.restart(target)
                    self.loadgen(scenario, target, extra, budget, tls=tls, key=key)
            self.pick_medians(scenario)
            return
        if scenario == "loaded":
            self.run_loaded(bulk100, budget + self.latency_max)
            return
        if scenario == "access":
            self.run_access(["-m", "churn", "-c", str(self.churn), "-s", "64"] + common, budget)
            return
        if scenario == "edge":
            self.run_edge(["-m", "churn", "-c", str(self.churn), "-s", "64"] + common,
                          ["-m", "latency", "-c", "1", "-s", "64", "-n", str(self.samples),
                           "-d", str(self.latency_max), "-W", str(w)], budget + self.latency_max)
            return
        if scenario == "routes":
            self.run_routes(["-m", "churn", "-c", str(self.churn), "-s", "64", "--host",
                             ROUTES_HOST] + common, budget)
            return
        plan = {
            "bulk1": (bulk1, TARGETS),
            "latency": (["-m", "latency", "-c", "1", "-s", "64", "-n", str(self.samples),
                         "-d", str(self.latency_max), "-W", str(w)], TARGETS),
            "bulk100": (bulk100, TARGETS),
            "churn": (["-m", "churn", "-c", str(self.churn), "-s", "64"] + common, TARGETS),
            "idle": (["-m", "idle", "-c", str(self.idle_conns), "-H", str(self.idle_hold),
                      "-C", "256"], ["haproxy", "wsgate", "baseline"]),
        }
        extra, targets = plan[scenario]
        if scenario == "latency":
            budget += self.latency_max
        targets = [t for t in targets if t in self.targets]
        for round_no in range(self.repeat):
            # Targets take turns in a rotating order, so that none always
            # runs right after the same other one.
            k = round_no % len(targets) if targets else 0
            for target in targets[k:] + targets[:k]:
                if scenario == "idle":
                    self.restart(target)
                self.loadgen(scenario, target, extra, budget)
                if target == "websockify":
                    self.wait_children("websockify")
        self.pick_medians(scenario)

    def run_loaded(self, bulk, budget):
        """Latency of a 64-byte echo on one connection while bulk (100
        connections streaming 4 KiB messages) runs through the same relay."""
        targets = [t for t in ("direct", "haproxy", "wsgate") if t in self.targets]
        w = self.warmup
        latency = ["-m", "latency", "-c", "1", "-s", "64", "-n", str(self.samples),
                   "-d", str(self.latency_max), "-W", str(w)]
        for round_no in range(self.repeat):
            k = round_no % len(targets) if targets else 0
            for target in targets[k:] + targets[:k]:
                srv = self.servers[target]
                # the stream outlasts the latency run; a signal ends it
                argv = [self.args.loadgen, "-p", srv.proto, "-u", srv.path, "-l",
                        f"{target}-bulk"] + bulk
                i = argv.index("-d")
                argv[i + 1] = str(self.latency_max + 3 * w + 30)
                argv.append(f"127.0.0.1:{srv.port}")
                stream = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True)
                time.sleep(2 * w + 0.5)  # connections open and streaming
                self.loadgen("loaded", target, latency, budget)
                stream.send_signal(signal.SIGINT)
                try:
                    out, err = stream.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    stream.kill()
                    out, err = stream.communicate()
                lines = [ln for ln in out.splitlines() if ln.startswith("{")]
                if stream.returncode not in (0, None) or not lines:
                    self.failures.append(f"loaded/{target}: the bulk stream failed: "
                                         f"{err.strip()[-300:]}")
                else:
                    r = json.loads(lines[-1])
                    self.rounds.setdefault(("loaded-bulk", target), []).append(r)
        self.pick_medians("loaded")

    def wait_children(self, name, timeout=20.0):
        """Wait until the per-connection processes name forked have exited:
        they would otherwise take CPU from the next measurement."""
        srv = self.servers.get(name)
        if not srv or not srv.proc:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child_pids(srv.proc.pid):
                return
            time.sleep(0.1)
        print(f"warning: {name} still has {len(child_pids(srv.proc.pid))} children after "
              f"{timeout:.0f} s", flush=True)

    def pick_medians(self, scenario):
        """Keep each target's median round of scenario in self.results."""
        for key, runs in self.rounds.items():
            if key[0] == scenario or key[0] == scenario + "-bulk":
                runs = sorted(runs, key=lambda r: r.get(MEDIAN_KEY.get(key[0], "mb_per_s"), 0)
                              or 0)
                self.results[key] = runs[len(runs) // 2]

    def run(self):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.print_machine()
        cpu0, wall0 = cpu_busy_s(), time.monotonic()
        self.start_echo()
        if any(t in self.targets for t in ("haproxy", "wsgate")) and \
                any(sc in WSS_SCENARIOS for sc in self.scenarios):
            self.make_cert()
        try:
            for t in list(self.targets):
                try:
                    self.start(t)
                except (RuntimeError, OSError) as e:
                    self.failures.append(f"{t} did not start: {e}")
                    self.targets.remove(t)
            for sc in self.scenarios:
                self.run_scenario(sc)
        except RuntimeError as e:
            self.failures.append(str(e))
        finally:
            for srv in self.servers.values():
                try:
                    srv.stop()
                except OSError:
                    pass
            os.killpg(self.echo.pid, signal.SIGTERM)
            self.echo.wait()
        self.other_cores = other_cores(cpu0, wall0)
        self.report()
        self.save()
        shutil.rmtree(self.dir, ignore_errors=True)
        return 1 if self.failures and any("wsgate" in f or "died" in f or "corrupted" in f
                                          for f in self.failures) else 0

    # ---- access: churn through a Redis token route, an ES256 JWT route and
    # a plain route of one wsgate, in one run ------------------------------
    def start_access(self):
        """redis-server (no persistence) with one token, an ES256 key and a
        token minted with python3-jwt, and a wsgate with three routes."""
        import jwt
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        rport = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        wait_listening(rport, self.redis, "redis-server")
        token = "bench-" + os.urandom(8).hex()
        subprocess.run(["redis-cli", "-p", str(rport), "SET", "ws:" + token,
                        f"127.0.0.1:{self.echo_port}"], check=True, capture_output=True)
        priv = ec.generate_private_key(ec.SECP256R1())
        key = os.path.join(self.dir, "jwt.pem")
        with open(key, "wb") as f:
            f.write(priv.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        jwt_token = jwt.encode({"host": "127.0.0.1", "port": self.echo_port,
                                "exp": int(time.time()) + 86400}, priv, algorithm="ES256")
        port = free_port()
        cfg = os.path.join(self.dir, "wsgate-access.ini")
        with open(cfg, "w") as f:
            f.write(f"""[gateway]
listen = 127.0.0.1:{port}
workers = 0
max_connections = 10000
log_level = {self.log_level}

[route:echo]
path = /echo
backend = 127.0.0.1:{self.echo_port}

[route:redis]
path = /redis
token_redis = redis://127.0.0.1:{rport}/0
token_redis_prefix = ws:

[route:jwt]
path = /jwt
token_jwt_key = {key}
token_jwt_algorithms = ES256
""")
        srv = Server("wsgate-access", [self.args.wsgate, "-c", cfg], port,
                     os.path.join(self.dir, "wsgate-access.log"), "ws")
        srv.start()
        self.servers["wsgate-access"] = srv
        self.access_paths = {"access-plain": "/echo", "access-redis": "/redis?token=" + token,
                             "access-jwt": "/jwt?token=" + jwt_token}

    def run_access(self, churn, budget):
        if "wsgate" not in self.targets:
            return
        try:
            self.start_access()
        except (RuntimeError, OSError, ImportError, subprocess.CalledProcessError) as e:
            self.failures.append(f"access: cannot start: {e}")
            return
        srv = self.servers["wsgate-access"]
        keys = list(self.access_paths)
        for round_no in range(self.repeat):
            k = round_no % len(keys)
            for key in keys[k:] + keys[:k]:
                srv.path = self.access_paths[key]
                self.loadgen("access", "wsgate-access", churn, budget, key=key)
        self.pick_medians("access")
        srv.stop()
        del self.servers["wsgate-access"]
        os.killpg(self.redis.pid, signal.SIGTERM)
        self.redis.wait()

    def report_access(self):
        plain = self.get("access", "access-plain", "per_s")
        if plain is None:
            return
        print(f"\naccess churn ({self.churn} concurrent, one wsgate, conn/s; goals: Redis >= "
              "70%, JWT >= 60% of plain)")
        for key, label, goal in (("access-plain", "plain route", None),
                                 ("access-redis", "Redis token route", 0.70),
                                 ("access-jwt", "ES256 JWT route", 0.60)):
            v = self.get("access", key, "per_s")
            if v is None:
                print(f"  {label:20s} -")
                continue
            share = v / plain
            mark = "" if goal is None else (" ok" if share >= goal else " BELOW GOAL")
            print(f"  {label:20s} {v:8.0f}  {share * 100:5.1f}% of plain{mark}")

    # ---- routes: churn through a wsgate with 1,000 host+path routes (the
    # echo route last in the file, chosen by its Host) and through one with
    # that route alone, in one run ---------------------------------------
    def routes_config(self, n):
        """INI text of a wsgate whose n-th route is the echo route: the n - 1
        others (every tenth a wildcard, every third on the same /echo path, so
        that only the Host tells them apart) name a backend never dialled."""
        lines = []
        for i in range(n - 1):
            host = f"*.w{i}.example.org" if i % 10 == 0 else f"h{i}.example.com"
            path = "/echo" if i % 3 == 0 else f"/console/p{i % 7}"
            lines.append(f"[route:r{i}]\nhost = {host}\npath = {path}\nbackend = 127.0.0.1:1\n")
        lines.append(f"[route:echo]\nhost = {ROUTES_HOST}\npath = /echo\n"
                     f"backend = 127.0.0.1:{self.echo_port}\n")
        return "\n".join(lines)

    def start_routes(self, n):
        port = free_port()
        name = f"wsgate-routes{n}"
        cfg = os.path.join(self.dir, f"{name}.ini")
        with open(cfg, "w") as f:
            f.write(f"""[gateway]
listen = 127.0.0.1:{port}
workers = 0
max_connections = 10000
log_level = {self.log_level}

{self.routes_config(n)}""")
        srv = Server(name, [self.args.wsgate, "-c", cfg], port,
                     os.path.join(self.dir, f"{name}.log"), "ws", "/echo")
        srv.start()
        self.servers[name] = srv
        return name

    def run_routes(self, churn, budget):
        if "wsgate" not in self.targets:
            return
        names = []
        try:
            for n in (ROUTES_N, 1):
                names.append(self.start_routes(n))
        except (RuntimeError, OSError) as e:
            self.failures.append(f"routes: wsgate did not start: {e}")
        if len(names) == 2:
            keys = [f"routes-{ROUTES_N}", "routes-1"]
            for round_no in range(self.repeat):
                k = round_no % 2
                for name, key in list(zip(names, keys))[k:] + list(zip(names, keys))[:k]:
                    self.loadgen("routes", name, churn, budget, key=key)
            self.pick_medians("routes")
        for name in names:
            self.servers.pop(name).stop()

    def report_routes(self):
        many, one = (self.get("routes", f"routes-{ROUTES_N}", "per_s"),
                     self.get("routes", "routes-1", "per_s"))
        if many is None or one is None:
            return
        share = many / one
        print(f"\nroute table churn ({self.churn} concurrent, Host {ROUTES_HOST}, conn/s; "
              f"goal: {ROUTES_N:,} routes within 5% of 1 route)")
        print(f"  {f'{ROUTES_N:,} host+path routes (echo last)':34s} {many:8.0f}")
        print(f"  {'1 route':34s} {one:8.0f}")
        print(f"  ratio {share:.3f}" + (" ok" if share >= 0.95 else " BELOW GOAL"))

    # ---- edge: haproxy in front of wsgate, a plain listener against a proxy
    # listener (haproxy send-proxy-v2) without and with per-address limits,
    # in one run (issue 12) -------------------------------------------------
    EDGE_VARIANTS = (("edge-plain", False, ""),
                     ("edge-proxy", True, ""),
                     ("edge-proxy-limits", True,
                      "max_connections_per_ip = 1000000\nhandshake_rate_per_ip = 1000000\n"))

    def start_edge(self, key, proxy, limits):
        """wsgate (a proxy listener when proxy) and haproxy in front of it."""
        wport, hport = free_port(), free_port()
        cfg = os.path.join(self.dir, f"{key}.ini")
        with open(cfg, "w") as f:
            f.write(f"""[gateway]
listen = 127.0.0.1:{wport}{' proxy' if proxy else ''}
workers = 0
max_connections = 10000
log_level = {self.log_level}
{limits}
[route:echo]
path = /echo
backend = 127.0.0.1:{self.echo_port}
""")
        w = Server(f"wsgate-{key}", [self.args.wsgate, "-c", cfg], wport,
                   os.path.join(self.dir, f"wsgate-{key}.log"), "ws", "/echo")
        w.start()
        self.servers[w.name] = w
        hcfg = os.path.join(self.dir, f"haproxy-{key}.cfg")
        with open(hcfg, "w") as f:
            f.write(haproxy_config(hport, f"server w 127.0.0.1:{wport}"
                                   f"{' send-proxy-v2' if proxy else ''}"))
        h = Server(f"haproxy-{key}", ["haproxy", "-db", "-f", hcfg], hport,
                   os.path.join(self.dir, f"haproxy-{key}.log"), "ws", "/echo")
        h.start()
        self.servers[h.name] = h
        return h.name

    def run_edge(self, churn, latency, budget):
        if "wsgate" not in self.targets or "haproxy" not in self.targets:
            return
        names = []
        try:
            for key, proxy, limits in self.EDGE_VARIANTS:
                names.append((self.start_edge(key, proxy, limits), key))
        except (RuntimeError, OSError) as e:
            self.failures.append(f"edge: cannot start: {e}")
        if len(names) == len(self.EDGE_VARIANTS):
            for round_no in range(self.repeat):
                k = round_no % len(names)
                for name, key in names[k:] + names[:k]:
                    self.loadgen("edge", name, churn, budget, key=key)
                    self.loadgen("edge-latency", name, latency, budget, key=key)
            self.pick_medians("edge")
            self.pick_medians("edge-latency")
        for key, _, _ in self.EDGE_VARIANTS:
            for name in (f"wsgate-{key}", f"haproxy-{key}"):
                if name in self.servers:
                    self.servers.pop(name).stop()

    def report_edge(self):
        base = self.get("edge", "edge-plain", "per_s")
        if base is None:
            return
        print(f"\nedge: haproxy in front of wsgate ({self.churn} concurrent churn, conn/s; "
              "64-byte echo latency, us; goal: proxy listener with limits within 5% of plain)")
        for key, label in (("edge-plain", "plain listener"),
                           ("edge-proxy", "proxy listener (send-proxy-v2)"),
                           ("edge-proxy-limits", "proxy listener + per-IP limits")):
            c = self.get("edge", key, "per_s")
            p50, p99 = (self.get("edge-latency", key, "p50_us"),
                        self.get("edge-latency", key, "p99_us"))
            if c is None:
                print(f"  {label:32s} -")
                continue
            print(f"  {label:32s} churn {c:8.0f} ({c / base:.3f}x)   latency p50 "
                  f"{p50 or 0:6.1f} p99 {p99 or 0:6.1f}")

    # ---- report -----------------------------------------------------------
    def print_machine(self):
        def first_line(argv):
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
                return (out.stdout or out.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.TimeoutExpired):
                return "?"
        load = open("/proc/loadavg").read().split()[:3]
        print(f"machine: {os.cpu_count()} CPUs, {os.uname().release}; load average "
              f"{' '.join(load)}", flush=True)
        if float(load[0]) > 0.5:
            print("warning: the machine is busy; other processes skew these numbers", flush=True)
        print(f"wsgate: {first_line([self.args.wsgate, '-V'])}; haproxy: "
              f"{first_line(['haproxy', '-v'])}", flush=True)
        print(f"each measurement: {self.seconds} s after {self.warmup} s warm-up\n", flush=True)

    def get(self, scenario, target, key):
        r = self.results.get((scenario, target))
        if not r or key not in r or r[key] is None or r[key] < 0:
            return None
        return r[key]

    def rows(self):
        """(label, scenario, key, higher_is_better, format) for the table."""
        return [
            ("bulk 1 x 64 KiB, MB/s", "bulk1", "mb_per_s", True, "{:.0f}"),
            ("bulk 1 x 64 KiB, relay CPU s/GB", "bulk1", "peer_cpu_s_per_gb", False, "{:.2f}"),
            ("latency 64 B p50, us", "latency", "p50_us", False, "{:.1f}"),
            ("latency 64 B p90, us", "latency", "p90_us", False, "{:.1f}"),
            ("latency 64 B p99, us", "latency", "p99_us", False, "{:.1f}"),
            ("latency 64 B p99.9, us", "latency", "p999_us", False, "{:.1f}"),
            (f"bulk {self.bulk_conns} x 4 KiB, MB/s", "bulk100", "mb_per_s", True, "{:.0f}"),
            (f"bulk {self.bulk_conns} x 4 KiB, relay CPU s/GB", "bulk100", "peer_cpu_s_per_gb",
             False, "{:.2f}"),
            (f"churn {self.churn} concurrent, conn/s", "churn", "per_s", True, "{:.0f}"),
            (f"idle {self.idle_conns}: time to open, s", "idle", "open_s", False, "{:.2f}"),
            (f"idle {self.idle_conns}: RSS growth, B/conn", "idle", "rss_per_conn_b", False,
             "{:.0f}"),
        ]

    def report(self):
        cols = ["direct", "haproxy", "websockify", "wsgate", "wsg/hap", "wsg/wsfy"]
        width = max(len(r[0]) for r in self.rows()) + 2
        print("\n" + "results (direct and haproxy: raw TCP; websockify and wsgate: WebSocket)")
        print("".ljust(width) + "".join(c.rjust(11) for c in cols))
        for label, sc, key, _, fmt in self.rows():
            vals = [self.get(sc, t, key) for t in TARGETS[:4]]
            cells = [fmt.format(v) if v is not None else "-" for v in vals]
            wsg = vals[3]
            for other in (vals[1], vals[2]):
                cells.append(f"{wsg / other:.2f}x" if wsg is not None and other else "-")
            print(label.ljust(width) + "".join(c.rjust(11) for c in cells))
        print("(ratios are wsgate / other: above 1 is better for MB/s and conn/s, below 1 is "
              "better for latency, CPU, time and memory)")
        rounds = f"median of {self.repeat} rounds; " if self.repeat > 1 else ""
        print(f"{rounds}other processes kept {self.other_cores:.2f} of {os.cpu_count()} cores busy "
              "on average during the run" + (" (noisy: compare with care)"
                                              if self.other_cores > 0.25 else ""))
        self.report_baseline()
        self.report_wss()
        self.report_loaded()
        self.report_access()
        self.report_routes()
        self.report_edge()
        self.report_cpu()
        self.report_goals()
        if self.failures:
            print("\nproblems:")
            for f in self.failures:
                print("  - " + f)

    def report_baseline(self):
        """wsgate beside the BENCH_BASELINE build, same rounds."""
        if "baseline" not in self.targets:
            return
        print(f"\nbefore/after: baseline = {os.environ['BENCH_BASELINE']}, wsgate = "
              f"{self.args.wsgate}")
        width = max(len(r[0]) for r in self.rows()) + 2
        print("".ljust(width) + "".join(c.rjust(11) for c in ("baseline", "wsgate", "new/old")))
        for label, sc, key, _, fmt in self.rows():
            a, b = self.get(sc, "baseline", key), self.get(sc, "wsgate", key)
            cells = [fmt.format(v) if v is not None else "-" for v in (a, b)]
            cells.append(f"{b / a:.2f}x" if a and b is not None else "-")
            print(label.ljust(width) + "".join(c.rjust(11) for c in cells))

    def report_wss(self):
        """wss through wsgate beside haproxy terminating TLS (and plain ws
        through wsgate), same run."""
        n, c = self.bulk_conns, self.churn
        rows = [("TLS bulk 1 x 64 KiB, MB/s", "wss1", "mb_per_s", "{:.0f}"),
                ("TLS bulk 1 x 64 KiB, relay CPU s/GB", "wss1", "peer_cpu_s_per_gb", "{:.2f}"),
                (f"TLS bulk {n} x 4 KiB, MB/s", "wss100", "mb_per_s", "{:.0f}"),
                (f"TLS bulk {n} x 4 KiB, relay CPU s/GB", "wss100", "peer_cpu_s_per_gb",
                 "{:.2f}"),
                (f"TLS churn {c}, full handshakes, conn/s", "wsschurn", "per_s", "{:.0f}"),
                (f"TLS churn {c}, resumed, conn/s", "wssresume", "per_s", "{:.0f}"),
                (f"TLS churn {c}, resumed handshakes", "wssresume", "resumed", "{:.0f}"),
                (f"TLS churn {c}, cycles", "wssresume", "cycles", "{:.0f}"),
                (f"TLS idle {self.idle_conns}: RSS growth, B/conn", "wssidle", "rss_per_conn_b",
                 "{:.0f}")]
        keys = ("haproxy-tls", "wsgate-wss", "wsgate-ws")
        if not any((sc, k) in self.results for _, sc, _, _ in rows for k in keys):
            return
        width = max(len(r[0]) for r in self.rows() + rows) + 2
        print("\nTLS: haproxy terminating TLS (raw TCP inside), wsgate wss, wsgate plain ws")
        print("".ljust(width) + "".join(x.rjust(11) for x in
                                          ("haproxy", "wss", "ws", "wss/hap")))
        for label, sc, key, fmt in rows:
            vals = [self.get(sc, k, key) for k in keys]
            cells = [fmt.format(v) if v is not None else "-" for v in vals]
            hap, wss = vals[0], vals[1]
            cells.append(f"{wss / hap:.2f}x" if wss is not None and hap and
                         key not in ("resumed", "cycles") else "-")
            print(label.ljust(width) + "".join(x.rjust(11) for x in cells))
        tls = next((r.get("tls") for (sc, t), r in self.results.items()
                    if t in keys[:2] and r.get("tls")), None)
        print(f"(TLS: {tls or '?'}, self-signed EC P-256 certificate; the load generator "
              "does its side of the TLS work on the same machine)")

    def report_loaded(self):
        """64-byte echo latency while 100 connections stream."""
        targets = ("direct", "haproxy", "wsgate")
        if not any(("loaded", t) in self.results for t in targets):
            return
        n = self.bulk_conns
        rows = [("p50, us", "loaded", "p50_us", "{:.1f}"), ("p99, us", "loaded", "p99_us", "{:.1f}"),
                ("p99.9, us", "loaded", "p999_us", "{:.1f}"),
                (f"the {n} streams meanwhile, MB/s", "loaded-bulk", "mb_per_s", "{:.0f}")]
        width = max(len(r[0]) for r in self.rows()) + 2
        print(f"\nlatency of a 64 B echo while {n} connections x 4 KiB stream through the same relay")
        print("".ljust(width) + "".join(x.rjust(11) for x in targets + ("wsg/hap",)))
        for label, sc, key, fmt in rows:
            vals = [self.get(sc, t, key) for t in targets]
            cells = [fmt.format(v) if v is not None else "-" for v in vals]
            cells.append(f"{vals[2] / vals[1]:.2f}x" if vals[2] is not None and vals[1] else "-")
            print(label.ljust(width) + "".join(x.rjust(11) for x in cells))

    def report_cpu(self):
        """CPU the load generator itself used, to show it was not the limit."""
        lines = []
        for sc in ("bulk1", "bulk100", "churn") + WSS_SCENARIOS:
            for t in TARGETS + ["haproxy-tls", "wsgate-wss", "wsgate-ws"]:
                r = self.results.get((sc, t))
                if r and r.get("seconds"):
                    lines.append(f"{sc}/{t} {r['self_cpu_s'] / r['seconds']:.2f}")
        if lines:
            print("loadgen CPU (cores busy): " + ", ".join(lines))

    def report_goals(self):
        g = self.get

        def ratio(sc, key, other):
            a, b = g(sc, "wsgate", key), g(sc, other, key)
            return a / b if a is not None and b else None

        def show(text, value, ok):
            state = "n/a" if value is None else ("met" if ok(value) else "NOT met")
            print(f"  {text}: {state}")

        print("\ngoals of issue 4 (information, not assertions):")
        b_h, b_w = ratio("bulk1", "mb_per_s", "haproxy"), ratio("bulk1", "mb_per_s", "websockify")
        show(f"1. bulk 1 x 64 KiB >= 2x haproxy ({b_h or 0:.2f}x) and >= 5x websockify "
             f"({b_w or 0:.2f}x)", None if b_h is None or b_w is None else (b_h, b_w),
             lambda v: v[0] >= 2 and v[1] >= 5)
        p50, p99 = ratio("latency", "p50_us", "haproxy"), ratio("latency", "p99_us", "haproxy")
        show(f"2. latency p50 <= haproxy ({p50 or 0:.2f}x) and p99 <= haproxy ({p99 or 0:.2f}x)",
             None if p50 is None or p99 is None else (p50, p99), lambda v: v[0] <= 1 and v[1] <= 1)
        cpu = ratio("bulk100", "peer_cpu_s_per_gb", "haproxy")
        show(f"3. bulk {self.bulk_conns} x 4 KiB CPU s/GB <= haproxy ({cpu or 0:.2f}x)", cpu,
             lambda v: v <= 1)
        c_h, c_w = ratio("churn", "per_s", "haproxy"), ratio("churn", "per_s", "websockify")
        show(f"4. churn >= 0.5x haproxy ({c_h or 0:.2f}x) and >= 100x websockify "
             f"({c_w or 0:.1f}x)", None if c_h is None or c_w is None else (c_h, c_w),
             lambda v: v[0] >= 0.5 and v[1] >= 100)
        o, m = g("idle", "wsgate", "open_s"), g("idle", "wsgate", "rss_per_conn_b")
        opened = g("idle", "wsgate", "opened")
        show(f"5. {self.idle_conns} idle open in < 3 s ({o or 0:.2f} s, {opened or 0} opened) "
             f"and RSS <= 2048 B/conn ({m or 0:.0f} B)",
             None if o is None or m is None else (o, m, opened),
             lambda v: v[0] < 3 and v[1] <= 2048 and v[2] == self.idle_conns)

    @staticmethod
    def chart_targets():
        return list(dict.fromkeys(TARGETS + ["baseline"]))

    def table(self):
        """The side-by-side table as data (what chart.py draws)."""
        return [{"label": label, "higher_is_better": hib,
                 "values": {t: self.get(sc, t, key) for t in self.chart_targets()}}
                for label, sc, key, hib, _ in self.rows()]

    def save(self):
        rounds = f", median of {self.repeat} rounds" if self.repeat > 1 else ""
        data = {"seconds": self.seconds, "warmup": self.warmup, "repeat": self.repeat,
                "other_cores": round(self.other_cores, 3), "failures": self.failures,
                "title": f"make bench ({os.cpu_count()} CPUs{rounds} of {self.seconds:g} s; "
                         f"other processes {self.other_cores:.2f} cores busy)",
                "targets": self.chart_targets(), "table": self.table(),
                "results": [dict(r, scenario=sc, target=t)
                            for (sc, t), r in self.results.items()],
                "rounds": [r for runs in self.rounds.values() for r in runs]}
        try:
            os.makedirs(os.path.dirname(self.out) or ".", exist_ok=True)
            with open(self.out, "w") as f:
                json.dump(data, f, indent=1)
            print(f"\nall results: {self.out}")
        except OSError as e:
            print(f"\ncannot write {self.out}: {e}")
            return
        svg = chart.draw(self.out)  # the table as a chart, next to the results
        if svg:
            print(f"chart: {svg}")


def main():
    ap = argparse.ArgumentParser(description="wsgate side-by-side benchmark")
    for opt, var in (("--wsgate", "WSGATE"), ("--loadgen", "LOADGEN"), ("--echo", "ECHO_SERVER")):
        ap.add_argument(opt, default=os.environ.get(var), help=f"default: ${var}")
    args = ap.parse_args()
    for opt, var in (("wsgate", "WSGATE"), ("loadgen", "LOADGEN"), ("echo", "ECHO_SERVER")):
        path = getattr(args, opt)
        if not path or not os.access(path, os.X_OK):
            ap.error(f"--{opt} (or ${var}) must name the built program, not {path!r}")
    bench = Bench(args)
    for tool in ("haproxy", "websockify"):
        if tool in bench.targets and shutil.which(tool) is None:
            sys.exit(f"run.py: {tool} is not installed (Debian: apt-get install {tool})")
    return bench.run()


if __name__ == "__main__":
    sys.exit(main())
