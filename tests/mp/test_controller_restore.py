"""Controller: progress notifications, restore at boot, late wall clock, tick wrap
(runs on both interpreters; see test_controller_kit)."""

from hal.compat import MICROPYTHON
from tests.mp.test_controller_kit import (
    T0,
    UID_A,
    Rig,
    of,
    outbox,
)


def test_progress_notifications():
    r = Rig(progress_interval_s=300)
    r.plug_and_charge()
    r.step("meter", 1, 2000)
    acts = r.idle(300000)
    p = outbox(acts, "notification", "Progress")
    assert len(p) == 1 and p[0]["ChargingDuration"] >= 300000
    assert p[0]["ConsumedEnergyProgress"] == 1.0
    assert len(outbox(r.idle(600000), "notification", "Progress")) == 2
    r.step("card_gone", 0, None)
    r.step("card", 0, UID_A)
    cdr = outbox(r.step("pilot", 1, ("B", True)), "cdr")[0]
    assert cdr["MeterValueInBetween"] == {"meterValues": [2.0, 2.0, 2.0]}


def test_restore_closes_session_with_first_meter_reading():
    r = Rig()
    r.plug_and_charge()
    rec = [a[2][1] for a in r.log if a[0] == "persist" and a[2][0] == "session.1"][-1]
    r2 = Rig()
    acts = r2.step("restore", 1, rec)
    assert not outbox(acts, "cdr")  # waits for a meter reading
    acts = r2.step("meter", 1, 4000)
    cdr = outbox(acts, "cdr")
    assert len(cdr) == 1 and cdr[0]["MeterValueEnd"] == 4.0 and cdr[0]["ConsumedEnergy"] == 3.0
    assert ("persist", 0, ("session.1", None)) in acts
    assert of(acts, "session_end", 1)[0]["reason"] == "PowerLoss"
    assert not outbox(r2.step("meter", 1, 4100), "cdr")
    r3 = Rig()
    r3.step("meter_fault", 1, "down")
    cdr = outbox(r3.step("restore", 1, rec), "cdr")[0]
    assert cdr["MeterValueEnd"] == 1.0 and cdr["MeteringCheck"] == "Failed"


def test_restore_closes_session_when_the_meter_never_answers():
    r = Rig()
    r.plug_and_charge()
    rec = [a[2][1] for a in r.log if a[0] == "persist" and a[2][0] == "session.1"][-1]
    r4 = Rig()
    r4.step("restore", 1, rec)
    assert len(outbox(r4.idle(30000), "cdr")) == 1  # the meter never answered


def test_restore_rejects_bad_records():
    r = Rig()
    r.plug_and_charge()
    rec = [a[2][1] for a in r.log if a[0] == "persist" and a[2][0] == "session.1"][-1]
    r = None
    for bad in (None, {"lid": 1}, dict(rec, evse_id="DE*ABC*E2"), dict(rec, ms=-1)):
        acts = Rig().step("restore", 1, bad)
        assert [a[2][0] for a in acts] == ["restore"], (bad, acts)


def test_time_arrives_late_fills_timestamps():
    from firmware.controller import Controller
    from tests.mp.test_controller_kit import Ids, config
    c = Controller(config(), Ids())
    c.step(("contactor", 1, "open"), 100)
    c.step(("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]}), 200)
    c.step(("card", 0, UID_A), 1000)
    assert c.sessions[0].session_start is None
    c.step(("time", 0, T0), 5000)
    assert c.sessions[0].session_start == T0 - 4


def test_session_across_tick_wrap():
    if MICROPYTHON:
        return  # the wrap is emulated on CPython only
    r = Rig(start=(1 << 30) - 2000, progress_interval_s=300)
    r.plug_and_charge()
    r.step("meter", 1, 2000)
    acts = r.idle(300000)
    assert len(outbox(acts, "notification", "Progress")) == 1
    r.step("card_gone", 0, None)
    r.step("card", 0, UID_A)
    cdr = outbox(r.step("pilot", 1, ("B", True)), "cdr")[0]
    assert cdr["ChargingEnd"] >= cdr["ChargingStart"] and cdr["ConsumedEnergy"] == 1.0
