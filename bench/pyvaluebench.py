#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""shset.Int against multiprocessing.Value: one shared counter, 2 processes.

Each process increments the counter in a Python loop: `c.fetch_add(1)` on a
shset.Int, or `with v.get_lock(): v.value += 1` on a multiprocessing.Value
(the standard library's way to share a counter that loses no update).  The
processes start together (a barrier) and the throughput is the increments
of both divided by the time until the last one finishes; the final value
is checked.  Each measurement runs --runs times, the systems interleaved so
that the machine's noise hits both alike; the table shows the median and
the range, and the ratio over the paired runs.

    PYTHONPATH=build-bench/python /usr/bin/python3 bench/pyvaluebench.py [--quick]
"""
import argparse
import multiprocessing as mp
import statistics
import sys
import time

import shset


def shset_worker(c, n, barrier, q):
    fetch_add = c.fetch_add
    barrier.wait()
    t = time.perf_counter()
    for _ in range(n):
        fetch_add(1)
    q.put(time.perf_counter() - t)


def shset_inplace_worker(c, n, barrier, q):
    barrier.wait()
    t = time.perf_counter()
    for _ in range(n):
        c += 1
    q.put(time.perf_counter() - t)


def mpvalue_worker(v, n, barrier, q):
    lock = v.get_lock()
    barrier.wait()
    t = time.perf_counter()
    for _ in range(n):
        with lock:
            v.value += 1
    q.put(time.perf_counter() - t)


SYSTEMS = {
    "shset.Int.fetch_add": (shset_worker, lambda ctx: shset.Int(0)),
    "shset.Int +=": (shset_inplace_worker, lambda ctx: shset.Int(0)),
    "mp.Value + get_lock": (mpvalue_worker, lambda ctx: ctx.Value("q", 0)),
}


def measure(ctx, system, procs, n):
    """Increments per second of procs processes doing n increments each."""
    worker, make = SYSTEMS[system]
    c = make(ctx)
    barrier, q = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=worker, args=(c, n, barrier, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    times = [q.get(timeout=600) for _ in ps]
    for p in ps:
        p.join()
        assert p.exitcode == 0
    assert c.value == procs * n, (system, c.value)
    return procs * n / max(times)


def fmt(xs, scale=1e-6, unit="M/s"):
    return (f"{statistics.median(xs) * scale:6.2f} {unit} "
            f"[{min(xs) * scale:.2f}-{max(xs) * scale:.2f}]")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer increments, 3 runs")
    ap.add_argument("--ops", type=int, default=10_000_000, help="shset increments per process")
    ap.add_argument("--slow-ops", type=int, default=500_000,
                    help="multiprocessing.Value increments per process")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--csv", help="write the figures here too")
    a = ap.parse_args()
    if a.quick:
        a.ops, a.slow_ops, a.runs = 1_000_000, 50_000, 3
    ctx = mp.get_context("fork")
    res = {s: [] for s in SYSTEMS}
    for run in range(a.runs):
        for s in SYSTEMS:
            res[s].append(measure(ctx, s, a.procs, a.slow_ops if s.startswith("mp.") else a.ops))
        print(f"  run {run + 1}/{a.runs} done", file=sys.stderr, flush=True)

    base = res["mp.Value + get_lock"]
    print(f"python values: one counter, {a.procs} processes incrementing it, loop included; "
          f"{a.runs} runs, median [min-max]")
    print(f"  {sys.executable} {sys.version.split()[0]}; shset {a.ops:,} and "
          f"multiprocessing.Value {a.slow_ops:,} increments per process")
    print(f"  {'system':22} {'increments/s':>24} {'x mp.Value':>22}")
    rows = []
    for s, xs in res.items():
        ratios = [x / b for x, b in zip(xs, base)]
        print(f"  {s:22} {fmt(xs):>24} {statistics.median(ratios):7.1f}x "
              f"[{min(ratios):.1f}-{max(ratios):.1f}]")
        rows += [(s, i, x, r) for i, (x, r) in enumerate(zip(xs, ratios))]
    g = statistics.median(x / b for x, b in zip(res["shset.Int.fetch_add"], base))
    print(f"  goal: shset.Int.fetch_add >= 20x multiprocessing.Value: {g:.1f}x "
          f"{'met' if g >= 20 else 'NOT MET'}")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("system,run,increments_per_s,ratio_to_mp_value\n")
            for s, i, x, r in rows:
                f.write(f"{s},{i},{x:.0f},{r:.3f}\n")


if __name__ == "__main__":
    main()
