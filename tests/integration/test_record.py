"""Recordings from the command line: `wsgate --replay FILE` (raw and
asciicast files, bad files, usage), websockify's `--record FILE`, and the
record / record_format keys under `wsgate -t`.

The writer itself (queue, formats, disk full) is covered by
tests/unit/test_record.c; the asciicast files it writes are checked with
`asciinema cat` there."""

import os
import subprocess

from harness import run_wsgate

HEAD = (b"WSREC 1\nroute: term\nclient: 127.0.0.1:5000\nbackend: 127.0.0.1:22\n"
        b"start: 2023-11-14T22:13:20.000000Z\nsession: 1r0abcd\n\n")


def replay(binary, path):
    return subprocess.run([binary, "--replay", str(path)], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30)


def test_replay_raw_binary_payload(wsgate_binary, tmp_path):
    payload = bytes(range(256))
    f = tmp_path / "term-20231114T221320Z-1r0abcd.wsrec"
    f.write_bytes(HEAD + b"+0.500000 i 256\n" + payload + b"\n"
                  + b"+1.250000 o 3\nok\n\n+2.000000 stop closed\n")
    r = replay(wsgate_binary, f)
    assert r.returncode == 0, r
    assert r.stderr == b""
    assert r.stdout == (HEAD[:-1] + b"[+0.500000 i 256]\n" + payload + b"\n"
                        + b"[+1.250000 o 3]\nok\n[+2.000000 stop closed]\n")


def test_replay_asciicast_prints_output(wsgate_binary, tmp_path):
    f = tmp_path / "sh.cast"
    f.write_text('{"version": 2, "width": 80, "height": 24, "timestamp": 1}\n'
                 '[0.1, "o", "$ "]\n[0.5, "i", "ls\\r"]\n'
                 '[0.6, "o", "a\\u001b[0m\\r\\n\\ud83d\\ude00\\u00e9"]\n')
    r = replay(wsgate_binary, f)
    assert r.returncode == 0, r
    assert r.stdout == "$ a\x1b[0m\r\n\U0001F600\u00e9".encode()


def test_replay_bad_file(wsgate_binary, tmp_path):
    f = tmp_path / "cut.wsrec"
    f.write_bytes(HEAD + b"+0.5 o 100\nonly a few bytes")
    r = replay(wsgate_binary, f)
    assert r.returncode == 1, r
    assert r.stderr.decode() == ("wsgate: %s: line 8 (offset %d): chunk cut short (the recording "
                                 "was stopped by an error?)\n" % (f, len(HEAD)))
    r = replay(wsgate_binary, tmp_path / "missing.wsrec")
    assert r.returncode == 1
    assert r.stderr.decode().endswith("missing.wsrec: No such file or directory\n")
    r = run_wsgate(wsgate_binary, ["--replay", str(f), "6080", "127.0.0.1:1"])
    assert r.returncode == 2, r
    assert "--replay FILE takes no other arguments" in r.stderr


def test_websockify_record_flag(wsgate_binary, tmp_path):
    r = run_wsgate(wsgate_binary, ["-t", "-v", "--record", str(tmp_path / "session"),
                                   "127.0.0.1:18999", "127.0.0.1:5900"])
    assert r.returncode == 0, r
    assert "[gateway]" in r.stdout
    assert "record = %s\n" % os.path.realpath(tmp_path) in r.stdout
    assert "record_format = raw\n" in r.stdout
    r = run_wsgate(wsgate_binary, ["-t", "--record", "/nonexistent/dir/session",
                                   "127.0.0.1:18999", "127.0.0.1:5900"])
    assert r.returncode == 1, r
    assert "<command line>:3: record: '/nonexistent/dir' is not a writable directory" in r.stderr


def test_record_keys_checked(wsgate_binary, tmp_path):
    ini = tmp_path / "w.ini"
    ini.write_text("[gateway]\nlisten = 127.0.0.1:18999\nrecord = rec\n"
                   "[route:a]\npath = /\nbackend = 127.0.0.1:1\nrecord_format = asciicast\n")
    r = run_wsgate(wsgate_binary, ["-t", "-c", str(ini)])
    assert r.returncode == 1, r
    assert "%s:3: record: 'rec' is not a writable directory" % ini in r.stderr
    (tmp_path / "rec").mkdir()
    r = run_wsgate(wsgate_binary, ["-t", "-v", "-c", str(ini)])
    assert r.returncode == 0, r
    # relative to the file's directory, stored resolved
    gateway, route = r.stdout.split("[route:a]")
    rec = os.path.realpath(tmp_path / "rec")
    assert "\nrecord = %s\nrecord_format = asciicast\n" % rec in route, r.stdout
    assert "\nrecord = %s\nrecord_format = raw\n" % rec in gateway, r.stdout
