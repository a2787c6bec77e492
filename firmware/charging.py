"""One EVSE's power side: pilot, proximity, contactor mirror, PWM and the stop sequence.

Pure: every input method takes `now` (ticks_ms) and a list `out` to append actions to, and
returns a bit set of happenings (H_*) that the controller turns into session records. The
contactor and PWM are *level-triggered*: after every input `_settle` recomputes what they must
be from the facts, so no sequence of inputs can leave the contactor closed when it may not be:

    close  iff  authorized AND pilot drawing AND diode seen OK since PWM went on AND no fault
                AND not out of service AND PWM on AND mirror confirmed open
    hold   iff  (authorized OR stopping) AND pilot drawing AND no fault AND not out of service
    offer  iff  authorized AND pilot B/C/D AND NOT (pilot D AND site not ventilated) AND no fault

(`Evse._may_close` is the first line, `_settle` the second, `_want_duty` the third.)

"Drawing" is state C, and D only where the configuration says the site is ventilated
(`ventilation`): IEC 61851-1 state D asks for ventilation, which a charger without ventilation
control must not energise (hardware.md §4.1). D there is reported (error `ventilation` and a
driver display) and the EV charges once it asks in C.

A socket outlet whose cable shows no PP resistor (PP reads "no cable" while the pilot sees an
EV, PP_SETTLE_MS after the plug-in) offers no current: that is the fault F_NO_PP, reported
(error `cable`, driver display, OutOfService) and cleared by a valid PP reading or an unplug.

Phase transitions (everything else leaves the phase alone):

    phase       input                          -> phase       reason
    IDLE        authorize                      -> AUTHORIZED
    AUTHORIZED  stop, contactor open           -> IDLE        given
    AUTHORIZED  stop, contactor closed         -> STOPPING    given (PWM off, grace timer)
    AUTHORIZED  pilot B/C/D -> A (unplug)      -> IDLE        EVDisconnected
    AUTHORIZED  connection timer, never plugged-> IDLE        ConnectionTimeout
    STOPPING    pilot leaves C/D               -> IDLE        (kept)
    STOPPING    grace timer (forced open)      -> IDLE        (kept)
    any         fault / welded                 -> IDLE        Fault (if not stopping already)
"""

from firmware import events as E
from hal.compat import ticks_add, ticks_diff
from hal.iec61851 import DUTY_F, DUTY_OFF, PWM_CHANGE_MIN_MS, duty_permille

P_IDLE = 0
P_AUTHORIZED = 1
P_STOPPING = 2

# fault bits (transient: cleared when the EV unplugs, F_PP when PP reads valid again)
F_PILOT = 1  # pilot E or F
F_DIODE = 2  # no -12 V half with PWM on
F_STUCK = 4  # contactor commanded closed but stays open
F_PP = 8  # PP coding error on a socket
F_NO_PP = 16  # socket, EV on the pilot, but PP shows no cable: the PP resistor is missing

# happenings returned to the controller
H_CLOSED = 1
H_OPENED = 2
H_STOPPED = 4  # authorization over: the phase went back to IDLE
H_PLUGGED = 8
H_UNPLUGGED = 16
H_FAULT = 32  # a new fault (or out of service) in this step

DIODE_SETTLE_MS = 500  # "diode not seen" right after PWM-on may be stale: a fault only after
# PWM ran this long, or at once if the diode had already been seen with this PWM
R_CONNECTION_TIMEOUT = "ConnectionTimeout"
# PP is sampled every 500 ms by the shell (and fed on change): a missing resistor is judged
# this long after the pilot showed the plug-in, so a reading that is merely late is not a fault
PP_SETTLE_MS = 1200

STATE_IDLE = "idle"
STATE_PLUGGED = "plugged"
STATE_AUTHORIZED = "authorized"  # waiting for the EV to be plugged
STATE_READY = "ready"  # authorized, EV plugged, contactor open
STATE_CHARGING = "charging"
STATE_STOPPING = "stopping"
STATE_FAULT = "fault"
STATE_OUT_OF_SERVICE = "out_of_service"

_PLUGGED = "BCD"


def earlier(a, b):
    """The earlier of two ticks deadlines; None means no deadline."""
    if a is None:
        return b
    if b is None or ticks_diff(a, b) < 0:
        return a
    return b


def passed(deadline, now):
    """True if the ticks `deadline` is set and `now` has reached it."""
    return deadline is not None and ticks_diff(now, deadline) >= 0


