#!/usr/bin/python3
"""check-packaging.py - check wsgate's packaging without a container engine.

Run through contrib/check-packaging.sh (or `make check-packaging`). Checks that
contrib/Dockerfile, contrib/kubernetes/sidecar.yaml, contrib/systemd/
wsgate.service, the container configuration contrib/docker/wsgate.ini, the
man pages doc/wsgate.8 and doc/wsgate.ini.5 and doc/doc.am are well formed
and agree with each other and with the sources: every path they name exists,
probes use health_path, the HEALTHCHECK follows the mounted configuration
(wsgate-healthcheck asks `wsgate --health-url`, no fixed URL), the final stage
installs the runtime library of every -dev package of contrib/deps.sh, the
documentation label names a file the image holds, the Prometheus annotations use
metrics_path, stop timeouts exceed drain_timeout, the unit is hardened, the
man pages render without warnings and cover every option, key and metric.

Exit status: 0 when everything holds, 1 with one line per problem otherwise,
2 on a usage error. --self-test breaks copies of the files in known ways and
fails unless every breakage is caught.

Environment: WSGATE=/path/to/wsgate also runs `wsgate -t` on the container
configuration and on the Kubernetes ConfigMap's wsgate.ini, and checks that
`wsgate --health-url` names the container configuration's admin listener.
"""

import argparse
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

DOCKERFILE = "contrib/Dockerfile"
DOCKERIGNORE = "contrib/Dockerfile.dockerignore"
DOCKER_INI = "contrib/docker/wsgate.ini"
K8S = "contrib/kubernetes/sidecar.yaml"
UNIT = "contrib/systemd/wsgate.service"
SAMPLE_INI = "etc/wsgate.ini"
MAN8 = "doc/wsgate.8"
MAN5 = "doc/wsgate.ini.5"
DOC_AM = "doc/doc.am"
DEPS = "contrib/deps.sh"
HEALTHCHECK_SH = "contrib/docker/wsgate-healthcheck"

# The Debian 12 package holding the runtime library of each -dev package
# contrib/deps.sh installs (the image's final stage installs these).
RUNTIME_OF = {
    "libev-dev": "libev4", "libssl-dev": "libssl3", "libinih-dev": "libinih1",
    "libhiredis-dev": "libhiredis0.14", "libc-ares-dev": "libc-ares2",
    "libjansson-dev": "libjansson4", "zlib1g-dev": "zlib1g", "libcrypt-dev": "libcrypt1",
}

# Defaults of DESIGN.md for the keys the checks compare.
DEFAULT_HEALTH_PATH = "/healthz"
DEFAULT_METRICS_PATH = "/metrics"
DEFAULT_DRAIN_TIMEOUT = 30.0
# After drain_timeout wsgate waits up to this long for the close handshakes
# (wsgate(8), SIGNALS): stop timeouts must cover both.
CLOSE_WAIT = 5.0

DOCKER_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
    "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL",
    "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}

# Paths inside the repository that the checked files may name.
REPO_PATH_RE = re.compile(
    r"(?<![\w/.$-])((?:contrib|doc|etc|src|tests|m4)/[\w.+-]+(?:/[\w.+-]+)*)")


class Problems:
    """Collects problems as 'file[:line]: message'."""

    def __init__(self):
        self.items = []
        self.checks = 0

    def check(self, ok, where, msg):
        self.checks += 1
        if not ok:
            self.items.append("%s: %s" % (where, msg))
        return ok

    def fail(self, where, msg):
        return self.check(False, where, msg)


