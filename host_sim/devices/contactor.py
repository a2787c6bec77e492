"""A virtual contactor with a mirror contact (hardware.md §5).

The main contacts follow the coil after `delay_s` (default 20 ms, mechanical travel); the mirror
contact is an auxiliary normally-closed contact, so it reads closed exactly when the main
contacts are open. Faults: `weld` (main contacts stay closed whatever the coil does),
`stuck` (they stay open), `clear` (follow the coil again, at once).
"""

FAULTS = ("clear", "weld", "stuck")


class Contactor:
    def __init__(self, *, delay_s=0.020):
        self.delay_s = delay_s
        self.coil = False
        self.fault = "clear"
        self._main = False
        self._switch_at = None  # time the main contacts reach the coil's state
        self.operations = 0

    def set_coil(self, on, now):
        on = bool(on)
        if on == self.coil:
            return
        self.coil = on
        self._switch_at = now + self.delay_s

    def set_fault(self, name, now=0.0):
        if name not in FAULTS:
            raise ValueError("unknown contactor fault %r (one of %s)" % (name, ", ".join(FAULTS)))
        self.fault = name
        if name == "clear":
            self._main = self.coil
            self._switch_at = None

    def advance(self, now):
        if self._switch_at is not None and now >= self._switch_at:
            self._switch_at = None
            if self._main != self.coil:
                self._main = self.coil
                self.operations += 1

    def main_closed(self, now):
        self.advance(now)
        if self.fault == "weld":
            return True
        if self.fault == "stuck":
            return False
        return self._main

    def mirror_closed(self, now):
        """Aux NC contact: closed (1) when the main contacts are open."""
        return not self.main_closed(now)

    def next_event(self, now):
        return self._switch_at

    def status(self, now):
        return {"coil": int(self.coil), "main": int(self.main_closed(now)),
                "mirror": int(self.mirror_closed(now)), "fault": self.fault,
                "operations": self.operations}
