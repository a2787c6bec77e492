"""The simulator I/O channel, server side: the pilot, PP and contactor lines of every EVSE.

One pty per charge point carries ASCII lines ending in `\\n`, fields separated by one space,
EVSE numbers 1-based:

    firmware -> sim   hello | pwm <evse> <permille 0..1000> | coil <evse> <0|1>
    sim -> firmware   cp <evse> <high_mv> <low_mv> | pp <evse> <ohms> | mirror <evse> <0|1>

The sim sends a line whenever a value changes and the full state of every EVSE after `hello`.
Nothing is sent before the first `hello`, so a late-starting firmware does not find stale lines
queued in its pty. Malformed lines are counted (the last few are kept with the reason) and
change nothing.

Power (`SimIo.power_off`): the controller that drives these lines loses its supply. Every coil
drops at that instant (the main contacts open after the contactor's release time, the mirror
follows them); the CP generator is unpowered, so the EV sees 0 V on CP (state E, "EVSE no
power", hardware.md §4.1) and draws no current; nothing is sent until the restarted firmware
says `hello` again. That `hello` is when the controller drives the lines once more (CP back at
+12 V DC until it sets a PWM duty).
"""

from hal.iec61851 import DUTY_OFF
from host_sim.devices.contactor import Contactor
from host_sim.devices.ev import Ev

MAX_LINE = 64
KEEP_ERRORS = 8


class SimEvse:
    """One charging outlet: the EV on its cable, its contactor, and the PWM the firmware set."""

    def __init__(self, ev=None, contactor=None):
        self.ev = ev if ev is not None else Ev()
        self.contactor = contactor if contactor is not None else Contactor()
        self.duty = DUTY_OFF
        self.powered = True  # False from a power cut until the firmware's next `hello`

    def power_off(self, now):
        """The controller loses power at `now`: the coil drops, the CP generator stops."""
        self.powered = False
        self.contactor.set_coil(False, now)
        self.duty = DUTY_OFF
        self.ev.pilot_lost()

    def power_on(self):
        """The controller drives the lines again: +12 V DC until it sets a PWM duty."""
        self.powered = True

    def set_pwm(self, permille):
        self.duty = permille
        self.ev.observe_duty(permille)

    def currents(self, now):
        """(L1, L2, L3) amps the EV draws through this EVSE's contactor at `now`; none
        while the controller is unpowered (the EV sees no pilot)."""
        main = self.contactor.main_closed(now)
        if not self.powered:
            return (0.0, 0.0, 0.0)
        return self.ev.amps(self.duty, main)

    def lines(self, now):
        """The values the firmware sees: {'cp': (high, low), 'pp': ohms, 'mirror': 0/1}."""
        cp = self.ev.cp_mv(self.duty) if self.powered else (0, 0)
        return {"cp": cp, "pp": self.ev.pp_ohms(),
                "mirror": int(self.contactor.mirror_closed(now))}

    def status(self, now):
        return {"powered": self.powered, "pwm": self.duty, "ev": self.ev.status(self.duty),
                "contactor": self.contactor.status(now), "lines": self.lines(now)}


class SimIo:
    """The device end of the I/O channel pty for one charge point with several EVSEs."""

    def __init__(self, evses):
        if not evses:
            raise ValueError("a charge point has at least one EVSE")
        self.evses = list(evses)
        self._rx = bytearray()
        self._discarding = False
        self._sent = [dict() for _ in self.evses]
        self.said_hello = False
        self.lines_in = 0
        self.malformed = 0
        self.errors = []  # last KEEP_ERRORS (reason, line)

    # ---- byte interface --------------------------------------------------------------------
    def feed(self, data, now):
        rx = self._rx
        rx += data
        while True:
            i = rx.find(b"\n")
            if i < 0:
                if len(rx) > MAX_LINE:
                    self._reject("line too long", bytes(rx[:MAX_LINE]))
                    self._discarding = True
                    del rx[:]
                return
            raw = bytes(rx[:i])
            del rx[: i + 1]
            if self._discarding:  # tail of an overlong line
                self._discarding = False
                continue
            self._line(raw, now)

    def pending(self, now):
        if not self.said_hello:
            return b""
        out = []
        for n, evse in enumerate(self.evses, 1):
            sent = self._sent[n - 1]
            for key, value in evse.lines(now).items():
                if sent.get(key) != value:
                    sent[key] = value
                    if key == "cp":
                        out.append("cp %d %d %d\n" % (n, value[0], value[1]))
                    else:
                        out.append("%s %d %d\n" % (key, n, value))
        return "".join(out).encode()

    def power_off(self, now):
        """The controller loses power (see the module doc); returns the EVSE numbers whose
        coil was energised and dropped."""
        dropped = [n for n, e in enumerate(self.evses, 1) if e.contactor.coil]
        for e in self.evses:
            e.power_off(now)
        self.said_hello = False
        return dropped

    def next_event(self, now):
        times = [t for t in (e.contactor.next_event(now) for e in self.evses) if t is not None]
        return min(times) if times else None

    def status(self, now):
        """`now` is required: the contactor's state depends on its travel time."""
        return {"hello": self.said_hello, "lines_in": self.lines_in, "malformed": self.malformed,
                "errors": list(self.errors),
                "evses": [e.status(now) for e in self.evses]}

    # ---- parsing ---------------------------------------------------------------------------
    def _reject(self, reason, raw):
        self.malformed += 1
        self.errors.append((reason, raw.decode("ascii", "replace")))
        del self.errors[:-KEEP_ERRORS]

    def _line(self, raw, now):
        self.lines_in += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            self._reject("not ASCII", raw)
            return
        fields = line.split(" ")
        if "" in fields:
            self._reject("empty field or extra space", raw)
            return
        verb = fields[0]
        if verb == "hello":
            if len(fields) != 1:
                self._reject("hello takes no arguments", raw)
                return
            self.said_hello = True
            self._sent = [dict() for _ in self.evses]  # forget: send everything again
            for e in self.evses:
                e.power_on()
            return
        if verb not in ("pwm", "coil"):
            self._reject("unknown command", raw)
            return
        if len(fields) != 3:
            self._reject("%s takes 2 arguments" % verb, raw)
            return
        evse = _uint(fields[1])
        if evse is None or not 1 <= evse <= len(self.evses):
            self._reject("bad evse number", raw)
            return
        value = _uint(fields[2])
        target = self.evses[evse - 1]
        if verb == "pwm":
            if value is None or value > DUTY_OFF:
                self._reject("permille must be 0..1000", raw)
                return
            target.set_pwm(value)
        else:
            if value not in (0, 1):
                self._reject("coil must be 0 or 1", raw)
                return
            target.contactor.set_coil(value, now)


def _uint(text):
    """Plain decimal digits only (no sign, no spaces, no underscores), at most 6 of them."""
    if not text or len(text) > 6 or not text.isdigit() or not text.isascii():
        return None
    return int(text)
