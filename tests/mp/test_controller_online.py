"""Controller: online authorization: requests, answers (good and malformed), the cache
(runs on both interpreters; see test_controller_kit)."""


from tests.mp.test_controller_kit import (
    EVSE_IDS,
    SID_1,
    UID_B,
    UID_C,
    Rig,
    of,
    outbox,
    reply,
    sent,
)


def test_online_request_then_authorized():
    r = Rig()
    r.step("online", 0, True)
    r.step("pilot", 1, ("B", False))
    acts = r.step("card", 0, UID_B)
    req = sent(acts)[0]
    assert req["Identification"] == {"RFIDMifareFamilyIdentification": {"UID": UID_B}}
    assert req["EvseID"] == EVSE_IDS[0] and req["deadline"] == r.now + 10000
    stop_ids = [{"RFIDMifareFamilyIdentification": {"UID": UID_C}}]
    acts = r.step("auth", 0, reply(req, AuthorizationStopIdentifications=stop_ids))
    assert of(acts, "auth", 1) == [{"uid": UID_B, "result": "accepted", "code": "000"}]
    assert of(acts, "session_start", 1) == [SID_1]
    r.step("pilot", 1, ("B", True))
    r.step("pilot", 1, ("C", True))
    r.step("card_gone", 0, None)
    r.step("card", 0, UID_C)  # a stop identification may stop it
    acts = r.step("pilot", 1, ("B", True))
    cdr = outbox(acts, "cdr")[0]
    assert cdr["SessionID"] == SID_1 and cdr["ProviderID"] == "DE*ICE"
    # the positive answer went into the cache: next time no request, post-authorized at once
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_B)
    assert of(acts, "auth", 1)[0]["result"] == "accepted"
    assert sent(acts)[0]["CPOPartnerSessionID"] == of(acts, "session_start", 1)[0]


def test_not_authorized_and_malformed_replies():
    r = Rig()
    r.step("online", 0, True)
    req = sent(r.step("card", 0, UID_B))[0]
    bad = ({"id": req["id"]}, {"id": req["id"], "AuthorizationStatus": "Maybe"},
           {"id": req["id"], "StatusCode": {"Code": 102}}, "garbage", {"id": 5},
           reply(req, SessionID="nope"), reply(req, SessionID=None),
           reply(req, AuthorizationStopIdentifications=[{"X": 1}]),
           {"id": "unknown", "AuthorizationStatus": "Authorized"})
    for b in bad:
        acts = r.step("auth", 0, b)
        assert [a[2][0] for a in acts] == ["bad_reply"], (b, acts)
    assert r.c.outlets[0].pending == req["id"]  # still waiting: state unchanged
    acts = r.step("auth", 0, {"id": req["id"], "StatusCode": {"Code": "210"}})
    assert of(acts, "auth", 1) == [{"uid": UID_B, "result": "no_contract", "code": "210"}]
    assert r.c.outlets[0].session is None
