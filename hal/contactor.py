"""Main contactor: coil output and mirror-contact feedback with weld / stuck-open detection.

The mirror contact is the auxiliary normally-closed contact of IEC 60947-4-1 Annex F: it is closed
exactly when every main pole is open, even if a pole is welded. So, once the contactor has had
time to move (the settle window) and the reading is steady (the debounce):
  coil off, mirror closed -> "open"        coil on, mirror open   -> "closed"
  coil off, mirror open   -> "welded"      coil on, mirror closed -> "stuck_open"
A weld that appears while idle (mirror opens with the coil off) is caught by the same rule.
The driver reports what it sees, on change only; latching a weld is the charging core's policy.
Facts: shared/reference/hardware.md §5.
"""

from hal.compat import const, ticks_diff

# OpenEVSE waits 250 ms for its relay to settle; contactors pull in within tens of ms, so a
# quarter second covers the slow ones with margin. The coil itself switches at once: this window
# only delays the *verdict*, never the opening.
SETTLE_MS = const(250)
DEBOUNCE_MS = const(50)

OPEN = "open"
CLOSED = "closed"
WELDED = "welded"
STUCK_OPEN = "stuck_open"


class Contactor:
    """Non-blocking contactor driver: `set(closed, now)` switches, `poll(now)` returns verdicts.

    `mirror_closed_level` is the pin value that means "auxiliary NC contact closed" (1 for the
    simulator; 0 on a board where the contact pulls a pulled-up input to ground).
    """


    def __init__(self, coil_pin, mirror_pin, settle_ms=SETTLE_MS, debounce_ms=DEBOUNCE_MS,
                 mirror_closed_level=1):
        if settle_ms < 0 or debounce_ms < 0:
            raise ValueError("settle_ms, debounce_ms < 0")
        self._coil = coil_pin
        self._mirror = mirror_pin
        self._settle_ms = settle_ms
        self._debounce_ms = debounce_ms
        self._closed_level = 1 if mirror_closed_level else 0
        self._commanded = False
        coil_pin.value(0)  # safe state before anything else
        self._switched_at = None  # None: boot, the first poll starts the settle window
        self._settling = True
        self._raw = None
        self._raw_since = 0
        self._stable = None
        self.state = None  # last reported verdict (None until the first one)
        self._due = False

    def set(self, closed, now):
        """Energise (True) or release (False) the coil now; a repeat command changes nothing."""
        closed = bool(closed)
        if closed == self._commanded:
            return
        self._coil.value(1 if closed else 0)
        self._commanded = closed
        self._switched_at = now
        self._settling = True
        self._due = True  # the core waits for a verdict after every command, changed or not

    def poll(self, now):
        """Sample the mirror once; return (verdict, None) when the verdict changes, and once after
        every command's settle window even if unchanged (a close-then-open inside the window
        ends where it began, and the core must still learn that the mains are open)."""
        raw = 1 if self._mirror.value() else 0
        if raw != self._raw:
            self._raw = raw
            self._raw_since = now
            if self._stable is None:
                self._stable = raw
        if raw != self._stable and ticks_diff(now, self._raw_since) >= self._debounce_ms:
            self._stable = raw
        if self._switched_at is None:
            self._switched_at = now
        if self._settling:
            if ticks_diff(now, self._switched_at) < self._settle_ms:
                return None
            self._settling = False
        if raw != self._stable:
            return None  # a change is still being debounced: no verdict on a moving contact
        mains_open = self._stable == self._closed_level
        if self._commanded:
            state = STUCK_OPEN if mains_open else CLOSED
        else:
            state = OPEN if mains_open else WELDED
        if state == self.state and not self._due:
            return None
        self.state = state
        self._due = False
        return (state, None)
