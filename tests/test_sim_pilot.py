"""EV on the control pilot, contactor with mirror contact, and the sim I/O line protocol."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.iec61851 import DUTY_OFF, duty_permille
from host_sim.devices.contactor import Contactor
from host_sim.devices.ev import Ev
from host_sim.devices.rdm6300 import Rdm6300, rdm6300_frame
from host_sim.devices.simio import SimEvse, SimIo

D16 = duty_permille(16)  # 267 per mille
D32 = duty_permille(32)

# (setup, duty, faults) -> (state, high_mv, low_mv)   hardware.md §4.1
LEVELS = [
    ("unplugged", DUTY_OFF, (), ("A", 12000, 12000)),
    ("unplugged", D16, (), ("A", 12000, -12000)),
    ("plugged", DUTY_OFF, (), ("B", 9000, 9000)),
    ("plugged", D16, (), ("B", 9000, -12000)),
    ("charge", DUTY_OFF, (), ("B", 9000, 9000)),  # S2 waits for PWM
    ("charge", D16, (), ("C", 6000, -12000)),
    ("ventilation", D16, (), ("D", 3000, -12000)),
    ("charge", 0, (), ("B", -12000, -12000)),  # state F: steady -12 V
    ("charge", D16, ("diode",), ("C", 6000, -6000)),
    ("plugged", D16, ("diode",), ("B", 9000, -9000)),
    ("plugged", 0, ("diode",), ("B", -9000, -9000)),
    ("unplugged", D16, ("diode",), ("A", 12000, -12000)),  # no EV, no EV diode
    ("charge", D16, ("pilot_short",), ("E", 0, 0)),
    ("unplugged", DUTY_OFF, ("pilot_short",), ("E", 0, 0)),
    ("charge", DUTY_OFF, ("ignore_pwm_off",), ("C", 6000, 6000)),
]


def make_ev(setup, faults):
    ev = Ev(max_amps=16)
    if setup != "unplugged":
        ev.plug()
    if setup == "charge":
        ev.charge()
    elif setup == "ventilation":
        ev.ventilation()
    for f in faults:
        ev.set_fault(f)
    return ev


@pytest.mark.parametrize("setup, duty, faults, expected", LEVELS)
def test_cp_levels(setup, duty, faults, expected):
    ev = make_ev(setup, faults)
    ev.observe_duty(duty)
    assert (ev.state(duty),) + ev.cp_mv(duty) == expected


def test_pp_resistor_and_tethered():
    ev = Ev(cable_ohms=680)
    assert ev.pp_ohms() == 0
    ev.plug()
    assert ev.pp_ohms() == 680
    ev.plug(cable_ohms=1500)
    assert ev.pp_ohms() == 1500
    ev.plug(cable_ohms=None)  # tethered
    assert ev.pp_ohms() == 0
    with pytest.raises(ValueError):
        ev.plug(cable_ohms=-5)
    with pytest.raises(ValueError):
        ev.set_fault("flat_tyre")


def test_ev_draws_current_only_in_c_with_contactor_closed():
    ev = Ev(max_amps=16, phases=3)
    ev.plug()
    ev.observe_duty(D32)
    assert ev.amps(D32, True) == (0.0, 0.0, 0.0)  # B
    ev.charge()
    assert ev.amps(D32, False) == (0.0, 0.0, 0.0)  # contactor open
    assert ev.amps(D32, True) == (16.0, 16.0, 16.0)  # capped by the EV's own maximum
    ev.observe_duty(duty_permille(10))
    assert ev.amps(duty_permille(10), True) == (10.0, 10.0, 10.0)
    ev.observe_duty(DUTY_OFF)
    assert ev.state(DUTY_OFF) == "B" and ev.amps(DUTY_OFF, True) == (0.0, 0.0, 0.0)
    ev.pause()
    assert ev.amps(D32, True) == (0.0, 0.0, 0.0)


def test_ev_ignoring_pwm_off_keeps_c_and_current():
    ev = Ev(max_amps=32, phases=1)
    ev.plug()
    ev.charge()
    ev.set_fault("ignore_pwm_off")
    ev.observe_duty(D16)
    ev.observe_duty(DUTY_OFF)
    assert ev.state(DUTY_OFF) == "C"
    assert ev.amps(DUTY_OFF, True) == (16.0, 0.0, 0.0)
    ev.set_fault("clear")
    assert ev.state(DUTY_OFF) == "B"


def test_contactor_follows_coil_after_delay_and_mirror_is_inverse():
    c = Contactor(delay_s=0.02)
    assert (c.main_closed(0.0), c.mirror_closed(0.0)) == (False, True)
    c.set_coil(1, 1.0)
    assert c.next_event(1.0) == pytest.approx(1.02)
    assert c.main_closed(1.019) is False
    assert (c.main_closed(1.02), c.mirror_closed(1.02)) == (True, False)
    c.set_coil(0, 2.0)
    assert c.main_closed(2.01) is True and c.main_closed(2.03) is False


def test_contactor_faults():
    c = Contactor()
    c.set_coil(1, 0.0)
    c.main_closed(1.0)
    c.set_fault("weld")
    c.set_coil(0, 2.0)
    assert c.main_closed(3.0) is True and c.mirror_closed(3.0) is False
    c.set_fault("clear")
    assert c.main_closed(3.0) is False
    c.set_fault("stuck")
    c.set_coil(1, 4.0)
    assert c.main_closed(5.0) is False and c.mirror_closed(5.0) is True
    c.set_fault("clear")
    assert c.main_closed(5.0) is True
    with pytest.raises(ValueError):
        c.set_fault("melt")


def lines(io, now):
    return io.pending(now).decode().splitlines()


def two_evse_io():
    e1 = SimEvse(Ev(max_amps=32, cable_ohms=220))
    e2 = SimEvse(Ev(max_amps=16, cable_ohms=None))
    return SimIo([e1, e2]), e1, e2


def test_hello_snapshot_and_change_lines():
    io, e1, e2 = two_evse_io()
    assert io.pending(0.0) == b""  # nothing before hello
    io.feed(b"hello\n", 0.0)
    assert lines(io, 0.0) == ["cp 1 12000 12000", "pp 1 0", "mirror 1 1",
                              "cp 2 12000 12000", "pp 2 0", "mirror 2 1"]
    assert lines(io, 0.1) == []
    e1.ev.plug()
    assert lines(io, 1.0) == ["cp 1 9000 9000", "pp 1 220"]
    io.feed(b"pwm 1 %d\n" % D16, 2.0)
    assert lines(io, 2.0) == ["cp 1 9000 -12000"]
    e1.ev.charge()
    assert lines(io, 3.0) == ["cp 1 6000 -12000"]
    io.feed(b"coil 1 1\n", 4.0)
    assert lines(io, 4.0) == []
    assert io.next_event(4.0) == pytest.approx(4.02)
    assert lines(io, 4.02) == ["mirror 1 0"]
    assert e1.currents(4.02) == (16.0, 0.0, 0.0)
    e1.contactor.set_fault("weld")
    io.feed(b"coil 1 0\n", 5.0)
    assert lines(io, 6.0) == []
    io.feed(b"hello\n", 7.0)  # full state again
    assert lines(io, 7.0) == ["cp 1 6000 -12000", "pp 1 220", "mirror 1 0",
                              "cp 2 12000 12000", "pp 2 0", "mirror 2 1"]
    assert io.malformed == 0 and io.lines_in == 5
    st = io.status(7.0)
    assert st["evses"][0]["ev"]["state"] == "C" and st["evses"][0]["contactor"]["fault"] == "weld"


@pytest.mark.parametrize(
    "line",
    [b"pwm 1\n", b"pwm 3 100\n", b"pwm 0 100\n", b"pwm 1 1001\n", b"pwm 1 -5\n",
     b"pwm  1 100\n", b"pwm 1 100 \n", b"coil 1 2\n", b"coil 1 on\n", b"hello there\n",
     b"reboot\n", b"\n", b"pwm 1 \xff\n", b"PWM 1 100\n", b"pwm 1 1e3\n", b"x" * 200 + b"\n"],
)
def test_malformed_lines_are_counted_and_change_nothing(line):
    io, e1, _ = two_evse_io()
    io.feed(b"hello\n", 0.0)
    io.pending(0.0)
    io.feed(line, 1.0)
    assert io.malformed == 1, io.errors
    assert e1.duty == DUTY_OFF and e1.contactor.coil is False
    assert io.pending(1.0) == b""
    io.feed(b"pwm 1 100\r\n", 2.0)  # CRLF tolerated; next good line works
    assert e1.duty == 100 and io.malformed == 1


def test_line_split_across_feeds():
    io, e1, _ = two_evse_io()
    for b in b"pwm 2 533\ncoil 2 1\n":
        io.feed(bytes((b,)), 0.0)
    assert io.evses[1].duty == 533 and io.evses[1].contactor.coil is True


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_any_bytes_never_crash_the_io_channel(chunks):
    io, _, _ = two_evse_io()
    for i, c in enumerate(chunks):
        io.feed(c, float(i))
        io.pending(float(i))
    assert io.malformed <= io.lines_in + len(chunks)
    for e in io.evses:
        assert 0 <= e.duty <= DUTY_OFF


def test_rdm6300_frame_and_repeat_modes():
    assert rdm6300_frame(bytes.fromhex("100086F444")) == b"\x02100086F44426\x03"
    r = Rdm6300(repeat_s=0.06)
    assert r.pending(0.0) == b""
    r.present(bytes.fromhex("100086F444"), now=1.0)
    t, out = 1.0, []
    while t < 1.5:
        chunk = r.pending(t)
        if chunk:
            out.append((round(t, 4), chunk))
        t = r.next_event(t)
    assert all(c == b"\x02100086F44426\x03" for _, c in out)
    assert len(out) == 9  # first after one frame time (14.6 ms), then every 60 ms
    assert out[1][0] - out[0][0] == pytest.approx(0.06)
    r.remove()
    assert r.next_event(2.0) is None and r.pending(2.0) == b""
    once = Rdm6300(read_once=True)
    once.present(bytes.fromhex("0102030405"), now=0.0)
    assert once.pending(1.0).count(b"\x02") == 1 and once.pending(2.0) == b""
    with pytest.raises(ValueError):
        r.present(b"\x01\x02")


def test_contactor_make_and_release_times_and_the_mirror_follows_the_mains():
    c = Contactor(make_s=0.05, release_s=0.3)
    c.set_coil(1, 1.0)
    assert c.next_event(1.0) == pytest.approx(1.05)
    assert (c.main_closed(1.049), c.mirror_closed(1.049)) == (False, True)
    assert (c.main_closed(1.05), c.mirror_closed(1.05)) == (True, False)
    c.set_coil(0, 2.0)
    assert (c.main_closed(2.299), c.mirror_closed(2.299)) == (True, False)  # late release
    assert (c.main_closed(2.3), c.mirror_closed(2.3)) == (False, True)
    c.set_timing(release_s=0.02)  # make kept
    assert (c.make_s, c.release_s) == (0.05, 0.02)
    assert c.status(3.0)["make_ms"] == 50.0 and c.status(3.0)["release_ms"] == 20.0
    for bad in (-0.001, 5.001, float("nan"), True, "0.1"):
        with pytest.raises(ValueError):
            c.set_timing(make_s=bad)
    assert (c.make_s, c.release_s) == (0.05, 0.02)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 0.5), st.floats(0, 0.5),
       st.lists(st.tuples(st.booleans(), st.floats(0.001, 1.0)), max_size=12))
def test_mirror_is_exactly_not_mains_and_mains_move_only_after_their_delay(make, release, steps):
    """Whatever the coil does, the NC mirror reads the inverse of the main contacts, and the
    mains take the coil's state only once it has been held for the make/release time."""
    c = Contactor(make_s=make, release_s=release)
    t = 0.0
    for on, dt in steps:
        c.set_coil(on, t)
        delay = make if on else release
        for k in range(5):
            probe = t + dt * k / 4
            assert c.mirror_closed(probe) is (not c.main_closed(probe))
            if probe < t + delay and c.coil != c.main_closed(t):
                assert c.main_closed(probe) is not c.coil
            if probe >= t + delay:
                assert c.main_closed(probe) is c.coil
        t += dt


