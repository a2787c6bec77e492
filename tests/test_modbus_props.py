"""Property tests (CPython, hypothesis) for the Modbus master and the meter decoding: whatever
arrives on the line, `poll` returns only a correct reading or a specific error, never raises,
never reads a corrupt frame, and the master is ready for the next request afterwards."""

import struct
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from hal.kinds import ERROR, REGISTERS
from hal.meter_models import F32, HI_FIRST
from hal.meters import MeterValueError, field_value, float32_scaled_int
from hal.modbus import ModbusError, ModbusMaster
from tests.mp.test_modbus_fake import FakeUart, drive, reply_frame

REGS = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20)


def _chunks(data, cuts, delays, start=8):
    """Split data at the cut points; chunk k arrives at start + sum(delays[:k+1])."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    out = []
    t = start
    for k in range(len(points) - 1):
        t += delays[k % len(delays)] if delays else 0
        out.append((t, data[points[k] : points[k + 1]]))
    return out


def _exchange(script, count, fc=4, baud=9600):
    uart = FakeUart(lambda req: script)
    master = ModbusMaster(uart, baud, timeout_ms=150)
    master.start(1, fc, 0x48, count, 0)
    event, t = drive(master, uart, limit_ms=400)
    return master, uart, event, t


def _still_works(master, uart, t):
    """After any outcome the master serves the next request correctly."""
    uart.pending = []
    uart.rx = bytearray()
    uart.responder = lambda req: [(5, reply_frame(1, 4, (7, 8)))]
    master.start(1, 4, 0x48, 2, t + 1)
    event, _ = drive(master, uart, start=t + 1, limit_ms=400)
    assert event == (REGISTERS, (7, 8)), event


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8),
       st.lists(st.integers(0, 20), min_size=1, max_size=8), st.integers(1, 125))
def test_random_bytes_give_only_specific_errors_or_real_frames(data, cuts, delays, count):
    master, uart, event, t = _exchange(_chunks(data, cuts, delays), count)
    kind, payload = event
    if kind == REGISTERS:
        assert len(payload) == count
        assert reply_frame(1, 4, payload) in data  # only a CRC-valid frame in the input
    else:
        assert kind == ERROR and isinstance(payload, ModbusError), event
    _still_works(master, uart, t)


@settings(max_examples=300, deadline=None)
@given(REGS, st.binary(max_size=100), st.lists(st.integers(0, 400), max_size=8),
       st.lists(st.integers(0, 4), min_size=1, max_size=8), st.sampled_from((3, 4)))
def test_good_frame_behind_garbage_and_splits_is_read(regs, garbage, cuts, delays, fc):
    # Chunks at most 4 ms apart: less than t3.5 (6 ms in ticks at 9600 Bd), so one frame.
    frame = reply_frame(1, fc, regs)
    master, uart, event, t = _exchange(_chunks(garbage + frame, cuts, delays), len(regs), fc)
    assert event == (REGISTERS, tuple(regs)), (event, garbage.hex())
    _still_works(master, uart, t)


@settings(max_examples=300, deadline=None)
@given(REGS, st.data())
def test_corrupt_frame_is_never_a_reading(regs, data):
    frame = bytearray(reply_frame(1, 4, regs))
    pos = data.draw(st.integers(0, len(frame) - 1))
    frame[pos] ^= data.draw(st.integers(1, 255))
    cuts = data.draw(st.lists(st.integers(0, 300), max_size=5))
    delays = data.draw(st.lists(st.integers(0, 15), min_size=1, max_size=5))
    master, uart, event, t = _exchange(_chunks(bytes(frame), cuts, delays), len(regs))
    assert event[0] == ERROR and isinstance(event[1], ModbusError), event
    _still_works(master, uart, t)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.integers(-3, 3))
def test_float32_scaled_int_is_exact(bits, exp):
    value = struct.unpack(">f", struct.pack(">I", bits))[0]
    if value != value or value in (float("inf"), float("-inf")):
        try:
            float32_scaled_int(bits, exp)
        except MeterValueError:
            return
        raise AssertionError("accepted NaN/inf")
    exact = Fraction(value) * Fraction(10) ** exp
    got = float32_scaled_int(bits, exp)
    # round half away from zero
    want = int(abs(exact) + Fraction(1, 2)) * (1 if exact >= 0 else -1)
    assert got == want, (hex(bits), exp, got, want)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_energy_field_is_exact_wh_or_a_value_error(hi, lo):
    try:
        wh = field_value((hi, lo), 0, "energy_wh", F32, HI_FIRST, 3)
    except MeterValueError:
        value = struct.unpack(">f", struct.pack(">HH", hi, lo))[0]
        assert value != value or abs(value) == float("inf") or value < 0
        return
    value = struct.unpack(">f", struct.pack(">HH", hi, lo))[0]
    assert isinstance(wh, int) and wh >= 0
    assert abs(Fraction(value) * 1000 - wh) <= Fraction(1, 2)
