"""Tick arithmetic must survive the ESP32's 2**30 wrap (runs on both interpreters)."""

from hal.compat import MICROPYTHON, const, ticks_add, ticks_diff, ticks_ms

WRAP = 1 << 30


def test_const_is_identity():
    assert const(5) == 5


def test_ticks_diff_signed():
    assert ticks_diff(1000, 400) == 600
    assert ticks_diff(400, 1000) == -600


def test_ticks_add_and_diff_across_the_wrap():
    if MICROPYTHON:
        return  # the unix port's period is 2**62; the wrap is emulated on CPython only
    start = WRAP - 300
    later = ticks_add(start, 500)
    assert later == 200
    assert ticks_diff(later, start) == 500
    assert ticks_diff(start, later) == -500


def test_ticks_ms_is_in_range():
    t = ticks_ms()
    assert 0 <= t
    if not MICROPYTHON:
        assert t < WRAP
