#!/usr/bin/env python3
"""layers.py - the layering rules of src/, checked on the built objects.

1. No two object files call each other, directly or through others: the
   graph "A uses a symbol B defines" (from nm) has no cycle.
2. No function in src/*.c is longer than 100 lines.

Usage: layers.py LIBWSGATE.a SRCDIR. Exit 0 when both hold, 1 with the
cycles and long functions listed."""
import re
import subprocess
import sys


def graph(lib):
    out = subprocess.run(["nm", "-A", lib], check=True, capture_output=True, text=True).stdout
    defs, uses = {}, {}
    for line in out.splitlines():
        m = re.match(r"^[^:]+:([^:]+\.o):\s*(?:[0-9a-f]+)?\s+([A-Za-z])\s+(\S+)$", line)
        if not m:
            continue
        obj, kind, sym = m.groups()
        uses.setdefault(obj, set())
        if kind == "U":
            uses[obj].add(sym)
        elif kind in "TDBR":
            defs[sym] = obj
    edges = {o: {defs[s] for s in syms if s in defs and defs[s] != o} for o, syms in uses.items()}
    return edges


def cycles(edges):
    found, state, stack = [], {}, []

    def visit(o):
        state[o] = 1
        stack.append(o)
        for n in sorted(edges.get(o, ())):
            if state.get(n) == 1:
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[o] = 2

    for o in sorted(edges):
        if o not in state:
            visit(o)
    return found


def long_functions(srcdir, limit=100):
    import glob
    bad = []
    for path in sorted(glob.glob(srcdir + "/*.c")):
        lines = open(path, encoding="utf-8").read().split("\n")
        start = None
        for i, line in enumerate(lines):
            if start is None and line == "{" and i > 0:
                start, name = i, lines[i - 1]
            elif start is not None and line == "}":
                if i - start - 1 > limit:
                    bad.append("%s:%d: %s (%d lines)" % (path, start, name.strip(), i - start - 1))
                start = None
    return bad


def main():
    lib, srcdir = sys.argv[1], sys.argv[2]
    cyc = cycles(graph(lib))
    longs = long_functions(srcdir)
    for c in cyc:
        print("cycle: " + " -> ".join(c))
    for f in longs:
        print("function over 100 lines: " + f)
    if not cyc and not longs:
        print("layers: no cycle between objects, no function over 100 lines")
    return 1 if cyc or longs else 0


if __name__ == "__main__":
    sys.exit(main())
