"""Modbus energy meters: decoding and the read cycle of one meter; the table is hal.meter_models.

A row's fields (key, function code, register, type, word order, exp) are described there.
`Meter` groups contiguous registers into one request and returns a reading only when every
field of one cycle has been read and decoded; energy is an exact integer in Wh, never rounded
through a float.
"""

import struct

from hal.compat import const, ticks_add, ticks_diff

# Register types and word orders: the numbers of hal.meter_models (U16..F32, HI_/LO_FIRST).
_I16 = const(2)
_I32 = const(4)
_U64 = const(5)
_F32 = const(6)
_HI_FIRST = const(0)


def words(typ):
    """Registers a value of type `typ` spans."""
    return 4 if typ == _U64 else 2 if typ > _I16 else 1



class MeterValueError(ValueError):
    """A register held a value that is no measurement (NaN, infinity, 'not available')."""


# -- pure decoding helpers -----------------------------------------------------------------
def unsigned(regs, i, nwords, order):
    """The unsigned integer in regs[i:i+nwords] with the given word order."""
    v = 0
    if order == _HI_FIRST:
        for k in range(nwords):
            v = (v << 16) | regs[i + k]
    else:
        for k in range(nwords - 1, -1, -1):
            v = (v << 16) | regs[i + k]
    return v


def raw_value(regs, i, typ, order):
    """The register content as an int (F32: its 32 raw bits)."""
    nwords = words(typ)
    v = unsigned(regs, i, nwords, order)
    if typ == _I16 or typ == _I32:
        top = 1 << (16 * nwords - 1)
        if v & top:
            v -= top << 1
    return v


def float32(bits):
    """IEEE-754 single from its 32 bits (what a float32 register pair holds)."""
    return struct.unpack(">f", struct.pack(">I", bits))[0]


def float32_scaled_int(bits, exp):
    """round(float32(bits) * 10**exp) computed exactly with integers (ESP32 floats are single
    precision, so multiplying in float would lose Wh on large meter counts)."""
    e = (bits >> 23) & 0xFF
    if e == 0xFF:
        raise MeterValueError("float32 NaN or infinity (0x%08X)" % bits)
    m = bits & 0x7FFFFF
    if e:
        m |= 0x800000
    shift = (e or 1) - 150
    num = m
    den = 1
    if exp >= 0:
        num *= 10**exp
    else:
        den *= 10 ** (-exp)
    if shift >= 0:
        num <<= shift
    else:
        den <<= -shift
    v = (2 * num + den) // (2 * den)
    return -v if bits >> 31 else v


def scaled_int(raw, exp):
    """round(raw * 10**exp) for an integer register (half away from zero)."""
    if exp >= 0:
        return raw * 10**exp
    d = 10 ** (-exp)
    return (raw + d // 2) // d if raw >= 0 else -((-raw + d // 2) // d)


def is_sentinel(raw_unsigned, typ):
    """ABB-style 'not available': all ones (unsigned types) or the largest positive (signed)."""
    bits = 16 * words(typ)
    if typ == _I16 or typ == _I32:
        return raw_unsigned == (1 << (bits - 1)) - 1
    return raw_unsigned == (1 << bits) - 1


def field_value(regs, i, key, typ, order, exp, sentinels=False):
    """One decoded quantity: int Wh for `energy_wh`, a float for everything else."""
    if sentinels and is_sentinel(unsigned(regs, i, words(typ), order), typ):
        raise MeterValueError("%s: meter reports 'not available'" % key)
    raw = raw_value(regs, i, typ, order)
    if key == "energy_wh":
        wh = float32_scaled_int(raw, exp) if typ == _F32 else scaled_int(raw, exp)
        if wh < 0:
            raise MeterValueError("negative energy register %d" % wh)
        return wh
    if typ == _F32:
        f = float32(raw)
        if f != f or f in (float("inf"), float("-inf")):
            raise MeterValueError("%s: float32 NaN or infinity" % key)
        return round(f * 10**exp, 3) if exp else round(f, 3)
    if exp >= 0:
        return float(raw * 10**exp)
    return raw / 10 ** (-exp)


def decode_request(regs, fields, sentinels, out):
    """Decode one request's registers into `out` (a dict); raises MeterValueError."""
    for key, off, typ, order, exp in fields:
        out[key] = field_value(regs, off, key, typ, order, exp, sentinels)


def finish_reading(values):
    """Add the derived `energy_kwh` (3 decimals) to a complete set of values."""
    values["energy_kwh"] = round(values["energy_wh"] / 1000, 3)
    return values


_IDLE = const(0)
_READING = const(1)


class Meter:
    """Cycles through a model's requests on a ModbusMaster it owns.

    `poll(now)` -> None | ("reading", dict) | ("error", exc). After `max_errors` consecutive
    errors `failed` is True (the firmware raises a meter fault); one good reading clears it.
    """

    def __init__(self, master, model, address, interval_ms=1000, max_errors=3):
        from hal import meter_models  # boot time only: the plan is copied, the table not kept

        if isinstance(model, str):
            if model not in meter_models.MODELS:
                raise ValueError("unknown meter model %r" % model)
            model = meter_models.MODELS[model]
        if not 1 <= address <= 247:
            raise ValueError("meter address must be 1..247")
        if interval_ms < 0 or max_errors < 1:
            raise ValueError("interval_ms must be >= 0 and max_errors >= 1")
        self.master = master
        self.model = model
        self.address = address
        self.interval_ms = interval_ms
        self.max_errors = max_errors
        self.plan = meter_models.plan_requests(model)
        self._sentinels = bool(model.get("sentinels", False))
        self._state = _IDLE
        self._idx = 0
        self._values = None
        self._next = None  # tick the next cycle may start at; None = at once
        self.consecutive_errors = 0
        self.errors = 0
        self.readings = 0

    @property
    def failed(self):
        return self.consecutive_errors >= self.max_errors

    def _start(self, now):
        fc, reg, count, _ = self.plan[self._idx]
        self.master.start(self.address, fc, reg, count, now)

    def poll(self, now):
        if self._state == _IDLE:
            if self._next is not None and ticks_diff(now, self._next) < 0:
                return None
            self._next = ticks_add(now, self.interval_ms)
            self._idx = 0
            self._values = {}
            self._state = _READING
            self._start(now)
        event = self.master.poll(now)
        if event is None:
            return None
        if event[0] == "ok":
            try:
                decode_request(event[1], self.plan[self._idx][3], self._sentinels, self._values)
            except MeterValueError as e:
                return self._error(e)
            self._idx += 1
            if self._idx < len(self.plan):
                self._start(now)
                return None
            self._state = _IDLE
            values = self._values
            self._values = None
            self.consecutive_errors = 0
            self.readings += 1
            return ("reading", finish_reading(values))
        return self._error(event[1])

    def _error(self, exc):
        """Drop the partial cycle: a reading never mixes values from two cycles."""
        self._state = _IDLE
        self._values = None
        self.consecutive_errors += 1
        self.errors += 1
        return ("error", exc)

