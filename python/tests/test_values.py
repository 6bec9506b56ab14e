# SPDX-License-Identifier: MIT
"""shset.Int, UInt, Float, Bytes, String, IntArray, UIntArray: every
operation against a model, the package example's shape across processes
and threads, torn reads, writers killed mid-store, and passing to
multiprocessing workers."""
import errno
import math
import mmap
import multiprocessing as mp
import os
import pickle
import random
import select
import signal
import struct
import threading

import pytest
from hypothesis import given, strategies as st

import shset
import valueworkers

METHODS = ["fork", "spawn", "forkserver"]
I64 = (-2**63, 2**63 - 1)
U64 = (0, 2**64 - 1)


def wrap_i(x):
    return (x + 2**63) % 2**64 - 2**63


def wrap_u(x):
    return x % 2**64


# --- integers against a model ----------------------------------------------------------

def _int_edges(lo, hi):
    return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1, -1 if lo else 2, lo + 1,
                                                           hi - 1]))


def _int_ops(lo, hi):
    arg = _int_edges(lo, hi)
    return st.lists(st.one_of(
        st.tuples(st.sampled_from(["store", "exchange", "fetch_add", "fetch_sub", "fetch_and",
                                   "fetch_or", "fetch_xor", "add_fetch", "sub_fetch", "iadd",
                                   "isub", "iand", "ior", "ixor"]), arg),
        st.tuples(st.just("cas_hit"), arg),
        st.tuples(st.just("cas_miss"), arg)), max_size=40)


def _apply_int(call, model, op, n, wrap):
    """Applies op to the shared value (through call(name, *args)) and to
    the model; returns the new model value after checking the result."""
    old = model
    new = {"store": n, "exchange": n, "fetch_add": old + n, "fetch_sub": old - n,
           "fetch_and": old & n, "fetch_or": old | n, "fetch_xor": old ^ n,
           "add_fetch": old + n, "sub_fetch": old - n, "iadd": old + n, "isub": old - n,
           "iand": old & n, "ior": old | n, "ixor": old ^ n, "cas_hit": n,
           "cas_miss": old}[op]
    new = wrap(new)
    if op == "cas_hit":
        assert call("compare_exchange", old, n) is True
    elif op == "cas_miss":
        other = wrap(old + 1)
        assert call("compare_exchange", other, n) is False
    elif op.startswith("i"):
        call(op)(n)
    else:
        r = call(op, n)
        expected = {"store": None, "add_fetch": new, "sub_fetch": new}.get(op, old)
        assert r == expected, (op, old, n)
    return new


@pytest.mark.parametrize("cls,lo,hi,wrap", [(shset.Int, *I64, wrap_i), (shset.UInt, *U64, wrap_u)])
def test_int_model(cls, lo, hi, wrap):
    @given(st.integers(lo, hi), _int_ops(lo, hi))
    def run(init, ops):
        v = cls(init)
        model = init
        box = [v]

        def call(name, *args):
            if name.startswith("i") and not args:
                def inplace(n):
                    w = box[0]
                    if name == "iadd":
                        w += n
                    elif name == "isub":
                        w -= n
                    elif name == "iand":
                        w &= n
                    elif name == "ior":
                        w |= n
                    else:
                        w ^= n
                    assert w is v, "an in-place operator keeps the shared value"
                return inplace
            return getattr(v, name)(*args)

        for op, n in ops:
            model = _apply_int(call, model, op, n, wrap)
            assert v.load() == model and v.value == model and int(v) == model
        v.close()

    run()


@pytest.mark.parametrize("cls,lo,hi,wrap",
                         [(shset.IntArray, *I64, wrap_i), (shset.UIntArray, *U64, wrap_u)])
def test_array_model(cls, lo, hi, wrap):
    @given(st.lists(st.tuples(st.integers(-5, 4), st.sampled_from(
        ["store", "exchange", "fetch_add", "fetch_sub", "fetch_and", "fetch_or", "fetch_xor",
         "add_fetch", "sub_fetch", "cas_hit", "cas_miss", "setitem"]), _int_edges(lo, hi)),
        max_size=60))
    def run(ops):
        a = cls(5)
        model = [0] * 5
        for i, op, n in ops:
            if op == "setitem":
                a[i] = n
                model[i] = n
            else:
                model[i] = _apply_int(lambda name, *args: getattr(a, name)(i, *args), model[i],
                                      op, n, wrap)
            assert a[i] == model[i] and a.load(i) == model[i]
        assert a.tolist() == model and list(a) == model and len(a) == 5
        a.close()

    run()


