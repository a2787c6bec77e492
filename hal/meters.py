"""Modbus energy meters as data: adding a model is one new row in MODELS.

Each field of a row is (key, function code, register, type, word order, exp): the register value
times 10**exp is the quantity in the unit the key names (`energy_wh` in Wh, `power_w` in W,
`voltage_v` in V, `current_a` in A; `_l2`/`_l3` keys are the other phases). `Meter` groups
contiguous registers into one request and returns a reading only when every field of one cycle
has been read and decoded; energy is an exact integer in Wh, never rounded through a float.
Register facts: reference/hardware.md section 3 and volkszaehler/mbmd meters/rs485/*.go.
"""

import struct

from hal.compat import const, ticks_add, ticks_diff
from hal.modbus import MAX_REGS

# Register types.
U16 = const(1)
I16 = const(2)
U32 = const(3)
I32 = const(4)
U64 = const(5)
F32 = const(6)
WORDS = {U16: 1, I16: 1, U32: 2, I32: 2, U64: 4, F32: 2}

# Word order of multi-register values (bytes within a register are always big-endian).
HI_FIRST = const(0)  # high word in the lower register address (Eastron, ABB, Orno)
LO_FIRST = const(1)  # low word first (Carlo Gavazzi EM340, Phoenix EEM)

FC3 = const(0x03)
FC4 = const(0x04)

MODELS = {
    # Eastron: FC 04 input registers, float32 high word first, energy in kWh (hardware.md 3.2).
    "sdm120": {
        "name": "Eastron SDM120-Modbus",
        "baud": 2400,
        "fields": (
            ("voltage_v", FC4, 0x0000, F32, HI_FIRST, 0),
            ("current_a", FC4, 0x0006, F32, HI_FIRST, 0),
            ("power_w", FC4, 0x000C, F32, HI_FIRST, 0),
            ("energy_wh", FC4, 0x0048, F32, HI_FIRST, 3),
        ),
    },
    "sdm630": {
        "name": "Eastron SDM630 v2",
        "baud": 9600,
        "max_regs": 80,  # SmartEVSE: "max read count 80"
        "fields": (
            ("voltage_v", FC4, 0x0000, F32, HI_FIRST, 0),
            ("voltage_l2_v", FC4, 0x0002, F32, HI_FIRST, 0),
            ("voltage_l3_v", FC4, 0x0004, F32, HI_FIRST, 0),
            ("current_a", FC4, 0x0006, F32, HI_FIRST, 0),
            ("current_l2_a", FC4, 0x0008, F32, HI_FIRST, 0),
            ("current_l3_a", FC4, 0x000A, F32, HI_FIRST, 0),
            ("power_w", FC4, 0x0034, F32, HI_FIRST, 0),  # total of the three phases
            ("energy_wh", FC4, 0x0048, F32, HI_FIRST, 3),
        ),
    },
    # ABB B23: FC 03, integers; all-ones (unsigned) or 0x7FFF... (signed) mean "not available".
    # Default baud rate is not in the fact sheet: 9600 is an assumption, check the meter's menu.
    "abb_b23": {
        "name": "ABB B23",
        "baud": 9600,
        "sentinels": True,
        "fields": (
            ("energy_wh", FC3, 0x5000, U64, HI_FIRST, 1),  # 0.01 kWh
            ("voltage_v", FC3, 0x5B00, U32, HI_FIRST, -1),
            ("voltage_l2_v", FC3, 0x5B02, U32, HI_FIRST, -1),
            ("voltage_l3_v", FC3, 0x5B04, U32, HI_FIRST, -1),
            ("current_a", FC3, 0x5B0C, U32, HI_FIRST, -2),
            ("current_l2_a", FC3, 0x5B0E, U32, HI_FIRST, -2),
            ("current_l3_a", FC3, 0x5B10, U32, HI_FIRST, -2),
            ("power_w", FC3, 0x5B14, I32, HI_FIRST, -2),
        ),
    },
    # Orno WE-516/WE-517: FC 03 holding registers, float32 kWh / V / A, power in kW.
    # Default baud rate not in the fact sheet: 9600 is an assumption.
    "orno_we516": {
        "name": "Orno WE-516",
        "baud": 9600,
        "fields": (
            ("voltage_v", FC3, 0x000E, F32, HI_FIRST, 0),
            ("voltage_l2_v", FC3, 0x0010, F32, HI_FIRST, 0),
            ("voltage_l3_v", FC3, 0x0012, F32, HI_FIRST, 0),
            ("current_a", FC3, 0x0016, F32, HI_FIRST, 0),
            ("current_l2_a", FC3, 0x0018, F32, HI_FIRST, 0),
            ("current_l3_a", FC3, 0x001A, F32, HI_FIRST, 0),
            ("power_w", FC3, 0x001C, F32, HI_FIRST, 3),  # kW
            ("energy_wh", FC3, 0x0108, F32, HI_FIRST, 3),  # import; 0x0100 is the total
        ),
    },
}