def read(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()


def parse_duration(text):
    """wsgate duration ("30", "250ms", "30s", "5m", "1h") -> seconds, or None."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", text.strip())
    if not m:
        return None
    n = int(m.group(1))
    return n * {None: 1, "ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_systemd_time(text):
    """systemd time span ("40", "40s", "1min 30s", "2m") -> seconds, or None."""
    units = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60,
             "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600,
             "hour": 3600, "hours": 3600, "ms": 0.001, "msec": 0.001}
    text = text.strip()
    if text == "infinity":
        return float("inf")
    total = 0.0
    pos = 0
    for m in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        if m.start() != pos or m.group(2) not in units:
            return None
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and text else None


def parse_ini(text):
    """A wsgate.ini -> {section: {key: [(value, line), ...]}} (inih rules:
    ';' or '#' starts a comment line, ' ;' an inline comment)."""
    sections = {}
    cur = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        line = re.split(r"\s;", line, maxsplit=1)[0].strip()
        if line.startswith("["):
            cur = line[1:line.index("]")] if "]" in line else line[1:]
            sections.setdefault(cur, {})
            continue
        if "=" in line and cur is not None:
            key, value = line.split("=", 1)
            sections[cur].setdefault(key.strip(), []).append((value.strip(), n))
    return sections


def ini_get(sections, section, key, default=None):
    vals = sections.get(section, {}).get(key)
    if not vals or vals[-1][0] == "":
        return default
    return vals[-1][0]


def listen_ports(sections):
    """Ports and hosts of the [gateway] listen lines (default 0.0.0.0:8080)."""
    out = []
    for value, _ in sections.get("gateway", {}).get("listen", []) or [("0.0.0.0:8080", 0)]:
        addr = value.split()[0] if value.split() else ""
        tls = "tls" in value.split()[1:]
        m = re.fullmatch(r"(\[[^\]]*\]|[^:]*):(\d+)", addr)
        if m:
            out.append((m.group(1), int(m.group(2)), tls))
    return out


def admin_ports(sections):
    """Ports of the listen lines with the word "admin": with one, health_path
    and metrics_path are served there only (the probes must use it)."""
    out = set()
    for value, _ in sections.get("gateway", {}).get("listen", []) or []:
        words = value.split()
        m = re.fullmatch(r"(\[[^\]]*\]|[^:]*):(\d+)", words[0]) if words else None
        if m and "admin" in words[1:]:
            out.add(int(m.group(2)))
    return out


def gateway_settings(sections):
    drain = ini_get(sections, "gateway", "drain_timeout")
    return {
        "health_path": ini_get(sections, "gateway", "health_path", DEFAULT_HEALTH_PATH),
        "metrics_path": ini_get(sections, "gateway", "metrics_path", DEFAULT_METRICS_PATH),
        "drain_timeout": DEFAULT_DRAIN_TIMEOUT if drain is None else parse_duration(drain),
        "listens": listen_ports(sections),
        "admin": admin_ports(sections),
    }


def run(cmd, **kw):
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    except FileNotFoundError:
        return None


_tool_cache = {}


def run_on_file(cmd, path, **kw):
    """run(cmd + [path]), remembered by command and file content (the
    self-test runs every check once per breakage)."""
    with open(path, "rb") as f:
        key = (tuple(cmd), os.path.basename(path), f.read())
    if key not in _tool_cache:
        _tool_cache[key] = run(cmd + [path], **kw)
    return _tool_cache[key]


def wsgate_test(p, where, ini_text):
    """Run $WSGATE -t on ini_text when WSGATE names an executable."""
    exe = os.environ.get("WSGATE")
    if not exe:
        return
    if not os.access(exe, os.X_OK):
        p.fail(where, "WSGATE=%s is not an executable" % exe)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
        f.write(ini_text)
        name = f.name
    try:
        r = run([exe, "-t", "-c", name])
        out = (r.stdout + r.stderr).replace(name, where).strip()
        p.check(r.returncode == 0, where, "`wsgate -t` rejects it: %s" % out)
    finally:
        os.unlink(name)


# ---- the man pages -------------------------------------------------------

def check_man(p, root):
    for page in (MAN8, MAN5):
        path = os.path.join(root, page)
        if not p.check(os.path.isfile(path), page, "missing"):
            continue
        r = run_on_file(["groff", "-man", "-ww", "-z"], path)
        if r is None:
            p.fail(page, "groff not found (Debian package groff-base)")
        else:
            p.check(r.returncode == 0 and not r.stderr.strip(), page,
                    "groff -man -ww -z warns: %s" % r.stderr.strip().replace(path, page))
        if shutil.which("man"):
            r = run_on_file(["man", "--warnings=w,all", "-l"], path)
            p.check(r.returncode == 0 and not r.stderr.strip(), page,
                    "man -l --warnings warns: %s" % r.stderr.strip().replace(path, page))
        if shutil.which("mandoc"):
            r = run_on_file(["mandoc", "-T", "lint", "-W", "warning"], path)
            p.check(not (r.stdout + r.stderr).strip(), page, "mandoc -T lint: %s"
                    % (r.stdout + r.stderr).strip().replace(path, page))

    if not (os.path.isfile(os.path.join(root, MAN8)) and os.path.isfile(os.path.join(root, MAN5))):
        return
    man8, man5 = read(root, MAN8), read(root, MAN5)

    # .TH carries the package version of configure.ac.
    m = re.search(r"AC_INIT\(\[wsgate\],\s*\[([^\]]+)\]", read(root, "configure.ac"))
    version = m.group(1) if m else None
    for page, text in ((MAN8, man8), (MAN5, man5)):
        th = re.search(r"^\.TH .*\"wsgate ([^\"]+)\"", text, re.M)
        p.check(th is not None and th.group(1) == version, page,
                ".TH names version %s but configure.ac has %s"
                % (th.group(1) if th else "none", version))

    # Every option of src/cli.c (its opts[] and refusals[] tables) is in wsgate(8).
    main_c = read(root, "src/cli.c")
    lo = re.search(r"\} opts\[\]\s*=\s*\{(.*?)\};", main_c, re.S)
    longopts = re.findall(r'\{"([a-z][a-z0-9-]*)"', lo.group(1)) if lo else []
    rf = re.search(r"\} refusals\[\]\s*=\s*\{(.*?)\};", main_c, re.S)
    longopts += re.findall(r'\{"([a-z][a-z0-9-]*)"', rf.group(1)) if rf else []
    p.check(bool(longopts), "src/cli.c", "no long options found (opts[] moved?)")
    for opt in longopts:
        p.check(("\\-\\-" + opt.replace("-", "\\-")) in man8, MAN8,
                "option --%s of src/cli.c is not documented" % opt)
    shorts = re.findall(r'\{"[a-z][a-z0-9-]*", \'(.)\'', lo.group(1)) if lo else []
    p.check(bool(shorts), "src/cli.c", "no short options found in opts[]")
    for ch in shorts:
        p.check(("\\-" + ch) in man8, MAN8, "option -%s of src/cli.c is not documented" % ch)

    # Every key of the sample configuration has its entry in wsgate.ini(5).
    keys = set(re.findall(r"^\s*;?\s*([a-z_]+)\s*=", read(root, SAMPLE_INI), re.M))
    p.check(bool(keys), SAMPLE_INI, "no keys found")
    for key in sorted(keys):
        p.check(re.search(r"^\.BI %s \"" % re.escape(key), man5, re.M) is not None, MAN5,
                "key %s of %s has no entry (.BI %s \" = ...\")" % (key, SAMPLE_INI, key))

    # Every metric the sources declare (# TYPE lines) is in wsgate(8).
    metrics = set()
    for c in glob.glob(os.path.join(root, "src", "*.c")):
        with open(c, encoding="utf-8", errors="replace") as f:
            metrics.update(re.findall(r"# TYPE (wsgate_\w+)", f.read()))
    for name in sorted(metrics):
        p.check(name in man8, MAN8, "metric %s of src/ is not documented" % name)

    for word in ("SIGHUP", "SIGTERM", "SIGINT", "drain_timeout", "health_path", "metrics_path",
                 "EXIT STATUS", "FILES", "EXAMPLES"):
        p.check(word in man8, MAN8, "says nothing about %s" % word)


def check_doc_am(p, root):
    if not p.check(os.path.isfile(os.path.join(root, DOC_AM)), DOC_AM, "missing"):
        return
    text = read(root, DOC_AM).replace("\\\n", " ")
    m = re.search(r"^dist_man_MANS\s*\+?=\s*(.*)$", text, re.M)
    if p.check(m is not None, DOC_AM, "no dist_man_MANS"):
        pages = m.group(1).split()
        for page in (MAN8, MAN5):
            p.check(page in pages, DOC_AM, "dist_man_MANS does not install %s" % page)
        for page in pages:
            p.check(os.path.isfile(os.path.join(root, page)), DOC_AM,
                    "dist_man_MANS names %s, which does not exist" % page)
    p.check(re.search(r"^check-packaging:", text, re.M) is not None, DOC_AM,
            "no check-packaging target")
    p.check("include $(top_srcdir)/doc/doc.am" in read(root, "Makefile.am"), "Makefile.am",
            "does not include doc/doc.am")


# ---- Dockerfile --------------------------------------------------------

def docker_instructions(text):
    """Dockerfile text -> [(line, KEYWORD, argument text)], continuations
    joined, comments and heredoc bodies skipped."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i + 1
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        full = line
        while full.rstrip().endswith("\\") and i < len(lines):
            full = full.rstrip()[:-1] + " "
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue
            full += nxt
        parts = full.strip().split(None, 1)
        kw = parts[0].upper()
        arg = parts[1] if len(parts) > 1 else ""
        for tag in re.findall(r"<<-?[\"']?(\w+)[\"']?", arg) if kw in ("RUN", "COPY", "ADD") else []:
            while i < len(lines) and lines[i].strip() != tag:
                i += 1
            i += 1
        out.append((start, parts[0], kw, arg))
    return out


def split_flags(arg):
    """'--a=b --c rest' -> ({'a': 'b', 'c': True}, 'rest')."""
    flags = {}
    while True:
        m = re.match(r"--([a-z-]+)(?:=(\S*))?\s*", arg)
        if not m:
            return flags, arg
        flags[m.group(1)] = m.group(2) if m.group(2) is not None else True
        arg = arg[m.end():]


def exec_form(arg):
    """JSON array form -> list, else None."""
    a = arg.strip()
    if not a.startswith("["):
        return None
    try:
        v = json.loads(a)
    except ValueError:
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def dockerignore_patterns(root):
    path = os.path.join(root, DOCKERIGNORE)
    if not os.path.isfile(path):
        return []
    pats = []
    for line in read(root, DOCKERIGNORE).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line.rstrip("/"))
    return pats


