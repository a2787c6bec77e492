"""A virtual contactor with a mirror contact (hardware.md §5).

The main contacts follow the coil after a travel time: `make_s` when the coil is energised,
`release_s` when it drops (both default 20 ms; `delay_s` sets both). A real contactor's times
are in its datasheet; issue 9's field report had main contacts that released only after 0.3 s,
so `set_timing` (console: `contactor N make MS release MS`) lets a test choose them. The mirror
contact is an auxiliary normally-closed contact (IEC 60947-4-1 Annex F, hardware.md §5), so it
reads closed exactly when the main contacts are open: it moves with them, not with the coil.
Faults: `weld` (main contacts stay closed whatever the coil does), `stuck` (they stay open),
`clear` (follow the coil again, at once).
"""

FAULTS = ("clear", "weld", "stuck")
MAX_TRAVEL_S = 5.0  # longest make/release time accepted (s): far beyond any real contactor


class Contactor:
    def __init__(self, *, delay_s=0.020, make_s=None, release_s=None):
        self.make_s = 0.0
        self.release_s = 0.0
        self.set_timing(delay_s if make_s is None else make_s,
                        delay_s if release_s is None else release_s)
        self.coil = False
        self.fault = "clear"
        self._main = False
        self._switch_at = None  # time the main contacts reach the coil's state
        self.operations = 0

    def set_timing(self, make_s=None, release_s=None):
        """Travel times in seconds (None keeps the current one); the next coil change uses
        them, a movement already under way keeps its own."""
        for name, value in (("make_s", make_s), ("release_s", release_s)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value <= MAX_TRAVEL_S:
                raise ValueError("%s must be 0..%g s, got %r" % (name, MAX_TRAVEL_S, value))
            setattr(self, name, float(value))

    def set_coil(self, on, now):
        on = bool(on)
        if on == self.coil:
            return
        self.advance(now)
        self.coil = on
        self._switch_at = now + (self.make_s if on else self.release_s)

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
                "operations": self.operations, "make_ms": round(self.make_s * 1000, 3),
                "release_ms": round(self.release_s * 1000, 3)}
