"""What stays alive after start-up: the `Board` holder and the Modbus `SharedBus`.

The wiring (`hal.boards.common` and the per-target board module) is boot-time code the shell
drops once the board is built, so nothing here may reference it.

The event sink belongs to the board (`Board.emit`): off target (unix port, CPython) every
observable event is one JSON line on stdout, which the simulator and the tests read; the ESP32
board keeps them in RAM instead (hal.boards.esp32: its stdout is the REPL UART).
"""

import json
import sys


def json_line(ev, **fields):
    """One observable event as one JSON line on stdout: the fields, then "ev" (the simulator's
    console reads these). Also what app.py says when it fails before a board exists."""
    fields["ev"] = ev
    # json.dump writes piece by piece: a CDR event (~700 B) needs no string of its size, which
    # a heap near its end cannot always give in one block (MemoryError seen at 128k, mqtt)
    json.dump(fields, sys.stdout)
    sys.stdout.write("\n")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


class SharedBus:
    """Several Modbus `Meter`s on one `ModbusMaster`: only the meter that owns the bus may poll.

    A meter polled while another's request is outstanding would take its answer (or raise in
    `start`), so meters take turns: the owner keeps the bus until it returns an event and the
    master is idle again; then the next meter that is due gets it.
    """

    def __init__(self, master, meters):
        self.master = master
        self.meters = meters
        self._owner = None
        self._next = 0

    def restart(self):
        """The bus's port failed (or was reopened): drop the request in flight and every
        meter's partial cycle, so the next poll starts afresh on whatever port is there."""
        self.master.abort()
        for m in self.meters:
            m.abort()
        self._owner = None

    def poll(self, now):
        """-> None | (meter index, (kind, data)): the event of the meter that reported (a
        multiplexer, not a driver: the index says which meter's poll the event came from)."""
        meters = self.meters
        if self._owner is not None:
            i = self._owner
            ev = meters[i].poll(now)
            if not self.master.busy:
                self._owner = None
                self._next = (i + 1) % len(meters)
            return None if ev is None else (i, ev)
        for k in range(len(meters)):
            i = (self._next + k) % len(meters)
            ev = meters[i].poll(now)
            if self.master.busy:
                self._owner = i
                return None if ev is None else (i, ev)
            if ev is not None:
                self._next = (i + 1) % len(meters)
                return (i, ev)
        return None


class Board:
    """What the firmware gets from a board: one object per device, lists indexed by EVSE.
    The shell polls them itself (pilots and contactors first: safety)."""

    def __init__(self, reader, meters, contactors, pilots, proximity, bus):
        self.reader = reader  # None: no reader
        self.meters = meters  # None entries: no meter
        self.contactors = contactors
        self.pilots = pilots
        self.proximity = proximity  # None entries for tethered cables
        self.bus = bus  # SharedBus when the meters are Modbus, else None
        self.clock_offset_s = 0  # seconds to add to time.time(): see wall_clock
        # "reader"/"meter" -> (port class, name, baud): how to open that port again (boards
        # whose serial devices can vanish: a USB-serial adapter unplugged); see reopen
        self.openers = {}
        self.close_errors = 0  # ports that failed even to close (already gone)

    # The event sink, `emit(ev, **fields)`: one observable event (`ev` its name, the fields
    # JSON values). Here one JSON line on stdout; a board whose stdout costs the control loop
    # time overrides it (hal.boards.esp32). The function itself, not a method calling it: one
    # function object less on the heap.
    emit = staticmethod(json_line)

    def reopen(self, which):
        """Open the port of `which` ("reader" or "meter") again after it failed and give it to
        its driver. -> True if reopened, False if this board cannot reopen ports (the shell
        then polls the old one again); raises OSError if the port is still not there."""
        opener = self.openers.get(which)
        if opener is None:
            return False
        drv = self.reader if which == "reader" else self.bus.master
        old = drv.uart
        if old is not None and hasattr(old, "close"):
            try:
                old.close()
            except OSError:  # a vanished device may fail to close: it is gone either way
                self.close_errors += 1
        drv.uart = None
        drv.uart = opener[0](opener[1], opener[2])  # OSError: still gone (uart stays None)
        return True

    def wall_clock(self):
        """The board's wall clock: integer seconds since 1970-01-01 UTC. A board without a
        battery-backed RTC restarts it with the power (at 1970 or, on ports whose epoch is
        2000-01-01, there: set `clock_offset_s` = 946684800 for such a port), so the value may
        be nonsense until NTP or the backend sets it: the shell and the core judge it against
        timefmt.CLOCK_FLOOR_S, and both epochs lie far before that floor."""
        import time

        return int(time.time()) + self.clock_offset_s
