"""Downlink commands and their replies: publish `down/<kind>` with a fresh id and wait (bounded)
for the `up/reply` carrying that id from the same charge point (contract: every command with an
id is answered on up/reply).

Reply routing with several instances (issue 13): up/reply is NOT a shared subscription, so every
instance receives every reply, and each keeps only the ids it is waiting for. Ids are
`<instance-id>-<salt>-<counter>`: unique across restarts (the salt) and across instances (the
instance id), so a reply names the instance that waits for it; the others count it as
`foreign` and drop it. Why not per-instance reply topics: the contract has one `up/reply` per
charge point and the broker ACL confines a charge point to its own tree, so a topic per
instance would need a contract and ACL change; replies are rare (remote commands, bounded by
Hubject's limits), so every instance reading all of them costs nothing that matters.

A reply nobody waits for (late, or another instance's) is ignored and counted. When a charge
point's availability turns `offline` (its last will) every command waiting on it ends at once
with None.
"""

from __future__ import annotations

import asyncio
import itertools
import os

from firmware import contract as C
from tools.bridge import oicp


class Commands:
    def __init__(self, instance_id: str, publish):
        """`publish(topic, payload_bytes)` is an async callable (QoS 1, not retained)."""
        self.instance_id = instance_id
        self.publish = publish
        self._counter = itertools.count(1)
        self._salt = os.urandom(3).hex()
        self._waiting: dict[str, tuple[str, asyncio.Future]] = {}  # id -> (cp, future)
        self._mine = "{}-{}-".format(instance_id, self._salt)  # this process's ids start so
        # replies taken in: matched (a command waited), foreign (not this process's id: another
        # instance's, or ours from before a restart), unmatched (ours but late or for another
        # charge point), bad (unusable: no string id)
        self.counts = {"sent": 0, "matched": 0, "foreign": 0, "unmatched": 0, "bad": 0}

    def new_id(self) -> str:
        return "{}{}".format(self._mine, next(self._counter))

    async def send(self, cp: str, kind: str, body: dict, timeout_s: float) -> dict | None:
        """Publish the command (body["id"] set by the caller) and return the reply, or None
        if none came within `timeout_s` or the charge point went offline meanwhile."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        cmd_id = body["id"]
        self._waiting[cmd_id] = (cp, fut)
        try:
            await self.publish(C.down_topic(cp, kind), oicp.encode_down(body))
            self.counts["sent"] += 1
            return await asyncio.wait_for(fut, timeout_s)
        except (asyncio.TimeoutError, ConnectionError):
            return None  # no reply in time, or the broker link is down: the EVSE is unreached
        finally:
            self._waiting.pop(cmd_id, None)

    def on_reply(self, cp: str, payload: bytes) -> bool:
        """An up/reply arrived; True if a command was waiting for it."""
        reply = oicp.parse_reply(payload)
        if reply is None:
            self.counts["bad"] += 1
            return False
        entry = self._waiting.get(reply["id"])
        if entry is None or entry[0] != cp or entry[1].done():
            mine = str(reply["id"]).startswith(self._mine)
            self.counts["unmatched" if mine else "foreign"] += 1
            return False
        entry[1].set_result(reply)
        self.counts["matched"] += 1
        return True

    def pending(self) -> int:
        """Commands published and still waiting for their reply."""
        return len(self._waiting)

    def on_availability(self, cp: str, state: str) -> None:
        if state != "offline":
            return
        for owner, fut in list(self._waiting.values()):
            if owner == cp and not fut.done():
                fut.set_result(None)
