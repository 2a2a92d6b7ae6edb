"""Compression and recording in the data path (issue 15, doc/design.md
"Compression and recording"): permessage-deflate negotiated in the 101 and
relayed both ways (python3-websockets as an independent deflate client, raw
frames made with Python's zlib for the byte-level cases), the wire byte
counters, and per-session recordings (raw replayed with `wsgate --replay`,
asciicast checked with `asciinema cat`, a full disk)."""

import asyncio
import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import pytest

import harness
from harness import OP_BINARY, OP_CONT, OP_TEXT, build_frame, route
from ops_helpers import scrape

EXT = "Sec-WebSocket-Extensions"


def deflate_msg(data, wbits=15, comp=None):
    """A message compressed as RFC 7692 7.2.1 says (sync flush, tail cut)."""
    c = comp or zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class Inflater:
    """The client side of server-to-client decompression (context takeover)."""

    def __init__(self, wbits=15):
        self.d = zlib.decompressobj(-wbits)

    def __call__(self, payload):
        return self.d.decompress(payload + b"\x00\x00\xff\xff")


def text_payload(n, seed=1):
    """Terminal-like text: compressible, but not trivially."""
    words = [b"ls", b"-la", b"drwxr-xr-x", b"root", b"4096", b"Dec", b"/var/log", b"\x1b[0m",
             b"\x1b[01;34m", b"syslog", b"kern.log", b"\r\n", b"total", b"12"]
    rnd = harness.random_bytes(n, seed)
    out = bytearray()
    i = 0
    while len(out) < n:
        out += words[rnd[i % len(rnd)] % len(words)] + b" "
        i += 1
    return bytes(out[:n])


def comp_route(backend, **kw):
    opts = dict(compression="on", compression_level=1, compression_window_bits=12)
    opts.update(kw)
    return route(backend, "/", **opts)


@pytest.fixture
def zgw(gw, backends):
    echo = backends.echo()
    gw.start({"gateway": {"metrics_path": "/metrics"}, "route:z": comp_route(echo.addr)})
    return gw


def zclient(gw, offer="permessage-deflate; client_max_window_bits"):
    c = gw.client()
    resp = c.upgrade("/", extra_headers=[(EXT, offer)] if offer else ())
    return c, resp


# ---------------------------------------------------------------- negotiation


