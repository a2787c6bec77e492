"""The hand-written identifier checks agree with the OICP regexes (CPython `re` + hypothesis).

Deliberate difference, asserted here too: EvseID upper case only (the AsciiDoc since 2023-05).
"""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import ids

UID_RE = re.compile(r"^([0-9A-F]{8,8}|[0-9A-F]{14,14}|[0-9A-F]{20,20})$")
EVSE_RE = re.compile(
    r"^(([A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9\*]{1,30})|(\+?[0-9]{1,3}\*[0-9]{3}\*[0-9\*]{1,32}))$")
SESSION_RE = re.compile(r"^[A-Za-z0-9]{8}(-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12}$")

# Alphabets small enough that hypothesis often produces valid identifiers.
EVSE_ALPHABET = "DEABC7E0189*+"
SESSION_ALPHABET = "a0Z9-_"


def _ok(fn, s):
    try:
        fn(s)
        return True
    except ids.IdError:
        return False


@settings(max_examples=600)
@given(st.text(alphabet="0123456789abcdefABCDEFG:", max_size=22))
def test_uid_matches_regex_after_upper(s):
    assert _ok(ids.normalize_uid, s) == bool(UID_RE.fullmatch(s.upper()))
    if UID_RE.fullmatch(s.upper()):
        assert ids.normalize_uid(s) == s.upper()


@settings(max_examples=2000)
@given(st.one_of(st.from_regex(EVSE_RE, fullmatch=True), st.text(EVSE_ALPHABET, max_size=40)))
def test_evse_matches_regex(s):
    assert _ok(ids.check_evse_id, s) == bool(EVSE_RE.fullmatch(s))


@settings(max_examples=1000)
@given(st.one_of(st.from_regex(SESSION_RE, fullmatch=True), st.text(SESSION_ALPHABET, max_size=38)))
def test_session_matches_regex(s):
    assert _ok(ids.check_session_id, s) == bool(SESSION_RE.fullmatch(s))


@given(st.binary(min_size=16, max_size=16))
def test_new_session_id_always_valid_v4(raw):
    sid = ids.new_session_id(raw)
    assert SESSION_RE.match(sid)
    assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", sid)
