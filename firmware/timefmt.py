"""OICP timestamps (ISO 8601, UTC) by pure integer arithmetic, 1970-2099.

No `time.gmtime`: the ESP32 port counts from 2000-01-01, not 1970, and floats there are 32-bit
(an epoch in seconds loses ~2 minutes). Input is integer seconds since 1970-01-01 UTC; the
output has Hubject's sample form `...000Z`. Parsing and local-offset formatting had no caller
on the device (removed to save heap; see git history before the memory campaign).
"""

MAX_EPOCH_S = 4102444800  # 2100-01-01T00:00:00Z, exclusive
# No clock that this firmware reads can truly be earlier than the firmware itself: a board
# without a battery-backed RTC restarts at the epoch (or at 2000-01-01 on the ESP32). Anything
# before this release floor (2026-11-01T00:00:00Z, the build's month) is "clock unknown".
CLOCK_FLOOR_S = 1793491200


def iso_utc(epoch_s):
    """`2026-11-21T13:38:00.000Z` for integer seconds since 1970 (UTC); None (time not known
    yet) stays None. The controller checked the clock's type at its edge (`time` event)."""
    if epoch_s is None:
        return None
    if not 0 <= epoch_s < MAX_EPOCH_S:
        raise ValueError("epoch {}: outside 1970-2099".format(epoch_s))
    days, secs = divmod(epoch_s, 86400)
    # civil date of a day count, in years that start on March 1st (so the leap day is the
    # last day of a year): 400-year eras of 146097 days, 1970-01-01 is day 719468 of era 0
    z = days + 719468
    doe = z % 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    return "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.000Z".format(
        z // 146097 * 400 + yoe + (m <= 2), m, doy - (153 * mp + 2) // 5 + 1,
        secs // 3600, secs // 60 % 60, secs % 60)
