"""Pilot and proximity drivers against synthesised ADC bursts (levels: hardware.md §4.1, §4.3)."""

from hal.iec61851 import DUTY_F, DUTY_OFF, PP_ERROR, duty_permille
from hal.pilot import (
    CONFIRM_MS,
    CP_DIVIDER,
    PP_OPEN_OHMS,
    Pilot,
    Proximity,
    classify,
    cp_mv_from_uv,
    pp_ohms_from_uv,
    uv_from_cp_mv,
    uv_from_pp_ohms,
)


class WaveADC:
    """A CP line seen through the divider: 1 kHz square wave sampled every `dt_us`.

    `high_mv`/`low_mv` are the plateaus, `duty` (per mille) the share of the period at the high
    plateau (read from the PWM fake if given), samples within `edge_us` of an edge land half-way
    (finite slew), and `noise_mv` (at the CP line) comes from a small LCG seeded by `seed`.
    """

    def __init__(self, high_mv, low_mv, pwm=None, duty=1000, dt_us=15, phase_us=0, noise_mv=0,
                 edge_us=0, seed=1, divider=CP_DIVIDER):
        self.high_mv = high_mv
        self.low_mv = low_mv
        self.pwm = pwm
        self.duty = duty
        self.dt_us = dt_us
        self.t_us = phase_us
        self.noise_mv = noise_mv
        self.edge_us = edge_us
        self.seed = seed
        self.divider = divider
        self.reads = 0

    def _noise(self):
        self.seed = (self.seed * 1103515245 + 12345) & 0x7FFFFFFF
        if not self.noise_mv:
            return 0
        return self.seed % (2 * self.noise_mv + 1) - self.noise_mv

    def read_uv(self):
        duty = self.pwm.permille if self.pwm is not None else self.duty
        pos = self.t_us % 1000
        self.t_us += self.dt_us
        self.reads += 1
        edge = duty * 1000 // 1000  # high from 0 to `edge` us
        if 0 < duty < 1000 and (min(pos, 1000 - pos) < self.edge_us
                                or abs(pos - edge) < self.edge_us):
            mv = (self.high_mv + self.low_mv) // 2
        elif pos < edge:
            mv = self.high_mv
        else:
            mv = self.low_mv
        return uv_from_cp_mv(mv + self._noise(), self.divider)


class FakePWM:
    def __init__(self):
        self.u16 = None
        self.hz = None

    @property
    def permille(self):
        return (self.u16 * 1000 + 32767) // 65535

    def duty_u16(self, v):
        self.u16 = v

    def freq(self, hz):
        self.hz = hz


def settle(pilot, polls=10, t0=0, step=10):
    """Poll `polls` times `step` ms apart; return the list of events."""
    out = []
    for k in range(polls):
        ev = pilot.poll(t0 + k * step)
        if ev is not None:
            out.append(ev)
    return out


C16 = duty_permille(16)
CASES = (  # (high, low, duty, expected (state, diode_ok))
    (12000, 12000, 1000, ("A", None)),
    (12000, -12000, C16, ("A", None)),
    (9000, 9000, 1000, ("B", None)),
    (9000, -12000, C16, ("B", True)),
    (9000, -9000, C16, ("B", False)),  # diode short: the EV loads the negative half too
    (6000, 6000, 1000, ("C", None)),
    (6000, -12000, C16, ("C", True)),
    (6000, -12000, duty_permille(6), ("C", True)),
    (6000, -12000, duty_permille(80), ("C", True)),
    (6000, -6000, C16, ("C", False)),
    (3000, -12000, C16, ("D", True)),
    (3000, -3000, C16, ("D", False)),
    (0, 0, 1000, ("E", None)),
    (0, 0, C16, ("E", None)),
    (-12000, -12000, 1000, ("F", None)),  # generator stuck at -12 V while we drive +12 V
    # driving F (steady -12 V) ourselves: no burst, no report, whatever the line shows
    (-12000, -12000, DUTY_F, None),
    (12000, 12000, DUTY_F, None),  # a positive plateau: a stuck generator, not the EV's state
    (9000, -12000, DUTY_F, None),
    (0, 0, DUTY_F, None),
)


def test_every_state_with_and_without_pwm_and_noise():
    for noise in (0, 150, 400):
        for dt in (11, 15, 23):
            for high, low, duty, want in CASES:
                pwm = FakePWM()
                adc = WaveADC(high, low, pwm=pwm, dt_us=dt, phase_us=dt * 7, noise_mv=noise,
                              edge_us=3)
                p = Pilot(pwm, adc, duty=duty)
                events = settle(p)
                assert events == ([] if want is None else [("pilot", want)]), (
                    noise, dt, high, low, duty, events)
                assert adc.reads == (0 if duty == DUTY_F else 100 * 10)


