"""What stays alive after start-up: the `Board` holder and the Modbus `SharedBus`.

The wiring (`hal.boards.common` and the per-target board module) is boot-time code the shell
drops once the board is built, so nothing here may reference it.
"""


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

    def poll(self, now):
        """-> None | (meter index, event)."""
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

    def wall_clock(self):
        """The board's wall clock: integer seconds since 1970-01-01 UTC. A board without a
        battery-backed RTC restarts it with the power (at 1970 or, on ports whose epoch is
        2000-01-01, there: set `clock_offset_s` = 946684800 for such a port), so the value may
        be nonsense until NTP or the backend sets it: the shell and the core judge it against
        timefmt.CLOCK_FLOOR_S, and both epochs lie far before that floor."""
        import time

        return int(time.time()) + self.clock_offset_s
