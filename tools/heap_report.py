"""Where the MicroPython heap goes: per-module cost of the firmware's code, loaded from .mpy.

    python tools/heap_report.py [--heap 1024k] [--flat] [--files]

Compiles firmware/ and hal/ with mpy-cross (tools.build), then imports the run-time modules
one by one under the unix port (dependencies first) and prints the live heap each one adds after
gc.collect(), and how many new qstrs (interned names and short strings, never freed) it brings.
The modules come from the ROMFS image, as the simulator and a ROMFS-equipped ESP32 run them
(bytecode and string constants stay in the image); `--files` imports the .mpy files from a
folder instead, as a board without ROMFS would, where the bytecode is copied into the heap.
The qstr pool grows by doubling, so a module that crosses a pool boundary pays for the whole new
pool; `--flat` pre-grows the pool so each module shows only its own cost. Then boots the whole
firmware on the simulator and prints its own figures: `base` (code and boot-time objects, after
the boot-only modules were dropped) and the working peak.
The goal for the simulator is that everything fits `-X heapsize=128k` on this 64-bit port.
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME = (
    "hal.compat", "hal.iec61851", "firmware.events", "firmware.ids", "firmware.oicp_status",
    "firmware.timefmt", "firmware.authlists", "firmware.session", "firmware.charging",
    "firmware.outlet", "firmware.authorize", "firmware.remote", "firmware.controller",
    "firmware.store", "firmware.unload",
    "hal.pn532_frames", "hal.pn532",
    "hal.modbus", "hal.meters", "hal.contactor", "hal.pilot", "hal.boards.board",
    "hal.boards.simio", "hal.boards.unix_uart", "firmware.contract", "umqtt.simple",
    "firmware.mqtt", "firmware.uplink", "firmware.shell", "firmware.app",
)
PROBE = """
import gc, sys
if {rom!r}:
    import vfs
    with open({image!r}, "rb") as f:
        image = f.read()  # in the heap here, but before `base`: not counted
    vfs.mount(vfs.VfsRom(image), "/rom")
    sys.path[:0] = ["/rom"]
else:
    sys.path[:0] = [{mpy!r}]
if {flat!r}:
    for i in range(1310):
        exec("_q%d = 0" % i)  # just past a pool boundary: the next ~1250 qstrs need no new pool
gc.collect(); base = gc.mem_alloc(); prev = base
for m, nq in {mods!r}:
    try:
        __import__(m)
    except ImportError as e:
        print("%-26s (not importable: %s)" % (m, e)); continue
    gc.collect(); now = gc.mem_alloc()
    print("%-26s %7d %5d" % (m, now - prev, nq)); prev = now
print("%-26s %7d %5d" % ("run-time code, total", prev - base, {nq_total!r}))
"""


def _vuint(b, i):
    v = 0
    while True:
        c = b[i]
        i += 1
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            return v, i


def mpy_qstrs(path):
    """The dynamic (not built-in) qstrs of an .mpy file: its qstr table (mpy v6 layout)."""
    with open(path, "rb") as f:
        b = f.read()
    if b[:1] != b"M":
        raise ValueError(path + ": not an .mpy file")
    i = 4
    n, i = _vuint(b, i)
    _objs, i = _vuint(b, i)
    out = []
    for _ in range(n):
        v, i = _vuint(b, i)
        if v & 1:
            continue  # a built-in (static) qstr: costs nothing
        out.append(b[i:i + (v >> 1)])
        i += (v >> 1) + 1
    return out


def new_qstrs(mpy_dir, modules):
    """[(module, qstrs it adds that no earlier module had)], total."""
    seen = set()
    out = []
    for m in modules:
        path = os.path.join(mpy_dir, *m.split(".")) + ".mpy"
        qs = set(mpy_qstrs(path)) if os.path.exists(path) else set()
        out.append((m, len(qs - seen)))
        seen |= qs
    return out, len(seen)


def main():
    sys.path.insert(0, ROOT)
    from host_sim.runner import micropython_exe
    from tools.build import IMAGE, build

    heap = sys.argv[sys.argv.index("--heap") + 1] if "--heap" in sys.argv else "1024k"
    with tempfile.TemporaryDirectory() as mpy:
        build(mpy)
        mods, total = new_qstrs(mpy, RUNTIME)
        print("%-26s %7s %5s" % ("module", "heap B", "qstrs"))
        code = PROBE.format(mpy=mpy, mods=mods, nq_total=total, flat="--flat" in sys.argv,
                            rom="--files" not in sys.argv, image=os.path.join(mpy, IMAGE))
        subprocess.run([micropython_exe(), "-X", "heapsize=" + heap, "-c", code], cwd=ROOT,
                       timeout=120, check=False)
    env = dict(os.environ, MPEVSE_MP_HEAP=heap)
    res = subprocess.run([sys.executable, "-m", "host_sim", "run", "--interpreter", "micropython",
                          "--evses", "1"], input="wait 0.3\nheap\nquit\n", cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    for line in res.stdout.splitlines():
        ev = json.loads(line) if line.startswith("{") else {}
        if ev.get("ev") == "heap":
            print("firmware after boot: base {base} B (code + boot objects), working peak "
                  "{working_peak} B".format(**ev))
            return 0
    print("firmware did not report its heap:\n" + res.stdout[-2000:] + res.stderr[-2000:])
    return 1


if __name__ == "__main__":
    sys.exit(main())