class Evse:
    def __init__(self, n, max_a, socket, grace_ms, conn_ms, ventilated=False):
        self.n = n
        self.max_a = max_a
        self.socket = socket
        self.grace_ms = grace_ms
        self.conn_ms = conn_ms
        self.drawing = "CD" if ventilated else "C"  # pilot states that may be energised
        self.plugged_at = None  # ticks of the last plug-in (pilot A -> B/C/D), None if unplugged
        self.pp_due = None  # judge a missing PP resistor then
        self.pilot = "A"
        self.diode = False  # diode seen OK since PWM last went on
        self.pp = 0
        self.phase = P_IDLE
        self.faults = 0
        self.oos = False
        self.closed = False  # last command
        self.mirror = None  # confirmed mirror state ("open"/"closed"), None = unknown
        self.duty = None
        self.duty_at = None
        self.pwm_due = None
        self.conn_due = None
        self.grace_due = None
        self.diode_due = None  # PWM on and no diode seen yet: a fault if none by then
        self.stop_reason = None
        self.state = None
        self.fault_text = None

    # -- the gate --------------------------------------------------------------------
    def _may_close(self):
        """The `close` line of the table in the module docstring."""
        return (self.phase == P_AUTHORIZED and self.pilot in self.drawing and self.diode
                and not self.faults and not self.oos and self._pwm_on()
                and self.mirror == E.CONTACTOR_OPEN)

    # -- inputs -------------------------------------------------------------------------
    def boot(self, now, out):
        """Command a known safe output (open, PWM off) and report the state."""
        self._contactor(False, out)
        h = self._settle(now, out, 0)
        self.duty_at = None  # the boot command does not count against PWM_CHANGE_MIN_MS
        return h

    def on_pilot(self, st, diode_ok, now, out):
        prev = self.pilot
        self.pilot = st
        h = 0
        pwm_on = self._pwm_on()
        if st in "EF":
            h |= self._fault(F_PILOT, "pilot state " + st, out)
        elif st in _PLUGGED and pwm_on:
            if diode_ok:
                self.diode = True
                self.diode_due = None
            elif self.diode or ticks_diff(now, self.duty_at) >= DIODE_SETTLE_MS:
                h |= self._fault(F_DIODE, "diode check failed", out)
        if st in _PLUGGED and prev not in _PLUGGED:
            h |= H_PLUGGED
            self.conn_due = None
            self.plugged_at = now
            if self.socket:
                self.pp_due = ticks_add(now, PP_SETTLE_MS)
        elif st == "A" and prev != "A":
            if prev in _PLUGGED:
                h |= H_UNPLUGGED
            self.faults &= F_PP  # a PP coding error lasts until PP reads valid
            self.plugged_at = self.pp_due = None
            if self.phase == P_AUTHORIZED and prev in _PLUGGED:
                h |= self._to_idle(E.R_EV_DISCONNECTED)
        if st == "D" and prev != "D" and "D" not in self.drawing:
            out.append((E.A_ERROR, self.n, (E.ERR_VENTILATION, "EV asks for ventilation (state "
                                            "D); this site is not ventilated: no energy in D")))
            out.append((E.A_DISPLAY, self.n, E.DISPLAY_VENTILATION))
        if self.phase == P_STOPPING and st not in self.drawing:
            h |= self._to_idle(None)
        return self._settle(now, out, h)

    def on_pp(self, amps, now, out):
        h = 0
        if amps < 0:
            if self.socket:
                h = self._fault(F_PP, "PP coding error", out)
        else:
            self.pp = amps
            if amps:
                self.faults &= ~(F_PP | F_NO_PP)
            elif self.pp_due is None:
                h = self._no_pp(out)
        return self._settle(now, out, h)

    def on_contactor(self, s, now, out):
        h = 0
        if s == E.CONTACTOR_WELDED or (s == E.CONTACTOR_CLOSED and not self.closed):
            h = self._out_of_service("contactor welded", out)
        elif s == E.CONTACTOR_STUCK_OPEN or (s == E.CONTACTOR_OPEN and self.closed):
            self.mirror = None
            h = self._fault(F_STUCK, "contactor stuck open", out)
        else:
            self.mirror = s
        return self._settle(now, out, h)

    def authorize(self, now, out):
        if self.phase != P_IDLE or not self.available():
            return 0
        self.phase = P_AUTHORIZED
        self.stop_reason = None
        self.conn_due = None if self.pilot in _PLUGGED else ticks_add(now, self.conn_ms)
        return self._settle(now, out, 0)

    def stop(self, reason, now, out):
        """Begin the stop sequence: PWM off now, open when the EV leaves C/D or after grace."""
        if self.phase != P_AUTHORIZED:
            return 0
        self.stop_reason = reason
        if self.closed:
            self.phase = P_STOPPING
            self.grace_due = ticks_add(now, self.grace_ms)
            return self._settle(now, out, 0)
        return self._settle(now, out, self._to_idle(reason))

    def clear(self, now, out):
        """Operator clears out-of-service; re-command open so the driver re-checks the mirror."""
        self.oos = False
        self.faults = 0
        self.fault_text = None
        self._contactor(False, out)
        return self._settle(now, out, 0)

    def expire(self, now, out):
        h = 0
        if passed(self.conn_due, now):
            self.conn_due = None
            if self.phase == P_AUTHORIZED and self.pilot not in _PLUGGED:
                h |= self._to_idle(R_CONNECTION_TIMEOUT)
        if passed(self.grace_due, now):
            self.grace_due = None
            if self.phase == P_STOPPING:
                h |= self._to_idle(None)
        if passed(self.pp_due, now):
            self.pp_due = None
            h |= self._no_pp(out)
        if passed(self.diode_due, now):
            # the pilot driver reports changes only: an EV whose diode never shows must fault
            # here, not on a next pilot change that may never come
            self.diode_due = None
            if self._pwm_on() and self.pilot in _PLUGGED and not self.diode:
                h |= self._fault(F_DIODE, "diode check failed", out)
        if h or passed(self.pwm_due, now):
            return self._settle(now, out, h)
        return 0

    def next_deadline(self):
        # pairwise, no tuple: the shell asks on every 2 ms loop pass
        return earlier(earlier(earlier(self.conn_due, self.grace_due),
                               earlier(self.pwm_due, self.diode_due)), self.pp_due)

    # -- queries ------------------------------------------------------------------------
    def available(self):
        return not self.oos and not self.faults

    def plugged(self):
        return self.pilot in _PLUGGED

    def limit_a(self):
        if self.socket:
            return min(self.max_a, self.pp)
        return self.max_a

    # -- internals ----------------------------------------------------------------------
    def _pwm_on(self):
        return self.duty is not None and self.duty != DUTY_OFF and self.duty != DUTY_F

    def _to_idle(self, reason):
        if self.phase == P_IDLE:
            return 0
        if self.phase == P_AUTHORIZED and reason is not None:
            self.stop_reason = reason
        self.phase = P_IDLE
        self.conn_due = None
        self.grace_due = None
        return H_STOPPED

    def _no_pp(self, out):
        """Socket, EV on the pilot, PP settled at "no cable": the PP resistor is missing."""
        if self.socket and self.pp == 0 and self.pilot in _PLUGGED:
            return self._fault(F_NO_PP, "cable without PP resistor: no current offered", out)
        return 0

    def _fault(self, bit, text, out):
        new = not (self.faults & bit)
        self.faults |= bit
        if not new:
            return 0
        self.fault_text = text
        if bit & (F_PP | F_NO_PP):
            out.append((E.A_ERROR, self.n, (E.ERR_CABLE, text)))
            out.append((E.A_DISPLAY, self.n, E.DISPLAY_CABLE))
        else:
            out.append((E.A_ERROR, self.n, (E.ERR_STUCK_OPEN if bit == F_STUCK else E.ERR_PILOT,
                                            text)))
        return H_FAULT | self._to_idle(E.R_FAULT)

    def _out_of_service(self, text, out):
        if self.oos:
            return 0
        self.oos = True
        self.mirror = None
        self.fault_text = text
        out.append((E.A_ERROR, self.n, (E.ERR_WELDED, text)))
        return H_FAULT | self._to_idle(E.R_FAULT)

    def _contactor(self, close, out):
        self.closed = close
        self.mirror = None  # unknown until the driver confirms
        out.append((E.A_CONTACTOR, self.n, close))

    def _want_duty(self):
        if self.oos:
            return DUTY_F
        if self.phase == P_AUTHORIZED and self.pilot in _PLUGGED and not self.faults \
                and (self.pilot != "D" or "D" in self.drawing):
            return duty_permille(self.limit_a())
        return DUTY_OFF

    def _settle(self, now, out, h):
        if self.closed and not (self.phase != P_IDLE and self.pilot in self.drawing
                                and not self.faults and not self.oos):  # `hold` in the table
            self._contactor(False, out)
            h |= H_OPENED
        want = self._want_duty()
        self.pwm_due = None
        if want != self.duty:
            if (want == DUTY_OFF or want == DUTY_F or self.duty_at is None
                    or ticks_diff(now, self.duty_at) >= PWM_CHANGE_MIN_MS):
                was_on = self._pwm_on()
                self.duty = want
                self.duty_at = now
                if not was_on:
                    self.diode = False  # must be seen again with PWM running
                    self.diode_due = ticks_add(now, DIODE_SETTLE_MS)
                out.append((E.A_PWM, self.n, want))
            else:
                self.pwm_due = ticks_add(self.duty_at, PWM_CHANGE_MIN_MS)
        if not self._pwm_on():
            self.diode_due = None
        if not self.closed and self._may_close():
            self._contactor(True, out)
            h |= H_CLOSED
        name = self._state_name()
        if name != self.state:
            self.state = name
            out.append((E.A_STATE, self.n, name))
        return h

    def _state_name(self):
        if self.oos:
            return STATE_OUT_OF_SERVICE
        if self.faults:
            return STATE_FAULT
        if self.phase == P_STOPPING:
            return STATE_STOPPING
        if self.phase == P_AUTHORIZED:
            if self.closed:
                return STATE_CHARGING
            return STATE_READY if self.pilot in _PLUGGED else STATE_AUTHORIZED
        return STATE_PLUGGED if self.pilot in _PLUGGED else STATE_IDLE
