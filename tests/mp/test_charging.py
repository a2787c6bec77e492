"""One EVSE's power state machine, one line per transition (runs on both interpreters)."""

from firmware.charging import (
    H_CLOSED,
    H_FAULT,
    H_OPENED,
    H_PLUGGED,
    H_STOPPED,
    H_UNPLUGGED,
    P_AUTHORIZED,
    P_IDLE,
    P_STOPPING,
    Evse,
)
from hal.compat import MICROPYTHON
from hal.iec61851 import DUTY_F, DUTY_OFF, duty_permille

D16 = duty_permille(16)


class Drive:
    """Feeds an Evse; confirms contactor commands like the driver unless auto=False."""

    def __init__(self, socket=False, start=1000, auto=True, ventilated=False):
        self.ev = Evse(1, 16, socket, 6000, 60000, ventilated)
        self.now = start
        self.auto = auto
        self.h = 0
        out = []
        self.ev.boot(self.now, out)
        self.ev.on_contactor("open", self.now, out)

    def do(self, op, *args, dt=100):
        self.now = (self.now + dt) & ((1 << 30) - 1)
        ev, now, out = self.ev, self.now, []
        if op == "pilot":
            h = ev.on_pilot(args[0], args[1], now, out)
        elif op == "auth":
            h = ev.authorize(now, out)
        elif op == "stop":
            h = ev.stop(args[0] if args else "Local", now, out)
        elif op == "mirror":
            h = ev.on_contactor(args[0], now, out)
        elif op == "pp":
            h = ev.on_pp(args[0], now, out)
        elif op == "clear":
            h = ev.clear(now, out)
        elif op == "wait":
            self.now = (self.now + args[0]) & ((1 << 30) - 1)
            h = ev.expire(self.now, out)
        else:
            raise ValueError(op)
        if self.auto:
            for a in out:
                if a[0] == "contactor":
                    more = []
                    h |= ev.on_contactor("closed" if a[2] else "open", now, more)
                    out = out + more
        self.h = h
        return out

    def seq(self, steps):
        out = []
        for s in steps:
            out = self.do(*s)
        return out


READY = (("pilot", "B", False), ("auth",), ("pilot", "B", True))
CHARGING = READY + (("pilot", "C", True),)