def test_int_wraps_and_refuses_out_of_range():
    v = shset.Int(2**63 - 1)
    assert v.fetch_add(1) == 2**63 - 1 and v.value == -2**63
    v -= 1
    assert v == 2**63 - 1
    assert v.add_fetch(2**63 - 1) == -2
    for bad in (2**63, -2**63 - 1, 10**30):
        with pytest.raises(OverflowError):
            v.store(bad)
        with pytest.raises(OverflowError):
            v.fetch_add(bad)
        with pytest.raises(OverflowError):
            shset.Int(bad)
    assert v == -2, "a refused store stores nothing"
    with pytest.raises(TypeError):
        v.store(1.5)
    with pytest.raises(TypeError):
        v += 1.5
    assert type(v) is shset.Int, "a refused in-place operator does not rebind"

    u = shset.UInt()
    assert u.fetch_sub(1) == 0 and u.value == 2**64 - 1
    u += 1
    assert u == 0
    for bad in (-1, 2**64):
        with pytest.raises(OverflowError):
            u.store(bad)
        with pytest.raises(OverflowError):
            shset.UInt(bad)
    assert shset.UInt(True) == 1


def test_int_reads_and_operators():
    v = shset.Int(7)
    assert repr(v) == "shset.Int(7)" and str(v) == "7"
    assert v + 1 == 8 and 1 + v == 8 and v * 2 == 14 and v // 2 == 3 and v / 2 == 3.5
    assert -v == -7 and abs(shset.Int(-3)) == 3 and ~v == -8 and v % 4 == 3 and 2 ** v == 128
    assert v & 3 == 3 and v | 8 == 15 and v ^ 1 == 6 and v << 1 == 14 and v >> 1 == 3
    assert float(v) == 7.0 and int(v) == 7 and ([0] * 8)[v] == 0 and bool(shset.Int()) is False
    assert v < 8 and v <= 7 and v > 6 and v >= 7 and v != 8 and 8 > v and v == shset.Int(7)
    with pytest.raises(TypeError):
        hash(v)
    w = v
    for refused in ("w *= 2", "w /= 2", "w //= 2", "w %= 2", "w **= 2", "w <<= 1", "w >>= 1"):
        with pytest.raises(TypeError, match="not atomic"):
            exec(refused)
    assert w is v and v == 7


def test_float_model_and_bit_patterns():
    f = shset.Float()
    assert f.value == 0.0 and repr(f) == "shset.Float(0.0)"
    assert f.exchange(1.5) == 0.0
    assert f.fetch_add(2) == 1.5 and f.value == 3.5
    assert f.fetch_sub(0.25) == 3.5 and f.load() == 3.25
    g = f
    g += 0.75
    g -= 1
    assert g is f and f == 3.0 and float(f) == 3.0 and int(f) == 3 and f + 1 == 4.0
    assert f.compare_exchange(3.0, -0.0) is True
    assert f.compare_exchange(0.0, 1.0) is False, "bit patterns: 0.0 is not -0.0"
    assert math.copysign(1, f.value) == -1
    nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000123))[0]
    f.store(nan)
    assert f.compare_exchange(nan, 2.0) is True and f.value == 2.0
    f.store(math.inf)
    assert f.value == math.inf
    with pytest.raises(TypeError):
        f.store("1.0")
    with pytest.raises(TypeError, match="not atomic"):
        f *= 2
    f.store(1e308)
    assert f.fetch_add(1e308) == 1e308 and f.value == math.inf


BYTES = st.binary(max_size=20)


@given(st.lists(st.tuples(st.sampled_from(["store", "exchange", "cas_hit", "cas_miss", "value"]),
                          st.binary(max_size=24)), max_size=30))
def test_bytes_model(ops):
    b = shset.Bytes(capacity=20)
    model = b""
    for op, x in ops:
        if len(x) > 20:
            with pytest.raises(ValueError):
                getattr(b, "store" if op in ("value", "cas_hit", "cas_miss") else op)(x)
        elif op == "store":
            assert b.store(x) is None
            model = x
        elif op == "value":
            b.value = bytearray(x)
            model = x
        elif op == "exchange":
            assert b.exchange(memoryview(x)) == model
            model = x
        elif op == "cas_hit":
            assert b.compare_exchange(model, x) is True
            model = x
        else:
            assert b.compare_exchange(model + b"?", x) is False
        assert b.load() == model and b.value == model and bytes(b) == model and b == model


