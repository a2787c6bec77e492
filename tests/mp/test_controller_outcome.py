"""Controller: every tap ends in one named outcome (`last_outcome`, authorize.O_*), one test per
path through the authorization chain (runs on both interpreters; see test_controller_kit)."""

from firmware.authorize import (
    CHAIN,
    O_BAD_UID,
    O_NO_EVSE,
    O_REFUSED,
    O_SAME_CARD,
    O_STARTED,
    O_STOP_ASKED,
    O_STOPPED_BY_BACKEND,
    O_STOPPED_BY_TOKEN,
    O_STOPPED_OWN,
    O_TIMED_OUT,
    O_WAITING,
    OFFLINE,
)
from tests.mp.test_controller_kit import (
    EVSE_IDS,
    SID_1,
    UID_A,
    UID_B,
    UID_C,
    Rig,
    of,
    reply,
    sent,
)


def tap(r, uid):
    """The card in the field leaves, `uid` is presented (the same card only after the guard
    time: a new presentation)."""
    last = r.c.card
    r.step("card_gone", 0, None)
    if uid == last:
        r.idle(3000)
    return r.step("card", 0, uid)


def test_the_chain_is_in_the_documented_order():
    assert CHAIN == ("local_list", "window", "cache", "backend", "offline")
    assert OFFLINE == CHAIN[-1:]


def test_local_list_starts_and_the_same_card_stops_its_own_session():
    r = Rig()
    r.step("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]})
    r.step("card", 0, UID_A)
    assert r.c.last_outcome == (O_STARTED, 1, UID_A, None)
    assert r.c.outlets[0].session.source == "local"
    r.step("card", 0, UID_A)  # still in the field
    assert r.c.last_outcome[0] == O_SAME_CARD
    r.step("card_gone", 0, None)
    r.step("card", 0, UID_A)  # back within the guard time: the same presentation
    assert r.c.last_outcome[0] == O_SAME_CARD and r.c.outlets[0].session is not None
    acts = tap(r, UID_A)
    assert r.c.last_outcome == (O_STOPPED_OWN, 1, UID_A, None)
    assert of(acts, "session_end", 1)[0]["reason"] == "Local"


def test_a_stop_identification_stops_it_by_token():
    r = Rig()
    r.step("online", 0, True)
    req = sent(r.step("card", 0, UID_B))[0]
    assert r.c.last_outcome == (O_WAITING, 1, UID_B, None)
    stop_ids = [{"RFIDMifareFamilyIdentification": {"UID": UID_C}}]
    r.step("auth", 0, reply(req, AuthorizationStopIdentifications=stop_ids))
    assert r.c.last_outcome == (O_STARTED, 1, UID_B, "000")
    acts = tap(r, UID_C)
    assert r.c.last_outcome == (O_STOPPED_BY_TOKEN, 1, UID_C, None)
    assert of(acts, "session_end", 1)


def test_backend_refusal_names_its_code():
    r = Rig()
    r.step("online", 0, True)
    req = sent(r.step("card", 0, UID_B))[0]
    r.step("card", 0, UID_B)  # held in the field while waiting: nothing new
    assert r.c.last_outcome[0] == O_SAME_CARD
    r.step("card_gone", 0, None)
    r.idle(3000)
    r.step("card", 0, UID_B)  # tapped again while its request is out: still waiting
    assert r.c.last_outcome == (O_WAITING, 0, UID_B, None) and len(r.c.requests) == 1
    r.step("auth", 0, {"id": req["id"], "StatusCode": {"Code": "210"}})
    assert r.c.last_outcome == (O_REFUSED, 1, UID_B, "210")


def test_cache_hit_starts_at_once():
    r = Rig()
    r.step("online", 0, True)
    req = sent(r.step("card", 0, UID_B))[0]
    r.step("auth", 0, reply(req))
    tap(r, UID_B)  # its own session: stopped
    r.idle(1000)
    acts = tap(r, UID_B)  # cached now: accepted at once, post-authorized in the background
    assert r.c.last_outcome == (O_STARTED, 1, UID_B, None)
    assert r.c.outlets[0].session.source == "cache" and sent(acts)


def test_offline_policy_refuses_then_starts_after_an_unanswered_request():
    r = Rig(offline_policy="local_only")
    r.step("card", 0, UID_B)  # offline, not on the local list
    assert r.c.last_outcome == (O_REFUSED, 1, UID_B, None)
    r = Rig(offline_policy="free_vend")
    r.step("online", 0, True)
    r.step("card", 0, UID_B)
    assert r.c.last_outcome[0] == O_WAITING
    r.idle(10000)  # authorize_start unanswered: the offline policy decides
    assert r.c.last_outcome == (O_STARTED, 1, UID_B, None)
    assert r.c.outlets[0].session.source == "free_vend"


def test_remote_start_window_starts_the_named_card():
    r = Rig()
    cmd = {"id": "r1", "EvseID": EVSE_IDS[0], "SessionID": SID_1,
           "Identification": {"RFIDMifareFamilyIdentification": {"UID": UID_B}}}
    r.step("remote_start", 0, cmd)
    r.idle(60000)  # no EV: the remote authorization lapses, the window stays
    r.step("card", 0, UID_B)
    assert r.c.last_outcome == (O_STARTED, 1, UID_B, None)
    assert r.c.outlets[0].session.source == "remote"
    assert r.c.outlets[0].session.session_id == SID_1  # never charged: its SessionID reused


def test_no_free_evse_then_authorize_stop():
    r = Rig()
    r.step("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]})
    r.step("card", 0, UID_A)
    acts = tap(r, UID_B)  # offline, the only EVSE taken: nothing to ask
    assert r.c.last_outcome == (O_NO_EVSE, 0, UID_B, "602")
    assert of(acts, "auth", 0)[0]["result"] == "card_invalid"
    r = Rig()
    r.step("online", 0, True)
    r.step("pilot", 1, ("B", False))
    req = sent(r.step("card", 0, UID_B))[0]
    r.step("auth", 0, reply(req))
    acts = tap(r, UID_C)  # not its owner, nothing free: may it stop that session?
    assert r.c.last_outcome == (O_STOP_ASKED, 0, UID_C, None)
    stop = sent(acts, "authorize_stop")[0]
    r.step("auth", 0, {"id": stop["id"], "AuthorizationStatus": "Authorized",
                       "StatusCode": {"Code": "000"}})
    assert r.c.last_outcome == (O_STOPPED_BY_BACKEND, 1, UID_C, "000")
    r = Rig()
    r.step("online", 0, True)
    r.step("pilot", 1, ("B", False))
    r.step("auth", 0, reply(sent(r.step("card", 0, UID_B))[0]))
    r.step("pilot", 1, ("B", True))  # diode seen: the session stays while we wait
    tap(r, UID_C)
    r.idle(10000)  # authorize_stop unanswered
    assert r.c.last_outcome == (O_TIMED_OUT, 1, UID_C, None)


def test_a_bad_uid_is_no_tap():
    r = Rig()
    acts = r.step("card", 0, "00000000")
    assert r.c.last_outcome == (O_BAD_UID, 0, "00000000", None)
    assert of(acts, "error", 0)[0][0] == "bad_uid"
    r.step("card", 0, "xyz")
    assert r.c.last_outcome == (O_BAD_UID, 0, None, None)