# (name, setup steps, last step, expected actions (subset, in order), state, phase, happenings)
TABLE = (
    ("boot is idle", (), ("pilot", "A", False), [], "idle", P_IDLE, 0),
    ("plug", (), ("pilot", "B", False), [("state", 1, "plugged")], "plugged", P_IDLE, H_PLUGGED),
    ("unauthorized C never closes", (("pilot", "B", False),), ("pilot", "C", True), [],
     "plugged", P_IDLE, 0),
    ("authorize with EV: PWM on", (("pilot", "B", False),), ("auth",),
     [("pwm", 1, D16), ("state", 1, "ready")], "ready", P_AUTHORIZED, 0),
    ("authorize without EV", (), ("auth",), [("state", 1, "authorized")], "authorized",
     P_AUTHORIZED, 0),
    ("plug after authorize: PWM on", (("auth",),), ("pilot", "B", False),
     [("pwm", 1, D16), ("state", 1, "ready")], "ready", P_AUTHORIZED, H_PLUGGED),
    ("C, diode not yet seen: no close", (("pilot", "B", False), ("auth",)),
     ("pilot", "C", False), [], "ready", P_AUTHORIZED, 0),
    ("diode missing after settle: fault", (("pilot", "B", False), ("auth",), ("wait", 300)),
     ("pilot", "C", False), [("error", 1, ("pilot", "diode check failed"))], "fault", P_IDLE,
     H_STOPPED | H_FAULT),
    ("no diode by the deadline, no pilot change: fault", (("pilot", "B", False), ("auth",)),
     ("wait", 500), [("error", 1, ("pilot", "diode check failed")), ("pwm", 1, DUTY_OFF)],
     "fault", P_IDLE, H_STOPPED | H_FAULT),
    ("diode seen in time: no fault at the deadline", READY, ("wait", 600), [], "ready",
     P_AUTHORIZED, 0),
    ("C after diode seen: close", READY, ("pilot", "C", True),
     [("contactor", 1, True), ("state", 1, "charging")], "charging", P_AUTHORIZED, H_CLOSED),
    ("D, site not ventilated: PWM off, open, said why", READY, ("pilot", "D", True),
     [("display", 1, "ventilation_required"), ("pwm", 1, DUTY_OFF)], "ready", P_AUTHORIZED, 0),
    ("C->D, site not ventilated: opens at once", CHARGING, ("pilot", "D", True),
     [("display", 1, "ventilation_required"), ("contactor", 1, False), ("pwm", 1, DUTY_OFF)],
     "ready", P_AUTHORIZED, H_OPENED),
    ("C->B opens at once", CHARGING, ("pilot", "B", True), [("contactor", 1, False)], "ready",
     P_AUTHORIZED, H_OPENED),
    ("B->C again closes", CHARGING + (("pilot", "B", True),), ("pilot", "C", True),
     [("contactor", 1, True)], "charging", P_AUTHORIZED, H_CLOSED),
    ("C->A opens, ends", CHARGING, ("pilot", "A", False),
     [("contactor", 1, False), ("pwm", 1, DUTY_OFF), ("state", 1, "idle")], "idle", P_IDLE,
     H_OPENED | H_UNPLUGGED | H_STOPPED),
    ("E opens at once", CHARGING, ("pilot", "E", False),
     [("error", 1, ("pilot", "pilot state E")), ("contactor", 1, False), ("pwm", 1, DUTY_OFF)],
     "fault", P_IDLE, H_OPENED | H_STOPPED | H_FAULT),
    ("F opens at once", CHARGING, ("pilot", "F", False), [("contactor", 1, False)], "fault",
     P_IDLE, H_OPENED | H_STOPPED | H_FAULT),
    ("fault clears on unplug", CHARGING + (("pilot", "E", False),), ("pilot", "A", False),
     [("state", 1, "idle")], "idle", P_IDLE, 0),
    ("diode lost while charging", CHARGING, ("pilot", "C", False),
     [("error", 1, ("pilot", "diode check failed")), ("contactor", 1, False)], "fault", P_IDLE,
     H_OPENED | H_STOPPED | H_FAULT),
    ("stop while charging: PWM off first", CHARGING, ("stop",), [("pwm", 1, DUTY_OFF),
                                                                ("state", 1, "stopping")],
     "stopping", P_STOPPING, 0),
    ("stopping: EV leaves C", CHARGING + (("stop",),), ("pilot", "B", True),
     [("contactor", 1, False)], "plugged", P_IDLE, H_OPENED | H_STOPPED),
    ("stopping: grace expires, forced open", CHARGING + (("stop",),), ("wait", 6000),
     [("contactor", 1, False)], "plugged", P_IDLE, H_OPENED | H_STOPPED),
    ("stopping: before grace nothing", CHARGING + (("stop",),), ("wait", 5000), [], "stopping",
     P_STOPPING, 0),
    ("stop while not charging ends at once", READY, ("stop",), [("pwm", 1, DUTY_OFF)],
     "plugged", P_IDLE, H_STOPPED),
    ("connection timeout", (("auth",),), ("wait", 60000), [("state", 1, "idle")], "idle", P_IDLE,
     H_STOPPED),
    ("plugged: no connection timeout", (("auth",), ("pilot", "B", False), ("pilot", "B", True)),
     ("wait", 60000),
     [], "ready", P_AUTHORIZED, 0),
    ("welded report: out of service", CHARGING, ("mirror", "welded"),
     [("error", 1, ("welded", "contactor welded")), ("contactor", 1, False), ("pwm", 1, DUTY_F)],
     "out_of_service", P_IDLE, H_OPENED | H_STOPPED | H_FAULT),
    ("mirror closed while open: welded", (), ("mirror", "closed"),
     [("error", 1, ("welded", "contactor welded")), ("pwm", 1, DUTY_F)], "out_of_service",
     P_IDLE, H_FAULT),
    ("out of service stays on unplug", (("mirror", "welded"),), ("pilot", "A", False), [],
     "out_of_service", P_IDLE, 0),
    ("clear: re-command open", (("mirror", "welded"),), ("clear",),
     [("contactor", 1, False), ("pwm", 1, DUTY_OFF), ("state", 1, "idle")], "idle", P_IDLE, 0),
    ("stuck open report", CHARGING, ("mirror", "stuck_open"),
     [("error", 1, ("stuck_open", "contactor stuck open")), ("contactor", 1, False)], "fault",
     P_IDLE, H_OPENED | H_STOPPED | H_FAULT),
    ("mirror open while closed: stuck", CHARGING, ("mirror", "open"),
     [("contactor", 1, False)], "fault", P_IDLE, H_OPENED | H_STOPPED | H_FAULT),
    ("authorize refused when faulted", (("pilot", "E", False),), ("auth",), [], "fault", P_IDLE,
     0),
)


def test_transition_table():
    for name, setup, last, expect, state, phase, h in TABLE:
        d = Drive()
        d.seq(setup)
        out = d.do(*last)
        pos = 0
        for e in expect:
            assert e in out[pos:], (name, e, out)
            pos = out.index(e, pos) + 1
        assert d.ev.state == state, (name, d.ev.state)
        assert d.ev.phase == phase, (name, d.ev.phase)
        assert d.h == h, (name, d.h, h)


