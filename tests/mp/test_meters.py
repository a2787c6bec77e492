"""Meter table: decoding helpers, one golden reading per table row, request grouping and the
Meter cycle with errors. Runs on CPython and on the MicroPython unix port."""

from hal.kinds import ERROR, READING
from hal.meter_models import F32, HI_FIRST, I16, I32, LO_FIRST, MODELS, U16, U32, U64, plan_requests
from hal.meters import (
    Meter,
    MeterValueError,
    field_value,
    float32_scaled_int,
    raw_value,
)
from hal.modbus import ModbusException, ModbusMaster, ModbusTimeout
from tests.mp.test_modbus_fake import FakeUart, RegisterSlave, drive, put, with_crc


def test_integer_decoding_both_word_orders():
    assert raw_value((0x0001, 0x0002), 0, U32, HI_FIRST) == 0x00010002
    assert raw_value((0x0001, 0x0002), 0, U32, LO_FIRST) == 0x00020001
    assert raw_value((0xFFFA, 0x6280), 0, I32, HI_FIRST) == -368000
    assert raw_value((0x6280, 0xFFFA), 0, I32, LO_FIRST) == -368000
    assert raw_value((0, 0, 0x12, 0xD687), 0, U64, HI_FIRST) == 1234567
    assert raw_value((0xD687, 0x12, 0, 0), 0, U64, LO_FIRST) == 1234567
    assert raw_value((0xFFFF,), 0, I16, HI_FIRST) == -1
    assert raw_value((0xFFFF,), 0, U16, HI_FIRST) == 65535
    assert raw_value((9, 0x4366, 0x0000), 1, F32, HI_FIRST) == 0x43660000
    assert raw_value((0x0000, 0x4366), 0, F32, LO_FIRST) == 0x43660000


def test_float32_and_exact_scaling():
    # the fact sheet's 230.0 V reply
    assert field_value((0x4366, 0x0000), 0, "voltage_v", F32, HI_FIRST, 0) == 230.0
    assert field_value((0x0000, 0xC000), 0, "power_w", F32, LO_FIRST, 0) == -2.0
    table = (
        (0x4145851F, 3, 12345),  # 12.345 kWh -> 12345 Wh
        (0x47C0E6B7, 3, 98765430),  # 98765.4296875 kWh (float32 of 98765.432)
        (0x3F000000, 0, 1),  # 0.5 rounds half up
        (0x00000000, 3, 0),
        (0x80000000, 3, 0),  # -0.0
        (0x00000001, 3, 0),  # smallest subnormal
        (0xC0000000, 2, -200),
        (0x45660000, -3, 4),  # 3680 / 1000 = 3.68 -> 4
    )
    for bits, exp, want in table:
        assert float32_scaled_int(bits, exp) == want, (hex(bits), exp)
    for bits in (0x7F800000, 0xFF800000, 0x7FC00000):
        try:
            float32_scaled_int(bits, 3)
        except MeterValueError:
            continue
        raise AssertionError("accepted %x" % bits)
    # integer energy registers: exact, half away from zero
    assert field_value((0x12, 0xD687), 0, "energy_wh", U32, HI_FIRST, 1) == 12345670
    assert field_value((1235,), 0, "energy_wh", U16, HI_FIRST, -1) == 124
    assert field_value((1234,), 0, "energy_wh", U16, HI_FIRST, -1) == 123
    for regs, raw, want in (((0xFFFF, 0xFB2D), -1235, -124), ((0xFFFF, 0xFB2E), -1234, -123)):
        assert raw_value(regs, 0, I32, HI_FIRST) == raw
        try:
            field_value(regs, 0, "energy_wh", I32, HI_FIRST, -1)
        except MeterValueError as e:
            assert str(e) == "negative energy register %d" % want, e
        else:
            raise AssertionError("negative energy accepted")


