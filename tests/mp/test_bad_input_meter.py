"""Issue 16 item 1 (and 9's "garbage is no time-out"): a Modbus bus that cannot be used ends
every request within its deadline with a specific error and the meter is declared failed
(the CDR side: test_bad_input_cdr). Runs on CPython and MicroPython."""

from hal.kinds import ERROR
from hal.meters import Meter
from hal.modbus import ModbusBusBusy, ModbusError, ModbusMaster, ModbusTimeout
from tests.mp.test_modbus_fake import FakeUart, drive, reply_frame


class BabbleUart(FakeUart):
    """A bus that never goes quiet: one noise byte per millisecond of the fake clock, from
    before the first poll."""

    def __init__(self, byte=b"\x00", **kw):
        super().__init__(**kw)
        self.byte = byte
        self._sent_to = -10  # it was babbling before the master looked

    def _move_due(self):
        if self.now > self._sent_to:
            self.rx.extend(self.byte * (self.now - self._sent_to))
            self._sent_to = self.now
        FakeUart._move_due(self)


def test_peers_table_each_ends_within_its_deadline_with_its_error():
    frame = reply_frame(1, 4, [0x4048, 0])
    table = (
        # (what the bus does, uart, error class, words in the message)
        ("babbles before the request", BabbleUart(), ModbusBusBusy, "never silent"),
        ("answers 0xFF noise only", FakeUart(lambda req: [(5, b"\xff" * 20)]), ModbusError,
         "garbage"),
        ("answers with the wrong CRC", FakeUart(lambda req: [(5, frame[:-1] + b"\x00")]),
         ModbusError, "CRC"),
        ("stays silent", FakeUart(lambda req: []), ModbusTimeout, "no answer"),
    )
    for what, uart, cls, words in table:
        m = ModbusMaster(uart, 9600, timeout_ms=200)
        m.start(1, 4, 0, 2, 0)
        (kind, err), t = drive(m, uart, limit_ms=1000)
        assert kind == ERROR and type(err) is cls, (what, err)
        assert words in str(err), (what, str(err))
        assert t <= 200 + 10 + m.gap_ms, (what, t)  # the deadline, plus the request's wire time
        assert not m.busy and m.errors == 1, what
        if cls is ModbusBusBusy:
            assert uart.written == [], "nothing may be sent onto a busy bus"


def test_garbage_is_not_reported_as_a_timeout():
    uart = FakeUart(lambda req: [(5, b"\x55\xaa" * 10)])
    m = ModbusMaster(uart, 9600, timeout_ms=100)
    m.start(1, 4, 0, 2, 0)
    (kind, err), _ = drive(m, uart)
    assert not isinstance(err, ModbusTimeout) and "20 bytes" in str(err)


def test_babbling_bus_fails_the_meter_within_its_deadlines():
    uart = BabbleUart()
    m = Meter(ModbusMaster(uart, 9600, timeout_ms=100), "sdm120", 1, interval_ms=0,
              max_errors=3)
    t = 0
    errors = []
    while not m.failed:
        uart.now = t
        ev = m.poll(t)
        if ev is not None:
            errors.append(ev)
        t += 1
        assert t < 2000, "the meter never failed on a babbling bus"
    assert len(errors) == 3 and all(isinstance(e[1], ModbusBusBusy) for e in errors)
    assert t <= 3 * 101 + 3
