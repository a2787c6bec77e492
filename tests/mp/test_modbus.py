"""Modbus RTU master: golden frames (hardware.md section 9) and the state machine against a
scripted slave. Runs on CPython and on the MicroPython unix port."""

from hal.kinds import ERROR, REGISTERS
from hal.modbus import (
    _CRC_NIBBLE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    ModbusError,
    ModbusException,
    ModbusMaster,
    ModbusTimeout,
    ModbusWrongSlave,
    build_read_request,
    crc16,
    parse_response,
    t35_us,
    wire_us,
)
from tests.mp.test_modbus_fake import FakePin, FakeUart, drive, reply_frame, with_crc

H = bytes.fromhex


def test_crc_check_value_and_fact_sheet_frames():
    assert crc16(b"123456789") == 0x4B37
    # SDM120 set-baud write from section 3.1 / 9: CRC E7 36 on the wire (low byte first).
    write = H("01 10 00 1C 00 02 04 40 00 00 00 E7 36".replace(" ", ""))
    assert crc16(write[:-2]) == 0x36E7
    assert crc16(write) == 0  # a frame including its own CRC leaves a zero remainder
    assert crc16(H("0110001C0002800E")) == 0


def test_golden_requests():
    table = (
        (1, FC_READ_INPUT, 0x0048, 2, "01040048 0002F1DD"),
        (1, FC_READ_INPUT, 0x0000, 2, "01040000 000271CB"),
        (1, FC_READ_INPUT, 0x0006, 2, "01040006 000291CA"),
        (1, FC_READ_INPUT, 0x000C, 2, "0104000C 0002B1C8"),
        (1, FC_READ_INPUT, 0x0034, 2, "01040034 00023005"),
        (1, FC_READ_INPUT, 0x0156, 2, "01040156 00029027"),
        # FC 03: textbook examples (not in the fact sheet), same CRC routine.
        (1, FC_READ_HOLDING, 0x0000, 10, "01030000 000AC5CD"),
        (1, FC_READ_HOLDING, 0x0000, 1, "01030000 0001840A"),
    )
    for slave, fc, reg, count, hexframe in table:
        got = bytes(build_read_request(slave, fc, reg, count))
        assert got == H(hexframe.replace(" ", "")), (reg, got)


def test_request_arguments_are_validated():
    bad = ((0, 4, 0, 1), (248, 4, 0, 1), (1, 6, 0, 1), (1, 4, -1, 1), (1, 4, 0, 0),
           (1, 4, 0, 126), (1, 4, 0xFFFF, 2))
    for args in bad:
        try:
            build_read_request(*args)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (args,))


def test_golden_responses_and_exception():
    regs = parse_response(H("010404436600000E1F"), 9, 1, 4, 2)
    assert regs == (0x4366, 0x0000)
    try:
        parse_response(H("018402C2C1"), 5, 1, 4, 2)
    except ModbusException as e:
        assert e.code == 2 and str(e) == "exception 0x02 (illegal data address)", e
    else:
        raise AssertionError("no exception")
    for code, name in ((0x0B, "gateway target failed to respond"), (0x07, "unknown"),
                       (0x0C, "unknown"), (0x00, "unknown"), (0x01, "illegal function")):
        try:
            parse_response(with_crc(bytes((1, 0x84, code))), 5, 1, 4, 2)
        except ModbusException as e:
            assert e.code == code and str(e) == "exception 0x%02X (%s)" % (code, name), e
        else:
            raise AssertionError("no exception for code %d" % code)


def test_crc_nibble_table_is_the_bitwise_algorithm():
    for n in range(16):
        crc = n
        for _ in range(4):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        assert _CRC_NIBBLE[n] == crc, n


def _is_frame_error(err, kind):
    """Frame errors share ModbusError (only a wrong slave has its own class); the message says
    which check failed."""
    if kind is ModbusWrongSlave:
        return type(err) is ModbusWrongSlave
    return type(err) is ModbusError and str(err).startswith(kind)


def test_parse_response_specific_errors():
    good = H("010404436600000E1F")
    cases = (
        (good[:-1] + bytes((good[-1] ^ 1,)), "CRC mismatch"),
        (with_crc(H("0204044366 0000".replace(" ", ""))), ModbusWrongSlave),
        (with_crc(H("0103044366 0000".replace(" ", ""))), "function 0x03, asked 0x04"),
        (with_crc(H("01040243 66".replace(" ", ""))), "byte count 2 in 7 bytes, asked 2"),
        (with_crc(H("01840202")), "byte count 2 in 6 bytes"),  # exception frame too long
        (H("0104"), "incomplete"),
    )
    for frame, kind in cases:
        try:
            parse_response(frame, len(frame), 1, 4, 2)
        except ModbusError as e:
            assert _is_frame_error(e, kind), (frame.hex(), e)
            continue
        raise AssertionError("no %s for %s" % (kind, frame.hex()))


def test_t35_from_baud_rate():
    assert t35_us(2400) == 16042
    assert t35_us(9600) == 4011
    assert t35_us(19200) == 2006
    assert t35_us(38400) == 1750 and t35_us(115200) == 1750
    assert wire_us(8, 9600) == 8 * 1146


def _master(responder, **kw):
    uart = FakeUart(responder, with_flush=kw.pop("with_flush", False))
    return ModbusMaster(uart, 9600, **kw), uart


def _answer(frame, delay=10):
    return lambda req: [(delay, frame)]


