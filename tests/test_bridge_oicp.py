"""tools/bridge/oicp.py, the mapping contract <-> OICP 2.3, and the budget: pure functions,
property-tested with hypothesis against the fact sheet's rules (oicp-2.3-cpo.md §1-4, §9, §12).
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import contract as C
from firmware import oicp_status as S
from firmware.authorize import parse_reply as _parse_auth
from firmware.session import ident_token
from tools.bridge import oicp
from tools.bridge.app import without_userinfo
from tools.bridge.budget import Bucket, parse_budget
from tools.bridge.config import ConfigError, build, load

OP = "DE*SIM"
HEX = "0123456789ABCDEF"

uids = st.sampled_from([8, 14, 20]).flatmap(
    lambda n: st.text(alphabet=HEX + "abcdef", min_size=n, max_size=n))
evse_ids = st.builds(lambda a, b: "DE*SIM*E{}*{}".format(a, b),
                     st.integers(0, 9999), st.integers(1, 4))
session_ids = st.from_regex(oicp.SESSION_RE, fullmatch=True)
local_ids = session_ids
codes = st.sampled_from(["000", "001", "017", "021", "022", "102", "106", "210", "300", "310",
                         "320", "400", "501", "602", "603", "700", "999"])
nullish = st.one_of(st.none(), st.just(None))


def start_msg(uid, evse, **extra):
    m = {"type": "authorize_start", "id": "r1", "ttl_ms": 9000, "EvseID": evse,
         "Identification": {"RFIDMifareFamilyIdentification": {"UID": uid}}}
    m.update(extra)
    return m


# -- charge point -> Hubject -----------------------------------------------------------------
@given(uids, evse_ids, st.one_of(st.none(), local_ids))
def test_authorize_start_body(uid, evse, local):
    msg = start_msg(uid, evse, **({"CPOPartnerSessionID": local} if local else {}))
    op, body = oicp.authorize_body(msg, OP)
    assert op == oicp.AUTHORIZE_START
    assert body["OperatorID"] == OP and body["EvseID"] == evse
    # exactly one member, RFIDMifareFamilyIdentification, upper-case UID (§12.1-3)
    assert body["Identification"] == {"RFIDMifareFamilyIdentification": {"UID": uid.upper()}}
    assert oicp.UID_RE.match(body["Identification"]["RFIDMifareFamilyIdentification"]["UID"])
    assert "SessionID" not in body and "PartnerProductID" not in body
    assert body.get("CPOPartnerSessionID") == local  # post-authorization carries it
    assert oicp.authorize_path(op, OP) == "/charging/v21/operators/DE*SIM/authorize/start"


@given(uids, evse_ids, session_ids, local_ids)
def test_authorize_stop_body(uid, evse, sid, local):
    msg = start_msg(uid, evse, type="authorize_stop", SessionID=sid, CPOPartnerSessionID=local)
    op, body = oicp.authorize_body(msg, OP)
    assert op == oicp.AUTHORIZE_STOP
    assert body["SessionID"] == sid and body["CPOPartnerSessionID"] == local
    assert oicp.authorize_path(op, OP).endswith("/authorize/stop")
    with pytest.raises(oicp.Unusable):
        oicp.authorize_body(dict(msg, SessionID=None), OP)


@pytest.mark.parametrize("ident", [
    {},
    {"RFIDMifareFamilyIdentification": {"UID": "04A1B2C3"},
     "RemoteIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7"}},
    {"RFIDMifareFamilyIdentification": {"UID": "12345ABCD"}},  # §3: the spec's own bad sample
    {"RFIDMifareFamilyIdentification": {"UID": "AFFH1768"}},
    {"QRCodeIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7", "HashedPIN": {"Value": "x"}}},
    {"Foo": {"UID": "04A1B2C3"}},
    "04A1B2C3",
])
def test_bad_identification_refused(ident):
    with pytest.raises(oicp.Unusable) as e:
        oicp.authorize_body(start_msg("04A1B2C3", "DE*SIM*E1*1", Identification=ident), OP)
    assert e.value.code == S.DATA_ERROR


def test_null_members_are_absent_and_rfid_identification_becomes_mifare():
    ident = {"RFIDMifareFamilyIdentification": None, "QRCodeIdentification": None,
             "RFIDIdentification": {"UID": "04a1b2c3", "RFID": "mifareCls"}}
    assert oicp.identification(ident) == {"RFIDMifareFamilyIdentification": {"UID": "04A1B2C3"}}


@pytest.mark.parametrize("evse", ["DE*ABC*E1*1", "XX", None, "+49*810*1", "DE*SIM*X1"])
def test_evse_not_ours_refused(evse):
    with pytest.raises(oicp.Unusable):
        oicp.authorize_body(start_msg("04A1B2C3", evse), OP)


def test_evse_sent_upper_case():
    # OA allows lower case, Hubject upper-cases it; we send upper case (§3)
    assert oicp.authorize_body(start_msg("04A1B2C3", "de*sim*e1"), OP)[1]["EvseID"] == "DE*SIM*E1"


# -- Hubject's answer -> down/authorize --------------------------------------------------------
@given(session_ids, st.sampled_from(["DE-8KZ", "DE*ICE", "DE8EO"]), uids)
def test_authorized_answer_parses_in_the_firmware(sid, provider, uid):
    body = {"SessionID": sid, "CPOPartnerSessionID": None, "ProviderID": provider,
            "AuthorizationStatus": "Authorized",
            "StatusCode": {"Code": "000", "Description": None, "AdditionalInfo": None},
            "AuthorizationStopIdentifications": [
                {"RFIDMifareFamilyIdentification": {"UID": uid}, "RemoteIdentification": None},
                {"RemoteIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7"}},
                {"QRCodeIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7", "PIN": "1"}},
                None, "junk"]}
    ans = oicp.answer_from_response("r1", oicp.AUTHORIZE_START, body)
    assert ans["AuthorizationStatus"] == "Authorized" and ans["SessionID"] == sid
    assert ans["ProviderID"] == provider and ans["StatusCode"]["Code"] == "000"
    rid, ok, code, psid, pprov, stops, undecided = _parse_auth(ans)  # the firmware's parser
    assert (rid, ok, code, psid, pprov, undecided) == ("r1", True, "000", sid, provider, False)
    assert stops == (uid.upper(), "DE8KZC12AB34CD7")
    assert len(oicp.encode_down(ans)) <= C.MAX_DOWN


@given(codes, st.dictionaries(st.sampled_from(["SessionID", "ProviderID",
                                               "CPOPartnerSessionID"]), st.none()))
def test_not_authorized_and_status_only(code, nulls):
    for body in ({"AuthorizationStatus": "NotAuthorized", "StatusCode": {"Code": code}, **nulls},
                 {"StatusCode": {"Code": code, "Description": "x"}}):
        ans = oicp.answer_from_response("r9", oicp.AUTHORIZE_START, body)
        assert ans["AuthorizationStatus"] == "NotAuthorized"
        parsed = _parse_auth(ans)
        assert not isinstance(parsed, str) and parsed[1] is False
        # an explicit NotAuthorized is Hubject's decision; an error answer is none
        assert parsed[6] is ("AuthorizationStatus" not in body)
        if "AuthorizationStatus" in body or code != "000":
            assert ans["StatusCode"]["Code"] == code
        else:  # "success" without a decision
            assert ans["StatusCode"]["Code"] == S.SYSTEM_ERROR


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()),
                 st.fixed_dictionaries({"AuthorizationStatus": st.text()}),
                 st.fixed_dictionaries({"StatusCode": st.fixed_dictionaries(
                     {"Code": st.integers()})})))
def test_malformed_answer_is_021(body):
    ans = oicp.answer_from_response("r2", oicp.AUTHORIZE_START, body)
    assert ans["AuthorizationStatus"] == "NotAuthorized"
    assert ans["StatusCode"]["Code"] == S.SYSTEM_ERROR
    parsed = _parse_auth(ans)
    assert not isinstance(parsed, str) and parsed[6] is True


def test_authorized_start_without_session_id_is_refused():
    body = {"AuthorizationStatus": "Authorized", "SessionID": None,
            "StatusCode": {"Code": "000"}}
    ans = oicp.answer_from_response("r3", oicp.AUTHORIZE_START, body)
    assert ans["AuthorizationStatus"] == "NotAuthorized"
    assert ans["StatusCode"]["Code"] == S.SYSTEM_ERROR
    # a stop answer may lack it
    ans = oicp.answer_from_response("r3", oicp.AUTHORIZE_STOP, body)
    assert ans["AuthorizationStatus"] == "Authorized"


@pytest.mark.parametrize("status,body,code", [
    (401, None, "017"), (403, "<html>", "017"), (404, None, "300"), (500, None, "320"),
    (502, None, "320"), (503, None, "320"), (408, None, "320"), (429, None, "320"),
    (400, None, "022"), (418, None, "021"), (None, None, "320"),
    (401, {"StatusCode": {"Code": "017", "Description": "Unauthorized Access"}}, "017"),
    (404, {"StatusCode": {"Code": "300", "Description": "Partner not found"}}, "300"),
    (500, {"StatusCode": {"Code": "001"}}, "001"),
    (500, {"StatusCode": {"Code": "000"}}, "320"),
])
def test_failure_codes(status, body, code):
    assert oicp.failure_code(status, body)[0] == code


def test_answer_fits_max_down():
    stops = [{"RFIDMifareFamilyIdentification": {"UID": "04A1B2C3D4E5F6"}}] * 200
    body = {"AuthorizationStatus": "Authorized",
            "SessionID": "b7e1d2c3-4a5b-4c6d-8e9f-102132435465",
            "StatusCode": {"Code": "000", "AdditionalInfo": "x" * 1000},
            "AuthorizationStopIdentifications": stops}
    ans = oicp.answer_from_response("r4", oicp.AUTHORIZE_START, body)
    assert len(oicp.encode_down(ans)) <= C.MAX_DOWN
    assert ans["AuthorizationStopIdentifications"]


@given(st.text(min_size=4, max_size=20))
def test_mask_keeps_only_last_4(uid):
    m = oicp.mask(uid)
    assert m[-4:] == uid[-4:] and set(m[:-4]) <= {"*"} and len(m) == len(uid)


# -- Hubject -> charge point -------------------------------------------------------------------
def remote_start(**over):
    body = {"SessionID": "b7e1d2c3-4a5b-4c6d-8e9f-102132435465", "CPOPartnerSessionID": None,
            "EMPPartnerSessionID": "emp-1", "ProviderID": "DE-8KZ", "EvseID": "DE*SIM*E1*2",
            "Identification": {"RemoteIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7"},
                               "RFIDMifareFamilyIdentification": None},
            "PartnerProductID": None}
    body.update(over)
    return body


@given(session_ids, st.sampled_from(["DE-8KZ", "DE*8KZ", "DE8KZ", "de-8kz"]),
       st.sampled_from([{"RemoteIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7"}},
                        {"RFIDMifareFamilyIdentification": {"UID": "04a1b2c3"}},
                        {"PlugAndChargeIdentification": {"EvcoID": "DE*8KZ*Aet5e4*3"}}]))
def test_remote_start_command(sid, path_provider, ident):
    req = oicp.parse_remote(oicp.REMOTE_START, path_provider,
                            remote_start(SessionID=sid, Identification=ident), OP)
    cmd = oicp.remote_command(oicp.REMOTE_START, "c1", req)
    assert cmd["id"] == "c1" and cmd["SessionID"] == sid and cmd["EvseID"] == "DE*SIM*E1*2"
    assert cmd["ProviderID"] == "DE-8KZ"  # echoed verbatim, compared canonically (§12.15)
    assert ident_token(cmd["Identification"]) is not None
    assert len(cmd["Identification"]) == 1
    assert "CPOPartnerSessionID" not in cmd and cmd["EMPPartnerSessionID"] == "emp-1"
    C.parse_down("CP-A", C.down_topic("CP-A", C.DOWN_REMOTE_START), oicp.encode_down(cmd))


@pytest.mark.parametrize("over,path", [
    ({"ProviderID": "DE-XYZ"}, "DE-8KZ"),  # path and body differ
    ({"SessionID": None}, "DE-8KZ"),
    ({"SessionID": "not-a-session"}, "DE-8KZ"),
    ({"EvseID": "DE*ABC*E1*2"}, "DE-8KZ"),  # not our operator
    ({"EvseID": "nonsense"}, "DE-8KZ"),
    ({"Identification": {}}, "DE-8KZ"),
    ({"Identification": {"RemoteIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7"},
                         "RFIDMifareFamilyIdentification": {"UID": "04A1B2C3"}}}, "DE-8KZ"),
    ({"EMPPartnerSessionID": "x" * 251}, "DE-8KZ"),
    ({"ProviderID": None}, "DE-8KZ"),
])
def test_remote_start_bad_body(over, path):
    with pytest.raises(oicp.Unusable) as e:
        oicp.parse_remote(oicp.REMOTE_START, path, remote_start(**over), OP)
    assert e.value.code == S.DATA_ERROR


def test_remote_stop_has_no_identification():
    body = {"SessionID": "b7e1d2c3-4a5b-4c6d-8e9f-102132435465", "ProviderID": "DE-8KZ",
            "EvseID": "DE*SIM*E1*2", "CPOPartnerSessionID": "cpo-1"}
    req = oicp.parse_remote(oicp.REMOTE_STOP, "DE-8KZ", body, OP)
    cmd = oicp.remote_command(oicp.REMOTE_STOP, "c2", req)
    assert cmd == {"id": "c2", "SessionID": body["SessionID"], "EvseID": "DE*SIM*E1*2"}


@given(st.sampled_from(S.REMOTE_ACK_CODES), st.booleans())
def test_acknowledgement_from_reply(code, with_sid):
    req = {"SessionID": "b7e1d2c3-4a5b-4c6d-8e9f-102132435465", "EMPPartnerSessionID": "e"}
    ok = code == "000"
    reply = C.reply("c1", ok, code, S.status_code(code)["Description"],
                    session_id=req["SessionID"] if with_sid else None)
    ack = oicp.acknowledgement_from_reply(json.loads(json.dumps(reply)), req)
    assert ack["Result"] is ok and ack["StatusCode"]["Code"] == code
    assert ack["SessionID"] == req["SessionID"] and ack["EMPPartnerSessionID"] == "e"


@pytest.mark.parametrize("reply", [None, {}, {"Result": "yes"}, {"Result": True},
                                   {"Result": False, "StatusCode": {"Code": "000"}},
                                   {"Result": True, "StatusCode": {"Code": 602}}])
def test_unusable_reply_is_021(reply):
    ack = oicp.acknowledgement_from_reply(reply, {"SessionID": None})
    assert ack["Result"] is False and ack["StatusCode"]["Code"] == S.SYSTEM_ERROR


# -- budget and configuration --------------------------------------------------------------------
def test_budget_parse():
    assert parse_budget("AuthorizeStart=3/min") == ("eRoamingAuthorizeStart", 3)
    assert parse_budget("eRoamingAuthorizeStop=7") == ("eRoamingAuthorizeStop", 7)
    for bad in ("AuthorizeStart", "Foo=1/min", "AuthorizeStart=0/min", "AuthorizeStart=x"):
        with pytest.raises(ValueError):
            parse_budget(bad)


@settings(max_examples=50)
@given(st.integers(1, 300), st.integers(1, 400))
def test_bucket_never_exceeds_its_rate(per_minute, calls):
    now = [0.0]
    b = Bucket(per_minute, clock=lambda: now[0])
    granted = [w for w in (b.reserve(deadline=1e9) for _ in range(calls)) if w is not None]
    # every call granted; the k-th beyond the burst waits k/rate
    assert len(granted) == calls
    assert sum(1 for w in granted if w == 0) == min(calls, per_minute)
    assert max(granted) == pytest.approx(max(0, calls - per_minute) * 60 / per_minute)


def test_bucket_refuses_past_deadline_and_holds_after_429():
    now = [100.0]
    b = Bucket(2, clock=lambda: now[0])
    assert b.reserve(100.0) == 0 and b.reserve(100.0) == 0
    assert b.reserve(100.0 + 5) is None  # the next token comes in 30 s
    assert b.reserve(100.0 + 31) == pytest.approx(30)
    now[0] = 200.0
    b.ok()
    assert b.too_many(retry_after=3.0) == 3.0
    assert b.reserve(201.0) is None  # held
    assert b.reserve(204.0) == pytest.approx(3.0)


BASE_CFG = {"broker": "mqtt://127.0.0.1:1883", "operator_id": OP,
            "hubject_url": "http://127.0.0.1:9/api/oicp", "listen": "127.0.0.1:0"}


@pytest.mark.parametrize("over", [
    {"hubject_url": "http://hubject.example.com/api/oicp"},
    {"hubject_url": "http://10.0.0.1:8080/api/oicp"},
    {"hubject_url": "https://service.hubject.com/api/oicp"},  # no client certificate
    {"hubject_url": "ftp://127.0.0.1/api/oicp"},
    {"listen": "0.0.0.0:8443"},  # plain http off loopback
    {"operator_id": "DE*S"},
    {"broker_user": "bridge"},
    {"budget": ["AuthorizeStart=0/min"]},
    {"reply_timeout_s": 30},
    {"hubject_connections": 0},
    {"hubject_connections": 1001},
])
def test_config_refused(over):
    with pytest.raises(ConfigError):
        build(dict(BASE_CFG, **over))


def test_config_ok():
    cfg = build(dict(BASE_CFG, hubject_url="http://localhost:8080/api/oicp/",
                     budget=["AuthorizeStart=5/min"], instance_id="b1"))
    assert cfg.hubject_url == "http://localhost:8080/api/oicp"
    assert cfg.budgets == {"eRoamingAuthorizeStart": 5} and cfg.listen_port == 0
    assert cfg.hubject_connections == 64
    assert build(dict(BASE_CFG, hubject_connections=200)).hubject_connections == 200


def test_config_file_and_flags(tmp_path):
    f = tmp_path / "bridge.json"
    f.write_text(json.dumps({"broker": "mqtt://127.0.0.1:1883", "operator-id": OP,
                             "hubject_url": "http://127.0.0.1:9/api/oicp",
                             "listen": "127.0.0.1:0", "budget": {"AuthorizeStop": 7},
                             "instance_id": "from-file"}))
    cfg = load(["--config", str(f), "--instance-id", "from-flag"])
    assert cfg.instance_id == "from-flag" and cfg.budgets == {"eRoamingAuthorizeStop": 7}
    f.write_text(json.dumps({"brokr": "x"}))
    with pytest.raises(ConfigError):
        load(["--config", str(f)])


def test_urls_logged_without_credentials():
    assert without_userinfo("mqtt://bridge:secret@10.0.0.1:1883") == "mqtt://10.0.0.1:1883"
    assert without_userinfo("https://h/api/oicp") == "https://h/api/oicp"


def test_subscriptions_ready_for_shared_groups():
    from tools.bridge.mqttlink import classify, subscriptions

    every = [C.birth_topic("+"), C.availability_topic("+"), C.health_topic("+"),
             C.up_topic("+", "reply")]
    work = [C.up_topic("+", "authorize"), C.up_topic("+", "notification"),
            C.up_topic("+", "cdr"), C.status_topic("+", "+")]
    assert [f for f, _ in subscriptions()] == every + work
    # births, availability, health and replies reach every instance; work only one of them
    shared = [f for f, _ in subscriptions("bridges")]
    assert shared == every + ["$share/bridges/" + f for f in work]
    assert classify("mpevse/CP-A/up/authorize") == ("authorize", "CP-A")
    assert classify("mpevse/CP-A/health") == ("health", "CP-A")
    assert classify("mpevse/CP-A/up/other") is None and classify("other/CP-A/birth") is None