class MeterValueError(ValueError):
    """A register held a value that is no measurement (NaN, infinity, 'not available')."""


# -- pure decoding helpers -----------------------------------------------------------------
def unsigned(regs, i, nwords, order):
    """The unsigned integer in regs[i:i+nwords] with the given word order."""
    v = 0
    if order == HI_FIRST:
        for k in range(nwords):
            v = (v << 16) | regs[i + k]
    else:
        for k in range(nwords - 1, -1, -1):
            v = (v << 16) | regs[i + k]
    return v


def raw_value(regs, i, typ, order):
    """The register content as an int (F32: its 32 raw bits)."""
    nwords = WORDS[typ]
    v = unsigned(regs, i, nwords, order)
    if typ == I16 or typ == I32:
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
    bits = 16 * WORDS[typ]
    if typ == I16 or typ == I32:
        return raw_unsigned == (1 << (bits - 1)) - 1
    return raw_unsigned == (1 << bits) - 1


def field_value(regs, i, key, typ, order, exp, sentinels=False):
    """One decoded quantity: int Wh for `energy_wh`, a float for everything else."""
    if sentinels and is_sentinel(unsigned(regs, i, WORDS[typ], order), typ):
        raise MeterValueError("%s: meter reports 'not available'" % key)
    raw = raw_value(regs, i, typ, order)
    if key == "energy_wh":
        wh = float32_scaled_int(raw, exp) if typ == F32 else scaled_int(raw, exp)
        if wh < 0:
            raise MeterValueError("negative energy register %d" % wh)
        return wh
    if typ == F32:
        f = float32(raw)
        if f != f or f in (float("inf"), float("-inf")):
            raise MeterValueError("%s: float32 NaN or infinity" % key)
        return round(f * 10**exp, 3) if exp else round(f, 3)
    if exp >= 0:
        return float(raw * 10**exp)
    return raw / 10 ** (-exp)


def plan_requests(model):
    """Group a model's fields into reads: same function code and contiguous registers share
    one request (up to the model's or Modbus' register limit).

    Returns a tuple of (fc, reg, count, ((key, offset, typ, order, exp), ...)).
    """
    limit = model.get("max_regs", MAX_REGS)
    fields = sorted(model["fields"], key=lambda f: (f[1], f[2]))
    plan = []
    cur = None
    for key, fc, reg, typ, order, exp in fields:
        n = WORDS[typ]
        if cur is not None and cur[0] == fc and cur[1] + cur[2] == reg and cur[2] + n <= limit:
            cur[3].append((key, reg - cur[1], typ, order, exp))
            cur[2] += n
            continue
        if cur is not None:
            plan.append((cur[0], cur[1], cur[2], tuple(cur[3])))
        cur = [fc, reg, n, [(key, 0, typ, order, exp)]]
    if cur is not None:
        plan.append((cur[0], cur[1], cur[2], tuple(cur[3])))
    return tuple(plan)


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
        if isinstance(model, str):
            if model not in MODELS:
                raise ValueError("unknown meter model %r" % model)
            model = MODELS[model]
        if not 1 <= address <= 247:
            raise ValueError("meter address must be 1..247")
        if interval_ms < 0 or max_errors < 1:
            raise ValueError("interval_ms must be >= 0 and max_errors >= 1")
        self.master = master
        self.model = model
        self.address = address
        self.interval_ms = interval_ms
        self.max_errors = max_errors
        self.plan = plan_requests(model)
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

