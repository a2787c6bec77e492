"""Control pilot (IEC 61851-1 CP) and proximity (PP) drivers.

MicroPython cannot sample in step with the 1 kHz PWM (ESP32 pin/timer IRQs are soft only), so a
poll reads a burst of unsynchronised ADC samples spanning at least one PWM period, sorts them in
place and averages the top N (the high plateau: the state) and the bottom N (the low plateau:
the EV diode check) -- the peak detection that esp32-evse uses. Levels go through the board's
divider into CP millivolts, are classified with hysteresis and must repeat in `debounce`
consecutive polls before an event.

Reaction time: a poll measures every `interval_ms` while the level is steady. Once a burst shows
a new level, the confirming bursts follow `confirm_ms` apart instead, as long as they agree; a
disagreeing burst drops back to the normal interval, so a persistently noisy line costs at most
two bursts per interval. A new level is thus reported at most interval_ms + (debounce - 1) x
max(confirm_ms, the caller's loop period) + debounce bursts (samples x ADC read time; a burst
that straddles the change already shows the higher C->B level) after it appeared. With the
defaults (3 polls, 10 ms / 2 ms, 100 samples x 15..50 us per ESP32 read_uv -- an estimate, not
measured here) C->B takes <= 29 ms with a 2 ms loop, typically about half that: well within the
100 ms IEC 61851-1 allows for opening the contactor, and the three agreeing bursts keep their
glitch rejection.

What the driver itself drives is not news about the EV. At DUTY_F (steady -12 V, "EVSE not
available") the EV's diode blocks (§4.1: the EV loads only the positive half), so the line shows
the generator, not the EV: a measured F is our own doing, and a level no -12 V generator can make
(a positive plateau: a stuck output stage) would be read by the core as an EV state it is not.
So while the duty is DUTY_F the driver takes no burst and reports nothing; when the duty leaves
DUTY_F the debounce starts afresh and the first agreeing bursts are reported if they differ from
the last report (a generator stuck high then shows as whatever its level reads). At DUTY_OFF
(steady +12 V) every level is real: the EV's resistor loads +12 V to B1/C1/D1, A1 is no EV, E a
short, and an F there is a real fault (a -12 V line we do not drive); only the diode cannot be
seen (None).
Facts: shared/reference/hardware.md §4.1 (levels), §4.5 (diode check), §4.6 (sampling).
"""

from hal.compat import const, ticks_diff
from hal.iec61851 import DUTY_F, DUTY_OFF, PWM_HZ, pp_cable_amps
from hal.kinds import PILOT

# ADC microvolts -> CP millivolts: cp_mv = (uv / 1000 - offset_mv) * gain. The default maps
# -12 V .. +12 V onto 250 .. 2250 mV, inside the ESP32's 11 dB linear range (150 .. 2450 mV).
CP_DIVIDER = (1250, 12)
# PP: Rc to PE pulled up by `pullup_ohms` to `vref_mv`; Rc 75 .. 2200 ohm gives 230 .. 2270 mV.
PP_DIVIDER = (3300, 1000)

# Upper edges (mV) of the high-plateau bands, SAE J1772 ranges split half-way (§4.1):
# F < -6 V <= E < 1.5 V <= D < 4.5 V <= C < 7.5 V <= B < 10.5 V <= A.
_EDGES = (-6000, 1500, 4500, 7500, 10500)
_STATES = "FEDCBA"
# Diode present: the low plateau reaches -12 V; Tinkerforge flags "> -10 V" as a diode fault.
DIODE_MAX_MV = const(-10000)
HYSTERESIS_MV = const(300)
SAMPLES = const(100)
TOP_N = const(2)  # at 96 % duty a 1.5 ms burst may catch only 2 clean low samples
DEBOUNCE = const(3)
INTERVAL_MS = const(10)
CONFIRM_MS = const(2)  # spacing of the bursts that confirm a newly seen level
PP_OPEN_OHMS = const(1000000)  # "no resistor": far above every PP band


