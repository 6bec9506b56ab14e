# SPDX-License-Identifier: MIT
"""Stateful property test: a shset.Set behaves as a builtin set under any
sequence of operations, for each key type."""
import os
import tempfile

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import shset

POOLS = {
    str: ["", "a", "é", "日本語", "\U0001F600", "a" * 30, "k\x00z"],
    bytes: [b"", b"a", b"\x00", b"\xff\xfe", b"x" * 21, b"y" * 300],
    int: [0, 1, -1, 10**200, -(10**200), 2**63, -(2**63) - 1, 10**18],
}
FULL = {
    str: st.text(max_size=40),
    bytes: st.binary(max_size=40),
    int: st.one_of(st.integers(), st.integers(min_value=-(10**200), max_value=10**200)),
}


def machine(kt):
    keys = st.one_of(st.sampled_from(POOLS[kt]), FULL[kt])
    many = st.lists(keys, max_size=30)

    class SetMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.s = shset.Set(keys=kt)
            self.m = set()

        def teardown(self):
            self.s.close()

        @rule(k=keys)
        def add(self, k):
            self.s.add(k)
            self.m.add(k)

        @rule(k=keys)
        def add_new(self, k):
            assert self.s.add_new(k) == (k not in self.m)
            self.m.add(k)

        @rule(k=keys)
        def discard(self, k):
            self.s.discard(k)
            self.m.discard(k)

        @rule(k=keys)
        def remove(self, k):
            if k in self.m:
                self.s.remove(k)
                self.m.remove(k)
            else:
                with pytest.raises(KeyError):
                    self.s.remove(k)

        @rule()
        def pop(self):
            if self.m:
                k = self.s.pop()
                assert k in self.m and type(k) is kt
                self.m.remove(k)
            else:
                with pytest.raises(KeyError):
                    self.s.pop()

        @precondition(lambda self: len(self.m) > 20)
        @rule()
        def clear(self):
            self.s.clear()
            self.m.clear()

        @rule(ks=many, more=many)
        def update(self, ks, more):
            self.s.update(ks, more)
            self.m.update(ks, more)

        @rule(ks=many)
        def difference_update(self, ks):
            self.s.difference_update(ks)
            self.m.difference_update(ks)

        @rule(ks=many, more=many)
        def intersection_update(self, ks, more):
            ks = ks + list(self.m)[: len(ks)]  # keep some keys
            self.s.intersection_update(ks, more + ks)
            self.m.intersection_update(ks, more + ks)

        @rule(ks=many)
        def symmetric_difference_update(self, ks):
            self.s.symmetric_difference_update(ks)
            self.m.symmetric_difference_update(ks)

        @rule(ks=many, op=st.sampled_from(["__ior__", "__iand__", "__isub__", "__ixor__"]),
              shared=st.booleans())
        def inplace(self, ks, op, shared):
            other = shset.Set(ks, keys=kt) if shared else set(ks)
            before = self.s
            assert getattr(self.s, op)(other) is before
            getattr(self.m, op)(set(ks))

        @rule(ks=many, op=st.sampled_from(["__or__", "__and__", "__sub__", "__xor__",
                                           "__rsub__"]))
        def binary(self, ks, op):
            got = getattr(self.s, op)(frozenset(ks))
            assert type(got) is set and got == getattr(self.m, op)(frozenset(ks))

        @rule(ks=many)
        def queries(self, ks):
            probe = ks + list(self.m)[:5]
            assert self.s.contains_many(probe) == [k in self.m for k in probe]
            assert all((k in self.s) == (k in self.m) for k in probe)
            assert self.s.issubset(probe) == self.m.issubset(probe)
            assert self.s.issuperset(probe) == self.m.issuperset(probe)
            assert self.s.isdisjoint(probe) == self.m.isdisjoint(probe)
            sub = set(probe)
            assert (self.s <= sub) == (self.m <= sub) and (self.s < sub) == (self.m < sub)
            assert (self.s >= sub) == (self.m >= sub) and (sub == self.s) == (sub == self.m)

        @rule()
        def copy(self):
            c = self.s.copy()
            assert c.keys_type is kt and c == self.m and c == self.s
            c.add(POOLS[kt][1])
            assert self.s == self.m  # independent
            c.close()

        @precondition(lambda self: len(self.m) > 5)
        @rule()
        def save_load(self):
            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "s.shs")
                self.s.save(p)
                t = shset.Set.load(p)
                assert t.keys_type is kt and t == self.m
                t.close()

        @invariant()
        def same_content(self):
            assert len(self.s) == len(self.m)
            snap = self.s.snapshot()
            assert snap == self.m
            assert sorted(map(repr, self.s)) == sorted(map(repr, self.m))

    SetMachine.__name__ = f"SetMachine_{kt.__name__}"
    return SetMachine


TestStrKeys = machine(str).TestCase
TestBytesKeys = machine(bytes).TestCase
TestIntKeys = machine(int).TestCase
