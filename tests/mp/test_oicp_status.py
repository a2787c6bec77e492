"""OICP status code table and the driver display mapping (both interpreters)."""

from firmware import oicp_status as s

# Hubject's list (OpenAPI schemas/StatusCode.yaml), copied as data: the module must match it.
SPEC_CODES = ("000 001 002 009 017 018 019 021 022 101 102 103 105 106 110 120 121 122 200 210 "
              "300 310 320 400 501 510 601 602 603 604 700").split()


def test_table_is_exactly_the_spec_list():
    assert sorted(s.CODES) == SPEC_CODES
    for code, meaning in s.CODES.items():
        assert isinstance(code, str) and len(code) == 3 and meaning


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
        assert fragment in s.describe(code), (code, s.describe(code))


def test_describe_unknown_and_int():
    assert s.describe("999") == s.UNKNOWN
    assert s.describe(None) == s.UNKNOWN
    assert s.describe(2) == "Hubject database error"
    assert s.is_known("602") and not s.is_known("404")
    for bad in (-1, 1000, 1.5, True):
        try:
            s.describe(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_status_code_object():
    want = {"Code": "602", "Description": "EVSE already in use/ wrong token"}
    assert s.status_code("602") == want
    assert s.status_code(22, "bad json", "line 1") == {
        "Code": "022", "Description": "bad json", "AdditionalInfo": "line 1"}
    try:
        s.status_code("404")
    except ValueError as e:
        assert "404" in str(e)
    else:
        raise AssertionError("404 accepted")


def test_remote_ack_codes_are_known():
    for code in s.REMOTE_ACK_CODES:
        assert s.is_known(code)


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
        ("NotAuthorized", 210, "no_contract"),
    ):
        got = s.driver_display(status, code)
        assert got == want, (status, code, got)
        assert got in s.DISPLAY_VALUES


def test_driver_display_rejects_unknown_status():
    for bad in ("authorized", "Accepted", ""):
        try:
            s.driver_display(bad, "000")
        except ValueError as e:
            assert "AuthorizationStatus" in str(e)
        else:
            raise AssertionError(bad)