def cp_mv_from_uv(uv, divider=CP_DIVIDER):
    """ADC microvolts -> CP line millivolts through `divider` = (offset_mv, gain).

    Integer arithmetic for an integer gain: no float is boxed on the heap per burst."""
    return int((uv - divider[0] * 1000) * divider[1] // 1000)


def uv_from_cp_mv(cp_mv, divider=CP_DIVIDER):
    """Inverse of `cp_mv_from_uv`: what the ADC reads for a CP level (used by simulators)."""
    return int((cp_mv / divider[1] + divider[0]) * 1000)


def pp_ohms_from_uv(uv, divider=PP_DIVIDER):
    """ADC microvolts -> PP resistance (ohm); PP_OPEN_OHMS when no resistor pulls it down."""
    vref_mv, pullup = divider
    mv = uv / 1000
    if mv >= vref_mv * 0.97:  # ADC clips near the rail: treat as open
        return PP_OPEN_OHMS
    if mv <= 0:
        return 0
    return int(pullup * mv / (vref_mv - mv))


def uv_from_pp_ohms(ohms, divider=PP_DIVIDER):
    """What the PP ADC reads for resistance `ohms` (None or >= PP_OPEN_OHMS: open)."""
    vref_mv, pullup = divider
    if ohms is None or ohms >= PP_OPEN_OHMS:
        return vref_mv * 1000
    return int(vref_mv * 1000 * ohms / (ohms + pullup))


def classify(high_mv, previous=None, hysteresis_mv=HYSTERESIS_MV):
    """State letter for the high-plateau level; stays `previous` within hysteresis of its band."""
    if previous is not None:
        i = _STATES.find(previous)
        if i >= 0:
            lo = _EDGES[i - 1] - hysteresis_mv if i > 0 else -100000000
            hi = _EDGES[i] + hysteresis_mv if i < len(_EDGES) else 100000000
            if lo <= high_mv < hi:
                return previous
    i = 0
    for edge in _EDGES:
        if high_mv < edge:
            break
        i += 1
    return _STATES[i]


class Pilot:
    """CP driver: `set_duty(permille)` and `poll(now) -> None | (PILOT, (state, diode_ok))`.

    diode_ok is True/False with PWM on in B/C/D, None otherwise (steady +-12 V cannot show the
    diode, and A/E/F have none to check) -- None is falsy, so "close only if diode_ok" is safe.
    While the duty is DUTY_F (our own steady -12 V) poll reports nothing (module docstring).
    """

    def __init__(self, pwm, adc, divider=CP_DIVIDER, samples=SAMPLES, top=TOP_N,
                 debounce=DEBOUNCE, interval_ms=INTERVAL_MS, hysteresis_mv=HYSTERESIS_MV,
                 duty=DUTY_OFF, confirm_ms=CONFIRM_MS):
        if samples < 2 * top or top < 1:
            raise ValueError("need samples >= 2*top >= 2")
        if debounce < 1:
            raise ValueError("debounce < 1")
        self._pwm = pwm
        self._read = adc.read_uv  # bound once: no bound-method object per burst
        self._divider = divider
        self._buf = [0] * samples  # allocated once, sorted in place
        self._top = top
        self._debounce = debounce
        self._interval = interval_ms
        self._confirm = min(confirm_ms, interval_ms)
        self._wait = interval_ms  # until the next burst: interval, or confirm while confirming
        self._hyst = hysteresis_mv
        self._last = None
        self._cand = None
        self._cand_diode = None
        self._count = 0
        self._dcount = 0
        self._state = None
        self._diode = None
        self.high_mv = None  # last measured plateaus, for diagnostics
        self.low_mv = None
        self.state = None  # last reported (state, diode_ok), None before the first report
        self.duty = None
        pwm.freq(PWM_HZ)
        self.set_duty(duty)

    def set_duty(self, permille):
        """1000 = steady +12 V, 0 = steady -12 V (state F), else 1 kHz PWM at permille/1000."""
        if (isinstance(permille, bool) or not isinstance(permille, int)
                or permille < DUTY_F or permille > DUTY_OFF):
            raise ValueError("duty int 0..1000")
        if permille == self.duty:
            return
        self._pwm.duty_u16((permille * 65535 + 500) // 1000)
        self.duty = permille
        self._count = 0  # readings taken under the old waveform do not count
        self._dcount = 0

    def measure(self):
        """One burst: sets `high_mv` and `low_mv`, the two plateaus of the CP line (no tuple:
        a poll allocates nothing unless it reports)."""
        buf = self._buf
        read = self._read
        for i in range(len(buf)):
            buf[i] = read()
        buf.sort()
        n = self._top
        lo = hi = 0
        last = len(buf) - 1
        for i in range(n):
            lo += buf[i]
            hi += buf[last - i]
        self.high_mv = cp_mv_from_uv(hi // n, self._divider)
        self.low_mv = cp_mv_from_uv(lo // n, self._divider)

    def poll(self, now):
        """None, or (PILOT, (state, diode_ok)) when either changed; nothing at DUTY_F."""
        if self.duty == DUTY_F:
            return None  # our own -12 V: nothing to learn about the EV (module docstring)
        if self._last is not None and ticks_diff(now, self._last) < self._wait:
            return None
        self._last = now
        self.measure()
        high = self.high_mv
        low = self.low_mv
        state = classify(high, self._cand, self._hyst)
        was_pending = self._cand != self._state
        if state == self._cand:
            self._count += 1
        else:
            self._cand = state
            self._count = 1
        # The diode is debounced on its own, so a flickering diode reading (a burst that caught
        # too little of a 4 % low phase) can never hold back a state change such as C -> B.
        # Diode check: the low plateau near -12 V, only checkable with PWM on and an EV present
        # (B/C/D); None otherwise. Hysteresis around DIODE_MAX_MV follows the candidate.
        if DUTY_F < self.duty < DUTY_OFF and state in "BCD":
            limit = DIODE_MAX_MV
            if self._cand_diode is True:
                limit += self._hyst
            elif self._cand_diode is False:
                limit -= self._hyst
            diode = low <= limit
        else:
            diode = None
        if diode == self._cand_diode:
            self._dcount += 1
        else:
            self._cand_diode = diode
            self._dcount = 1
        new_state = state if self._count >= self._debounce else self._state
        new_diode = diode if self._dcount >= self._debounce else self._diode
        # confirm a new level quickly while the bursts agree: first sighting or an agreeing
        # run; a burst that disagrees mid-confirmation waits the normal interval
        confirming = state != new_state and (self._count > 1 or not was_pending)
        self._wait = self._confirm if confirming else self._interval
        if new_state is None or new_state not in "BCD":
            new_diode = None
        if new_state == self._state and new_diode == self._diode:
            return None
        self._state = new_state
        self._diode = new_diode
        self.state = (new_state, new_diode)
        return (PILOT, self.state)


class Proximity:
    """PP driver: the cable's coding resistor -> its current rating (hardware.md §4.3)."""

    def __init__(self, adc, divider=PP_DIVIDER, samples=5):
        if samples < 1:
            raise ValueError("samples < 1")
        self._adc = adc
        self._divider = divider
        self._buf = [0] * samples

    def cable_amps(self):
        """13/20/32/63 A, 0 = no cable, PP_ERROR (-1) = short; from the median of a few reads,
        so one spike cannot change the cable rating."""
        buf = self._buf
        for i in range(len(buf)):
            buf[i] = self._adc.read_uv()
        buf.sort()
        return pp_cable_amps(pp_ohms_from_uv(buf[len(buf) // 2], self._divider))
