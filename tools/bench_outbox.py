"""Benchmark of the flash outbox: heap and boot time over a backlog, flash operations and time
per add and per ack, on CPython and the MicroPython unix port.

    python tools/bench_outbox.py [MESSAGES]                              # CPython
    python tools/bench_outbox.py --micropython [MESSAGES] [--heap 128k]  # the unix port

The MicroPython run is how the charger runs it: tools.build compiles firmware/ and hal/ to
.mpy, this harness is packed into the same ROMFS image, host_sim/romboot.py maps the image
outside the heap, and the outbox folder is on the PC's disk (the unix port has no littlefs).

With nothing acknowledging (an offline charger) MESSAGES (10 000) messages shaped like the
firmware's are queued -- per session an EVSE status, the Start notification, the End
notification, the CDR and a second status -- then 1 000 of them are acknowledged in a
scattered order (the bridge acks out of order), then the oldest 1 000 left in order. Printed:
  heap    bytes held by an Outbox (and its Store) constructed over 0, 1 000 and MESSAGES queued
          messages: gc.mem_alloc() after gc.collect(), MicroPython only
  boot    ms to construct the Outbox over each backlog (directory listing, last segment read)
  add/ack flash operations (Outbox.writes: appends, file writes, renames, removes) and us per
          message (time includes the ack's id lookup on a miss: the in-order round tries ids
          the scattered round took), the way the firmware adds and acks: offer() adds with
          the id index entry deferred to the segment's roll (index=False), the uplink acks
          with durable=False (held in RAM, LATE at a time); the acks left in RAM are flushed
          before the last boot
  read    us per message to read the oldest 1 000 (Outbox.pending, one at a time)
  flash   bytes and files in the outbox folder, and the 4 KB blocks littlefs would give them
          (a file over 128 B takes whole blocks; MicroPython's cache size)
"""

import gc
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, ".")

MP = sys.implementation.name == "micropython"


def _alloc():
    gc.collect()
    return gc.mem_alloc() if MP else 0


from firmware.store import Outbox, Store  # noqa: E402
from hal.compat import ticks_diff, ticks_us  # noqa: E402

MARKS = (0, 1000)  # backlogs (besides MESSAGES) whose heap and boot time are printed
ACKS = 1000


def _message(i):
    """Message i of the offline stream: (msg_id, msg), 5 per session."""
    k, part = divmod(i, 5)
    lid = "%08x-0000-4000-8000-%012x" % (k, k)
    if part in (0, 4):
        return "st%d-%d" % (k, part), {"type": "evse_status", "id": "st%d-%d" % (k, part),
                                       "EvseID": "DE*ABC*E0001*1",
                                       "EvseStatus": "Occupied" if part == 0 else "Available"}
    msg_id = (lid + ".start", lid + ".end", "cdr-" + lid)[part - 1]
    d = {"type": "cdr" if part == 3 else "notification", "id": msg_id,
         "SessionID": "%08x-1111-4000-8000-%012x" % (k, k), "CPOPartnerSessionID": lid,
         "EvseID": "DE*ABC*E0001*1",
         "Identification": {"RFIDMifareFamilyIdentification": {"UID": "04A1B2C3D4E5F6"}},
         "ChargingStart": "2025-01-01T10:00:00Z", "SessionStart": "2025-01-01T09:59:58Z",
         "MeterValueStart": 1234.567}
    if part == 1:
        d["Type"] = "Start"
    else:
        if part == 2:
            d["Type"] = "End"
        d["ChargingEnd"] = "2025-01-01T11:00:00Z"
        d["SessionEnd"] = "2025-01-01T11:00:05Z"
        d["ConsumedEnergy"] = 7.0
        d["MeterValueEnd"] = 1241.567
    return msg_id, d


def _boot(root):
    """(outbox, heap bytes held, ms) of constructing an Outbox over the folder."""
    base = _alloc()
    t0 = ticks_us()
    ob = Outbox(Store(root))
    ms = ticks_diff(ticks_us(), t0) / 1000
    held = _alloc() - base
    assert not ob.store.problems, ob.store.problems
    return ob, held, ms


