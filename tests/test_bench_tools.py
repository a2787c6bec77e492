"""The driver benchmarks still run and print their figures on both interpreters.

They are measuring tools (`make bench`), not timed tests: this only proves they work against the
current drivers, so a driver refactor cannot silently break them."""

import subprocess
import sys

import pytest

from tests.mpy import ROOT, run_mp

TOOLS = ("bench_io", "bench_readers", "bench_modbus")


@pytest.mark.parametrize("tool", TOOLS)
def test_bench_tool_runs_on_cpython(tool):
    res = subprocess.run([sys.executable, "tools/%s.py" % tool], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1." in res.stdout and "Traceback" not in res.stderr


@pytest.mark.parametrize("tool", TOOLS)
def test_bench_tool_runs_on_micropython(tool):
    res = run_mp(["tools/%s.py" % tool], timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "heap" in res.stdout
