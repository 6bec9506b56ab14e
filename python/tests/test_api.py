# SPDX-License-Identifier: MIT
"""The Set API on one process: construction, key types, the MutableSet
protocol, operators, errors, files and handles."""
import collections.abc
import copy
import errno
import os
import pickle
import threading

import pytest

import shset

KEYS = {str: ["", "a", "é", "日本", "x" * 100], bytes: [b"", b"a", b"\x00\xff", b"y" * 100],
        int: [0, 1, -1, 12, -12, 10**200, -(10**200)]}


@pytest.fixture(params=[str, bytes, int], ids=["str", "bytes", "int"])
def kt(request):
    return request.param


def test_defaults_to_str_keys():
    s = shset.Set()
    assert s.keys_type is str and len(s) == 0 and not s.closed


def test_is_a_mutable_set():
    s = shset.Set()
    assert isinstance(s, collections.abc.MutableSet)
    assert isinstance(s, collections.abc.Set)
    assert issubclass(shset.Set, collections.abc.MutableSet)
    with pytest.raises(TypeError):
        hash(s)


def test_round_trip_each_key_type(kt):
    keys = KEYS[kt]
    s = shset.Set(keys, keys=kt)
    assert s.keys_type is kt
    assert len(s) == len(keys)
    for k in keys:
        assert k in s
    assert sorted(s) == sorted(keys)
    assert s.snapshot() == frozenset(keys)
    assert type(s.snapshot()) is frozenset
    assert all(type(k) is kt for k in s)


def test_bytes_sets_take_bytes_like():
    s = shset.Set(keys=bytes)
    s.add(bytearray(b"ba"))
    s.add(memoryview(b"mv"))
    assert b"ba" in s and bytearray(b"mv") in s
    assert sorted(s) == [b"ba", b"mv"]
    assert "ba" not in s


def test_int_keys_are_canonical_decimal(clib):
    s = shset.Set([True, 0, -7, 2**64, -(10**30)], keys=int)
    assert s == {0, 1, -7, 2**64, -(10**30)}
    assert 1.0 not in s and "1" not in s
    assert True in s
    # C programs see decimal text.
    for raw in (b"1", b"0", b"-7", b"18446744073709551616", b"-1" + b"0" * 30):
        assert clib.contains(s, raw) == 1, raw
    for raw in (b"+1", b"01", b"-0", b"True", b"1.0"):
        assert clib.contains(s, raw) == 0, raw
    # A C program adding text shares keys with Python.
    clib.add(s, b"12345678901234567890123")
    assert 12345678901234567890123 in s


def test_int_set_with_non_decimal_bytes_from_c(clib):
    s = shset.Set([5], keys=int)
    clib.add(s, b"007")
    with pytest.raises(ValueError, match="not a canonical decimal"):
        sorted(s)
    assert 7 not in s and 5 in s


def test_str_set_with_non_utf8_bytes_from_c(clib):
    # Bytes that are not UTF-8 come back with surrogate escapes (as
    # os.fsdecode does) and map back to the same bytes.
    s = shset.Set(["ok"])
    clib.add(s, b"\xff\xfe")
    got = sorted(s)
    assert got == ["ok", "\udcff\udcfe"]
    assert "\udcff\udcfe" in s
    s.remove("\udcff\udcfe")
    assert clib.contains(s, b"\xff\xfe") == 0
    # Text with lone surrogates is stored the same way.
    s.add("\udc80")
    assert clib.contains(s, b"\x80") == 1
    assert clib.contains(s, "é".encode()) == 0
    # Not encodable even so: not an element; adding it is an error.
    assert "\ud800" not in s
    with pytest.raises(UnicodeEncodeError):
        s.add("\ud800")
    s.add("é")
    assert clib.contains(s, "é".encode()) == 1