def ignored(rel, pats):
    rel = rel.strip("/")
    verdict = False
    for pat in pats:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        comps = rel.split("/")
        prefixes = ["/".join(comps[:k]) for k in range(1, len(comps) + 1)]
        hit = any(fnmatch.fnmatchcase(x, pat) or
                  (pat.startswith("**/") and fnmatch.fnmatchcase(x.split("/")[-1], pat[3:]))
                  for x in prefixes)
        if hit:
            verdict = not neg
    return verdict


def makefile_components(root):
    """Top-level entries of the tree that Makefile.am (and what it includes)
    needs for `make && make install` (EXTRA_DIST and recipes left out)."""
    needed = {"autogen.sh", "configure.ac", "Makefile.am"}
    todo = ["Makefile.am"]
    seen = set()
    while todo:
        am = todo.pop()
        if am in seen or not os.path.isfile(os.path.join(root, am)):
            continue
        seen.add(am)
        text = read(root, am).replace("\\\n", " ")
        for line in text.splitlines():
            if line.startswith("\t") or line.lstrip().startswith("#"):
                continue
            m = re.match(r"\s*include\s+(\S+)", line)
            if m:
                inc = m.group(1).replace("$(top_srcdir)/", "").replace("$(srcdir)/", "")
                todo.append(inc)
                needed.add(inc.split("/")[0])
                continue
            m = re.match(r"\s*([A-Za-z0-9_]+)\s*[+:]?=\s*(.*)", line)
            if not m or m.group(1) == "EXTRA_DIST":
                continue
            for tok in m.group(2).split():
                tok = tok.replace("$(top_srcdir)/", "").replace("$(srcdir)/", "")
                tok = re.sub(r"^-I", "", tok)
                first = tok.split("/")[0]
                if "/" in tok and "$" not in first and os.path.exists(os.path.join(root, first)):
                    needed.add(first)
                elif tok == "m4" and os.path.isdir(os.path.join(root, "m4")):
                    needed.add("m4")
    return needed


