"""Controller: request deadlines, offline policy, post-authorization, routing, stop requests
(runs on both interpreters; see test_controller_kit)."""

from tests.mp.test_controller_kit import (
    SID_1,
    UID_A,
    UID_B,
    UID_C,
    Rig,
    of,
    outbox,
    reply,
    sent,
)


def test_request_deadline_falls_back_to_offline_policy():
    r = Rig(offline_policy="free_vend")
    r.step("online", 0, True)
    r.step("card", 0, UID_B)
    acts = r.idle(10000)
    assert of(acts, "auth", 1)[0]["result"] == "accepted"
    s = r.c.outlets[0].session
    assert s.source == "free_vend" and s.post_auth == 1  # post-authorize on the next uplink
    r.step("online", 0, False)
    req = sent(r.step("online", 0, True))[0]
    assert req["CPOPartnerSessionID"] == s.local_id
    r.step("auth", 0, reply(req))
    assert s.session_id == SID_1 and s.post_auth == 3


def _charging_offline_then_online():
    """A card accepted offline (free vend), charging; then the link: -> (rig, the
    post-authorization request)."""
    r = Rig(offline_policy="free_vend")
    r.step("meter", 1, 10)
    r.step("pilot", 1, ("B", False))
    r.step("card", 0, UID_B)
    r.step("pilot", 1, ("B", True))
    r.step("pilot", 1, ("C", True))
    return r, sent(r.step("online", 0, True))[0]


def test_offline_deny_and_post_auth_rejection_stops_session():
    r = Rig(offline_policy="deny")
    acts = r.step("card", 0, UID_B)
    assert of(acts, "auth", 1)[0]["result"] == "card_unknown" and r.c.outlets[0].session is None
    r, req = _charging_offline_then_online()
    acts = r.step("auth", 0, {"id": req["id"], "AuthorizationStatus": "NotAuthorized",
                              "StatusCode": {"Code": "102"}})
    assert ("pwm", 1, 1000) in acts and r.c.outlets[0].power.state == "stopping"
    acts = r.step("pilot", 1, ("B", True))
    assert of(acts, "session_end", 1)[0]["reason"] == "DeAuthorized"
    assert len(outbox(acts, "cdr")) == 1


def test_post_auth_without_a_decision_keeps_the_session_and_asks_again():
    """NoDecision (the bridge could not reach Hubject) is no refusal: the running session goes
    on and is post-authorized again POST_RETRY_MS later (firmware/contract.py, down/authorize)."""
    from firmware.authorize import POST_RETRY_MS
    r, req = _charging_offline_then_online()
    acts = r.step("auth", 0, {"id": req["id"], "AuthorizationStatus": "NotAuthorized",
                              "StatusCode": {"Code": "310"}, "NoDecision": True})
    s = r.c.outlets[0].session
    assert r.c.outlets[0].power.state == "charging" and s.post_auth == 1
    assert not of(acts, "session_end", 1) and not sent(acts)
    assert not sent(r.idle(POST_RETRY_MS - 100))
    again = sent(r.idle(200))
    assert len(again) == 1 and again[0]["CPOPartnerSessionID"] == s.local_id
    r.step("auth", 0, reply(again[0]))
    assert s.session_id == SID_1 and s.post_auth == 3 and r.c.outlets[0].power.state == "charging"
    # a malformed NoDecision is refused like any bad reply, nothing changes
    acts = r.step("auth", 0, {"id": "x", "AuthorizationStatus": "NotAuthorized",
                              "StatusCode": {"Code": "310"}, "NoDecision": "yes"})
    assert of(acts, "error", 0)


def test_link_loss_resolves_pending_request():
    r = Rig()
    r.step("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]})
    r.step("online", 0, True)
    r.step("card", 0, UID_B)
    acts = r.step("online", 0, False)  # local_only: a roaming card is refused offline
    assert of(acts, "auth", 1)[0]["result"] == "card_unknown"
    assert r.c.next_deadline() is None


def test_connection_timeout_lapses_authorization():
    r = Rig()
    r.step("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]})
    r.step("card", 0, UID_A)
    acts = r.idle(59000)
    assert not of(acts, "session_end")
    acts = r.idle(1000)
    assert of(acts, "session_end", 1)[0]["reason"] == "ConnectionTimeout"
    assert of(acts, "auth", 1)[0]["result"] == "timeout"
    assert not outbox(acts, "cdr")  # never charged: no CDR


def test_card_routing_with_four_evses():
    r = Rig(4)
    r.step("local_list", 0, {"full": True, "version": 1, "uids": [UID_A, UID_B, UID_C]})
    r.step("pilot", 3, ("B", False))
    acts = r.step("card", 0, UID_A)  # goes to the plugged EV on EVSE 3
    assert of(acts, "session_start", 3)
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_B)  # no other plugged EV: the first free EVSE waits
    assert of(acts, "session_start", 1)
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_A)  # the owner of EVSE 3's session stops it
    assert of(acts, "session_end", 3)


def test_authorize_stop_for_foreign_token():
    r = Rig()
    r.step("online", 0, True)
    r.step("pilot", 1, ("B", False))
    req = sent(r.step("card", 0, UID_B))[0]
    r.step("auth", 0, reply(req))
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_C)  # not the owner, no free EVSE: ask the backend
    stop = sent(acts, "authorize_stop")[0]
    assert stop["SessionID"] == SID_1
    acts = r.step("auth", 0, {"id": stop["id"], "AuthorizationStatus": "Authorized",
                              "StatusCode": {"Code": "000"}})
    assert of(acts, "session_end", 1)[0]["reason"] == "Local"
