"""Controller: remote start/stop, the RFID window, bad input and local-list updates
(runs on both interpreters; see test_controller_kit)."""


from tests.mp.test_controller_kit import (
    EVSE_IDS,
    SID_1,
    SID_2,
    UID_B,
    Rig,
    of,
    outbox,
    sent,
)


def test_remote_start_codes():
    r = Rig(2)
    base = {"Identification": {"RemoteIdentification": {"EvcoID": "DE-8EO-CAet5e4XY-3"}},
            "ProviderID": "DE*8EO"}
    cases = (
        ({"id": "r1", "EvseID": "DE*ABC*E9", "SessionID": SID_1}, False, "603"),
        ({"id": "r2", "EvseID": EVSE_IDS[0], "SessionID": None}, False, "022"),
        ({"id": "r3", "EvseID": EVSE_IDS[0], "SessionID": SID_1}, True, "000"),
        ({"id": "r4", "EvseID": EVSE_IDS[0], "SessionID": SID_1}, True, "000"),  # repeat
        ({"id": "r5", "EvseID": EVSE_IDS[0], "SessionID": SID_2}, False, "602"),
        ({"id": "r6", "EvseID": None, "SessionID": SID_2}, True, "000"),  # picks EVSE 2
        ({"id": "r7", "EvseID": None, "SessionID": "d" + SID_2[1:]}, False, "602"),
    )
    for cmd, ok, code in cases:
        cmd.update(base)
        reply = of(r.step("remote_start", 0, cmd), "reply")[0]
        assert reply["Result"] is ok and reply["StatusCode"]["Code"] == code, (cmd, reply)
        assert reply["id"] == cmd["id"]
    assert r.c.outlets[1].session.session_id == SID_2
    r.step("contactor", 1, "welded")
    r.step("remote_stop", 0, {"id": "s0", "SessionID": SID_1})
    cmd = {"id": "r8", "EvseID": EVSE_IDS[0], "SessionID": "e" + SID_1[1:]}
    cmd.update(base)
    reply = of(r.step("remote_start", 0, cmd), "reply")[0]
    assert reply["StatusCode"]["Code"] == "700"


def test_remote_start_waits_for_plug_and_remote_stop():
    r = Rig()
    cmd = {"id": "r1", "EvseID": None, "SessionID": SID_1, "ProviderID": "DE*8EO",
           "Identification": {"RemoteIdentification": {"EvcoID": "DE-8EO-CAet5e4XY-3"}}}
    r.step("remote_start", 0, cmd)
    r.step("meter", 1, 0)
    r.step("pilot", 1, ("B", False))
    r.step("pilot", 1, ("B", True))
    assert ("contactor", 1, True) in r.step("pilot", 1, ("C", True))
    r.step("meter", 1, 5000)
    bad = of(r.step("remote_stop", 0, {"id": "x", "SessionID": SID_2}), "reply")[0]
    assert bad["Result"] is False and bad["StatusCode"]["Code"] == "400"
    ok = of(r.step("remote_stop", 0, {"id": "y", "SessionID": SID_1}), "reply")[0]
    assert ok["Result"] is True
    acts = r.idle(6000)  # the EV ignores PWM off: forced open after the grace time
    assert ("contactor", 1, False) in acts
    cdr = outbox(acts, "cdr")[0]
    # Hubject repeats the RemoteStart after the session ended: the same answer, nothing new
    again = r.step("remote_start", 0, dict(cmd, id="r2"))
    assert of(again, "reply")[0]["StatusCode"]["Code"] == "000"
    assert not of(again, "session_start") and r.c.outlets[0].session is None
    assert cdr["SessionID"] == SID_1 and cdr["ConsumedEnergy"] == 5.0
    assert cdr["Identification"]["RemoteIdentification"]["EvcoID"] == "DE-8EO-CAet5e4XY-3"
    assert of(acts, "session_end", 1)[0]["reason"] == "Remote"


def test_remote_start_rfid_window():
    r = Rig(online=True)
    r.step("online", 0, True)
    cmd = {"id": "r1", "EvseID": EVSE_IDS[0], "SessionID": SID_1, "ProviderID": "DE*8EO",
           "Identification": {"RFIDMifareFamilyIdentification": {"UID": UID_B}}}
    r.step("remote_start", 0, cmd)
    r.idle(60000)  # no EV came: the remote authorization lapses
    assert r.c.outlets[0].session is None
    acts = r.step("card", 0, UID_B)  # same token within 15 min: no real-time request
    assert not sent(acts) and of(acts, "session_start", 1) == [SID_1]
    r.step("card_gone", 0, None)
    r.step("card", 0, UID_B)  # owner tap: cancel
    r.step("card_gone", 0, None)
    r.idle(900000)
    acts = r.step("card", 0, UID_B)  # window over: ask the backend
    assert sent(acts)
