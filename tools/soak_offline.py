"""Offline soak: SESSIONS charged sessions with no uplink, then a reboot (issue 10).

    python tools/soak_offline.py [SESSIONS]                        # CPython
    python tools/soak_offline.py --micropython [SESSIONS] [--heap 128k]

The real shell, core, store and outbox run on a flash folder (a temporary directory); the
drivers are stand-ins that the harness drives event by event (pilot B/C, card, contactor
mirror, meter readings), so a session takes milliseconds instead of the simulator's seconds.
Nothing acknowledges: every notification, EVSE status and CDR stays in the outbox. After the
sessions, the harness drops the shell and boots a new one on the same folder (a reboot), checks
that the outbox still holds one CDR per session, in order, and charges one more session.

On MicroPython the harness runs from the ROMFS image with the firmware (tools.build.image_with)
under `-X heapsize` (default 128k, the ESP32 stand-in). Prints: sessions, CDRs kept, flash
writes per session (store files + outbox operations), heap after boot and the peak working heap
(sampled after gc.collect() every 50 sessions), boot time with the backlog, and the verdict.
Exit status 1 on a lost or doubled CDR or a session that did not charge.
"""

import gc
import sys

if __name__ == "__main__":
    sys.path.insert(0, ".")

MP = sys.implementation.name == "micropython"
UID = "04A1B2C3"
T0 = 1800000000  # after timefmt.CLOCK_FLOOR_S


def _alloc():
    gc.collect()
    return gc.mem_alloc() if MP else 0


class _Out:
    """A contactor coil / pilot PWM stand-in: remembers the last command."""

    def __init__(self):
        self.value = None

    def set(self, closed, now):
        self.value = closed

    def set_duty(self, duty):
        self.value = duty


class _Board:
    def __init__(self):
        self.reader = None
        self.bus = None
        self.meters = [None]
        self.contactors = [_Out()]
        self.pilots = [_Out()]
        self.proximity = [None]

    def wall_clock(self):
        return T0  # the soak feeds its own clock; any plausible value will do


class _Sink:
    """The shell's event output: counts what the soak checks, keeps nothing else."""

    def __init__(self):
        self.cdrs = 0
        self.errors = 0
        self.last_error = None

    def __call__(self, ev, **fields):
        if ev == "cdr":
            self.cdrs += 1
        elif ev == "error":
            self.errors += 1
            self.last_error = fields.get("message")


def _shell(flash, sink):
    import os
    import time

    from firmware import config
    from firmware.shell import Shell
    from firmware.store import Store

    cfg = config.load({"cp_id": "SOAK", "evses": [{"evse_id": "DE*SIM*E0001*1",
                                                   "cable": "tethered"}],
                       "meter": {"type": "none"}})
    store = Store(flash)
    if store.get("authlist") is None:
        store.put("authlist", {"version": 1, "uids": [UID]})
    shell = Shell(cfg, _Board(), store, out=sink)
    t0 = time.ticks_us() if MP else int(time.perf_counter() * 1e6)
    shell.boot(0)
    t1 = time.ticks_us() if MP else int(time.perf_counter() * 1e6)
    shell.feed("time", 0, T0, 0)
    del os
    return shell, t1 - t0


def _session(shell, now, meter):
    """One charged session, the way the drivers report it; -> (now, meter) afterwards."""
    f = shell.feed
    f("pilot", 1, ("B", None), now)
    f("card", 0, UID, now + 10)
    f("card_gone", 0, None, now + 20)
    f("pilot", 1, ("B", True), now + 30)
    f("pilot", 1, ("C", True), now + 40)
    if shell.board.contactors[0].value:
        f("contactor", 1, "closed", now + 300)
    meter += 1234
    f("meter", 1, meter, now + 1000)
    f("card", 0, UID, now + 3100)  # the owner taps again, past the card guard time
    f("card_gone", 0, None, now + 3110)
    f("pilot", 1, ("B", True), now + 3120)
    f("contactor", 1, "open", now + 3400)
    f("pilot", 1, ("A", None), now + 3500)
    return now + 10000, meter  # past the 5 s between PWM changes


def run(flash, sessions):
    code0 = _alloc()
    import firmware.shell  # noqa: F401  (its code counts as code, not as working heap)

    code = _alloc() - code0
    sink = _Sink()
    shell, boot_us = _shell(flash, sink)
    f = shell.feed
    f("contactor", 1, "open", 0)
    base = _alloc()
    peak = 0
    now, meter = 1000, 100000
    writes0 = shell.store.writes + shell.outbox.writes
    for s in range(sessions):
        before = sink.cdrs
        now, meter = _session(shell, now, meter)
        if sink.cdrs != before + 1:
            print("session %d: %d CDRs (last error: %s)" % (s + 1, sink.cdrs - before,
                                                           sink.last_error))
            return 1
        if (s + 1) % 50 == 0:
            used = _alloc() - base
            if used > peak:
                peak = used
    writes = shell.store.writes + shell.outbox.writes - writes0
    queued = len(shell.outbox)
    print("soak_offline %s: %d sessions offline, %d CDRs, %d messages queued, %d.%02d flash "
          "writes per session" % (sys.implementation.name, sessions, sink.cdrs, queued,
                                  writes // sessions, writes * 100 // sessions % 100))
    if MP:
        print("heap: code %d B, after boot %d B, peak working heap over the sessions %d B"
              % (code, base, peak))
    shell = f = None
    _alloc()
    # the reboot: a new shell on the same flash folder
    sink2 = _Sink()
    shell, boot_us = _shell(flash, sink2)
    kept = 0
    last = None
    in_order = True
    for _msg_id, msg in shell.outbox.pending():
        if msg.get("type") == "cdr":
            kept += 1
            if last is not None and msg["MeterValueStart"] < last["MeterValueStart"]:
                in_order = False  # the meter only grows: CDRs must come in session order
            last = msg
    print("reboot with %d messages queued: boot %d us, heap after boot %d B; CDRs on flash: %d"
          " (in session order: %s)" % (len(shell.outbox), boot_us, _alloc(), kept, in_order))
    before = sink2.cdrs
    shell.feed("contactor", 1, "open", 0)
    _session(shell, 1000, meter)
    ok = kept == sessions and in_order and sink2.cdrs == before + 1 and last is not None
    print("after the reboot: one more session charged: %s; verdict: %s" % (
        sink2.cdrs == before + 1, "OK" if ok else "FAILED"))
    return 0 if ok else 1


def main(args):
    """Run the soak here (the romboot launcher calls this): [SESSIONS] [FLASH_DIR]."""
    sessions = int(args[0]) if args else 500
    flash = args[1] if len(args) > 1 else None
    if flash is None:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            return run(d, sessions)
    return run(flash, sessions)


def on_micropython(args):
    """Build the image with this harness in it and run it under the unix port; -> exit code."""
    from host_sim.runner import run_harness

    return run_harness(__file__, args, ["500"], with_flash=True, default_heap="128k")


if __name__ == "__main__":
    if "--micropython" in sys.argv:
        sys.exit(on_micropython([a for a in sys.argv[1:] if a != "--micropython"]))
    sys.exit(main(sys.argv[1:]))
