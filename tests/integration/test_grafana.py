"""test_grafana.py - contrib/grafana/wsgate.json asks only for what wsgate exports.

Every PromQL query of the dashboard (panel targets and template variables)
is taken apart: the metric names it selects must be series a running wsgate
serves on metrics_path after some traffic (a histogram's _bucket, _sum and
_count included), and the label names it matches on or groups by must be
labels of those series (or instance and job, which Prometheus adds).
"""

import json
import os
import re

import harness
from harness import route
from ops_helpers import http_request, scrape

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD = os.path.join(HERE, "..", "..", "contrib", "grafana", "wsgate.json")

TARGET_LABELS = {"instance", "job"}  # added by Prometheus at scrape time
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "inf", "nan"}
IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def queries(dash):
    """(where, PromQL) of every panel target and query variable."""
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append(("panel %r %s" % (p["title"], t["refId"]), t["expr"]))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(%s)\)" % IDENT, q.strip())
            assert m, "variable %s: only label_values(SELECTOR, LABEL) is checked: %r" % (v["name"], q)
            out.append(("variable %s" % v["name"], m.group(1)))
            out.append(("variable %s (label)" % v["name"], "__label__ " + m.group(2) + " " + m.group(1)))
    return out


def parse(expr):
    """-> (metric names selected, label names matched or grouped by)."""
    labels = set()
    if expr.startswith("__label__ "):
        _, label, expr = expr.split(" ", 2)
        labels.add(label)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # string literals
    text = re.sub(r"\[[^\]]*\]", "", text)                    # range selectors
    for body in re.findall(r"\{([^}]*)\}", text):             # label matchers
        labels.update(re.findall(r"(%s)\s*(?:=~|!~|!=|=)" % IDENT, body))
    text = re.sub(r"\{[^}]*\}", " ", text)
    for body in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", text):
        labels.update(x.strip() for x in body.split(",") if x.strip())
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.$])(%s)(\s*\()?" % IDENT, text):
        if m.group(2) or m.group(1).lower() in KEYWORDS:
            continue  # a function call or an operator keyword
        names.add(m.group(1))
    return names, labels


def exported(gw, admin):
    """{series name: set of label names} of a scrape after some traffic."""
    m = scrape(gw, port=admin)
    out = {}
    for (name, labels) in m.samples:
        out.setdefault(name, set()).update(k for k, _ in labels)
    return out


def test_parse_takes_queries_apart():
    names, labels = parse('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"$y", z!="}"}'
                          '[$__rate_interval]))) / on (i) b offset 5m')
    assert (names, labels) == ({"a_bucket", "b"}, {"le", "x", "z", "i"})


def test_dashboard_queries_name_exported_metrics(gw, backends):
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    echo = backends.echo()
    admin = harness.free_port()
    gw.start({"gateway": {"listen": [gw.listen, "127.0.0.1:%d admin" % admin]},
              "route:app": route(echo.addr, "/ws")})
    # Traffic: a session (bytes, a connect latency, a result) and a failed handshake.
    c = gw.ws("/ws")
    c.send_frame(harness.OP_BINARY, b"grafana")
    assert c.read_data(7) == b"grafana"
    c.send_close(1000)
    c.expect_close(1000)
    assert http_request(gw.host, gw.port, "/ws").status == 400
    series = exported(gw, admin)
    problems = []
    checked = 0
    for where, expr in queries(dash):
        names, labels = parse(expr)
        if not expr.startswith("__label__ ") and not names:
            problems.append("%s: no metric name found in %r" % (where, expr))
        for n in names:
            checked += 1
            if n not in series:
                problems.append("%s: %s is not exported (wsgate serves %s)"
                                % (where, n, ", ".join(sorted(series))))
        have = set(TARGET_LABELS).union(*(series.get(n, set()) for n in names))
        for lb in labels - have:
            problems.append("%s: label %r is on none of %s" % (where, lb, sorted(names)))
    assert not problems, "\n".join(problems)
    assert checked >= 10, checked


def test_dashboard_panels_cover_the_issue_list():
    """The panels asked for: sessions by route and result, handshake failures
    by status, bytes/s each way, connect latency as a heatmap, dropped log
    lines; ids unique and every panel on the grid."""
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dash["panels"]}
    types = {p["title"]: p["type"] for p in dash["panels"]}

    def panel(metric, *words):
        return [t for t, e in exprs.items() if metric in e and all(w in e for w in words)]

    assert panel("wsgate_sessions_total", "by (route, result)")
    assert panel("wsgate_handshake_failures_total", "by (status)")
    assert panel("wsgate_bytes_total", "by (direction)")
    heat = panel("wsgate_backend_connect_seconds_bucket", "by (le)")
    assert any(types[t] == "heatmap" for t in heat), heat
    assert panel("wsgate_log_lines_dropped_total")
    assert panel("wsgate_recordings_total", "stopped")
    assert panel("wsgate_recording_bytes_total", "dropped")
    assert panel("wsgate_tls_record_offload_total", "by (result)")
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), ids
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
