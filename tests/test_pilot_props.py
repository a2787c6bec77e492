"""Property tests for the pilot driver: noisy, unsynchronised bursts of every waveform.

Safety property: a waveform of state A, B, E or F (any duty, noise, sampling rate, phase,
slew) never produces a "C/D with diode OK" report -- that report is what lets the contactor
close. Liveness: a clean C/D waveform with PWM and a diode is reported as such.
"""

import os
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from hal.pilot import Pilot

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "mp"))
from test_pilot import FakePWM, WaveADC  # noqa: E402

# Plateau (high, low) per state as the EV/line would show it (hardware.md §4.1); for B the
# low plateau is -12 V with a diode, or mirrors the high one when the diode is shorted.
NOT_CHARGING = {
    "A": lambda diode: (12000, -12000),
    "B": lambda diode: (9000, -12000 if diode else -9000),
    "E": lambda diode: (0, 0),
    "F": lambda diode: (-12000, -12000),
}

duties = st.one_of(st.just(0), st.just(1000), st.integers(80, 970))
noise = st.integers(0, 800)  # mV on the CP line: ~65 mV at the ADC, worse than an ESP32's
dt = st.integers(10, 25)  # us per ADC read: 100 reads always span >= one 1 ms PWM period
phase = st.integers(0, 999)
edge = st.integers(0, 4)
seed = st.integers(1, 2**31 - 1)
offsets = st.lists(st.integers(-1200, 1200), min_size=1, max_size=4)  # drifting level


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(NOT_CHARGING)), st.booleans(), duties, noise, dt, phase, edge,
       seed, offsets)
def test_no_false_charging_with_diode_from_a_b_e_f(state, diode, duty, noise_mv, dt_us,
                                                     phase_us, edge_us, seed_, drift):
    high, low = NOT_CHARGING[state](diode)
    pwm = FakePWM()
    adc = WaveADC(high, low, pwm=pwm, dt_us=dt_us, phase_us=phase_us, noise_mv=noise_mv,
                  edge_us=edge_us, seed=seed_)
    p = Pilot(pwm, adc, duty=duty, interval_ms=0)
    t = 0
    for off in drift:  # the level wanders by up to +-1.2 V, still inside its band
        adc.high_mv = high + off if state in "AB" else high
        for _ in range(6):
            ev = p.poll(t)
            t += 1
            if ev is not None:
                s, ok = ev[1]
                assert not (s in "CD" and ok), (state, duty, ev, p.high_mv, p.low_mv)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from("CD"), st.integers(100, 900), st.integers(0, 400), dt, phase, edge,
       seed)
def test_charging_waveform_with_diode_is_reported(state, duty, noise_mv, dt_us, phase_us,
                                                  edge_us, seed_):
    high = 6000 if state == "C" else 3000
    pwm = FakePWM()
    adc = WaveADC(high, -12000, pwm=pwm, dt_us=dt_us, phase_us=phase_us, noise_mv=noise_mv,
                  edge_us=edge_us, seed=seed_)
    p = Pilot(pwm, adc, duty=duty, interval_ms=0)
    for t in range(10):
        p.poll(t)
    assert p.state == (state, True), (p.state, p.high_mv, p.low_mv)


@settings(max_examples=200, deadline=None)
@given(st.integers(100, 960), st.integers(0, 400), dt, phase, edge, seed)
def test_c_to_b_is_seen_within_debounce_polls(duty, noise_mv, dt_us, phase_us, edge_us, seed_):
    """The EV opening S2 is reported after `debounce` polls whatever the diode reading does."""
    pwm = FakePWM()
    adc = WaveADC(6000, -12000, pwm=pwm, dt_us=dt_us, phase_us=phase_us, noise_mv=noise_mv,
                  edge_us=edge_us, seed=seed_)
    p = Pilot(pwm, adc, duty=duty, interval_ms=0, debounce=3)
    for t in range(10):
        p.poll(t)
    assert p.state[0] == "C"
    adc.high_mv = 9000
    for t in range(10, 13):
        p.poll(t)
    assert p.state[0] == "B", (p.state, p.high_mv, p.low_mv)
