"""Controller: card taps, authorization policy, post-authorization, routing, sessions
(runs on both interpreters; see test_controller_kit)."""


from tests.mp.test_controller_kit import (
    EVSE_IDS,
    UID_A,
    Rig,
    of,
    outbox,
)


def test_boot_commands_safe_outputs_and_status():
    r = Rig(2)
    assert ("contactor", 1, False) in r.log and ("contactor", 2, False) in r.log
    assert ("pwm", 1, 1000) in r.log and ("status", 2, "Available") in r.log
    st = outbox(r.log, "evse_status")
    assert [m["EvseID"] for m in st] == list(EVSE_IDS[:2])


def test_local_card_full_session_one_cdr():
    r = Rig()
    acts = r.plug_and_charge()
    assert ("contactor", 1, True) in acts
    start = outbox(acts, "notification", "Start")[0]
    assert start["MeterValueStart"] == 1.0 and start["EvseID"] == EVSE_IDS[0]
    assert of(acts, "persist")[-1][0] == "session.1"
    r.step("meter", 1, 1234)
    r.step("meter", 1, 3500)
    assert not of(r.step("meter", 1, 3600), "persist")  # no flash write per reading
    acts = r.step("card", 0, UID_A)  # the owner taps: PWM off first
    assert ("pwm", 1, 1000) in acts and ("contactor", 1, False) not in acts
    acts = r.step("pilot", 1, ("B", True))
    cdr = outbox(acts, "cdr")
    assert len(cdr) == 1
    c = cdr[0]
    assert c["ConsumedEnergy"] == 2.6 and c["MeterValueStart"] == 1.0
    assert c["MeterValueEnd"] == 3.6
    assert c["Identification"] == {"RFIDMifareFamilyIdentification": {"UID": UID_A}}
    assert c["SessionID"] == c["CPOPartnerSessionID"]  # local session, never post-authorized
    end = of(acts, "session_end", 1)[0]
    assert end["reason"] == "Local" and end["energy_kwh"] == 2.6
    assert ("persist", 0, ("session.1", None)) in acts
    assert acts.index(("outbox", 0, c)) < acts.index(("persist", 0, ("session.1", None)))
    r.step("pilot", 1, ("A", False))
    assert len(outbox(r.log, "cdr")) == 1


def test_card_debounce_until_gone():
    r = Rig()
    r.plug_and_charge()
    r.step("card", 0, UID_A)  # stop
    r.step("pilot", 1, ("B", True))
    acts = r.step("card", 0, UID_A)  # same card still held: ignored
    assert acts == []
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_A)  # a new tap: starts again on the plugged EV
    assert of(acts, "session_start", 1)
