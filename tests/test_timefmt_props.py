"""timefmt agrees with CPython's datetime over 1970-2099 (hypothesis)."""

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from firmware.timefmt import MAX_EPOCH_S, iso_local, iso_utc_ms, parse_iso, parse_iso_ms

epoch_ms = st.integers(0, MAX_EPOCH_S * 1000 - 1)


@given(epoch_ms)
def test_utc_matches_datetime_and_roundtrips(ms):
    dt = datetime.fromtimestamp(ms / 1000, timezone.utc).replace(
        microsecond=(ms % 1000) * 1000)
    text = iso_utc_ms(ms)
    assert text == dt.strftime("%Y-%m-%dT%H:%M:%S.") + "{:03d}Z".format(ms % 1000)
    assert parse_iso_ms(text) == ms


@given(st.integers(0, MAX_EPOCH_S - 1), st.integers(-14 * 60, 14 * 60))
def test_local_matches_datetime_and_roundtrips(s, off):
    local = s + off * 60
    if not 0 <= local < MAX_EPOCH_S:
        return
    text = iso_local(s, off)
    tz = timezone(timedelta(minutes=off))
    assert text == datetime.fromtimestamp(s, tz).isoformat()
    assert parse_iso(text) == s
    assert datetime.fromisoformat(text).timestamp() == s