def test_duty_is_written_as_u16_and_validated():
    pwm = FakePWM()
    p = Pilot(pwm, WaveADC(12000, 12000))
    assert pwm.hz == 1000 and pwm.u16 == 65535 and p.duty == 1000
    for permille, u16 in ((0, 0), (1000, 65535), (100, 6554), (533, 34930), (960, 62914)):
        p.set_duty(permille)
        assert pwm.u16 == u16 == round(permille / 1000 * 65535), (permille, pwm.u16)
    for bad in (-1, 1001, 50.0, "100", None, True):
        try:
            p.set_duty(bad)
        except ValueError:
            assert p.duty == 960 and pwm.u16 == 62914
            continue
        raise AssertionError(bad)


def test_classify_hysteresis_at_every_edge():
    # (level, previous, expected)
    table = (
        (7600, None, "B"), (7400, None, "C"),
        (7400, "B", "B"), (7201, "B", "B"), (7199, "B", "C"),
        (7600, "C", "C"), (7799, "C", "C"), (7800, "B", "B"), (7801, "C", "B"),
        (10400, "A", "A"), (10199, "A", "B"), (10700, "B", "B"), (10801, "B", "A"),
        (4400, "C", "C"), (4100, "C", "D"), (4700, "D", "D"), (4900, "D", "C"),
        (1300, "D", "D"), (1100, "D", "E"), (1700, "E", "E"), (1900, "E", "D"),
        (-5800, "E", "E"), (-6400, "E", "F"), (-5800, "F", "F"), (-5600, "F", "E"),
        (20000, "F", "A"), (-20000, "A", "F"),
    )
    for level, prev, want in table:
        assert classify(level, prev) == want, (level, prev, classify(level, prev))


def test_pilot_holds_state_inside_hysteresis_band():
    pwm = FakePWM()
    adc = WaveADC(9000, -12000, pwm=pwm)
    p = Pilot(pwm, adc, duty=C16)
    assert settle(p) == [("pilot", ("B", True))]
    adc.high_mv = 7350  # below the 7.5 V edge, inside the 300 mV band
    assert settle(p, t0=200) == []
    adc.high_mv = 7000
    assert settle(p, t0=400) == [("pilot", ("C", True))]
    adc.high_mv = 7700  # back above the edge, still inside the band
    assert settle(p, t0=600) == []


def test_debounce_latency_bound_and_glitch_rejection():
    for debounce, interval in ((1, 0), (2, 5), (3, 10), (4, 10)):
        pwm = FakePWM()
        adc = WaveADC(6000, -12000, pwm=pwm)
        p = Pilot(pwm, adc, duty=C16, debounce=debounce, interval_ms=interval)
        assert settle(p, polls=60, step=1)[-1] == ("pilot", ("C", True))
        # one burst of B between two C bursts is not an event
        if debounce > 1:
            t = 100
            adc.high_mv = 9000
            assert p.poll(t) is None
            adc.high_mv = 6000
            assert settle(p, polls=50, t0=t + 1, step=1) == []
        # C -> B: the EV opens S2 at t_change, the control loop polls every 1 ms
        t_change = 300
        adc.high_mv = 9000
        seen = None
        for t in range(t_change, t_change + 100):
            ev = p.poll(t)
            if ev is not None:
                seen = (t, ev)
                break
        assert seen is not None and seen[1] == ("pilot", ("B", True))
        latency = seen[0] - t_change
        # the first burst within an interval, then the confirming ones CONFIRM_MS apart
        bound = interval + (debounce - 1) * max(min(CONFIRM_MS, interval), 1)
        assert latency <= bound, (debounce, interval, latency)
        assert latency < 100


def test_a_noisy_line_costs_at_most_two_bursts_per_interval():
    """Fast confirmation only runs while the bursts agree: a line that flips between levels at
    every burst is measured at most twice per interval, and never reported."""
    pwm = FakePWM()
    adc = WaveADC(6000, -12000, pwm=pwm)
    p = Pilot(pwm, adc, duty=C16, debounce=3, interval_ms=10)
    assert settle(p, polls=60, step=1)[-1] == ("pilot", ("C", True))
    bursts = 0
    levels = (9000, 3000)  # B, D: neither the reported C nor each other
    for t in range(100, 200):
        last = p._last
        adc.high_mv = levels[bursts % 2]
        assert p.poll(t) is None
        if p._last != last:
            bursts += 1
    assert 10 <= bursts <= 20, bursts


def test_a_new_level_is_confirmed_by_bursts_confirm_ms_apart():
    pwm = FakePWM()
    adc = WaveADC(6000, -12000, pwm=pwm)
    p = Pilot(pwm, adc, duty=C16, debounce=3, interval_ms=10)
    assert settle(p, polls=60, step=1)[-1] == ("pilot", ("C", True))
    polled = []
    adc.high_mv = 9000
    for t in range(200, 240):
        last = p._last
        ev = p.poll(t)
        if p._last != last:
            polled.append(t)
        if ev is not None:
            break
    assert ev == ("pilot", ("B", True))
    assert polled[1] - polled[0] == CONFIRM_MS and polled[2] - polled[1] == CONFIRM_MS, polled


def test_changing_duty_restarts_debounce():
    pwm = FakePWM()
    adc = WaveADC(9000, -12000, pwm=pwm)
    p = Pilot(pwm, adc, duty=1000, debounce=3, interval_ms=0)
    assert settle(p, polls=5, step=1) == [("pilot", ("B", None))]
    p.set_duty(C16)
    assert p.poll(10) is None and p.poll(11) is None
    assert p.poll(12) == ("pilot", ("B", True))


