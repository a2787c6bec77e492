"""Every benchmark, on both interpreters, one after the other (`make bench`).

Figures are printed, never asserted: speed and memory targets are read by a person and quoted
in closing notes. Each script documents what it measures; this only runs them:
  core     step() rate, imported-code heap, working heap over 10 000 sessions (64k heap, code
           mapped from a ROMFS image)
  readers  PN532 wire timing, driver CPU per poll, parser throughput, driver heap
  modbus   SDM630 cycle on the wire, poll CPU, CRC/parser throughput, master heap
  io       pilot/contactor poll cost and heap
  sim      tap -> contactor closed, C->B -> contactor open, boot time, firmware heap
  outbox   heap and boot time over 0 / 1 000 / 10 000 queued messages, flash operations and
           time per add and per ack (128k heap, code mapped from a ROMFS image)
  uplink   against a real Mosquitto (amqtt without it): import heap of the uplink modules,
           working heap over mqtt/mqtts with 50 messages waiting, loop gap over connects and
           reconnects, flash writes per session and per Progress, tap -> authorize request /
           contactor closed, image size against the simulator's ROMFS slot
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _micropython():
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    return exe if os.path.exists(exe) else "micropython"


def _run(title, argv, timeout=600):
    print("\n=== " + title + "\n$ " + " ".join(argv), flush=True)
    res = subprocess.run(argv, cwd=ROOT, timeout=timeout)
    if res.returncode != 0:
        print("(exit status {})".format(res.returncode), flush=True)
    return res.returncode


def main():
    mp = [_micropython(), "-X", "heapsize=128k"]
    failures = _run("core / CPython", [sys.executable, "tools/bench_core.py", "10000"])
    failures += _run("core / MicroPython (64k heap, ROMFS image)",
                     [sys.executable, "tools/bench_core.py", "--micropython", "10000"])
    for name in ("readers", "modbus", "io"):
        failures += _run(name + " / CPython", [sys.executable, "-m", "tools.bench_" + name])
        failures += _run(name + " / MicroPython", mp + ["tools/bench_" + name + ".py"])
    failures += _run("sim / both", [sys.executable, "tools/bench_sim.py", "--interpreter", "both"],
                     timeout=900)
    failures += _run("outbox / CPython", [sys.executable, "tools/bench_outbox.py", "10000"])
    failures += _run("outbox / MicroPython (128k heap, ROMFS image)",
                     [sys.executable, "tools/bench_outbox.py", "--micropython", "10000"],
                     timeout=1800)
    failures += _run("uplink / both", [sys.executable, "tools/bench_uplink.py", "--interpreter",
                                       "both"], timeout=1800)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
