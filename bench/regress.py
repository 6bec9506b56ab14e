#!/usr/bin/env python3
"""No regression: this code against a baseline commit, in one run.

Builds the baseline's static library (from `git archive`, in
build-baseline/), compiles bench/regbench.c against it and against this
code's, and runs the two in turn ROUNDS times.  regbench measures what the
growth and scaling work promised not to lose: lookups (1 and 2 processes),
single-writer adds, copy and snapshot, on sets built the same way by both
versions (setbench's copy and snapshot rows take a set its add-only phases
grew, whose size and resizes in progress depend on how fast it added: they
do not compare two versions).  Each figure: the median of the per-round
ratios (this code / the baseline, above 1 is faster) with their min-max; the
goal is each within 10% (ratio >= 0.9).

usage: bench/regress.py [--baseline COMMIT] [--rounds N] [--csv FILE] [--build DIR]
"""
import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The commit the issue of growth and scaling measured ("today's figures").
BASELINE = "2a420d0"
NAMES = {
    "lookups_1p": "lookups, 1 process (Mops/s)",
    "lookups_2p": "lookups, 2 processes (Mops/s in all)",
    "adds_1p": "adds, 1 writer, presized (Mops/s)",
    "copy": "shset_copy of 1,000,000 keys (per s)",
    "snapshot": "shset_save of 1,000,000 keys (per s)",
}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def regbench(src, build):
    """regbench compiled against the library built from @src in @build."""
    run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target",
         "shset_static"], stdout=subprocess.DEVNULL)
    exe = os.path.join(build, "regbench")
    run(["cc", "-O2", "-std=gnu11", "-I", os.path.join(src, "include"),
         "-I", os.path.join(build, "include"), os.path.join(ROOT, "bench", "regbench.c"),
         os.path.join(build, "libshset.a"), "-luring", "-lpthread", "-o", exe])
    return exe


def baseline(commit, where):
    """The baseline's regbench; None if the commit is not in this clone."""
    try:
        run(["git", "cat-file", "-e", commit + "^{commit}"], stderr=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    src, bld = os.path.join(where, "src"), os.path.join(where, "build")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
    run(["tar", "-x", "-C", src], stdin=archive.stdout)
    if archive.wait():
        return None
    run(["cmake", "-S", src, "-B", bld, "-DCMAKE_BUILD_TYPE=Release",
         "-DSHSET_BUILD_TESTS=OFF", "-DSHSET_BUILD_BENCH=OFF", "-DSHSET_BUILD_TOOLS=OFF"],
        stdout=subprocess.DEVNULL)
    return regbench(src, bld)


def figures(exe):
    out = run([exe], capture_output=True, text=True).stdout
    got = {}
    for line in out.splitlines():
        name, value, _unit = line.split()
        got[name] = float(value)
    if set(got) != set(NAMES):
        raise SystemExit("regress: %s printed %s" % (exe, sorted(got)))
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--csv")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"),
                    help="this code's Release build directory")
    a = ap.parse_args()
    print("no regression: this code against %s (the commit the growth and scaling goals "
          "were measured on),\n  bench/regbench.c built against each, %d rounds in turn, "
          "each figure the median of 3 in its round;\n  ratio = this code / the baseline "
          "(above 1 is faster): median of the rounds' ratios (min-max)"
          % (a.baseline, a.rounds))
    base = baseline(a.baseline, os.path.join(ROOT, "build-baseline"))
    if not base:
        print("  skipped: %s is not in this clone's history" % a.baseline)
        return 0
    now = regbench(ROOT, a.build)
    got = {"base": [], "now": []}
    for _ in range(a.rounds):
        got["base"].append(figures(base))
        got["now"].append(figures(now))
    out = csv.writer(open(a.csv, "w", newline="")) if a.csv else None
    if out:
        out.writerow(["figure", "baseline", "now", "ratio", "min", "max", "goal"])
    print("  %-38s %10s %10s %7s %13s" % ("figure", "baseline", "now", "ratio", "min-max"))
    met = 0
    for key, name in NAMES.items():
        b = statistics.median(r[key] for r in got["base"])
        n = statistics.median(r[key] for r in got["now"])
        ratios = [nr[key] / br[key] for br, nr in zip(got["base"], got["now"])]
        q = statistics.median(ratios)
        ok = q >= 0.9
        met += ok
        print("  %-38s %10.3f %10.3f %6.2fx %6.2f-%-6.2f %s" % (
            name, b, n, q, min(ratios), max(ratios), "met" if ok else "missed"))
        if out:
            out.writerow([name, b, n, round(q, 3), round(min(ratios), 3),
                          round(max(ratios), 3), "met" if ok else "missed"])
    print("  goal: each within 10%% of the baseline (ratio >= 0.9): %d of %d met"
          % (met, len(NAMES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