def test_our_own_f_is_never_reported_and_leaving_it_measures_afresh():
    # issue 9: out of service, the core drives F; the driver must not report that F back as the
    # EV's state (the core would take it for a pilot fault)
    pwm = FakePWM()
    adc = WaveADC(9000, -12000, pwm=pwm)
    p = Pilot(pwm, adc, duty=C16, debounce=3, interval_ms=0)
    assert settle(p, polls=5, step=1) == [("pilot", ("B", True))]
    p.set_duty(DUTY_F)
    reads = adc.reads
    for high in (-12000, 12000, 6000, 0):  # what the line may show while we drive -12 V
        adc.high_mv = high
        assert settle(p, polls=20, t0=100, step=1) == []
    assert adc.reads == reads and p.state == ("B", True)
    # back to steady +12 V with the EV still in B: three fresh bursts, then B1 (no diode)
    adc.high_mv = 9000
    p.set_duty(DUTY_OFF)
    assert p.poll(200) is None and p.poll(201) is None
    assert p.poll(202) == ("pilot", ("B", None))
    # F again, the EV leaves meanwhile; leaving F shows A after the debounce
    p.set_duty(DUTY_F)
    adc.high_mv = adc.low_mv = 12000
    assert settle(p, polls=10, t0=300, step=1) == []
    p.set_duty(DUTY_OFF)
    assert settle(p, polls=3, t0=400, step=1) == [("pilot", ("A", None))]


def test_leaving_f_to_the_level_last_reported_reports_nothing():
    pwm = FakePWM()
    adc = WaveADC(9000, 9000, pwm=pwm)
    p = Pilot(pwm, adc, duty=DUTY_OFF, debounce=3, interval_ms=0)
    assert settle(p, polls=5, step=1) == [("pilot", ("B", None))]
    p.set_duty(DUTY_F)
    assert settle(p, polls=5, t0=100, step=1) == []
    p.set_duty(DUTY_OFF)
    assert settle(p, polls=10, t0=200, step=1) == []  # the core already knows B1
    assert adc.reads == 100 * (5 + 10)


def test_steady_plus_12_v_reports_every_level_including_f():
    # DUTY_OFF drives +12 V: A1/B1/C1/D1 are the EV's resistor, E a short, F a line at -12 V
    # that we do not drive (a real fault): all reported, diode None
    for high, want in ((12000, "A"), (9000, "B"), (6000, "C"), (3000, "D"), (0, "E"),
                       (-12000, "F")):
        pwm = FakePWM()
        p = Pilot(pwm, WaveADC(high, high, pwm=pwm), duty=DUTY_OFF, interval_ms=0)
        assert settle(p, polls=5, step=1) == [("pilot", (want, None))], (high, want)


def test_measure_reports_plateaus():
    pwm = FakePWM()
    p = Pilot(pwm, WaveADC(6000, -12000, pwm=pwm), duty=500)
    p.measure()
    high, low = p.high_mv, p.low_mv
    assert abs(high - 6000) <= 20 and abs(low + 12000) <= 20, (high, low)


def test_divider_round_trip():
    for mv in (-12000, -9000, 0, 3000, 6000, 9000, 12000):
        assert abs(cp_mv_from_uv(uv_from_cp_mv(mv)) - mv) <= 12, mv


def test_bad_construction_rejected():
    for kw in ({"samples": 4, "top": 3}, {"top": 0}, {"debounce": 0}):
        try:
            Pilot(FakePWM(), WaveADC(0, 0), **kw)
        except ValueError:
            continue
        raise AssertionError(kw)


class ConstADC:
    def __init__(self, uv, spikes=()):
        self.uv = uv
        self.spikes = list(spikes)

    def read_uv(self):
        return self.spikes.pop() if self.spikes else self.uv


def test_proximity_table():
    table = (  # ohms at the PP resistor -> cable amps (hardware.md §4.3)
        (100, 63), (220, 32), (680, 20), (1500, 13), (None, 0), (20, PP_ERROR),
        (149, 63), (151, 32), (329, 32), (331, 20), (999, 20), (1001, 13), (2500, 0),
    )
    for ohms, amps in table:
        pp = Proximity(ConstADC(uv_from_pp_ohms(ohms)))
        assert pp.cable_amps() == amps, (ohms, amps)
    assert pp_ohms_from_uv(uv_from_pp_ohms(None)) == PP_OPEN_OHMS
    # one spike (first of five reads) cannot change the rating: median
    pp = Proximity(ConstADC(uv_from_pp_ohms(220), spikes=[3300000]))
    assert pp.cable_amps() == 32
    assert pp_ohms_from_uv(0) == 0


def test_proximity_round_trip():
    for ohms in (75, 100, 220, 680, 1000, 1500, 2200):
        back = pp_ohms_from_uv(uv_from_pp_ohms(ohms))
        assert abs(back - ohms) <= 1 + ohms // 200, (ohms, back)
