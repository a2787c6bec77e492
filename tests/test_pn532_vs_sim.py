"""The PN532 driver against host_sim's strict virtual PN532, on a simulated millisecond clock."""

import pytest

from hal.compat import ticks_add, ticks_diff
from hal.pn532 import PN532
from host_sim.devices import pn532 as pn532_dev

T0 = (1 << 30) - 2000  # cross the ESP32 tick wrap during the test


class SimUart:
    """machine.UART-like view of the virtual chip; `t` is the driver's ticks_ms clock."""

    def __init__(self, dev):
        self.dev = dev
        self.t = T0
        self.buf = b""

    def _s(self):
        return ticks_diff(self.t, T0) / 1000.0 + 1.0

    def any(self):
        self.buf += self.dev.pending(self._s())
        return len(self.buf)

    def read(self, n):
        out, self.buf = self.buf[:n], self.buf[n:]
        return out or None

    def write(self, b):
        self.dev.feed(bytes(b), self._s())
        return len(b)


def drive(drv, uart, ms, step=2):
    events = []
    for i in range(0, ms, step):
        ev = drv.poll(uart.t)
        if ev is not None:
            events.append((i, ev))
        uart.t = ticks_add(uart.t, step)
    return events


def test_cold_start_tap_hold_and_gone():
    dev = pn532_dev.Pn532()
    uart = SimUart(dev)
    drv = PN532(uart)
    assert drive(drv, uart, 300) == []
    st = dev.status()
    assert st["sam"] and st["mx_rty_passive"] == 1 and st["power"] == "awake"
    assert drv.firmware == (0x32, 0x01, 0x06, 0x07)
    dev.present(bytes.fromhex("04A1B2C3D4E5F6"), now=uart._s())
    events = drive(drv, uart, 1500)
    assert [e[1] for e in events] == [("tap", ("04A1B2C3D4E5F6", 7))]
    dev.remove()
    events = drive(drv, uart, 600)
    assert [e[1] for e in events] == [("gone", "04A1B2C3D4E5F6")]
    assert drv.timeouts == 0 and drv.parser.bad_frames == 0


def test_phone_is_unusable_once():
    dev = pn532_dev.Pn532()
    uart = SimUart(dev)
    drv = PN532(uart)
    drive(drv, uart, 300)
    dev.present_random(now=uart._s())
    events = drive(drv, uart, 1500)
    assert [e[1][0] for e in events] == ["unusable"]


@pytest.mark.parametrize("fault", ["mute", "garbage"])
def test_fault_then_recovery(fault):
    dev = pn532_dev.Pn532()
    uart = SimUart(dev)
    drv = PN532(uart, fail_after_ms=1000, backoff_max_ms=1000)
    drive(drv, uart, 300)
    dev.set_fault(fault, now=uart._s())
    events = drive(drv, uart, 3000)
    assert [e[1][0] for e in events] == ["failed"]
    assert events[0][0] <= 1500
    dev.set_fault("ok", now=uart._s())
    dev.present(bytes.fromhex("DEADBEEF"), now=uart._s())
    events = drive(drv, uart, 3000)
    assert [e[1] for e in events] == [("ok", None), ("tap", ("DEADBEEF", 4))]
