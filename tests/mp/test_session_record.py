"""The session record on flash (firmware.session to_record/from_record/migrate) through the real
Store: OICP key names, a round trip, and a record of older firmware read and rewritten
(both interpreters)."""

from firmware.session import _FIELDS, _KINDS, PA_NEEDED, Session, migrate
from firmware.store import Store
from tests.mp.outbox_kit import with_dir

LID = "b3c2a1d0-1111-4222-8333-444455556666"
SID = "c3c2a1d0-1111-4222-8333-444455556666"
EVSE = "DE*ABC*E1*1"
UID = "04A1B2C3D4E5F6"
KEYS = ["AuthorizationStopTokens", "AuthorizedBy", "CPOPartnerSessionID", "ChargingEnd",
        "ChargingStart", "EvseID", "Identification", "MeterFault", "MeterOffset",
        "MeterValueEnd", "MeterValueInBetween", "MeterValueStart", "PostAuthorization",
        "ProviderID", "SessionID", "SessionStart", "UID"]
OLD = {"lid": LID, "sid": SID, "evse_id": EVSE,
       "ident": {"RFIDMifareFamilyIdentification": {"UID": UID}}, "uid": UID, "src": "cache",
       "pid": "DE*ICE", "stop": ["DEICE000001"], "ss": 1800000000, "cs": 1800000005,
       "ce": 1800003605, "ms": 100, "me": 4100, "mb": [1100, 2100], "mf": True, "pa": 1,
       "mo": 7}


def _session():
    s = Session(LID, EVSE, {"RFIDMifareFamilyIdentification": {"UID": UID}}, UID, "cache")
    s.session_id = SID
    s.provider_id = "DE*ICE"
    s.stop_ids = ("DEICE000001",)
    s.session_start, s.charging_start, s.charging_end = 1800000000, 1800000005, 1800003605
    s.meter_start, s.meter_end, s.meter_between = 100, 4100, [1100, 2100]
    s.meter_fault = True
    s.post_auth = PA_NEEDED
    s.meter_offset = 7
    return s


def _same(a, b):
    for attr in ("local_id", "session_id", "evse_id", "ident", "uid", "source", "provider_id",
                 "stop_ids", "session_start", "charging_start", "charging_end", "meter_start",
                 "meter_end", "meter_between", "meter_fault", "post_auth", "meter_offset"):
        assert getattr(a, attr) == getattr(b, attr), attr


def _never():
    raise AssertionError("a sound record needs no new id")


def test_the_record_names_its_fields_as_oicp_does():
    rec = _session().to_record()
    assert sorted(rec) == KEYS
    assert rec["CPOPartnerSessionID"] == LID and rec["SessionID"] == SID
    assert rec["MeterValueStart"] == 100 and rec["MeterValueInBetween"] == [1100, 2100]
    assert rec["AuthorizationStopTokens"] == ["DEICE000001"] and rec["PostAuthorization"] == 1


def test_round_trip_through_the_store():
    def body(root):
        st = Store(root)
        s = _session()
        assert st.put("session." + LID, s.to_record())
        back, bad = Session.from_record(st.get("session." + LID), EVSE, _never)
        assert bad == []
        _same(back, s)
        assert not st.put("session." + LID, back.to_record())  # the same text: no write
    with_dir("session", body)


def test_a_fresh_session_round_trips():
    s = Session(LID, EVSE, None, None, "remote")
    s.ident = {"RemoteIdentification": {"EvcoID": "DE-ICE-C12345678-X"}}
    back, bad = Session.from_record(s.to_record(), EVSE, _never)
    assert bad == []
    _same(back, s)


def test_a_record_of_older_firmware_reads_as_the_same_session():
    new = migrate(OLD)
    assert new is not OLD and sorted(new) == KEYS and OLD["lid"] == LID  # OLD untouched
    assert new == _session().to_record()
    back, bad = Session.from_record(OLD, EVSE, _never)
    assert bad == []
    _same(back, _session())


def test_migrate_leaves_a_current_record_as_it_is():
    rec = _session().to_record()
    assert migrate(rec) is rec
    assert migrate({}) == {}
    both = dict(rec, lid="x")  # a key in both forms: the current one wins, the old goes
    assert migrate(both) == rec


def test_an_old_file_is_rewritten_with_the_new_keys():
    def body(root):
        st = Store(root)
        st.put("session." + LID, OLD)
        raw = st.get("session." + LID)
        s, bad = Session.from_record(raw, EVSE, _never)
        assert bad == [] and migrate(raw) is not raw  # the shell rewrites it
        st.put("session." + LID, s.to_record())
        assert sorted(st.get("session." + LID)) == KEYS
    with_dir("session", body)


def test_damage_is_named_with_the_oicp_key():
    rec = dict(_session().to_record(), MeterValueStart="100", SessionStart=-5)
    s, bad = Session.from_record(rec, EVSE, _never)
    assert [b.split(":")[0] for b in bad] == ["SessionStart", "MeterValueStart"]
    assert s.meter_fault and s.meter_start is None and s.session_start is None
    old = dict(OLD, ms="100")  # the same in an old record: named by its new key
    s, bad = Session.from_record(old, EVSE, _never)
    assert [b.split(":")[0] for b in bad] == ["MeterValueStart"]


def test_every_field_has_a_kind():
    kinds = _KINDS.split()
    assert len(kinds) == len(_FIELDS) and kinds[:7] == ["id"] * 6 + ["str"]
