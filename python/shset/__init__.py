# SPDX-License-Identifier: MIT
"""shset: a set shared by processes, in a memfd, with atomic operations.

    >>> import shset
    >>> s = shset.Set()                  # str keys; keys=bytes or keys=int too
    >>> s.add("apple"); "apple" in s
    True

A Set is passed to multiprocessing workers (Process and Pool arguments,
Queue, Pipe; fork, spawn and forkserver): the file descriptor of its memfd
travels, and every worker operates on the same keys in shared memory.
Other programs get it with Set.attach(fd), Set.connect(socket) (from
`shset serve`) or Set.load(snapshot).  See help(shset.Set).

Single values are shared the same way, each in its own memfd:

    >>> n = shset.Int(0); n += 5         # one atomic fetch_add
    >>> b = shset.Bytes(b"hi", capacity=16); b.value
    b'hi'

shset.Int and shset.UInt (64-bit), shset.Float, shset.Bytes and shset.String
(with a capacity in bytes), shset.IntArray and shset.UIntArray (many
counters in one memfd).  See help(shset.Int).
"""
import collections.abc as _abc
import os as _os

from multiprocessing import reduction as _reduction

from ._shset import (BYTES_MAX, KEY_MAX, Bytes, Float, Int, IntArray, Set, String, UInt,
                     UIntArray)

__all__ = ["Set", "KEY_MAX", "Int", "UInt", "Float", "Bytes", "String", "IntArray",
           "UIntArray", "BYTES_MAX"]

_VALUES = (Int, UInt, Float, Bytes, String, IntArray, UIntArray)

_abc.MutableSet.register(Set)


def _rebuild(dupfd, cls=Set):
    # The receiving side: attach (which dups the fd), then close ours.
    fd = dupfd.detach()
    try:
        return cls.attach(fd)
    finally:
        _os.close(fd)


def _reduce_value(v):
    # As _reduce, with the type to attach as (its kind is checked there).
    return _rebuild, (_reduction.DupFd(v.fileno()), type(v))


def _reduce(s):
    # As multiprocessing.heap does for its arenas: DupFd sends the fd by the
    # way the start method and the channel allow (inherited by a spawned
    # child, the forkserver's socket, or the resource sharer for queues
    # and pipes).
    return _rebuild, (_reduction.DupFd(s.fileno()),)


# multiprocessing pickles with its ForkingPickler, whose dispatch table
# takes precedence over Set.__reduce_ex__ (which refuses plain pickle).
_reduction.register(Set, _reduce)
for _t in _VALUES:
    _reduction.register(_t, _reduce_value)
del _t