def check_dockerfile(p, root, docker_cfg):
    """Returns the numeric USER uid of the final stage (or None)."""
    if not p.check(os.path.isfile(os.path.join(root, DOCKERFILE)), DOCKERFILE, "missing"):
        return None
    text = read(root, DOCKERFILE)
    instrs = docker_instructions(text)
    pats = dockerignore_patterns(root)
    stages = []  # dicts: name, line, instrs
    where = lambda n: "%s:%d" % (DOCKERFILE, n)

    for n, word, kw, arg in instrs:
        if not p.check(kw in DOCKER_INSTRUCTIONS, where(n), "unknown instruction '%s'" % word):
            continue
        if kw == "FROM":
            flags, rest = split_flags(arg)
            toks = rest.split()
            name = None
            if len(toks) == 3 and toks[1].upper() == "AS":
                name = toks[2].lower()
            else:
                p.check(len(toks) == 1, where(n), "FROM: expected 'FROM image [AS name]'")
            if name:
                p.check(name not in [s["name"] for s in stages], where(n),
                        "stage name '%s' used twice" % name)
            stages.append({"name": name, "image": toks[0] if toks else "", "line": n, "instrs": []})
            continue
        if not stages:
            p.check(kw == "ARG", where(n), "%s before the first FROM" % kw)
            continue
        stages[-1]["instrs"].append((n, kw, arg))

    if not p.check(len(stages) >= 2, DOCKERFILE, "not a multi-stage build (%d FROM)" % len(stages)):
        return None
    for s in stages:
        p.check(s["image"] == "debian:12-slim" or s["image"].lower() in
                [x["name"] for x in stages], where(s["line"]),
                "stage based on '%s', expected debian:12-slim" % s["image"])

    build, final = stages[0], stages[-1]
    build_run = " ".join(a for _, k, a in build["instrs"] if k == "RUN")
    prefix = re.search(r"--prefix=(\S+)", build_run)
    sysconf = re.search(r"--sysconfdir=(\S+)", build_run)
    destdir = re.search(r"make install DESTDIR=(\S+)", build_run)
    for what, m in (("./configure --prefix=", prefix), ("--sysconfdir=", sysconf),
                    ("make install DESTDIR=", destdir)):
        p.check(m is not None, where(build["line"]), "build stage does not run %s" % what)
    p.check("./autogen.sh" in build_run, where(build["line"]), "build stage does not run ./autogen.sh")
    build_pkgs = deps_packages(root)
    if not re.search(r"\bcontrib/deps\.sh\b", build_run):  # else deps.sh's own list
        for pkg in build_pkgs or ("libev-dev", "libssl-dev", "libinih-dev", "pkg-config",
                                  "autoconf", "automake"):
            p.check(re.search(r"\b%s\b" % re.escape(pkg), build_run) is not None,
                    where(build["line"]), "build stage does not install %s" % pkg)
    sbin = (prefix.group(1) if prefix else "/usr/local") + "/sbin/wsgate"

    # COPY/ADD sources, per stage; destinations of the final stage.
    copied_build = set()
    final_dests = {}
    for si, s in enumerate(stages):
        workdir = "/"
        for n, kw, arg in s["instrs"]:
            if kw == "WORKDIR":
                workdir = arg.strip()
            if kw not in ("COPY", "ADD"):
                continue
            flags, rest = split_flags(arg)
            for f in flags:
                p.check(f in ("from", "chown", "chmod", "link", "parents", "exclude",
                              "checksum", "keep-git-dir"), where(n), "%s: unknown flag --%s" % (kw, f))
            args = exec_form(rest)
            if args is None:
                args = shlex.split(rest)
            if not p.check(len(args) >= 2, where(n), "%s needs a source and a destination" % kw):
                continue
            srcs, dest = args[:-1], args[-1]
            if len(srcs) > 1:
                p.check(dest.endswith("/"), where(n), "%s of several sources: the "
                        "destination must end in /" % kw)
            src_from = flags.get("from")
            if src_from:
                names = [x["name"] for x in stages[:si]]
                ok = src_from.lower() in names or (src_from.isdigit() and int(src_from) < si)
                p.check(ok or ":" in src_from or "/" in src_from, where(n),
                        "--from=%s names no earlier stage (stages: %s)"
                        % (src_from, ", ".join(str(x) for x in names)))
                if ok and destdir:
                    for src in srcs:
                        p.check(src.startswith(destdir.group(1).rstrip("/") + "/"), where(n),
                                "copies %s, which `make install DESTDIR=%s` does not produce"
                                % (src, destdir.group(1)))
                        if src == destdir.group(1).rstrip("/") + sbin:
                            final_dests[dest] = "<wsgate>"
                        else:
                            final_dests[dest] = src
                continue
            for src in srcs:
                if re.match(r"https?://", src):
                    continue
                hits = glob.glob(os.path.join(root, src))
                p.check(bool(hits), where(n), "%s source '%s' does not exist in the tree" % (kw, src))
                p.check(not ignored(src, pats), where(n),
                        "%s source '%s' is excluded by %s" % (kw, src, DOCKERIGNORE))
                if si == 0:
                    copied_build.add(src.strip("/").split("/")[0] if src not in ("./", ".")
                                     else ".")
                if si == len(stages) - 1:
                    d = dest if not dest.endswith("/") else dest + os.path.basename(src)
                    if not d.startswith("/"):
                        d = workdir.rstrip("/") + "/" + d
                    final_dests[d] = src

    # The build stage gets every part of the tree the build needs.
    if "." not in copied_build:
        for comp in sorted(makefile_components(root)):
            p.check(comp in copied_build, where(build["line"]),
                    "the build stage does not COPY %s, which Makefile.am needs" % comp)

    # The final stage: user, port, entrypoint, command, health check, signal.
    last = {}
    for n, kw, arg in final["instrs"]:
        last[kw] = (n, arg)
    uid = None
    if p.check("USER" in last, where(final["line"]), "the final stage sets no USER (runs as root)"):
        n, user = last["USER"]
        u = user.strip().split(":")[0]
        p.check(u.isdigit() and u != "0", where(n),
                "USER %s: use a numeric non-root uid (Kubernetes runAsNonRoot checks it)" % user)
        uid = int(u) if u.isdigit() else None
    final_run = " ".join(a for _, k, a in final["instrs"] if k == "RUN")
    runtime = ["ca-certificates"]
    for dev in (x for x in build_pkgs if x.endswith("-dev")):
        if p.check(dev in RUNTIME_OF, DEPS, "%s: which package has its runtime library? (add it "
                   "to RUNTIME_OF in %s)" % (dev, os.path.basename(__file__))):
            runtime.append(RUNTIME_OF[dev])
    for pkg in runtime:
        p.check(re.search(r"\b%s\b" % re.escape(pkg), final_run) is not None,
                where(final["line"]), "the final stage does not install %s" % pkg)
    for pkg in ("-dev", "build-essential", "autoconf"):
        p.check(pkg not in final_run, where(final["line"]),
                "the final stage installs build tools (%s)" % pkg)

    ports = {lp[1] for lp in docker_cfg["listens"]} if docker_cfg else set()
    if p.check("EXPOSE" in last, where(final["line"]), "no EXPOSE"):
        n, arg = last["EXPOSE"]
        exposed = {int(x.split("/")[0]) for x in arg.split() if x.split("/")[0].isdigit()}
        p.check(ports <= exposed, where(n), "EXPOSE %s, but %s listens on %s"
                % (arg, DOCKER_INI, ", ".join(str(x) for x in sorted(ports))))

    if p.check("ENTRYPOINT" in last, where(final["line"]), "no ENTRYPOINT"):
        n, arg = last["ENTRYPOINT"]
        ep = exec_form(arg)
        if p.check(ep is not None, where(n), "ENTRYPOINT must use the JSON form, so that "
                   "wsgate is PID 1 and gets SIGTERM"):
            p.check(ep[0] == sbin, where(n), "ENTRYPOINT runs %s, but --prefix installs %s"
                    % (ep[0], sbin))
            p.check(final_dests.get(ep[0]) == "<wsgate>", where(n),
                    "%s is not copied from the build stage's install" % ep[0])
    if p.check("CMD" in last, where(final["line"]), "no CMD"):
        n, arg = last["CMD"]
        cmd = exec_form(arg)
        if p.check(cmd is not None and "-c" in cmd[:-1], where(n),
                   "CMD must be a JSON form with -c FILE"):
            conf = cmd[cmd.index("-c") + 1]
            p.check(conf == "/etc/wsgate/wsgate.ini", where(n),
                    "CMD reads %s, not /etc/wsgate/wsgate.ini" % conf)
            p.check(final_dests.get(conf) == DOCKER_INI, where(n),
                    "%s is not copied from %s" % (conf, DOCKER_INI))
    if p.check("STOPSIGNAL" in last, where(final["line"]), "no STOPSIGNAL"):
        n, arg = last["STOPSIGNAL"]
        p.check(arg.strip() in ("SIGTERM", "TERM", "15"), where(n),
                "STOPSIGNAL %s: wsgate drains on SIGTERM" % arg.strip())

    if p.check("HEALTHCHECK" in last, where(final["line"]), "no HEALTHCHECK"):
        n, arg = last["HEALTHCHECK"]
        flags, rest = split_flags(arg)
        for f in flags:
            p.check(f in ("interval", "timeout", "start-period", "start-interval", "retries"),
                    where(n), "HEALTHCHECK: unknown option --%s" % f)
        m = re.match(r"CMD\s+(.*)", rest, re.S)
        if p.check(m is not None, where(n), "HEALTHCHECK without CMD"):
            cmd = exec_form(m.group(1)) or shlex.split(m.group(1))
            urls = [u for c in cmd for u in re.findall(r"https?://[^\s\"']+", c)]
            p.check(not urls, where(n), "HEALTHCHECK names the URL %s: a fixed URL does not follow "
                    "a mounted configuration (wsgate-healthcheck asks `wsgate --health-url`; "
                    "WSGATE_HEALTH_URL overrides it)" % " ".join(urls))
            check_health_url(p, root, docker_cfg)
            exe = cmd[0] if cmd else ""
            p.check(exe in final_dests or re.search(r"\b%s\b" % re.escape(os.path.basename(exe)),
                                                    final_run) is not None,
                    where(n), "HEALTHCHECK runs %s, which the final stage neither copies nor "
                    "installs" % exe)
    for n, kw, arg in final["instrs"]:
        if kw != "LABEL":
            continue
        for key, val in re.findall(r'([\w.-]+)="([^"]*)"', arg):
            if key != "org.opencontainers.image.documentation":
                continue
            doc = re.match(r"file://(/\S+)$", val)
            p.check(doc is not None and any(doc.group(1) == d or (d.endswith("/") and
                                                                  doc.group(1).startswith(d))
                                            for d in final_dests), where(n),
                    "the documentation label names %r, which is no file:// path the final "
                    "stage copies (the image holds no other documentation)" % val)
    return uid


def deps_packages(root):
    """The packages contrib/deps.sh installs without --test (its pkgs= lines
    before the --test branch)."""
    if not os.path.isfile(os.path.join(root, DEPS)):
        return []
    text = read(root, DEPS).split('if [ "${1:-}" = "--test" ]')[0]
    pkgs = []
    for m in re.finditer(r'^pkgs="([^"]*)"', text, re.M):
        pkgs += [w for w in m.group(1).split() if w != "$pkgs"]
    return pkgs


