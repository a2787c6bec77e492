"""Benchmark of the charging core: step() rate and heap, on CPython and the MicroPython unix port.

    python tools/bench_core.py [sessions]            # CPython: events/s
    micropython -X heapsize=64k tools/bench_core.py [sessions] [mpy_dir]
    micropython -X heapsize=64k -c "import sys; sys.path[:0] = ['MPY']; import bench_core;
                                    bench_core.main(['', '10000'])"

`mpy_dir` is a tree of precompiled modules (host_sim.build: firmware/ and hal/ as .mpy), as the
ESP32 runs them; compiled from source the firmware does not fit a 64k unix-port heap. The third
form also runs this harness precompiled (`mpy-cross tools/bench_core.py -o MPY/bench_core.mpy`),
so the compiler's working memory for it is not in the figures either
(tests/test_bench_core.py does that at 96k; issue 2's goal is 64k, it passes from 86k).

Runs simulated sessions through a 4-EVSE core with a 100-card local list and a 100-entry cache.
Prints the heap taken by the imported code, and (MicroPython) the working heap above that
baseline, sampled after gc.collect() every 100 sessions, at 1k/5k/10k sessions.
"""

import gc
import sys

if __name__ == "__main__":
    sys.path.insert(0, ".")
    if len(sys.argv) > 2:
        sys.path.insert(0, sys.argv[2])

MP = sys.implementation.name == "micropython"


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

    feed("time", 0, 1700000000)
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
    marks = []
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
        now += 1000
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
        if s + 1 in (1000, 5000, 10000):
            marks.append((s + 1, _alloc() - base, peak))
    ms = ticks_ms() - t0
    return count[0], ms, state, peak, marks


def main(argv):
    sessions = int(argv[1]) if len(argv) > 1 else 10000
    events, ms, state, peak, marks = run(sessions)
    impl = sys.implementation.name
    print("bench_core %s: %d sessions, %d events in %d ms = %d events/s" % (
        impl, sessions, events, ms, events * 1000 // max(ms, 1)))
    if MP:
        print("heap: imported code %d B; core state (4 EVSEs, 100-card list, 100-entry cache) "
              "%d B; growth over sessions: peak %d B" % (CODE, state, peak))
        print("working heap above code: %d B" % (state + peak))
        for n, now_used, pk in marks:
            print("heap at %d sessions: %d B now, %d B peak so far" % (n, now_used, pk))


if __name__ == "__main__":
    main(sys.argv)
