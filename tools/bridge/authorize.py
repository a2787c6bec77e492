"""Charge point -> Hubject (issue 12 item 2): an `up/authorize` request becomes an
eRoamingAuthorizeStart/Stop, and its outcome the `down/authorize` answer to the same charge
point, always before the request's `ttl_ms` runs out.

Deadline: the answer must be back before ttl_ms after we received the request, so the call to
Hubject gets ttl_ms - ANSWER_MARGIN_MS (the way back over MQTT), capped by
--hubject-timeout-ms; a call that cannot get its budget token or an answer by then is answered
NotAuthorized (320 / 310), never queued past the charge point's deadline.

The two shapes the firmware sends both map 1:1 (nothing special): a tap of a roaming card
(no CPOPartnerSessionID) and the post-authorization of a session the charge point accepted
offline or from its cache (with CPOPartnerSessionID = its local session id). Cards on the
operator's local list never reach the bridge. A request is checked before anything goes to
Hubject: the EvseID must be one of the publishing charge point's own (its retained birth) and
under our OperatorID, the Identification usable (else NotAuthorized 022, Hubject not called).
"""

from __future__ import annotations

import time

from firmware import contract as C
from tools.bridge import oicp

ANSWER_MARGIN_MS = 300  # kept for the answer's way back to the charge point


class Authorizer:
    def __init__(self, operator_id, registry, hubject, publish, log):
        self.operator_id = operator_id
        self.registry = registry
        self.hubject = hubject
        self.publish = publish  # async (topic, payload bytes)
        self.log = log

    async def on_request(self, cp: str, payload: bytes) -> dict | None:
        """Handle one up/authorize message; returns the answer sent (None if unanswerable)."""
        received = time.monotonic()
        try:
            msg = oicp.parse_request(payload)
        except oicp.Unusable as e:
            self.log.emit("warning", cp_id=cp, message=str(e))
            return None
        ttl = msg.get("ttl_ms")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            ttl = 0
        deadline = received + (ttl - ANSWER_MARGIN_MS) / 1000.0
        operation = oicp.AUTHORIZE_STOP if msg["type"] == oicp.TYPE_STOP \
            else oicp.AUTHORIZE_START
        try:
            operation, body = oicp.authorize_body(msg, self.operator_id)
            if not self.registry.owns(cp, body["EvseID"]):
                raise oicp.Unusable("EvseID {} is not in {}'s birth".format(body["EvseID"], cp))
        except oicp.Unusable as e:
            answer = oicp.refusal(msg["id"], e.code, str(e))
            await self._answer(cp, answer)
            self.log.oicp_call(operation, "out", status_code=answer["StatusCode"],
                               http_status=None, latency_ms=0.0, cp_id=cp,
                               EvseID=msg.get("EvseID") if isinstance(msg.get("EvseID"), str)
                               else None, identification=msg.get("Identification"),
                               sent=False)
            return answer
        out = await self.hubject.authorize(msg["id"], operation, body, deadline)
        answer = out.answer
        await self._answer(cp, answer)
        self.log.oicp_call(
            operation, "out", status_code=answer["StatusCode"], http_status=out.http_status,
            latency_ms=out.latency_ms, cp_id=cp, EvseID=body["EvseID"],
            SessionID=answer.get("SessionID") or body.get("SessionID"),
            CPOPartnerSessionID=body.get("CPOPartnerSessionID"),
            AuthorizationStatus=answer["AuthorizationStatus"],
            identification=body["Identification"], attempts=out.attempts,
            process_id=out.process_id,
            wait_ms=out.wait_ms or None,
            bridge_ms=round((time.monotonic() - received) * 1000 - out.latency_ms
                            - out.wait_ms, 1),
            ttl_ms=ttl)
        return answer

    async def _answer(self, cp: str, answer: dict) -> None:
        try:
            await self.publish(C.down_topic(cp, C.DOWN_AUTHORIZE), oicp.encode_down(answer))
        except ConnectionError as e:
            self.log.emit("error", cp_id=cp, message="answer not published: " + str(e),
                          code=answer["StatusCode"]["Code"])