def check_health_url(p, root, docker_cfg):
    """wsgate-healthcheck asks `wsgate --health-url` unless WSGATE_HEALTH_URL
    is set, and (with $WSGATE) that names the container configuration's admin
    listener and health_path: what the HEALTHCHECK will probe."""
    if os.path.isfile(os.path.join(root, HEALTHCHECK_SH)):
        code = "\n".join(l for l in read(root, HEALTHCHECK_SH).splitlines()
                         if not l.lstrip().startswith("#"))
        for word in ("wsgate --health-url", "$WSGATE_HEALTH_URL", "${WSGATE_HEALTH_URL"):
            p.check(word in code or word.startswith("$") and word.replace("$", "${") in code,
                    HEALTHCHECK_SH, "does not use %s" % word.lstrip("${"))
    exe = os.environ.get("WSGATE")
    if not exe or not docker_cfg or not os.access(exe, os.X_OK):
        return
    r = run([exe, "--health-url", "-c", os.path.join(root, DOCKER_INI)])
    url = r.stdout.strip() if r and r.returncode == 0 else ""
    um = re.match(r"http://([^/]+):(\d+)(/.*)$", url)
    if not p.check(um is not None, DOCKER_INI, "`wsgate --health-url` prints no URL: %s"
                   % (r.stderr.strip() if r else "cannot run")):
        return
    p.check(um.group(3) == docker_cfg["health_path"], DOCKER_INI, "`wsgate --health-url` "
            "probes %s but health_path is %s" % (um.group(3), docker_cfg["health_path"]))
    want = docker_cfg["admin"] or {lp[1] for lp in docker_cfg["listens"]}
    p.check(int(um.group(2)) in want, DOCKER_INI, "`wsgate --health-url` probes port %s, not "
            "one of %s" % (um.group(2), sorted(want)))


def check_docker_ini(p, root):
    if not p.check(os.path.isfile(os.path.join(root, DOCKER_INI)), DOCKER_INI, "missing"):
        return None
    text = read(root, DOCKER_INI)
    ini = parse_ini(text)
    cfg = gateway_settings(ini)
    p.check(any(h in ("0.0.0.0", "[::]", "") for h, port, _ in cfg["listens"]
                  if port not in cfg["admin"]), DOCKER_INI,
            "no listen line on every address (0.0.0.0 or [::]): unreachable from outside "
            "the container")
    p.check(all(port >= 1024 for _, port, _ in cfg["listens"]), DOCKER_INI,
            "listens below port 1024, which the unprivileged container user cannot bind")
    for key in ("health_path", "metrics_path"):
        p.check(ini_get(ini, "gateway", key) is not None, DOCKER_INI, "%s is not set" % key)
    routes = [s for s in ini if s.startswith("route:")]
    p.check(bool(routes), DOCKER_INI, "no [route:NAME]")
    wsgate_test(p, DOCKER_INI, text)
    return cfg


# ---- Kubernetes --------------------------------------------------------

