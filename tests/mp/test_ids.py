"""OICP identifier checks (runs on CPython and the MicroPython unix port)."""

from firmware.ids import (
    IdError,
    check_cp_id,
    check_evse_id,
    check_session_id,
    new_session_id,
    normalize_uid,
)


def _raises(fn, arg, fragment):
    try:
        fn(arg)
    except IdError as e:
        assert fragment in str(e), (arg, str(e))
        return e
    raise AssertionError("no IdError for {!r}".format(arg))


def test_normalize_uid_accepts_three_lengths_and_lower_case():
    for raw, want in (
        ("04a1b2c3", "04A1B2C3"),
        ("04A1B2C3D4E580", "04A1B2C3D4E580"),
        ("0102030405060708090a", "0102030405060708090A"),
        ("7568290FFF765F", "7568290FFF765F"),
    ):
        assert normalize_uid(raw) == want


def test_normalize_uid_rejects():
    for bad, fragment in (
        ("AFFH1768", "'H' is not a hex digit"),  # the spec's own example
        ("12345ABCD", "got 9 characters"),  # the spec's snippet value
        ("", "got 0 characters"),
        ("04:A1:B2:C3", "got 11"),
        ("04A1B2C3 ", "got 9"),
        (1234, "must be a string"),
        (None, "must be a string"),
    ):
        e = _raises(normalize_uid, bad, fragment)
        assert e.kind == "UID"


def test_evse_ids():
    for good in ("DE*AB7*E840*6487", "DEAB7E8406487", "+49*810*000*438", "49*810*1",
                 "DE*A1B*E1", "DE*ABC*E" + "1" * 30):
        assert check_evse_id(good) == good
    for bad, fragment in (
        ("DE*AB*1", "must be <Country>*<OperatorID>*E<ID>"),
        ("de*ab7*e840*6487", "must be upper case"),
        ("DE*AB7*840*6487", "ISO"),
        ("DE*ABC*E" + "1" * 31, "ISO"),
        ("DE*ABC*E", "ISO"),
        ("+49*81*000", "DIN"),
        ("+1234*810*000", "DIN"),
        ("", "ISO"),
        (42, "must be a string"),
    ):
        assert _raises(check_evse_id, bad, fragment).kind == "EvseID"


def test_session_ids():
    for good in ("b2688855-7f00-0002-6d8e-48d883f6abb6", "ZZZZZZZZ-zzzz-0000-AAAA-123456789012"):
        assert check_session_id(good) == good
    for bad in ("b2688855-7f00-0002-6d8e-48d883f6abb", "b2688855-7f00-0002-6d8e_48d883f6abb6",
                "b26888557f0000026d8e48d883f6abb6", "", None):
        _raises(check_session_id, bad, "SessionID")


def test_new_session_id_is_v4_and_valid():
    for raw in (bytes(16), b"\xff" * 16, bytes(range(16))):
        sid = new_session_id(raw)
        assert check_session_id(sid) == sid
        assert len(sid) == 36 and sid[14] == "4" and sid[19] in "89ab"
    assert new_session_id(bytes(range(16))) == "00010203-0405-4607-8809-0a0b0c0d0e0f"
    for bad in (bytes(15), bytes(17), "0" * 16):
        _raises(new_session_id, bad, "16 random bytes")


def test_cp_ids():
    for good in ("cp1", "A", "a" * 32, "site_7-b"):
        assert check_cp_id(good) == good
    for bad, fragment in (("", "1-32"), ("a" * 33, "1-32"), ("cp/1", "'/'"), ("cp+", "'+'"),
                          ("cp#", "'#'"), ("cp 1", "' '")):
        _raises(check_cp_id, bad, fragment)
