# SPDX-License-Identifier: MIT
"""Functions that run in multiprocessing children (importable by name, as
spawn and forkserver need)."""
import os
import threading
import time

import shset


def add_range(s, prefix, n):
    """Adds prefix0..prefix<n-1>; returns what the child saw."""
    for i in range(n):
        s.add(f"{prefix}{i}")
    return len(s), "from-parent" in s, s.keys_type


def job_worker(s, n):
    # The example of the README.
    for i in range(n):
        s.add(f"job-{i}")
    return len(s)


def claim(s, keys):
    """add_new on every key; returns the keys this process won."""
    return [k for k in keys if s.add_new(k)]


def queue_child(q_in, q_out, ack):
    s = q_in.get()
    s.add("via-queue")
    q_out.put(("seen", sorted(s)))
    # A set made here travels back the same way.
    mine = shset.Set(["made-in-child"], keys=str)
    q_out.put(mine)
    ack.wait(60)  # the fd is served from this process until taken


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def pipe_child(conn, rounds):
    before = None
    for r in range(rounds):
        s = conn.recv()
        s.add(f"pipe-{r}")
        s.close()
        if r == 0:
            before = open_fds()
    conn.send(("done", before, open_fds()))
    conn.close()


def threads_worker(s, proc, nthreads, n, old):
    """proc's threads: each adds its own keys, removes its odd ones, adds
    the common keys (counting add_new wins) and removes the old keys."""
    wins = [0] * nthreads
    errors = []

    def run(t):
        try:
            for i in range(n):
                s.add(f"p{proc}-t{t}-{i}")
                if s.add_new(f"common-{i}"):
                    wins[t] += 1
                s.discard(old[(t * n + i) % len(old)])
                if i % 2:
                    s.remove(f"p{proc}-t{t}-{i}")
                if i % 50 == 0:
                    s.update([f"batch-p{proc}-t{t}-{i}-{j}" for j in range(10)])
        except Exception as e:  # reported to the parent
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(t,)) for t in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(wins), errors


def writer_pairs(s, n, done):
    """Adds a_i then b_i; later removes b_i then a_i: in every state of the
    set, b_i present implies a_i present."""
    for i in range(n):
        s.add(f"a{i}")
        s.add(f"b{i}")
        if i >= 100:
            j = i - 100
            s.remove(f"b{j}")
            s.remove(f"a{j}")
    done.set()


def batch_looper(s, started, keys_per_batch, tag):
    """update() of distinct batches until killed; announces each batch
    number before it starts.  Keys are made beforehand, so that most of
    the time goes to the update itself."""
    batches = [[f"k{tag}-{j}-{i}" for i in range(keys_per_batch)] for j in range(40)]
    for j, keys in enumerate(batches):
        started.send(j)
        s.update(keys)
    started.send(len(batches))
    time.sleep(600)


def steady_worker(s, name, n):
    """A process that keeps working while another is killed."""
    for i in range(n):
        s.add(f"{name}-{i}")
        assert f"{name}-{i}" in s
    return n
