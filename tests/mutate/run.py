#!/usr/bin/python3
"""run.py - the mutation harness behind `make mutate` (issue 18).

Each mutant in mutants.txt breaks one important behaviour with a one-line
change. The harness copies the tree (tracked files plus working changes and
untracked, non-ignored files) into a work directory, configures and builds it
once, then for every mutant: patches the copy, rebuilds incrementally, runs
the tests the mutant names (pytest -x: the first failure kills it; a unit test
program: a nonzero exit kills it), and restores the file. The caller's tree is
only read.

A mutant whose original text is not found exactly once in its file, or that
does not compile, is an error: the list must stay in step with the code.
Exit status: 0 when every mutant was killed, 1 when one survived, 2 on errors.

Usage: run.py [--workdir DIR] [--only NAME[,NAME...]] [--no-baseline]
              [--timeout SECONDS] [--list] [--check]
  --workdir   keep the copy in DIR and reuse it next time (default: a
              temporary directory, removed at the end)
  --only      run these mutants only
  --no-baseline  skip the run of every named test on the unmutated build
  --check     only check that every mutant's text is found exactly once
  --list      print the mutants and exit
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
PYTHON3 = os.environ.get("PYTHON3") or "/usr/bin/python3"
KEYS = ("name", "file", "from", "to", "tests", "why")


class ListError(Exception):
    """mutants.txt is malformed or out of step with the code."""


def parse_mutants(path):
    """Blocks of "key: value" lines separated by blank lines; '#' comments."""
    mutants, cur = [], {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for no, line in enumerate(lines + [""], 1):
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                mutants.append(cur)
                cur = {}
            continue
        key, sep, value = line.partition(":")
        if not sep or key not in KEYS or key in cur:
            raise ListError("%s:%d: expected one of %s: VALUE" % (path, no, ", ".join(KEYS)))
        cur[key] = value.strip()
        cur.setdefault("line", no)
    names = set()
    for m in mutants:
        missing = [k for k in KEYS if not m.get(k)]
        if missing:
            raise ListError("%s:%d: mutant lacks %s" % (path, m["line"], ", ".join(missing)))
        if m["name"] in names:
            raise ListError("%s:%d: duplicate name %s" % (path, m["line"], m["name"]))
        names.add(m["name"])
        if m["from"] == m["to"]:
            raise ListError("%s: 'to' equals 'from'" % m["name"])
        m["tests"] = m["tests"].split()
        for t in m["tests"]:
            f = t.split("::")[0]
            if f.startswith("tests/unit/"):
                f += ".c"
            if not os.path.isfile(os.path.join(TOP, f)):
                raise ListError("%s: no test %s" % (m["name"], t))
    return mutants


def check_text(mutants, top):
    """Every mutant's original text occurs exactly once in its file."""
    bad = []
    for m in mutants:
        path = os.path.join(top, m["file"])
        try:
            with open(path, encoding="utf-8") as f:
                n = f.read().count(m["from"])
        except OSError as e:
            n, m["error"] = 0, str(e)
        if n != 1:
            bad.append("%s: %r found %d times in %s" % (m["name"], m["from"], n, m["file"]))
    return bad


def tree_files(top):
    """The files git knows or would add: a build directory is left out."""
    p = subprocess.run(
        ["git", "-C", top, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True)
    if p.returncode != 0:
        raise ListError("%s is not a git checkout: %s" % (top, p.stderr.decode().strip()))
    out = p.stdout
    return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(top, p))]


def sync_tree(top, dst):
    """Copy the caller's files into dst, rewriting only those that differ so
    that a reused build stays incremental."""
    changed = 0
    for rel in tree_files(top):
        src, out = os.path.join(top, rel), os.path.join(dst, rel)
        with open(src, "rb") as f:
            data = f.read()
        try:
            with open(out, "rb") as f:
                if f.read() == data:
                    continue
        except OSError:
            os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "wb") as f:
            f.write(data)
        shutil.copymode(src, out)
        changed += 1
    return changed


def sh(cmd, cwd, log, timeout=None, env=None):
    """Run cmd in its own process group, its output appended to log. Returns
    the exit status, or None after a timeout. The group is killed at the end:
    a test that fails may leave its helpers running."""
    with open(log, "ab") as f:
        f.write(("\n$ %s\n" % " ".join(cmd)).encode())
        f.flush()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        try:
            st = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            st = None
        try:  # and whatever a failed test left running in its group
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        p.wait()
        return st


def unit_targets(tests):
    return [t for t in tests if t.startswith("tests/unit/")]


def build(work, log, tests):
    """Incremental build of the binary and the unit programs tests names."""
    return sh(["make", "-j2", "src/wsgate"] + unit_targets(tests),
              os.path.join(work, "build"), log) == 0


def run_tests(work, tests, log, timeout):
    """Unit programs first (fast), then the integration files in one pytest
    -x run. Returns (passed, what failed first)."""
    build_dir, tree = os.path.join(work, "build"), os.path.join(work, "tree")
    deadline = time.monotonic() + timeout
    for t in unit_targets(tests):
        left = max(1, deadline - time.monotonic())
        st = sh([os.path.join(build_dir, t)], build_dir, log, timeout=left)
        if st != 0:
            return False, t + (" (timeout)" if st is None else "")
    it = [os.path.join(tree, t) for t in tests if not t.startswith("tests/unit/")]
    if not it:
        return True, None
    env = dict(os.environ, WSGATE=os.path.join(build_dir, "src", "wsgate"),
               PYTHONDONTWRITEBYTECODE="1", TOP_SRCDIR=tree)
    base = os.path.join(work, "pytest")
    shutil.rmtree(base, ignore_errors=True)
    start = os.path.getsize(log) if os.path.exists(log) else 0
    st = sh([PYTHON3, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE",
             "--basetemp=" + base, "-c", os.path.join(tree, "tests/integration/pytest.ini"),
             "--rootdir=" + os.path.join(tree, "tests/integration")] + it,
            tree, log, timeout=max(1, deadline - time.monotonic()), env=env)
    if st == 0:
        return True, None
    if st is None:
        return False, "timeout after %ds" % timeout
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        m = re.search(r"^(?:FAILED|ERROR) (\S+)", f.read(), re.M)
    return False, m.group(1) if m else "pytest exit %d" % st


