"""Main contactor: coil output and mirror-contact feedback with weld / stuck-open detection.

The mirror contact is the auxiliary normally-closed contact of IEC 60947-4-1 Annex F: it is closed
exactly when every main pole is open, even if a pole is welded. Once the reading is steady (the
debounce) the verdict is
  coil off, mirror closed -> "open"        coil on, mirror open   -> "closed"
  coil off, mirror open   -> "welded"      coil on, mirror closed -> "stuck_open"

Timing after a command (switch at t = 0; times in ms):
  t < settle_ms                 no verdict: the contacts are moving.
  settle_ms <= t                the mirror agrees with the command -> "open"|"closed", late_ms:
                                late_ms None if the mirror's last edge came within settle_ms,
                                else the ms from the command to that edge (a slow contactor:
                                worth a warning, not a fault).
  settle_ms <= t < confirm_ms   the mirror still disagrees -> no verdict yet: wait.
  confirm_ms <= t               the mirror still disagrees -> "welded"|"stuck_open", None.
A verdict is the event (CONTACTOR, (verdict, late_ms)) (hal.kinds).
Release and make use the same confirmation time: a release that needs more than a second is no
healthy contactor, and a make verdict (stuck_open) has no safety cost in waiting (the mains are
open). OpenEVSE tests for a stuck relay 1000 ms after opening and checks ground 1000 ms after
closing; Tinkerforge WARP ignores its contactor check for 5 x 250 ms after each switching
(../shared/reference/hardware.md §5). Construction counts as a release command (the coil is
released then, perhaps after a reset with the mains closed): its window starts at the first poll.

After every command exactly one verdict follows once settled, even when it equals the last one
(a close-then-open inside the window ends where it began, and the core must still learn that the
mains are open); a repeated command moves nothing and restarts no window, but it too is answered
by one verdict (the pending one, or the current one again). Between commands the driver reports
changes only, after the debounce: a mirror that opens while the coil is off is a weld at once,
one that closes while the coil is on is stuck_open at once. Latching a weld is the core's policy.
poll() allocates nothing unless it returns a verdict.
Facts: ../shared/reference/hardware.md §5.
"""

from hal.compat import const, ticks_diff
from hal.kinds import CONTACTOR

# OpenEVSE waits 250 ms for its relay to settle; contactors pull in within tens of ms, so a
# quarter second covers the slow ones with margin. The coil itself switches at once: this window
# only delays the *verdict*, never the opening.
SETTLE_MS = const(250)
# OpenEVSE's STUCK_RELAY_DELAY: weld test 1000 ms after opening (hardware.md §5).
CONFIRM_MS = const(1000)
DEBOUNCE_MS = const(50)

OPEN = "open"
CLOSED = "closed"
WELDED = "welded"
STUCK_OPEN = "stuck_open"


class Contactor:
    """Non-blocking contactor driver: `set(closed, now)` switches, `poll(now)` returns None or
    a verdict `(CONTACTOR, (state, late_ms))` (see the module docstring).

    `settle_ms`, `confirm_ms` (config `contactor.settle_ms` / `contactor.weld_confirm_ms`) and
    `debounce_ms` are in ms, confirm_ms >= settle_ms. `mirror_closed_level` is the pin value that
    means "auxiliary NC contact closed" (1 for the simulator; 0 on a board where the contact
    pulls a pulled-up input to ground).
    """

    def __init__(self, coil_pin, mirror_pin, settle_ms=SETTLE_MS, debounce_ms=DEBOUNCE_MS,
                 mirror_closed_level=1, confirm_ms=CONFIRM_MS):
        if settle_ms < 0 or debounce_ms < 0 or confirm_ms < settle_ms:
            raise ValueError("need 0 <= settle_ms <= confirm_ms, debounce_ms >= 0")
        self._coil = coil_pin
        self._mirror = mirror_pin
        self._settle_ms = settle_ms
        self._confirm_ms = confirm_ms
        self._debounce_ms = debounce_ms
        self._closed_level = 1 if mirror_closed_level else 0
        self._commanded = False
        coil_pin.value(0)  # safe state before anything else
        self._switched_at = None  # None: boot, the first poll starts the settle window
        self._settling = True  # a verdict on the latest movement is still to come
        self._raw = None
        self._raw_since = 0
        self._stable = None
        self.state = None  # last reported verdict (None until the first one)
        self._due = False

    def set(self, closed, now):
        """Energise (True) or release (False) the coil now. A repeat command changes nothing
        and restarts no window, but it is answered by a verdict like any other."""
        closed = bool(closed)
        self._due = True
        if closed == self._commanded:
            return
        self._coil.value(1 if closed else 0)
        self._commanded = closed
        self._switched_at = now
        self._settling = True
        if self._raw == self._stable:
            # nothing being debounced: the reading is steady since now at least. Keeps the
            # late_ms figure below from comparing stamps that lie a tick period apart.
            self._raw_since = now

    def poll(self, now):
        """Sample the mirror once; None, or (CONTACTOR, (state, late_ms)) as the module says."""
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
        if raw != self._stable:
            return None  # a change is still being debounced: no verdict on a moving contact
        agrees = (self._stable == self._closed_level) != self._commanded
        late = None
        if self._settling:
            waited = ticks_diff(now, self._switched_at)
            if waited < self._settle_ms or (not agrees and waited < self._confirm_ms):
                return None
            self._settling = False
            if agrees:
                late = ticks_diff(self._raw_since, self._switched_at)
                if late <= self._settle_ms:
                    late = None
        if self._commanded:
            state = CLOSED if agrees else STUCK_OPEN
        else:
            state = OPEN if agrees else WELDED
        if state == self.state and not self._due:
            return None
        self.state = state
        self._due = False
        return (CONTACTOR, (state, late))