def test_failing_iterable_changes_nothing():
    s = shset.Set(["keep"])

    def gen():
        yield "a"
        yield "b"
        raise RuntimeError("input broke")
    for op in (s.update, s.difference_update, s.intersection_update,
               s.symmetric_difference_update):
        with pytest.raises(RuntimeError):
            op(gen())
        assert s == {"keep"}, op


def test_remove_discard_pop_clear():
    s = shset.Set(["a", "b"])
    s.discard("zz")
    s.remove("a")
    with pytest.raises(KeyError) as e:
        s.remove("a")
    assert e.value.args == ("a",)
    assert s.pop() == "b"
    with pytest.raises(KeyError):
        s.pop()
    s.update("xyz")
    s.clear()
    assert len(s) == 0 and list(s) == []


def test_add_new_is_test_and_add():
    s = shset.Set(keys=int)
    assert s.add_new(5) is True
    assert s.add_new(5) is False
    assert s == {5}


def test_contains_many(kt):
    keys = KEYS[kt]
    s = shset.Set(keys[::2], keys=kt)
    probe = keys + [object(), None]
    assert s.contains_many(probe) == [k in s for k in probe]
    assert s.contains_many(iter(keys)) == [i % 2 == 0 for i in range(len(keys))]
    assert s.contains_many([]) == []


def test_batch_methods_match_builtin_set():
    base = {"a", "b", "c", "d"}
    for name, args in [("update", (["x"], {"y", "a"})), ("update", ()),
                       ("difference_update", (["a"], ("b", "zz"))),
                       ("intersection_update", ({"a", "b", "q"}, ["b", "a", "c"])),
                       ("intersection_update", ()),
                       ("intersection_update", ([1, "a"],)),
                       ("symmetric_difference_update", (["a", "q", "q"],))]:
        ref = set(base)
        s = shset.Set(base)
        getattr(ref, name)(*args)
        assert getattr(s, name)(*args) is None
        assert s == ref, (name, args)


def test_batch_methods_with_other_shared_sets():
    for name in ("update", "difference_update", "intersection_update",
                 "symmetric_difference_update"):
        ref = {"a", "b", "c"}
        s = shset.Set(ref)
        o = shset.Set({"b", "c", "d"})
        getattr(ref, name)({"b", "c", "d"})
        getattr(s, name)(o)
        assert s == ref, name
        # With itself.
        ref2 = {"a", "b"}
        s2 = shset.Set(ref2)
        getattr(ref2, name)(set(ref2))
        getattr(s2, name)(s2)
        assert s2 == ref2, name
    # Another key type: like a builtin set of str updated with ints, but
    # the set holds one key type, so it is a TypeError.
    s = shset.Set({"a"})
    with pytest.raises(TypeError):
        s.update(shset.Set([1], keys=int))
    s.update(shset.Set(keys=int))
    assert s == {"a"}


def test_inplace_operators():
    s = shset.Set({"a", "b"})
    t = s
    s |= {"c"}
    s &= frozenset({"a", "c", "d"})
    s -= shset.Set({"a"})
    s ^= {"c", "e"}
    assert s is t and s == {"e"}
    with pytest.raises(TypeError):
        s |= ["not", "a", "set"]
    assert s is t


def test_binary_operators_return_builtin_sets():
    s = shset.Set({"a", "b"})
    o = {"b", "c"}
    for op in ("__or__", "__and__", "__sub__", "__xor__"):
        want = getattr(set(s), op)(o)
        got = getattr(s, op)(o)
        assert type(got) is set and got == want
    assert o - s == {"c"} and type(o - s) is set
    assert frozenset(o) | s == {"a", "b", "c"}
    assert s ^ shset.Set({"a"}) == {"b"}
    assert s.keys() if False else True
    with pytest.raises(TypeError):
        s | ["list"]


