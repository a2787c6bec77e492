"""The endpoints Hubject calls (fact sheet §0, §4), served with aiohttp:

    POST {listen}/api/oicp/charging/v21/providers/{providerID}/authorize-remote/start
    POST {listen}/api/oicp/charging/v21/providers/{providerID}/authorize-remote/stop

Each answers HTTP 200 with an eRoamingAcknowledgement (as WWCP does; §4):
  022  the body is unusable (tools.bridge.oicp.parse_remote) -- nothing is published
  603  no retained birth names the EvseID                    -- nothing is published
  501  the charge point's availability is `offline` (last will): at once, nothing published;
       or it did not reply within the bound (`reply_timeout_s`, <= 10 s: Hubject's best
       practice is an answer within 10 s, its hard limit 60 s), or went offline meanwhile
  else the charge point's own reply: 000, 602, 601, 700, 603, 510, 022 (start), 000/400 (stop)
Idempotent per (operation, SessionID): the first request's answer is kept (REMEMBER answers,
oldest forgotten first); a repeat -- also while the first is still waiting for the charge
point -- awaits the same task, gets the same acknowledgement and publishes nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict

from aiohttp import web

from firmware import contract as C
from firmware import oicp_status as S
from tools.bridge import oicp
from tools.bridge.registry import OFFLINE

BASE = "/api/oicp"
START_PATH = BASE + "/charging/v21/providers/{providerID}/authorize-remote/start"
STOP_PATH = BASE + "/charging/v21/providers/{providerID}/authorize-remote/stop"
REPLY_TIMEOUT_S = 8.0  # default bound for the charge point's reply (issue: <= 10 s)
MAX_REPLY_TIMEOUT_S = 10.0
REMEMBER = 10000  # acknowledgements kept for repeats
MAX_BODY = 64 * 1024  # bytes; a RemoteStart is a few hundred


class RemoteService:
    def __init__(self, operator_id, registry, commands, log,
                 reply_timeout_s: float = REPLY_TIMEOUT_S):
        if not 0 < reply_timeout_s <= MAX_REPLY_TIMEOUT_S:
            raise ValueError("reply time-out must be in (0, {}] s".format(MAX_REPLY_TIMEOUT_S))
        self.operator_id = operator_id
        self.registry = registry
        self.commands = commands
        self.log = log
        self.reply_timeout_s = reply_timeout_s
        self._done: OrderedDict[tuple[str, str], asyncio.Task] = OrderedDict()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(START_PATH, self._start)
        app.router.add_post(STOP_PATH, self._stop)
        return app

    async def _start(self, request: web.Request) -> web.Response:
        return await self._handle(oicp.REMOTE_START, request)

    async def _stop(self, request: web.Request) -> web.Response:
        return await self._handle(oicp.REMOTE_STOP, request)

    async def _handle(self, operation: str, request: web.Request) -> web.Response:
        t0 = time.monotonic()
        provider = request.match_info["providerID"]
        raw = await request.read()
        ack, fields = await self.answer(operation, provider, raw)
        self.log.oicp_call(operation, "in", status_code=ack["StatusCode"], http_status=200,
                           latency_ms=round((time.monotonic() - t0) * 1000, 1),
                           Result=ack["Result"], **fields)
        return web.json_response(ack, dumps=lambda o: json.dumps(o, separators=(",", ":")))

    async def answer(self, operation: str, provider: str, raw: bytes) -> tuple[dict, dict]:
        """(eRoamingAcknowledgement, extra log fields) for one request body."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeError):
            return oicp.acknowledgement(False, S.DATA_ERROR, None, "body is not JSON"), {}
        echo = _echo(body)
        try:
            req = oicp.parse_remote(operation, provider, body, self.operator_id)
        except oicp.Unusable as e:
            return oicp.acknowledgement(False, e.code, echo, str(e)), _log_fields(echo)
        key = (operation, req["SessionID"])
        fields = _log_fields(req)
        task = self._done.get(key)
        if task is not None:
            fields["repeat"] = True
        else:
            task = asyncio.ensure_future(self._execute(operation, req))
            self._done[key] = task
            while len(self._done) > REMEMBER:
                self._done.popitem(last=False)
        ack, cp = await asyncio.shield(task)
        fields["cp_id"] = cp
        return ack, fields

    async def _execute(self, operation: str, req: dict) -> tuple[dict, str | None]:
        cp = self.registry.lookup(req["EvseID"])
        if cp is None:
            return oicp.acknowledgement(False, S.UNKNOWN_EVSE, req,
                                        "no charge point has EVSE " + req["EvseID"]), None
        if self.registry.state(cp) == OFFLINE:
            return oicp.acknowledgement(False, S.EVSE_COMMUNICATION_FAILED, req,
                                        "charge point {} is offline".format(cp)), cp
        kind = C.DOWN_REMOTE_START if operation == oicp.REMOTE_START else C.DOWN_REMOTE_STOP
        cmd = oicp.remote_command(operation, self.commands.new_id(), req)
        reply = await self.commands.send(cp, kind, cmd, self.reply_timeout_s)
        if reply is None:
            return oicp.acknowledgement(
                False, S.EVSE_COMMUNICATION_FAILED, req,
                "charge point {} did not answer within {:.0f} s (or went offline)".format(
                    cp, self.reply_timeout_s)), cp
        return oicp.acknowledgement_from_reply(reply, req), cp


def _echo(body: object) -> dict | None:
    """The ids of an unusable request that are still safe to echo (valid formats only)."""
    if not isinstance(body, dict):
        return None
    out = {}
    sid = body.get("SessionID")
    if isinstance(sid, str) and oicp.SESSION_RE.match(sid):
        out["SessionID"] = sid
    for key in ("CPOPartnerSessionID", "EMPPartnerSessionID"):
        v = body.get(key)
        if isinstance(v, str) and len(v) <= oicp.PARTNER_SESSION_MAX:
            out[key] = v
    if isinstance(body.get("EvseID"), str):
        out["EvseID"] = body["EvseID"][:40]
    return out


def _log_fields(req: dict | None) -> dict:
    if not req:
        return {}
    out = {k: req[k] for k in ("SessionID", "EvseID", "ProviderID") if k in req}
    if "Identification" in req:
        out["identification"] = req["Identification"]
    return out