def test_bytes_empty_and_full_capacity():
    b = shset.Bytes()
    assert b.value == b"" and b.capacity == 64 and repr(b) == "shset.Bytes(b'', capacity=64)"
    full = bytes(range(64))
    b.store(full)
    assert b.value == full
    with pytest.raises(ValueError):
        b.store(full + b"x")
    with pytest.raises(ValueError):
        b.exchange(full + b"x")
    with pytest.raises(ValueError):
        b.compare_exchange(full, full + b"x")
    assert b.value == full
    assert b.exchange(b"") == full and b.value == b""
    z = shset.Bytes(capacity=0)
    assert z.value == b"" and z.capacity == 0
    with pytest.raises(ValueError):
        z.store(b"x")
    with pytest.raises(ValueError):
        shset.Bytes(b"abc", capacity=2)
    with pytest.raises(ValueError):
        shset.Bytes(capacity=-1)
    with pytest.raises(TypeError):
        b.store("str")
    # Beyond the first read buffer: values of some kilobytes.
    big = shset.Bytes(os.urandom(5000), capacity=10000)
    other = os.urandom(10000)
    old = big.value
    assert len(old) == 5000 and big.exchange(other) == old and big.load() == other


def test_string_non_ascii():
    s = shset.String("héllo wörld ✓ 日本", capacity=40)
    assert s.value == "héllo wörld ✓ 日本" and str(s) == s.value and s == "héllo wörld ✓ 日本"
    assert repr(s) == "shset.String('héllo wörld ✓ 日本', capacity=40)"
    exactly = "é" * 20  # 40 bytes of UTF-8, 20 characters
    assert s.exchange(exactly) == "héllo wörld ✓ 日本" and s.value == exactly
    with pytest.raises(ValueError):
        s.store("é" * 20 + "x")
    with pytest.raises(ValueError):
        shset.String("€" * 22, capacity=64)  # 66 bytes
    assert s.compare_exchange("é" * 19, "no") is False
    assert s.compare_exchange(exactly, "🐍") is True and s.load() == "🐍"
    s.value = "a\udcffb"  # lone surrogates travel as the bytes they escape
    assert s.value == "a\udcffb"
    with pytest.raises(TypeError):
        s.store(b"bytes")


def test_array_indexes_and_errors():
    a = shset.IntArray(3)
    assert len(a) == 3 and a.tolist() == [0, 0, 0] and repr(a) == "shset.IntArray(3)"
    a[-1] = 5
    assert a[2] == 5 and a.load(-1) == 5 and a.fetch_add(-3, 2) == 0 and a[0] == 2
    for bad in (3, -4, 2**70):
        with pytest.raises(IndexError):
            a[bad]
        with pytest.raises(IndexError):
            a[bad] = 1
        with pytest.raises(IndexError):
            a.fetch_add(bad, 1)
        with pytest.raises(IndexError):
            a.compare_exchange(bad, 0, 1)
    with pytest.raises(TypeError):
        a[0:2]
    with pytest.raises(TypeError):
        del a[0]
    with pytest.raises(TypeError):
        a["0"]
    with pytest.raises(TypeError):
        a.fetch_add(0)
    with pytest.raises(OverflowError):
        a[0] = 2**63
    ua = shset.UIntArray(2)
    assert ua.fetch_sub(1, 1) == 0 and ua[1] == 2**64 - 1 and 2**64 - 1 in ua
    with pytest.raises(OverflowError):
        ua[0] = -1
    assert len(shset.IntArray(0)) == 0 and list(shset.IntArray(0)) == []
    with pytest.raises(ValueError):
        shset.IntArray(-1)
    big = shset.UIntArray(10000)  # many counters, one descriptor
    big.fetch_add(9999, 3)
    assert big[9999] == 3 and sum(big.tolist()) == 3


ALL = [lambda: shset.Int(1), lambda: shset.UInt(1), lambda: shset.Float(1),
       lambda: shset.Bytes(b"x"), lambda: shset.String("x"), lambda: shset.IntArray(1),
       lambda: shset.UIntArray(1)]


