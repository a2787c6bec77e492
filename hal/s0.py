"""S0 pulse meter (DIN 43864 / EN 62053-31 pulse output): energy from a pulse count.

Why two ways of counting: on the ESP32 a (soft, scheduled) pin IRQ catches every rising edge
even when the control loop is busy; elsewhere (unix port, simulator pins without `irq`) `poll`
samples `pin.value()` and counts a rising edge once the level has stayed high for `min_pulse_ms`.
30 ms is the minimum S0 pulse width of DIN 43864 (an assumption here: the fact sheets do not
cover S0), so shorter highs are glitches. In IRQ mode the same figure is the minimum spacing of
two accepted edges (contact bounce).

Events are those of `hal.meters.Meter` (hal.kinds): (READING, {"energy_wh", "energy_kwh",
"power_w"}) every `report_ms`; an S0 input has no errors to report.
"""

from hal.compat import const, ticks_add, ticks_diff, ticks_ms
from hal.kinds import READING

_MS_PER_HOUR_X_WH_PER_KWH = const(3600000000)  # 3.6e6 ms/h * 1000 Wh/kWh


class S0Meter:
    def __init__(self, pin, pulses_per_kwh, min_pulse_ms=30, report_ms=1000, use_irq=None):
        if pulses_per_kwh <= 0:
            raise ValueError("pulses_per_kwh must be positive")
        if min_pulse_ms < 0 or report_ms <= 0:
            raise ValueError("min_pulse_ms must be >= 0 and report_ms > 0")
        self.pin = pin
        self.pulses_per_kwh = pulses_per_kwh
        self.min_pulse_ms = min_pulse_ms
        self.report_ms = report_ms
        self.pulses = 0
        self.glitches = 0  # highs shorter than min_pulse_ms (poll) or bounces (IRQ)
        self._last_pulse = None  # tick of the last counted pulse
        self._interval = None  # ms between the last two counted pulses
        self._started = None
        self._next_report = None
        self._level = 0
        self._high_since = None
        self._counted = False
        if use_irq is None:
            use_irq = hasattr(pin, "irq") and hasattr(pin, "IRQ_RISING")
        self.use_irq = use_irq
        if use_irq:
            pin.irq(handler=self._on_edge, trigger=pin.IRQ_RISING)

    def _on_edge(self, _pin):
        """Soft IRQ: runs between bytecodes, may allocate nothing but small ints."""
        now = ticks_ms()
        last = self._last_pulse
        if last is not None and ticks_diff(now, last) < self.min_pulse_ms:
            self.glitches += 1
            return
        self._count(now)

    def _count(self, now):
        last = self._last_pulse
        if last is not None:
            self._interval = ticks_diff(now, last)
        self._last_pulse = now
        self.pulses += 1

    def _sample(self, now):
        level = 1 if self.pin.value() else 0
        if level and not self._level:
            self._high_since = now
            self._counted = False
        elif not level and self._level and not self._counted:
            self.glitches += 1
        self._level = level
        if level and not self._counted and ticks_diff(now, self._high_since) >= self.min_pulse_ms:
            self._counted = True
            self._count(self._high_since)

    def _snapshot(self):
        """(pulses, last pulse tick, interval) consistent even if an IRQ runs in between."""
        while True:
            n = self.pulses
            last = self._last_pulse
            interval = self._interval
            if n == self.pulses:
                return n, last, interval

    def power_w(self, now):
        """Power from the spacing of the last two pulses; if the next pulse is overdue, the
        time since the last one bounds the power from above (so it falls to 0 when charging
        stops instead of freezing at the last value). Before any pulse: 0."""
        n, last, interval = self._snapshot()
        if last is None:
            return 0.0
        since = ticks_diff(now, last)
        if interval is None:  # one pulse so far: the time before it bounds the power too
            interval = ticks_diff(last, self._started) if self._started is not None else 0
        span = since if since > interval else interval
        if span <= 0:
            return 0.0
        return round(_MS_PER_HOUR_X_WH_PER_KWH / (self.pulses_per_kwh * span), 1)

    def reading(self, now):
        n, _, _ = self._snapshot()
        wh = n * 1000 // self.pulses_per_kwh
        return {
            "energy_wh": wh,
            "energy_kwh": round(n / self.pulses_per_kwh, 3),
            "power_w": self.power_w(now),
        }

    def poll(self, now):
        if self._started is None:
            self._started = now
            self._next_report = ticks_add(now, self.report_ms)
        if not self.use_irq:
            self._sample(now)
        if ticks_diff(now, self._next_report) < 0:
            return None
        self._next_report = ticks_add(self._next_report, self.report_ms)
        if ticks_diff(now, self._next_report) >= 0:  # fell far behind: don't burst
            self._next_report = ticks_add(now, self.report_ms)
        return (READING, self.reading(now))
