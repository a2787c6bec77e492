"""Modbus RTU master (function codes 0x03/0x04) as a non-blocking state machine.

Why a state machine: the control loop polls every driver and must never wait for a meter, so
`poll(now)` reads only what `uart.any()` reports, sends a request once the line has been silent
for t3.5, and returns at most one event. A response is accepted only when address, function code,
byte count and CRC all match; anything else becomes a `ModbusError` whose message names the
failed check, never a reading.
Frame facts: reference/hardware.md section 3.4 (CRC low byte first, t3.5, exception codes).
"""

from hal.compat import const, ticks_add, ticks_diff

FC_READ_HOLDING = const(0x03)
FC_READ_INPUT = const(0x04)
MAX_REGS = const(125)  # Modbus limit for one FC 03/04 read
_MAX_ADU = const(256)
_BITS_PER_CHAR = const(11)  # start + 8 data + parity or 2nd stop + stop, per the serial line spec

_IDLE = const(0)
_WAIT_SILENCE = const(1)
_RECEIVING = const(2)

# Exception codes 1..11 in one string (one heap object instead of a dict of nine); "" = unused.
_EXCEPTION_NAMES = (
    "illegal function|illegal data address|illegal data value|server device failure|"
    "acknowledge|server busy||memory parity error||gateway path unavailable|"
    "gateway target failed to respond"
)


class ModbusError(Exception):
    """A request failed and produced no data. Frame errors (CRC, function code, byte count,
    incomplete) are this class; the message names the check. Subclasses are the outcomes a
    caller may handle differently (tools/meter.py maps them to exit codes)."""


class ModbusTimeout(ModbusError):
    """No complete response within the response time-out."""


class ModbusException(ModbusError):
    """The slave answered with an exception response (fc | 0x80, code); `code` holds it."""


class ModbusWrongSlave(ModbusError):
    """A valid frame came from another slave address (a clashing bus configuration)."""


# CRC-16/MODBUS (reflected polynomial 0xA001) four bits at a time: a 16-entry table is a fair
# trade between the 8-step bit loop (slow on MicroPython) and a 256-entry table (heap). Entry n
# is n shifted through four steps of the bitwise algorithm (the test recomputes it).
_CRC_NIBBLE = (
    0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
    0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400,
)


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


