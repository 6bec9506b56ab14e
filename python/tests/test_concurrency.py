# SPDX-License-Identifier: MIT
"""Many threads in several processes, atomic copies under a writer, a
process killed with SIGKILL in the middle of update(), and the GIL released
while a call waits for the lock."""
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import mpworkers
import shset


def test_two_processes_fifty_threads_each_exact_content():
    ctx = mp.get_context("forkserver")
    n, nthreads = 200, 50
    old = [f"old-{i}" for i in range(1000)]
    s = shset.Set(old)
    with ctx.Pool(2) as pool:
        res = pool.starmap(mpworkers.threads_worker,
                           [(s, proc, nthreads, n, old) for proc in range(2)])
    errors = [e for _, errs in res for e in errs]
    assert not errors
    # One add_new winner per common key over 100 threads in 2 processes.
    assert sum(w for w, _ in res) == n
    want = {f"common-{i}" for i in range(n)}
    want |= {f"p{p}-t{t}-{i}" for p in range(2) for t in range(nthreads)
             for i in range(0, n, 2)}
    want |= {f"batch-p{p}-t{t}-{i}-{j}" for p in range(2) for t in range(nthreads)
             for i in range(0, n, 50) for j in range(10)}
    assert s.snapshot() == want
    assert len(s) == len(want)


def _pairs_consistent(keys):
    bs = [k for k in keys if k.startswith("b")]
    return all("a" + b[1:] in keys for b in bs)


@pytest.mark.parametrize("view", ["copy", "snapshot", "iter"])
def test_views_are_atomic_under_a_writer_process(view):
    ctx = mp.get_context("fork")
    s = shset.Set()
    done = ctx.Event()
    w = ctx.Process(target=mpworkers.writer_pairs, args=(s, 30000, done))
    w.start()
    checks = sizes = 0
    seen = set()
    while not done.is_set() or checks < 3:
        if view == "copy":
            c = s.copy()
            keys = c.snapshot()
            assert c.keys_type is str
            c.close()
        elif view == "snapshot":
            keys = s.snapshot()
        else:
            keys = set(s)
        assert _pairs_consistent(keys), "a view holds b_i without a_i"
        checks += 1
        seen.add(len(keys))
    w.join(60)
    assert w.exitcode == 0
    assert _pairs_consistent(s.snapshot()) and len(s) == 200
    print(f"{view}: {checks} views, {len(seen)} distinct sizes")


def test_sigkill_in_update_is_all_or_nothing_and_others_go_on():
    ctx = mp.get_context("fork")
    s = shset.Set()
    per_batch = 10000
    rng = random.Random(1234)
    steady = ctx.Process(target=mpworkers.steady_worker, args=(s, "steady", 30000))
    steady.start()
    inside = 0
    for attempt in range(10):
        died_before = s.stats()["lock"]["owner_died"]
        rx, tx = ctx.Pipe(duplex=False)
        child = ctx.Process(target=mpworkers.batch_looper, args=(s, tx, per_batch, attempt))
        child.start()
        tx.close()
        started = rx.recv()  # batch 0 about to start
        while started < 1:
            started = rx.recv()
        time.sleep(rng.uniform(0, 0.03))
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        last = started
        try:
            while rx.poll():
                last = rx.recv()
        except EOFError:
            pass
        rx.close()
        # The next operation takes the lock over (repairing if the child
        # died holding it) and goes on.
        s.add(f"after-{attempt}")
        assert f"after-{attempt}" in s
        counts = {}
        for k in s:
            if k.startswith(f"k{attempt}-"):
                j = int(k.split("-")[1])
                counts[j] = counts.get(j, 0) + 1
        for j in range(last + 1):
            want = (per_batch,) if j < last else (0, per_batch)
            assert counts.get(j, 0) in want, f"batch {j} of {last}: {counts.get(j, 0)} keys"
        assert set(counts) <= set(range(last + 1))
        inside += s.stats()["lock"]["owner_died"] > died_before
        if inside >= 2:
            break
    steady.join(120)
    assert steady.exitcode == 0, "a process working beside the killed ones went on"
    assert all(f"steady-{i}" in s for i in range(30000))
    # The repaired set is sound and usable.
    s.update(f"z{i}" for i in range(1000))
    assert inside >= 1, "no kill landed while the child held the lock"
    print(f"{attempt + 1} kills, {inside} while holding the lock")


# A set, and a child process stopped while it holds the set's lock.
STOPPED_HOLDER = r"""
import os, signal, sys, threading, time
import shset

# 256 MiB: one shard, so the lock the child holds is the one s.add needs.
s = shset.Set(keys=int, max_bytes=256 << 20)
pid = os.fork()
if pid == 0:
    keys = list(range(200000))
    while True:  # long batches; never touches the keys -1 and -2
        s.update(keys)
        s.difference_update(keys)

# Stop the child at a moment it holds the set's lock.
for attempt in range(1000):
    time.sleep(0.002 * (attempt % 7))
    os.kill(pid, signal.SIGSTOP)
    os.waitpid(pid, os.WUNTRACED)
    if s.stats()["lock"]["locked"]:
        break
    os.kill(pid, signal.SIGCONT)
else:
    sys.exit("never saw the child hold the lock")
"""

GIL_SCRIPT = STOPPED_HOLDER + r"""
# A thread now waits for the lock (futex sleep); this thread must go on.
waiter = threading.Thread(target=s.add, args=(-1,))
waiter.start()
count, t0 = 0, time.monotonic()
while time.monotonic() - t0 < 0.5:
    count += 1
blocked = waiter.is_alive()
os.kill(pid, signal.SIGCONT)
waiter.join(30)
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
print(blocked, count > 1000, not waiter.is_alive(), -1 in s)
"""


def run_stopped_holder_script(script, timeout, hung):
    """Runs @script in a separate interpreter: a hang becomes the failure
    @hung once @timeout passes (the whole process group goes, the stopped
    child included).  Returns the words it printed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(hung)
    assert p.returncode == 0, err
    return out.split()


def test_gil_released_while_waiting_for_the_lock():
    # If the GIL were held across the wait, the script would hang.
    out = run_stopped_holder_script(
        GIL_SCRIPT, 120, "a thread waiting for the set's lock kept the other threads from running")
    assert out == ["True", "True", "True", "True"]


INTERRUPT_SCRIPT = STOPPED_HOLDER + r"""
# The main thread waits for the lock a live, stopped process holds; Ctrl-C
# (SIGINT from another thread) must end the wait with KeyboardInterrupt.
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    s.add(-1)
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
still_held = s.stats()["lock"]["locked"]
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
# The interrupted add changed nothing; the set is usable after the holder.
absent = -1 not in s
s.add(-2)
print(interrupted, still_held, absent, -2 in s)
"""


def test_ctrl_c_ends_a_wait_for_the_lock():
    # Without the wait hook the add waits for the stopped holder for ever.
    out = run_stopped_holder_script(
        INTERRUPT_SCRIPT, 60, "Ctrl-C did not end a wait for a lock held by a stopped process")
    assert out == ["True", "True", "True", "True"]