@pytest.mark.parametrize("offers,answer", [
    (["permessage-deflate; client_max_window_bits"],
     "permessage-deflate; client_max_window_bits=12"),
    # a client that can not be asked for a smaller window keeps no context
    (["permessage-deflate"], "permessage-deflate; client_no_context_takeover"),
    (["permessage-deflate; server_max_window_bits=10; client_no_context_takeover"],
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"),
    # the first acceptable offer wins, across header lines; bad offers are declined
    (["permessage-deflate; server_max_window_bits=8", "x-webkit-deflate-frame, "
      "permessage-deflate; server_no_context_takeover"],
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    (["permessage-deflate; bogus=1"], None),
    (["foo"], None),
])
def test_negotiation_answers(zgw, offers, answer):
    c = zgw.client()
    resp = c.upgrade("/", extra_headers=[(EXT, o) for o in offers])
    assert resp.get(EXT.lower()) == answer, resp


def test_no_extension_header_when_compression_off(gw, backends):
    echo = backends.echo()
    gw.start({"route:p": route(echo.addr, "/")})
    c = gw.client()
    resp = c.upgrade("/", extra_headers=[(EXT, "permessage-deflate; client_max_window_bits")])
    assert resp.get(EXT.lower()) is None
    # RSV1 without negotiation stays a protocol error
    c.send(build_frame(OP_TEXT, deflate_msg(b"hello"), rsv=4))
    c.expect_close(1002)


# ---------------------------------------------------------------- python3-websockets


async def deflate_echo(url, msgs, **factory):
    import websockets
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    ext = [ClientPerMessageDeflateFactory(**factory)] if factory else None
    kw = dict(extensions=ext) if ext else dict(compression="deflate")
    async with websockets.connect(url, max_size=None, ping_interval=None, **kw) as ws:
        header = ws.response_headers.get(EXT)
        expected = sum(len(m) for m in msgs)
        got = bytearray()

        async def reader():
            while len(got) < expected:
                got.extend(await ws.recv())

        task = asyncio.ensure_future(reader())
        for m in msgs:
            await ws.send(m)
        await asyncio.wait_for(task, 60)
    return header, bytes(got)


@pytest.mark.parametrize("factory,answer", [
    ({}, "permessage-deflate; client_max_window_bits=12"),
    (dict(server_no_context_takeover=True, client_no_context_takeover=True),
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "client_max_window_bits=12"),
    (dict(server_max_window_bits=9, client_max_window_bits=10),
     "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10"),
    (dict(client_max_window_bits=None),
     "permessage-deflate; client_no_context_takeover"),
], ids=["takeover", "no_context_takeover", "window_bits", "firefox_like"])
def test_websockets_deflate_echo(zgw, factory, answer):
    msgs = [text_payload(3000, i) for i in range(20)] + [harness.random_bytes(70000, 9),
                                                         text_payload(1 << 20, 5), b"x"]
    header, got = asyncio.run(deflate_echo(zgw.url("/"), msgs, **factory))
    assert header == answer
    harness.assert_same(got, b"".join(msgs))
    m = scrape(zgw)
    up = m.value("wsgate_bytes_total", route="z", direction="up")
    assert up == sum(len(x) for x in msgs)
    wire_up = m.value("wsgate_wire_bytes_total", route="z", direction="up")
    wire_down = m.value("wsgate_wire_bytes_total", route="z", direction="down")
    # the text compresses: both directions took fewer frame bytes than payload
    assert wire_up < up * 0.6, (wire_up, up)
    assert wire_down < up * 0.6, (wire_down, up)


# ---------------------------------------------------------------- raw frames


def test_fragmented_compressed_message_and_plain_one(zgw):
    c, resp = zclient(zgw)
    assert resp.get(EXT.lower()) == "permessage-deflate; client_max_window_bits=12"
    comp = zlib.compressobj(6, zlib.DEFLATED, -12)
    data = text_payload(2500, 3)
    z = deflate_msg(data, comp=comp)
    # RSV1 on the first frame only, the rest continuation frames
    c.send(build_frame(OP_TEXT, z[:10], fin=False, rsv=4)
           + build_frame(OP_CONT, z[10:100], fin=False)
           + build_frame(OP_CONT, z[100:], fin=True))
    inf = Inflater(12)
    got = bytearray()
    while len(got) < len(data):
        f = c.recv_frame()
        assert f.opcode == OP_BINARY and f.fin
        got += inf(f.payload) if f.rsv == 4 else f.payload
    harness.assert_same(bytes(got), data)
    # an uncompressed message on the compressing session goes through as is
    c.send(build_frame(OP_BINARY, b"plain bytes"))
    f = c.recv_frame()
    assert (f.rsv, f.payload) == (0, b"plain bytes")  # under 64 bytes: not compressed
    # the context carries over (takeover): a repeat compresses to a few bytes
    z2 = deflate_msg(data, comp=comp)
    assert len(z2) < 40
    c.send(build_frame(OP_BINARY, z2, rsv=4))
    got = bytearray()
    while len(got) < len(data):
        f = c.recv_frame()
        got += inf(f.payload) if f.rsv == 4 else f.payload
    harness.assert_same(bytes(got), data)


@pytest.mark.parametrize("frames,code", [
    (lambda: build_frame(OP_TEXT, b"hi", fin=False) + build_frame(OP_CONT, b"x", rsv=4), 1002),
    (lambda: build_frame(OP_BINARY, b"\xff\xfe\xfd garbage", rsv=4), 1007),
    (lambda: build_frame(OP_TEXT, deflate_msg(b"ok \xff\xfe"), rsv=4), 1007),
    (lambda: build_frame(OP_BINARY, deflate_msg(b"x" * 200000), rsv=4), 1009),
], ids=["rsv1_on_continuation", "bad_data", "bad_utf8", "too_big"])
def test_compressed_errors(gw, backends, frames, code):
    sink = backends.sink()
    gw.start({"route:z": comp_route(sink.addr, max_message_size=100000)})
    c, _ = zclient(gw)
    c.send(frames())
    c.expect_close(code)


def test_rsv1_when_client_did_not_offer(zgw):
    c, resp = zclient(zgw, offer=None)
    assert resp.get(EXT.lower()) is None
    c.send(build_frame(OP_BINARY, deflate_msg(b"hello"), rsv=4))
    c.expect_close(1002)


def test_zip_bomb_closes_1009_with_memory_bounded(gw, backends, asan):
    sink = backends.sink()
    limit = 64 << 20
    gw.start({"gateway": {"buffer_size": 65536},
              "route:z": comp_route(sink.addr, max_message_size=limit)})
    c, _ = zclient(gw)
    rss0 = gw.rss_kib()
    comp = zlib.compressobj(9, zlib.DEFLATED, -12)
    chunk = comp.compress(b"\0" * (1 << 20))
    body = bytearray()
    for _ in range(80):  # 80 MiB of zeros in ~80 KiB
        body += comp.compress(b"\0" * (1 << 20))
    body = chunk + bytes(body) + comp.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(body) < 200000
    c.send(build_frame(OP_BINARY, bytes(body), rsv=4))
    c.expect_close(1009, timeout=60)
    # the sink got exactly the limit: the bytes within it were relayed
    harness.wait_until(lambda: sink.total_received() == limit, what="sink got the limit")
    if not asan:
        assert gw.rss_kib() - rss0 < 4096, (rss0, gw.rss_kib())


def test_backend_small_chunk_goes_plain(gw, backends):
    sender = backends.sender(b"hi")
    gw.start({"route:s": comp_route(sender.addr)})
    c, _ = zclient(gw)
    f = c.recv_frame()
    assert (f.rsv, f.opcode, f.payload) == (0, OP_BINARY, b"hi")


def test_backend_big_output_compressed(gw, backends):
    data = text_payload(300000, 7)
    sender = backends.sender(data)
    gw.start({"route:s": comp_route(sender.addr)})
    c, _ = zclient(gw)
    inf = Inflater(12)
    got, wire, frames = bytearray(), 0, 0
    while len(got) < len(data):
        f = c.recv_frame()
        frames += 1
        assert f.rsv == 4 and f.opcode == OP_BINARY
        wire += len(f.payload)
        got += inf(f.payload)
    harness.assert_same(bytes(got), data)
    assert wire < len(data) / 3, (wire, len(data))


# ---------------------------------------------------------------- wire bytes


def test_wire_bytes_exact(gw, backends):
    echo = backends.echo()
    gw.start({"gateway": {"metrics_path": "/metrics"}, "route:z": comp_route(echo.addr),
              "route:p": route(echo.addr, "/plain")})
    for path, offer in (("/", "permessage-deflate"), ("/plain", None)):
        c = gw.client()
        c.upgrade(path, extra_headers=[(EXT, offer)] if offer else ())
        data = text_payload(4000, 11)
        sent = build_frame(OP_BINARY, deflate_msg(data) if offer else data, rsv=4 if offer else 0)
        sent += build_frame(harness.OP_PING, b"p")
        c.send(sent)
        inf = Inflater(15)
        got, down = bytearray(), 0
        while len(got) < len(data):
            f = c.recv_frame()
            down += 2 + (2 if len(f.payload) > 125 else 0) + len(f.payload)
            if f.opcode == harness.OP_PONG:
                continue
            got += inf(f.payload) if f.rsv == 4 else f.payload
        harness.assert_same(bytes(got), data)
        c.send(build_frame(harness.OP_CLOSE, harness.close_payload(1000)))
        f, _ = c.next_close()
        down += 2 + len(f.payload)
        sent_len = len(sent) + 2 + 4 + 2
        name = "z" if offer else "p"

        def settled():
            m = scrape(gw)
            return (m.value("wsgate_wire_bytes_total", route=name, direction="up"),
                    m.value("wsgate_wire_bytes_total", route=name, direction="down"))
        harness.wait_until(lambda: settled() == (sent_len, down) or None, timeout=5,
                           what="wire bytes %r == %r" % (settled(), (sent_len, down)))
        c.close()


# ---------------------------------------------------------------- recordings


def replay(binary, path):
    r = subprocess.run([binary, "--replay", str(path)], capture_output=True, timeout=30)
    assert r.returncode == 0, r
    return r.stdout


def parse_wsrec(blob):
    head, _, rest = blob.partition(b"\n\n")
    chunks, pos = [], 0
    while pos < len(rest):
        nl = rest.index(b"\n", pos)
        line = rest[pos:nl].decode()
        pos = nl + 1
        m = re.match(r"\+(\d+\.\d{6}) (i|o) (\d+)$", line)
        if not m:
            assert re.match(r"\+\d+\.\d{6} stop ", line), line
            chunks.append(("stop", line))
            break
        n = int(m.group(3))
        chunks.append((m.group(2), rest[pos:pos + n]))
        pos += n + 1
    return head.decode(), chunks


def parse_open_wsrec(blob):
    """The whole chunks of a raw recording still being written."""
    head, _, rest = blob.partition(b"\n\n")
    chunks, pos = [], 0
    while True:
        nl = rest.find(b"\n", pos)
        m = re.match(rb"\+\d+\.\d{6} (i|o) (\d+)$", rest[pos:nl]) if nl >= 0 else None
        if not m or nl + 1 + int(m.group(2)) + 1 > len(rest):
            return head, chunks
        n = int(m.group(2))
        chunks.append((m.group(1).decode(), rest[nl + 1:nl + 1 + n]))
        pos = nl + 1 + n + 1


def wait_file(d, ext):
    def one():
        names = [n for n in os.listdir(d) if n.endswith(ext)]
        return names[0] if len(names) == 1 else None
    return os.path.join(d, harness.wait_until(one, what="one %s file" % ext))


def test_record_raw_compressed_session(gw, backends, tmp_path, wsgate_binary):
    echo = backends.echo()
    rec = tmp_path / "rec"
    rec.mkdir()
    gw.start({"route:term": comp_route(echo.addr, record=str(rec))})
    c, _ = zclient(gw)
    msgs = [text_payload(2000, i) for i in range(5)] + [b"\x00\xffbinary"]
    inf = Inflater(12)
    got = bytearray()
    for m in msgs:
        c.send(build_frame(OP_BINARY, deflate_msg(m), rsv=4))
    want = b"".join(msgs)
    while len(got) < len(want):
        f = c.recv_frame()
        got += inf(f.payload) if f.rsv == 4 else f.payload
    harness.assert_same(bytes(got), want)
    c.send(build_frame(harness.OP_CLOSE, harness.close_payload(1000)))
    c.next_close()
    c.close()
    path = wait_file(str(rec), ".wsrec")
    assert re.match(r"term-\d{8}T\d{6}Z-[A-Za-z0-9]+\.wsrec$", os.path.basename(path))

    def complete():
        with open(path, "rb") as f:
            blob = f.read()
        return blob if re.search(rb"\n\+\d+\.\d{6} stop [^\n]*\n$", blob) else None
    blob = harness.wait_until(complete, what="recording closed")
    head, chunks = parse_wsrec(blob)
    m = harness.wait_until(lambda: (lambda m: m if m.value("wsgate_recording_files_open") == 0
                                    else None)(scrape(gw)), what="recording file closed")
    assert (m.value("wsgate_recordings_total", result="opened"),
            m.value("wsgate_recordings_total", result="stopped"),
            m.value("wsgate_recording_bytes_total", result="written"),
            m.value("wsgate_recording_bytes_total", result="dropped")) == (1, 0, 2 * len(want), 0)
    assert "route: term" in head and "backend: %s" % echo.addr in head, head
    assert re.search(r"client: 127\.0\.0\.1:\d+", head), head
    ins = b"".join(d for k, d in chunks if k == "i")
    outs = b"".join(d for k, d in chunks if k == "o")
    harness.assert_same(ins, want, "recorded input")
    harness.assert_same(outs, want, "recorded output")
    assert chunks[-1][0] == "stop"
    # --replay prints the payload verbatim
    out = replay(wsgate_binary, path)
    assert want[:2000] in out


def test_record_asciicast_with_asciinema(gw, backends, tmp_path):
    text = "$ ls\r\n\x1b[01;34mdir\x1b[0m  file \u00e9\u20ac\U0001f600\r\n$ "
    sender = backends.sender(text.encode())
    rec = tmp_path / "rec"
    rec.mkdir()
    gw.start({"route:sh": route(sender.addr, "/", record=str(rec), record_format="asciicast")})
    c = gw.ws("/")
    assert c.read_data(len(text.encode())) == text.encode()
    c.send_frame(OP_BINARY, b"exit\r")
    c.send(build_frame(harness.OP_CLOSE, harness.close_payload(1000)))
    c.next_close()
    c.close()
    path = wait_file(str(rec), ".cast")
    harness.wait_until(lambda: os.path.getsize(path) > 0 and gw_sessions_done(gw), timeout=5,
                       what="session over")
    time.sleep(0.3)
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith('{"version": 2') or lines[0].startswith('{"version":2'), lines[0]
    # asciinema cat needs a terminal: script(1) gives it one (the pty passes
    # the bytes untranslated as asciinema puts it in raw mode)
    r = subprocess.run(["script", "-qec", "%s cat '%s'" % (shutil.which("asciinema"), path),
                        "/dev/null"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r
    assert r.stdout.decode() == text


def gw_sessions_done(gw):
    return "closed_by=" in gw.stderr_text() or "route=sh" in gw.stderr_text()


def test_full_disk_stops_recording_not_session(gw, backends, tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                       capture_output=True)
    assert r.returncode == 0, "cannot mount a tmpfs: %r" % r
    try:
        echo = backends.echo()
        gw.start({"route:full": route(echo.addr, "/", record=str(mnt))})
        c = gw.ws("/")
        data = harness.random_bytes(400000, 4)  # 800 KB recorded: far beyond 64 KiB
        for i in range(0, len(data), 20000):
            c.send_frame(OP_BINARY, data[i:i + 20000])
        assert c.read_data(len(data), timeout=30) == data
        # the session goes on after the recording stopped
        c.send_frame(OP_BINARY, b"still here")
        assert c.read_data(10) == b"still here"
        lines = harness.wait_until(
            lambda: [ln for ln in gw.stderr_text().splitlines() if "recording" in ln
                     and ("No space" in ln or "stopp" in ln)], what="a stop line")
        assert len(lines) == 1, lines
        c.close()
        # every payload byte relayed is counted once: written before the
        # disk filled, or dropped with the stopped recording
        total = 2 * (len(data) + 10)

        def counted():
            m = scrape(gw)
            got = (m.value("wsgate_recordings_total", result="opened"),
                   m.value("wsgate_recordings_total", result="stopped"),
                   m.value("wsgate_recording_bytes_total", result="written")
                   + m.value("wsgate_recording_bytes_total", result="dropped"),
                   m.value("wsgate_recording_files_open"))
            return m if got == (1, 1, total, 0) else None
        m = harness.wait_until(counted, timeout=10, what="recording metrics settled")
        # a batch the disk took only part of counts as dropped: what is
        # counted written is in the file, and the file is on 64 KiB
        written = m.value("wsgate_recording_bytes_total", result="written")
        assert written < 64 * 1024, written
        gw.stop()
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_recording_where_o_direct_is_refused(gw, backends, tmp_path):
    """A long recording on a file system that refuses O_DIRECT (ramfs: EINVAL
    from fcntl F_SETFL): past RECORD_WRITE_BEHIND the writer tries its direct
    writes, is refused, and appends the rest through the cache; the
    recording holds every relayed byte and nothing is counted dropped."""
    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], capture_output=True)
    assert r.returncode == 0, "cannot mount a ramfs: %r" % r
    try:
        probe = str(mnt / "probe")
        with pytest.raises(OSError) as e:  # else this test would not test the fallback
            os.close(os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT))
        assert e.value.errno == errno.EINVAL
        os.unlink(probe)
        total = 16 << 20  # eight 2 MiB write-behind steps
        data = harness.random_bytes(1 << 20, 11) * 16
        sender = backends.sender(data)
        gw.start({"route:bulk": route(sender.addr, "/", record=str(mnt))})
        c = gw.ws("/")
        assert c.read_data(total, timeout=60) == data
        c.send(build_frame(harness.OP_CLOSE, harness.close_payload(1000)))
        c.next_close()
        c.close()
        path = wait_file(str(mnt), ".wsrec")

        def complete():
            with open(path, "rb") as f:
                f.seek(-64, os.SEEK_END)
                return re.search(rb"\n\+\d+\.\d{6} stop closed\n$", f.read())
        harness.wait_until(complete, timeout=30, what="recording closed")
        with open(path, "rb") as f:
            _, chunks = parse_wsrec(f.read())
        assert b"".join(d for k, d in chunks if k == "o") == data
        m = scrape(gw)
        assert (m.value("wsgate_recordings_total", result="opened"),
                m.value("wsgate_recordings_total", result="stopped"),
                m.value("wsgate_recording_bytes_total", result="written"),
                m.value("wsgate_recording_bytes_total", result="dropped")) == (1, 0, total, 0)
        assert "recording" not in gw.stderr_text().replace("recordings", "")
        gw.stop()
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def thread_ids(pid, name=None):
    """Thread ids of process pid (those whose comm is name, if given)."""
    tids = []
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
            if name is None or f.read().strip() == name:
                tids.append(int(t))
    return tids


def test_starved_writer_makes_sessions_wait_not_lose(gw, backends, tmp_path):
    """The recording writer gets a few percent of a CPU (nice 10, sharing
    CPU 0 with a busy loop and wsgate's workers) while a session moves 48
    MB: the 8 MiB queue congests, the session stops reading until the writer
    has caught up (it never waits RECORD_WAIT = 1 s), and the recording
    holds every byte relayed, in order, ending "stop closed". (At nice 19
    the kernel's EEVDF scheduler may leave a woken writer waiting some 200
    ms each time it wakes, a few such waits in a row pass 1 s on a busy
    machine, and the recording then stops by design: "queue-full".)"""
    total = 48 << 20
    data = harness.random_bytes(1 << 20, 7) * 48
    sender = backends.sender(data)
    rec = tmp_path / "rec"
    rec.mkdir()
    gw.start({"route:bulk": route(sender.addr, "/", record=str(rec))})
    pid = gw.proc.pid
    (writer,) = thread_ids(pid, "wsgate-record")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(hog.pid, {0})
        for tid in thread_ids(pid):
            os.sched_setaffinity(tid, {0})
        os.setpriority(os.PRIO_PROCESS, writer, 10)
        c = gw.ws("/")
        got = c.read_data(total, timeout=120)
        assert got == data
        c.send(build_frame(harness.OP_CLOSE, harness.close_payload(1000)))
        c.next_close()
        c.close()
    finally:
        hog.kill()
        hog.wait()
    path = wait_file(str(rec), ".wsrec")

    def complete():
        with open(path, "rb") as f:
            blob = f.read()
        return blob if re.search(rb"\n\+\d+\.\d{6} stop [^\n]*\n$", blob) else None
    blob = harness.wait_until(complete, timeout=60, what="recording closed")
    _, chunks = parse_wsrec(blob)
    assert chunks[-1] == ("stop", chunks[-1][1]) and chunks[-1][1].endswith("stop closed"), \
        chunks[-1]
    outs = b"".join(d for k, d in chunks if k == "o")
    assert len(outs) == total and outs == data
    assert "stopped" not in gw.stderr_text()


def resident_bytes(path):
    """Bytes of path's pages in the page cache (mincore(2) through ctypes)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size, page = os.path.getsize(path), os.sysconf("SC_PAGESIZE")
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        vec = (ctypes.c_ubyte * pages)()
        assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) * page


def read_direct(path):
    """The bytes of path read with O_DIRECT (into page-aligned memory), so
    that reading it does not bring it into the page cache."""
    import mmap
    fd, out = os.open(path, os.O_RDONLY | os.O_DIRECT), bytearray()
    buf = mmap.mmap(-1, 1 << 20)
    try:
        while True:
            n = os.readv(fd, [buf])
            out += buf[:n]
            if n < len(buf):
                return bytes(out)
    finally:
        buf.close()
        os.close(fd)


def test_long_recording_leaves_the_page_cache(gw, backends, wsgate_binary):
    """A 32 MiB session recorded to a disk: past its first
    RECORD_WRITE_BEHIND (2 MiB, record.h) the writer bypasses the page cache
    (O_DIRECT for whole blocks, the partial last one read back and appended),
    so at most three such steps (each up to one 2 MiB batch longer) of the
    file are left in the cache; the file holds every relayed byte while the
    session is still open (nothing waits in wsgate's memory for the next
    block), and the recording is complete."""
    total, step = 32 << 20, 2 << 20
    data = harness.random_bytes(1 << 20, 9) * 32
    sender = backends.sender(data)
    # in the build tree, not tmp_path: /tmp may be a tmpfs, whose pages stay
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(wsgate_binary))) as rec:
        fs = subprocess.run(["stat", "-f", "-c", "%T", rec], capture_output=True, text=True)
        assert fs.stdout.strip() != "tmpfs", "the test needs a directory on a disk: %s" % rec
        gw.start({"route:bulk": route(sender.addr, "/", record=rec)})
        c = gw.ws("/")
        assert c.read_data(total, timeout=60) == data
        path = wait_file(rec, ".wsrec")

        def all_written():
            _, chunks = parse_open_wsrec(read_direct(path))
            return sum(len(d) for k, d in chunks if k == "o") == total
        harness.wait_until(all_written, timeout=30, what="every byte in the open recording")
        c.send(build_frame(harness.OP_CLOSE, harness.close_payload(1000)))
        c.next_close()
        c.close()

        def complete():
            with open(path, "rb") as f:
                f.seek(-64, os.SEEK_END)
                return re.search(rb"\n\+\d+\.\d{6} stop closed\n$", f.read())
        harness.wait_until(complete, timeout=30, what="recording closed")
        res, size = resident_bytes(path), os.path.getsize(path)
        assert size > total
        assert res <= 3 * (step + (2 << 20) + 4096), "%d of %d bytes cached" % (res, size)
        with open(path, "rb") as f:
            _, chunks = parse_wsrec(f.read())
        assert b"".join(d for k, d in chunks if k == "o") == data
        gw.stop()