@pytest.mark.parametrize("make", ALL)
def test_handles_attach_close_pickle(make):
    v = make()
    cls = type(v)
    other = cls.attach(v.fileno())
    assert other.fileno() != v.fileno()
    with cls.attach(v) as w:  # anything with fileno()
        assert w is not v and not w.closed
    assert w.closed and "closed" in repr(w)
    with pytest.raises(ValueError, match="closed"):
        w.fileno()
    with pytest.raises(ValueError, match="closed"):
        w.load() if cls not in (shset.IntArray, shset.UIntArray) else w[0]
    w.close()  # twice: harmless
    for wrong in (shset.Int, shset.Float, shset.Bytes, shset.IntArray):
        if wrong is not cls:
            with pytest.raises(TypeError):
                wrong.attach(v.fileno())
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(v)
    a_set = shset.Set()
    with pytest.raises(OSError) as e:
        cls.attach(a_set.fileno())
    assert e.value.errno == errno.EPROTO
    r, wfd = os.pipe()
    with pytest.raises(OSError) as e:
        cls.attach(r)
    assert e.value.errno == errno.EMEDIUMTYPE
    os.close(r)
    os.close(wfd)
    other.close()
    v.close()


def test_attach_sees_the_same_value():
    v = shset.Int(1)
    w = shset.Int.attach(v.fileno())
    w += 41
    assert v == 42
    b = shset.Bytes(capacity=8)
    shset.Bytes.attach(b.fileno()).store(b"shared")
    assert b.value == b"shared"


def test_close_while_threads_load():
    b = shset.Bytes(b"x" * 1000, capacity=1000)
    stop = threading.Event()
    errors = []

    def load():
        while not stop.is_set():
            try:
                assert b.load() == b"x" * 1000
            except ValueError:  # closed: expected
                return
            except Exception as e:
                errors.append(repr(e))
                return

    ts = [threading.Thread(target=load) for _ in range(4)]
    for t in ts:
        t.start()
    b.close()
    stop.set()
    for t in ts:
        t.join()
    assert errors == []


# --- across processes --------------------------------------------------------------------

@pytest.fixture(params=METHODS)
def ctx(request):
    return mp.get_context(request.param)


def test_example_shape(ctx):
    """2 processes x 100 threads on an Int, a Bytes and an IntArray."""
    procs, nthreads, n = 2, 100, 200
    counter, tags, hits = shset.Int(0), shset.Bytes(b"0", capacity=16), shset.IntArray(10)
    q = ctx.Queue()
    ps = [ctx.Process(target=valueworkers.shape_process, args=(q, counter, tags, hits, nthreads, n))
          for _ in range(procs)]
    for p in ps:
        p.start()
    errors = [q.get(timeout=120) for _ in ps]
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert errors == [[]] * procs
    assert counter.value == procs * nthreads * n
    assert tags.value == b"%d" % (procs * nthreads)
    assert hits.tolist() == [procs * nthreads * n // 10] * 10


@pytest.mark.parametrize("kind", ["bytes", "string"])
def test_no_torn_reads(kind):
    """Two writers store values of different lengths, two readers in other
    processes check that every value they read is one that was stored."""
    ctx = mp.get_context("forkserver")
    if kind == "bytes":
        v, a, b = shset.Bytes(b"", capacity=256), valueworkers.TORN_A, valueworkers.TORN_B
    else:
        v, a, b = shset.String("", capacity=256), valueworkers.TORN_STR[:2], \
            valueworkers.TORN_STR[2:]
    done, start, q = shset.Int(0), shset.Int(0), ctx.Queue()
    ps = [ctx.Process(target=valueworkers.torn_reader, args=(q, v, a + b, done, start, 4))
          for _ in range(2)]
    ps += [ctx.Process(target=valueworkers.torn_writer, args=(q, v, vals, 100000, start, 4))
           for vals in (a, b)]
    for p in ps:
        p.start()
    # Readers run until done: the first two results are the writers'.
    results = [q.get(timeout=120) for _ in range(2)]
    done.store(1)
    results += [q.get(timeout=120) for _ in range(2)]
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(r for r in results if r[0] == "writer") == [("writer", 100000)] * 2
    for _, reads, bad in (r for r in results if r[0] == "reader"):
        assert bad == [] and reads >= 1000
    assert v.value in a + b


def _store_loop(fd, values, ready_w):
    # The child of test_sigkill_mid_store: its own handle (its own writer
    # slot), stores until killed.
    b = shset.Bytes.attach(fd)
    b.store(values[0])
    os.write(ready_w, b"r")
    i = 1
    while True:
        b.store(values[i % len(values)])
        i += 1


def test_sigkill_mid_store():
    """A writer killed at a random moment of its stores, 200 times: every
    value read afterwards is one that was stored, and writers go on."""
    rng = random.Random(1234)
    values = [bytes([65 + k]) * n for k, n in enumerate((0, 1, 100, 1000, 4095, 4096, 2500))]
    b = shset.Bytes(b"", capacity=4096)
    seen = set()
    for rnd in range(200):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(r)
                _store_loop(b.fileno(), values, w)
            finally:
                os._exit(1)
        os.close(w)
        assert os.read(r, 1) == b"r"
        os.close(r)
        for _ in range(rng.randrange(0, 3000)):  # a short, random delay
            pass
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status)
        v = b.load()
        assert v in values, (rnd, len(v))
        seen.add(v)
        if rnd % 20 == 0:  # the lock a dead writer may have held is usable
            mine = b"parent-%d" % rnd
            assert b.exchange(mine) in values and b.value == mine
    assert len(seen) > 1, "the kills landed at different points"


