"""The Hubject simulator's state and its two aiohttp applications: the OICP side under
``/api/oicp`` (what a CPO calls) and the control API (tests and the demo).

Section numbers (§n) are those of the OICP 2.3 fact sheet ``oicp-2.3-cpo.md``.

Answers, by kind of failure:

- body not JSON, or breaking a schema/extra rule of :mod:`host_sim.hubject.schemas`: HTTP 400
  with Hubject's ``FaultBody`` (``message``, ``extendedInfo``, ``validationErrors`` with
  ``fieldReference``/``errorMessage``; §9 "Codes that are not in the OICP list") plus
  ``StatusCode`` 022 "Data error" (§9), so a parser that only looks for a StatusCode finds it;
- OperatorID (path or body) not matching the client certificate's CN or O: HTTP 401 and a body
  with only ``StatusCode`` 017 (§1, §9 observed, §10);
- the business rules answer HTTP 200 with the operation's own message and a code: AuthorizeStart
  NotAuthorized 102/101/105/106/210 (§1), AuthorizeStop NotAuthorized 400 for a session Hubject
  does not know or has closed (§2), CDR ``Result:false`` 400 for a SessionID Hubject did not
  issue to this operator or already closed by a CDR (one CDR per SessionID, §6, §8, §10, §11),
  022 for the energy/time checks and 018 for an EvseID outside the operator (§6), pushes 018
  (duplicate or foreign EvseID), 603 (status for an EVSE never pushed as data) and 009
  (insert of an existing / update of a missing record) (§7), notifications 400 (§5).

Every call (both directions) is one record in :attr:`Hubject.calls` and one JSON line in the log:
``seq, time, direction ("in": CPO -> Hubject, "out": Hubject -> CPO), operation, method, path,
body, http_status, response, latency_ms, problems, warnings, fault, client_cert_subject``.
``problems`` are the reasons a body was refused (or, for "out" calls, what is wrong with the
CPO's answer); ``warnings`` are fact-sheet advice Hubject does not enforce (Z instead of a local
offset §12.13, Progress less than 5 min apart §5, parallel pushes §7, ...).
"""

import asyncio
import datetime
import json
import re
import ssl
import time
import uuid

import aiohttp
from aiohttp import web

from firmware import oicp_status
from host_sim import pki
from host_sim.hubject import schemas

BASE = "/api/oicp"

#: Operation -> (path under BASE, request schema name). CPO -> Hubject, all POST (§0).
INBOUND = {
    "AuthorizeStart": ("/charging/v21/operators/{operatorID}/authorize/start",
                       "eRoamingAuthorizeStart"),
    "AuthorizeStop": ("/charging/v21/operators/{operatorID}/authorize/stop",
                      "eRoamingAuthorizeStop"),
    "ChargeDetailRecord": ("/cdrmgmt/v22/operators/{operatorID}/charge-detail-record",
                           "eRoamingChargeDetailRecord"),
    "ChargingNotifications": ("/notificationmgmt/v11/charging-notifications",
                              "eRoamingChargingNotification"),
    "PushEvseStatus": ("/evsepush/v21/operators/{operatorID}/status-records",
                       "eRoamingPushEvseStatus"),
    "PushEvseData": ("/evsepush/v23/operators/{operatorID}/data-records",
                     "eRoamingPushEvseData"),
}
#: Hubject -> CPO, appended to the CPO's service URL (§0, §4).
OUTBOUND = {
    "AuthorizeRemoteStart": "/charging/v21/providers/{providerID}/authorize-remote/start",
    "AuthorizeRemoteStop": "/charging/v21/providers/{providerID}/authorize-remote/stop",
}

FAULT_MODES = ("http_500", "http_401", "http_403", "http_404", "http_429", "timeout",
               "status_only", "malformed")

#: Codes a CPO may put in a RemoteStart/Stop acknowledgement (§9 last column, §4 BPMN-R:
#: 500-700 range when it cannot start/stop, 021/022 for internal/parse failures, 400 unknown
#: session; 103/106/320 marked possible).
CPO_ACK_CODES = ("000", "021", "022", "103", "106", "320", "400", "501", "510", "601", "602",
                 "603", "700")

#: The demo's EMP cards (``--cards`` replaces them). UID (upper-case hex, §3) -> behaviour.
DEFAULT_CARDS = {
    "04A2B3C4D5E6F7": {"status": "Authorized", "code": "000", "ProviderID": "DE-8KZ",
                       "stop_ids": ["04A2B3C4D5E6F7", "DE-8KZ-C12AB34CD-7"]},
    "0A1B2C3D": {"status": "Authorized", "code": "000", "ProviderID": "DE*ICE"},
    "DEADBEEF": {"status": "NotAuthorized", "code": "210"},  # EMP without a contract (§1)
    "0BADCAFE": {"status": "NotAuthorized", "code": "102"},  # known to an EMP, refused
}

#: CDR checks (§6 "HBS validation results"): energy above this is probably Wh (kWh).
MAX_CDR_KWH = 1000
#: Tolerance for "SessionEnd in the future" (s): the CPO's clock may be a little ahead.
FUTURE_TOLERANCE_S = 60
#: ConsumedEnergy vs MeterValueEnd - MeterValueStart (kWh): half the last of 3 decimals.
ENERGY_TOLERANCE_KWH = 0.0005
#: Minimum spacing of Progress notifications of one session (s), §5.
PROGRESS_SPACING_S = 300


