"""Durable messages -> Hubject (issue 13 item 1): the charge points' CDRs, charging
notifications and EVSE statuses (firmware/contract.py) become eRoamingChargeDetailRecord,
eRoamingChargingNotifications and eRoamingPushEvseStatus (bodies: tools/bridge/messages.py),
EVSE data eRoamingPushEvseData (tools/bridge/site.py); each message is acknowledged to its
charge point (`down/ack {"ids": [...]}`) only once its final receiver has it: Hubject answered
`Result: true`, or the operator's CDR store wrote it (tools/bridge/cdrstore.py), or it was
parked in the dead-letter file (tools/bridge/deadletter.py).

Order and parallelism
- CDRs and notifications go through one lane per session (cp, CPOPartnerSessionID): a
  session's Start, Progress, End and CDR reach Hubject in the order the charge point sent them;
  sessions and charge points do not wait for each other. A message retried with back-off holds
  only its own session's lane.
- EVSE status: one pusher per operator, never two pushes in flight (§7, §12.14), statuses of
  many EVSEs in one `update` push, a newer status of an EVSE replacing a waiting older one (the
  older id is acknowledged with it: superseded statuses collapsed). With --site, a status waits
  until its EVSE's data is at Hubject (603 otherwise, §7); without --site no data and so no
  status is pushed (statuses are acknowledged, one warning says so).
- EVSE data (--site): one pusher, `fullLoad` of every born EVSE once at start, then `insert`,
  `update` or `delete` for what births change; a 009 or 603 makes the next round a fullLoad.
- At most CONCURRENCY HTTP calls of this path at once, and each operation waits for its own
  budget (tools/bridge/budget.py: CDR 350/min, notifications 100/min, ...): a backlog drains at
  those rates while authorizations keep their own budget and connections.

Outcomes of a call
- accepted: HTTP 200 with `Result: true`. A CDR answered 400 "Session is invalid" counts as
  accepted when this bridge saw Hubject accept a CDR for that SessionID, or an earlier attempt
  of the same message got no usable answer (time-out, 5xx: Hubject may have stored it; §10
  "Idempotency and duplicates").
- retried with jittered exponential back-off (BACKOFF_S doubling to BACKOFF_MAX_S): no answer
  (time-out, connection, TLS), HTTP 408/429/5xx, 401/403/404 (certificate or set-up trouble is
  not the message's fault), an unusable answer, and StatusCodes RETRY_CODES. CDRs are retried
  until they are accepted (money); a notification at most NOTIFY_ATTEMPTS times (it is stale
  after that), then dead-lettered.
- final: anything else (022 data error, 018, 400 ...), and the pre-send checks: dead-lettered
  with Hubject's StatusCode and Process-ID, logged as an `error` for that charge point, and
  acknowledged so the queue moves on.

Every OICP call is one `oicp` log line (tools/bridge/log.py). A message seen again while it is
being handled (the charge point resends after a reconnect) is ignored; one seen again after it
was acknowledged (the ack was lost) is acknowledged again at once (DONE_KEEP ids remembered).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from firmware import contract as C
from firmware import oicp_status as S
from tools.bridge import messages as M
from tools.bridge import oicp
from tools.bridge.hubject import post

RETRY_CODES = ("001", "002", "009", "310", "320", "017", "300")
BACKOFF_S = 1.0  # first back-off, seconds
BACKOFF_MAX_S = 300.0
NOTIFY_ATTEMPTS = 5  # a notification is given up (dead-lettered) after this many tries
CONCURRENCY = 8  # HTTP calls of the durable path in flight at once
BUDGET_WAIT_S = 600.0  # longest wait for a budget token before the call counts as failed
DONE_KEEP = 100_000  # acknowledged ids remembered (a lost ack is answered at once)
STATUS_BATCH = 200  # EVSE status records per push
DATA_BATCH = 100  # EVSE data records per insert/update/delete push

# how a session was authorized (the CDR's "auth", firmware/contract.py): these were accepted
# without Hubject and are post-authorized before their CDR goes there
POST_AUTHORIZE = ("free_vend", "cache")
KIND_CDR = "cdr"
KIND_NOTIFICATION = "notification"
KIND_STATUS = "evse_status"


def backoff(attempt: int) -> float:
    """Seconds to wait before try `attempt + 1` (attempt >= 1): full jitter in [d/2, d]."""
    d = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (attempt - 1))
    return random.uniform(d / 2, d)


@dataclass
class Verdict:
    """What became of one message (or push): `state` ACCEPTED, STORED (operator's CDR store),
    SKIPPED (nothing to send: a notification of a session Hubject does not know), RETRY or
    FINAL; `reason` text; `code` Hubject's StatusCode.Code (or ours); `answer` for the dead
    letter; `maybe_stored` True if Hubject may have processed it without us seeing the
    answer (time-out, 5xx)."""

    state: str
    reason: str = ""
    code: str | None = None
    answer: dict | None = None
    body: dict | None = None
    maybe_stored: bool = False


ACCEPTED, STORED, SKIPPED, RETRY, FINAL = "accepted", "stored", "skipped", "retry", "final"


class Sender:
    """The calls toward Hubject for this path: budget, concurrency bound, classification of
    the answer, one log line per call."""

    def __init__(self, hubject, log):
        self.hubject = hubject
        self.log = log
        self.sem = asyncio.Semaphore(CONCURRENCY)

    async def call(self, operation: str, path: str, body: dict, **log_fields) -> Verdict:
        async with self.sem:
            r = await post(self.hubject, operation, path, body,
                           time.monotonic() + BUDGET_WAIT_S)
        result, sc = M.acknowledgement_code(r.body)
        answer = {"http_status": r.http_status, "StatusCode": sc, "process_id": r.process_id,
                  "response": r.body if r.error is None else r.error}
        self.log.oicp_call(operation, "out", status_code=sc, http_status=r.http_status,
                           latency_ms=r.latency_ms, attempts=r.attempts,
                           process_id=r.process_id, wait_ms=r.wait_ms or None, Result=result,
                           error=r.error, **log_fields)
        code = sc["Code"] if sc else None
        if r.error is not None or r.http_status is None:
            return Verdict(RETRY, r.error or "no answer", code, answer, body, maybe_stored=True)
        if r.http_status == 200 and result is True:
            return Verdict(ACCEPTED, "", code, answer, body)
        info = (sc or {}).get("AdditionalInfo") or (sc or {}).get("Description") or ""
        reason = "HTTP {} {} {}".format(r.http_status, code or "(no StatusCode)", info).strip()
        if r.http_status in (408, 429) or r.http_status >= 500:
            return Verdict(RETRY, reason, code, answer, body, maybe_stored=True)
        if r.http_status in (401, 403, 404):
            return Verdict(RETRY, reason + " (set-up or certificate trouble)", code, answer,
                           body)
        if code is None:
            return Verdict(RETRY if r.http_status == 200 else FINAL,
                           reason + ": no usable acknowledgement", S.SYSTEM_ERROR, answer, body)
        if code in RETRY_CODES:
            return Verdict(RETRY, reason, code, answer, body)
        return Verdict(FINAL, reason, code, answer, body)


class Durable:
    """CDRs and notifications (per-session lanes), the ack, dead letters; EVSE statuses are
    handed to the StatusPusher. `publish(topic, payload)` is the MQTT link's."""

    def __init__(self, operator_id: str, sender: Sender, site, cdr_store, dead, publish,
                 log, registry=None, clock: Callable[[], float] = time.time):
        self.operator_id = operator_id
        self.sender = sender
        self.site = site
        self.cdr_store = cdr_store
        self.dead = dead
        self.publish = publish
        self.log = log
        self.registry = registry
        self.clock = clock
        self.statuses: StatusPusher | None = None
        self.active: set[tuple[str, str]] = set()  # (cp, id) being handled
        self.done: collections.OrderedDict = collections.OrderedDict()  # (cp, id) acked
        self.accepted_sids: collections.OrderedDict = collections.OrderedDict()
        # CPOPartnerSessionID -> (SessionID, ProviderID) Hubject gave a CDR's post-authorization
        self.post_authorized: collections.OrderedDict = collections.OrderedDict()
        self.lanes: dict[tuple[str, str], collections.deque] = {}
        self.tasks: set[asyncio.Task] = set()

    # -- intake ------------------------------------------------------------------------------
    def on_message(self, kind: str, cp: str, payload: bytes) -> None:
        """One durable message from `cp` (kind KIND_CDR, KIND_NOTIFICATION or KIND_STATUS)."""
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeError):
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), (str, int)) \
                or isinstance(msg.get("id"), bool):
            if payload:  # an empty payload is a cleared retained status: nothing to do
                self.log.emit("warning", cp_id=cp, message="durable {} without an id: not "
                              "usable, cannot be acknowledged".format(kind))
            return
        if msg.get("type") != kind:
            self._spawn(self._park_and_ack(cp, kind, msg, "type {!r} on the {} topic".format(
                msg.get("type"), kind), _operation(kind)))
            return
        key = (cp, str(msg["id"]))
        if key in self.active:
            return  # being handled: its ack will come
        if key in self.done:
            self._spawn(self.ack(cp, [msg["id"]]))
            return
        self.active.add(key)
        if kind == KIND_STATUS:
            assert self.statuses is not None
            self.statuses.on_status(cp, msg)
            return
        sess = msg.get("CPOPartnerSessionID")
        lane_key = (cp, sess if isinstance(sess, str) else str(msg["id"]))
        lane = self.lanes.get(lane_key)
        if lane is None:
            lane = self.lanes[lane_key] = collections.deque()
            lane.append((kind, msg))
            self._spawn(self._run_lane(lane_key, lane))
        else:
            lane.append((kind, msg))

    def _spawn(self, coro: Awaitable) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.emit("error", message="durable task failed: {!r}".format(
                task.exception())[:300])

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _run_lane(self, lane_key, lane: collections.deque) -> None:
        cp = lane_key[0]
        try:
            while lane:
                kind, msg = lane[0]
                await self._deliver(cp, kind, msg)
                lane.popleft()
        finally:
            if self.lanes.get(lane_key) is lane:
                del self.lanes[lane_key]

    async def _deliver(self, cp: str, kind: str, msg: dict) -> None:
        attempt = 0
        maybe_stored = False
        while True:
            attempt += 1
            v = await self.process(cp, kind, msg, maybe_stored)
            maybe_stored = maybe_stored or v.maybe_stored
            if v.state == RETRY and kind == KIND_NOTIFICATION and attempt >= NOTIFY_ATTEMPTS:
                v = Verdict(FINAL, "given up after {} attempts: {}".format(attempt, v.reason),
                            v.code, v.answer, v.body)
            if v.state == RETRY:
                wait = backoff(attempt)
                self.log.emit("retry", cp_id=cp, id=msg["id"], kind=kind, attempt=attempt,
                              reason=v.reason[:300], retry_s=round(wait, 2))
                await asyncio.sleep(wait)
                continue
            if v.state == FINAL:
                self.park(cp, kind, msg, v, _operation(kind))
            await self.ack(cp, [msg["id"]])
            return

    # -- one message ---------------------------------------------------------------------------
    async def process(self, cp: str, kind: str, msg: dict, maybe_stored: bool = False
                      ) -> Verdict:
        """Send (or store) one CDR or notification once; never raises for Hubject's or the
        message's faults. Also used by `replay`."""
        if kind == KIND_CDR:
            return await self._cdr(cp, msg, maybe_stored)
        if not M.is_hubject_session(msg):
            return Verdict(SKIPPED, "not a Hubject session")
        evse = msg.get("EvseID") if isinstance(msg.get("EvseID"), str) else None
        try:
            body = M.notification_body(msg, self.operator_id, self._zone(cp, evse))
        except oicp.Unusable as e:
            return Verdict(FINAL, "not sent: " + str(e), e.code)
        return await self.sender.call(M.NOTIFICATIONS, M.NOTIFICATION_PATH, body, cp_id=cp,
                                      id=msg["id"], Type=body["Type"], EvseID=body["EvseID"],
                                      SessionID=body["SessionID"],
                                      CPOPartnerSessionID=body.get("CPOPartnerSessionID"))

    async def _cdr(self, cp: str, msg: dict, maybe_stored: bool) -> Verdict:
        if not M.is_hubject_session(msg):
            if msg.get("auth") not in POST_AUTHORIZE:
                return self._store(cp, msg)  # the operator's own customer (local list)
            v = await self._post_authorize(cp, msg)
            if v is not None:
                return v
        evse = msg.get("EvseID") if isinstance(msg.get("EvseID"), str) else None
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc)
        try:
            body = M.cdr_body(msg, self.operator_id, self._zone(cp, evse), now)
        except oicp.Unusable as e:
            return Verdict(FINAL, "not sent: " + str(e), e.code)
        sid = body["SessionID"]
        fields = dict(cp_id=cp, id=msg["id"], EvseID=body["EvseID"], SessionID=sid,
                      CPOPartnerSessionID=body.get("CPOPartnerSessionID"),
                      ConsumedEnergy=body["ConsumedEnergy"])
        if sid in self.accepted_sids:
            self.log.emit("duplicate", cp_id=cp, id=msg["id"], SessionID=sid,
                          message="a CDR for this SessionID was accepted before: not resent")
            return Verdict(ACCEPTED, "duplicate of an accepted CDR", body=body)
        v = await self.sender.call(M.CDR, M.cdr_path(self.operator_id), body, **fields)
        if v.state == FINAL and v.code == S.SESSION_INVALID and maybe_stored:
            self.log.emit("duplicate", cp_id=cp, id=msg["id"], SessionID=sid,
                          message="400 after an unanswered attempt: Hubject stored the first")
            v = Verdict(ACCEPTED, "accepted by an earlier attempt", v.code, v.answer, body)
        elif v.state == FINAL and v.code == S.SESSION_INVALID:
            v.reason += (": most likely Hubject accepted a CDR for this SessionID before (a "
                         "resend after a lost acknowledgement, §10), else it is not Hubject's")
        if v.state == ACCEPTED:
            self.accepted_sids[sid] = True
            while len(self.accepted_sids) > DONE_KEEP:
                self.accepted_sids.popitem(last=False)
            self._note("note_cdr", cp)
        return v

    async def _post_authorize(self, cp: str, msg: dict) -> Verdict | None:
        """A session the charge point accepted without Hubject (offline policy, cache) ended
        before it could be post-authorized: Hubject accepts a CDR only for a SessionID it
        issued (fact sheet §8, §11), so ask now -- eRoamingAuthorizeStart with the session's
        Identification, EvseID and CPOPartnerSessionID. Authorized: `msg` gets Hubject's
        SessionID (and ProviderID) and None is returned (send the CDR). No decision: RETRY.
        Refused: FINAL (the dead letter says so: energy delivered that no EMP pays for).
        A restart between the AuthorizeStart and the CDR asks again (a second Hubject session
        for the same local id; the first stays without a CDR)."""
        key = msg.get("CPOPartnerSessionID")
        known = self.post_authorized.get(key)
        if known is None:
            try:
                op, body = oicp.authorize_body(dict(msg, type=oicp.TYPE_START),
                                               self.operator_id)
            except oicp.Unusable as e:
                return Verdict(FINAL, "post-authorization impossible: " + str(e), e.code)
            async with self.sender.sem:
                r = await post(self.sender.hubject, op,
                               oicp.authorize_path(op, self.operator_id), body,
                               time.monotonic() + BUDGET_WAIT_S)
            answer = oicp.answer_from_response(str(msg.get("id")), op, r.body) \
                if r.error is None and r.http_status == 200 else None
            sc = (answer or {}).get("StatusCode") or {}
            self.log.oicp_call(op, "out", status_code=sc or None, http_status=r.http_status,
                               latency_ms=r.latency_ms, attempts=r.attempts, cp_id=cp,
                               id=msg.get("id"), EvseID=body["EvseID"],
                               CPOPartnerSessionID=key, purpose="post-authorize a CDR",
                               identification=body["Identification"],
                               AuthorizationStatus=(answer or {}).get("AuthorizationStatus"),
                               SessionID=(answer or {}).get("SessionID"), error=r.error)
            if answer is None or answer.get("NoDecision"):
                return Verdict(RETRY, "post-authorization: no decision from Hubject ({})"
                               .format(r.error or r.http_status or sc.get("Code")),
                               sc.get("Code"))
            if answer.get("AuthorizationStatus") != "Authorized":
                return Verdict(FINAL, "post-authorization refused by Hubject ({}): the "
                               "session was accepted offline".format(sc.get("Code")),
                               sc.get("Code"), {"response": r.body})
            known = (answer["SessionID"], answer.get("ProviderID"))
            self.post_authorized[key] = known
            while len(self.post_authorized) > DONE_KEEP:
                self.post_authorized.popitem(last=False)
        msg["SessionID"] = known[0]
        if known[1]:
            msg["ProviderID"] = known[1]
        return None

    def _store(self, cp: str, msg: dict) -> Verdict:
        if self.cdr_store is None:
            self.log.emit("local_cdr", cp_id=cp, id=msg["id"], record=msg,
                          message="no --cdr-store: this log line is the only record")
            self._note("note_cdr", cp)
            return Verdict(STORED, "logged")
        try:
            written = self.cdr_store.add(str(msg["id"]), cp, msg)
        except OSError as e:
            return Verdict(RETRY, "CDR store: {}".format(e))
        self.log.emit("local_cdr", cp_id=cp, id=msg["id"], stored=written,
                      CPOPartnerSessionID=msg.get("CPOPartnerSessionID"),
                      ConsumedEnergy=msg.get("ConsumedEnergy"),
                      message=None if written else "already in the store: not written again")
        if written:
            self._note("note_cdr", cp)
        return Verdict(STORED, "stored" if written else "already stored")

    def _zone(self, cp: str, evse: str | None) -> datetime.tzinfo:
        if self.site is None:
            return datetime.timezone.utc
        return self.site.zone(cp, evse)

    def _note(self, name: str, cp: str) -> None:
        note = getattr(self.registry, name, None)  # the operator view (tools/bridge/status)
        if note is not None:
            note(cp)

    # -- outcomes ------------------------------------------------------------------------------
    def park(self, cp: str, kind: str, msg: dict, v: Verdict, operation: str) -> None:
        """Dead-letter one message and say so (error line for that charge point)."""
        self.dead.park(cp, kind, msg, v.reason, operation, v.body, v.answer)
        answer = v.answer or {}
        self.log.emit("error", cp_id=cp, kind="dead_letter", id=msg.get("id"),
                      type=kind, operation=operation, StatusCode=v.code,
                      process_id=answer.get("process_id"), reason=v.reason[:500])
        self._note("note_dead_letter", cp)

    async def _park_and_ack(self, cp, kind, msg, reason, operation) -> None:
        self.park(cp, kind, msg, Verdict(FINAL, reason, S.DATA_ERROR), operation)
        await self.ack(cp, [msg["id"]])

    async def ack(self, cp: str, ids: list) -> None:
        """`down/ack {"ids": ids}` to `cp`; the ids are remembered as done (a redelivery is
        acknowledged again at once). A lost ack is harmless: the message comes again."""
        for i in ids:
            key = (cp, str(i))
            self.active.discard(key)
            self.done[key] = True
        while len(self.done) > DONE_KEEP:
            self.done.popitem(last=False)
        try:
            await self.publish(C.down_topic(cp, C.DOWN_ACK),
                               json.dumps({"ids": ids}, separators=(",", ":")).encode())
        except ConnectionError as e:
            self.log.emit("warning", cp_id=cp, message="ack not published: {}".format(e)[:200])


