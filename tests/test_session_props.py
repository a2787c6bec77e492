"""The session record codec (firmware.session to_record/from_record/migrate), by hypothesis on
CPython: any sound session comes back the same from its record and from the record older
firmware wrote (short keys); any JSON object at all is read without an exception, and what it
drops is named by a record key."""

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.session import _FIELDS, PA_REJECTED, Session, migrate
from firmware.timefmt import CLOCK_FLOOR_S, MAX_EPOCH_S

ATTRS = [attr for _key, attr in _FIELDS]
KEYS = [key for key, _attr in _FIELDS]
# the keys firmware before issue 14 wrote, in _FIELDS order
OLD_KEYS = ["lid", "sid", "evse_id", "ident", "uid", "src", "pid", "stop", "ss", "cs", "ce", "ms",
            "me", "mb", "mf", "pa", "mo"]
EVSE = "DE*ABC*E1*1"
ids = st.from_regex(r"\A[A-Za-z0-9]{8}(-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12}\Z")
uids = st.from_regex(r"\A[0-9A-F]{8}\Z|\A[0-9A-F]{14}\Z")
times = st.none() | st.integers(CLOCK_FLOOR_S, MAX_EPOCH_S - 1)
wh = st.integers(0, 10 ** 9)


@st.composite
def sessions(draw):
    uid = draw(st.none() | uids)
    ident = {"RFIDMifareFamilyIdentification": {"UID": uid}} if uid else \
        {"RemoteIdentification": {"EvcoID": "DE-ICE-C12345678-X"}}
    s = Session(draw(ids), EVSE, ident, uid, draw(st.sampled_from(
        ["local", "cache", "online", "remote", "free_vend"])))
    s.session_id = draw(ids)
    s.provider_id = draw(st.none() | st.sampled_from(["DE*ICE", "DE-8EO"]))
    s.stop_ids = tuple(draw(st.lists(uids, max_size=3)))
    s.session_start, s.charging_start, s.charging_end = draw(times), draw(times), draw(times)
    start = draw(st.none() | wh)
    s.meter_start = start
    s.meter_end = None if start is None else draw(st.none() | st.integers(start, 2 * 10 ** 9))
    s.meter_between = draw(st.none() | st.lists(wh, max_size=8))
    s.meter_fault = draw(st.booleans())
    s.post_auth = draw(st.integers(0, PA_REJECTED))
    s.meter_offset = draw(wh)
    return s


def _never():
    raise AssertionError("a sound record needs no new id")


def _values(s):
    return [getattr(s, a) for a in ATTRS]


@settings(max_examples=300)
@given(sessions())
def test_a_sound_record_round_trips(s):
    rec = s.to_record()
    assert list(rec) == KEYS
    back, bad = Session.from_record(rec, EVSE, _never)
    assert bad == [] and _values(back) == _values(s)
    assert back.to_record() == rec and migrate(rec) is rec


@settings(max_examples=300)
@given(sessions())
def test_the_record_of_older_firmware_is_the_same_session(s):
    rec = s.to_record()
    old = {o: rec[k] for o, k in zip(OLD_KEYS, KEYS, strict=True)}
    assert migrate(old) == rec
    back, bad = Session.from_record(old, EVSE, _never)
    assert bad == [] and _values(back) == _values(s)


json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(KEYS + OLD_KEYS + ["x"]), json))
def test_any_object_is_read_and_what_is_dropped_is_named_by_its_key(d):
    s, bad = Session.from_record(d, EVSE, lambda: "00000000-0000-4000-8000-000000000000")
    for problem in bad:
        assert problem.split(":")[0] in KEYS, problem
    back, again = Session.from_record(s.to_record(), EVSE, _never)
    assert again == [] or again == ["Identification: not an OICP Identification"]
    assert back.meter_fault == s.meter_fault
