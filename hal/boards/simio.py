"""Client side of the simulator I/O channel ("simio"): pilot, contactor and PP over one stream.

Off target (unix port, CPython) the host simulator plays the EV and the contactor on a
pseudo-terminal speaking `\\n`-terminated ASCII lines, one space between fields, EVSE 1-based:
  firmware -> sim:  hello | pwm <evse> <permille> | coil <evse> <0|1>
  sim -> firmware:  cp <evse> <high_mv> <low_mv> | pp <evse> <ohms> | mirror <evse> <0|1>
(`pp <evse> 0` means open / no cable; a short is a small non-zero value such as 1; mirror 1 =
auxiliary NC contact closed = main contacts open.)

`SimIO` turns that into Pin/PWM/ADC-like `SimLine`s so the REAL Contactor, Pilot and Proximity
drivers run unchanged: the CP "ADC" synthesises samples from the last `cp` plateaus and the
current duty (duty/1000 of the samples at the high level, the rest low) through the same divider
functions the pilot driver inverts, plus a little noise, so its peak detection is exercised.
Needs only a stream with read/write/any; garbled lines are counted and dropped, never raised.
One class serves every role, branching on it: five role classes measured 1536 B more heap in
the deployed form (tools/heap_report.py --flat: 3392 B against 1856 B), out of the simulator's
128k that stands in for the ESP32's.
"""

from hal.compat import const
from hal.iec61851 import PWM_HZ
from hal.pilot import uv_from_cp_mv, uv_from_pp_ohms

MAX_LINE = const(64)
CP_LIMIT_MV = const(20000)  # a CP plateau beyond +-20 V is not a measurement
ADC_MAX_UV = const(3300000)
_NOISE_UV = const(8000)  # uniform +-8 mV on every ADC sample
_PHASE_STEP = const(37)  # prime step through the 1000-step PWM period: even coverage
_PUMP_EVERY = const(32)  # CP reads between two looks at the stream
_READS_WRAP = const(32000)  # a multiple of 1000 and of _PUMP_EVERY


def parse_line(line, evses):
    """One sim -> firmware line (bytes, no newline) -> (kind, evse, a, b); ValueError naming
    the line if it is not one of the three kinds with strict decimal fields in range (int()
    alone would accept b'+1', b'1_0' or spaces)."""
    fields = line.split(b" ")
    nums = []
    for f in fields[1:]:
        digits = f[1:] if f[:1] == b"-" else f
        if not digits.isdigit():
            raise ValueError(line)
        nums.append(int(f))
    kind = fields[0]
    n = len(nums)
    if kind == b"cp" and n == 3 and -CP_LIMIT_MV <= nums[1] <= CP_LIMIT_MV \
            and -CP_LIMIT_MV <= nums[2] <= CP_LIMIT_MV:
        b = nums[2]
    elif (kind == b"pp" and n == 2 and nums[1] >= 0) or \
            (kind == b"mirror" and n == 2 and 0 <= nums[1] <= 1):
        b = None
    else:
        raise ValueError(line)
    if not 1 <= nums[0] <= evses:
        raise ValueError(line)
    return (kind.decode(), nums[0], nums[1], b)


