"""OICP timestamps (ISO 8601) by pure integer arithmetic, 1970-2099.

No `time.gmtime`/`mktime`: the ESP32 port counts from 2000-01-01, not 1970, and floats there are
32-bit (an epoch in seconds loses ~2 minutes). Everything here is integer seconds (or
milliseconds) since 1970-01-01 UTC. OICP wants `YYYY-MM-DDThh:mm:ss` plus a zone designator; the
spec asks for the station's local offset (`iso_local`), Hubject's samples use `...000Z`
(`iso_utc`); `parse_iso` reads both, with or without fractional seconds.
"""

MIN_YEAR = 1970
MAX_YEAR = 2099
MAX_EPOCH_S = 4102444800  # 2100-01-01T00:00:00Z, exclusive
_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def _is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_in_month(y, m):
    if m == 2:
        return 29 if _is_leap(y) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def days_from_civil(y, m, d):
    """Days from 1970-01-01 to y-m-d (proleptic Gregorian, y >= 1970)."""
    yy = y - 1
    leaps = (yy // 4 - yy // 100 + yy // 400) - 477  # 477 leap years before 1970
    days = (y - 1970) * 365 + leaps + _DAYS_BEFORE_MONTH[m - 1] + d - 1
    if m > 2 and _is_leap(y):
        days += 1
    return days


def civil_from_days(days):
    """Inverse of days_from_civil -> (y, m, d)."""
    y = 1970 + days // 366  # never overshoots; walk forward a year at a time (<= 1 step/year)
    while days_from_civil(y + 1, 1, 1) <= days:
        y += 1
    doy = days - days_from_civil(y, 1, 1)
    m = 1
    while m < 12 and doy >= _DAYS_BEFORE_MONTH[m] + (1 if m >= 2 and _is_leap(y) else 0):
        m += 1
    d = doy - _DAYS_BEFORE_MONTH[m - 1] - (1 if m > 2 and _is_leap(y) else 0) + 1
    return y, m, d


def _check_epoch(epoch_s):
    if not isinstance(epoch_s, int) or isinstance(epoch_s, bool):
        raise ValueError("epoch {!r}: must be integer seconds".format(epoch_s))
    if not 0 <= epoch_s < MAX_EPOCH_S:
        raise ValueError("epoch {}: outside 1970-2099".format(epoch_s))


def _fields(epoch_s):
    days, secs = divmod(epoch_s, 86400)
    y, mo, d = civil_from_days(days)
    return y, mo, d, secs // 3600, secs // 60 % 60, secs % 60


def iso_utc(epoch_s):
    """`2026-11-21T13:38:00.000Z` for seconds since 1970 (UTC); a float is floored (host)."""
    if isinstance(epoch_s, float):
        epoch_s = int(epoch_s // 1)
    _check_epoch(epoch_s)
    return iso_utc_ms(epoch_s * 1000)


def iso_utc_ms(epoch_ms):
    """Like iso_utc, from integer milliseconds (keeps them)."""
    if not isinstance(epoch_ms, int) or isinstance(epoch_ms, bool):
        raise ValueError("epoch {!r}: must be integer seconds/milliseconds".format(epoch_ms))
    s, ms = divmod(epoch_ms, 1000)
    _check_epoch(s)
    return "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z".format(*(_fields(s) + (ms,)))


def iso_local(epoch_s, offset_min):
    """`2025-03-14T18:02:40+01:00`: the local wall time at UTC offset `offset_min` minutes,
    as the spec asks for session timestamps (tariffs depend on local time)."""
    _check_epoch(epoch_s)
    if not isinstance(offset_min, int) or not -1439 <= offset_min <= 1439:
        raise ValueError("UTC offset {!r}: must be whole minutes within +-23:59"
                         .format(offset_min))
    local = epoch_s + offset_min * 60
    _check_epoch(local)
    sign = "+" if offset_min >= 0 else "-"
    off = abs(offset_min)
    return "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}{:02d}:{:02d}".format(
        *(_fields(local) + (sign, off // 60, off % 60)))


def _num(s, i, n, what):
    part = s[i:i + n]
    if len(part) != n:
        raise ValueError("timestamp {!r}: {} truncated".format(s, what))
    for c in part:
        if c not in "0123456789":
            raise ValueError("timestamp {!r}: {} must be {} digits".format(s, what, n))
    return int(part)


def _sep(s, i, ch):
    if i >= len(s) or s[i] != ch:
        raise ValueError("timestamp {!r}: expected {!r} at position {}".format(s, ch, i))


def parse_iso_ms(s):
    """`YYYY-MM-DDThh:mm:ss[.fff...](Z|+hh:mm|-hh:mm)` -> integer ms since 1970 UTC.

    Fraction digits beyond milliseconds are truncated. Raises ValueError naming the problem.
    """
    if not isinstance(s, str):
        raise ValueError("timestamp {!r}: must be a string".format(s))
    y = _num(s, 0, 4, "year")
    _sep(s, 4, "-")
    mo = _num(s, 5, 2, "month")
    _sep(s, 7, "-")
    d = _num(s, 8, 2, "day")
    _sep(s, 10, "T")
    h = _num(s, 11, 2, "hour")
    _sep(s, 13, ":")
    mi = _num(s, 14, 2, "minute")
    _sep(s, 16, ":")
    sec = _num(s, 17, 2, "second")
    if not MIN_YEAR <= y <= MAX_YEAR:
        raise ValueError("timestamp {!r}: year outside 1970-2099".format(s))
    if not 1 <= mo <= 12 or not 1 <= d <= _days_in_month(y, mo):
        raise ValueError("timestamp {!r}: no such date".format(s))
    if h > 23 or mi > 59 or sec > 59:
        raise ValueError("timestamp {!r}: no such time of day".format(s))
    i = 19
    ms = 0
    if i < len(s) and s[i] == ".":
        j = i + 1
        while j < len(s) and s[j] in "0123456789":
            j += 1
        if j == i + 1:
            raise ValueError("timestamp {!r}: '.' without fraction digits".format(s))
        ms = int((s[i + 1:j] + "00")[:3])
        i = j
    if i >= len(s):
        raise ValueError("timestamp {!r}: missing zone (Z or +hh:mm)".format(s))
    if s[i] == "Z" and i + 1 == len(s):
        offset = 0
    elif s[i] in "+-" and len(s) == i + 6:
        oh = _num(s, i + 1, 2, "offset hours")
        _sep(s, i + 3, ":")
        om = _num(s, i + 4, 2, "offset minutes")
        if oh > 23 or om > 59:
            raise ValueError("timestamp {!r}: offset out of range".format(s))
        offset = (oh * 60 + om) * (1 if s[i] == "+" else -1)
    else:
        raise ValueError("timestamp {!r}: zone must be Z or +hh:mm/-hh:mm".format(s))
    epoch = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset * 60
    if not 0 <= epoch < MAX_EPOCH_S:
        raise ValueError("timestamp {!r}: outside 1970-2099 in UTC".format(s))
    return epoch * 1000 + ms


def parse_iso(s):
    """Like parse_iso_ms, in whole seconds (fraction dropped)."""
    return parse_iso_ms(s) // 1000