def test_no_close_without_confirmed_open_mirror():
    d = Drive(auto=False)  # boot confirmed open once, then nothing is confirmed
    d.seq(READY)
    out = d.do("pilot", "C", True)
    assert ("contactor", 1, True) in out
    d.do("mirror", "closed")
    out = d.do("pilot", "B", True)
    assert ("contactor", 1, False) in out
    out = d.do("pilot", "C", True)  # the open was never confirmed: must not close again
    assert ("contactor", 1, True) not in out
    d.do("mirror", "open")
    out = d.do("pilot", "C", True)
    assert d.ev.closed


def test_socket_limits_current_to_cable_and_errors_on_pp():
    d = Drive(socket=True)
    d.do("pp", 13)
    out = d.seq(READY)
    assert d.ev.duty == duty_permille(13)
    d = Drive(socket=True)
    d.seq(CHARGING)  # no cable rating known: nothing advertised, never closes
    assert d.ev.duty == DUTY_OFF and not d.ev.closed
    d = Drive(socket=True)
    d.do("pp", 32)
    d.seq(CHARGING)
    assert d.ev.closed and d.ev.duty == D16  # EVSE limit 16 A < cable 32 A
    out = d.do("pp", -1)
    assert ("contactor", 1, False) in out and d.ev.state == "fault"
    d.do("pp", 32)
    assert d.ev.state == "plugged"
    assert out  # keeps ruff quiet about the unused value in the first block


def test_pwm_changes_at_most_every_5_s():
    d = Drive(socket=True)
    d.do("pp", 32)
    d.seq(CHARGING)
    out = d.do("pp", 13)  # a change 0.x s after PWM went on: deferred
    assert not [a for a in out if a[0] == "pwm"]
    due = d.ev.next_deadline()
    assert due is not None
    out = d.do("wait", 5000)
    assert ("pwm", 1, duty_permille(13)) in out
    out = d.do("stop")  # switching off is immediate
    assert ("pwm", 1, DUTY_OFF) in out


def test_tethered_ignores_pp_error():
    d = Drive()
    d.seq(CHARGING)
    d.do("pp", -1)
    assert d.ev.closed


def test_session_across_tick_wrap():
    if MICROPYTHON:
        return  # the unix port's tick period is 2**62; the wrap is emulated on CPython only
    d = Drive(start=(1 << 30) - 3000)
    d.seq(CHARGING)
    d.do("stop")
    assert d.ev.state == "stopping"
    out = d.do("wait", 5000)  # crosses 2**30: grace (6 s) not over yet
    assert not out
    out = d.do("wait", 1000)
    assert ("contactor", 1, False) in out
    d = Drive(start=(1 << 30) - 100)
    d.do("auth")
    d.do("wait", 59000)
    assert d.ev.state == "authorized"
    d.do("wait", 1000)
    assert d.ev.state == "idle"


def test_d_closes_only_where_the_site_is_ventilated():
    d = Drive(ventilated=True)
    d.seq(READY)
    out = d.do("pilot", "D", True)
    assert ("contactor", 1, True) in out and not [a for a in out if a[0] == "error"]
    d = Drive()
    d.seq(READY)
    out = d.do("pilot", "D", True)
    assert out[0] == ("error", 1, ("ventilation", out[0][2][1])) and not d.ev.closed
    assert d.do("pilot", "D", True) == []  # still D: said once
    out = d.do("pilot", "C", True, dt=5000)  # the EV asks without ventilation: PWM, close
    assert ("pwm", 1, D16) in out
    d.do("pilot", "C", True)
    assert d.ev.closed and d.ev.state == "charging"


def test_socket_cable_without_pp_resistor_is_a_reported_fault():
    d = Drive(socket=True)
    d.seq(READY)  # PP never showed a cable: no current offered
    assert d.ev.duty == DUTY_OFF and d.ev.state == "ready"
    out = d.do("wait", 1200)  # PP settled at "no cable" with an EV on the pilot
    assert ("error", 1, ("cable", "cable without PP resistor: no current offered")) in out
    assert ("display", 1, "cable_fault") in out
    assert d.ev.state == "fault" and d.ev.phase == P_IDLE and d.h & H_STOPPED
    d.do("pilot", "A", None)  # unplugged: the fault goes with the cable
    assert d.ev.state == "idle" and d.ev.available()
    d.do("pp", 32)
    d.seq(READY)
    d.do("wait", 1200)
    assert d.ev.state == "ready" and d.ev.duty == D16  # a valid cable charges


def test_pp_reading_no_cable_after_settling_faults_at_once_and_a_valid_one_clears():
    d = Drive(socket=True)
    d.do("pp", 20)
    d.seq(READY)
    d.do("wait", 1200)
    out = d.do("pp", 0)  # the PP resistor lost while plugged
    assert ("display", 1, "cable_fault") in out and d.ev.state == "fault"
    d.do("pp", 20)
    assert d.ev.state == "plugged" and d.ev.available()


def test_tethered_cable_has_no_pp_to_judge():
    d = Drive()
    d.seq(READY)
    assert d.do("wait", 1200) == [] or d.ev.state == "ready"
    assert d.ev.state == "ready"
