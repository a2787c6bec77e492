"""A fake UART that plays a Modbus slave by script, shared by the Modbus and meter tests.

The test owns the clock: `uart.now` is set before each `poll`, and scripted reply chunks become
visible to `any()`/`read()` only when their time has come, the way bytes trickle in on a bus.
"""

from hal.modbus import crc16


def with_crc(body):
    """body + CRC-16/MODBUS low byte first."""
    body = bytes(body)
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def reply_frame(slave, fc, regs):
    """A correct FC 03/04 response carrying the given 16-bit registers."""
    out = bytearray((slave, fc, 2 * len(regs)))
    for r in regs:
        out.append(r >> 8)
        out.append(r & 0xFF)
    return with_crc(out)


class FakeUart:
    """read/write/any like machine.UART; `responder(request)` returns [(delay_ms, bytes), ...]."""

    def __init__(self, responder=None, with_flush=False, none_when_empty=True, clock=None):
        self.responder = responder
        self.now = 0
        self.clock = clock
        self.written = []
        self.pending = []  # (due tick, bytes) in order
        self.rx = bytearray()
        self.none_when_empty = none_when_empty
        self.de_log = None
        if with_flush:
            self.flush = self._flush
            self.flushed = 0

    def _flush(self):
        self.flushed += 1

    def _tick(self):
        return self.clock() if self.clock is not None else self.now

    def inject(self, data, delay_ms=0):
        """Bytes that appear on the line without a request (noise, another master)."""
        self.pending.append((self._tick() + delay_ms, bytes(data)))

    def _move_due(self):
        now = self._tick()
        keep = []
        for due, data in self.pending:
            if now - due >= 0:
                self.rx.extend(data)
            else:
                keep.append((due, data))
        self.pending = keep

    def any(self):
        self._move_due()
        return len(self.rx)

    def read(self, n=-1):
        self._move_due()
        if not self.rx:
            return None if self.none_when_empty else b""
        if n is None or n < 0:
            n = len(self.rx)
        data = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return data

    def write(self, data):
        data = bytes(data)
        self.written.append(data)
        if self.responder is not None:
            start = self._tick()
            for delay, chunk in self.responder(data):
                self.pending.append((start + delay, bytes(chunk)))
        return len(data)


class RegisterSlave:
    """A responder that answers FC 03/04 reads from register maps, like a real meter.

    `regs[fc][address] = value`; a read touching a missing register gets exception 02.
    `fail` (a callable(request) -> [(delay, bytes)] or None) lets a test break one answer.
    """

    def __init__(self, address, regs, delay_ms=8):
        self.address = address
        self.regs = regs
        self.delay_ms = delay_ms
        self.requests = []
        self.fail = None

    def __call__(self, req):
        self.requests.append(req)
        if self.fail is not None:
            out = self.fail(req)
            if out is not None:
                return out
        if req[0] != self.address:
            return []
        fc = req[1]
        start = (req[2] << 8) | req[3]
        count = (req[4] << 8) | req[5]
        table = self.regs.get(fc, {})
        values = []
        for a in range(start, start + count):
            if a not in table:
                return [(self.delay_ms, with_crc((req[0], fc | 0x80, 2)))]
            values.append(table[a])
        return [(self.delay_ms, reply_frame(req[0], fc, values))]


def words(bits, nwords=2):
    """Split an integer into big-endian 16-bit words (high word first)."""
    return [(bits >> (16 * (nwords - 1 - k))) & 0xFFFF for k in range(nwords)]


def put(table, reg, bits, nwords=2):
    for k, w in enumerate(words(bits, nwords)):
        table[reg + k] = w


class FakePin:
    """machine.Pin stand-in that records every value written."""

    def __init__(self, level=0):
        self.level = level
        self.log = []

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v
        self.log.append(v)
        return None


def drive(master, uart, limit_ms=3000, step_ms=1, start=0):
    """Poll until one event; return (event, tick it came at). Raises if nothing in limit_ms."""
    t = start
    while t - start <= limit_ms:
        uart.now = t
        ev = master.poll(t)
        if ev is not None:
            return ev, t
        t += step_ms
    raise AssertionError("no event within %d ms" % limit_ms)


def test_fake_uart_delivers_on_time():
    u = FakeUart(lambda req: [(3, b"ab"), (5, b"c")])
    u.write(b"x")
    assert u.any() == 0 and u.read(4) is None
    u.now = 3
    assert u.any() == 2
    u.now = 5
    assert u.read(10) == b"abc"


def test_with_crc_matches_the_fact_sheet():
    assert with_crc(bytes.fromhex("018402")) == bytes.fromhex("018402C2C1")
