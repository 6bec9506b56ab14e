# SPDX-License-Identifier: MIT
"""What other threads, signals and forks can do to a call in progress: an
argument's conversion that closes the value, a bytearray rewritten while
the GIL is released, Ctrl-C while connect() waits, a child forked while
another thread is inside a call."""
import os
import signal
import socket
import threading
import time

import pytest

import shset


class Closer:
    """A number whose conversion closes the value it is handed to: Python
    code runs inside the call, as a Fraction's __float__ does."""

    def __init__(self, v):
        self.v = v

    def __index__(self):
        self.v.close()
        return 1

    def __float__(self):
        self.v.close()
        return 1.0


def ops():
    yield lambda: shset.Int(0), lambda v, c: v.fetch_add(c)
    yield lambda: shset.Int(0), lambda v, c: v.store(c)
    yield lambda: shset.Int(0), lambda v, c: v.compare_exchange(0, c)
    yield lambda: shset.UInt(0), lambda v, c: v.exchange(c)
    yield lambda: shset.Float(0.0), lambda v, c: v.store(c)
    yield lambda: shset.Float(0.0), lambda v, c: v.fetch_add(c)
    yield lambda: shset.Float(0.0), lambda v, c: v.compare_exchange(0.0, c)
    yield lambda: shset.IntArray(4), lambda v, c: v.__setitem__(1, c)
    yield lambda: shset.IntArray(4), lambda v, c: v.fetch_add(1, c)


@pytest.mark.parametrize("make,op", list(ops()))
def test_value_closed_by_its_argument(make, op):
    # The handle is taken after the argument is converted: the call sees a
    # closed value, not freed memory.
    v = make()
    with pytest.raises(ValueError, match="closed"):
        op(v, Closer(v))


def run_for(seconds, *fns):
    stop = time.monotonic() + seconds
    ts = [threading.Thread(target=lambda f=f: [f() for _ in iter(
        lambda: time.monotonic() < stop, False)]) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def test_bytearray_key_rewritten_during_add():
    # The key is copied before the GIL is released: each stored key is one
    # that was written whole, and found where its hash says.
    s = shset.Set(keys=bytes)
    ba = bytearray(b"A" * 64)
    vals = [bytes([c]) * 64 for c in b"ABCDEFGH"]
    i = [0]

    def flip():
        ba[:] = vals[i[0] & 7]
        i[0] += 1

    def add_discard():
        s.add(ba)
        s.discard(ba)

    run_for(2, flip, add_discard, add_discard)
    keys = list(s)
    assert all(k in vals for k in keys)
    assert all(k in s for k in keys)
    assert len(set(keys)) == len(keys)


def test_bytearray_value_rewritten_during_store():
    # Copied too: the stored bytes and their checksum agree.
    b = shset.Bytes(b"", capacity=1 << 16)
    ba = bytearray(1 << 16)
    i = [0]

    def flip():
        ba[0:4096] = bytes([i[0] & 255]) * 4096
        i[0] += 1

    def store_load():
        b.store(ba)
        b.load()

    run_for(2, flip, store_load)
    with shset.Bytes.attach(b.fileno()) as other:
        assert len(other.load()) == 1 << 16


@pytest.fixture
def mute_server(tmp_path):
    """A listener that never accepts nor sends, closed after 20 s so that a
    connect that ignores its timeout or signals ends anyway."""
    path = str(tmp_path / "mute.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(path)
    lsock.listen()
    watchdog = threading.Timer(20, lsock.close)
    watchdog.start()
    yield path
    watchdog.cancel()
    lsock.close()


def test_connect_timeouts_checked(mute_server):
    for bad in (float("nan"), float("inf"), -1.0, 0):
        with pytest.raises(ValueError):
            shset.Set.connect(mute_server, timeout=bad)
    # Under a millisecond: a millisecond, not a zero timeval ("none").
    with pytest.raises(TimeoutError):
        shset.Set.connect(mute_server, timeout=1e-7)


def test_connect_answers_signals(mute_server):
    # No timeout, a server that never sends: a signal handler's exception
    # still ends the wait.
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Interrupted):
            shset.Set.connect(mute_server)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_close_in_a_child_forked_during_a_call():
    # The child inherits the parent's count of calls in progress, not their
    # threads: its close() closes the memfd at once.
    s = shset.Set()
    fd = s.fileno()
    stop = False

    def writer():
        while not stop:
            s.update(f"k{i}" for i in range(20000))
            s.clear()

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(30):
            time.sleep(0.01)
            pid = os.fork()
            if pid == 0:
                s.close()
                link = f"/proc/self/fd/{fd}"
                os._exit(1 if os.path.exists(link) and "memfd" in os.readlink(link) else 0)
            _, st = os.waitpid(pid, 0)
            assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0
    finally:
        stop = True
        t.join()
