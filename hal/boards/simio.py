"""Client side of the simulator I/O channel ("simio"): pilot, contactor and PP over one stream.

Off target (unix port, CPython) the host simulator plays the EV and the contactor on a
pseudo-terminal speaking `\\n`-terminated ASCII lines, one space between fields, EVSE 1-based:
  firmware -> sim:  hello | pwm <evse> <permille> | coil <evse> <0|1>
  sim -> firmware:  cp <evse> <high_mv> <low_mv> | pp <evse> <ohms> | mirror <evse> <0|1>
(`pp <evse> 0` means open / no cable; a short is a small non-zero value such as 1; mirror 1 =
auxiliary NC contact closed = main contacts open.)

`SimIO` turns that into Pin/PWM/ADC-like objects so the REAL Contactor, Pilot and Proximity
drivers run unchanged: the CP "ADC" synthesises samples from the last `cp` plateaus and the
current duty (duty/1000 of the samples at the high level, the rest low) through the same divider
functions the pilot driver inverts, plus a little noise, so its peak detection is exercised.
Needs only a stream with read/write/any; garbled lines are counted and dropped, never raised.
"""

from hal.compat import const
from hal.pilot import CP_DIVIDER, PP_DIVIDER, uv_from_cp_mv, uv_from_pp_ohms

MAX_LINE = const(64)
CP_LIMIT_MV = const(20000)  # a CP plateau beyond +-20 V is not a measurement
ADC_MAX_UV = const(3300000)
_PHASE_STEP = const(37)  # prime step through the 1000-step PWM period: even coverage
_PUMP_EVERY = const(32)  # CP reads between two looks at the stream


def parse_int(field):
    """Strict signed decimal (no '+', '_', spaces): int() alone would accept b'1_0'."""
    n = len(field)
    start = 1 if n > 1 and field[0] == 45 else 0  # 45 = '-'
    if n == start:
        raise ValueError("empty number")
    for i in range(start, n):
        c = field[i]
        if c < 48 or c > 57:
            raise ValueError("not a number")
    return int(field)


def parse_line(line, evses):
    """One sim -> firmware line (bytes, no newline) -> (kind, evse, a, b); ValueError if bad."""
    fields = line.split(b" ")
    kind = fields[0]
    if kind == b"cp":
        if len(fields) != 4:
            raise ValueError("cp needs 3 fields")
        a = parse_int(fields[2])
        b = parse_int(fields[3])
        if not (-CP_LIMIT_MV <= a <= CP_LIMIT_MV and -CP_LIMIT_MV <= b <= CP_LIMIT_MV):
            raise ValueError("cp level out of range")
        name = "cp"
    elif kind == b"pp" or kind == b"mirror":
        if len(fields) != 3:
            raise ValueError("needs 2 fields")
        a = parse_int(fields[2])
        b = None
        if kind == b"pp":
            if a < 0:
                raise ValueError("negative ohms")
            name = "pp"
        else:
            if a != 0 and a != 1:
                raise ValueError("mirror must be 0 or 1")
            name = "mirror"
    else:
        raise ValueError("unknown line")
    evse = parse_int(fields[1])
    if evse < 1 or evse > evses:
        raise ValueError("no such evse")
    return (name, evse, a, b)


def format_pwm(evse, permille):
    return b"pwm %d %d\n" % (evse, permille)


def format_coil(evse, on):
    return b"coil %d %d\n" % (evse, 1 if on else 0)


def permille_from_u16(duty_u16):
    """Exact inverse of the pilot's round(permille / 1000 * 65535) for 0..1000."""
    return (duty_u16 * 1000 + 32767) // 65535


