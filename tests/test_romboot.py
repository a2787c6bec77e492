"""The simulator's ROMFS partition (host_sim/romboot.py), run as real MicroPython processes.

The image is mapped outside the heap, so importing the core from it must cost far less heap than
importing the same .mpy files from a folder (which copies their bytecode into the heap)."""

import json
import os
import subprocess
import sys

import pytest

from host_sim.runner import (
    MP_HEAP_NO_ROMFS,
    boot_dir,
    build_for_micropython,
    firmware_command,
    rom_command,
)
from tests.mpy import ROOT, micropython_exe
from tools.build import image_with

pytestmark = pytest.mark.slow

PROBE = """
import gc, json, sys


def main(args):
    gc.collect()
    before = gc.mem_alloc()
    import firmware.controller
    gc.collect()
    print(json.dumps({"file": firmware.controller.__file__, "path": sys.path,
                      "cost": gc.mem_alloc() - before, "args": args}))
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The build plus a probe module, packed into one image."""
    out = str(tmp_path_factory.mktemp("rom"))
    build_for_micropython(out)
    src = os.path.join(out, "probe.py")
    with open(src, "w") as f:
        f.write(PROBE)
    return out, image_with(out, "probe", src)


def _run(argv, env, cwd):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_code_runs_from_the_mapped_image_and_costs_less_heap(image):
    out, path = image
    argv, env = rom_command(out, path, "probe", ["a", "b"], "64k")
    res = _run(argv, env, boot_dir(out))
    assert res.returncode == 0, res.stderr
    rom = json.loads(res.stdout)
    assert rom["file"] == "/rom/firmware/controller.mpy"
    assert rom["path"][0] == "/rom" and out not in rom["path"]
    assert rom["args"] == ["a", "b"]
    # the same .mpy files imported from a folder: bytecode and strings copied into the heap
    code = "import sys; sys.path[:0] = [{!r}]; import probe; probe.main([])".format(out)
    res = _run([micropython_exe(), "-X", "heapsize=256k", "-c", code], None, ROOT)
    assert res.returncode == 0, res.stderr
    files = json.loads(res.stdout)
    assert files["file"].startswith(out)
    assert rom["cost"] < files["cost"] * 0.75, (rom["cost"], files["cost"])


def test_no_partition_slot_is_a_clear_error(image):
    out, path = image
    argv, env = rom_command(out, path, "probe", [], "64k")
    del env["MPEVSE_ROM"]
    res = _run(argv, env, boot_dir(out))
    assert res.returncode != 0
    assert "MPEVSE_ROM is not in the environment" in res.stderr


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_slot_of_the_wrong_size_is_refused(image, delta):
    out, path = image
    argv, env = rom_command(out, path, "probe", [], "64k")
    env["MPEVSE_ROM"] = "x" * (os.path.getsize(path) + delta)
    res = _run(argv, env, boot_dir(out))
    assert res.returncode != 0
    assert "no slot of exactly {} bytes".format(os.path.getsize(path)) in res.stderr


def test_the_slot_limit_is_what_linux_passes_and_bigger_images_are_refused(tmp_path):
    """One environment string holds at most MAX_ARG_STRLEN bytes: a slot of ROM_SLOT_MAX
    placeholder bytes still starts a process, one more does not, and the runner refuses an
    image that would need it with a message instead of an exec failure."""
    from host_sim.runner import ROM_SLOT_MAX, RunnerError

    exe = [micropython_exe(), "-c", "print(1)"]
    ok = dict(os.environ, MPEVSE_ROM="x" * ROM_SLOT_MAX)
    assert _run(exe, ok, ROOT).stdout == "1\n"
    with pytest.raises(OSError):
        _run(exe, dict(os.environ, MPEVSE_ROM="x" * (ROM_SLOT_MAX + 1)), ROOT)
    big = tmp_path / "big.romfs"
    big.write_bytes(bytes(ROM_SLOT_MAX + 1))
    with pytest.raises(RunnerError, match="MAX_ARG_STRLEN"):
        rom_command(str(tmp_path), str(big), "probe", [], "64k")


@pytest.mark.parametrize("flags", [[], ["--no-romfs"]], ids=["romfs", "mpy-files"])
def test_a_scenario_runs_from_the_image_and_from_the_plain_mpy_tree(flags):
    """`--no-romfs` (host_sim.runner.mpy_command): the same firmware, started from the .mpy
    files on sys.path instead of the mapped image, charges a session to its CDR too."""
    res = subprocess.run(
        [sys.executable, "-m", "host_sim", "scenario",
         os.path.join("tests", "scenarios", "local_start_stop.scn"),
         "--interpreter", "micropython"] + flags,
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert "passed (micropython" in res.stdout


def test_no_romfs_imports_the_mpy_tree_and_not_the_image(tmp_path):
    """The firmware command without ROMFS: no launcher, no partition variable, the .mpy tree
    first on MICROPYPATH and a heap that holds the bytecode."""
    ports = {"reader": "R", "meter": "M", "simio": "S"}
    argv, env = firmware_command("micropython", ports, str(tmp_path), "/b", romfs=False)
    assert argv[1:5] == ["-X", "heapsize=" + os.environ.get("MPEVSE_MP_HEAP", MP_HEAP_NO_ROMFS),
                         "-m", "firmware.app"] and "romboot" not in argv
    assert env["MICROPYPATH"] == "/b:.frozen" and "MPEVSE_ROM" not in env
