#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The Python module against what a Python programmer would use instead.

One process, N keys of 16 characters, the Python loop included in every
figure.  Baselines: a builtin set (private to the process: the cost floor),
a multiprocessing.Manager().dict() proxy (the standard library's shared
container) and redis-py over a Unix socket (a server started here).  Slow
baselines run fewer operations; every figure is normalised per operation.
Each measurement runs --runs times, interleaved, so that the machine's
noise hits all systems alike; the table shows the median and the range of
the time per operation and of the ratio over the paired runs.

    PYTHONPATH=build-bench/python /usr/bin/python3 bench/pybench.py [--quick]
"""
import argparse
import gc
import multiprocessing as mp
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import shset

try:
    import redis
except ImportError:  # python3-redis
    redis = None


def per_op(fn, ops):
    """Seconds per operation of fn() doing ops operations."""
    gc.collect()
    gc.disable()
    try:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) / ops
    finally:
        gc.enable()


def loop_in(container, probe):
    n = 0
    for k in probe:
        if k in container:
            n += 1
    return n


def loop_add(container, keys):
    for k in keys:
        container.add(k)


def loop_add_new(container, keys):
    for k in keys:
        container.add_new(k)


def loop_setitem(container, keys):
    for k in keys:
        container[k] = 1


def start_redis(tmp):
    exe = shutil.which("redis-server")
    if not exe or redis is None:
        return None, None
    sock = os.path.join(tmp, "redis.sock")
    srv = subprocess.Popen([exe, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                            "--save", "", "--appendonly", "no", "--dir", tmp],
                           stdout=subprocess.DEVNULL)
    for _ in range(300):
        try:
            r = redis.Redis(unix_socket_path=sock)
            r.ping()
            return srv, r
        except (redis.ConnectionError, FileNotFoundError):
            time.sleep(0.01)
    srv.kill()
    return None, None


def fmt_ns(xs):
    if not xs:
        return "-"
    med, lo, hi = statistics.median(xs), min(xs), max(xs)

    def f(v):
        v *= 1e9
        if v >= 1e6:
            return f"{v / 1e6:.1f}ms"
        if v >= 1e4:
            return f"{v / 1e3:.0f}us"
        return f"{v:.0f}ns"
    return f"{f(med)} ({f(lo)}-{f(hi)})"


def fmt_ratio(xs):
    if not xs:
        return "-"
    med, lo, hi = statistics.median(xs), min(xs), max(xs)
    p = 2 if med < 10 else 0
    return f"{med:.{p}f}x ({lo:.{p}f}-{hi:.{p}f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200,000 keys, 3 runs")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--slow-ops", type=int, default=2000,
                    help="operations per run for the Manager and Redis baselines")
    ap.add_argument("--csv", help="write the figures here too")
    a = ap.parse_args()
    if a.quick:
        a.keys, a.runs, a.slow_ops = 200_000, 3, 500
    n = a.keys
    keys = [f"key-{i:012d}" for i in range(n)]  # 16 characters
    rng = random.Random(42)
    # Lookups use other str objects with the same text, in random order, as
    # keys read from input would be (made in the order they are used).
    order = list(keys)
    rng.shuffle(order)
    probe = [k[:8] + k[8:] for k in order]
    del order
    # ... and the very objects the builtin set holds (its best case: an
    # identity check instead of a string comparison).
    same = list(keys)
    rng.shuffle(same)
    fresh = [f"new-{i:012d}" for i in range(n)]
    slow = probe[: a.slow_ops]

    s = shset.Set(keys)
    b = set(keys)
    mgr = mp.Manager()
    d = mgr.dict()
    for i in range(0, n, 100_000):
        d.update(dict.fromkeys(keys[i:i + 100_000], 1))
    tmp = tempfile.mkdtemp(prefix="pybench-")
    rsrv, r = start_redis(tmp)
    if r:
        for i in range(0, n, 10_000):
            r.sadd("s", *keys[i:i + 10_000])

    # name -> {system: [seconds per op, one per run]}
    res = {}

    def rec(op, system, v):
        res.setdefault(op, {}).setdefault(system, []).append(v)

    for run in range(a.runs):
        # k in s
        rec("k in s", "shset", per_op(lambda: loop_in(s, probe), n))
        rec("k in s", "set", per_op(lambda: loop_in(b, probe), n))
        rec("k in s", "manager", per_op(lambda: loop_in(d, slow), len(slow)))
        if r:
            rec("k in s", "redis", per_op(lambda: [r.sismember("s", k) for k in slow],
                                          len(slow)))
        rec("k in s, same", "shset", per_op(lambda: loop_in(s, same), n))
        rec("k in s, same", "set", per_op(lambda: loop_in(b, same), n))
        # contains_many: one call per 1000 keys
        chunks = [probe[i:i + 1000] for i in range(0, n, 1000)]
        rec("contains_many", "shset", per_op(lambda: [s.contains_many(c) for c in chunks], n))
        rec("contains_many", "set", per_op(lambda: [[k in b for k in c] for c in chunks], n))
        if r:
            rchunks = chunks[: max(1, len(slow) // 1000 * 10)]
            rec("contains_many", "redis",
                per_op(lambda: [r.smismember("s", c) for c in rchunks], 1000 * len(rchunks)))
        # s.add(k) of new keys
        t = shset.Set()
        rec("s.add(k)", "shset", per_op(lambda: loop_add(t, fresh), n))
        t.close()
        t = set()
        rec("s.add(k)", "set", per_op(lambda: loop_add(t, fresh), n))
        del t
        dd = mgr.dict()
        rec("s.add(k)", "manager", per_op(lambda: loop_setitem(dd, fresh[:len(slow)]),
                                          len(slow)))
        del dd
        if r:
            r.delete("a")
            rec("s.add(k)", "redis",
                per_op(lambda: [r.sadd("a", k) for k in fresh[:len(slow)]], len(slow)))
        t = shset.Set()
        rec("s.add_new(k)", "shset", per_op(lambda: loop_add_new(t, fresh), n))
        t.close()
        # s.update(keys): one batch
        t = shset.Set()
        rec("update(N keys)", "shset", per_op(lambda: t.update(fresh), n))
        t.close()
        t = set()
        rec("update(N keys)", "set", per_op(lambda: t.update(fresh), n))
        del t
        dd = mgr.dict()
        rec("update(N keys)", "manager",
            per_op(lambda: dd.update(dict.fromkeys(fresh, 1)), n))
        del dd
        if r:
            r.delete("a")
            rec("update(N keys)", "redis",
                per_op(lambda: [r.sadd("a", *fresh[i:i + 10_000]) for i in range(0, n, 10_000)],
                       n))
            r.delete("a")
        # whole-set copies: a new shared set / builtin set.copy()
        c = []
        rec("copy()", "shset", per_op(lambda: c.append(s.copy()), 1))
        c[0].close()
        rec("copy()", "set", per_op(lambda: b.copy(), 1))
        rec("copy()", "manager", per_op(lambda: d.copy(), 1))
        if r:
            rec("copy()", "redis", per_op(lambda: r.sunionstore("c", "s"), 1))
            r.delete("c")
        # snapshot(): a frozenset of one state
        rec("snapshot()", "shset", per_op(lambda: s.snapshot(), 1))
        rec("snapshot()", "set", per_op(lambda: frozenset(b), 1))
        rec("snapshot()", "manager", per_op(lambda: frozenset(d.keys()), 1))
        if r:
            rec("snapshot()", "redis", per_op(lambda: frozenset(r.smembers("s")), 1))
        print(f"  run {run + 1}/{a.runs} done", file=sys.stderr, flush=True)

    mgr.shutdown()
    if rsrv:
        rsrv.terminate()
        rsrv.wait()
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"python module: {n:,} keys of 16 characters, one process, loop included; "
          f"{a.runs} runs, median (min-max)")
    print(f"  {sys.executable} {sys.version.split()[0]}; Manager and Redis: "
          f"{a.slow_ops} operations per run; redis-py {getattr(redis, '__version__', '-')} "
          f"over a Unix socket")
    hdr = (f"  {'operation':15} {'shset':>24} {'builtin set':>24} {'shset/set':>18} "
           f"{'Manager().dict()':>22} {'mgr/shset':>16} {'redis-py':>22} {'redis/shset':>16}")
    print(hdr)
    rows = []
    for op, by in res.items():
        sh = by.get("shset", [])

        def ratios(other, speedup):
            xs = by.get(other, [])
            return [(y / x if speedup else x / y) for x, y in zip(sh, xs)]
        rs = ratios("set", False)
        rm = ratios("manager", True)
        rr = ratios("redis", True)
        print(f"  {op:15} {fmt_ns(sh):>24} {fmt_ns(by.get('set', [])):>24} {fmt_ratio(rs):>18} "
              f"{fmt_ns(by.get('manager', [])):>22} {fmt_ratio(rm):>16} "
              f"{fmt_ns(by.get('redis', [])):>22} {fmt_ratio(rr):>16}")
        rows.append((op, sh, by.get("set", []), rs, by.get("manager", []), rm,
                     by.get("redis", []), rr))
    print("  k in s probes with new str objects equal to the keys, in random order; "
          "'same' with the builtin set's own objects")
    print("  ratios: shset/set is how much slower than a private builtin set (lower is "
          "better);\n  mgr/shset and redis/shset are how much faster shset is (higher is better)")
    goals = res["k in s"]
    m = lambda xs: statistics.median(xs) if xs else float("nan")
    g1 = m([x / y for x, y in zip(goals["shset"], goals["set"])])
    same = res["k in s, same"]
    g1s = m([x / y for x, y in zip(same["shset"], same["set"])])
    g2 = m([y / x for x, y in zip(goals["shset"], goals.get("manager", []))])
    g3 = m([y / x for x, y in zip(goals["shset"], goals.get("redis", []))])
    ok = lambda c: "met" if c else "MISSED"
    print(f"  goals for k in s: <= 1.5x builtin set: {g1:.2f}x {ok(g1 <= 1.5)} "
          f"({g1s:.2f}x {ok(g1s <= 1.5)} when probing with the set's own objects); "
          f">= 150x Manager: {g2:.0f}x {ok(g2 >= 150)}; >= 50x redis-py: "
          f"{g3:.0f}x {ok(g3 >= 50)}")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("operation,system,run,seconds_per_op\n")
            for op, by in res.items():
                for system, xs in by.items():
                    for i, x in enumerate(xs):
                        f.write(f"{op},{system},{i},{x:.12g}\n")


if __name__ == "__main__":
    main()
