"""A tiny test runner for the MicroPython unix port (no pytest there).

    micropython -X heapsize=128k tests/mp_run.py [--mpy DIR] tests/mp/test_x.py [...]

With --mpy DIR the firmware and drivers come from DIR (mpy-cross output, as on the device)
ahead of the sources; the test file itself is compiled from source.

Imports each file as a module, calls every `test_*` function, prints one line per failure with
its traceback and closes with `N passed, N failed`. Exit status 1 if anything failed. The same
files are collected by pytest on CPython, so they use plain `assert` and no fixtures.
"""

import sys


def _module_name(path):
    name = path.split("/")[-1]
    return name[:-3] if name.endswith(".py") else name


def _folder(path):
    i = path.rfind("/")
    return path[:i] if i >= 0 else "."


def run(paths):
    passed = failed = 0
    for path in paths:
        folder = _folder(path)
        if folder not in sys.path:
            sys.path.append(folder)
        mod = __import__(_module_name(path))
        for name in sorted(dir(mod)):
            fn = getattr(mod, name)
            if not name.startswith("test_") or not callable(fn):
                continue
            try:
                fn()
                passed += 1
            except Exception as e:  # report every failure, keep running the rest
                failed += 1
                print("FAIL", path, name)
                sys.print_exception(e)
    print("{} passed, {} failed".format(passed, failed))
    return failed


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.path.insert(0, ".")
    if args and args[0] == "--mpy":
        sys.path.insert(0, args[1])
        args = args[2:]
    sys.exit(1 if run(args) else 0)