def k8s_port(container, port):
    """A probe or targetPort (number or name) -> container port number."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for cp in container.get("ports") or []:
        if cp.get("name") == port:
            return cp.get("containerPort")
    return None


def check_k8s(p, root, image_uid):
    if not p.check(os.path.isfile(os.path.join(root, K8S)), K8S, "missing"):
        return
    try:
        import yaml
    except ImportError:
        p.fail(K8S, "cannot check: python3 has no yaml module (Debian package python3-yaml)")
        return
    try:
        docs = [d for d in yaml.safe_load_all(read(root, K8S)) if d is not None]
    except yaml.YAMLError as e:
        p.fail(K8S, "invalid YAML: %s" % str(e).replace("\n", " "))
        return
    by_kind = {}
    for i, d in enumerate(docs):
        if not p.check(isinstance(d, dict) and d.get("apiVersion") and d.get("kind")
                       and (d.get("metadata") or {}).get("name"), K8S,
                       "document %d lacks apiVersion, kind or metadata.name" % (i + 1)):
            continue
        by_kind.setdefault(d["kind"], []).append(d)
        for field in ("labels", "annotations"):
            for k, v in ((d.get("metadata") or {}).get(field) or {}).items():
                p.check(isinstance(v, str), K8S, "%s %s: %s '%s' must be a string (quote it)"
                        % (d["kind"], d["metadata"]["name"], field[:-1], k))
    for kind in ("ConfigMap", "Deployment", "Service"):
        p.check(kind in by_kind, K8S, "no %s" % kind)
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}

    for dep in by_kind.get("Deployment", []):
        dname = "Deployment %s" % dep["metadata"]["name"]
        spec = dep.get("spec") or {}
        tmpl = spec.get("template") or {}
        tmeta = tmpl.get("metadata") or {}
        pod = tmpl.get("spec") or {}
        labels = tmeta.get("labels") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        p.check(sel and all(labels.get(k) == v for k, v in sel.items()), K8S,
                "%s: selector.matchLabels %s does not match the pod labels %s"
                % (dname, sel, labels))
        for k, v in (tmeta.get("annotations") or {}).items():
            p.check(isinstance(v, str), K8S, "%s: annotation %s must be a string (quote it)"
                    % (dname, k))
        containers = pod.get("containers") or []
        ws = [c for c in containers if c.get("name") == "wsgate" or "wsgate" in str(c.get("image"))]
        if not p.check(len(ws) == 1, K8S, "%s: expected one wsgate container, found %d"
                       % (dname, len(ws))):
            continue
        w = ws[0]
        wname = "%s: container %s" % (dname, w.get("name"))

        # The configuration: -c FILE inside a ConfigMap volume.
        argv = (w.get("command") or []) + (w.get("args") or [])
        conf = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else "/etc/wsgate/wsgate.ini"
        p.check(conf == "/etc/wsgate/wsgate.ini", K8S,
                "%s reads %s, not /etc/wsgate/wsgate.ini" % (wname, conf))
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        ini = None
        mounts = [m for m in w.get("volumeMounts") or []
                  if conf.startswith(m.get("mountPath", "").rstrip("/") + "/")]
        if p.check(len(mounts) == 1, K8S, "%s: no volume mounted over %s"
                   % (wname, os.path.dirname(conf))):
            m = mounts[0]
            p.check(m.get("mountPath") == "/etc/wsgate", K8S,
                    "%s: the configuration is mounted at %s, not /etc/wsgate"
                    % (wname, m.get("mountPath")))
            p.check(m.get("readOnly") is True, K8S, "%s: mount the configuration readOnly" % wname)
            vol = volumes.get(m.get("name"))
            cmref = (vol or {}).get("configMap") or {}
            cm = configmaps.get(cmref.get("name"))
            if p.check(cm is not None, K8S, "%s: volume %s is no ConfigMap of this file"
                       % (wname, m.get("name"))):
                key = conf[len(m["mountPath"].rstrip("/")) + 1:]
                for item in cmref.get("items") or []:
                    if item.get("path") == key:
                        key = item.get("key")
                data = (cm.get("data") or {}).get(key)
                if p.check(isinstance(data, str), K8S, "ConfigMap %s has no key %s"
                           % (cm["metadata"]["name"], key)):
                    ini = parse_ini(data)
                    wsgate_test(p, "%s (ConfigMap %s, %s)" % (K8S, cm["metadata"]["name"], key),
                                data)
        if ini is None:
            continue
        cfg = gateway_settings(ini)
        cmname = "the ConfigMap's wsgate.ini"
        ports = {lp[1] for lp in cfg["listens"]}
        p.check(any(h in ("0.0.0.0", "[::]", "") for h, port, _ in cfg["listens"]
                  if port not in cfg["admin"]), K8S,
                "%s listens on no pod address (0.0.0.0 or [::])" % cmname)
        for key in ("health_path", "metrics_path", "drain_timeout"):
            p.check(ini_get(ini, "gateway", key) is not None, K8S, "%s does not set %s"
                    % (cmname, key))
        declared = {cp.get("containerPort") for cp in w.get("ports") or []}
        p.check(ports <= declared, K8S, "%s: containerPorts %s do not include the listen "
                "ports %s" % (wname, sorted(x for x in declared if x), sorted(ports)))

        for probe in ("readinessProbe", "livenessProbe"):
            pr = (w.get(probe) or {}).get("httpGet")
            if not p.check(pr is not None, K8S, "%s has no %s.httpGet" % (wname, probe)):
                continue
            p.check(pr.get("path") == cfg["health_path"], K8S, "%s: %s probes %s but health_path "
                    "is %s" % (wname, probe, pr.get("path"), cfg["health_path"]))
            p.check(k8s_port(w, pr.get("port")) in ports, K8S, "%s: %s probes port %s, which "
                    "wsgate does not listen on" % (wname, probe, pr.get("port")))
            p.check(not cfg["admin"] or k8s_port(w, pr.get("port")) in cfg["admin"], K8S,
                    "%s: %s probes port %s, but health_path is served on the admin listener %s "
                    "only" % (wname, probe, pr.get("port"), sorted(cfg["admin"])))

        grace = pod.get("terminationGracePeriodSeconds")
        if cfg["drain_timeout"] is None:
            p.fail(K8S, "%s: drain_timeout is not a duration" % cmname)
        elif p.check(isinstance(grace, int), K8S, "%s: no terminationGracePeriodSeconds "
                     "(the default 30 s is no more than drain_timeout)" % dname):
            p.check(grace >= cfg["drain_timeout"] + CLOSE_WAIT, K8S,
                    "%s: terminationGracePeriodSeconds %d is less than drain_timeout %gs + %gs "
                    "for the close handshakes" % (dname, grace, cfg["drain_timeout"], CLOSE_WAIT))

        ann = tmeta.get("annotations") or {}
        p.check(ann.get("prometheus.io/scrape") == "true", K8S,
                "%s: pod annotation prometheus.io/scrape is not \"true\"" % dname)
        p.check(str(ann.get("prometheus.io/port")) in {str(x) for x in ports}, K8S,
                "%s: prometheus.io/port %s is not a listen port %s"
                % (dname, ann.get("prometheus.io/port"), sorted(ports)))
        p.check(ann.get("prometheus.io/path") == cfg["metrics_path"], K8S,
                "%s: prometheus.io/path %s but metrics_path is %s"
                % (dname, ann.get("prometheus.io/path"), cfg["metrics_path"]))

        # Every container: non-root, read-only root, no capabilities.
        psc = pod.get("securityContext") or {}
        for c in containers:
            sc = c.get("securityContext") or {}
            cname = "%s: container %s" % (dname, c.get("name"))
            nonroot = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            p.check(nonroot is True, K8S, "%s: runAsNonRoot is not true" % cname)
            p.check(sc.get("runAsUser", psc.get("runAsUser")) != 0, K8S, "%s runs as uid 0" % cname)
            p.check(sc.get("readOnlyRootFilesystem") is True, K8S,
                    "%s: readOnlyRootFilesystem is not true" % cname)
            p.check(sc.get("allowPrivilegeEscalation") is False, K8S,
                    "%s: allowPrivilegeEscalation is not false" % cname)
            drop = ((sc.get("capabilities") or {}).get("drop")) or []
            p.check("ALL" in drop, K8S, "%s: capabilities.drop does not list ALL" % cname)
            p.check(not (sc.get("capabilities") or {}).get("add"), K8S,
                    "%s adds capabilities" % cname)
            stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command")
            if isinstance(grace, int) and stop and os.path.basename(stop[0]) == "sleep":
                p.check(len(stop) == 2 and stop[1].isdigit() and int(stop[1]) < grace, K8S,
                        "%s: preStop %s does not end within terminationGracePeriodSeconds %d"
                        % (cname, " ".join(stop), grace))
        uid = (w.get("securityContext") or {}).get("runAsUser", psc.get("runAsUser"))
        if image_uid is not None and uid is not None:
            p.check(uid == image_uid, K8S, "%s: runAsUser %s, but the image's USER is %s"
                    % (wname, uid, image_uid))

        # Local backends are ports of the pod's other containers.
        others = {cp.get("containerPort") for c in containers if c is not w
                  for cp in c.get("ports") or []}
        for sect, keys in ini.items():
            for value, _ in keys.get("backend", []) if sect.startswith("route:") else []:
                m = re.fullmatch(r"(127\.0\.0\.1|localhost|\[::1\]):(\d+)", value)
                if m:
                    p.check(int(m.group(2)) in others, K8S,
                            "[%s] backend %s: no other container of %s declares port %s"
                            % (sect, value, dname, m.group(2)))

        # Services that select this pod reach wsgate's listen ports.
        for svc in by_kind.get("Service", []):
            ssel = (svc.get("spec") or {}).get("selector") or {}
            sname = "Service %s" % svc["metadata"]["name"]
            if not (ssel and all(labels.get(k) == v for k, v in ssel.items())):
                p.fail(K8S, "%s selects no pod of %s (selector %s, labels %s)"
                       % (sname, dname, ssel, labels))
                continue
            for sp in (svc.get("spec") or {}).get("ports") or []:
                tp = sp.get("targetPort", sp.get("port"))
                p.check(k8s_port(w, tp) in ports, K8S, "%s: targetPort %s is not a port wsgate "
                        "listens on %s" % (sname, tp, sorted(ports)))


# ---- systemd -----------------------------------------------------------

def parse_unit(text):
    """-> {section: {key: [(value, line)]}} (continuations joined)."""
    out = {}
    cur = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        n = i + 1
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            cur = line.strip("[]")
            out.setdefault(cur, {})
            continue
        if "=" in line and cur:
            k, v = line.split("=", 1)
            out[cur].setdefault(k.strip(), []).append((v.strip(), n))
    return out


def check_unit(p, root):
    if not p.check(os.path.isfile(os.path.join(root, UNIT)), UNIT, "missing"):
        return
    text = read(root, UNIT)
    unit = parse_unit(text)
    svc = unit.get("Service", {})
    yes = ("yes", "true", "1", "on")

    def last(key):
        vals = svc.get(key)
        return vals[-1][0] if vals else None

    for key in ("DynamicUser", "ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges",
                "MemoryDenyWriteExecute", "LockPersonality", "RestrictNamespaces"):
        p.check((last(key) or "").lower() in yes, UNIT, "%s=yes is missing" % key)
    for key, want in (("ProtectSystem", "strict"), ("KillSignal", "SIGTERM"),
                      ("Restart", "on-failure"), ("LimitNOFILE", "65536")):
        p.check(last(key) == want, UNIT, "%s=%s expected, found %s" % (key, want, last(key)))
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        vals = svc.get(key)
        p.check(vals is not None and all(v == "" for v, _ in vals), UNIT,
                "%s= must be present and empty (found %s)"
                % (key, [v for v, _ in vals] if vals else "nothing"))
    fams = last("RestrictAddressFamilies")
    p.check(fams is not None and set(fams.split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}, UNIT,
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX expected, found %s" % fams)
    filters = [v for v, _ in svc.get("SystemCallFilter", [])]
    p.check(any("@system-service" in v.split() and not v.startswith("~") for v in filters), UNIT,
            "SystemCallFilter=@system-service is missing")
    p.check(last("ExecStartPre") == "/usr/sbin/wsgate -t -c /etc/wsgate/wsgate.ini", UNIT,
            "ExecStartPre=/usr/sbin/wsgate -t -c /etc/wsgate/wsgate.ini expected, found %s"
            % last("ExecStartPre"))
    p.check(last("ExecStart") == "/usr/sbin/wsgate -c /etc/wsgate/wsgate.ini", UNIT,
            "ExecStart=/usr/sbin/wsgate -c /etc/wsgate/wsgate.ini expected, found %s"
            % last("ExecStart"))
    reloads = [v for v, _ in svc.get("ExecReload", [])]
    p.check(reloads and reloads[-1] == "/bin/kill -HUP $MAINPID", UNIT,
            "the last ExecReload must be /bin/kill -HUP $MAINPID (found %s)" % reloads)
    p.check("man:wsgate(8)" in (dict(unit.get("Unit", {})).get("Documentation", [("", 0)])[-1][0]),
            UNIT, "Documentation= does not name man:wsgate(8)")

    # The stop timeout covers the drain of the configuration it runs.
    sample = parse_ini(read(root, SAMPLE_INI))
    cfg = gateway_settings(sample)
    drain = cfg["drain_timeout"] if cfg["drain_timeout"] is not None else DEFAULT_DRAIN_TIMEOUT
    stop = parse_systemd_time(last("TimeoutStopSec") or "90s")
    p.check(stop is not None and stop >= drain + CLOSE_WAIT, UNIT,
            "TimeoutStopSec=%s is less than drain_timeout %gs (of %s) + %gs"
            % (last("TimeoutStopSec"), drain, SAMPLE_INI, CLOSE_WAIT))
    p.check(all(port >= 1024 for _, port, _ in cfg["listens"]), SAMPLE_INI,
            "listens below port 1024, which the unit (no capabilities) cannot bind")

    if shutil.which("systemd-analyze"):
        tmp = tempfile.mkdtemp()
        try:
            copy = os.path.join(tmp, "wsgate.service")
            with open(copy, "w") as f:
                f.write(text if os.access("/usr/sbin/wsgate", os.X_OK)
                        else text.replace("/usr/sbin/wsgate", "/bin/true"))
            r = run_on_file(["systemd-analyze", "verify", "--man=no"], copy, cwd=tmp)
            out = re.sub(r"\S*/wsgate\.service", UNIT, (r.stdout + r.stderr).strip())
            p.check(r.returncode == 0 and not out, UNIT, "systemd-analyze verify: %s" % out)
        finally:
            shutil.rmtree(tmp)


# ---- paths named anywhere -------------------------------------------------

def check_named_paths(p, root):
    files = [DOCKERFILE, DOCKERIGNORE, DOCKER_INI, K8S, UNIT, MAN8, MAN5, DOC_AM,
             "contrib/docker/wsgate-healthcheck", "contrib/check-packaging.sh",
             "contrib/base-image.sh"]
    for rel in files:
        if not os.path.isfile(os.path.join(root, rel)):
            continue
        for n, line in enumerate(read(root, rel).splitlines(), 1):
            for path in REPO_PATH_RE.findall(line.replace("\\-", "-")):
                path = path.rstrip(".")
                p.check(os.path.exists(os.path.join(root, path)), "%s:%d" % (rel, n),
                        "names %s, which does not exist" % path)


def check_client_names(p, root):
    """wsgate.ini(5) and src/tls.c agree on wildcards in client certificates:
    tls_peer_allowed passes X509_CHECK_FLAG_NO_WILDCARDS, and the
    allowed_client_names entry says wildcards are not matched (and never that
    a wildcard name matches)."""
    tls_c = read(root, "src/tls.c")
    fn = re.search(r"int tls_peer_allowed\(.*?\n\}", tls_c, re.S)
    no_wild = bool(fn) and re.search(r"X509_check_host\([^;]*X509_CHECK_FLAG_NO_WILDCARDS",
                                     fn.group(0), re.S) is not None
    p.check(no_wild, "src/tls.c", "tls_peer_allowed no longer passes X509_CHECK_FLAG_NO_WILDCARDS "
            "to X509_check_host, but %s says wildcards are not matched" % MAN5)
    if not os.path.isfile(os.path.join(root, MAN5)):
        return
    man5 = read(root, MAN5)
    entry = re.search(r"^\.BI allowed_client_names \".*?(?=^\.TP|^\.SH)", man5, re.M | re.S)
    if not p.check(entry is not None, MAN5, "no allowed_client_names entry"):
        return
    text = " ".join(l for l in entry.group(0).splitlines()[1:])
    text = re.sub(r"^\.\w+\s*|\s\.\w+\s", " ", text).replace("\\-", "-")
    p.check(re.search(r"[Ww]ildcards? in the certificate are not matched", text) is not None,
            MAN5, "the allowed_client_names entry must say that wildcards in the certificate "
            "are not matched (src/tls.c uses X509_CHECK_FLAG_NO_WILDCARDS)")
    claim = re.search(r"\*\.[\w.-]+\s+matches\b", text)
    p.check(claim is None, MAN5, "the allowed_client_names entry says a wildcard certificate "
            "name matches (%r); src/tls.c refuses wildcards" % (claim.group(0) if claim else ""))


def check_all(root):
    p = Problems()
    check_man(p, root)
    check_client_names(p, root)
    check_doc_am(p, root)
    docker_cfg = check_docker_ini(p, root)
    uid = check_dockerfile(p, root, docker_cfg)
    check_k8s(p, root, uid)
    check_unit(p, root)
    check_named_paths(p, root)
    if shutil.which("shellcheck"):
        for rel in ("contrib/docker/wsgate-healthcheck", "contrib/check-packaging.sh",
                    "contrib/base-image.sh"):
            if os.path.isfile(os.path.join(root, rel)):
                r = run_on_file(["shellcheck"], os.path.join(root, rel))
                p.check(r.returncode == 0, rel, "shellcheck: %s" % r.stdout.strip())
    return p


# ---- self-test -----------------------------------------------------------

# (file, text to replace, replacement, words the report must contain)
MUTATIONS = [
    (DOCKERFILE, 'CMD ["/usr/local/bin/wsgate-healthcheck"]',
     'CMD ["/usr/local/bin/wsgate-healthcheck", "http://127.0.0.1:9090/healthz"]',
     "a fixed URL does not follow"),
    (DOCKERFILE, "file:///usr/share/man/man8/wsgate.8", "man wsgate(8), wsgate.ini(5)",
     "the documentation label names"),
    (DOCKERFILE, "COPY --from=build /out/usr/share/man/ /usr/share/man/\n", "",
     "the documentation label names"),
    (DOCKERFILE, " libhiredis0.14 ", " ", "does not install libhiredis0.14"),
    (DEPS, "libcrypt-dev", "libcrypt-dev libfoo-dev", "libfoo-dev: which package"),
    (HEALTHCHECK_SH, "${WSGATE_HEALTH_URL:-}", "${HEALTH_URL:-}",
     "does not use WSGATE_HEALTH_URL"),
    (HEALTHCHECK_SH, "url=$(wsgate --health-url", "url=$(wsgate -t",
     "does not use wsgate --health-url"),
    (DOCKERFILE, "COPY contrib/docker/wsgate.ini", "COPY contrib/docker/missing.ini",
     "does not exist"),
    (DOCKERFILE, "EXPOSE 8080", "EXPOZE 8080", "unknown instruction"),
    (DOCKERFILE, "--from=build", "--from=builder", "names no earlier stage"),
    (DOCKERFILE, "COPY doc/ doc/\n", "", "does not COPY doc"),
    (DOCKERFILE, "USER 10001:10001", "USER root", "numeric non-root"),
    (DOCKERFILE, 'ENTRYPOINT ["/usr/sbin/wsgate"]', "ENTRYPOINT /usr/sbin/wsgate", "JSON form"),
    (DOCKERFILE, "STOPSIGNAL SIGTERM", "STOPSIGNAL SIGKILL", "STOPSIGNAL"),
    (DOCKER_INI, "listen = 0.0.0.0:8080", "listen = 127.0.0.1:8080", "every address"),
    (K8S, "              path: /healthz\n              port: admin\n            periodSeconds: 5",
     "              path: /ready\n              port: admin\n            periodSeconds: 5",
     "readinessProbe probes /ready"),
    (K8S, "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 20",
     "terminationGracePeriodSeconds 20"),
    (K8S, "prometheus.io/path: /metrics", "prometheus.io/path: /stats", "prometheus.io/path"),
    (K8S, 'prometheus.io/scrape: "true"', "prometheus.io/scrape: true", "must be a string"),
    (K8S, "    drain_timeout = 30s", "    drain_timeout = 2m", "less than drain_timeout"),
    (K8S, "kind: Deployment\nmetadata:", "kind: Deployment\n metadata: [", "invalid YAML"),
    (K8S, "readOnlyRootFilesystem: true\n            capabilities:\n              drop: [\"ALL\"]\n"
          "          resources:\n            requests:\n              cpu: 50m",
     "readOnlyRootFilesystem: false\n            capabilities:\n              drop: [\"ALL\"]\n"
     "          resources:\n            requests:\n              cpu: 50m",
     "readOnlyRootFilesystem is not true"),
    (K8S, "mountPath: /etc/wsgate", "mountPath: /etc/wsgate2", "no volume mounted"),
    (K8S, "targetPort: http", "targetPort: 9999", "targetPort 9999"),
    (K8S, "path: /healthz\n              port: admin\n            periodSeconds: 5",
     "path: /healthz\n              port: http\n            periodSeconds: 5",
     "admin listener"),
    (UNIT, "ProtectSystem=strict\n", "", "ProtectSystem=strict expected"),
    (UNIT, "CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
     "CapabilityBoundingSet= must be present and empty"),
    (UNIT, "TimeoutStopSec=40s", "TimeoutStopSec=10s", "TimeoutStopSec=10s is less"),
    (UNIT, "ExecReload=/bin/kill -HUP $MAINPID\n", "", "ExecReload"),
    (UNIT, "KillSignal=SIGTERM", "KillSignal=SIGTERM\nProtectFoo=yes", "systemd-analyze verify"),
    (MAN8, ".SH SIGNALS\n", ".SH SIGNALS\n\\fXbad font\\fP\n", "warns"),
    (MAN8, "\\-\\-replay", "\\-\\-play", "--replay"),
    (MAN5, ".BI drain_timeout \"", ".BI drain_time \"", "key drain_timeout"),
    (MAN5, "\"wsgate 0.1.0\"", "\"wsgate 0.0.9\"", "version"),
    (DOC_AM, "doc/wsgate.ini.5", "doc/wsgate.conf.5", "does not install doc/wsgate.ini.5"),
    (DOC_AM, "check-packaging:", "check-pkg:", "no check-packaging target"),
    (MAN5, "does not match\n.BR a.example.com .", "matches\n.BR a.example.com .",
     "says a wildcard certificate name matches"),
    (MAN5, "Wildcards in the certificate are not matched:", "Names are compared:",
     "wildcards in the certificate are not matched"),
    ("src/tls.c", "X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT | X509_CHECK_FLAG_NO_WILDCARDS",
     "X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT", "no longer passes X509_CHECK_FLAG_NO_WILDCARDS"),
    ("contrib/docker/wsgate-healthcheck", "#!/bin/bash\n", "#!/bin/bash\nfoo=$undefined_x[\n",
     "shellcheck"),
]


def self_test(root):
    ignore = shutil.ignore_patterns(".git", "build*", "autom4te.cache", "__pycache__",
                                    "*.o", "*.a", ".pytest_cache")
    tmp = tempfile.mkdtemp(prefix="check-packaging-")
    failures = []
    saved = os.environ.pop("WSGATE", None)
    try:
        tree = os.path.join(tmp, "tree")
        shutil.copytree(root, tree, ignore=ignore, symlinks=True)
        base = check_all(tree)
        if base.items:
            failures.append("the unchanged tree already fails:\n  " + "\n  ".join(base.items))
        for rel, old, new, expect in MUTATIONS:
            if rel == "contrib/docker/wsgate-healthcheck" and not shutil.which("shellcheck"):
                continue
            path = os.path.join(tree, rel)
            orig = read(tree, rel)
            if old not in orig:
                failures.append("mutation of %s no longer applies (update MUTATIONS): %r"
                                % (rel, old))
                continue
            with open(path, "w", encoding="utf-8") as f:
                f.write(orig.replace(old, new, 1))
            try:
                got = check_all(tree).items
            finally:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(orig)
            if not any(expect in g for g in got):
                failures.append("%s: %r -> %r went unnoticed (expected a report with %r; "
                                "got %s)" % (rel, old, new, expect, got or "nothing"))
    finally:
        if saved is not None:
            os.environ["WSGATE"] = saved
        shutil.rmtree(tmp)
    for f in failures:
        print("check-packaging self-test: %s" % f)
    if failures:
        print("check-packaging self-test: FAILED (%d of %d)" % (len(failures), len(MUTATIONS)))
        return 1
    print("check-packaging self-test: every one of %d breakages was caught" % len(MUTATIONS))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="top of the source tree (default: the parent of contrib/)")
    ap.add_argument("--self-test", action="store_true",
                    help="break copies of the files and check that every breakage is caught")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    if args.self_test:
        return self_test(root)
    p = check_all(root)
    for item in p.items:
        print("check-packaging: %s" % item)
    if p.items:
        print("check-packaging: FAILED: %d problem(s) in %d checks" % (len(p.items), p.checks))
        return 1
    print("check-packaging: OK (%d checks)" % p.checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
