"""Duty <-> current and PP coding against the fact sheet's handy values (hardware.md §4.2, §4.3)."""

from hal.iec61851 import DUTY_OFF, PP_ERROR, amps_for_duty, duty_permille, pp_cable_amps

DUTY_TABLE = (  # amps, per mille (hardware.md §4.2 "handy values")
    (6, 100), (10, 167), (13, 217), (16, 267), (20, 333), (25, 417), (32, 533),
    (40, 667), (51, 850), (63, 892), (80, 960),
)


def test_duty_for_amps():
    for amps, permille in DUTY_TABLE:
        assert duty_permille(amps) == permille, (amps, duty_permille(amps))


def test_below_six_amps_offers_nothing_and_above_80_is_capped():
    assert duty_permille(5) == DUTY_OFF
    assert duty_permille(0) == DUTY_OFF
    assert duty_permille(100) == 960


def test_ev_reads_back_what_was_advertised():
    for amps, permille in DUTY_TABLE:
        assert amps_for_duty(permille) == amps, (amps, amps_for_duty(permille))


def test_ev_side_no_charging_bands():
    for d in (0, 20, 50, 79, 971, 1000):
        assert amps_for_duty(d) == 0
    assert amps_for_duty(85) == 6


def test_pp_cable_rating():
    for ohms, amps in ((50, PP_ERROR), (100, 63), (220, 32), (680, 20), (1500, 13), (5000, 0)):
        assert pp_cable_amps(ohms) == amps
