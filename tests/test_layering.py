"""The layering rules (../shared/ARCHITECTURE.md, issue 14 item 6), checked on the source: every
module under firmware/ and hal/ is parsed with `ast` (imports inside functions count too).

1. The core -- the pure `step(event, now) -> actions` side -- imports only the modules in
   CORE_ALLOWED, each there for the reason written beside it.
2. A driver (hal/*.py; the board modules in hal/boards/ are not drivers) never imports what
   opens or configures ports or files: it speaks its protocol over the stream a board gave it.
3. Only hal/boards/ opens a port: nothing else imports `machine`, pyserial or `termios`, or
   calls a port constructor.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORE = ("controller", "authorize", "remote", "outlet", "records", "charging", "session",
        "authlists", "events", "ids", "oicp_status", "timefmt")

# What the core may import (derived from its imports when the rule was written down).
CORE_ALLOWED = {
    "firmware.authorize": "the authorization chain, tap outcomes, the backend's answers",
    "firmware.remote": "remote start/stop and local list updates",
    "firmware.outlet": "the session records: the per-EVSE record, a session's life, restore",
    "firmware.records": "the named indices of the small records (folded away by the build)",
    "firmware.charging": "one EVSE's power side (IEC 61851 states, gate, contactor timing)",
    "firmware.session": "the OICP session record and its CDR",
    "firmware.authlists": "the local authorization list and the authorization cache",
    "firmware.events": "the event/action contract between the core and the shell",
    "firmware.ids": "OICP identifier checks (EvseID, SessionID, UID normalisation)",
    "firmware.oicp_status": "the one OICP status-code table",
    "firmware.timefmt": "the wall-clock floor and ISO 8601 UTC formatting",
    "hal.compat": "ticks_ms/ticks_diff/const as MicroPython has them built in (pure functions)",
    "hal.iec61851": "the standard's numbers: PWM duty per current, PP resistor coding",
    "binascii": "hex text of card UIDs (built into MicroPython)",
}

# A driver importing one of these would open or configure a port itself.
DRIVER_FORBIDDEN = ("machine", "serial", "termios", "os", "select")
# hal/ modules that are no drivers, with why they may import what a driver may not.
NOT_DRIVERS = {
    "hal/compat.py": "the MicroPython/CPython shim: reads os.environ (the simulator's tick "
                     "offset) and opens nothing",
}

# Opening a port: these modules, or a call to one of these names (machine.UART/Pin/PWM/ADC,
# pyserial, a tty opened with os.open / os.openpty).
PORT_MODULES = ("machine", "serial", "termios", "tty", "pty")
PORT_CALLS = ("UART", "Pin", "PWM", "ADC", "Serial", "serial_for_url", "openpty")


def _modules(*folders):
    """-> [repository-relative path] of every .py under the folders, sorted."""
    out = []
    for folder in folders:
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    out.append(os.path.relpath(os.path.join(dirpath, name), ROOT))
    return sorted(out)


def _is_module(dotted):
    path = os.path.join(ROOT, *dotted.split("."))
    return os.path.isfile(path + ".py") or os.path.isdir(path)


def _tree(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def _imports(tree):
    """-> [(dotted module, line)] for every import in the tree; `from pkg import mod` names
    the module pkg.mod when that is one of ours."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            for a in node.names:
                sub = base + "." + a.name
                out.append((sub if _is_module(sub) else base, node.lineno))
    return out


def _top(name):
    return name.split(".")[0]


def test_the_rules_see_every_module():
    files = _modules("firmware", "hal")
    for m in CORE:
        assert "firmware/%s.py" % m in files, m
    for path in NOT_DRIVERS:
        assert path in files, path
    assert len(files) > 30, files


def test_core_imports_only_its_allowed_modules():
    bad = []
    for m in CORE:
        path = "firmware/%s.py" % m
        for name, line in _imports(_tree(path)):
            if name not in CORE_ALLOWED:
                bad.append("%s:%d imports %s" % (path, line, name))
    assert not bad, "the core imports outside CORE_ALLOWED:\n" + "\n".join(bad)


def test_drivers_do_not_import_port_or_os_modules():
    bad = []
    for path in _modules("hal"):
        if path.startswith(os.path.join("hal", "boards")) or path in NOT_DRIVERS:
            continue
        for name, line in _imports(_tree(path)):
            if _top(name) in DRIVER_FORBIDDEN:
                bad.append("%s:%d imports %s" % (path, line, name))
    assert not bad, "drivers get their streams from a board:\n" + "\n".join(bad)


def test_only_the_boards_open_ports():
    bad = []
    for path in _modules("firmware", "hal"):
        if path.startswith(os.path.join("hal", "boards") + os.sep):
            continue
        tree = _tree(path)
        for name, line in _imports(tree):
            if _top(name) in PORT_MODULES:
                bad.append("%s:%d imports %s" % (path, line, name))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(
                f, ast.Attribute) else None
            os_open = (isinstance(f, ast.Attribute) and f.attr == "open"
                       and isinstance(f.value, ast.Name) and f.value.id == "os")
            if called in PORT_CALLS or os_open:
                bad.append("%s:%d calls %s" % (path, node.lineno, called))
    assert not bad, "only hal/boards/ opens ports:\n" + "\n".join(bad)


# The core's modules call in one direction only (the controller on top, no cycles): each may
# import the core modules listed here and no other.
CORE_LAYERS = {
    "controller": ("authorize", "remote", "outlet", "records"),
    "authorize": ("outlet", "records"),
    "remote": ("outlet", "records"),
    "outlet": ("records",),
    "records": (),
}


def test_core_modules_call_one_way():
    bad = []
    for m, allowed in CORE_LAYERS.items():
        path = "firmware/%s.py" % m
        for name, line in _imports(_tree(path)):
            sub = name.split(".")[-1]
            if name.startswith("firmware.") and sub in CORE_LAYERS and sub not in allowed:
                bad.append("%s:%d imports %s" % (path, line, name))
    assert not bad, "the core's layers, top to bottom: controller, authorize/remote, outlet, " \
        "records:\n" + "\n".join(bad)


def test_the_rules_catch_what_they_forbid():
    """The checks themselves: each sees a forbidden import or call in a made-up module."""
    tree = ast.parse("import json\nfrom machine import UART\n"
                     "def f():\n    import serial\n    return UART(1), os.open('x', 0)\n")
    names = [n for n, _ in _imports(tree)]
    assert names == ["json", "machine", "serial"]
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert {getattr(c, "id", None) or c.attr for c in calls} == {"UART", "open"}
    assert _imports(ast.parse("from firmware import events as E\nfrom hal.compat import const"
                              )) == [("firmware.events", 1), ("hal.compat", 2)]