def _flash(folder):
    size = files = blocks = 0
    for name in os.listdir(folder):
        n = os.stat(folder + "/" + name)[6]
        size += n
        files += 1
        if n > 128:
            blocks += (n + 4095) // 4096
    return size, files, blocks


def _fill(ob, start, stop):
    """Queue messages start..stop-1 -> (flash operations, us)."""
    w0 = ob.writes
    us = 0
    for i in range(start, stop):
        msg_id, msg = _message(i)
        t0 = ticks_us()
        assert ob.add(msg_id, msg, False)
        us += ticks_diff(ticks_us(), t0)
    return ob.writes - w0, us


def run(root, messages):
    out = []
    marks = [m for m in MARKS if m < messages] + [messages]
    done = writes = us = 0
    ob = None
    for mark in marks:
        if mark > done:
            w, t = _fill(ob, done, mark)
            writes += w
            us += t
            done = mark
            ob = None
        ob, held, ms = _boot(root)
        assert len(ob) == mark
        out.append("backlog %5d: heap %5d B, boot %5.1f ms" % (mark, held, ms))
    out.append("add: %.2f flash operations, %d us per message (%d messages)" % (
        writes / messages, us // messages, messages))
    t0 = ticks_us()
    read = 0
    for _item in ob.pending():
        read += 1
        if read == 1000:
            break
    t = ticks_diff(ticks_us(), t0)
    assert next(ob.pending())[0] == _message(0)[0]
    out.append("read: %d us per message (the oldest %d, one at a time)" % (t // read, read))
    size, files, blocks = _flash(ob.dir)
    out.append("flash: %d B in %d files (%d B per message); littlefs: ~%d blocks of 4 KB" % (
        size, files, size // messages, blocks))
    acks = min(ACKS, messages)
    w0 = ob.writes
    us = 0
    for j in range(acks):
        i = j * 7919 % messages  # 7919 is prime: scattered, each once
        t0 = ticks_us()
        assert ob.ack(_message(i)[0], False)
        us += ticks_diff(ticks_us(), t0)
    out.append("ack: %.2f flash operations, %d us per message (%d scattered acks)" % (
        (ob.writes - w0) / acks, us // acks, acks))
    w0 = ob.writes
    us = done = 0
    for i in range(messages):  # then the oldest in order, as an uplink that catches up
        t0 = ticks_us()
        ok = ob.ack(_message(i)[0], False)  # False: acknowledged in the scattered round
        us += ticks_diff(ticks_us(), t0)
        done += ok
        if done == acks:
            break
    out.append("ack: %.2f flash operations, %d us per message (the oldest %d in order; a "
               "segment's files go with its last ack)" % ((ob.writes - w0) / done, us // done,
                                                          done))
    ob.flush()
    ob = None
    ob, held, ms = _boot(root)
    assert len(ob) == messages - acks - done
    out.append("backlog %5d after the acks: heap %5d B, boot %5.1f ms" % (len(ob), held, ms))
    return out


def _rmtree(path):
    for name in os.listdir(path):
        try:
            os.remove(path + "/" + name)
        except OSError:  # a folder
            _rmtree(path + "/" + name)
    os.rmdir(path)


def main(args):
    """MESSAGES [FOLDER]: the romboot launcher calls this with a folder it made."""
    messages = int(args[0]) if args else 10000
    if len(args) > 1:
        root = args[1]
    else:
        import tempfile

        root = tempfile.mkdtemp(prefix="bench_outbox_")
    try:
        lines = run(root + "/flash", messages)
    finally:
        _rmtree(root + "/flash")
        if len(args) < 2:
            os.rmdir(root)
    print("bench_outbox %s: %d messages queued offline" % (sys.implementation.name, messages))
    for line in lines:
        print(line)


def on_micropython(args):
    """Build the image with this harness in it and run it under the unix port; -> exit code."""
    from host_sim.runner import run_harness

    return run_harness(__file__, args, ["10000"], with_flash=True, default_heap="128k")


if __name__ == "__main__":
    if "--micropython" in sys.argv:
        sys.exit(on_micropython([a for a in sys.argv[1:] if a != "--micropython"]))
    main(sys.argv[1:])
