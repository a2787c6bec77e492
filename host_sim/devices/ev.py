"""A virtual electric vehicle on the control pilot (hardware.md §4.1-§4.3).

The EVSE drives CP through 1 kΩ from a ±12 V generator; the EV's diode and resistors pull the
positive plateau down to the state level (A +12, B +9, C +6, D +3, E 0 V) while the diode keeps
the negative plateau at −12 V. Without PWM (duty 1000) the line is DC at the positive level; a
duty of 0 is a steady −12 V (state F). The model reports both plateaus in signed millivolts.

S2 (charge request) is only closed while the EVSE offers PWM (B2 → C2), which is what EVs do;
`ignore_pwm_off` models a faulty EV that stays in C and keeps drawing its last current after the
PWM is switched off. `diode` shorts the diode, so the negative plateau becomes the mirror image
of the positive one instead of −12 V. `pilot_short` shorts CP to PE (state E, 0 V both ways).

PP (§4.3): the cable's resistor between PP and PE, or None for none (a tethered cable, or a
socket cable without its resistor); `set_pp` swaps it while plugged in, e.g. to a coding-error
value below 75 Ω. `pilot_lost` is the EVSE losing power: the EV sees no pilot and forgets the
current it was offered (it draws nothing until a PWM offers current again).
"""

from hal.iec61851 import DUTY_OFF, amps_for_duty

LEVEL_MV = {"A": 12000, "B": 9000, "C": 6000, "D": 3000, "E": 0}
NEG_MV = -12000
FAULTS = ("diode", "pilot_short", "ignore_pwm_off")
CABLES_OHM = (100, 220, 680, 1500)  # Type 2 Rc codings: 63, 32, 20, 13 A


class Ev:
    def __init__(self, *, max_amps=16, phases=1, cable_ohms=220):
        if phases not in (1, 2, 3):
            raise ValueError("phases must be 1, 2 or 3")
        if max_amps <= 0:
            raise ValueError("max_amps must be > 0")
        self.max_amps = max_amps
        self.phases = phases
        self.cable_ohms = self._check_cable(cable_ohms)
        self.plugged = False
        self.request = None  # None, "C" (charge) or "D" (charge with ventilation)
        self.faults = set()
        self._offered = 0  # amps the last PWM duty allowed

    @staticmethod
    def _check_cable(ohms):
        if ohms is not None and (isinstance(ohms, bool) or not isinstance(ohms, int)
                                 or ohms <= 0):
            raise ValueError("cable PP resistor must be a positive number of ohms or None")
        return ohms

    # ---- driver actions ---------------------------------------------------------------------
    def plug(self, cable_ohms=-1):
        """Plug in; `cable_ohms` None = tethered cable (no PP resistor seen by the EVSE)."""
        if cable_ohms != -1:
            self.cable_ohms = self._check_cable(cable_ohms)
        self.plugged = True
        self.request = None

    def set_pp(self, cable_ohms):
        """The PP resistance of the cable in use changes (None = no resistor)."""
        if not self.plugged:
            raise ValueError("no cable plugged in: plug first (plug N [AMPS|nopp])")
        self.cable_ohms = self._check_cable(cable_ohms)

    def unplug(self):
        self.plugged = False
        self.request = None

    def charge(self):
        self.request = "C"

    def ventilation(self):
        self.request = "D"

    def pause(self):
        self.request = None

    def pilot_lost(self):
        """The EVSE lost power: no pilot, so no current is offered any more."""
        self._offered = 0

    def set_fault(self, name, on=True):
        if name == "clear":
            self.faults.clear()
            return
        if name not in FAULTS:
            raise ValueError("unknown EV fault %r (one of clear, %s)" % (name, ", ".join(FAULTS)))
        if on:
            self.faults.add(name)
        else:
            self.faults.discard(name)

    # ---- what the EVSE sees -----------------------------------------------------------------
    def observe_duty(self, duty):
        """Called when the PWM changes: remember what the EVSE offers."""
        if 0 < duty < DUTY_OFF:
            self._offered = amps_for_duty(duty)
        elif not (duty == DUTY_OFF and "ignore_pwm_off" in self.faults):
            self._offered = 0

    def state(self, duty):
        if "pilot_short" in self.faults:
            return "E"
        if not self.plugged:
            return "A"
        pwm_on = 0 < duty < DUTY_OFF
        if self.request and (pwm_on or (duty == DUTY_OFF and "ignore_pwm_off" in self.faults)):
            return self.request
        return "B"

    def cp_mv(self, duty):
        """(high_mv, low_mv): the two CP plateaus; equal when the line is DC."""
        st = self.state(duty)
        if st == "E":
            return 0, 0
        high = LEVEL_MV[st]
        low = -high if ("diode" in self.faults and st != "A") else NEG_MV
        if duty >= DUTY_OFF:
            return high, high
        if duty <= 0:
            return low, low
        return high, low

    def pp_ohms(self):
        """PP–PE resistance the EVSE measures: 0 = no cable (unplugged or tethered)."""
        if not self.plugged or self.cable_ohms is None:
            return 0
        return self.cable_ohms

    def amps(self, duty, main_closed):
        """Per-phase current (L1, L2, L3) in A: only in C/D with the contactor closed."""
        if not main_closed or self.state(duty) not in ("C", "D"):
            return (0.0, 0.0, 0.0)
        a = float(min(self._offered, self.max_amps))
        return tuple(a if i < self.phases else 0.0 for i in range(3))

    def status(self, duty):
        return {"plugged": self.plugged, "state": self.state(duty), "request": self.request,
                "pp_ohms": self.pp_ohms(), "max_amps": self.max_amps, "phases": self.phases,
                "faults": sorted(self.faults)}