def test_field_values_and_errors():
    assert field_value((2301, 0), 0, "voltage_v", U16, HI_FIRST, -1) == 230.1
    assert field_value((0, 2301), 0, "voltage_v", U32, HI_FIRST, -1) == 230.1
    assert field_value((0x406B, 0x851F), 0, "power_w", F32, HI_FIRST, 3) == 3680.0
    assert field_value((0x4366, 0x199A), 0, "voltage_v", F32, HI_FIRST, 0) == 230.1
    bad = (
        ((0x7FC0, 0), "power_w", F32, 0, False),  # NaN
        ((0xFFFF, 0xFFFF), "voltage_v", U32, -1, True),  # ABB 'not available'
        ((0x7FFF, 0xFFFF), "power_w", I32, -2, True),
        ((0xBF80, 0x0000), "energy_wh", F32, 3, False),  # -1 kWh
    )
    for regs, key, typ, exp, sentinels in bad:
        try:
            field_value(regs, 0, key, typ, HI_FIRST, exp, sentinels)
        except MeterValueError as e:
            assert key in str(e) or "energy" in str(e), e
            continue
        raise AssertionError("accepted %r" % (regs,))
    # sentinels only when the model declares them: all ones is a value otherwise
    assert raw_value((0xFFFF, 0xFFFF), 0, U32, HI_FIRST, True) is None
    assert raw_value((0x7FFF, 0xFFFF), 0, I32, HI_FIRST, True) is None
    assert raw_value((0xFFFF, 0xFFFF), 0, I32, HI_FIRST, True) == -1
    assert raw_value((0xFFFF, 0xFFFF), 0, U32, HI_FIRST) == 0xFFFFFFFF


# One golden register map per table row and the reading it must give.
def _golden():
    sdm120 = {}
    put(sdm120, 0x0000, 0x4366199A)  # 230.1 V
    put(sdm120, 0x0006, 0x41800000)  # 16.0 A
    put(sdm120, 0x000C, 0x45660000)  # 3680.0 W
    put(sdm120, 0x0048, 0x4145851F)  # 12.345 kWh
    sdm630 = dict(sdm120)
    put(sdm630, 0x0002, 0x43678000)  # 231.5 V
    put(sdm630, 0x0004, 0x43660000)  # 230.0 V
    put(sdm630, 0x0008, 0x41800000)
    put(sdm630, 0x000A, 0x3F000000)  # 0.5 A
    put(sdm630, 0x0034, 0x45660000)
    put(sdm630, 0x0048, 0x47C0E6B7)  # 98765.4296875 kWh
    abb = {}
    put(abb, 0x5000, 1234567, 4)  # 12345.67 kWh
    put(abb, 0x5B00, 2301)
    put(abb, 0x5B02, 2315)
    put(abb, 0x5B04, 2300)
    put(abb, 0x5B0C, 1600)
    put(abb, 0x5B0E, 1550)
    put(abb, 0x5B10, 50)
    put(abb, 0x5B14, 0xFFFA6280)  # -3680.00 W (exporting)
    orno = {}
    put(orno, 0x000E, 0x4366199A)
    put(orno, 0x0010, 0x43678000)
    put(orno, 0x0012, 0x43660000)
    put(orno, 0x0016, 0x41800000)
    put(orno, 0x0018, 0x41800000)
    put(orno, 0x001A, 0x3F000000)
    put(orno, 0x001C, 0x406B851F)  # 3.68 kW
    put(orno, 0x0108, 0x4145851F)
    one_phase = {"voltage_v": 230.1, "current_a": 16.0, "power_w": 3680.0}
    three = {"voltage_l2_v": 231.5, "voltage_l3_v": 230.0, "current_l2_a": 16.0,
             "current_l3_a": 0.5}
    return (
        ("sdm120", 4, sdm120, dict(one_phase, energy_wh=12345, energy_kwh=12.345)),
        ("sdm630", 4, sdm630,
         dict(one_phase, energy_wh=98765430, energy_kwh=98765.43, **three)),
        ("abb_b23", 3, abb, {"energy_wh": 12345670, "energy_kwh": 12345.67, "voltage_v": 230.1,
                             "voltage_l2_v": 231.5, "voltage_l3_v": 230.0, "current_a": 16.0,
                             "current_l2_a": 15.5, "current_l3_a": 0.5, "power_w": -3680.0}),
        ("orno_we516", 3, orno, dict(one_phase, energy_wh=12345, energy_kwh=12.345, **three)),
    )