def _operation(kind: str) -> str:
    return {KIND_CDR: M.CDR, KIND_NOTIFICATION: M.NOTIFICATIONS}.get(kind, M.PUSH_STATUS)


class EvseData:
    """eRoamingPushEvseData from births + the site file (module docstring)."""

    def __init__(self, operator_id: str, site, registry, sender: Sender, log):
        self.operator_id = operator_id
        self.site = site
        self.registry = registry
        self.sender = sender
        self.log = log
        self.pushed: dict[str, dict] = {}  # EvseID -> the record Hubject has from us
        self.loaded = False  # the fullLoad went through
        self.wake = asyncio.Event()
        self.changed = asyncio.Event()  # set after each successful push (statuses wait on it)
        self.bad: dict[str, str] = {}  # EvseID -> why no record can be built (logged once)

    def desired(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for cp, ids in list(self.registry.evses.items()):
            for e in ids:
                try:
                    out[oicp.check_evse(e, self.operator_id)] = self.site.record(cp, e)
                    self.bad.pop(e.upper(), None)
                except ValueError as err:  # SiteError or Unusable
                    if self.bad.get(e.upper()) != str(err):
                        self.bad[e.upper()] = str(err)
                        self.log.emit("error", cp_id=cp, kind="evse_data", EvseID=e,
                                      message="no EVSE data can be pushed: {}".format(err))
        return out

    def ready(self, evse_id: str) -> bool:
        return evse_id in self.pushed

    def unbuildable(self, evse_id: str) -> str | None:
        return self.bad.get(evse_id)

    def reload(self) -> None:
        """Hubject lacks data we thought it had (603/009): the next round is a fullLoad."""
        self.loaded = False
        self.wake.set()

    async def run(self) -> None:
        attempt = 0
        while True:
            self.wake.clear()
            want = self.desired()
            if not self.loaded:
                jobs = [("fullLoad", list(want.values()))]
            else:
                ins = [r for e, r in want.items() if e not in self.pushed]
                upd = [r for e, r in want.items() if e in self.pushed and self.pushed[e] != r]
                dele = [{**self.pushed[e]} for e in self.pushed if e not in want]
                jobs = [(a, rs[i:i + DATA_BATCH]) for a, rs in (("delete", dele),
                                                                 ("insert", ins),
                                                                 ("update", upd))
                        for i in range(0, len(rs), DATA_BATCH)]
            failed = False
            for action, records in jobs:
                body = {"ActionType": action, "OperatorEvseData": {
                    "OperatorID": self.operator_id, "OperatorName": self.site.operator_name,
                    "EvseDataRecord": records}}
                v = await self.sender.call(M.PUSH_DATA, M.data_path(self.operator_id), body,
                                           ActionType=action, records=len(records))
                if v.state != ACCEPTED:
                    failed = True
                    if v.code == "009":
                        self.loaded = False
                    self.log.emit("error" if v.state == FINAL else "retry",
                                  kind="evse_data", ActionType=action, reason=v.reason[:300])
                    break
                if action == "fullLoad":
                    self.pushed = {r["EvseID"]: r for r in records}
                    self.loaded = True
                else:
                    for r in records:
                        if action == "delete":
                            self.pushed.pop(r["EvseID"], None)
                        else:
                            self.pushed[r["EvseID"]] = r
                self.changed.set()
            if failed:
                attempt += 1
                await asyncio.sleep(backoff(attempt))
                continue
            attempt = 0
            await self.wake.wait()


class StatusPusher:
    """eRoamingPushEvseStatus, one push in flight per operator (module docstring)."""

    def __init__(self, operator_id: str, durable: Durable, sender: Sender, data: EvseData | None,
                 registry):
        self.operator_id = operator_id
        self.durable = durable
        self.sender = sender
        self.data = data
        self.registry = registry
        self.pending: dict[str, tuple[dict, list[tuple[str, dict]]]] = {}
        self.wake = asyncio.Event()
        self.warned = False

    def on_status(self, cp: str, msg: dict) -> None:
        try:
            rec = M.status_record(msg, self.operator_id)
            if not self.registry.owns(cp, rec["EvseID"]):
                raise oicp.Unusable("EvseID {} is not in {}'s birth".format(rec["EvseID"], cp))
        except oicp.Unusable as e:
            self.durable._spawn(self.durable._park_and_ack(cp, KIND_STATUS, msg, str(e),
                                                           M.PUSH_STATUS))
            return
        if self.data is None:  # no --site: no EVSE data, so no status either (603, §7)
            if not self.warned:
                self.warned = True
                self.durable.log.emit("warning", message="no --site: EVSE data and statuses "
                                      "are not pushed to Hubject (statuses acknowledged)")
            self.durable._spawn(self.durable.ack(cp, [msg["id"]]))
            return
        old = self.pending.get(rec["EvseID"])
        self.pending[rec["EvseID"]] = (rec, (old[1] if old else []) + [(cp, msg)])
        self.wake.set()

    def _eligible(self) -> list[str]:
        out = []
        for e in list(self.pending):
            if self.data is None or self.data.ready(e):
                out.append(e)
            elif self.data.unbuildable(e) is not None:
                _rec, msgs = self.pending.pop(e)
                for cp, msg in msgs:
                    self.durable._spawn(self.durable._park_and_ack(
                        cp, KIND_STATUS, msg, "no EVSE data for it: " + self.data.bad[e],
                        M.PUSH_STATUS))
            if len(out) >= STATUS_BATCH:
                break
        return out

    async def run(self) -> None:
        attempt = 0
        while True:
            self.wake.clear()
            if self.data is not None:
                self.data.changed.clear()
            batch = self._eligible()
            if not batch:
                waits = [asyncio.ensure_future(self.wake.wait())]
                if self.data is not None:
                    waits.append(asyncio.ensure_future(self.data.changed.wait()))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
                continue
            taken = {e: self.pending.pop(e) for e in batch}
            body = M.push_status_body(self.operator_id, [rec for rec, _ in taken.values()])
            v = await self.sender.call(M.PUSH_STATUS, M.status_path(self.operator_id), body,
                                       ActionType="update", records=len(batch),
                                       EvseID=batch[0] if len(batch) == 1 else None)
            if v.state == FINAL and v.code == "603" and self.data is not None:
                v = Verdict(RETRY, v.reason, v.code, v.answer, body)
                self.data.reload()
            if v.state == RETRY:
                for e, (rec, msgs) in taken.items():  # back in front; a newer one wins
                    newer = self.pending.pop(e, None)
                    self.pending[e] = (newer[0] if newer else rec,
                                       msgs + (newer[1] if newer else []))
                attempt += 1
                await asyncio.sleep(backoff(attempt))
                continue
            attempt = 0
            by_cp: dict[str, list] = {}
            for _e, (_rec, msgs) in taken.items():
                for cp, msg in msgs:
                    if v.state == FINAL:
                        self.durable.park(cp, KIND_STATUS, msg, v, M.PUSH_STATUS)
                    by_cp.setdefault(cp, []).append(msg["id"])
            for cp, ids in by_cp.items():
                await self.durable.ack(cp, ids)


# -- replay ------------------------------------------------------------------------------------
async def replay(cfg, path: str, out) -> int:
    """`python -m tools.bridge replay FILE [flags]`: send every dead letter of FILE again
    (bodies rebuilt from each line's `message`), one JSON line per dead letter on `out`
    (`line`, `id`, `kind`, `result` accepted/stored/skipped/refused/failed, `StatusCode`,
    `reason`). Nothing is acknowledged (the charge point had its ack) and nothing is
    dead-lettered again. Exit status 0 when every line was accepted or stored, else 1."""
    from tools.bridge import cdrstore, deadletter
    from tools.bridge import site as site_mod
    from tools.bridge.budget import Budgets
    from tools.bridge.hubject import HubjectClient, client_context
    from tools.bridge.log import Log

    log = Log(sys.stderr)  # the OICP call lines; stdout carries one result per dead letter
    tls = None
    if cfg.hubject_url.startswith("https:"):
        tls = client_context(cfg.client_cert, cfg.client_key, cfg.hubject_ca)
    client = HubjectClient(cfg.hubject_url, tls, Budgets(cfg.budgets), cfg.hubject_timeout_ms,
                           cfg.hubject_connections)
    await client.start()
    sender = Sender(client, log)
    site = site_mod.load(cfg.site, cfg.operator_id) if cfg.site else None
    store = cdrstore.CdrStore(cfg.cdr_store) if cfg.cdr_store else None

    async def no_publish(topic, payload):
        return None

    durable = Durable(cfg.operator_id, sender, site, store, deadletter.DeadLetters(None),
                      no_publish, log)
    status = 0
    try:
        for n, rec, problem in deadletter.read(path):
            if rec is None:
                print(json.dumps({"line": n, "result": "failed", "reason": problem}),
                      file=out, flush=True)
                status = 1
                continue
            cp, kind, msg = str(rec.get("cp_id")), rec["kind"], rec["message"]
            if kind == KIND_STATUS:
                try:
                    body = M.push_status_body(cfg.operator_id,
                                              [M.status_record(msg, cfg.operator_id)])
                    v = await sender.call(M.PUSH_STATUS, M.status_path(cfg.operator_id), body,
                                          cp_id=cp, id=msg.get("id"), ActionType="update")
                except oicp.Unusable as e:
                    v = Verdict(FINAL, "not sent: " + str(e), e.code)
            else:
                v = await durable.process(cp, kind, msg)
            result = {ACCEPTED: "accepted", STORED: "stored", SKIPPED: "skipped",
                      RETRY: "failed", FINAL: "refused"}[v.state]
            if v.state not in (ACCEPTED, STORED):
                status = 1
            print(json.dumps({"line": n, "id": msg.get("id"), "cp_id": cp, "kind": kind,
                              "result": result, "StatusCode": v.code,
                              "reason": v.reason or None}), file=out, flush=True)
    finally:
        await client.close()
    return status
