"""Controller: card taps, authorization policy, post-authorization, routing, sessions
(runs on both interpreters; see test_controller_kit)."""


from tests.mp.test_controller_kit import (
    EVSE_IDS,
    UID_A,
    UID_B,
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
    key = "session." + r.c.outlets[0].session.local_id  # one record per session, its own key
    persists = [a for a in acts if a[0] == "persist"]
    assert persists[-1][2][0] == key and persists[-1][2][1]["ChargingStart"] is not None
    # write ahead: "charging, meter start" is on flash before the coil closes
    assert acts.index(persists[-1]) < acts.index(("contactor", 1, True))
    r.step("meter", 1, 1234)
    r.step("meter", 1, 3500)
    assert not of(r.step("meter", 1, 3600), "persist")  # no flash write per reading
    acts = r.step("card", 0, UID_A, dt=3000)  # the owner taps: PWM off first
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
    assert ("persist", 0, (key, None)) in acts
    assert acts.index(("outbox", 0, c)) < acts.index(("persist", 0, (key, None)))
    r.step("pilot", 1, ("A", False))
    assert len(outbox(r.log, "cdr")) == 1


def test_card_debounce_until_gone():
    r = Rig()
    r.plug_and_charge()
    r.step("card", 0, UID_A, dt=3000)  # stop
    r.step("pilot", 1, ("B", True))
    acts = r.step("card", 0, UID_A)  # same card still held: ignored
    assert acts == []
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_A, dt=3000)  # a new tap: starts again on the plugged EV
    assert of(acts, "session_start", 1)


def test_the_same_card_back_within_the_guard_time_is_the_same_presentation():
    r = Rig(card_guard_ms=2000)
    r.plug_and_charge()  # tapped, then the card left the field
    acts = r.step("card", 0, UID_A, dt=400)  # a 0.4 s drop-out of the field: not a new tap
    assert acts == [] and r.c.outlets[0].session is not None
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_A, dt=1900)  # 1.9 s after it left again: still guarded
    assert acts == []
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_B, dt=100)  # another card is a new tap at once
    assert of(acts, "auth")[0]["uid"] == UID_B
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_A, dt=2000)  # at the guard time: a new tap (stops)
    assert ("pwm", 1, 1000) in acts


def test_identifiers_no_real_card_has_are_not_cards():
    r = Rig()
    r.plug_and_charge()
    for uid in ("00000000", "FFFFFFFF", "00000000000000", "ffffffffffffff"):
        acts = r.step("card", 0, uid, dt=3000)
        assert of(acts, "error")[0][0] == "bad_uid" and len(acts) == 1
        assert r.c.card is None  # nothing is in the field: the next real tap counts
    acts = r.step("card", 0, UID_A, dt=3000)
    assert ("pwm", 1, 1000) in acts


def _list(r, *uids):
    r.step("local_list", 0, {"full": True, "version": 1, "uids": list(uids)})


def test_a_tap_before_any_plug_in_goes_to_the_first_outlet_that_gets_one():
    r = Rig(2)
    _list(r, UID_A)
    acts = r.step("card", 0, UID_A)  # nothing plugged: the authorization floats
    sid = of(acts, "session_start", 1)[0]
    r.step("card_gone", 0, None)
    acts = r.step("pilot", 2, ("B", False))  # outlet 2 is plugged first: it takes it
    assert ("pwm", 2, 267) in acts and r.c.outlets[0].session is None
    s = r.c.outlets[1].session
    assert s.session_id == sid and s.evse_id == EVSE_IDS[1]
    assert of(acts, "persist") == [("session." + sid, r.c.outlets[1].session.to_record())]
    assert of(acts, "persist")[0][1]["EvseID"] == EVSE_IDS[1]  # moved, not duplicated
    assert r.c.outlets[0].power.state == "idle"
    r.step("pilot", 2, ("B", True))
    acts = r.step("pilot", 2, ("C", True))
    assert ("contactor", 2, True) in acts
    acts = r.step("pilot", 1, ("B", False))  # a car on outlet 1 later does not charge on it
    assert not [a for a in acts if a[0] == "pwm"] and r.c.outlets[0].session is None


def test_a_floating_authorization_still_times_out():
    r = Rig(2, connection_timeout_s=60)
    _list(r, UID_A)
    r.step("card", 0, UID_A)
    acts = r.idle(61000)
    assert of(acts, "session_end", 1)[0]["reason"] == "ConnectionTimeout"
    acts = r.step("pilot", 2, ("B", False))
    assert not [a for a in acts if a[0] == "pwm"]


def test_a_fresh_plug_in_wins_over_a_car_left_unauthorized_past_the_time_out():
    r = Rig(2, connection_timeout_s=60)
    _list(r, UID_A)
    r.step("pilot", 1, ("B", False))  # a car left on outlet 1
    r.idle(61000)
    r.step("pilot", 2, ("B", False))  # a driver plugs in on outlet 2 and taps
    acts = r.step("card", 0, UID_A)
    assert of(acts, "session_start", 2) and not of(acts, "session_start", 1)
    r = Rig(2, connection_timeout_s=60)
    _list(r, UID_A)
    r.step("pilot", 1, ("B", False))
    r.step("pilot", 2, ("B", False), dt=5000)  # both fresh: the newest plug-in
    acts = r.step("card", 0, UID_A)
    assert of(acts, "session_start", 2)
    r = Rig(2, connection_timeout_s=60)
    _list(r, UID_A)
    r.step("pilot", 1, ("B", False))
    r.idle(61000)  # only a stale plug-in and a free outlet: the plugged car is still first
    acts = r.step("card", 0, UID_A)
    assert of(acts, "session_start", 1)
