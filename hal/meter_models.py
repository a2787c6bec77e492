"""The Modbus meter table: adding a model is one new row in MODELS.

Each field of a row is (key, function code, register, type, word order, exp): the register value
times 10**exp is the quantity in the unit the key names (`energy_wh` in Wh, `power_w` in W,
`voltage_v` in V, `current_a` in A; `_l2`/`_l3` keys are the other phases).
Register facts: reference/hardware.md section 3 and volkszaehler/mbmd meters/rs485/*.go.
Boot-time only: `hal.meters.Meter` copies the request plan of its model at construction, and
`firmware.config` validates the model name, so the shell can drop this module after start-up.
"""

from hal.compat import const
from hal.modbus import MAX_REGS

# Register types.
U16 = const(1)
I16 = const(2)
U32 = const(3)
I32 = const(4)
U64 = const(5)
F32 = const(6)
WORDS = {U16: 1, I16: 1, U32: 2, I32: 2, U64: 4, F32: 2}  # registers per type

# Word order of multi-register values (bytes within a register are always big-endian).
HI_FIRST = const(0)  # high word in the lower register address (Eastron, ABB, Orno)
LO_FIRST = const(1)  # low word first (Carlo Gavazzi EM340, Phoenix EEM)

FC3 = const(0x03)
FC4 = const(0x04)


def _phases(key, fc, reg, typ, exp):
    """The three fields of one per-phase quantity whose L1, L2, L3 registers follow each other
    (two registers apart): `voltage_v` at reg, `voltage_l2_v` at reg + 2, `voltage_l3_v` at
    reg + 4 (high word first, as every three-phase meter in the table has them)."""
    name, unit = key.rsplit("_", 1)
    return ((key, fc, reg, typ, HI_FIRST, exp),
            ("%s_l2_%s" % (name, unit), fc, reg + 2, typ, HI_FIRST, exp),
            ("%s_l3_%s" % (name, unit), fc, reg + 4, typ, HI_FIRST, exp))


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
        "fields": _phases("voltage_v", FC4, 0x0000, F32, 0)
        + _phases("current_a", FC4, 0x0006, F32, 0)
        + (
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
        )
        + _phases("voltage_v", FC3, 0x5B00, U32, -1)  # 0.1 V
        + _phases("current_a", FC3, 0x5B0C, U32, -2)  # 0.01 A
        + (("power_w", FC3, 0x5B14, I32, HI_FIRST, -2),),  # 0.01 W
    },
    # Orno WE-516/WE-517: FC 03 holding registers, float32 kWh / V / A, power in kW.
    # Default baud rate not in the fact sheet: 9600 is an assumption.
    "orno_we516": {
        "name": "Orno WE-516",
        "baud": 9600,
        "fields": _phases("voltage_v", FC3, 0x000E, F32, 0)
        + _phases("current_a", FC3, 0x0016, F32, 0)
        + (
            ("power_w", FC3, 0x001C, F32, HI_FIRST, 3),  # kW
            ("energy_wh", FC3, 0x0108, F32, HI_FIRST, 3),  # import; 0x0100 is the total
        ),
    },
}


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
