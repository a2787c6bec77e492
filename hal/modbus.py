"""Modbus RTU master (function codes 0x03/0x04) as a non-blocking state machine.

Why a state machine: the control loop polls every driver and must never wait for a meter, so
`poll(now)` reads only what `uart.any()` reports, sends a request once the line has been silent
for t3.5, and returns at most one event. A response is accepted only when address, function code,
byte count and CRC all match; anything else becomes a `ModbusError` whose message names the
failed check, never a reading.
Frame facts: reference/hardware.md section 3.4 (CRC low byte first, t3.5, exception codes).
"""

from hal.compat import const, ticks_add, ticks_diff
from hal.kinds import ERROR, REGISTERS

FC_READ_HOLDING = const(0x03)
FC_READ_INPUT = const(0x04)
MAX_REGS = const(125)  # Modbus limit for one FC 03/04 read
_MAX_ADU = const(256)
_BITS_PER_CHAR = const(11)  # start + 8 data + parity or 2nd stop + stop, per the serial line spec

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


class ModbusBusBusy(ModbusError):
    """The request never went out: the bus was not silent for t3.5 within the time-out (a
    babbling slave, a wrong baud rate, a second master). The bus is unusable, not the meter
    silent: a caller counts it like any failed request (hal.meters: the meter fails)."""


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


def parse_response(buf, n, slave, fc, count):
    """Judge one complete frame buf[:n]: return a tuple of registers or raise a ModbusError.

    Order of the checks: length (as far as the header claims one), CRC (a corrupt frame says
    nothing reliable about its sender), then slave address, function code, exception, byte
    count.
    """
    if n < 5 or n < (5 if buf[1] & 0x80 else buf[2] + 5):
        raise ModbusError("incomplete: %d bytes" % n)
    if crc16(buf, 0, n):  # a frame followed by its own CRC leaves a zero remainder
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

    `start(...)` queues a read; `poll(now)` returns None, (REGISTERS, registers) or
    (ERROR, err) (hal.kinds).
    `busy` is True from `start` until that event, which comes within `timeout_ms` of `start`
    (ModbusBusBusy: the line never fell silent for t3.5 to send) or of the send (the answer, a
    frame error, a time-out, or "garbage" when only bytes that were no answer of ours came):
    every wait has a deadline. Counters `noise_bytes`, `echo_bytes` and
    `errors` make dropped input visible. A DE pin needs `uart.flush()` (machine.UART has it
    since MicroPython 1.20; the ESP32 target is >= 1.24): it drops DE once the last stop bit
    has left.
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
        self._req = bytearray(8)
        self._rx = bytearray(_MAX_ADU)
        self._n = 0
        self._receiving = False  # the request is out, its answer is awaited
        self.busy = False
        self._slave = 0
        self._fc = 0
        self._count = 0
        self._deadline = 0
        self._queued = 0  # tick of `start`: the send must happen within timeout_ms of it
        self._noise_at_send = 0  # noise_bytes when the request went out
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
        self._queued = now
        self.busy = True

    def poll(self, now):
        uart = self.uart
        k = uart.any()
        if not self._receiving:
            # Bytes nobody asked for: count them as noise, they reset the silence timer.
            data = uart.read(k) if k else None
            if data:
                self.noise_bytes += len(data)
                self._last_activity = now
            last = self._last_activity
            if not self.busy:
                return None
            if last is None or ticks_diff(now, last) >= self.gap_ms:
                self._send(now)
            elif ticks_diff(now, self._queued) >= self.timeout_ms:
                return self._fail(now, ModbusBusBusy(
                    "bus never silent for %d ms within %d ms (%d noise bytes): not sent to "
                    "slave %d" % (self.gap_ms, self.timeout_ms, self.noise_bytes, self._slave)))
            return None
        rx = self._rx
        n = self._n
        if k:
            if k > _MAX_ADU - n:
                # Keep the newest bytes when more arrive than an ADU can hold.
                drop = min(k - (_MAX_ADU - n), n)
                self.noise_bytes += drop
                rx[0 : n - drop] = rx[drop:n]
                n -= drop
            data = uart.read(min(k, _MAX_ADU - n))
            if data:
                rx[n : n + len(data)] = data
                n += len(data)
                self._last_activity = now
                # The first CRC-valid response from our slave, at any offset: one preceded by
                # line noise or by the echo of our own request is still found, while the CRC
                # keeps noise from passing as data.
                slave = self._slave
                fc = self._fc
                for i in range(n - 4):
                    if rx[i] == slave and rx[i + 1] & 0x7F == fc:
                        length = 5 if rx[i + 1] & 0x80 else rx[i + 2] + 5
                        if i + length <= n and not crc16(rx, i, i + length):
                            self.noise_bytes += i - self._echo(i)  # what came before
                            return self._finish(now, i, length)
            self._n = n
        late = ticks_diff(now, self._deadline) >= 0
        if n and (late or ticks_diff(now, self._last_activity) >= self.gap_ms):
            # Silence after bytes that hold no valid response of ours: a CRC-valid frame
            # (another slave, function or count) or something that starts like our response
            # is judged for its specific error; anything else is noise, dropped and counted,
            # and the wait for the real response goes on.
            self._n = 0
            start = self._echo(n)
            m = n - start
            if (m >= 5 and not crc16(rx, start, n)) or (
                m >= 2 and rx[start] == self._slave and rx[start + 1] & 0x7F == self._fc
            ):
                return self._finish(now, start, m)
            self.noise_bytes += m
        if late:
            return self._finish(now, -1, 0)
        return None

    def abort(self):
        """Forget the request in flight and any buffered bytes (its port failed); no event."""
        self._receiving = self.busy = False
        self._n = 0
        self._last_activity = None

    # -- internals -------------------------------------------------------------------------
    def _echo(self, n):
        """8 if the n buffered bytes begin with the echo of our own request (counted), else 0."""
        if n >= 8 and self._rx[0:8] == self._req:
            self.echo_bytes += 8
            return 8
        return 0

    def _send(self, now):
        de = self.de_pin
        if de is not None:
            de.value(1)
        self.uart.write(self._req)
        if de is not None:
            self.uart.flush()  # returns when the last stop bit has left
            de.value(0)
        tx_ms = (wire_us(8, self.baud) + 999) // 1000
        self._n = 0
        self._last_activity = ticks_add(now, tx_ms)
        self._deadline = ticks_add(now, tx_ms + self.timeout_ms)
        self._noise_at_send = self.noise_bytes
        self._receiving = True

    def _finish(self, now, start, length):
        """The request's one event: the frame at rx[start:start+length] judged, or (start -1)
        the time-out. Either way the master is ready for the next request."""
        self._receiving = self.busy = False
        self._last_activity = now
        try:
            if start < 0:
                garbage = self.noise_bytes - self._noise_at_send
                if garbage:  # something answered, but nothing that was a frame of ours
                    raise ModbusError("garbage: %d bytes, no valid answer from slave %d "
                                      "within %d ms" % (garbage, self._slave, self.timeout_ms))
                raise ModbusTimeout(
                    "no answer from slave %d within %d ms" % (self._slave, self.timeout_ms))
            return (REGISTERS, parse_response(
                memoryview(self._rx)[start:], length, self._slave, self._fc, self._count))
        except ModbusError as e:
            return self._fail(now, e)

    def _fail(self, now, err):
        """End the request with `err` (counted); the master is ready for the next one."""
        self._receiving = self.busy = False
        self.errors += 1
        return (ERROR, err)
