"""edge_proxy.py - churn and latency through haproxy (send-proxy-v2) into a
wsgate `proxy` listener, with per-address limits off and on (issue 12).
Usage: WSGATE=build/src/wsgate python3 tests/bench/edge_proxy.py"""
import os, socket, statistics, subprocess, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness

def run(limits, secs=3.0):
    d = tempfile.mkdtemp()
    be = harness.Backend(harness.echo_handler)
    wport, hport = harness.free_port(), harness.free_port()
    extra = ("max_connections_per_ip = 100000\nhandshake_rate_per_ip = 1000000\n"
             if limits else "")
    open(d + "/w.ini", "w").write("[gateway]\nlisten = 127.0.0.1:%d proxy\nlog_level = warn\n%s"
                                  "[route:e]\npath = /\nbackend = %s\n" % (wport, extra, be.addr))
    open(d + "/h.cfg", "w").write("global\n  nbthread 2\ndefaults\n  mode tcp\n  timeout connect 5s\n"
                                  "  timeout client 60s\n  timeout server 60s\nfrontend f\n"
                                  "  bind 127.0.0.1:%d\n  default_backend b\nbackend b\n"
                                  "  server w 127.0.0.1:%d send-proxy-v2\n" % (hport, wport))
    w = subprocess.Popen([os.environ["WSGATE"], "-c", d + "/w.ini"], stderr=subprocess.DEVNULL)
    h = subprocess.Popen(["haproxy", "-db", "-f", d + "/h.cfg"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    count = [0]
    stop = time.monotonic() + secs
    def churn():
        while time.monotonic() < stop:
            c = harness.RawClient("127.0.0.1", hport)
            c.upgrade("/")
            c.close()
            count[0] += 1
    ts = [threading.Thread(target=churn) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    c = harness.RawClient("127.0.0.1", hport)
    c.upgrade("/")
    lat = []
    for i in range(3000):
        t0 = time.perf_counter()
        c.send_frame(harness.OP_BINARY, b"x" * 32)
        c.read_data(32)
        lat.append((time.perf_counter() - t0) * 1e6)
    c.close()
    w.terminate(); h.terminate(); w.wait(); h.wait(); be.close()
    lat.sort()
    return count[0] / secs, lat[len(lat) // 2], lat[int(len(lat) * 0.99)]

for limits in (False, True, False, True):
    r = run(limits)
    print("limits %-3s churn %.0f upgrades/s  latency p50 %.0f us p99 %.0f us"
          % ("on" if limits else "off", *r), flush=True)
