"""Reader benchmarks; runs under CPython and the MicroPython unix port.

    python -m tools.bench_readers
    micropython -X heapsize=128k tools/bench_readers.py      (from the repo root)

1. PN532 poll cycle on the wire at 115200 Bd (10 bits/byte) plus the chip's documented timing.
2. Driver CPU time per InListPassiveTarget cycle, against an instant in-memory chip.
3. Frame parser throughput (bytes/s) on a mixed stream with garbage, in 64-byte reads.
4. Heap held by a polling PN532 driver (gc.mem_alloc after gc.collect) and its growth.
"""

import gc
import sys

if "." not in sys.path:
    sys.path.insert(0, ".")

from hal.compat import (  # noqa: E402
    ticks_add,  # noqa: E402
    ticks_diff,
    ticks_us,
)
from hal.pn532 import (  # noqa: E402
    GET_FIRMWARE_VERSION,
    IN_LIST_PASSIVE_TARGET,
    IN_RELEASE,
    PN532,
)
from hal.pn532_frames import ACK_FRAME, TFI_CHIP, FrameParser, build_frame  # noqa: E402

BYTE_US = 10 * 1000000 / 115200  # 86.8 us
NO_CARD = build_frame(b"\x4b\x00", TFI_CHIP)
CARD4 = build_frame(b"\x4b\x01\x01\x00\x04\x08\x04\xde\xad\xbe\xef", TFI_CHIP)
CARD7 = build_frame(b"\x4b\x01\x01\x00\x44\x00\x07\x04\xa1\xb2\xc3\xd4\xe5\xf6", TFI_CHIP)
RELEASED = build_frame(b"\x53\x00", TFI_CHIP)
FIRMWARE = build_frame(b"\x03\x32\x01\x06\x07", TFI_CHIP)


class InstantChip:
    """Answers each known host frame at once with ACK + a precomputed reply (no parsing)."""

    def __init__(self):
        self.card = False
        self.out = b""
        self.replies = {
            IN_LIST_PASSIVE_TARGET: NO_CARD,
            IN_RELEASE: RELEASED,
            GET_FIRMWARE_VERSION: FIRMWARE,
        }
        self.ilpt = 0

    def any(self):
        return len(self.out)

    def read(self, n):
        out, self.out = self.out[:n], self.out[n:]
        return out or None

    def write(self, b):
        if b == IN_LIST_PASSIVE_TARGET:
            self.ilpt += 1
            reply = CARD4 if self.card else NO_CARD
        elif b == ACK_FRAME:
            return len(b)
        else:
            # wake+SAM, RFConfiguration: reply code = command + 1 (the byte after TFI)
            reply = self.replies.get(b)
            if reply is None:
                i = b.find(b"\xd4")
                reply = build_frame(bytes((b[i + 1] + 1,)), TFI_CHIP)
        self.out = ACK_FRAME + reply
        return len(b)


def wire_timing():
    ms = BYTE_US / 1000
    rows = (
        ("no card", 11 + 6 + len(NO_CARD), 0),
        ("card, 4-byte UID (+InRelease)", 11 + 6 + len(CARD4), 10 + 6 + len(RELEASED)),
        ("card, 7-byte UID (+InRelease)", 11 + 6 + len(CARD7), 10 + 6 + len(RELEASED)),
    )
    print("PN532 poll cycle on the wire @115200 (ILPT cmd + ACK + reply [+ InRelease round]):")
    for what, ilpt, rel in rows:
        print("  {:32s} {:3d} B ILPT = {:.2f} ms, +{:2d} B InRelease = {:.2f} ms".format(
            what, ilpt, ilpt * ms, rel, rel * ms))
    print("  chip: ACK <= 15 ms after the command (nfcpy); ILPT with MxRtyPassiveActivation=1")
    print("  answers within RevK's 110 ms time-out; >100 ms seen (Adafruit #50). So a no-card")
    print("  poll = {:.1f} ms wire + chip time (< ~110 ms); the driver waits poll_interval_ms"
          .format(rows[0][1] * ms))
    print("  (100) after each reply, and its time-out is 250 ms.")


def cpu_per_poll(card, cycles=300):
    chip = InstantChip()
    chip.card = card
    drv = PN532(chip, poll_interval_ms=0)
    t = 0
    for _ in range(50):  # configure
        drv.poll(t)
        t = ticks_add(t, 1)
    start_ilpt = chip.ilpt
    polls = 0
    t0 = ticks_us()
    while chip.ilpt - start_ilpt < cycles:
        drv.poll(t)
        polls += 1
        t = ticks_add(t, 1)
    us = ticks_diff(ticks_us(), t0)
    return us / cycles, polls / cycles


def parser_throughput(total=40000):
    garbage = b"\x13\x37\xa5\x5a\xff\x01"
    unit = ACK_FRAME + CARD7 + garbage + ACK_FRAME + NO_CARD + b"\x00\x00"
    stream = unit * (total // len(unit) + 1)
    p = FrameParser()
    frames = 0
    t0 = ticks_us()
    for i in range(0, len(stream), 64):
        p.feed(stream[i : i + 64])
        while p.next() is not None:
            frames += 1
    us = ticks_diff(ticks_us(), t0)
    return len(stream) * 1000000 / us, frames, p.garbage


def heap_while_polling():
    if not hasattr(gc, "mem_alloc"):
        return None
    chip = InstantChip()
    gc.collect()
    base = gc.mem_alloc()
    drv = PN532(chip, poll_interval_ms=0)
    t = 0

    def run(n):
        nonlocal_t = t
        for i in range(n):
            if i % 40 == 0:
                chip.card = not chip.card  # taps and gones, not only empty polls
            drv.poll(nonlocal_t)
            nonlocal_t = ticks_add(nonlocal_t, 1)
        return nonlocal_t

    t = run(2000)
    gc.collect()
    steady = gc.mem_alloc() - base
    t = run(20000)
    gc.collect()
    later = gc.mem_alloc() - base
    return steady, later, chip.ilpt


def main():
    impl = sys.implementation.name
    print("interpreter:", impl, sys.version.split()[0])
    wire_timing()
    for card in (False, True):
        us, polls = cpu_per_poll(card)
        print("driver CPU per ILPT cycle ({}): {:.0f} us ({:.1f} poll() calls)".format(
            "card held" if card else "no card", us, polls))
    bps, frames, junk = parser_throughput()
    print("parser throughput: {:.0f} bytes/s ({} frames, {} garbage bytes)".format(
        bps, frames, junk))
    heap = heap_while_polling()
    if heap is None:
        print("heap: gc.mem_alloc not available on", impl)
    else:
        print("heap held by a polling PN532 driver: {} B after 2000 polls, {} B after 22000 "
              "({} ILPT cycles)".format(*heap))


main()
