"""S0 pulse meter: poll sampling with minimum pulse width, IRQ counting, energy and power.
Runs on CPython and on the MicroPython unix port."""

from hal.compat import sleep_ms
from hal.s0 import S0Meter
from tests.mp.test_modbus_fake import FakePin


class IrqPin(FakePin):
    IRQ_RISING = 1

    def irq(self, handler=None, trigger=None):
        self.handler = handler
        self.trigger = trigger


def _run(meter, pin, levels, step_ms=5):
    """Feed a level per step; return the reading events seen."""
    events = []
    for i, level in enumerate(levels):
        pin.level = level
        ev = meter.poll(i * step_ms)
        if ev is not None:
            events.append((i * step_ms, ev))
    return events


def _pulses(count, high_steps, low_steps):
    out = []
    for _ in range(count):
        out += [1] * high_steps + [0] * low_steps
    return out


def test_poll_counts_pulses_of_at_least_30_ms():
    pin = FakePin()
    m = S0Meter(pin, 1000, report_ms=10000)
    assert not m.use_irq
    # 6 x 35 ms high (counted), then 3 x 10 ms high (glitches), 5 ms steps.
    _run(m, pin, [0] + _pulses(6, 7, 7) + _pulses(3, 2, 7))
    assert m.pulses == 6 and m.glitches == 3


def test_energy_and_power_from_pulses():
    pin = FakePin()
    m = S0Meter(pin, 1000, report_ms=1000)
    # 1000 imp/kWh, one pulse per 500 ms = 1 Wh per 0.5 s = 7200 W.
    levels = [0] + _pulses(10, 8, 92)  # 40 ms high, 460 ms low
    events = _run(m, pin, levels)
    assert [t for t, _ in events] == [1000, 2000, 3000, 4000, 5000]
    kind, r = events[3][1]
    assert kind == "reading"
    assert r["energy_wh"] == 8 and r["energy_kwh"] == 0.008  # pulses counted by 4000 ms
    assert r["power_w"] == 7200.0
    r = m.reading(5030)  # 10 pulses, the last rising at 4505
    assert m.pulses == 10 and r["energy_wh"] == 10
    # Long after the last pulse the power decays instead of freezing.
    assert m.reading(4505 + 5000)["power_w"] == 720.0
    assert m.reading(4505 + 100)["power_w"] == 7200.0


def test_no_pulse_is_zero_power_and_energy():
    pin = FakePin()
    m = S0Meter(pin, 800, report_ms=100)
    events = _run(m, pin, [0] * 30)
    assert events and events[0][1] == ("reading", {"energy_wh": 0, "energy_kwh": 0.0,
                                                   "power_w": 0.0})


def test_irq_mode_counts_edges_and_rejects_bounce():
    pin = IrqPin()
    m = S0Meter(pin, 2000, min_pulse_ms=20)
    assert m.use_irq and pin.trigger == IrqPin.IRQ_RISING
    m.poll(0)
    pin.handler(pin)
    pin.handler(pin)  # bounce, same ms
    assert m.pulses == 1 and m.glitches == 1
    sleep_ms(25)
    pin.handler(pin)
    assert m.pulses == 2 and m._interval >= 20
    assert m.reading(0)["energy_wh"] == 1  # 2 pulses / 2000 imp/kWh = 1 Wh


def test_bad_arguments():
    for args in ((0,), (-5,)):
        try:
            S0Meter(FakePin(), *args)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (args,))
