# SPDX-License-Identifier: MIT
"""The README's example runs as shown and prints what the README says."""
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
