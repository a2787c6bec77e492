"""Issue 10's offline soak in the suite: 500 charged sessions with no uplink at the ESP32
stand-in heap (`-X heapsize=128k`, code from the ROMFS image), then a reboot on the same flash:
the firmware boots, still holds every CDR in order, and charges again (tools/soak_offline.py)."""

import subprocess
import sys

import pytest

from tests.mpy import ROOT

pytestmark = pytest.mark.slow


def _soak(args):
    res = subprocess.run([sys.executable, "tools/soak_offline.py"] + args, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "verdict: OK" in res.stdout and "CDRs on flash: 500" in res.stdout, res.stdout
    return res.stdout


def test_offline_soak_cpython():
    _soak(["500"])


def test_offline_soak_micropython_at_128k():
    out = _soak(["--micropython", "500", "--heap", "128k"])
    assert "500 sessions offline, 500 CDRs" in out
