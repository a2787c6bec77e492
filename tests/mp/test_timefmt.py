"""OICP timestamps by integer arithmetic (both interpreters)."""

from firmware.timefmt import iso_utc

KNOWN = (  # epoch seconds, UTC text (computed independently with CPython datetime)
    (0, "1970-01-01T00:00:00.000Z"),
    (951782400, "2000-02-29T00:00:00.000Z"),
    (951868800, "2000-03-01T00:00:00.000Z"),
    (1709164800, "2024-02-29T00:00:00.000Z"),
    (1795268280, "2026-11-21T13:38:00.000Z"),
    (4102444799, "2099-12-31T23:59:59.000Z"),
    (1741971760, "2025-03-14T17:02:40.000Z"),
    (1735689599, "2024-12-31T23:59:59.000Z"),
    (1735689600, "2025-01-01T00:00:00.000Z"),
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
    assert iso_utc(None) is None  # wall clock not known yet


def test_format_rejects():
    for bad, fragment in ((-1, "outside"), (4102444800, "outside")):
        _raises(iso_utc, bad, fragment)


def test_every_day_follows_the_previous():
    """Day by day over 1970-2099: the date advances by exactly one calendar day."""
    mdays = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    y, m, d = 1970, 1, 1
    for days in range(4102444800 // 86400):
        assert iso_utc(days * 86400)[:10] == "{:04d}-{:02d}-{:02d}".format(y, m, d), days
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        d += 1
        if d > mdays[m - 1] + (m == 2 and leap):
            d, m = 1, m + 1
            if m == 13:
                m, y = 1, y + 1