class SimIO:
    """State of the simulated CP/PP/mirror lines per EVSE, fed by `pump()`."""

    def __init__(self, stream, evses=1, noise_uv=8000, cp_divider=CP_DIVIDER,
                 pp_divider=PP_DIVIDER, hello=True):
        if evses < 1:
            raise ValueError("evses must be >= 1")
        self._stream = stream
        self.evses = evses
        self.noise_uv = noise_uv
        self.cp_divider = cp_divider
        self.pp_divider = pp_divider
        # Until the sim answers `hello`: nothing plugged in, contactor open.
        self.cp = [(12000, 12000) for _ in range(evses)]
        self.pp = [0] * evses
        self.mirror = [1] * evses
        self.duty = [1000] * evses
        self.coil = [0] * evses
        self._sent_duty = [None] * evses
        self._sent_coil = [None] * evses
        self.lines = 0  # good lines applied
        self.garbage = 0  # lines dropped (bad syntax, unknown kind, too long)
        self.last_garbage = None  # (first bytes of) the last dropped line, for diagnostics
        self._buf = bytearray(MAX_LINE)
        self._len = 0
        self._overflow = False
        self._rng = 0x2545F491
        if hello:
            stream.write(b"hello\n")

    def pump(self):
        """Apply whatever complete lines have arrived; never blocks. Returns lines applied."""
        n = self._stream.any()
        if not n:
            return 0
        data = self._stream.read(n)
        if not data:
            return 0
        applied = 0
        buf = self._buf
        for c in data:
            if c == 10:  # '\n'
                if self._overflow:
                    self._drop(bytes(buf[:self._len]))
                elif self._len:
                    applied += self._apply(bytes(buf[:self._len]))
                self._len = 0
                self._overflow = False
            elif self._len < MAX_LINE:
                buf[self._len] = c
                self._len += 1
            else:
                self._overflow = True
        return applied

    def _apply(self, line):
        if line[-1] == 13:  # tolerate "\r\n"
            line = line[:-1]
            if not line:
                return 0
        try:
            name, evse, a, b = parse_line(line, self.evses)
        except ValueError:
            self._drop(line)
            return 0
        i = evse - 1
        if name == "cp":
            self.cp[i] = (a, b)
        elif name == "pp":
            self.pp[i] = a
        else:
            self.mirror[i] = a
        self.lines += 1
        return 1

    def _drop(self, line):
        self.garbage += 1
        self.last_garbage = line

    def set_pwm(self, evse, permille):
        i = evse - 1
        self.duty[i] = permille
        if self._sent_duty[i] != permille:
            self._stream.write(format_pwm(evse, permille))
            self._sent_duty[i] = permille

    def set_coil(self, evse, on):
        i = evse - 1
        v = 1 if on else 0
        self.coil[i] = v
        if self._sent_coil[i] != v:
            self._stream.write(format_coil(evse, v))
            self._sent_coil[i] = v

    def noise(self):
        """Uniform integer in [-noise_uv, noise_uv] from a xorshift32 (deterministic)."""
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        amp = self.noise_uv
        return x % (2 * amp + 1) - amp if amp else 0

    # Factories: EVSE numbers are 1-based, as on the wire.
    def coil_pin(self, evse):
        return SimCoil(self, self._check(evse))

    def mirror_pin(self, evse):
        return SimMirror(self, self._check(evse))

    def pwm(self, evse):
        return SimPWM(self, self._check(evse))

    def cp_adc(self, evse):
        return SimCpADC(self, self._check(evse))

    def pp_adc(self, evse):
        return SimPpADC(self, self._check(evse))

    def _check(self, evse):
        if evse < 1 or evse > self.evses:
            raise ValueError("evse must be 1..%d" % self.evses)
        return evse


def _clip_uv(uv):
    return 0 if uv < 0 else (ADC_MAX_UV if uv > ADC_MAX_UV else uv)


class SimCoil:
    """Output pin: value(v) tells the sim; value() reads back the last setting."""

    __slots__ = ("_sio", "_evse")

    def __init__(self, sio, evse):
        self._sio = sio
        self._evse = evse

    def value(self, v=None):
        if v is None:
            return self._sio.coil[self._evse - 1]
        self._sio.set_coil(self._evse, v)
        return None


class SimMirror:
    """Input pin: the mirror contact as the sim last reported it (pumps the stream first)."""

    __slots__ = ("_sio", "_i")

    def __init__(self, sio, evse):
        self._sio = sio
        self._i = evse - 1

    def value(self, v=None):
        if v is not None:
            raise ValueError("mirror is an input")
        self._sio.pump()
        return self._sio.mirror[self._i]


class SimPWM:
    """PWM-like: duty_u16(v) sends `pwm <evse> <permille>` when the duty changes."""

    __slots__ = ("_sio", "_evse", "_freq", "_u16")

    def __init__(self, sio, evse):
        self._sio = sio
        self._evse = evse
        self._freq = 1000
        self._u16 = 65535

    def freq(self, hz=None):
        if hz is None:
            return self._freq
        self._freq = hz
        return None

    def duty_u16(self, v=None):
        if v is None:
            return self._u16
        if v < 0 or v > 65535:
            raise ValueError("duty_u16 out of range")
        self._u16 = v
        self._sio.set_pwm(self._evse, permille_from_u16(v))
        return None


class SimCpADC:
    """ADC-like CP sense: read_uv() walks through the PWM period and returns that plateau."""

    __slots__ = ("_sio", "_i", "_phase", "_n")

    def __init__(self, sio, evse):
        self._sio = sio
        self._i = evse - 1
        self._phase = 0
        self._n = 0

    def read_uv(self):
        sio = self._sio
        self._n += 1
        if self._n >= _PUMP_EVERY:
            self._n = 0
            sio.pump()
        self._phase = (self._phase + _PHASE_STEP) % 1000
        high, low = sio.cp[self._i]
        level = high if self._phase < sio.duty[self._i] else low
        return _clip_uv(uv_from_cp_mv(level, sio.cp_divider) + sio.noise())


class SimPpADC:
    """ADC-like PP sense: the reported resistance through the PP pull-up divider."""

    __slots__ = ("_sio", "_i")

    def __init__(self, sio, evse):
        self._sio = sio
        self._i = evse - 1

    def read_uv(self):
        sio = self._sio
        sio.pump()
        ohms = sio.pp[self._i]
        uv = uv_from_pp_ohms(ohms if ohms > 0 else None, sio.pp_divider)
        return _clip_uv(uv + sio.noise())