def status(code, info=None):
    """An OICP StatusCode object with the description of :mod:`firmware.oicp_status` (§9)."""
    try:
        out = {"Code": code, "Description": oicp_status.status_code(code)["Description"]}
    except ValueError:  # a code outside OICP's list (fault injection may ask for one)
        out = {"Code": code}
    if info:
        out["AdditionalInfo"] = info[:1000]
    return out


def ack(result, code, info=None, **ids):
    """An eRoamingAcknowledgement (§4); ``ids``: SessionID/CPO-/EMPPartnerSessionID if set."""
    out = {"Result": result, "StatusCode": status(code, info)}
    out.update({k: v for k, v in ids.items() if v is not None})
    return out


def ident_token(ident):
    """(member name, canonical token) of an Identification: the UID or the EvcoID (§3)."""
    for member in schemas.identification_members(ident):
        value = ident[member]
        if isinstance(value, dict):
            token = value.get("UID") or value.get("EvcoID")
            if isinstance(token, str):
                return member, schemas.canonical_id(token)
    return None, None


def identification_for(token):
    """The Identification object for a card key: an EvcoID becomes RemoteIdentification, a UID
    RFIDMifareFamilyIdentification (§3, §11 example shape); a dict is taken as it is."""
    if isinstance(token, dict):
        return token
    if re.match(schemas.EVCO_ID_RE, token) and not re.match(schemas.UID_RE, token):
        return {"RemoteIdentification": {"EvcoID": token}}
    return {"RFIDMifareFamilyIdentification": {"UID": token.upper()}}


