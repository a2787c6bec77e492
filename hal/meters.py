"""Modbus energy meters: decoding and the read cycle of one meter; the table is hal.meter_models.

A row's fields (key, function code, register, type, word order, exp) are described there.
`Meter` groups contiguous registers into one request and returns a reading only when every
field of one cycle has been read and decoded; energy is an exact integer in Wh, never rounded
through a float.
"""

import struct

from hal.compat import const, ticks_add, ticks_diff
from hal.kinds import ERROR, READING, REGISTERS

# Register types and word orders: the numbers of hal.meter_models (U16..F32, HI_/LO_FIRST).
_I16 = const(2)
_I32 = const(4)
_U64 = const(5)
_F32 = const(6)
_HI_FIRST = const(0)


class MeterValueError(ValueError):
    """A register held a value that is no measurement (NaN, infinity, 'not available')."""


# -- pure decoding helpers -----------------------------------------------------------------
def raw_value(regs, i, typ, order, sentinels=False):
    """The register content at regs[i] as an int (F32: its 32 raw bits).

    With `sentinels`, None for ABB-style 'not available': all ones (unsigned types) or the
    largest positive value (signed types)."""
    nwords = 4 if typ == _U64 else 2 if typ > _I16 else 1
    v = 0
    for k in range(nwords):
        v = (v << 16) | regs[i + (k if order == _HI_FIRST else nwords - 1 - k)]
    top = 1 << (16 * nwords - 1)
    if typ == _I16 or typ == _I32:
        if sentinels and v == top - 1:
            return None
        if v & top:
            v -= top << 1
    elif sentinels and v == (top << 1) - 1:
        return None
    return v


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


def field_value(regs, i, key, typ, order, exp, sentinels=False):
    """One decoded quantity: int Wh for `energy_wh`, a float for everything else.

    Integer registers are scaled by 10**exp, rounding half away from zero."""
    raw = raw_value(regs, i, typ, order, sentinels)
    if raw is None:
        raise MeterValueError("%s: not available" % key)
    if key == "energy_wh":
        if typ == _F32:
            wh = float32_scaled_int(raw, exp)
        elif exp >= 0:
            wh = raw * 10**exp
        else:
            d = 10 ** (-exp)
            wh = (raw + d // 2) // d if raw >= 0 else -((-raw + d // 2) // d)
        if wh < 0:
            raise MeterValueError("negative energy register %d" % wh)
        return wh
    if typ == _F32:
        f = struct.unpack(">f", struct.pack(">I", raw))[0]
        if f != f or f in (float("inf"), float("-inf")):
            raise MeterValueError("%s: float32 NaN or infinity" % key)
        return round(f * 10**exp, 3) if exp else round(f, 3)
    if exp >= 0:
        return float(raw * 10**exp)
    return raw / 10 ** (-exp)


class Meter:
    """Cycles through a model's requests on a ModbusMaster it owns.

    `poll(now)` -> None | (READING, dict) | (ERROR, exc) (hal.kinds). After `max_errors`
    consecutive errors `failed` is True (the firmware raises a meter fault); one good reading
    clears it.
    """

    def __init__(self, master, model, address, interval_ms=1000, max_errors=3):
        from hal import meter_models  # boot time only: the plan is copied, the table not kept

        if isinstance(model, str):
            if model not in meter_models.MODELS:
                raise ValueError("unknown meter model %r" % model)
            model = meter_models.MODELS[model]
        if not 1 <= address <= 247:
            raise ValueError("address 1..247")
        if interval_ms < 0 or max_errors < 1:
            raise ValueError("interval_ms < 0 or max_errors < 1")
        self.master = master
        self.address = address
        self.interval_ms = interval_ms
        self.max_errors = max_errors
        self.plan = meter_models.plan_requests(model)
        self._sentinels = bool(model.get("sentinels", False))
        self._idx = 0
        self._values = None  # the cycle's values so far; None between cycles
        self._next = None  # tick the next cycle may start at; None = at once
        self.consecutive_errors = 0
        self.failed = False  # consecutive_errors reached max_errors
        self.errors = 0
        self.readings = 0

    def _start(self, now):
        fc, reg, count, _ = self.plan[self._idx]
        self.master.start(self.address, fc, reg, count, now)

    def poll(self, now):
        if self._values is None:
            if self._next is not None and ticks_diff(now, self._next) < 0:
                return None
            self._next = ticks_add(now, self.interval_ms)
            self._idx = 0
            self._values = {}
            self._start(now)
        event = self.master.poll(now)
        if event is None:
            return None
        kind, data = event
        if kind == REGISTERS:
            regs = data
            values = self._values
            try:
                for key, off, typ, order, exp in self.plan[self._idx][3]:
                    values[key] = field_value(regs, off, key, typ, order, exp, self._sentinels)
            except MeterValueError as e:
                return self._error(e)
            self._idx += 1
            if self._idx < len(self.plan):
                self._start(now)
                return None
            self._values = None
            self.consecutive_errors = 0
            self.failed = False
            self.readings += 1
            values["energy_kwh"] = round(values["energy_wh"] / 1000, 3)
            return (READING, values)
        return self._error(data)

    def abort(self):
        """Drop the cycle in progress (its bus was restarted); the next poll starts a new one."""
        self._values = None
        self._next = None

    def _error(self, exc):
        """Drop the partial cycle: a reading never mixes values from two cycles."""
        self._values = None
        self.consecutive_errors += 1
        self.failed = self.consecutive_errors >= self.max_errors
        self.errors += 1
        return (ERROR, exc)