def wire_us(nbytes, baud):
    """Transmit time of nbytes back to back (11-bit characters, each rounded up to a whole us)."""
    return nbytes * ((_BITS_PER_CHAR * 1000000 + baud - 1) // baud)


def build_read_request(slave, fc, reg, count, buf=None):
    """The 8-byte read request ADU; validates the arguments (ValueError names the bad one)."""
    if not 1 <= slave <= 247:
        raise ValueError("slave 1..247")
    if fc != FC_READ_HOLDING and fc != FC_READ_INPUT:
        raise ValueError("fc 3 or 4")
    if not 0 <= reg <= 0xFFFF:
        raise ValueError("register 0..65535")
    if not 1 <= count <= MAX_REGS or reg + count > 0x10000:
        raise ValueError("count 1..125, end <= 65536")
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
    """Judge one complete frame buf[:n]: return a tuple of registers or raise a ModbusError.

    Order of the checks: CRC first (a corrupt frame says nothing reliable about its sender), then
    slave address, function code, exception, byte count.
    """
    if n < 5:
        raise ModbusError("incomplete: %d bytes" % n)
    if not _crc_ok(buf, 0, n):
        raise ModbusError("CRC mismatch: %d bytes" % n)
    if buf[0] != slave:
        raise ModbusWrongSlave("answer from slave %d, asked %d" % (buf[0], slave))
    if buf[1] & 0x7F != fc:
        raise ModbusError("function 0x%02X, asked 0x%02X" % (buf[1], fc))
    if buf[1] & 0x80:
        if n == 5:
            code = buf[2]
            names = _EXCEPTION_NAMES.split("|")
            name = names[code - 1] if 0 < code <= len(names) and names[code - 1] else "unknown"
            e = ModbusException("exception 0x%02X (%s)" % (code, name))
            e.code = code
            raise e
    elif buf[2] == 2 * count and n == buf[2] + 5:
        return tuple((buf[3 + 2 * i] << 8) | buf[4 + 2 * i] for i in range(count))
    raise ModbusError("byte count %d in %d bytes, asked %d regs" % (buf[2], n, count))


class ModbusMaster:
    """One outstanding request at a time on one RS-485 bus.

    `start(...)` queues a read; `poll(now)` returns None, ("ok", registers) or ("error", err).
    `busy` is True from `start` until that event. Counters `noise_bytes`, `echo_bytes` and
    `errors` make dropped input visible.
    """

    def __init__(self, uart, baud, de_pin=None, timeout_ms=300):
        if baud <= 0 or timeout_ms <= 0:
            raise ValueError("baud, timeout_ms > 0")
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
        self.busy = False
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

    def start(self, slave, fc, reg, count, now):
        """Queue one read request; it goes out from `poll` once the line is silent."""
        if self.busy:
            raise RuntimeError("request in progress")
        build_read_request(slave, fc, reg, count, self._req)
        self._slave = slave
        self._fc = fc
        self._count = count
        self._state = _WAIT_SILENCE
        self.busy = True

    def poll(self, now):
        uart = self.uart
        if self._state != _RECEIVING:
            # Bytes nobody asked for: count them as noise, they reset the silence timer.
            k = uart.any()
            if k:
                data = uart.read(k)
                if data:
                    self.noise_bytes += len(data)
                    self._last_activity = now
            last = self._last_activity
            if self._state == _WAIT_SILENCE and (
                last is None or ticks_diff(now, last) >= self.gap_ms
            ):
                self._send(now)
            return None
        if self._de_release is not None and ticks_diff(now, self._de_release) >= 0:
            self.de_pin.value(0)
            self._de_release = None
        k = uart.any()
        if k:
            n = self._n
            if k > _MAX_ADU - n:
                # Keep the newest bytes when more arrive than an ADU can hold.
                drop = min(k - (_MAX_ADU - n), n)
                self.noise_bytes += drop
                self._rx[0 : n - drop] = self._rx[drop:n]
                n -= drop
                self._n = n
            data = uart.read(min(k, _MAX_ADU - n))
            if data:
                self._rx[n : n + len(data)] = data
                self._n = n + len(data)
                self._last_activity = now
                event = self._find_frame()
                if event is not None:
                    return self._finish(now, event)
        if self._n and ticks_diff(now, self._last_activity) >= self.gap_ms:
            event = self._judge_silent_frame()
            if event is not None:
                return self._finish(now, event)
        if ticks_diff(now, self._deadline) >= 0:
            event = self._judge_silent_frame() if self._n else None
            if event is None:
                event = ("error", ModbusTimeout(
                    "no answer from slave %d within %d ms" % (self._slave, self.timeout_ms)))
            return self._finish(now, event)
        return None

    # -- internals -------------------------------------------------------------------------
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

    def _finish(self, now, event):
        if self._de_release is not None:
            self.de_pin.value(0)
            self._de_release = None
        self._state = _IDLE
        self.busy = False
        self._last_activity = now
        if event[0] == "error":
            self.errors += 1
        return event

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
            # Bytes before the accepted frame: our own echo, or noise.
            if i >= 8 and rx[0:8] == self._req:
                self.echo_bytes += 8
                self.noise_bytes += i - 8
            else:
                self.noise_bytes += i
            try:
                return ("ok", parse_response(memoryview(rx)[i:], length, slave, fc, self._count))
            except ModbusError as e:
                return ("error", e)
        return None

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
        m = n - start
        if m >= 5 and _crc_ok(rx, start, m):
            try:
                view = memoryview(rx)[start:n]
                return ("ok", parse_response(view, m, self._slave, self._fc, self._count))
            except ModbusError as e:
                return ("error", e)
        if m >= 2 and rx[start] == self._slave and rx[start + 1] & 0x7F == self._fc:
            length = _frame_length(rx, start, n)
            if length is not None and m >= length:
                return ("error", ModbusError("CRC mismatch: slave %d" % rx[start]))
            return ("error", ModbusError("incomplete: %d bytes" % m))
        self.noise_bytes += m
        return None