def test_comparisons():
    s = shset.Set({"a", "b"})
    same = shset.Set({"a", "b"})
    big = shset.Set({"a", "b", "c"})
    assert s == {"a", "b"} and {"a", "b"} == s and frozenset({"a", "b"}) == s
    assert s == same and not (s != same)
    assert s != {"a"} and s != big
    assert s <= big and s < big and big >= s and big > s
    assert not (s < same) and s <= same
    assert s <= {"a", "b", "z"} and s < {"a", "b", "z"} and {"a"} < s
    assert s != ["a", "b"] and not (s == "ab")
    assert s != shset.Set({b"a", b"b"}, keys=bytes)
    assert shset.Set(keys=int) == shset.Set(keys=str)  # both empty
    with pytest.raises(TypeError):
        s < ["a"]


def test_relations():
    s = shset.Set({"a", "b"})
    assert s.issubset(["a", "b", "c"]) and not s.issubset(("a",))
    assert s.issuperset(("a",)) and not s.issuperset(["q"])
    assert s.isdisjoint(["q"]) and not s.isdisjoint(iter(["b"]))
    o = shset.Set({"a", "b", "c"})
    assert s.issubset(o) and o.issuperset(s) and not s.isdisjoint(o)
    assert shset.Set({"z"}).isdisjoint(o)


def test_copy_is_a_new_shared_set(kt):
    s = shset.Set(KEYS[kt], keys=kt)
    c = s.copy()
    assert type(c) is shset.Set and c.keys_type is kt and c == s
    assert c.fileno() != s.fileno()
    s.clear()
    assert len(c) == len(KEYS[kt])
    assert copy.copy(c) == c and copy.deepcopy(c) == c


def test_iteration_sees_the_state_when_it_started():
    s = shset.Set(str(i) for i in range(1000))
    seen = []
    for k in s:
        seen.append(k)
        s.discard(k)
        s.add(k + "x")  # writers during iteration change nothing seen
    assert sorted(seen) == sorted(str(i) for i in range(1000))
    assert len(s) == 1000
    it = iter(s)
    assert it.__length_hint__() == 1000


def test_pickle_refused():
    s = shset.Set()
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot pickle"):
            pickle.dumps(s, proto)


def test_save_load(tmp_path, kt):
    s = shset.Set(KEYS[kt], keys=kt)
    path = tmp_path / "snap.shs"
    s.save(path)
    s.save(str(tmp_path / "sorted.shs"), sorted=True)
    for p in (path, tmp_path / "sorted.shs"):
        t = shset.Set.load(p)
        assert t.keys_type is kt and t == s  # the file keeps the key type
    with pytest.raises(FileNotFoundError) as e:
        shset.Set.load(tmp_path / "missing")
    assert e.value.filename == tmp_path / "missing"
    (tmp_path / "junk").write_bytes(b"x" * 200)
    with pytest.raises(OSError) as e:
        shset.Set.load(tmp_path / "junk")
    assert e.value.errno == errno.EBADMSG
    with pytest.raises(IsADirectoryError):
        s.save(tmp_path)


def test_attach_and_errors(tmp_path):
    s = shset.Set({"a"})
    t = shset.Set.attach(s.fileno())
    t.add("b")
    assert s == {"a", "b"}
    with open(tmp_path / "f", "w+b") as f:
        with pytest.raises(OSError) as e:
            shset.Set.attach(f)
        assert e.value.errno == errno.EMEDIUMTYPE
    with pytest.raises(OSError) as e:
        shset.Set.attach(10**6)
    assert e.value.errno == errno.EBADF
    fd = os.memfd_create("not-a-set", os.MFD_ALLOW_SEALING)
    try:
        with pytest.raises(OSError):
            shset.Set.attach(fd)
    finally:
        os.close(fd)


def test_close_and_context_manager():
    with shset.Set({"a"}) as s:
        fd = s.fileno()
        assert "a" in s
    assert s.closed
    for call in (lambda: "a" in s, lambda: len(s), s.fileno, s.copy, lambda: s.add("b"),
                 lambda: list(s)):
        with pytest.raises(ValueError, match="closed"):
            call()
    s.close()
    assert "closed" in repr(s)
    with pytest.raises(OSError):
        os.fstat(fd)  # the handle's fd is gone with it


