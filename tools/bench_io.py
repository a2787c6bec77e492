"""Pilot / contactor / simio benchmarks; runs under CPython and the MicroPython unix port.

    python -m tools.bench_io
    micropython -X heapsize=128k tools/bench_io.py      (from the repo root)

1. Pilot.poll CPU time per burst (100 samples, sort, convert, classify) with an instant ADC --
   the driver's own share; on the ESP32 add 100 x the read_uv time.
2. The same burst through the simio CP "ADC" (sample synthesis included).
3. Contactor.poll CPU time.
4. Heap held by one Pilot + Contactor + Proximity, and heap allocated per Pilot.poll.
5. C->B detection: polls and simulated ms from the level change to the event (defaults).
"""

import gc
import sys

if "." not in sys.path:
    sys.path.insert(0, ".")

from hal.boards.simio import SimIO, SimLine  # noqa: E402
from hal.compat import ticks_diff, ticks_us  # noqa: E402
from hal.contactor import Contactor  # noqa: E402
from hal.pilot import Pilot, Proximity, uv_from_cp_mv  # noqa: E402


class _Stream:
    def any(self):
        return 0

    def read(self, n):
        return None

    def write(self, b):
        return len(b)


class _Pin:
    def __init__(self, v=1):
        self.v = v

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class _PWM:
    def duty_u16(self, v):
        self.v = v

    def freq(self, hz):
        self.hz = hz


class _SquareADC:
    """Instant ADC: alternating high/low plateaus of a 6 V / -12 V (state C) waveform."""

    def __init__(self):
        self.hi = uv_from_cp_mv(6000)
        self.lo = uv_from_cp_mv(-12000)
        self.n = 0

    def read_uv(self):
        self.n += 1
        return self.hi if self.n % 4 else self.lo


def _per_call_us(fn, rounds):
    t0 = ticks_us()
    for i in range(rounds):
        fn(i * 20)
    return ticks_diff(ticks_us(), t0) / rounds


def main():
    rounds = 300
    pilot = Pilot(_PWM(), _SquareADC(), interval_ms=0, duty=267)
    print("1. Pilot.poll, 100-sample burst, instant ADC: %.1f us" % _per_call_us(pilot.poll,
                                                                                   rounds))
    sio = SimIO(_Stream(), hello=False)
    sio.cp[0] = (6000, -12000)
    sim_pilot = Pilot(SimLine(sio, 1, "pwm"), SimLine(sio, 1, "cp"), interval_ms=0, duty=267)
    print("2. Pilot.poll through the simio CP ADC: %.1f us" % _per_call_us(sim_pilot.poll,
                                                                           rounds))
    c = Contactor(_Pin(0), _Pin(1))
    print("3. Contactor.poll: %.2f us" % _per_call_us(c.poll, rounds * 10))

    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else None
    held = (Pilot(_PWM(), _SquareADC(), interval_ms=0), Contactor(_Pin(0), _Pin(1)),
            Proximity(_SquareADC()))
    gc.collect()
    if before is not None:
        print("4. heap held by Pilot+Contactor+Proximity: %d bytes" % (gc.mem_alloc() - before))
        p = held[0]
        p.poll(0)
        gc.collect()
        a0 = gc.mem_alloc()
        for t in range(1, 51):
            p.poll(t)
        print("   heap allocated per Pilot.poll (no collect): %.0f bytes"
              % ((gc.mem_alloc() - a0) / 50))
    else:
        print("4. heap: gc.mem_alloc not available on this interpreter (CPython)")

    adc = _SquareADC()
    p = Pilot(_PWM(), adc, duty=267)  # defaults: 3 polls debounce, 10 ms interval
    t = 0
    while p.state is None or p.state[0] != "C":
        p.poll(t)
        t += 1
    adc.hi = uv_from_cp_mv(9000)
    t_change = t
    polls = 0
    while p.state[0] != "B":
        if p._last is None or t - p._last >= 10:
            polls += 1
        p.poll(t)
        t += 1
    print("5. C->B reported after %d measuring polls, %d ms (1 ms loop, defaults)"
          % (polls, t - 1 - t_change))


if __name__ == "__main__":
    main()
