"""manifest.py, the standard production path: `make BOARD=... FROZEN_MANIFEST=.../manifest.py`
in a MicroPython port freezes what it names. Run here with stand-ins for MicroPython's manifest
functions (include, require, package, module): it must freeze every module the ESP32 runs (the
set package.json installs) from packages that exist, and umqtt.simple as the dependency."""

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _calls():
    calls = []
    env = {name: (lambda *a, _n=name, **kw: calls.append((_n, a, kw)))
           for name in ("include", "require", "package", "module")}
    with open(os.path.join(ROOT, "manifest.py")) as f:
        exec(compile(f.read(), "manifest.py", "exec"), env)
    return calls


def _frozen(calls):
    """Repository paths of the .py files the package()/module() calls freeze (a package is
    frozen whole, recursively, as MicroPython's manifest does without `files`)."""
    out = set()
    for name, args, kw in calls:
        if name == "package":
            assert "files" not in kw and "base_path" not in kw, (args, kw)
            top = os.path.join(ROOT, *args[0].split("."))
            assert os.path.isfile(os.path.join(top, "__init__.py")), args[0]
            for folder, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                out.update(os.path.relpath(os.path.join(folder, n), ROOT) for n in files
                           if n.endswith(".py"))
        elif name == "module":
            out.add(args[0])
    return out


def test_manifest_freezes_every_module_the_esp32_runs_and_the_mqtt_client():
    calls = _calls()
    frozen = _frozen(calls)
    with open(os.path.join(ROOT, "package.json")) as f:
        pkg = json.load(f)
    esp32 = {dst for dst, _ in pkg["urls"]}
    assert esp32 <= frozen, sorted(esp32 - frozen)
    assert all(p.split(os.sep)[0] in ("firmware", "hal") for p in frozen)  # no tests, no tools
    assert ("require", ("umqtt.simple",), {}) in calls
    assert [c for c in calls if c[0] == "include"] == [
        ("include", ("$(PORT_DIR)/boards/manifest.py",), {})]  # the port's own modules stay
