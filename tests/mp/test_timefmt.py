"""OICP timestamps by integer arithmetic (both interpreters)."""

from firmware.timefmt import (
    civil_from_days,
    days_from_civil,
    iso_local,
    iso_utc,
    iso_utc_ms,
    parse_iso,
    parse_iso_ms,
)

KNOWN = (  # epoch seconds, UTC text (computed independently with CPython datetime)
    (0, "1970-01-01T00:00:00.000Z"),
    (951782400, "2000-02-29T00:00:00.000Z"),
    (1709164800, "2024-02-29T00:00:00.000Z"),
    (1795268280, "2026-11-21T13:38:00.000Z"),
    (4102444799, "2099-12-31T23:59:59.000Z"),
    (1741971760, "2025-03-14T17:02:40.000Z"),
)


def _raises(fn, arg, fragment):
    try:
        fn(arg)
    except ValueError as e:
        assert fragment in str(e), (arg, str(e))
        return
    raise AssertionError("accepted {!r}".format(arg))


def test_iso_utc_known_values():
    for epoch, text in KNOWN:
        assert iso_utc(epoch) == text, (epoch, iso_utc(epoch))
        assert parse_iso(text) == epoch
    assert iso_utc_ms(1795268280123) == "2026-11-21T13:38:00.123Z"
    assert iso_utc(1795268280.9) == "2026-11-21T13:38:00.000Z"


def test_iso_local_matches_oicp_example():
    # oicp-examples.json: "ChargingStart": "2025-03-14T18:02:40+01:00"
    assert iso_local(1741971760, 60) == "2025-03-14T18:02:40+01:00"
    assert iso_local(1741971760, -150) == "2025-03-14T14:32:40-02:30"
    assert iso_local(0, 0) == "1970-01-01T00:00:00+00:00"
    assert parse_iso("2025-03-14T18:02:40+01:00") == 1741971760
    assert parse_iso("2025-03-14T14:32:40-02:30") == 1741971760


def test_parse_fractions_and_zones():
    for text, ms in (
        ("2026-11-21T13:38:00Z", 1795268280000),
        ("2026-11-21T13:38:00.5Z", 1795268280500),
        ("2026-11-21T13:38:00.123456Z", 1795268280123),
        ("2026-11-21T14:38:00.250+01:00", 1795268280250),
    ):
        assert parse_iso_ms(text) == ms, text


def test_parse_rejects_with_reason():
    for bad, fragment in (
        ("2026-11-21 13:38:00Z", "expected 'T'"),
        ("2026-11-21T13:38:00", "missing zone"),
        ("2026-11-21T13:38:00+0100", "zone must be"),
        ("2026-11-21T13:38:00z", "zone must be"),
        ("2026-02-29T00:00:00Z", "no such date"),
        ("2026-13-01T00:00:00Z", "no such date"),
        ("2026-11-21T24:00:00Z", "no such time"),
        ("2026-11-21T13:60:00Z", "no such time"),
        ("2100-01-01T00:00:00Z", "year outside"),
        ("1969-12-31T23:59:59Z", "year outside"),
        ("1970-01-01T00:00:00+01:00", "outside 1970-2099 in UTC"),
        ("2026-11-21T13:38:00.Z", "without fraction"),
        ("2026-1-21T13:38:00Z", "month must be"),
        ("2026-11-21T13:38:00+25:00", "offset out of range"),
        ("", "year truncated"),
        (None, "must be a string"),
    ):
        _raises(parse_iso, bad, fragment)


def test_format_rejects():
    for bad, fragment in ((-1, "outside"), (4102444800, "outside"), ("0", "integer"),
                          (True, "integer")):
        _raises(iso_utc, bad, fragment)
    try:
        iso_local(0, -60)
    except ValueError as e:
        assert "outside" in str(e)
    else:
        raise AssertionError("negative local epoch accepted")


def test_days_roundtrip_every_first_and_last_of_month():
    for y in range(1970, 2100):
        for m in range(1, 13):
            for d in (1, 28):
                days = days_from_civil(y, m, d)
                assert civil_from_days(days) == (y, m, d), (y, m, d)
    assert days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28) == 2
    assert days_from_civil(2100 - 1, 12, 31) + 1 == 4102444800 // 86400
