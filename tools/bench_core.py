"""Benchmark of the charging core: step() rate and heap, on CPython and the MicroPython unix port.

    python tools/bench_core.py [SESSIONS]                              # CPython: events/s
    python tools/bench_core.py --micropython [SESSIONS] [--heap 64k]   # the unix port

The MicroPython run is how an ESP32 with a ROMFS partition runs the core: tools.build compiles
firmware/ and hal/ to .mpy, this harness is compiled and packed into the same ROMFS image, and
host_sim/romboot.py maps the image outside the heap, so bytecode costs no heap and `-X heapsize`
is left for the objects the code makes (issue 2: 64k).

Runs simulated sessions through a 4-EVSE core with a 100-card local list and a 100-entry cache.
Prints the heap taken by the imported code, and (MicroPython) the working heap above that
baseline, sampled after gc.collect() every 100 sessions, at 1k/5k/10k sessions.
"""

import gc
import sys

if __name__ == "__main__":
    sys.path.insert(0, ".")

MP = sys.implementation.name == "micropython"
MARKS = (1000, 5000, 10000, 20000, 40000)  # session counts at which the heap is reported


def _alloc():
    gc.collect()
    return gc.mem_alloc() if MP else 0


BASE0 = _alloc()
from firmware.controller import Controller  # noqa: E402
from hal.compat import ticks_ms  # noqa: E402

CODE = _alloc() - BASE0


def _cfg():
    return {"cp_id": "bench",
            "evses": [{"evse_id": "DE*ABC*E%d" % (i + 1), "max_current_a": 16, "phases": 3,
                       "cable": "tethered"} for i in range(4)],
            "offline_policy": "local_and_cache", "connection_timeout_s": 60,
            "auth_timeout_s": 10, "auth_cache": {"size": 100, "ttl_s": 86400},
            "meter_failure": "stop", "remote_start_rfid_window_s": 900,
            "progress_interval_s": 900, "stop_grace_s": 6, "mains_voltage_v": 230}


class _Ids:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return "%08x-0000-4000-8000-%012x" % (self.n, self.n)


def _uid(k):
    return "%08X" % (0x04000000 + k)


def run(sessions):
    c = Controller(_cfg(), _Ids())
    now = 0
    count = [0]

    def feed(kind, n, data):
        acts = c.step((kind, n, data), now)
        count[0] += 1
        for a in acts:
            if a[0] == "contactor":
                c.step(("contactor", a[1], "closed" if a[2] else "open"), now)
                count[0] += 1

    feed("time", 0, 1800000000)  # after timefmt.CLOCK_FLOOR_S
    for i in range(4):
        feed("contactor", i + 1, "open")
    # the 100-card list in ten updates of ten: no 100-string list in the heap at once
    for v in range(10):
        uids = [_uid(k) for k in range(v * 10, v * 10 + 10)]
        feed("local_list", 0, {"full": False, "base_version": v, "version": v + 1,
                               "add": uids} if v else {"full": True, "version": 1, "uids": uids})
    uids = None
    assert len(c.local_list) == 100
    c.online = True
    for k in range(100):  # fill the cache with positive answers
        c.cache.put(_uid(1000 + k), now, None)
    c.online = False
    meter = [0, 0, 0, 0]
    base = _alloc()
    state = base - BASE0 - CODE  # controller + 4 EVSEs + local list + cache, before sessions
    peak = 0
    # heap at the MARKS, in ints preallocated here: appending tuples would itself grow the heap
    marks = [0] * (2 * len(MARKS))
    t0 = ticks_ms()
    for s in range(sessions):
        i = s % 4
        uid = _uid(s % 100) if s % 2 else _uid(1000 + s % 100)
        n = i + 1
        now += 1000
        feed("pilot", n, ("B", False))
        feed("card", 0, uid)
        feed("card_gone", 0, None)
        feed("pilot", n, ("B", True))
        feed("pilot", n, ("C", True))
        meter[i] += 7000
        now += 2500  # past the card guard time (config card_guard_ms, 2000)
        feed("meter", n, meter[i])
        feed("card", 0, uid)
        feed("card_gone", 0, None)
        feed("pilot", n, ("B", True))
        feed("pilot", n, ("A", False))
        now += 5000
        if (s + 1) % 100 == 0:
            used = _alloc() - base
            if used > peak:
                peak = used
        if s + 1 in MARKS:
            k = 2 * MARKS.index(s + 1)
            marks[k] = _alloc() - base
            marks[k + 1] = peak
    ms = ticks_ms() - t0
    return count[0], ms, state, peak, marks


def main(args):
    """Run the sessions here; the romboot launcher calls this with the session count."""
    sessions = int(args[0]) if args else 10000
    events, ms, state, peak, marks = run(sessions)
    impl = sys.implementation.name
    print("bench_core %s: %d sessions, %d events in %d ms = %d events/s" % (
        impl, sessions, events, ms, events * 1000 // max(ms, 1)))
    if MP:
        print("heap: imported code %d B; core state (4 EVSEs, 100-card list, 100-entry cache) "
              "%d B; growth over sessions: peak %d B" % (CODE, state, peak))
        print("working heap above code: %d B" % (state + peak))
        for k, n in enumerate(MARKS):
            if n > sessions:
                break
            now_used, pk = marks[2 * k], marks[2 * k + 1]
            print("heap at %d sessions: %d B now, %d B peak so far" % (n, now_used, pk))


def on_micropython(args):
    """Build the image with this harness in it and run it under the unix port; -> exit code."""
    from host_sim.runner import run_harness

    return run_harness(__file__, args, [], with_flash=False, default_heap="64k")


if __name__ == "__main__":
    if "--micropython" in sys.argv:
        sys.exit(on_micropython([a for a in sys.argv[1:] if a != "--micropython"]))
    main(sys.argv[1:])
