#!/usr/bin/python3
"""Independent permessage-deflate codec for tests/unit/test_pmd.c (Python's
zlib module, RFC 7692 section 7.2).

usage: pmd_zlib.py c|d|f WBITS TAKEOVER IN OUT
  c  compress each message: raw deflate, Z_SYNC_FLUSH, the 00 00 ff ff tail
     removed; TAKEOVER 1 = one compressor for all messages, 0 = a new one
     per message
  f  like c but each message ends with a final block (Z_FINISH, no tail
     removed), as RFC 7692 7.2.3.4 allows
  d  decompress each message after appending 00 00 ff ff
IN and OUT hold messages as a 4-byte big-endian length and the bytes.
"""
import struct
import sys
import zlib

TAIL = b"\x00\x00\xff\xff"


def read_msgs(path):
    data = open(path, "rb").read()
    msgs, i = [], 0
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        msgs.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return msgs


def main():
    mode, wbits, takeover, src, dst = sys.argv[1:6]
    wbits, takeover = int(wbits), takeover == "1"
    out = []
    obj = None
    for m in read_msgs(src):
        if mode in "cf":
            if obj is None or not takeover:
                obj = zlib.compressobj(6, zlib.DEFLATED, -wbits)
            if mode == "c":
                z = obj.compress(m) + obj.flush(zlib.Z_SYNC_FLUSH)
                assert z.endswith(TAIL)
                out.append(z[:-4])
            else:
                out.append(obj.compress(m) + obj.flush(zlib.Z_FINISH))
                obj = None
        else:
            if obj is None or not takeover:
                obj = zlib.decompressobj(-wbits)
            out.append(obj.decompress(m + TAIL))
    with open(dst, "wb") as f:
        for m in out:
            f.write(struct.pack(">I", len(m)) + m)


main()