def setup(work, log):
    tree, build_dir = os.path.join(work, "tree"), os.path.join(work, "build")
    os.makedirs(tree, exist_ok=True)
    n = sync_tree(TOP, tree)
    print("copied %d changed files into %s" % (n, tree), flush=True)
    # Once configured, the build's own rules rerun automake and configure
    # when Makefile.am or configure.ac changed.
    if not os.path.exists(os.path.join(tree, "configure")):
        if sh(["./autogen.sh"], tree, log) != 0:
            return False
    os.makedirs(build_dir, exist_ok=True)
    if not os.path.exists(os.path.join(build_dir, "Makefile")):
        print("configuring", flush=True)
        if sh([os.path.join(tree, "configure"), "-q"], build_dir, log) != 0:
            return False
    return True


def run_mutant(m, work, timeout):
    """Apply, build, test, restore. Returns (state, detail)."""
    path = os.path.join(work, "tree", m["file"])
    log = os.path.join(work, "logs", m["name"] + ".log")
    if os.path.exists(log):
        os.remove(log)
    with open(path, encoding="utf-8") as f:
        orig = f.read()
    if orig.count(m["from"]) != 1:
        return "error", "original text not found exactly once"
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(orig.replace(m["from"], m["to"]))
        if not build(work, log, m["tests"]):
            return "error", "does not build (see %s)" % log
        ok, what = run_tests(work, m["tests"], log, timeout)
        return ("survived", "every test passed") if ok else ("killed", what)
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(orig)


def baseline_tests(mutants):
    """Every named test once; a node id only when its file is not named."""
    tests = []
    for m in mutants:
        tests += [t for t in m["tests"] if t not in tests]
    files = {t for t in tests if "::" not in t}
    return [t for t in tests if t.split("::")[0] not in files or "::" not in t]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir")
    ap.add_argument("--only")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--timeout", type=int, default=1200)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    try:
        mutants = parse_mutants(os.path.join(HERE, "mutants.txt"))
    except ListError as e:
        print("mutants.txt: %s" % e, file=sys.stderr)
        return 2
    if a.only:
        want = set(a.only.split(","))
        unknown = want - {m["name"] for m in mutants}
        if unknown:
            print("unknown mutants: %s" % ", ".join(sorted(unknown)), file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m["name"] in want]
    bad = check_text(mutants, TOP)
    if bad:
        print("mutants.txt is out of step with the code:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 2
    if a.list:
        for m in mutants:
            print("%-28s %-16s %s" % (m["name"], m["file"], " ".join(m["tests"])))
    if a.list or a.check:
        print("%d mutants, each original text found exactly once" % len(mutants))
        return 0

    work = os.path.abspath(a.workdir) if a.workdir else tempfile.mkdtemp(prefix="wsgate-mutate.")
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    setup_log = os.path.join(work, "logs", "_setup.log")
    keep = True  # unless the run completes without errors: the logs explain them
    try:
        try:
            ready = setup(work, setup_log)
        except ListError as e:
            print(e, file=sys.stderr)
            return 2
        if not ready or not build(work, setup_log, sorted(
                {t for m in mutants for t in m["tests"]})):
            print("the unmutated tree does not configure or build: see %s" % setup_log,
                  file=sys.stderr)
            return 2
        if not a.no_baseline:
            tests = baseline_tests(mutants)
            print("baseline: %d test files on the unmutated build" % len(tests), flush=True)
            base_log = os.path.join(work, "logs", "_baseline.log")
            ok, what = run_tests(work, tests, base_log, a.timeout * 4)
            if not ok:
                print("baseline failed (%s): fix the tests first; see %s/logs/_baseline.log"
                      % (what, work), file=sys.stderr)
                return 2
        results = []
        for i, m in enumerate(mutants, 1):
            t0 = time.monotonic()
            print("[%d/%d] %s (%s) ..." % (i, len(mutants), m["name"], m["file"]), end=" ",
                  flush=True)
            state, detail = run_mutant(m, work, a.timeout)
            print("%s: %s [%.0fs]" % (state.upper(), detail, time.monotonic() - t0), flush=True)
            results.append((m, state, detail))
        build(work, setup_log, [])  # leave the copy's binary unmutated
        keep = any(st == "error" for _, st, _ in results)
    finally:
        if not a.workdir and not keep:
            shutil.rmtree(work, ignore_errors=True)
        elif not a.workdir:
            print("kept %s for its logs" % work, file=sys.stderr)

    print("\n%-28s %-9s %s" % ("mutant", "result", "killed by / why it matters"))
    for m, state, detail in results:
        print("%-28s %-9s %s" % (m["name"], state, detail if state != "survived" else m["why"]))
    count = {s: sum(1 for _, st, _ in results if st == s) for s in ("killed", "survived", "error")}
    print("\n%d mutants: %d killed, %d survived, %d errors"
          % (len(results), count["killed"], count["survived"], count["error"]))
    return 2 if count["error"] else 1 if count["survived"] else 0


if __name__ == "__main__":
    sys.exit(main())