def _run(master, uart, slave=1, fc=4, reg=0x48, count=2, **kw):
    master.start(slave, fc, reg, count, 0)
    return drive(master, uart, **kw)


def test_good_answer():
    m, u = _master(_answer(H("010404436600000E1F")))
    (kind, regs), t = _run(m, u)
    assert kind == REGISTERS and regs == (0x4366, 0)
    assert u.written == [H("01040048 0002F1DD".replace(" ", ""))]
    assert t == 10 and not m.busy and m.errors == 0


def test_exception_answer():
    m, u = _master(_answer(H("018402C2C1")))
    (kind, err), _ = _run(m, u)
    assert kind == ERROR and isinstance(err, ModbusException) and err.code == 2
    assert m.errors == 1


def test_timeout_comes_at_the_deadline_not_before():
    m, u = _master(None, timeout_ms=200)
    (kind, err), t = _run(m, u)
    assert kind == ERROR and isinstance(err, ModbusTimeout)
    tx_ms = 10  # 8 bytes at 9600 Bd = 9.2 ms, rounded up
    assert t == tx_ms + 200, t


def test_frame_errors_are_specific():
    cases = (
        (with_crc(H("020404436600 00".replace(" ", ""))), ModbusWrongSlave),
        (with_crc(H("010304436600 00".replace(" ", ""))), "function 0x03"),
        (H("010404436600000E1E"), "CRC mismatch"),
        (with_crc(H("0104024366")), "byte count 2 in 7 bytes"),
        (with_crc(H("01040643660000 0000".replace(" ", ""))), "byte count 6 in 11 bytes"),
        (H("0104044366"), "incomplete"),
    )
    for frame, kind in cases:
        m, u = _master(_answer(frame))
        (ev, err), t = _run(m, u, limit_ms=1000)
        assert ev == ERROR and _is_frame_error(err, kind), (frame.hex(), err)
        # Decided on the t3.5 silence after the frame, long before the 300 ms time-out.
        assert t < 40, (frame.hex(), t)
        assert not m.busy


def test_split_response_is_reassembled():
    frame = reply_frame(1, 4, (1, 2, 3, 4, 5, 6))
    chunks = [(10, frame[:1]), (12, frame[1:3]), (14, frame[3:9]), (17, frame[9:])]
    m, u = _master(lambda req: chunks)
    (kind, regs), t = _run(m, u, count=6)
    assert kind == REGISTERS and regs == (1, 2, 3, 4, 5, 6) and t == 17


def test_response_split_by_a_long_silence_is_incomplete():
    frame = reply_frame(1, 4, (1, 2))
    m, u = _master(lambda req: [(10, frame[:4]), (60, frame[4:])])
    (kind, err), _ = _run(m, u)
    assert kind == ERROR and _is_frame_error(err, "incomplete"), err


def test_garbage_before_the_response():
    frame = H("010404436600000E1F")
    for script in (
        [(10, b"\x00\xff\x01" + frame)],  # noise glued to the frame
        [(8, b"\x55\xaa\x13"), (40, frame)],  # noise, silence, then the frame
        [(8, b"\x01\x04\x00\x48\x00\x02\xf1\xdd"), (20, frame)],  # our own echo first
    ):
        m, u = _master(lambda req, s=script: s)
        (kind, regs), _ = _run(m, u)
        assert kind == REGISTERS and regs == (0x4366, 0), script
    assert m.echo_bytes == 8


def test_noise_counted_and_waits_for_silence_before_sending():
    m, u = _master(_answer(H("010404436600000E1F")))
    u.inject(b"\x11\x22")  # somebody else talking when we want the bus
    m.start(1, 4, 0x48, 2, 0)
    u.now = 0
    assert m.poll(0) is None and u.written == []
    for t in range(1, m.gap_ms):
        u.now = t
        assert m.poll(t) is None and u.written == [], t
    u.now = m.gap_ms
    assert m.poll(m.gap_ms) is None and len(u.written) == 1
    assert m.noise_bytes == 2
    assert m.gap_ms == 6  # t3.5 = 4.01 ms at 9600 Bd, whole ms + 1 for tick quantisation


def test_start_while_busy_and_bad_args_leave_state_unchanged():
    m, u = _master(None)
    try:
        m.start(0, 4, 0, 1, 0)
    except ValueError:
        pass
    assert not m.busy
    m.start(1, 4, 0, 1, 0)
    try:
        m.start(1, 4, 0, 1, 0)
    except RuntimeError:
        pass
    else:
        raise AssertionError("second start accepted")
    assert m.busy


def test_de_pin_is_dropped_after_flush():
    pin = FakePin()
    m, u = _master(_answer(H("010404436600000E1F")), de_pin=pin, with_flush=True)
    m.start(1, 4, 0x48, 2, 0)
    u.now = 0
    m.poll(0)
    # DE low at construction, high for the write, low again once flush() says it has left.
    assert pin.log == [0, 1, 0] and u.flushed == 1 and len(u.written) == 1
    (kind, regs), _ = drive(m, u)
    assert kind == REGISTERS and pin.log == [0, 1, 0]


def test_idle_poll_and_pyserial_style_empty_read():
    u = FakeUart(_answer(H("010404436600000E1F")), none_when_empty=False)
    m = ModbusMaster(u, 2400)
    assert m.poll(0) is None
    (kind, regs), _ = _run(m, u)
    assert kind == REGISTERS
