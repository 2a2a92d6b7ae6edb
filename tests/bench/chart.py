#!/usr/bin/python3
"""chart.py - draw the side-by-side table of `make bench` as an SVG chart.

usage: chart.py RESULTS.json [OUT.svg]   (default: RESULTS with .svg)

RESULTS.json is what tests/bench/run.py saves (BENCH_OUT): its "table" holds
the rows of the printed table, each {"label", "higher_is_better", "values":
{target: number or null}}, and "targets" their order. One small bar chart per
row (its own unit and scale), the targets side by side, each bar labelled
with its value; a row's title says whether higher or lower is better. Drawn
by gnuplot (Debian package gnuplot-nox) with its svg terminal; run.py calls
this after each run, and tests/bench/results-readme.json is the table of
README.md's Performance section, drawn as tests/bench/results-readme.svg.

Exit status 0, 1 when gnuplot is missing or fails, 2 on a usage error.
"""

import json
import math
import os
import shutil
import subprocess
import sys

COLOURS = {"direct": "#8c8c8c", "haproxy": "#3b75af", "websockify": "#8e6bb8",
           "wsgate": "#e8731a", "baseline": "#f3b77f"}
COLUMNS = 3


def quote(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fmt(v):
    return "%.0f" % v if v >= 100 else "%.3g" % v


def script(data, out):
    """The gnuplot program drawing data's table into out."""
    rows = [r for r in data["table"] if any(v is not None for v in r["values"].values())]
    targets = [t for t in data["targets"] if any(r["values"].get(t) is not None for r in rows)]
    names = data.get("names", {})
    nrows = max(1, math.ceil(len(rows) / COLUMNS))
    lines = [
        "set terminal svg size %d,%d dynamic enhanced font 'DejaVu Sans,11' background '#ffffff'"
        % (COLUMNS * 360, nrows * 230 + 60),
        "set output %s" % quote(out),
        "set encoding utf8",
        "set multiplot layout %d,%d title %s font ',14'" % (nrows, COLUMNS,
                                                             quote(data.get("title", "wsgate bench"))),
        "set style fill solid 0.9 border -1",
        "set boxwidth 0.7",
        "set yrange [0:*]",
        "set offsets 0.2, 0.2, 0, 0",
        "unset key",
        "set grid ytics lc rgb '#dddddd'",
        "set xtics scale 0 font ',10'",
        "set ytics font ',9'",
        "set format y '%g'",
    ]
    for i, r in enumerate(rows):
        present = [(t, r["values"][t]) for t in targets if r["values"].get(t) is not None]
        top = max(v for _, v in present) or 1
        lines.append("$d%d << EOD" % i)
        for n, (t, v) in enumerate(present):
            colour = int(COLOURS.get(t, "#444444")[1:], 16)
            lines.append("%d %s %r %d %s" % (n, quote(names.get(t, t)), v, colour, quote(fmt(v))))
        lines.append("EOD")
        better = "higher" if r["higher_is_better"] else "lower"
        lines += [
            "set title %s" % quote("%s\n{/*0.85 (%s is better)}" % (r["label"], better)),
            "set yrange [0:%r]" % (top * 1.22),
            "set xrange [-0.6:%r]" % (len(present) - 0.4),
            "plot $d%d using 1:3:4:xtic(2) with boxes lc rgb variable, "
            "'' using 1:3:5 with labels offset 0,0.7 font ',9'" % i,
        ]
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def draw(results, out=None):
    """Draw results (a path) into out; returns out, or None (message on stderr)."""
    out = out or os.path.splitext(results)[0] + ".svg"
    if shutil.which("gnuplot") is None:
        print("chart.py: gnuplot is not installed (Debian: apt-get install gnuplot-nox); no "
              "chart", file=sys.stderr)
        return None
    with open(results, encoding="utf-8") as f:
        data = json.load(f)
    if not data.get("table"):
        print("chart.py: %s has no table" % results, file=sys.stderr)
        return None
    p = subprocess.run(["gnuplot"], input=script(data, out), capture_output=True, text=True)
    if p.returncode != 0 or p.stderr.strip():
        print("chart.py: gnuplot: %s" % p.stderr.strip(), file=sys.stderr)
        return None if p.returncode != 0 else out
    return out


def main(argv):
    if len(argv) not in (2, 3) or argv[1].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out = draw(argv[1], argv[2] if len(argv) == 3 else None)
    if out:
        print("chart: %s" % out)
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
