# SPDX-License-Identifier: MIT
"""Functions that run in multiprocessing children for test_values.py
(importable by name, as spawn and forkserver need)."""
import os
import threading
import time

import shset

# What the torn-read writers store: every value a reader may see.
TORN_A = [b"A" * n for n in (1, 37, 200, 0, 255)]
TORN_B = [b"B" * n for n in (3, 150, 256, 64)]
TORN_STR = ["", "é" * 100, "日本語" * 10, "x"]


def shape_worker(counter, tags, hits, nthreads, n):
    """The package example's shape: nthreads threads, each applying known
    operations n times to an Int, a Bytes holding a decimal number and an
    IntArray.  Returns the errors the threads met."""
    errors = []

    def run(t, counter):
        try:
            for i in range(n):
                counter += 1  # one atomic fetch_add; counter stays the Int
                hits.fetch_add((t + i) % len(hits), 1)
            # A read-modify-write of the bytes, by compare_exchange.
            while True:
                old = tags.load()
                if tags.compare_exchange(old, b"%d" % (int(old) + 1)):
                    break
            counter.fetch_sub(1)
            counter -= -1
        except Exception as e:  # reported to the parent
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(t, counter)) for t in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def _start_together(start, n):
    # A barrier of n processes on a shared counter.
    start += 1
    while start.load() < n:
        time.sleep(0.001)


def torn_writer(q, b, values, rounds, start, n):
    _start_together(start, n)
    for i in range(rounds):
        b.store(values[i % len(values)])
    q.put(("writer", rounds))


def torn_reader(q, b, allowed, done, start, n):
    """Loads until done is non-zero; reports (reads, values never stored)."""
    allowed = set(allowed)
    bad = []
    reads = 0
    _start_together(start, n)
    while not done.load() or reads < 1000:
        v = b.load()
        reads += 1
        if v not in allowed and len(bad) < 10:
            bad.append(v)
    q.put(("reader", reads, bad))


def shape_process(q, *args):
    q.put(shape_worker(*args))


def touch_all(values):
    """One change to each value; returns what was read before the change."""
    i, u, f, b, s, ia, ua = values
    seen = (i.value, u.value, f.value, b.value, s.value, ia.tolist(), ua.tolist())
    i += 1
    u -= 1
    f += 0.5
    b.value = b"from child"
    s.value = "из ребёнка"
    ia.fetch_add(1, 7)
    ua[-1] = 2**64 - 1
    return seen


def queue_child(q_in, q_out):
    values = q_in.get()
    q_out.put(touch_all(values))
    for v in values:
        v.close()


def pipe_child(conn, rounds):
    before = None
    for r in range(rounds):
        c = conn.recv()
        c += 1
        c.close()
        if r == 0:
            before = len(os.listdir("/proc/self/fd"))
    conn.send(("done", before, len(os.listdir("/proc/self/fd"))))
    conn.close()
