# SPDX-License-Identifier: MIT
"""The examples run as shown and print what the README says."""
import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "jobs.py")


def test_readme_example_output():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1000 True ['job-0', 'job-1', 'job-10']\n"


def test_help_reads_well():
    r = subprocess.run([sys.executable, "-c", "import shset; help(shset.Set)"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PAGER="cat",
                                PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert r.returncode == 0, r.stderr
    for text in ("class Set", "add_new(self, key, /)", "atomic test-and-add",
                 "connect(path, /, timeout=None)", "snapshot(self, /)", "keys_type"):
        assert text in r.stdout, text


VALUES_EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                              "atomic_values.py")


def test_atomic_values_example_output():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, VALUES_EXAMPLE], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("counter: 200000\n"
                        "label:   b'200'\n"
                        "slots:   [20000, 20000, 20000, 20000, 20000, 20000, 20000, 20000, "
                        "20000, 20000]\n")


def test_help_of_values_reads_well():
    r = subprocess.run([sys.executable, "-c", "import shset; help(shset.Int); help(shset.Bytes); "
                        "help(shset.IntArray)"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PAGER="cat",
                                PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert r.returncode == 0, r.stderr
    for text in ("class Int", "fetch_add(self, n, /)", "single atomic operations",
                 "compare_exchange(self, i, expected, desired, /)", "class Bytes",
                 "never see a torn value"):
        assert text in r.stdout, text
