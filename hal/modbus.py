"""Modbus RTU master (function codes 0x03/0x04) as a non-blocking state machine.

Why a state machine: the control loop polls every driver and must never wait for a meter, so
`poll(now)` reads only what `uart.any()` reports, sends a request once the line has been silent
for t3.5, and returns at most one event. A response is accepted only when address, function code,
byte count and CRC all match; anything else becomes a specific `ModbusError`, never a reading.
Frame facts: reference/hardware.md section 3.4 (CRC low byte first, t3.5, exception codes).
"""

from hal.compat import const, sleep_ms, ticks_add, ticks_diff, ticks_ms

FC_READ_HOLDING = const(0x03)
FC_READ_INPUT = const(0x04)
MAX_REGS = const(125)  # Modbus limit for one FC 03/04 read
_MAX_ADU = const(256)
_BITS_PER_CHAR = const(11)  # start + 8 data + parity or 2nd stop + stop, per the serial line spec

_IDLE = const(0)
_WAIT_SILENCE = const(1)
_RECEIVING = const(2)

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target failed to respond",
}


class ModbusError(Exception):
    """Base of every failure of one request; the request produced no data."""


class ModbusTimeout(ModbusError):
    """No complete response within the response time-out."""


class ModbusException(ModbusError):
    """The slave answered with an exception response (fc | 0x80, code)."""

    def __init__(self, code):
        self.code = code
        self.name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__("exception 0x%02X (%s)" % (code, self.name))


class ModbusFrameError(ModbusError):
    """A frame was received but is unusable (base of the specific frame errors)."""


class ModbusCRCError(ModbusFrameError):
    """The frame looked like our response but its CRC did not match."""


class ModbusWrongSlave(ModbusFrameError):
    """A valid frame came from another slave address."""


class ModbusWrongFunction(ModbusFrameError):
    """A valid frame from our slave carried another function code."""


class ModbusByteCountError(ModbusFrameError):
    """A valid response carried a byte count other than 2 x the registers asked for."""


class ModbusIncomplete(ModbusFrameError):
    """The start of our response arrived, then the line fell silent or the time-out hit."""


# CRC-16/MODBUS, reflected polynomial 0xA001, four bits at a time: a 16-entry table is a fair
# trade between the 8-step bit loop (slow on MicroPython) and a 256-entry table (heap).
def _nibble_table():
    table = []
    for n in range(16):
        crc = n
        for _ in range(4):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_NIBBLE = _nibble_table()


def crc16(data, start=0, end=None):
    """CRC-16/MODBUS of data[start:end] (no slice copy); goes on the wire low byte first."""
    if end is None:
        end = len(data)
    t = _CRC_NIBBLE
    crc = 0xFFFF
    for i in range(start, end):
        crc ^= data[i]
        crc = (crc >> 4) ^ t[crc & 15]
        crc = (crc >> 4) ^ t[crc & 15]
    return crc


def t35_us(baud):
    """Inter-frame silence t3.5 in microseconds (fixed 1750 us above 19200 Bd)."""
    if baud > 19200:
        return 1750
    return (35 * _BITS_PER_CHAR * 1000000 + 10 * baud - 1) // (10 * baud)


def char_us(baud):
    """Time on the wire of one 11-bit character in microseconds (rounded up)."""
    return (_BITS_PER_CHAR * 1000000 + baud - 1) // baud


def wire_us(nbytes, baud):
    """Transmit time of nbytes back to back, in microseconds."""
    return nbytes * char_us(baud)


def build_read_request(slave, fc, reg, count, buf=None):
    """The 8-byte read request ADU; validates the arguments (ValueError names the bad one)."""
    if not 1 <= slave <= 247:
        raise ValueError("slave address must be 1..247")
    if fc != FC_READ_HOLDING and fc != FC_READ_INPUT:
        raise ValueError("function code must be 0x03 or 0x04")
    if not 0 <= reg <= 0xFFFF:
        raise ValueError("register must be 0..65535")
    if not 1 <= count <= MAX_REGS or reg + count > 0x10000:
        raise ValueError("count must be 1..125 and stay below register 65536")
    if buf is None:
        buf = bytearray(8)
    buf[0] = slave
    buf[1] = fc
    buf[2] = reg >> 8
    buf[3] = reg & 0xFF
    buf[4] = count >> 8
    buf[5] = count & 0xFF
    crc = crc16(buf, 0, 6)
    buf[6] = crc & 0xFF
    buf[7] = crc >> 8
    return buf