@pytest.fixture
def all_values():
    return [shset.Int(-5), shset.UInt(5), shset.Float(0.5), shset.Bytes(b"b"),
            shset.String("s"), shset.IntArray(2), shset.UIntArray(2)]


def _check_touched(values, seen):
    assert seen == (-5, 5, 0.5, b"b", "s", [0, 0], [0, 0])
    i, u, f, b, s, ia, ua = values
    assert (i.value, u.value, f.value, b.value, s.value, ia.tolist(), ua.tolist()) == \
        (-4, 4, 1.0, b"from child", "из ребёнка", [0, 7], [0, 2**64 - 1])


def test_process_arguments(ctx, all_values):
    with ctx.Pool(1) as pool:
        seen = pool.apply(valueworkers.touch_all, (all_values,))
    _check_touched(all_values, seen)


def test_queue(ctx, all_values):
    q_in, q_out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=valueworkers.queue_child, args=(q_in, q_out))
    p.start()
    q_in.put(all_values)
    seen = q_out.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0
    _check_touched(all_values, seen)


def test_pipe_and_no_fd_leak(ctx):
    c = shset.Int()
    a, b = ctx.Pipe()
    rounds = 30
    p = ctx.Process(target=valueworkers.pipe_child, args=(b, rounds))
    p.start()
    for _ in range(rounds):
        a.send(c)
    tag, before, after = a.recv()
    p.join(60)
    assert p.exitcode == 0 and tag == "done"
    assert c == rounds
    assert after == before, "a received and closed value leaves no descriptor behind"


def test_arrays_are_iterable():
    import collections.abc
    for cls in (shset.IntArray, shset.UIntArray):
        a = cls(3)
        a[1] = 7
        assert isinstance(a, collections.abc.Iterable)
        assert list(iter(a)) == [0, 7, 0]


def _forge_own_word(fd):
    """As a hostile peer: write into the lock word (offset 256 of a byte
    string, and of a set's shard 0) the owner value of this process's slot
    in the slot table (at 4096, 16 bytes a slot: gen, pid, since_ns; the
    word is (slot + 1) | gen << 12)."""
    with mmap.mmap(fd, 4096 + 256 * 16) as m:
        for i in range(256):
            gen, pid = struct.unpack_from("<II", m, 4096 + 16 * i)
            if pid == os.getpid():
                struct.pack_into("<I", m, 256, (i + 1) | ((gen & 0x1FFFF) << 12))
                return
    raise AssertionError("no slot of this process")


@pytest.mark.parametrize("kind", ["bytes", "set"])
def test_recover_frees_a_forged_word(kind):
    """A peer forges the lock word to name this process, which wrote once
    and then sits idle: another process's write waits until recover()."""
    if kind == "bytes":
        obj = shset.Bytes(b"init", capacity=64)
        obj.store(b"mine")
    else:
        obj = shset.Set(keys=bytes, shards=1)
        obj.add(b"mine")
    _forge_own_word(obj.fileno())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if kind == "bytes":
                shset.Bytes.attach(obj.fileno()).store(b"from B")
            else:
                shset.Set.attach(obj.fileno()).add(b"from B")
            os.write(w, b"ok")
        finally:
            os._exit(0)
    done = False
    try:
        assert select.select([r], [], [], 0.3)[0] == []  # waits: the word names us
        obj.recover()
        assert select.select([r], [], [], 10)[0] == [r]
        assert os.read(r, 2) == b"ok"
        done = True
    finally:
        if not done:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    if kind == "bytes":
        assert obj.load() == b"from B"
    else:
        assert sorted(obj) == [b"from B", b"mine"]
    obj.close()
    with pytest.raises(ValueError):
        obj.recover()


def test_recover_of_numbers_returns_at_once():
    for v in (shset.Int(1), shset.Float(2.0), shset.IntArray(3)):
        assert v.recover() is None
        v.close()