def test_pp_swap_while_plugged_and_no_resistor():
    ev = Ev()
    with pytest.raises(ValueError, match="plug"):
        ev.set_pp(220)
    ev.plug(None)  # a socket cable without its PP resistor
    assert ev.pp_ohms() == 0
    ev.set_pp(50)  # a coding error (< 75 ohm, hardware.md §4.3)
    assert ev.pp_ohms() == 50
    ev.set_pp(None)
    assert ev.pp_ohms() == 0
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            ev.set_pp(bad)


def test_power_off_drops_the_coil_unpowers_the_pilot_and_hello_brings_it_back():
    e = SimEvse(Ev(max_amps=16), Contactor(make_s=0.02, release_s=0.1))
    io = SimIo([e])
    io.feed(b"hello\n", 0.0)
    e.ev.plug()
    e.ev.charge()
    io.feed(b"pwm 1 %d\ncoil 1 1\n" % D16, 1.0)
    io.pending(1.0)
    assert lines(io, 1.02) == ["mirror 1 0"] and e.currents(1.02) == (16.0, 0.0, 0.0)
    assert io.power_off(2.0) == [1]  # EVSE 1's coil was on
    assert e.contactor.coil is False and e.powered is False
    assert e.currents(2.0) == (0.0, 0.0, 0.0)  # no pilot: the EV draws nothing at once
    assert e.contactor.main_closed(2.099) and not e.contactor.main_closed(2.1)  # release time
    assert e.lines(2.05)["cp"] == (0, 0)  # state E: the EVSE has no power (§4.1)
    assert io.pending(2.2) == b""  # nothing is sent to a dead firmware
    assert io.status(2.2)["evses"][0]["powered"] is False
    io.feed(b"hello\n", 3.0)  # the restarted firmware drives the lines again
    assert lines(io, 3.0) == ["cp 1 9000 9000", "pp 1 220", "mirror 1 1"]  # no PWM yet: B1
    assert e.currents(3.0) == (0.0, 0.0, 0.0)
    io.feed(b"pwm 1 %d\ncoil 1 1\n" % D16, 3.5)
    assert lines(io, 3.52) == ["cp 1 6000 -12000", "mirror 1 0"]
    assert e.currents(3.52) == (16.0, 0.0, 0.0)


