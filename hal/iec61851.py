"""IEC 61851-1 numbers shared by the charging core and the pilot driver (pure, no I/O).

Duty cycle is in per mille (0..1000): 1000 is a steady +12 V (PWM off, state x1), 0 is a steady
-12 V (state F, EVSE not available). Currents are whole amperes.
Facts: ../shared/reference/hardware.md §4.2 (duty <-> current) and §4.3 (PP coding).
"""

from hal.compat import const

PWM_HZ = const(1000)
DUTY_OFF = const(1000)  # steady +12 V: no current offered (A1/B1/C1)
DUTY_F = const(0)  # steady -12 V: state F, EVSE not available
MIN_AMPS = const(6)
MAX_AMPS = const(80)
PWM_CHANGE_MIN_MS = const(5000)  # "PWM updates only every 5 seconds" (hardware.md §4.4)
# The other reaction times of hardware.md §4.4 are no constants here: C->B (100 ms) and B->C (3 s)
# are met by the control loop reacting in the pass that sees the change (hal/pilot.py, README
# "Decisions worth knowing"); the forced open 6 s after PWM-off is config.json "stop_grace_s"
# (firmware/config.py: default 6, at most 6), its one source.

# PP resistance (ohm, upper bound exclusive) -> cable rating (A); Phoenix Contact ranges.
PP_ERROR = const(-1)
_PP_TABLE = ((75, PP_ERROR), (150, 63), (330, 32), (1000, 20), (2200, 13))


def duty_permille(amps):
    """Duty that advertises `amps`: I/0.6 % up to 51 A, I/2.5+64 % above; DUTY_OFF below 6 A."""
    if amps < MIN_AMPS:
        return DUTY_OFF
    if amps > MAX_AMPS:
        amps = MAX_AMPS
    if amps <= 51:
        return _round_div(amps * 100, 6)
    return amps * 4 + 640


def amps_for_duty(permille):
    """What an EV may draw at this duty (EV side of the table); 0 means no charging allowed."""
    d = permille
    if d < 80 or d > 970:
        return 0
    if d < 100:
        return 6
    if d <= 850:
        return _round_div(d * 6, 100)
    if d < 960:
        return (d - 640) // 4
    return 80


def pp_cable_amps(ohms):
    """Cable rating from the PP resistor: PP_ERROR for a short, 0 for no cable."""
    for bound, amps in _PP_TABLE:
        if ohms < bound:
            return amps
    return 0


def _round_div(a, b):
    return (a + b // 2) // b