def test_close_while_other_threads_work():
    s = shset.Set()
    errors = []

    def work():
        try:
            for i in range(20000):
                s.add(str(i))
                s.update([str(i), "x"])
        except ValueError as e:
            assert "closed" in str(e)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    s.close()
    for t in ts:
        t.join()
    assert not errors


def test_max_bytes_full_raises_enospc():
    s = shset.Set(keys=bytes, max_bytes=4 << 20)
    with pytest.raises(OSError) as e:
        for i in range(1000):
            s.update(os.urandom(16) + bytes([i % 256]) * j for j in range(500))
    assert e.value.errno == errno.ENOSPC
    n = len(s)
    with pytest.raises(OSError):
        s.update([b"z" * 60000 + bytes([i]) for i in range(100)])
    assert len(s) == n, "a failed batch changes nothing"


def test_constructor_arguments():
    assert len(shset.Set(capacity=100000)) == 0
    with pytest.raises(ValueError):
        shset.Set(keys=float)
    with pytest.raises(ValueError):
        shset.Set(max_bytes=0)
    with pytest.raises(OverflowError):
        shset.Set(capacity=-1)
    with pytest.raises(TypeError):
        shset.Set(["a"], ["b"])


def test_shards_argument():
    # The shards lie max_bytes / shards apart in the memfd, so the file
    # reaches into the last one: its size tells how many there are.
    gib = 1 << 30
    sizes = {}
    for n in (1, 2, 16):
        s = shset.Set((str(i) for i in range(2000)), max_bytes=gib, shards=n)
        assert len(s) == 2000 and "1999" in s and "2000" not in s
        c = s.copy()
        assert c == s and len(c) == 2000
        s.discard("7")
        assert len(s) == 1999 and "7" not in s and "7" in c
        sizes[n] = os.fstat(s.fileno()).st_size
        c.close()
        s.close()
    assert sizes[1] < gib // 2 <= sizes[2] < gib * 15 // 16 <= sizes[16]
    # The default: one per 512 MiB of max_bytes, so 2 for 1 GiB.
    d = shset.Set(max_bytes=gib)
    d.add("x")
    assert gib // 2 <= os.fstat(d.fileno()).st_size < gib * 15 // 16
    d.close()
    for bad in (3, 5, 32, -1):
        with pytest.raises(ValueError):
            shset.Set(shards=bad)
    with pytest.raises(OverflowError):
        shset.Set(shards=(1 << 64) + 2)
    with pytest.raises(OSError) as e:
        shset.Set(max_bytes=8 << 20, shards=16)  # 512 KiB each: too small
    assert e.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        shset.Set(shards="2")


def test_stats_and_repr():
    s = shset.Set(["a", "b"])
    st = s.stats()
    assert st["count"] == 2 and st["attached"] >= 1
    assert repr(s).startswith("<shset.Set of str keys, 2 keys, fd ")


def test_generic_alias_for_annotations():
    alias = shset.Set[str]
    assert alias.__origin__ is shset.Set and alias.__args__ == (str,)


def test_docstrings_everywhere():
    assert shset.Set.__doc__ and "memfd" in shset.Set.__doc__
    for name in dir(shset.Set):
        attr = getattr(shset.Set, name)
        if name.startswith("_") and name not in ("__enter__", "__exit__", "__copy__"):
            continue
        assert attr.__doc__, name
    assert "atomic test-and-add" in shset.Set.add_new.__doc__


def test_intersection_drops_keys_too_long_for_any_set():
    # Such keys are in no set ("in" says False): &= drops them as it drops
    # keys of another type, instead of raising.
    long = "x" * (shset.KEY_MAX + 1)
    s = shset.Set(["a", "b"])
    s &= {long, "a"}
    assert set(s) == {"a"}
    s.intersection_update([long])
    assert len(s) == 0
    si = shset.Set([1, 2], keys=int)
    si &= {10 ** 5000, 2}
    assert set(si) == {2}