class SimIO:
    """State of the simulated CP/PP/mirror lines per EVSE, fed by `pump()`; the drivers take
    `SimLine(sio, evse, role)` objects as their pins, PWM and ADCs."""

    def __init__(self, stream, evses=1, hello=True):
        if evses < 1:
            raise ValueError("evses must be >= 1")
        self._stream = stream
        self.evses = evses
        # Until the sim answers `hello`: nothing plugged in, contactor open, +12 V steady.
        self.cp = [(12000, 12000)] * evses
        self.pp = [0] * evses
        self.mirror = [1] * evses
        self.duty = [1000] * evses
        self._sent = [None] * (2 * evses)  # last pwm, coil value sent for each EVSE
        self.garbage = 0  # lines dropped (bad syntax, unknown kind, too long)
        self._buf = bytearray(MAX_LINE)
        self._len = 0  # MAX_LINE + 1: the line is too long, dropped at its newline
        self._reads = 0
        self._rng = 0x2545F491
        if hello:
            stream.write(b"hello\n")

    def pump(self):
        """Apply whatever complete lines have arrived; never blocks. Returns lines applied."""
        n = self._stream.any()
        data = self._stream.read(n) if n else None
        if not data:
            return 0
        applied = 0
        buf = self._buf
        for c in data:
            if c != 10:  # not '\n'
                if self._len < MAX_LINE:
                    buf[self._len] = c
                    self._len += 1
                else:
                    self._len = MAX_LINE + 1
                continue
            n = self._len
            self._len = 0
            if 0 < n <= MAX_LINE and buf[n - 1] == 13:  # tolerate "\r\n"
                n -= 1
            if not n:
                continue
            try:
                if n > MAX_LINE:
                    raise ValueError("too long")
                kind, evse, a, b = parse_line(bytes(buf[:n]), self.evses)
            except ValueError:
                self.garbage += 1
                continue
            if kind == "cp":
                self.cp[evse - 1] = (a, b)
            elif kind == "pp":
                self.pp[evse - 1] = a
            else:
                self.mirror[evse - 1] = a
            applied += 1
        return applied

    def send(self, fmt, k, v):
        """Tell the sim `fmt % (evse, v)` if `v` is not what was last sent in slot `k`."""
        if self._sent[k] != v:
            self._sent[k] = v
            self._stream.write(fmt % (k // 2 + 1, v))


class SimLine:
    """EVSE `evse`'s line (1-based, as on the wire) in the role its driver expects: a "coil" or
    "mirror" pin (value), the CP
    "pwm" (freq, duty_u16: sends `pwm` when the duty changes), a "cp" or "pp" ADC (read_uv)."""

    def __init__(self, sio, evse, role):
        if not 1 <= evse <= sio.evses:
            raise ValueError("evse must be 1..%d" % sio.evses)
        self.sio = sio
        self.i = evse - 1
        self.role = role

    def value(self, v=None):
        """The coil: value(v) tells the sim, value() reads back the last setting. The mirror:
        what the sim last reported (the stream is pumped first)."""
        sio = self.sio
        if self.role == "mirror":
            if v is not None:
                raise ValueError("mirror is an input")
            sio.pump()
            return sio.mirror[self.i]
        if v is None:
            return sio._sent[2 * self.i + 1]
        sio.send(b"coil %d %d\n", 2 * self.i + 1, 1 if v else 0)
        return None

    def freq(self, hz):
        if hz != PWM_HZ:
            raise ValueError("simio models a 1 kHz pilot only")

    def duty_u16(self, v):
        if not 0 <= v <= 65535:
            raise ValueError("duty_u16 out of range")
        permille = (v * 1000 + 32767) // 65535  # exact inverse of the pilot's rounding
        self.sio.duty[self.i] = permille
        self.sio.send(b"pwm %d %d\n", 2 * self.i, permille)

    def read_uv(self):
        """CP: walks through the PWM period and returns that plateau; PP: the reported
        resistance through the PP pull-up divider. Plus xorshift32 noise (deterministic)."""
        sio = self.sio
        i = self.i
        if self.role == "pp":
            sio.pump()
            ohms = sio.pp[i]
            uv = uv_from_pp_ohms(ohms if ohms > 0 else None)
        else:
            k = (sio._reads + 1) % _READS_WRAP
            sio._reads = k
            if k % _PUMP_EVERY == 0:
                sio.pump()
            high, low = sio.cp[i]
            uv = uv_from_cp_mv(high if k * _PHASE_STEP % 1000 < sio.duty[i] else low)
        x = sio._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        sio._rng = x
        uv += x % (2 * _NOISE_UV + 1) - _NOISE_UV
        return 0 if uv < 0 else (ADC_MAX_UV if uv > ADC_MAX_UV else uv)