def _meter(model, fc, regs, **kw):
    slave = RegisterSlave(1, {fc: regs})
    uart = FakeUart(slave)
    master = ModbusMaster(uart, MODELS[model]["baud"], timeout_ms=100)
    return Meter(master, model, 1, **kw), uart, slave


def test_every_table_row_gives_its_golden_reading():
    golden = _golden()
    assert sorted(g[0] for g in golden) == sorted(MODELS)  # a new row needs a golden map
    for model, fc, regs, want in golden:
        meter, uart, slave = _meter(model, fc, regs)
        (kind, reading), _ = drive(meter, uart)
        assert kind == READING, (model, reading)
        assert reading == want, (model, reading)
        assert isinstance(reading["energy_wh"], int)
        assert len(slave.requests) == len(meter.plan)


def test_requests_are_grouped_where_registers_are_contiguous():
    def shape(model):
        return tuple((fc, reg, n) for fc, reg, n, _ in plan_requests(MODELS[model]))

    assert shape("sdm120") == ((4, 0x00, 2), (4, 0x06, 2), (4, 0x0C, 2), (4, 0x48, 2))
    assert shape("sdm630") == ((4, 0x00, 12), (4, 0x34, 2), (4, 0x48, 2))
    assert shape("abb_b23") == ((3, 0x5000, 4), (3, 0x5B00, 6), (3, 0x5B0C, 6), (3, 0x5B14, 2))
    assert shape("orno_we516") == ((3, 0x0E, 6), (3, 0x16, 8), (3, 0x108, 2))
    limited = {"max_regs": 4, "fields": tuple(
        ("f%d" % i, 4, 2 * i, F32, HI_FIRST, 0) for i in range(5))}
    assert [p[2] for p in plan_requests(limited)] == [4, 4, 2]


def test_meter_errors_then_failed_then_recovers():
    golden = _golden()[0]
    meter, uart, slave = _meter("sdm120", 4, golden[2], interval_ms=50, max_errors=3)
    slave.fail = lambda req: []  # the meter went silent
    t = 0
    for i in range(3):
        (kind, err), t = drive(meter, uart, start=t)
        assert kind == ERROR and isinstance(err, ModbusTimeout)
        assert meter.failed == (i == 2)
    slave.fail = None
    (kind, reading), t = drive(meter, uart, start=t)
    assert kind == READING and not meter.failed and reading["energy_wh"] == 12345


def test_error_mid_cycle_never_mixes_cycles():
    golden = _golden()[0]
    meter, uart, slave = _meter("sdm120", 4, golden[2], interval_ms=0)
    # The third request (power) fails once with an exception: no reading from that cycle.
    state = {"n": 0}

    def fail_power_once(req):
        if req[3] == 0x0C and not state["n"]:
            state["n"] = 1
            return [(5, with_crc((1, 0x84, 4)))]
        return None

    slave.fail = fail_power_once
    (kind, err), t = drive(meter, uart)
    assert kind == ERROR and isinstance(err, ModbusException) and err.code == 4
    (kind, reading), t = drive(meter, uart, start=t)
    assert kind == READING and reading["power_w"] == 3680.0
    # The good cycle re-read all four registers from the start.
    assert [r[3] for r in slave.requests] == [0x00, 0x06, 0x0C, 0x00, 0x06, 0x0C, 0x48]


def test_not_available_value_is_an_error():
    model, fc, regs, _ = _golden()[2]
    regs = dict(regs)
    put(regs, 0x5B00, 0xFFFFFFFF)
    meter, uart, _ = _meter(model, fc, regs)
    (kind, err), _ = drive(meter, uart)
    assert kind == ERROR and isinstance(err, MeterValueError)


def test_interval_between_cycles_and_bad_arguments():
    golden = _golden()[0]
    meter, uart, _ = _meter("sdm120", 4, golden[2], interval_ms=1000)
    (kind, _), t1 = drive(meter, uart)
    (kind, _), t2 = drive(meter, uart, start=t1)
    assert kind == READING and t2 - t1 >= 1000 - 100, (t1, t2)
    for args in (("nope", 1), ("sdm120", 0), ("sdm120", 248)):
        try:
            Meter(meter.master, *args)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (args,))