def test_rdm6300_dropout_stops_frames_then_the_tag_is_read_anew():
    r = Rdm6300(repeat_s=0.06)
    tag = bytes.fromhex("100086F444")
    r.present(tag, now=0.0)
    assert r.pending(0.02) == rdm6300_frame(tag)
    assert r.dropout(0.4, now=0.05) == pytest.approx(0.45)
    assert r.pending(0.44) == b"" and r.next_event(0.1) == pytest.approx(0.45 + r.frame_s)
    assert r.pending(0.45 + r.frame_s) == rdm6300_frame(tag)
    assert r.status()["counters"]["dropouts"] == 1
    once = Rdm6300(read_once=True)
    once.present(tag, now=0.0)
    assert once.pending(0.1).count(b"\x02") == 1 and once.pending(0.2) == b""
    once.dropout(0.1, now=0.3)  # a standard module reads the re-entered tag once more
    assert once.pending(0.39) == b"" and once.pending(0.5).count(b"\x02") == 1
    r.remove()
    with pytest.raises(ValueError, match="no tag"):
        r.dropout(0.1, now=1.0)


def test_rdm6300_foreign_frames_noise_and_supply():
    r = Rdm6300()
    tag = bytes.fromhex("100086F444")
    good = rdm6300_frame(tag)  # 02 "100086F444" "26" 03
    r.present(tag, now=0.0)
    bad = r.foreign(None, now=0.001)  # default: the held tag with a wrong XOR
    assert bad == b"\x02100086F44427\x03"
    assert r.foreign("zero_id", now=0.001) == b"\x02000000000000\x03"
    assert r.foreign("truncated", now=0.001) == good[:7]
    assert r.pending(0.001) == bad + b"\x02000000000000\x03" + good[:7]  # before the tag's
    assert r.pending(0.02) == good
    noise = r.noise(30, now=0.03)
    assert len(noise) == 30 and r.pending(0.03) == noise
    assert r.status()["counters"] == {"foreign_frames": 3, "noise_bytes": 30}
    with pytest.raises(ValueError):
        r.foreign("wrong_cmd", now=0.04)
    r.set_supply(False, now=0.05)
    assert r.pending(1.0) == b"" and r.next_event(1.0) is None
    with pytest.raises(ValueError, match="power"):
        r.noise(1, now=1.0)
    r.set_supply(True, now=2.0)  # the tag still in the field is read anew
    assert r.pending(2.0) == b"" and r.pending(2.0 + r.frame_s) == good
    empty = Rdm6300()
    assert empty.foreign("bad_checksum", now=0.0)[1:11] == b"100086F444"  # §2's example
