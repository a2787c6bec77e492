"""What MicroPython has built in, given to CPython: const, ticks_ms/us/add/diff, sleep_ms.

Firmware and drivers import these names from here and run unchanged on the ESP32, the unix port
and CPython. On CPython the millisecond tick counter wraps at 2**30 exactly as on the ESP32, so a
wrap bug shows up in host tests; `set_ticks_offset` (or MPEVSE_TICKS_OFFSET) starts the counter
close to the wrap.
"""

try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms, ticks_us  # noqa: F401

    from micropython import const  # noqa: F401

    MICROPYTHON = True
except ImportError:
    import os as _os
    import time as _time

    MICROPYTHON = False
    TICKS_PERIOD = 1 << 30
    _TICKS_MAX = TICKS_PERIOD - 1
    _TICKS_HALF = TICKS_PERIOD // 2
    _offset = int(_os.environ.get("MPEVSE_TICKS_OFFSET", "0"))

    def const(x):
        return x

    def set_ticks_offset(offset):
        """Shift the emulated counter, e.g. to start 1 s before the 2**30 wrap."""
        global _offset
        _offset = offset

    def ticks_ms():
        return (int(_time.monotonic() * 1000) + _offset) & _TICKS_MAX

    def ticks_us():
        """Microseconds, same wrap as ticks_ms (for benchmarks; compare with ticks_diff)."""
        return (_time.monotonic_ns() // 1000) & _TICKS_MAX

    def ticks_add(ticks, delta):
        return (ticks + delta) & _TICKS_MAX

    def ticks_diff(a, b):
        return ((a - b + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF

    def sleep_ms(ms):
        _time.sleep(ms / 1000)
