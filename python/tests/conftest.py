# SPDX-License-Identifier: MIT
import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

# Bounded, reproducible runs: the same examples every time, no deadlines
# (processes and a loaded 2-core machine make timings meaningless).
settings.register_profile(
    "shset", derandomize=True, deadline=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("SHSET_HYPOTHESIS_PROFILE", "shset"))


@pytest.fixture
def shset_tool():
    """Path of the built `shset` command (ctest passes it in SHSET_TOOL)."""
    tool = os.environ.get("SHSET_TOOL") or shutil.which("shset")
    if not tool:
        pytest.skip("the shset command is not built (SHSET_BUILD_TOOLS=OFF)")
    return tool


class CLib:
    """The C library itself (ctypes), to see and write a set's raw bytes
    the way a C program sharing the set does."""

    def __init__(self, path):
        import ctypes
        self.c = ctypes.CDLL(path)
        self.ct = ctypes
        self.c.shset_add.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        self.c.shset_contains.argtypes = self.c.shset_add.argtypes
        self.c.shset_close.argtypes = [ctypes.c_void_p]

    def _attach(self, s):
        h = self.ct.c_void_p()
        assert self.c.shset_attach_fd(self.ct.byref(h), s.fileno()) == 0
        return h

    def add(self, s, raw):
        h = self._attach(s)
        try:
            return self.c.shset_add(h, raw, len(raw))
        finally:
            self.c.shset_close(h)

    def contains(self, s, raw):
        h = self._attach(s)
        try:
            return self.c.shset_contains(h, raw, len(raw))
        finally:
            self.c.shset_close(h)


@pytest.fixture
def clib():
    path = os.environ.get("SHSET_LIB")
    if not path:
        pytest.skip("SHSET_LIB (the built libshset.so) is not set")
    return CLib(path)
