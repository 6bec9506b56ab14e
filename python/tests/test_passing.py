# SPDX-License-Identifier: MIT
"""A Set travels to other processes: multiprocessing under fork, spawn and
forkserver (Process arguments, Pool tasks, Queue, Pipe), and an unrelated
interpreter connecting to a real `shset serve`."""
import multiprocessing as mp
import os
import subprocess
import sys
import time

import pytest

import shset
import mpworkers

METHODS = ["fork", "spawn", "forkserver"]
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(params=METHODS)
def ctx(request):
    return mp.get_context(request.param)


def test_process_argument(ctx):
    s = shset.Set(["from-parent"])
    q = ctx.Queue()
    p = ctx.Process(target=_put_result, args=(q, mpworkers.add_range, s, "c", 100))
    p.start()
    n, saw_parent, kt = q.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0
    assert saw_parent and kt is str and n == 101
    assert len(s) == 101 and all(f"c{i}" in s for i in range(100))


def _put_result(q, fn, *args):
    q.put(fn(*args))


def test_process_argument_int_keys(ctx):
    s = shset.Set([1], keys=int)
    p = ctx.Process(target=_add_ints, args=(s,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert s == {1, -5, 10**200}


def _add_ints(s):
    assert s.keys_type is int and 1 in s
    s.update([-5, 10**200])


def test_pool_readme_example(ctx):
    s = shset.Set()
    with ctx.Pool(4) as pool:
        lens = pool.starmap(mpworkers.job_worker, [(s, 1000)] * 4)
    snap = s.copy()
    assert lens == [1000] * 4
    assert len(s) == 1000 and "job-7" in s
    assert sorted(s.snapshot())[:3] == ["job-0", "job-1", "job-10"]
    assert snap == s and snap.fileno() != s.fileno()


def test_pool_add_new_has_one_winner_per_key(ctx):
    s = shset.Set(keys=int)
    keys = list(range(2000))
    with ctx.Pool(3) as pool:
        won = pool.starmap(mpworkers.claim, [(s, keys)] * 6)
    flat = [k for w in won for k in w]
    assert sorted(flat) == keys, "every key won exactly once"
    assert s == set(keys)


def test_queue_both_ways(ctx):
    s = shset.Set(["start"])
    q_in, q_out, ack = ctx.Queue(), ctx.Queue(), ctx.Event()
    p = ctx.Process(target=mpworkers.queue_child, args=(q_in, q_out, ack))
    p.start()
    q_in.put(s)
    assert q_out.get(timeout=60) == ("seen", ["start", "via-queue"])
    theirs = q_out.get(timeout=60)
    ack.set()
    p.join(60)
    assert p.exitcode == 0
    assert "via-queue" in s
    assert type(theirs) is shset.Set and theirs == {"made-in-child"}
    theirs.add("the child is gone, the set is not")
    assert len(theirs) == 2


def test_pipe_and_no_fd_leak(ctx):
    s = shset.Set()
    a, b = ctx.Pipe()
    rounds = 30
    p = ctx.Process(target=mpworkers.pipe_child, args=(b, rounds))
    p.start()
    for _ in range(rounds):
        a.send(s)
    tag, before, after = a.recv()
    p.join(60)
    assert p.exitcode == 0 and tag == "done"
    assert s == {f"pipe-{r}" for r in range(rounds)}
    assert after == before, "a received and closed Set leaves no descriptor behind"


def test_plain_pickle_refused_but_forking_pickler_works():
    import pickle
    from multiprocessing.reduction import ForkingPickler
    s = shset.Set()
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert ForkingPickler.dumps(s)  # DupFd through the resource sharer


# --- an unrelated interpreter and `shset serve` ------------------------------------------

def _serve(tool, sock, **kw):
    srv = subprocess.Popen([tool, "serve", "--socket", sock], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, **kw)
    line = srv.stdout.readline()
    assert "listening" in line, (line, srv.stderr.read() if srv.poll() is not None else "")
    return srv


def _stop(srv):
    srv.terminate()
    out, err = srv.communicate(timeout=30)
    return out, err


CHILD = """
import sys, shset
s = shset.Set.connect(sys.argv[1], timeout=30)
assert s.keys_type is bytes, s.keys_type
s.update([b"from-python-%d" % i for i in range(100)])
print(len(s), b"from-tool" in s)
"""


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_unrelated_interpreter_connects_to_shset_serve(shset_tool, tmp_path, abstract):
    sock = f"@shset-test-{os.getpid()}" if abstract else str(tmp_path / "s.sock")
    srv = _serve(shset_tool, sock)
    try:
        subprocess.run([shset_tool, "add", "--socket", sock, "from-tool"], check=True,
                       capture_output=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        r = subprocess.run(["/usr/bin/python3", "-c", CHILD, sock], capture_output=True,
                           text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["101", "True"]
        # The tool, this process and the server see the same keys.
        out = subprocess.run([shset_tool, "size", "--socket", sock], capture_output=True,
                             text=True, check=True).stdout
        assert "101" in out
        s = shset.Set.connect(sock)
        assert len(s) == 101 and b"from-python-99" in s
    finally:
        out, err = _stop(srv)
    assert "stopped with 101 keys" in out


def test_connect_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        shset.Set.connect(str(tmp_path / "nothing"))
    with pytest.raises(ConnectionRefusedError):
        shset.Set.connect(f"@shset-test-none-{os.getpid()}")
    with pytest.raises(ValueError):
        shset.Set.connect("x", timeout=0)
    # A listener that never sends: the timeout ends the wait.
    import socket
    with socket.socket(socket.AF_UNIX) as l:
        l.bind(str(tmp_path / "mute.sock"))
        l.listen()
        t = time.monotonic()
        with pytest.raises(TimeoutError):
            shset.Set.connect(str(tmp_path / "mute.sock"), timeout=0.3)
        assert time.monotonic() - t < 30


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a server as another user")
def test_connect_refuses_a_server_of_another_user(shset_tool):
    sock = f"@shset-test-nobody-{os.getpid()}"
    srv = _serve(shset_tool, sock, user=65534, group=65534)
    try:
        with pytest.raises(PermissionError, match="uid 65534"):
            shset.Set.connect(sock, timeout=30)
    finally:
        _stop(srv)