def _crc_ok(buf, start, length):
    """True if buf[start:start+length] ends with its own CRC (low byte first)."""
    end = start + length - 2
    crc = crc16(buf, start, end)
    return buf[end] == (crc & 0xFF) and buf[end + 1] == (crc >> 8)


def _frame_length(buf, start, n):
    """Length a response starting at buf[start] claims (None if its header is not here yet)."""
    if n - start < 2:
        return None
    if buf[start + 1] & 0x80:
        return 5
    if n - start < 3:
        return None
    return buf[start + 2] + 5


def parse_response(buf, n, slave, fc, count):
    """Judge one complete frame buf[:n]: return a tuple of registers or raise the specific error.

    Order of the checks: CRC first (a corrupt frame says nothing reliable about its sender), then
    slave address, function code, exception, byte count.
    """
    if n < 5:
        raise ModbusIncomplete("frame of %d bytes is too short" % n)
    if not _crc_ok(buf, 0, n):
        raise ModbusCRCError("CRC mismatch in a %d-byte frame" % n)
    if buf[0] != slave:
        raise ModbusWrongSlave("answer from slave %d, asked %d" % (buf[0], slave))
    if buf[1] & 0x7F != fc:
        raise ModbusWrongFunction("function 0x%02X in answer, asked 0x%02X" % (buf[1], fc))
    if buf[1] & 0x80:
        if n != 5:
            raise ModbusByteCountError("exception frame of %d bytes" % n)
        raise ModbusException(buf[2])
    if buf[2] != 2 * count or n != buf[2] + 5:
        raise ModbusByteCountError(
            "byte count %d in %d bytes, expected %d" % (buf[2], n, 2 * count)
        )
    return tuple((buf[3 + 2 * i] << 8) | buf[4 + 2 * i] for i in range(count))


