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
    rec = [a[2][1] for a in r.log if a[0] == "persist" and a[2][0].startswith("session.")][-1]
    r2 = Rig()
    acts = r2.step("restore", 1, rec)
    assert not outbox(acts, "cdr")  # waits for a meter reading
    acts = r2.step("meter", 1, 4000)
    cdr = outbox(acts, "cdr")
    assert len(cdr) == 1 and cdr[0]["MeterValueEnd"] == 4.0 and cdr[0]["ConsumedEnergy"] == 3.0
    assert ("persist", 0, ("session." + rec["CPOPartnerSessionID"], None)) in acts
    assert of(acts, "session_end", 1)[0]["reason"] == "PowerLoss"
    assert not outbox(r2.step("meter", 1, 4100), "cdr")
    r3 = Rig()
    r3.step("meter_fault", 1, "down")
    cdr = outbox(r3.step("restore", 1, rec), "cdr")[0]
    assert cdr["MeterValueEnd"] == 1.0 and cdr["MeteringCheck"] == "Failed"


def test_restore_closes_session_when_the_meter_never_answers():
    r = Rig()
    r.plug_and_charge()
    rec = [a[2][1] for a in r.log if a[0] == "persist" and a[2][0].startswith("session.")][-1]
    r4 = Rig()
    r4.step("restore", 1, rec)
    assert len(outbox(r4.idle(30000), "cdr")) == 1  # the meter never answered


def _charged_record():
    r = Rig()
    r.plug_and_charge()
    return [a[2][1] for a in r.log if a[0] == "persist" and a[2][0].startswith("session.")][-1]


def test_a_damaged_record_is_repaired_named_and_closed_with_one_flagged_cdr():
    rec = _charged_record()
    for field, value, named in (
            ("ChargingStart", 7258118400, "ChargingStart"),  # in the year 2200
            ("MeterValueStart", "1000", "MeterValueStart"),  # not a number
            ("CPOPartnerSessionID", "not-a-session-id", "CPOPartnerSessionID"),
            ("SessionStart", -5, "SessionStart"), ("MeterValueEnd", 10, "MeterValueEnd"),
            ("AuthorizationStopTokens", "x", "AuthorizationStopTokens"),
            ("PostAuthorization", 9, "PostAuthorization"),
            ("EvseID", "DE*ABC*E2", "EvseID")):
        r = Rig()
        acts = r.step("restore", 1, dict(rec, **{field: value}))
        err = [a[2] for a in acts if a[0] == "error"]
        assert len(err) == 1 and err[0][0] == "restore" and (named + ":") in err[0][1], acts
        saved = [a[2] for a in acts if a[0] == "persist"][0]  # the repair is on flash first
        assert saved[0] == "session." + saved[1]["CPOPartnerSessionID"]
        acts += r.step("meter", 1, 4000)
        cdr = outbox(acts, "cdr")
        assert len(cdr) == 1, (field, acts)
        assert cdr[0]["SessionID"] == rec["SessionID"] and cdr[0]["EvseID"] == "DE*ABC*E1"
        if field in ("ChargingStart", "MeterValueStart", "MeterValueEnd"):
            assert cdr[0]["MeteringCheck"] == "Failed", (field, cdr)
        if field == "CPOPartnerSessionID":
            assert cdr[0]["CPOPartnerSessionID"] == rec["SessionID"]  # the SessionID stands in
        if field == "ChargingStart":
            assert cdr[0]["ChargingStart"] == cdr[0]["SessionStart"]


def test_records_that_cannot_be_sessions_are_reported_and_change_nothing():
    for bad in (None, [1, 2], "x"):
        r = Rig()
        acts = r.step("restore", 1, bad)
        assert [a[2][0] for a in acts] == ["restore"], (bad, acts)
        assert [o.restored for o in r.c.outlets] == [None]


def test_a_new_session_waits_until_the_restored_one_is_closed():
    rec = _charged_record()
    r = Rig()
    r.c._new_id.n = 100  # another boot: fresh ids
    r.step("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]})
    r.step("restore", 1, rec)
    r.step("pilot", 1, ("B", False))
    acts = r.step("card", 0, UID_A)  # the card still on the reader after the cut
    assert not of(acts, "session_start") and not of(acts, "persist")
    acts = r.step("meter", 1, 4000)  # the restored one closes: its own key, nothing else
    assert [a[0] for a in of(acts, "persist")] == ["session." + rec["CPOPartnerSessionID"]]
    assert len(outbox(acts, "cdr")) == 1
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_A, dt=3000)
    assert of(acts, "session_start", 1)
    new_key = "session." + of(acts, "session_start", 1)[0]
    assert new_key != "session." + rec["CPOPartnerSessionID"]


def test_the_same_record_twice_is_closed_once_and_a_second_one_for_the_evse_at_once():
    rec = _charged_record()
    r = Rig()
    r.step("restore", 1, rec)
    assert r.step("restore", 1, dict(rec)) == []  # the same session (old and new key)
    other = dict(rec, CPOPartnerSessionID="d3c2a1d0-1111-4222-8333-444455556666",
                 SessionID="d3c2a1d0-1111-4222-8333-444455556666", MeterValueEnd=1500)
    acts = r.step("restore", 1, other)  # a second session on the EVSE: closed at once
    cdr = outbox(acts, "cdr")
    assert len(cdr) == 1 and cdr[0]["ConsumedEnergy"] == 0.5
    assert cdr[0]["MeteringCheck"] == "Failed"
    assert len(outbox(r.step("meter", 1, 4000), "cdr")) == 1  # and the first one


def test_time_arrives_late_fills_timestamps():
    from firmware.controller import Controller
    from tests.mp.test_controller_kit import Ids, config
    c = Controller(config(), Ids())
    c.step(("contactor", 1, "open"), 100)
    c.step(("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]}), 200)
    c.step(("card", 0, UID_A), 1000)
    assert c.outlets[0].session.session_start is None
    c.step(("time", 0, T0), 5000)
    assert c.outlets[0].session.session_start == T0 - 4


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
