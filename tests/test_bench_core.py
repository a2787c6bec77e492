"""Smoke test: the core benchmark runs to the end on both interpreters and prints figures."""

import subprocess
import sys

from host_sim.build import build
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
