"""OICP status code table and the driver display mapping (both interpreters)."""

from firmware import oicp_status as s

# Hubject's list (OpenAPI schemas/StatusCode.yaml), copied as data: the module must match it.
SPEC_CODES = ("000 001 002 009 017 018 019 021 022 101 102 103 105 106 110 120 121 122 200 210 "
              "300 310 320 400 501 510 601 602 603 604 700").split()


def meaning(code):
    """The table's meaning of `code`, or None if the table does not have it."""
    try:
        return s.status_code(code)["Description"]
    except ValueError:
        return None


def test_table_is_exactly_the_spec_list():
    for k in range(1000):
        code = "%03d" % k
        m = meaning(code)
        assert (m is not None) == (code in SPEC_CODES), code
        assert m is None or m.strip() == m and m
    for bad in ("", "00", "0000", "\n00", "Suc"):
        assert meaning(bad) is None, bad


def test_named_constants():
    # attribute reads, not getattr: the build folds them like the firmware's own reads
    for named, code, fragment in (
        (s.SUCCESS, "000", "Success"),
        (s.EVSE_IN_USE, "602", "in use"),
        (s.EVSE_RESERVED, "601", "reserved"),
        (s.EVSE_OUT_OF_SERVICE, "700", "out of service"),
        (s.UNKNOWN_EVSE, "603", "Unknown EVSE"),
        (s.NO_EV_CONNECTED, "510", "No EV"),
        (s.RFID_INVALID_UID, "102", "invalid UID"),
        (s.NO_POSITIVE_AUTH_RESPONSE, "106", "No positive"),
        (s.UNAUTHORIZED_ACCESS, "017", "Unauthorized"),
        (s.NO_VALID_CONTRACT, "210", "No valid contract"),
        (s.QR_AUTH_FAILED, "101", "QR Code"),
        (s.SESSION_INVALID, "400", "Session is invalid"),
        (s.SYSTEM_ERROR, "021", "System error"),
        (s.DATA_ERROR, "022", "Data error"),
    ):
        assert named == code, code
        assert fragment in meaning(code), (code, meaning(code))


def test_status_code_object():
    want = {"Code": "602", "Description": "EVSE already in use/ wrong token"}
    assert s.status_code("602") == want
    try:
        s.status_code("404")
    except ValueError as e:
        assert "404" in str(e)
    else:
        raise AssertionError("404 accepted")


def test_remote_ack_codes_are_known():
    for code in s.REMOTE_ACK_CODES:
        assert meaning(code) is not None, code


def test_driver_display_table():
    for status, code, want in (
        ("Authorized", "000", "accepted"),
        ("Authorized", None, "accepted"),
        (None, None, "timeout"),
        (None, "001", "timeout"),
        ("NotAuthorized", "102", "card_unknown"),
        ("NotAuthorized", "106", "card_unknown"),
        ("NotAuthorized", None, "card_unknown"),
        ("NotAuthorized", "000", "card_unknown"),
        ("NotAuthorized", "200", "card_invalid"),
        ("NotAuthorized", "103", "card_invalid"),
        ("NotAuthorized", "101", "card_invalid"),
        ("NotAuthorized", "210", "no_contract"),
        ("NotAuthorized", "017", "backend_error"),
        ("NotAuthorized", "300", "backend_error"),
        ("NotAuthorized", "310", "backend_error"),
        ("NotAuthorized", "001", "backend_error"),
        ("NotAuthorized", "022", "backend_error"),
        ("NotAuthorized", "999", "backend_error"),
        ("NotAuthorized", "110", "timeout"),
    ):
        got = s.driver_display(status, code)
        assert got == want, (status, code, got)
        assert got in s.DISPLAY_VALUES
