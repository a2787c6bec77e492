"""Which charge point owns which EvseID, and whether it is online: built only from the retained
`mpevse/<cp>/birth` and `mpevse/<cp>/availability` messages (contract), so there is no database
and a restarted bridge knows everything again as soon as it has subscribed.

A birth `{"cp_id", "EvseIDs": [...], "fw", "boot"}` replaces what that charge point had; an
empty retained payload (a cleared birth) forgets it. Availability is b"online", or b"offline"
(the charge point's last will, retained). A birth whose `cp_id` is not its topic's is ignored
(the ACL lets a charge point write only its own tree, so the topic is the trustworthy name).
An EvseID claimed by two charge points belongs to the later birth; the other loses it.

For the operator (`GET /status`, tools/bridge/status.py) it also keeps, per charge point: since
when it is online/offline (wall clock, epoch seconds, when this instance saw the change; a state
first learnt from a retained message -- at start-up or after a reconnect -- only says "at or
before", `since_exact` false), the last birth's time and boot id, the outbox depth and the
late/bad counters of its retained `health` message, and what the durable path
reports through `note_cdr` / `note_dead_letter` (this instance's share only: several instances
each see a part; `python -m tools.bridge status` merges them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from firmware import contract as C

ONLINE = "online"
OFFLINE = "offline"
UNKNOWN = "unknown"  # no availability message seen (yet)


def cp_of(topic: str) -> str | None:
    """`mpevse/<cp>/...` -> cp, else None."""
    parts = topic.split("/")
    if len(parts) >= 3 and parts[0] == C.PREFIX and parts[1]:
        return parts[1]
    return None


@dataclass
class Seen:
    """What the operator sees of one charge point; times are epoch seconds (wall clock)."""
    since: float | None = None  # the availability state's start, as seen here
    since_exact: bool = False  # False: learnt from a retained message, "at or before"
    born_at: float | None = None  # when this instance took in its last birth
    outbox: int | None = None  # durable messages waiting on the charge point (its health)
    late: int | None = None  # its count of answers that came after the request's deadline
    bad: int | None = None  # its count of unusable downlink messages
    last_cdr: float | None = None  # the last CDR's time, from note_cdr
    cdrs: int = 0  # CDRs this instance handled for it
    dead_letters: int = 0  # messages this instance parked in the dead-letter file


class Registry:
    def __init__(self, clock=time.time):
        """`clock()` -> wall-clock epoch seconds (injectable for tests)."""
        self.owner: dict[str, str] = {}  # EvseID (upper case) -> cp_id
        self.evses: dict[str, list[str]] = {}  # cp_id -> its EvseIDs, as born
        self.boot: dict[str, object] = {}  # cp_id -> boot id of its last birth
        self.availability: dict[str, str] = {}  # cp_id -> ONLINE / OFFLINE
        self.listeners: list = []  # callables (cp_id, availability) on a change
        self.seen: dict[str, Seen] = {}  # cp_id -> operator view
        self.clock = clock
        # live() is False while the subscription's retained messages are being taken in (the
        # app sets it to the MQTT link's "subscribed" flag): those states are not fresh
        self.live = lambda: True

    def _seen(self, cp: str) -> Seen:
        got = self.seen.get(cp)
        if got is None:
            got = self.seen[cp] = Seen()
        return got

    def on_birth(self, cp: str, payload: bytes) -> str | None:
        """Take a birth in; returns a reason when it was ignored, else None."""
        if not payload:
            self._forget(cp)
            return None
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeError):
            return "birth of {}: not JSON".format(cp)
        if not isinstance(body, dict) or body.get("cp_id") != cp:
            return "birth on {}'s topic names cp_id {!r}".format(
                cp, body.get("cp_id") if isinstance(body, dict) else None)
        ids = body.get("EvseIDs")
        if not isinstance(ids, list) or not all(isinstance(e, str) for e in ids):
            return "birth of {}: EvseIDs must be a list of strings".format(cp)
        self._forget(cp)
        self.evses[cp] = list(ids)
        self.boot[cp] = body.get("boot")
        seen = self._seen(cp)
        seen.born_at = self.clock()
        for e in ids:
            prev = self.owner.get(e.upper())
            if prev is not None and prev != cp:
                self.evses[prev] = [x for x in self.evses.get(prev, []) if x.upper() != e.upper()]
            self.owner[e.upper()] = cp
        return None

    def _forget(self, cp: str) -> None:
        for e in self.evses.pop(cp, []):
            if self.owner.get(e.upper()) == cp:
                del self.owner[e.upper()]
        self.boot.pop(cp, None)

    def on_availability(self, cp: str, payload: bytes) -> None:
        if payload == C.ONLINE:
            state = ONLINE
        elif payload == C.OFFLINE:
            state = OFFLINE
        else:
            state = UNKNOWN  # a cleared retained message, or something unexpected
        if self.availability.get(cp, UNKNOWN) == state:
            return
        self.availability[cp] = state
        seen = self._seen(cp)
        seen.since = self.clock()
        seen.since_exact = self.live()
        for listener in self.listeners:
            listener(cp, state)

    def on_health(self, cp: str, payload: bytes) -> str | None:
        """The retained `mpevse/<cp>/health` (contract): the outbox depth the charge point
        reports, and its late/bad counters. -> None, or why the message was not usable (then
        nothing changes). An empty payload (cleared retained message) forgets the depth."""
        seen = self._seen(cp)
        if not payload:
            seen.outbox = None
            return None
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeError):
            return "health of {}: not JSON".format(cp)
        depth = body.get("outbox") if isinstance(body, dict) else None
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
            return "health of {}: outbox must be a count".format(cp)
        seen.outbox = depth
        for k in ("late", "bad"):
            v = body.get(k)
            setattr(seen, k, v if isinstance(v, int) and not isinstance(v, bool) else None)
        return None

    def lookup(self, evse_id: str) -> str | None:
        """The cp_id owning `evse_id` (any case), or None."""
        return self.owner.get(evse_id.upper())

    def state(self, cp: str) -> str:
        return self.availability.get(cp, UNKNOWN)

    def owns(self, cp: str, evse_id: str) -> bool:
        return self.owner.get(evse_id.upper()) == cp

    # -- reported by the durable path (CDRs, dead letters) -----------------------------------
    def note_cdr(self, cp: str, ts: float | None = None) -> None:
        """A CDR of `cp` was accepted by its final receiver (Hubject or the operator's store);
        `ts` epoch seconds (default now)."""
        seen = self._seen(cp)
        seen.last_cdr = self.clock() if ts is None else float(ts)
        seen.cdrs += 1

    def note_dead_letter(self, cp: str, n: int = 1) -> None:
        """`n` messages of `cp` were parked in the dead-letter file."""
        self._seen(cp).dead_letters += n

    def charge_points(self) -> list[dict]:
        """Per charge point known here (born, seen or noted), sorted by cp_id: cp_id, state,
        since, since_exact, EvseIDs, boot, born_at, outbox, last_cdr, cdrs, dead_letters."""
        out = []
        for cp in sorted(set(self.seen) | set(self.evses) | set(self.availability)):
            seen = self.seen.get(cp) or Seen()
            out.append({"cp_id": cp, "state": self.state(cp), "since": seen.since,
                        "since_exact": seen.since_exact, "EvseIDs": self.evses.get(cp, []),
                        "boot": self.boot.get(cp), "born_at": seen.born_at,
                        "outbox": seen.outbox, "late": seen.late, "bad": seen.bad,
                        "last_cdr": seen.last_cdr, "cdrs": seen.cdrs,
                        "dead_letters": seen.dead_letters})
        return out