def cert_subject(request):
    """The client certificate's subject as ``{"commonName": ..., "organizationName": ...}``
    (every RDN of the subject), or None without a client certificate."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    return {k: v for rdn in cert.get("subject", ()) for k, v in rdn}


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class Hubject:
    """The simulator's state: cards, sessions it issued, EVSE data, faults, latency, calls.

    ``cards``: UID/EvcoID -> ``{"status", "code", "ProviderID", "stop_ids"}`` (see the package
    docstring); ``log``: a text file for one JSON line per call; ``cpo``: None or
    ``{"url", "cert", "key", "ca"}`` for the calls toward the CPO; ``cpo_timeout``: seconds
    Hubject waits for the CPO's answer (§4, §10: the hard limit is 60 s).
    """

    def __init__(self, cards=None, log=None, cpo=None, cpo_timeout=60.0):
        self.cards = {}
        self.merge_cards(DEFAULT_CARDS if cards is None else cards)
        self.log = log
        self.cpo = cpo or {}
        self.cpo_timeout = cpo_timeout
        self.calls = []
        self.seq = 0
        self.sessions = {}
        self.evse_data = {}  # EvseID -> EvseDataRecord (what PushEvseData stored)
        self.evse_status = {}  # EvseID -> EvseStatus
        self.faults = {}  # operation ("*" = any) -> list of fault dicts with "count"
        self.latency_ms = {}  # operation ("*" = default) -> ms
        self.inflight = {}
        self._client = None

    # -- configuration -----------------------------------------------------------------
    def merge_cards(self, cards):
        """Add/replace cards; keys are canonicalised (upper case, no separators, §12.15)."""
        for key, card in cards.items():
            if not isinstance(card, dict) or card.get("status") not in ("Authorized",
                                                                         "NotAuthorized"):
                raise ValueError("card %r: status must be Authorized or NotAuthorized" % key)
            entry = dict(card)
            entry.setdefault("code", "000" if card["status"] == "Authorized" else "102")
            entry["key"] = key
            self.cards[schemas.canonical_id(key)] = entry

    def add_fault(self, operation, mode, count=1, code=None, seconds=None, http_status=None):
        """The next ``count`` calls of ``operation`` ("*" = any) fail with ``mode``."""
        if mode not in FAULT_MODES:
            raise ValueError("mode must be one of " + ", ".join(FAULT_MODES))
        if operation != "*" and operation not in INBOUND:
            raise ValueError("operation must be one of * " + " ".join(INBOUND))
        if mode == "status_only" and not (isinstance(code, str) and re.match(r"^\d{3}$", code)):
            raise ValueError("status_only needs code, a 3-digit string")
        fault = {"mode": mode, "count": int(count), "code": code,
                 "seconds": None if seconds is None else float(seconds),
                 "http_status": int(http_status or 200)}
        self.faults.setdefault(operation, []).append(fault)
        return fault

    def _take_fault(self, operation):
        for key in (operation, "*"):
            queue = self.faults.get(key)
            while queue:
                fault = queue[0]
                if fault["count"] > 0:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        queue.pop(0)
                    return fault
                queue.pop(0)
        return None

    def reset(self, sessions=False):
        """Forget calls, faults and latency (and the sessions and EVSE data if asked)."""
        self.calls.clear()
        self.faults.clear()
        self.latency_ms.clear()
        if sessions:
            self.sessions.clear()
            self.evse_data.clear()
            self.evse_status.clear()

    # -- records -----------------------------------------------------------------------
    def _record(self, **fields):
        self.seq += 1
        rec = {"seq": self.seq, "time": _now().isoformat(timespec="milliseconds"),
               "direction": "in", "operation": None, "method": "POST", "path": None,
               "body": None, "http_status": None, "response": None, "latency_ms": None,
               "problems": [], "warnings": [], "fault": None, "client_cert_subject": None}
        rec.update(fields)
        self.calls.append(rec)
        if self.log is not None:
            self.log.write(json.dumps({"event": "call", **rec}) + "\n")
            self.log.flush()
        return rec

    # -- the OICP side -----------------------------------------------------------------
    def oicp_app(self):
        """The aiohttp application serving ``/api/oicp`` (§0 endpoint map)."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        for operation, (path, _schema) in INBOUND.items():
            app.router.add_route("*", BASE + path, self._handler(operation))
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    async def _unknown(self, request):
        raw = await request.read()
        body = {"message": "Data not found"}
        self._record(operation=None, method=request.method, path=request.path,
                     body=raw.decode("utf-8", "replace"), http_status=404, response=body,
                     latency_ms=0, problems=["no OICP operation at %s %s [§0]"
                                             % (request.method, request.path)],
                     client_cert_subject=cert_subject(request))
        return web.json_response(body, status=404)

    def _handler(self, operation):
        async def handle(request):
            return await self._handle(operation, request)
        return handle

    async def _handle(self, operation, request):
        started = time.monotonic()
        self.inflight[operation] = self.inflight.get(operation, 0) + 1
        try:
            rec = {"operation": operation, "method": request.method, "path": request.path,
                   "client_cert_subject": cert_subject(request), "problems": [],
                   "warnings": []}
            raw = await request.read()
            if self.inflight[operation] > 1 and operation.startswith("Push"):
                rec["warnings"].append("another %s is still in flight: pushes must be "
                                       "sequential [§7, §12.14]" % operation)
            delay = self.latency_ms.get(operation, self.latency_ms.get("*", 0))
            if delay:
                await asyncio.sleep(delay / 1000.0)
            fault = self._take_fault(operation)
            if fault is not None:
                rec["fault"] = fault["mode"]
            if fault is not None and fault["mode"] == "timeout":
                await asyncio.sleep(fault["seconds"] or 65.0)  # then carries on, late (§10)
            elif fault is not None:
                rec["body"] = raw.decode("utf-8", "replace")
                return self._fault_response(fault, rec, started)
            try:
                http_status, answer = self._process(operation, request, raw, rec)
            except Exception as exc:  # a simulator bug: recorded and answered, not hidden
                rec["problems"].append("simulator internal error: %s: %s"
                                       % (type(exc).__name__, exc))
                http_status, answer = 500, {"StatusCode": status("001")}
            rec["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
            self._record(http_status=http_status, response=answer, **rec)
            return web.json_response(answer, status=http_status)
        finally:
            self.inflight[operation] -= 1

    def _fault_response(self, fault, rec, started):
        mode = fault["mode"]
        text, ctype, http_status, headers = None, "application/json", 200, {}
        if mode == "http_500":
            http_status, body = 500, {"StatusCode": status("001")}  # §9 observed
        elif mode == "http_401":
            http_status, body = 401, {"StatusCode": status("017")}
        elif mode == "http_404":
            http_status, body = 404, {"StatusCode": status("300")}
        elif mode == "http_403":  # §9: an HTML page from Hubject's firewall
            http_status, body, ctype = 403, None, "text/html"
            text = "<html><body><h1>403 Forbidden</h1></body></html>"
        elif mode == "http_429":  # Acceptable Use Policy limits (issue 12)
            http_status, body, ctype = 429, None, "text/plain"
            text = "Too Many Requests"
            if fault.get("seconds"):
                headers["Retry-After"] = str(int(fault["seconds"]))
        elif mode == "status_only":  # §1: a body with only a StatusCode
            http_status, body = fault["http_status"], {"StatusCode": status(fault["code"])}
        else:  # malformed
            body, text = None, '{"AuthorizationStatus": "Authorized", "StatusCode": {"Co'
        if body is not None:
            text = json.dumps(body)
        rec["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        self._record(http_status=http_status, response=body if body is not None else text,
                     **rec)
        return web.Response(text=text, status=http_status, content_type=ctype,
                            headers=headers)

    def _process(self, operation, request, raw, rec):
        """Parse, authenticate, validate and answer one inbound call -> (http status, body)."""
        if request.method != "POST":
            rec["body"] = raw.decode("utf-8", "replace")
            rec["problems"].append("method %s: every OICP operation is a POST [§0]"
                                   % request.method)
            return 405, {"message": "Method not allowed"}
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            rec["body"] = raw.decode("utf-8", "replace")
            rec["problems"].append("(body): not JSON: %s [§10]" % exc)
            return 400, self._fault_body(rec["problems"])
        rec["body"] = body
        path_operator = request.match_info.get("operatorID")
        operator = path_operator
        if operator is None and isinstance(body, dict) and isinstance(body.get("OperatorID"),
                                                                      str):
            operator = body["OperatorID"]  # notifications: no operatorID in the path (§12.8)
        subject = rec["client_cert_subject"]
        if subject is not None and operator is not None:
            names = [subject.get("commonName"), subject.get("organizationName")]
            if schemas.canonical_id(operator) not in [schemas.canonical_id(n) for n in names
                                                      if n]:
                rec["problems"].append("OperatorID %r does not match the client certificate "
                                       "(CN %r, O %r) [§1, §10]" % (operator, names[0],
                                                                    names[1]))
                return 401, {"StatusCode": status("017", "OperatorID does not match the "
                                                  "client certificate")}
        schema = INBOUND[operation][1]
        found = schemas.problems(schema, body, path_operator_id=path_operator)
        if found:
            rec["problems"].extend(found)
            return 400, self._fault_body(found)
        self._warn_times(body, rec)
        return getattr(self, "_op_" + operation)(body, path_operator, rec)

    @staticmethod
    def _fault_body(found):
        """Hubject's FaultBody for a validation error (§9) plus StatusCode 022."""
        return {"message": "Validation error", "extendedInfo": None,
                "validationErrors": [{"fieldReference": p.split(":", 1)[0],
                                      "errorMessage": p.split(":", 1)[-1].strip()}
                                     for p in found],
                "StatusCode": status("022", "; ".join(found))}

    @staticmethod
    def _warn_times(body, rec):
        for key, value in body.items():
            if isinstance(value, str) and schemas.parse_time(value) is not None \
                    and value.endswith("Z"):
                rec["warnings"].append("%s: UTC 'Z'; send the charge point's local offset "
                                       "[§3, §12.13]" % key)

    # -- operations (CPO -> Hubject) ---------------------------------------------------
    def _op_AuthorizeStart(self, body, path_operator, rec):
        """§1: look the medium up in the EMP cards; Authorized -> a new SessionID (UUID v4,
        SessionIDType §3) and the session kept; else NotAuthorized without SessionID."""
        member, token = ident_token(body["Identification"])
        base = {k: body[k] for k in ("CPOPartnerSessionID", "EMPPartnerSessionID") if k in body}
        if "SessionID" in body:
            rec["warnings"].append("SessionID sent in AuthorizeStart: Hubject generates it "
                                   "[§1]")
        card = self.cards.get(token)
        if card is None:
            code = {"RFIDMifareFamilyIdentification": "102", "QRCodeIdentification": "101",
                    "PlugAndChargeIdentification": "105"}.get(member, "106")
            return 200, {**base, "AuthorizationStatus": "NotAuthorized",
                         "StatusCode": status(code)}
        if card["status"] != "Authorized":
            return 200, {**base, "AuthorizationStatus": "NotAuthorized",
                         "StatusCode": status(card["code"])}
        sid = str(uuid.uuid4())
        stop_ids = [identification_for(t) for t in card.get("stop_ids") or []]
        self.sessions[sid] = {
            "SessionID": sid, "origin": "AuthorizeStart", "state": "open",
            "OperatorID": body["OperatorID"], "EvseID": body.get("EvseID"),
            "CPOPartnerSessionID": body.get("CPOPartnerSessionID"),
            "EMPPartnerSessionID": body.get("EMPPartnerSessionID"),
            "ProviderID": card.get("ProviderID"), "Identification": body["Identification"],
            "AuthorizationStopIdentifications": stop_ids, "created": _now().isoformat(),
            "notifications": [], "cdr": None}
        answer = {"SessionID": sid, **base, "AuthorizationStatus": "Authorized",
                  "StatusCode": status(card["code"])}
        if card.get("ProviderID"):
            answer["ProviderID"] = card["ProviderID"]
        if stop_ids:
            answer["AuthorizationStopIdentifications"] = stop_ids
        return 200, answer

    def _open_session(self, sid, operator):
        session = self.sessions.get(sid)
        if session is None or session["state"] != "open" or (
                session.get("OperatorID") and schemas.canonical_id(session["OperatorID"])
                != schemas.canonical_id(operator)):
            return None
        return session

    def _op_AuthorizeStop(self, body, path_operator, rec):
        """§2, §11: the session must be one Hubject issued to this operator and still open
        (else NotAuthorized 400); the starting medium or one of the
        AuthorizationStopIdentifications may stop, or another card of the same EMP."""
        sid = body["SessionID"]
        base = {k: body[k] for k in ("CPOPartnerSessionID", "EMPPartnerSessionID") if k in body}
        session = self._open_session(sid, body["OperatorID"])
        if session is None:
            rec["problems"].append("SessionID %s: not an open session of operator %s [§2]"
                                   % (sid, body["OperatorID"]))
            return 200, {"SessionID": sid, **base, "AuthorizationStatus": "NotAuthorized",
                         "StatusCode": status("400")}
        member, token = ident_token(body["Identification"])
        allowed = {ident_token(session["Identification"])[1]}
        allowed.update(ident_token(i)[1] for i in session["AuthorizationStopIdentifications"])
        card = self.cards.get(token)
        same_emp = (card is not None and card["status"] == "Authorized"
                    and card.get("ProviderID") == session.get("ProviderID"))
        answer = {"SessionID": sid, **base}
        if session.get("ProviderID"):
            answer["ProviderID"] = session["ProviderID"]
        if token in allowed or same_emp:
            return 200, {**answer, "AuthorizationStatus": "Authorized",
                         "StatusCode": status("000")}
        code = {"QRCodeIdentification": "101", "PlugAndChargeIdentification": "105"}.get(
            member, "102")
        return 200, {**answer, "AuthorizationStatus": "NotAuthorized",
                     "StatusCode": status(code)}

    def _op_ChargeDetailRecord(self, body, path_operator, rec):
        """§6: one CDR per SessionID Hubject issued to this operator (else 400, also for a
        duplicate: the session is closed after the first, §10), EvseID under the operator
        (else 018), then the energy/time checks (022). A stored CDR closes the session."""
        sid = body["SessionID"]
        ids = {"SessionID": sid, "CPOPartnerSessionID": body.get("CPOPartnerSessionID"),
               "EMPPartnerSessionID": body.get("EMPPartnerSessionID")}
        session = self.sessions.get(sid)
        if session is None or schemas.canonical_id(session.get("OperatorID") or "") \
                != schemas.canonical_id(path_operator):
            rec["problems"].append("SessionID %s was not issued by Hubject to operator %s: a "
                                   "CDR needs a Hubject SessionID [§6, §8, §11]"
                                   % (sid, path_operator))
            return 200, ack(False, "400", "Session is invalid", **ids)
        if session["cdr"] is not None or session["state"] != "open":
            rec["problems"].append("duplicate CDR for SessionID %s: Hubject accepts one CDR "
                                   "per SessionID [§6, §10]" % sid)
            return 200, ack(False, "400", "Session is invalid", **ids)
        if not schemas.evse_under_operator(body["EvseID"], path_operator):
            rec["problems"].append("EvseID %s is not under operator %s [§6]"
                                   % (body["EvseID"], path_operator))
            return 200, ack(False, "018", **ids)
        found = self._cdr_checks(body)
        if found:
            rec["problems"].extend(found)
            return 200, ack(False, "022", "; ".join(found), **ids)
        end = schemas.parse_time(body["SessionEnd"])
        if (_now() - end).total_seconds() > 10:
            rec["warnings"].append("CDR sent %.0f s after SessionEnd; best practice is about "
                                   "1 s, at most 10 s [§6]" % (_now() - end).total_seconds())
        session["cdr"] = body
        session["state"] = "closed"
        return 200, ack(True, "000", **ids)

    def _cdr_checks(self, body):
        """The 022 checks of §6 "HBS validation results" and §12.12."""
        out = []
        t = {k: schemas.parse_time(body[k]) for k in ("ChargingStart", "ChargingEnd",
                                                      "SessionStart", "SessionEnd")}
        energy = body["ConsumedEnergy"]
        if energy > MAX_CDR_KWH:
            out.append("ConsumedEnergy %s kWh > %d: probably Wh [§6]" % (energy, MAX_CDR_KWH))
        if energy < 0:
            out.append("ConsumedEnergy is negative [§6]")
        if t["ChargingEnd"] < t["ChargingStart"]:
            out.append("ChargingEnd is before ChargingStart [§6]")
        if t["SessionEnd"] < t["SessionStart"]:
            out.append("SessionEnd is before SessionStart [§6]")
        if (t["SessionEnd"] - _now()).total_seconds() > FUTURE_TOLERANCE_S:
            out.append("SessionEnd is in the future [§6]")
        start, end = body.get("MeterValueStart"), body.get("MeterValueEnd")
        if start is not None and end is not None:
            if end < start:
                out.append("MeterValueEnd < MeterValueStart [§6]")
            elif abs((end - start) - energy) > ENERGY_TOLERANCE_KWH:
                out.append("ConsumedEnergy %s != MeterValueEnd - MeterValueStart %.3f [§6, "
                           "§12.12]" % (energy, end - start))
        record = self.evse_data.get(body["EvseID"])
        if record and record.get("CalibrationLawDataAvailability") == "External" \
                and not body.get("SignedMeteringValues"):
            out.append("EVSE with CalibrationLawDataAvailability External needs "
                       "SignedMeteringValues [§6]")
        return out

    def _op_ChargingNotifications(self, body, path_operator, rec):
        """§5: the session must be open and belong to the OperatorID of the body (else 400);
        then the EMP's acknowledgement (000). Progress spacing and ChargingDuration are advice
        (warnings)."""
        sid = body["SessionID"]
        ids = {"SessionID": sid, "CPOPartnerSessionID": body.get("CPOPartnerSessionID"),
               "EMPPartnerSessionID": body.get("EMPPartnerSessionID")}
        session = self._open_session(sid, body["OperatorID"])
        if session is None:
            rec["problems"].append("SessionID %s: not an open session of operator %s [§5]"
                                   % (sid, body["OperatorID"]))
            return 200, ack(False, "400", "Invalid session", **ids)
        if body["Type"] == "Progress":
            occurred = schemas.parse_time(body["EventOccurred"])
            last = session.get("last_progress")
            if last is not None and (occurred - last).total_seconds() < PROGRESS_SPACING_S:
                rec["warnings"].append("Progress notifications less than 5 min apart [§5]")
            session["last_progress"] = occurred
            if "ChargingDuration" in body:
                expect = (occurred - schemas.parse_time(body["ChargingStart"])).total_seconds()
                if abs(body["ChargingDuration"] - expect * 1000) > 1000:
                    rec["warnings"].append("ChargingDuration %s ms != EventOccurred - "
                                           "ChargingStart = %d ms [§5]"
                                           % (body["ChargingDuration"], expect * 1000))
        session["notifications"].append(body["Type"])
        return 200, ack(True, "000", **ids)

    def _push_checks(self, evse_ids, operator, rec):
        seen, dups = set(), []
        for evse in evse_ids:
            if evse in seen:
                dups.append(evse)
            seen.add(evse)
        if dups:
            rec["problems"].append("duplicate EvseIDs in one push: %s [§7]" % ", ".join(dups))
            return ack(False, "018", "Duplicate EVSE IDs: " + ", ".join(dups))
        foreign = [e for e in evse_ids if not schemas.evse_under_operator(e, operator)]
        if foreign:
            rec["problems"].append("EvseIDs not under operator %s: %s [§7]"
                                   % (operator, ", ".join(foreign)))
            return ack(False, "018", ", ".join(foreign))
        return None

    def _op_PushEvseStatus(self, body, path_operator, rec):
        """§7: 018 for duplicate/foreign EvseIDs, 603 for an EVSE never pushed as EVSE data
        (§12.14; AdditionalInfo lists them), else stored by ActionType."""
        data = body["OperatorEvseStatus"]
        records = data["EvseStatusRecord"]
        evse_ids = [r["EvseID"] for r in records]
        refused = self._push_checks(evse_ids, data["OperatorID"], rec)
        if refused:
            return 200, refused
        action = body["ActionType"]
        missing = [e for e in evse_ids if e not in self.evse_data]
        if missing and action != "delete":
            rec["problems"].append("status for EVSEs never pushed as EVSE data: %s [§7, "
                                   "§12.14]" % ", ".join(missing))
            return 200, ack(False, "603", "One or more EVSE data record not found! "
                            + ", ".join(missing))
        if any(r["EvseStatus"] == "EvseNotFound" for r in records):
            rec["warnings"].append("EvseNotFound is a pull answer, not a status to push [§7]")
        if action == "fullLoad":
            for evse in [e for e in self.evse_status
                         if schemas.evse_under_operator(e, data["OperatorID"])]:
                del self.evse_status[evse]
        for r in records:
            if action == "delete":
                self.evse_status.pop(r["EvseID"], None)
            else:
                self.evse_status[r["EvseID"]] = r["EvseStatus"]
        return 200, ack(True, "000")

    def _op_PushEvseData(self, body, path_operator, rec):
        """§7 ActionType semantics for EVSE data: fullLoad replaces the operator's records,
        insert of an existing / update of a missing record fails with 009, delete removes."""
        data = body["OperatorEvseData"]
        records = data["EvseDataRecord"]
        evse_ids = [r["EvseID"] for r in records]
        refused = self._push_checks(evse_ids, data["OperatorID"], rec)
        if refused:
            return 200, refused
        action = body["ActionType"]
        if action == "insert":
            clash = [e for e in evse_ids if e in self.evse_data]
            if clash:
                rec["problems"].append("insert of existing EVSE records: %s [§7]"
                                       % ", ".join(clash))
                return 200, ack(False, "009", ", ".join(clash))
        if action == "update":
            missing = [e for e in evse_ids if e not in self.evse_data]
            if missing:
                rec["problems"].append("update of missing EVSE records: %s [§7]"
                                       % ", ".join(missing))
                return 200, ack(False, "009", ", ".join(missing))
        if action == "fullLoad":
            for evse in [e for e in self.evse_data
                         if schemas.evse_under_operator(e, data["OperatorID"])]:
                del self.evse_data[evse]
        for r in records:
            if action == "delete":
                self.evse_data.pop(r["EvseID"], None)
            else:
                self.evse_data[r["EvseID"]] = r
        return 200, ack(True, "000")

    # -- Hubject -> CPO ----------------------------------------------------------------
    def _client_session(self):
        if self._client is None:
            ctx = None
            if self.cpo.get("url", "").startswith("https:"):
                ctx = pki.client_context(self.cpo.get("ca"), self.cpo.get("cert"),
                                         self.cpo.get("key"))
            self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
        return self._client

    async def close(self):
        if self._client is not None:
            await self._client.close()

    async def _call_cpo(self, operation, provider_id, payload, expect_sid, timeout,
                        warnings=()):
        """POST ``payload`` (dict, or a str sent verbatim) to the CPO, record it, return the
        control API's result dict. Checks the answer: HTTP 200, JSON, the acknowledgement
        schema (§4), Result true <=> 000, a code a CPO may send (§9), SessionID echoed."""
        if not self.cpo.get("url"):
            raise ValueError("no --cpo-url configured")
        path = OUTBOUND[operation].format(providerID=provider_id)
        url = self.cpo["url"].rstrip("/") + path
        data = payload if isinstance(payload, str) else json.dumps(payload)
        rec = {"direction": "out", "operation": operation, "path": url,
               "body": payload, "problems": [], "warnings": list(warnings)}
        started = time.monotonic()
        http_status, answer = None, None
        try:
            async with self._client_session().post(
                    url, data=data.encode("utf-8"),
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                http_status = resp.status
                text = await resp.text()
            try:
                answer = json.loads(text)
            except ValueError as exc:
                answer = text
                rec["problems"].append("answer is not JSON: %s [§4]" % exc)
        except asyncio.TimeoutError:
            rec["problems"].append("no answer within %.1f s (Hubject closes the connection; "
                                   "§4: hard limit 60 s, target < 10 s)" % timeout)
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            rec["problems"].append("connection failed: %s: %s" % (type(exc).__name__, exc))
        latency = round((time.monotonic() - started) * 1000, 1)
        if http_status is not None and http_status != 200:
            rec["problems"].append("HTTP %s: the CPO answers 200 with an "
                                   "eRoamingAcknowledgement [§4]" % http_status)
        if isinstance(answer, dict):
            rec["problems"].extend(self.ack_problems(answer, expect_sid))
        elif answer is not None and not rec["problems"]:
            rec["problems"].append("answer is not a JSON object [§4]")
        if latency > 10000:
            rec["warnings"].append("answer took %.0f ms; target < 10 s [§4]" % latency)
        self._record(http_status=http_status, response=answer, latency_ms=latency, **rec)
        return {"http_status": http_status, "body": answer, "latency_ms": latency,
                "problems": rec["problems"], "forwarded": True}

    @staticmethod
    def ack_problems(answer, expect_sid=None):
        """What is wrong with a CPO's eRoamingAcknowledgement to RemoteStart/Stop (§4, §9)."""
        found = schemas.problems("eRoamingAcknowledgement", answer)
        if found:
            return found
        code = answer["StatusCode"]["Code"]
        if answer["Result"] and code != "000":
            found.append("Result true with StatusCode %s (expected 000) [§4]" % code)
        if not answer["Result"] and code == "000":
            found.append("Result false with StatusCode 000 [§4]")
        if code not in CPO_ACK_CODES:
            found.append("StatusCode %s is not a code a CPO sends in this acknowledgement "
                         "[§4, §9]" % code)
        if expect_sid and answer.get("SessionID") not in (None, expect_sid):
            found.append("SessionID %s does not echo %s [§4]"
                         % (answer.get("SessionID"), expect_sid))
        return found

    def _pre_forward(self, evse_id, sid, ids):
        """§4 steps 3: with EVSE data pushed, an unknown EvseID gets 603 and one not Hubject
        compatible 604 from Hubject itself, without reaching the CPO."""
        if not self.evse_data:
            return None
        record = self.evse_data.get(evse_id)
        if record is None:
            return ack(False, "603", "EvseID not in the pushed EVSE data", SessionID=sid,
                       **ids)
        if record.get("IsHubjectCompatible") is False:
            return ack(False, "604", SessionID=sid, **ids)
        return None

    async def remote_start(self, req):
        """Control ``POST /remote-start``: send eRoamingAuthorizeRemoteStart (§4)."""
        provider = _need(req, "ProviderID")
        timeout = float(req.get("timeout", self.cpo_timeout))
        if "raw" in req:
            result = await self._call_cpo("AuthorizeRemoteStart", provider, req["raw"], None,
                                          timeout)
            return {**result, "SessionID": None}
        evse = _need(req, "EvseID")
        if "Identification" in req:
            ident = req["Identification"]
        elif "UID" in req:
            ident = identification_for(str(req["UID"]).upper())
        else:
            ident = identification_for(_need(req, "EvcoID"))
        sid = req.get("SessionID") or str(uuid.uuid4())
        msg = {"SessionID": sid, "ProviderID": provider, "EvseID": evse, "Identification": ident}
        for key in ("CPOPartnerSessionID", "EMPPartnerSessionID", "PartnerProductID"):
            if req.get(key) is not None:
                msg[key] = req[key]
        ids = {k: msg.get(k) for k in ("CPOPartnerSessionID", "EMPPartnerSessionID")}
        refused = self._pre_forward(evse, sid, ids)
        if refused is not None:
            rec = self._record(direction="out", operation="AuthorizeRemoteStart", body=msg,
                               response=refused, latency_ms=0,
                               warnings=["not forwarded to the CPO [§4]"])
            return {"http_status": None, "body": refused, "latency_ms": 0, "SessionID": sid,
                    "problems": rec["problems"], "forwarded": False}
        member = schemas.identification_members(ident)
        session = {"SessionID": sid, "origin": "RemoteStart", "state": "pending",
                   "OperatorID": None, "EvseID": evse, "ProviderID": provider,
                   "CPOPartnerSessionID": None, "EMPPartnerSessionID": msg.get(
                       "EMPPartnerSessionID"), "Identification": ident,
                   "AuthorizationStopIdentifications": [], "created": _now().isoformat(),
                   "notifications": [], "cdr": None}
        self.sessions[sid] = session
        warnings = [] if member == ["RemoteIdentification"] else [
            "RemoteStart with %s: §3 says only RemoteIdentification" % ", ".join(member)]
        result = await self._call_cpo("AuthorizeRemoteStart", provider, msg, sid, timeout,
                                      warnings)
        answer = result["body"]
        if isinstance(answer, dict) and answer.get("Result") is True:
            session["state"] = "open"
            session["CPOPartnerSessionID"] = answer.get("CPOPartnerSessionID")
            session["OperatorID"] = self._operator_of(evse)
        else:  # §4 BPMN-R: Hubject deletes the session
            del self.sessions[sid]
        return {**result, "SessionID": sid}

    def _operator_of(self, evse_id):
        """The OperatorID an EvseID belongs to (§3: ISO 'CC*OOO' or DIN '+CC*OOO')."""
        match = re.match(r"^(\+?[0-9]{1,3}\*[0-9]{3}|[A-Z]{2}\*?[A-Z0-9]{3})", evse_id)
        return match.group(1) if match else None

    async def remote_stop(self, req):
        """Control ``POST /remote-stop``: send eRoamingAuthorizeRemoteStop (§4). A session
        Hubject does not know or has closed by a CDR gets 400 from Hubject itself (§6), unless
        ``force`` is true (or ``raw`` is given)."""
        provider = _need(req, "ProviderID")
        timeout = float(req.get("timeout", self.cpo_timeout))
        if "raw" in req:
            result = await self._call_cpo("AuthorizeRemoteStop", provider, req["raw"], None,
                                          timeout)
            return {**result, "SessionID": None}
        sid, evse = _need(req, "SessionID"), _need(req, "EvseID")
        session = self.sessions.get(sid)
        msg = {"SessionID": sid, "ProviderID": provider, "EvseID": evse}
        for key in ("CPOPartnerSessionID", "EMPPartnerSessionID"):
            value = req.get(key) or (session or {}).get(key)
            if value is not None:
                msg[key] = value
        if (session is None or session["state"] != "open") and not req.get("force"):
            refused = ack(False, "400", "Session is invalid", SessionID=sid)
            rec = self._record(direction="out", operation="AuthorizeRemoteStop", body=msg,
                               response=refused, latency_ms=0,
                               warnings=["not forwarded to the CPO [§6]"])
            return {"http_status": None, "body": refused, "latency_ms": 0, "SessionID": sid,
                    "problems": rec["problems"], "forwarded": False}
        result = await self._call_cpo("AuthorizeRemoteStop", provider, msg, sid, timeout)
        return {**result, "SessionID": sid}

    # -- the control API ---------------------------------------------------------------
    def control_app(self):
        """The control API (plain HTTP on loopback, JSON); see the package docstring."""
        app = web.Application()
        app.router.add_get("/calls", self._c_calls)
        app.router.add_get("/sessions", self._c_sessions)
        app.router.add_get("/evses", self._c_evses)
        app.router.add_post("/cards", self._c_cards)
        app.router.add_post("/faults", self._c_faults)
        app.router.add_post("/latency", self._c_latency)
        app.router.add_post("/remote-start", self._c_remote_start)
        app.router.add_post("/remote-stop", self._c_remote_stop)
        app.router.add_post("/reset", self._c_reset)
        return app

    async def _c_calls(self, request):
        since = int(request.query.get("since", "0"))
        return web.json_response({"calls": [c for c in self.calls if c["seq"] > since],
                                  "seq": self.seq})

    async def _c_sessions(self, request):
        out = [{k: (v.isoformat() if isinstance(v, datetime.datetime) else v)
                for k, v in s.items()} for s in self.sessions.values()]
        return web.json_response({"sessions": out})

    async def _c_evses(self, request):
        return web.json_response({"data": self.evse_data, "status": self.evse_status})

    async def _c_cards(self, request):
        return await _control(request, lambda req: self._merge(req))

    def _merge(self, req):
        self.merge_cards(req.get("cards", req))
        return {"cards": sorted(c["key"] for c in self.cards.values())}

    async def _c_faults(self, request):
        def add(req):
            fault = self.add_fault(_need(req, "operation"), _need(req, "mode"),
                                   req.get("count", 1), req.get("code"), req.get("seconds"),
                                   req.get("http_status"))
            return {"added": fault, "faults": self.faults}
        return await _control(request, add)

    async def _c_latency(self, request):
        def set_latency(req):
            self.latency_ms[req.get("operation") or "*"] = float(_need(req, "ms"))
            return {"latency_ms": self.latency_ms}
        return await _control(request, set_latency)

    async def _c_remote_start(self, request):
        return await _control(request, self.remote_start)

    async def _c_remote_stop(self, request):
        return await _control(request, self.remote_stop)

    async def _c_reset(self, request):
        def reset(req):
            self.reset(sessions=bool(req.get("sessions")))
            return {"seq": self.seq}
        return await _control(request, reset)


def _need(req, key):
    if req.get(key) in (None, ""):
        raise ValueError("missing " + key)
    return req[key]


async def _control(request, action):
    """Run a control action on the JSON body; bad input -> HTTP 400 ``{"error": ...}``."""
    try:
        raw = await request.read()
        req = json.loads(raw) if raw.strip() else {}
        if not isinstance(req, dict):
            raise ValueError("body must be a JSON object")
        result = action(req)
        if asyncio.iscoroutine(result):
            result = await result
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(result)
