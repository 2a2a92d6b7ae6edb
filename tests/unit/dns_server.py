#!/usr/bin/python3
"""A small DNS server for test_resolver (python3-dnslib).

Usage: dns_server.py ZONE_FILE QUERY_LOG
Binds UDP 127.0.0.1 on a free port and prints the port on stdout. Every
query re-reads ZONE_FILE, a JSON object mapping names to
  {"A": [...], "AAAA": [...], "ttl": N, "delay": SECONDS}
Names not in it get NXDOMAIN; a name with neither list gets NOERROR with no
answer (NODATA). Each query's "NAME TYPE" is appended to QUERY_LOG. Queries
are answered on their own threads, so a delayed answer delays no other."""
import json
import os
import socket
import sys
import threading
import time

from dnslib import AAAA, A, QTYPE, RCODE, RR, DNSRecord


def answer(sock, data, addr, zone_file, qlog):
    req = DNSRecord.parse(data)
    q = req.q
    name = str(q.qname).rstrip(".").lower()
    qtype = QTYPE[q.qtype]
    with open(qlog, "a") as f:
        f.write("%s %s\n" % (name, qtype))
    with open(zone_file) as f:
        zone = json.load(f)
    reply = req.reply()
    entry = zone.get(name)
    if entry is None:
        reply.header.rcode = RCODE.NXDOMAIN
    else:
        ttl = int(entry.get("ttl", 60))
        for ip in entry.get(qtype, []) if qtype in ("A", "AAAA") else []:
            rdata = A(ip) if qtype == "A" else AAAA(ip)
            reply.add_answer(RR(q.qname, q.qtype, rdata=rdata, ttl=ttl))
        time.sleep(float(entry.get("delay", 0)))
    sock.sendto(reply.pack(), addr)


def main():
    zone_file, qlog = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    # one write: the test reads the port and closes the pipe at once
    os.write(1, b"%d\n" % sock.getsockname()[1])
    while True:
        data, addr = sock.recvfrom(4096)
        threading.Thread(target=answer, args=(sock, data, addr, zone_file, qlog),
                         daemon=True).start()


if __name__ == "__main__":
    main()
