"""timefmt agrees with CPython's datetime over 1970-2099 (hypothesis)."""

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from firmware.timefmt import MAX_EPOCH_S, iso_utc


@given(st.integers(0, MAX_EPOCH_S - 1))
def test_utc_matches_datetime(s):
    dt = datetime.fromtimestamp(s, timezone.utc)
    assert iso_utc(s) == dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")
