"""Per-operation call budgets: Hubject's Acceptable Use Policy allows so many calls per minute
per operation and answers HTTP 429 beyond (issue 12 item 2). One token bucket per operation:
capacity N, refilled at N per 60 s; a call that would have to wait past its deadline is not
queued (the caller answers at once, e.g. NotAuthorized 320).

A 429 from Hubject leaves at most one token in the bucket and holds it until `Retry-After` (or
a back-off that doubles from BACKOFF_S up to BACKOFF_MAX_S); a later success resets the
back-off.
"""

from __future__ import annotations

import asyncio
import time

# Calls per minute (issue 12, Hubject's AUP). Keys are the OICP operation names.
DEFAULT_PER_MINUTE = {
    "eRoamingAuthorizeStart": 200,
    "eRoamingAuthorizeStop": 50,
    "eRoamingAuthorizeRemoteStart": 100,
    "eRoamingChargeDetailRecord": 350,
    "eRoamingChargingNotifications": 100,
    "eRoamingPushEvseStatus": 2000,
    "eRoamingPushEvseData": 375,
}
BACKOFF_S = 0.5  # first hold after a 429 without Retry-After, seconds
BACKOFF_MAX_S = 30.0


def operation_name(name: str) -> str:
    """`AuthorizeStart` or `eRoamingAuthorizeStart` -> `eRoamingAuthorizeStart`; ValueError
    for an operation without a budget."""
    full = name if name.startswith("eRoaming") else "eRoaming" + name
    if full not in DEFAULT_PER_MINUTE:
        raise ValueError("unknown operation {!r} (known: {})".format(
            name, ", ".join(k[len("eRoaming"):] for k in DEFAULT_PER_MINUTE)))
    return full


def parse_budget(text: str) -> tuple[str, int]:
    """`OP=N/min` (also `OP=N`) -> (operation, N); ValueError if malformed or N < 1."""
    op, sep, rate = text.partition("=")
    if not sep:
        raise ValueError("budget {!r}: need OP=N/min".format(text))
    rate = rate.strip()
    if rate.endswith("/min"):
        rate = rate[:-4]
    try:
        n = int(rate)
    except ValueError:
        raise ValueError("budget {!r}: N must be an integer".format(text)) from None
    if n < 1:
        raise ValueError("budget {!r}: N must be at least 1 per minute".format(text))
    return operation_name(op.strip()), n


class Bucket:
    """One operation's budget. `clock` is monotonic seconds (injectable for tests)."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self.tokens = self.capacity
        self.stamp = clock()
        self.hold_until = 0.0  # after a 429: nothing before this
        self.backoff = BACKOFF_S

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def reserve(self, deadline: float) -> float | None:
        """Take a token: the seconds to wait before using it, or None (nothing taken) if that
        would be after `deadline` (monotonic seconds)."""
        now = self.clock()
        start = max(now, self.hold_until)
        self._refill(now)
        self.tokens -= 1.0
        wait = max(start - now, -self.tokens / self.rate if self.tokens < 0 else 0.0)
        if now + wait > deadline:
            self.tokens += 1.0
            return None
        return wait

    async def acquire(self, deadline: float) -> bool:
        """Wait for a token unless that passes `deadline`; False = refused at once."""
        wait = self.reserve(deadline)
        if wait is None:
            return False
        if wait > 0:
            await asyncio.sleep(wait)  # a rate limit: waiting is the point
        return True

    def too_many(self, retry_after: float | None) -> float:
        """Hubject said 429: hold the operation; returns the hold in seconds."""
        hold = retry_after if retry_after is not None and retry_after >= 0 else self.backoff
        hold = min(hold, BACKOFF_MAX_S)
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
        now = self.clock()
        self.hold_until = max(self.hold_until, now + hold)
        self._refill(now)
        self.tokens = min(self.tokens, 1.0)  # after the hold: one call (the retry), then the rate
        return hold

    def ok(self) -> None:
        """A call went through: the next 429 starts the back-off from the beginning."""
        self.backoff = BACKOFF_S


class Budgets:
    """All operations' buckets: the defaults, overridden per operation."""

    def __init__(self, overrides: dict[str, int] | None = None, clock=time.monotonic):
        limits = dict(DEFAULT_PER_MINUTE)
        limits.update(overrides or {})
        self.limits = limits
        self.buckets = {op: Bucket(n, clock) for op, n in limits.items()}

    def __getitem__(self, operation: str) -> Bucket:
        return self.buckets[operation]
