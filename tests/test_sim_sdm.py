"""The virtual Eastron meters against the fact sheet's Modbus frames (hardware.md §3, §9)."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_sim.devices.sdm import SdmBus, SdmMeter, crc16, exception_frame, with_crc

H = bytes.fromhex


def ask(bus, frame, now):
    """Send a request at `now`; return what the bus answers within 1 s and when."""
    bus.feed(frame, now)
    t, out = now, []
    for _ in range(1000):
        chunk = bus.pending(t)
        if chunk:
            out.append((t, chunk))
        nxt = bus.next_event(t)
        if nxt is None or nxt > now + 1.0:
            break
        t = max(t, nxt)
    return b"".join(c for _, c in out), (out[-1][0] if out else None)


def f32(value):
    return struct.pack(">f", value)


def test_crc_check_value_and_golden_frames():
    assert crc16(b"123456789") == 0x4B37
    assert with_crc(H("010400480002")) == H("010400480002F1DD")
    assert with_crc(H("01040443660000")) == H("010404436600000E1F")
    assert exception_frame(1, 4, 2) == H("018402C2C1")
    assert with_crc(H("0110001C00020440000000")) == H("0110001C00020440000000E736")


@pytest.mark.parametrize(
    "request_hex, value",
    [
        ("010400000002 71CB", 230.0),  # voltage
        ("010400060002 91CA", 0.0),  # current, nothing drawn
        ("0104000C0002 B1C8", 0.0),  # active power
        ("010400460002", 50.0),  # frequency
        ("010400480002 F1DD", 12.5),  # import kWh
        ("0104004A0002", 0.0),  # export kWh
        ("010401560002 9027", 12.5),  # total kWh
    ],
)
def test_sdm120_input_registers(request_hex, value):
    bus = SdmBus([SdmMeter(1, "sdm120", import_kwh=12.5)])
    raw = H(request_hex.replace(" ", ""))
    frame = raw if len(raw) == 8 else with_crc(raw)
    reply, _ = ask(bus, frame, 1.0)
    assert reply == with_crc(b"\x01\x04\x04" + f32(value))


def test_voltage_reply_is_the_fact_sheet_literal():
    bus = SdmBus([SdmMeter(1, "sdm120")])
    reply, when = ask(bus, H("01040000000271CB"), 1.0)
    assert reply == H("01040443660000 0E1F".replace(" ", ""))
    # not before the t3.5 silence that ends the request (2400 Bd: 16.0 ms)
    assert bus.t35_s == pytest.approx(0.016, abs=0.0005)
    assert when >= 1.0 + bus.t35_s
    # t3.5 + 10 ms turnaround + 8 request and 9 reply characters of 11 bits at 2400 Bd
    assert when == pytest.approx(1.0 + 0.016042 + 0.010 + 17 * 11 / 2400, abs=1e-4)
    fast = SdmBus([SdmMeter(1, "sdm630")], baud=38400, wire_time=False)
    assert ask(fast, H("01040000000271CB"), 1.0)[1] == pytest.approx(1.0 + 0.00175 + 0.010)


def test_multi_register_read_and_odd_word():
    bus = SdmBus([SdmMeter(1, "sdm630", import_kwh=3.0)])
    reply, _ = ask(bus, with_crc(H("010400000006")), 1.0)  # V1 V2 V3
    assert reply == with_crc(b"\x01\x04\x0c" + f32(230.0) * 3)
    reply, _ = ask(bus, with_crc(H("010400490001")), 2.0)  # low word of import kWh
    assert reply == with_crc(b"\x01\x04\x02" + f32(3.0)[2:])


@pytest.mark.parametrize(
    "pdu, code",
    [
        ("0400020002", 0x02),  # 0x0002: L2 voltage, not on a single-phase SDM120
        ("0401000002", 0x02),  # unknown register
        ("0400340002", 0x02),  # total power exists on SDM630 only
        ("0400000000", 0x03),  # quantity 0
        ("040000007E", 0x03),  # quantity 126 > 125
        ("0400000002FF", 0x03),  # wrong PDU length
        ("0500000002", 0x01),  # FC 05 not implemented
        ("2B0E0100", 0x01),  # FC 0x2B
    ],
)
def test_exceptions(pdu, code):
    bus = SdmBus([SdmMeter(1, "sdm120")])
    req = H("01" + pdu)
    reply, _ = ask(bus, with_crc(req), 1.0)
    assert reply == exception_frame(1, req[1], code)


def test_silence_for_other_address_bad_crc_broadcast_and_failed_meter():
    meter = SdmMeter(1, "sdm120")
    bus = SdmBus([meter])
    assert ask(bus, with_crc(H("020400000002")), 1.0)[0] == b""
    assert ask(bus, H("01040000000271CC"), 2.0)[0] == b""
    assert ask(bus, with_crc(H("000400000002")), 3.0)[0] == b""
    meter.set_fault("fail")
    assert ask(bus, H("01040000000271CB"), 4.0)[0] == b""
    meter.set_fault("ok")
    assert ask(bus, H("01040000000271CB"), 5.0)[0] != b""
    c = bus.counters
    assert (c["other_address"], c["bad_crc"], c["broadcast_ignored"], c["failed_silent"]) == (
        1, 1, 1, 1)
    with pytest.raises(ValueError):
        meter.set_fault("explode")


def test_several_slaves_on_one_bus():
    amps = {1: (10.0, 0.0, 0.0), 2: (16.0, 16.0, 16.0)}
    m1 = SdmMeter(1, "sdm120", source=lambda now: amps[1])
    m2 = SdmMeter(2, "sdm630", source=lambda now: amps[2])
    bus = SdmBus([m1, m2], baud=9600)
    bus.pending(0.0)
    r1, _ = ask(bus, with_crc(H("0104000C0002")), 1.0)
    r2, _ = ask(bus, with_crc(H("020400340002")), 2.0)
    assert r1 == with_crc(b"\x01\x04\x04" + f32(2300.0))
    assert r2 == with_crc(b"\x02\x04\x04" + f32(3 * 230.0 * 16.0))
    with pytest.raises(ValueError):
        SdmBus([SdmMeter(1), SdmMeter(1)])


def test_two_requests_back_to_back_are_split_by_silence():
    bus = SdmBus([SdmMeter(1, "sdm120")])
    bus.feed(H("01040000000271CB"), 1.0)
    bus.feed(H("010400480002F1DD"), 1.5)  # arrives after a long gap: first frame ended
    reply, _ = ask(bus, b"", 1.5)
    assert reply == H("010404436600000E1F") + with_crc(b"\x01\x04\x04" + f32(0.0))


def test_frame_split_inside_t35_is_reassembled():
    bus = SdmBus([SdmMeter(1, "sdm120")])
    bus.feed(H("01040000"), 1.0)
    bus.pending(1.001)
    reply, _ = ask(bus, H("000271CB"), 1.002)
    assert reply == H("010404436600000E1F")


def test_holding_registers_read_and_write():
    meter = SdmMeter(1, "sdm120")
    bus = SdmBus([meter])
    reply, _ = ask(bus, with_crc(H("0103001C0002")), 1.0)
    assert reply == with_crc(b"\x01\x03\x04" + f32(0.0))  # 2400 Bd = code 0
    # the fact sheet's set-baud write (2.0 = 9600 Bd) and its reply
    reply, _ = ask(bus, H("0110001C00020440000000E736"), 2.0)
    assert reply == H("0110001C0002800E")
    reply, _ = ask(bus, with_crc(H("0103001C0002")), 3.0)
    assert reply == with_crc(b"\x01\x03\x04" + f32(2.0))
    # new address applies after a power cycle only
    ask(bus, with_crc(H("011000140002044100 0000".replace(" ", ""))), 4.0)  # 8.0
    assert meter.address == 1
    meter.power_cycle()
    assert meter.address == 8
    assert ask(bus, with_crc(H("080400000002")), 5.0)[0] == with_crc(b"\x08\x04\x04" + f32(230.0))


@pytest.mark.parametrize(
    "pdu, code",
    [
        ("10001C0002044040000000", 0x03),  # 3.0 is not an SDM120 baud code
        ("100014000204 43800000".replace(" ", ""), 0x03),  # address 256
        ("10001C000104 40000000".replace(" ", ""), 0x03),  # byte count != 2*qty
        ("100030000204 40000000".replace(" ", ""), 0x02),  # not a config register
        ("10001D000204 40000000".replace(" ", ""), 0x02),  # odd start
    ],
)
def test_bad_config_writes(pdu, code):
    meter = SdmMeter(1, "sdm120")
    bus = SdmBus([meter])
    reply, _ = ask(bus, with_crc(H("01" + pdu)), 1.0)
    assert reply == exception_frame(1, 0x10, code)
    assert meter.holding[0x001C] == 0.0 and meter.holding[0x0014] == 1.0


def test_energy_integrates_only_while_current_flows():
    state = {"amps": 0.0}
    meter = SdmMeter(1, "sdm630", source=lambda now: (state["amps"],) * 3)
    bus = SdmBus([meter])
    bus.pending(0.0)
    bus.pending(600.0)  # 10 min open contactor: nothing
    assert meter.import_kwh() == 0.0
    state["amps"] = 16.0
    bus.pending(600.0)  # change sampled at its instant
    bus.pending(600.0 + 1800.0)  # 30 min at 3 x 230 V x 16 A = 11.04 kW
    assert meter.import_kwh() == pytest.approx(11.04 * 0.5)
    state["amps"] = 0.0
    bus.pending(2400.0)
    bus.pending(9999.0)
    assert meter.import_kwh() == pytest.approx(5.52)
    reply, _ = ask(bus, H("010400480002F1DD"), 10000.0)
    (kwh,) = struct.unpack(">f", reply[3:7])
    assert kwh == pytest.approx(5.52, rel=1e-6)
    assert meter.status()["import_kwh"] == pytest.approx(5.52)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_frames_never_crash_and_answers_are_well_formed(frame):
    bus = SdmBus([SdmMeter(1, "sdm630")])
    reply, _ = ask(bus, frame, 1.0)
    if reply:
        assert reply[0] == 1 and crc16(reply[:-2]) == reply[-2] | reply[-1] << 8
        assert crc16(frame[:-2]) == frame[-2] | frame[-1] << 8  # only valid frames answered


@pytest.mark.parametrize("model", ["sdm120", "sdm630"])
def test_set_import_register_counts_on_from_the_new_value(model):
    """A meter swapped or reset mid-session: the register jumps, the energy before the jump is
    not carried over, and charging then counts on from the new reading."""
    state = {"amps": 16.0}
    meter = SdmMeter(1, model, source=lambda now: (state["amps"],) * 3, import_kwh=1234.5)
    bus = SdmBus([meter])
    bus.pending(0.0)
    bus.pending(5.0)
    phases = 1 if model == "sdm120" else 3
    per_s = 230.0 * 16.0 * phases / 3.6e6  # kWh per second
    assert meter.import_kwh() == pytest.approx(1234.5 + 5 * per_s)
    meter.set_import_kwh(0, 10.0)  # 5 more seconds integrated first, then dropped
    assert meter.import_kwh() == 0.0
    bus.pending(15.0)
    assert meter.import_kwh() == pytest.approx(5 * per_s)
    reply, _ = ask(bus, H("010400480002F1DD"), 15.0)
    (kwh,) = struct.unpack(">f", reply[3:7])
    assert kwh == pytest.approx(5 * per_s, rel=0.01)  # sampled when the request is decoded
    meter.set_import_kwh(999999, 16.0)
    assert meter.import_kwh() == pytest.approx(999999.0)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**7),
                 st.booleans(), st.text(max_size=3)))
def test_set_import_register_accepts_only_a_reading_in_range(kwh):
    meter = SdmMeter(1, "sdm120", import_kwh=7.0)
    ok = not isinstance(kwh, (bool, str)) and 0 <= kwh <= 999999
    if ok:
        meter.set_import_kwh(kwh, 1.0)
        assert meter.import_kwh() == pytest.approx(kwh)
    else:
        with pytest.raises(ValueError):
            meter.set_import_kwh(kwh, 1.0)
        assert meter.import_kwh() == 7.0