class ModbusMaster:
    """One outstanding request at a time on one RS-485 bus.

    `start(...)` queues a read; `poll(now)` returns None, ("ok", registers) or ("error", err).
    Counters `noise_bytes`, `echo_bytes` and `errors` make dropped input visible.
    """

    def __init__(self, uart, baud, de_pin=None, timeout_ms=300):
        if baud <= 0:
            raise ValueError("baud must be positive")
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be positive")
        self.uart = uart
        self.baud = baud
        self.de_pin = de_pin
        self.timeout_ms = timeout_ms
        # Whole milliseconds plus one: ticks_ms is quantised, so this guarantees >= t3.5.
        self.gap_ms = (t35_us(baud) + 999) // 1000 + 1
        self._flush = getattr(uart, "flush", None)
        self._req = bytearray(8)
        self._rx = bytearray(_MAX_ADU)
        self._n = 0
        self._state = _IDLE
        self._slave = 0
        self._fc = 0
        self._count = 0
        self._deadline = 0
        self._de_release = None
        self._last_activity = None
        self.noise_bytes = 0
        self.echo_bytes = 0
        self.errors = 0
        if de_pin is not None:
            de_pin.value(0)

    @property
    def busy(self):
        return self._state != _IDLE

    def start(self, slave, fc, reg, count, now):
        """Queue one read request; it goes out from `poll` once the line is silent."""
        if self._state != _IDLE:
            raise RuntimeError("a request is already in progress")
        build_read_request(slave, fc, reg, count, self._req)
        self._slave = slave
        self._fc = fc
        self._count = count
        self._state = _WAIT_SILENCE

    def cancel(self):
        """Forget the request in progress (the bus owner changed its mind)."""
        self._release_de()
        self._state = _IDLE

    def poll(self, now):
        state = self._state
        if state == _IDLE:
            self._drain_idle(now)
            return None
        if state == _WAIT_SILENCE:
            self._drain_idle(now)
            last = self._last_activity
            if last is not None and ticks_diff(now, last) < self.gap_ms:
                return None
            self._send(now)
            return None
        return self._receive(now)

    # -- internals -------------------------------------------------------------------------
    def _drain_idle(self, now):
        """Bytes nobody asked for: count them as noise, they reset the silence timer."""
        k = self.uart.any()
        if k:
            data = self.uart.read(k)
            if data:
                self.noise_bytes += len(data)
                self._last_activity = now

    def _send(self, now):
        de = self.de_pin
        if de is not None:
            de.value(1)
        self.uart.write(self._req)
        tx_ms = (wire_us(8, self.baud) + 999) // 1000
        if de is not None:
            if self._flush is not None:
                self._flush()  # returns when the last stop bit has left (MicroPython >= 1.20)
                de.value(0)
            else:
                self._de_release = ticks_add(now, tx_ms + 1)
        self._n = 0
        self._last_activity = ticks_add(now, tx_ms)
        self._deadline = ticks_add(now, tx_ms + self.timeout_ms)
        self._state = _RECEIVING

    def _release_de(self):
        if self._de_release is not None:
            self.de_pin.value(0)
            self._de_release = None

    def _finish(self, now, event):
        self._release_de()
        self._state = _IDLE
        self._last_activity = now
        if event[0] == "error":
            self.errors += 1
        return event

    def _receive(self, now):
        if self._de_release is not None and ticks_diff(now, self._de_release) >= 0:
            self._release_de()
        k = self.uart.any()
        if k:
            room = _MAX_ADU - self._n
            if k > room:
                self._discard_front(k - room)
                room = _MAX_ADU - self._n
            data = self.uart.read(min(k, room))
            if data:
                n = self._n
                self._rx[n : n + len(data)] = data
                self._n = n + len(data)
                self._last_activity = now
                found = self._find_frame()
                if found is not None:
                    return self._finish(now, found)
        if self._n and ticks_diff(now, self._last_activity) >= self.gap_ms:
            event = self._judge_silent_frame()
            if event is not None:
                return self._finish(now, event)
        if ticks_diff(now, self._deadline) >= 0:
            return self._finish(now, ("error", self._timeout_error()))
        return None

    def _discard_front(self, k):
        """Keep the newest bytes when more arrive than an ADU can hold."""
        rx = self._rx
        self.noise_bytes += k
        rx[0 : self._n - k] = rx[k : self._n]
        self._n -= k

    def _find_frame(self):
        """The first CRC-valid response from our slave in the buffer, judged; else None.

        Scanning every start position lets a response preceded by line noise or by the echo of
        our own request still be found, while the CRC keeps noise from passing as data.
        """
        rx = self._rx
        n = self._n
        slave = self._slave
        fc = self._fc
        for i in range(n - 4):
            if rx[i] != slave or rx[i + 1] & 0x7F != fc:
                continue
            length = _frame_length(rx, i, n)
            if length is None or i + length > n or not _crc_ok(rx, i, length):
                continue
            self._count_dropped(i)
            try:
                return ("ok", parse_response(memoryview(rx)[i:], length, slave, fc, self._count))
            except ModbusError as e:
                return ("error", e)
        return None

    def _count_dropped(self, i):
        """Bytes before the accepted frame: our own echo, or noise."""
        if i >= 8 and self._rx[0:8] == self._req:
            self.echo_bytes += 8
            self.noise_bytes += i - 8
        else:
            self.noise_bytes += i

    def _judge_silent_frame(self):
        """The line fell silent after some bytes that hold no valid response of ours.

        A CRC-valid frame (another slave, another function, wrong count) or something that starts
        like our response is reported as its specific error; anything else is noise, dropped and
        counted, and the wait for the real response goes on.
        """
        rx = self._rx
        n = self._n
        self._n = 0
        start = 0
        if n >= 8 and rx[0:8] == self._req:
            self.echo_bytes += 8
            start = 8
        if start == n:
            return None
        view = memoryview(rx)[start:n]
        m = n - start
        if m >= 5 and _crc_ok(rx, start, m):
            try:
                return ("ok", parse_response(view, m, self._slave, self._fc, self._count))
            except ModbusError as e:
                return ("error", e)
        if m >= 2 and rx[start] == self._slave and rx[start + 1] & 0x7F == self._fc:
            length = _frame_length(rx, start, n)
            if length is not None and m >= length:
                err = ModbusCRCError("CRC mismatch in response from slave %d" % rx[start])
                return ("error", err)
            return ("error", ModbusIncomplete("response stopped after %d bytes" % m))
        self.noise_bytes += m
        return None

    def _timeout_error(self):
        n = self._n
        if n:
            event = self._judge_silent_frame()
            if event is not None:
                return event[1]
        return ModbusTimeout(
            "no answer from slave %d within %d ms" % (self._slave, self.timeout_ms)
        )


def read_registers(master, slave, fc, reg, count, timeout_ms=1000):
    """Blocking read for bench tools: loop `poll` + `sleep_ms(1)`; raise ModbusError on failure."""
    now = ticks_ms()
    master.start(slave, fc, reg, count, now)
    give_up = ticks_add(now, timeout_ms + master.timeout_ms + master.gap_ms + 100)
    while True:
        now = ticks_ms()
        event = master.poll(now)
        if event is not None:
            if event[0] == "ok":
                return event[1]
            raise event[1]
        if ticks_diff(now, give_up) >= 0:
            master.cancel()
            raise ModbusTimeout("no answer from slave %d within %d ms" % (slave, timeout_ms))
        sleep_ms(1)
