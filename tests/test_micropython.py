"""Firmware and drivers are MicroPython code: every module imports under the unix port with a
128k heap, and every test file in tests/mp/ passes there too (pytest runs them on CPython).

The firmware is loaded as the device loads it: constants folded and compiled by mpy-cross
(tools.build), so the heap holds the code objects, not the compiler's working memory. The
tests run in their folded form (the build writes them next to the image), because the image no
longer defines the constants they name."""

import glob
import os

import pytest

from tests.mpy import ROOT, run_mp

# Board modules that open real ports on another target are the only exceptions.
NOT_ON_UNIX_PORT = {"hal/boards/esp32.py", "hal/boards/host.py", "firmware/main.py"}


def _modules():
    out = []
    for top in ("firmware", "hal"):
        for path in sorted(glob.glob(os.path.join(ROOT, top, "**", "*.py"), recursive=True)):
            rel = os.path.relpath(path, ROOT)
            if rel in NOT_ON_UNIX_PORT or rel.endswith("__init__.py"):
                continue
            out.append(rel[:-3].replace(os.sep, "."))
    return out


def _mp_test_files():
    paths = glob.glob(os.path.join(ROOT, "tests", "mp", "test_*.py"))
    return sorted(os.path.relpath(p, ROOT) for p in paths)


@pytest.fixture(scope="module")
def mpy_dir(tmp_path_factory):
    from tools.build import build

    out = str(tmp_path_factory.mktemp("mpy"))
    build(out)
    return out


@pytest.mark.parametrize("module", _modules())
def test_module_imports_under_micropython(module, mpy_dir):
    code = "import sys; sys.path[:0] = [{!r}, '.']; import {}".format(mpy_dir, module)
    res = run_mp(["-c", code])
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("path", _mp_test_files())
def test_file_passes_under_micropython(path, mpy_dir):
    res = run_mp(["tests/mp_run.py", "--mpy", mpy_dir, os.path.join(mpy_dir, path)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert " 0 failed" in res.stdout
