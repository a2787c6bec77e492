"""Which charge point owns which EvseID, and whether it is online: built only from the retained
`mpevse/<cp>/birth` and `mpevse/<cp>/availability` messages (contract), so there is no database
and a restarted bridge knows everything again as soon as it has subscribed.

A birth `{"cp_id", "EvseIDs": [...], "fw", "boot"}` replaces what that charge point had; an
empty retained payload (a cleared birth) forgets it. Availability is b"online", or b"offline"
(the charge point's last will, retained). A birth whose `cp_id` is not its topic's is ignored
(the ACL lets a charge point write only its own tree, so the topic is the trustworthy name).
An EvseID claimed by two charge points belongs to the later birth; the other loses it.
"""

from __future__ import annotations

import json

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


class Registry:
    def __init__(self):
        self.owner: dict[str, str] = {}  # EvseID (upper case) -> cp_id
        self.evses: dict[str, list[str]] = {}  # cp_id -> its EvseIDs, as born
        self.boot: dict[str, object] = {}  # cp_id -> boot id of its last birth
        self.availability: dict[str, str] = {}  # cp_id -> ONLINE / OFFLINE
        self.listeners: list = []  # callables (cp_id, availability) on a change

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
        for listener in self.listeners:
            listener(cp, state)

    def lookup(self, evse_id: str) -> str | None:
        """The cp_id owning `evse_id` (any case), or None."""
        return self.owner.get(evse_id.upper())

    def state(self, cp: str) -> str:
        return self.availability.get(cp, UNKNOWN)

    def owns(self, cp: str, evse_id: str) -> bool:
        return self.owner.get(evse_id.upper()) == cp
