"""Modbus master benchmark; runs on CPython and on the MicroPython unix port:

    python -m tools.bench_modbus
    micropython -X heapsize=128k tools/bench_modbus.py      (from the repo root)

Prints: the SDM630 reading cycle time at 9600 Bd from bytes on the wire + t3.5, CPU time per
poll, CRC and parser throughput, and (MicroPython) the heap the master and meter keep while
polling, after gc.collect(), with growth over many cycles.
"""

import gc
import sys

if "." not in sys.path:
    sys.path.insert(0, ".")

from hal.compat import MICROPYTHON  # noqa: E402
from hal.kinds import READING  # noqa: E402
from hal.meter_models import MODELS, plan_requests  # noqa: E402
from hal.meters import Meter  # noqa: E402
from hal.modbus import ModbusMaster, crc16, parse_response, t35_us, wire_us  # noqa: E402

try:
    from time import ticks_diff as _tdiff
    from time import ticks_us as _us
except ImportError:
    import time as _time

    def _us():
        return _time.perf_counter_ns() // 1000

    def _tdiff(a, b):
        return a - b


def _frame(slave, fc, regs):
    out = bytearray((slave, fc, 2 * len(regs)))
    for r in regs:
        out.append(r >> 8)
        out.append(r & 0xFF)
    crc = crc16(out)
    out.append(crc & 0xFF)
    out.append(crc >> 8)
    return bytes(out)


class BenchUart:
    """Answers every read instantly with fixed registers (float32 230.0 pairs)."""

    def __init__(self):
        self.rx = b""
        self.cache = {}

    def any(self):
        return len(self.rx)

    def read(self, n):
        data = self.rx[:n]
        self.rx = self.rx[n:]
        return data or None

    def write(self, req):
        key = bytes(req)
        reply = self.cache.get(key)
        if reply is None:
            count = (req[4] << 8) | req[5]
            reply = _frame(req[0], req[1], [0x4366, 0x0000] * (count // 2) + [0] * (count % 2))
            self.cache[key] = reply
        self.rx = reply
        return len(req)


def cycle_time_ms(model, baud):
    """One full reading cycle: per request t3.5 + request + response on the wire (no slave
    turnaround), with the exact t3.5 and with the master's whole-ms gap."""
    exact = ticks = 0
    gap_ms = (t35_us(baud) + 999) // 1000 + 1
    for _fc, _reg, count, _fields in plan_requests(MODELS[model]):
        wire = wire_us(8, baud) + wire_us(5 + 2 * count, baud)
        exact += t35_us(baud) + wire
        ticks += gap_ms * 1000 + wire
    return exact / 1000, ticks / 1000, len(plan_requests(MODELS[model]))


def bench_crc(n=2000):
    buf = bytes(range(256))
    t0 = _us()
    for _ in range(n // 10):
        crc16(buf)
    dt = _tdiff(_us(), t0)
    return (n // 10) * 256 * 1000000 // max(dt, 1)


def bench_parse(n=2000):
    frame = _frame(1, 4, [0x4366, 0] * 6)
    t0 = _us()
    for _ in range(n):
        parse_response(frame, len(frame), 1, 4, 12)
    dt = _tdiff(_us(), t0)
    return n * 1000000 // max(dt, 1)


def bench_polls(cycles=200):
    """Meter cycles on an instant slave: CPU per poll (mean and max) and readings per second."""
    uart = BenchUart()
    master = ModbusMaster(uart, 9600)
    meter = Meter(master, "sdm630", 1, interval_ms=0)
    now = 0
    polls = readings = 0
    worst = 0
    t_all = _us()
    while readings < cycles:
        t0 = _us()
        ev = meter.poll(now)
        dt = _tdiff(_us(), t0)
        polls += 1
        if dt > worst:
            worst = dt
        if ev is not None:
            if ev[0] != READING:
                raise RuntimeError("bench slave failed: %r" % (ev,))
            readings += 1
        now += 1
    total = _tdiff(_us(), t_all)
    return total / polls, worst, readings * 1000000 // max(total, 1)


def _settle(base):
    gc.collect()
    return gc.mem_alloc() - base


def bench_heap(rounds=3, cycles=200):
    """Heap kept after gc.collect(): the master alone while it serves reads, then with an
    SDM630 meter on top; one figure per round of `cycles` exchanges (equal = no growth)."""
    if not MICROPYTHON:
        return None
    uart = BenchUart()
    for req in (b"\x01\x04\x00\x00\x00\x0c", b"\x01\x04\x00\x34\x00\x02",
                b"\x01\x04\x00\x48\x00\x02"):
        uart.write(req)  # fill the slave's reply cache outside the measurement
    uart.rx = b""
    steady = [0] * rounds
    steady_meter = [0] * rounds
    gc.collect()
    base = gc.mem_alloc()
    master = ModbusMaster(uart, 9600)
    created = _settle(base)
    now = 0
    for r in range(rounds):
        for _ in range(cycles):
            master.start(1, 4, 0x0000, 12, now)
            ev = None
            while ev is None:
                ev = master.poll(now)
                now += 1
        ev = None
        steady[r] = _settle(base)
    meter = Meter(master, "sdm630", 1, interval_ms=0)
    with_meter = _settle(base)
    for r in range(rounds):
        done = 0
        while done < cycles:
            if meter.poll(now) is not None:
                done += 1
            now += 1
        steady_meter[r] = _settle(base)
    return created, steady, with_meter, steady_meter


def main():
    impl = "MicroPython" if MICROPYTHON else "CPython"
    print("implementation:", impl, sys.version.split()[0])
    for model, baud in (("sdm630", 9600), ("sdm120", 2400), ("sdm630", 38400)):
        exact, ticks, n = cycle_time_ms(model, baud)
        print("%s at %d Bd: %d requests, wire + t3.5 = %.1f ms (with the master's whole-ms "
              "gap %.1f ms)" % (model, baud, n, exact, ticks))
    print("crc16: %d bytes/s" % bench_crc())
    print("parse_response (12 registers): %d frames/s" % bench_parse())
    mean, worst, rate = bench_polls()
    print("meter poll CPU: mean %.1f us, max %d us; %d SDM630 readings/s on an instant slave"
          % (mean, worst, rate))
    heap = bench_heap()
    if heap is None:
        print("heap: measured on the MicroPython unix port only")
    else:
        created, steady, with_meter, steady_meter = heap
        print("heap (after gc.collect): master created %d B, while serving reads %s B; "
              "with an SDM630 Meter %d B, while reading %s B"
              % (created, steady, with_meter, steady_meter))


if __name__ == "__main__":
    main()
