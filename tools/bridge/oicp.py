"""The mapping between the uplink contract (firmware/contract.py) and OICP 2.3 bodies: pure
functions, no I/O, no clock.

Charge point -> Hubject (oicp-2.3-cpo.md §1-3): an `up/authorize` request becomes an
eRoamingAuthorizeStart / eRoamingAuthorizeStop body (`authorize_body`); Hubject's answer, or
the failure to get one, becomes the `down/authorize` answer (`answer_from_response`,
`refusal`). Hubject -> charge point (§4): an eRoamingAuthorizeRemoteStart / RemoteStop body is
checked (`parse_remote`) and becomes a `down/remote_start` / `down/remote_stop` command
(`remote_command`); the charge point's `up/reply` becomes the eRoamingAcknowledgement
(`acknowledgement_from_reply`, `acknowledgement`).

Rules taken from the fact sheet's §12 ("Things a naive implementation gets wrong"): exactly one
Identification member (null members count as absent, §12.10), RFID only as
RFIDMifareFamilyIdentification with an upper-case 8/14/20-hex UID (§12.2-3), QR codes with the
clear-text PIN and no HashedPIN (§12.4), StatusCode.Code a 3-digit string (§12.5), explicit
nulls from Hubject accepted (§12.10), an HTTP 200 that still refuses (§12.11), ProviderIDs
compared in canonical form but echoed verbatim (§12.15).

Error codes the bridge itself chooses (fact sheet §9; firmware/oicp_status.py is the one table):
  017 Unauthorized access   HTTP 401 or 403 without a usable StatusCode in the body, or our
                            TLS verification of Hubject failed (certificate trouble either way)
  300 Partner not found     HTTP 404 without a usable StatusCode (the pairing WWCP observed)
  320 Service not available HTTP 408/429/5xx without a usable StatusCode, a connection failure,
                            or the per-minute budget cannot be had before the deadline
  310 Partner did not respond  no answer from Hubject before our deadline (time-out)
  021 System error          Hubject's answer cannot be used (malformed JSON, a wrong
                            AuthorizationStatus, an Authorized start without a SessionID)
  022 Data error            the charge point's request is unusable (nothing sent to Hubject);
                            a RemoteStart/Stop body that is unusable (nothing sent to any cp)
  501 Communication to EVSE failed  the charge point is offline (last will) or did not reply
  603 Unknown EVSE ID       no retained birth names the EvseID
Whenever Hubject's body carries a valid StatusCode (HTTP 401 with 017, 404 with 300, 500 with
001 ...), Hubject's own code wins over these fallbacks.
"""

from __future__ import annotations

import json
import re

from firmware import contract as C
from firmware import oicp_status as S
from firmware.session import ident_token

# -- identifier rules (fact sheet §3; EvseID as OA has it, upper-cased before use) ---------
UID_RE = re.compile(r"^([0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20})$")
EVCO_RE = re.compile(
    r"^(([A-Za-z]{2}\-?[A-Za-z0-9]{3}\-?C[A-Za-z0-9]{8}\-?[\d|A-Za-z])"
    r"|([A-Za-z]{2}[\*|\-]?[A-Za-z0-9]{3}[\*|\-]?[A-Za-z0-9]{6}[\*|\-]?[\d|X]))$")
EVSE_RE = re.compile(
    r"^(([A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9\*]{1,30})|(\+?[0-9]{1,3}\*[0-9]{3}\*[0-9\*]{1,32}))$")
OPERATOR_RE = re.compile(r"^(([A-Za-z]{2}\*?[A-Za-z0-9]{3})|(\+?[0-9]{1,3}\*[0-9]{3}))$")
PROVIDER_RE = re.compile(r"^([A-Za-z]{2}\-?[A-Za-z0-9]{3}|[A-Za-z]{2}[\*|-]?[A-Za-z0-9]{3})$")
SESSION_RE = re.compile(r"^[A-Za-z0-9]{8}(-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12}$")
PARTNER_SESSION_MAX = 250  # CPO/EMPPartnerSessionID, characters
PIN_MAX = 20
DESCRIPTION_MAX = 200  # StatusCode.Description
ADDITIONAL_INFO_MAX = 1000  # StatusCode.AdditionalInfo

IDENT_MEMBERS = ("RFIDMifareFamilyIdentification", "RFIDIdentification", "QRCodeIdentification",
                 "PlugAndChargeIdentification", "RemoteIdentification")

# operations (the names of the AUP budget and of the log lines)
AUTHORIZE_START = "eRoamingAuthorizeStart"
AUTHORIZE_STOP = "eRoamingAuthorizeStop"
REMOTE_START = "eRoamingAuthorizeRemoteStart"
REMOTE_STOP = "eRoamingAuthorizeRemoteStop"

TYPE_START = "authorize_start"  # firmware.events.MSG_AUTHORIZE_START
TYPE_STOP = "authorize_stop"


class Unusable(ValueError):
    """A message that cannot be used; `code` is the OICP code to answer with (022 unless
    said otherwise), the text says why (it goes into AdditionalInfo and the log)."""

    def __init__(self, reason: str, code: str = S.DATA_ERROR):
        super().__init__(reason)
        self.code = code


# -- small helpers -------------------------------------------------------------------------
def canonical(value: str) -> str:
    """Upper case without `*`, `-` and a leading `+`: DE*ICE, DE-ICE and DEICE compare equal
    (§12.15); only for comparing, never for echoing."""
    return value.upper().replace("*", "").replace("-", "").lstrip("+")


def mask(token: object) -> str | None:
    """A card UID or EvcoID for the log: every character but the last 4 replaced by `*`."""
    if not isinstance(token, str):
        return None
    return "*" * max(0, len(token) - 4) + token[-4:]


def masked_ident(ident: object) -> str | None:
    """`<member>:<masked token>` of an Identification, for the log."""
    if not isinstance(ident, dict):
        return None
    for key in IDENT_MEMBERS:
        v = ident.get(key)
        if isinstance(v, dict):
            return key + ":" + str(mask(v.get("UID") or v.get("EvcoID")))
    return None


def status(code: str, info: str | None = None) -> dict:
    """{"Code", "Description", "AdditionalInfo"?} for a code of firmware/oicp_status.py."""
    sc = S.status_code(code)
    if info:
        sc["AdditionalInfo"] = info[:ADDITIONAL_INFO_MAX]
    return sc


def is_code(value: object) -> bool:
    return isinstance(value, str) and len(value) == 3 and value.isdigit()


def _opt_str(body: dict, key: str, limit: int) -> str | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > limit:
        raise Unusable("{}: need a string of at most {} characters".format(key, limit))
    return v


def evse_under_operator(evse_id: str, operator_id: str) -> bool:
    """True if the EvseID is one of the operator's: canonical EvseID starts with the canonical
    OperatorID (ISO: `DE*SIM*E1` under `DE*SIM`; DIN: `+49*810*1` under `+49*810`)."""
    return canonical(evse_id).startswith(canonical(operator_id))


def check_evse(evse_id: object, operator_id: str) -> str:
    """The EvseID in upper case (Hubject upper-cases them, §3); Unusable if malformed or not
    under `operator_id`."""
    if not isinstance(evse_id, str) or not EVSE_RE.match(evse_id.upper()):
        raise Unusable("EvseID {!r}: not an EvseIDType".format(evse_id)[:200])
    up = evse_id.upper()
    if not evse_under_operator(up, operator_id):
        raise Unusable("EvseID {} is not under OperatorID {}".format(up, operator_id))
    return up


def check_session(value: object, what: str = "SessionID") -> str:
    if not isinstance(value, str) or not SESSION_RE.match(value):
        raise Unusable("{} {!r}: not a SessionIDType".format(what, value)[:200])
    return value


def identification(ident: object, *, remote: bool = False) -> dict:
    """The one Identification member, checked and normalised, as a new object.

    Null members are absent (§12.10); more or less than one is Unusable (§12.1). For
    authorization (remote=False): RFIDIdentification becomes RFIDMifareFamilyIdentification
    with its UID (§12.2), UIDs are upper-cased (§3), QR needs the PIN and no HashedPIN
    (§12.4). For a RemoteStart (remote=True) any member the charge point understands
    (firmware.session.ident_token) is passed on: RemoteIdentification per the spec, an RFID
    UID for the OCPI 15-minute rule.
    """
    if not isinstance(ident, dict):
        raise Unusable("Identification: need an object")
    present = [(k, v) for k, v in ident.items() if v is not None]
    if len(present) != 1:
        raise Unusable("Identification: exactly one member, got {}".format(
            ", ".join(k for k, _ in present) or "none")[:200])
    key, inner = present[0]
    if key not in IDENT_MEMBERS or not isinstance(inner, dict):
        raise Unusable("Identification: unknown member {!r}".format(key)[:200])
    if key in ("RFIDMifareFamilyIdentification", "RFIDIdentification"):
        uid = inner.get("UID")
        if not isinstance(uid, str) or not UID_RE.match(uid.upper()):
            raise Unusable("UID: must be 8, 14 or 20 hex digits")
        return {"RFIDMifareFamilyIdentification": {"UID": uid.upper()}}
    evco = inner.get("EvcoID")
    if not isinstance(evco, str) or not EVCO_RE.match(evco):
        raise Unusable(key + ": EvcoID is not an EvcoIDType")
    if key == "QRCodeIdentification":
        if remote:
            raise Unusable("QRCodeIdentification: not usable in a remote start")
        pin = inner.get("PIN")
        if inner.get("HashedPIN") is not None or not isinstance(pin, str) \
                or not 0 < len(pin) <= PIN_MAX:
            raise Unusable("QRCodeIdentification: the clear-text PIN and no HashedPIN")
        return {key: {"EvcoID": evco, "PIN": pin}}
    return {key: {"EvcoID": evco}}


# -- charge point -> Hubject ---------------------------------------------------------------
def parse_request(payload: bytes) -> dict:
    """An `up/authorize` payload as a dict with a string `id` and a known `type`; Unusable
    otherwise (with no `id` nobody can be answered: the caller logs and drops it)."""
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeError):
        raise Unusable("up/authorize: not JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("id"), str):
        raise Unusable("up/authorize: need an object with a string 'id'")
    if msg.get("type") not in (TYPE_START, TYPE_STOP):
        raise Unusable("up/authorize: type {!r}".format(msg.get("type"))[:200])
    return msg


def authorize_body(msg: dict, operator_id: str) -> tuple[str, dict]:
    """(operation, eRoamingAuthorizeStart|Stop body) for an `up/authorize` message (§1, §2).

    OperatorID from the bridge's flag; EvseID must lie under it; exactly one Identification;
    CPOPartnerSessionID = the charge point's local session id (post-authorization and stop);
    SessionID only on stop (mandatory there). No PartnerProductID (§2: not in the stop schema;
    the charge point does not choose a product)."""
    op = AUTHORIZE_STOP if msg.get("type") == TYPE_STOP else AUTHORIZE_START
    body: dict = {}
    if op == AUTHORIZE_STOP:
        body["SessionID"] = check_session(msg.get("SessionID"))
    cpo_sid = _opt_str(msg, "CPOPartnerSessionID", PARTNER_SESSION_MAX)
    if cpo_sid is not None:
        body["CPOPartnerSessionID"] = cpo_sid
    body["OperatorID"] = operator_id
    body["EvseID"] = check_evse(msg.get("EvseID"), operator_id)
    body["Identification"] = identification(msg.get("Identification"))
    return op, body


def authorize_path(operation: str, operator_id: str) -> str:
    """The path after the base URL (`.../api/oicp`), §0. The OperatorID goes raw, `*`
    included (Hubject compares it with the certificate)."""
    verb = "stop" if operation == AUTHORIZE_STOP else "start"
    return "/charging/v21/operators/{}/authorize/{}".format(operator_id, verb)


def refusal(msg_id: str, code: str, info: str | None = None) -> dict:
    """A `down/authorize` NotAuthorized answer with the bridge's own code, marked `NoDecision`
    (firmware/contract.py): Hubject did not decide about the card, so a charge point that is
    post-authorizing a running session asks again later instead of stopping it."""
    return {"id": msg_id, "AuthorizationStatus": S.NOT_AUTHORIZED,
            "StatusCode": status(code, info), "NoDecision": True}


def _stop_identifications(value: object) -> list:
    """The AuthorizationStopIdentifications the charge point can use (§11): each entry's
    single non-null member, UIDs upper-cased; entries it could not read are dropped (fewer
    tokens may stop the session -- never more), so its parser never refuses the answer."""
    out = []
    if not isinstance(value, list):
        return out
    for entry in value:
        try:
            ident = identification(entry, remote=True)
        except Unusable:
            continue
        if ident_token(ident) is not None:
            out.append(ident)
    return out


def _hubject_status(body: object) -> dict | None:
    """Hubject's StatusCode object if it is usable, trimmed to the schema's limits."""
    sc = body.get("StatusCode") if isinstance(body, dict) else None
    if not isinstance(sc, dict) or not is_code(sc.get("Code")):
        return None
    return _trimmed(sc)


def _trimmed(sc: dict) -> dict:
    """A StatusCode with a valid Code, cut to the schema's limits; a missing Description is
    taken from the table (or "Unknown status code")."""
    code = sc["Code"]
    desc = sc.get("Description")
    if not isinstance(desc, str):
        try:
            desc = S.status_code(code)["Description"]
        except ValueError:
            desc = S.UNKNOWN
    out = {"Code": code, "Description": desc[:DESCRIPTION_MAX]}
    info = sc.get("AdditionalInfo")
    if isinstance(info, str) and info:
        out["AdditionalInfo"] = info[:ADDITIONAL_INFO_MAX]
    return out


def answer_from_response(msg_id: str, operation: str, body: object) -> dict:
    """The `down/authorize` answer for Hubject's HTTP 200 body (already JSON-decoded).

    eRoamingAuthorizationStart/Stop with AuthorizationStatus -> passed on (nulls dropped);
    a body with only a StatusCode -> NotAuthorized with that code (§1); anything else, or an
    Authorized start without a valid SessionID (no CDR could ever be sent) -> NotAuthorized
    021. Never raises."""
    sc = _hubject_status(body)
    if sc is None:
        return refusal(msg_id, S.SYSTEM_ERROR, "Hubject's answer has no usable StatusCode")
    assert isinstance(body, dict)
    auth = body.get("AuthorizationStatus")
    if auth is None:
        if sc["Code"] == S.SUCCESS:  # "success" without a decision is no authorization
            return refusal(msg_id, S.SYSTEM_ERROR, "StatusCode 000 without AuthorizationStatus")
        # an error answer (§1: only a StatusCode) is no decision about the card
        return {"id": msg_id, "AuthorizationStatus": S.NOT_AUTHORIZED, "StatusCode": sc,
                "NoDecision": True}
    if auth not in (S.AUTHORIZED, S.NOT_AUTHORIZED):
        return refusal(msg_id, S.SYSTEM_ERROR, "AuthorizationStatus {!r}".format(auth)[:200])
    out = {"id": msg_id, "AuthorizationStatus": auth, "StatusCode": sc}
    sid = body.get("SessionID")
    if isinstance(sid, str) and SESSION_RE.match(sid):
        out["SessionID"] = sid
    elif auth == S.AUTHORIZED and operation == AUTHORIZE_START:
        return refusal(msg_id, S.SYSTEM_ERROR, "Authorized without a valid SessionID")
    provider = body.get("ProviderID")
    if isinstance(provider, str) and PROVIDER_RE.match(provider):
        out["ProviderID"] = provider
    if auth == S.AUTHORIZED and operation == AUTHORIZE_START:
        stops = _stop_identifications(body.get("AuthorizationStopIdentifications"))
        if stops:
            out["AuthorizationStopIdentifications"] = stops
    return fit_down(out)


def failure_code(http_status: int | None, body: object) -> tuple[str, str]:
    """(code, AdditionalInfo) for an HTTP answer that is not a usable 200: Hubject's own
    StatusCode when the body has one, else the fallback of the table in this docstring.
    `http_status` None means no HTTP answer at all (connection failed)."""
    sc = _hubject_status(body)
    if sc is not None and sc["Code"] != S.SUCCESS:
        return sc["Code"], "HTTP {}: {}".format(http_status, sc.get("Description", ""))
    if http_status is None:
        return S.SERVICE_NOT_AVAILABLE, "no connection to Hubject"
    if http_status in (401, 403):
        return S.UNAUTHORIZED_ACCESS, "HTTP {}".format(http_status)
    if http_status == 404:
        return S.PARTNER_NOT_FOUND, "HTTP 404"
    if http_status in (408, 429) or http_status >= 500:
        return S.SERVICE_NOT_AVAILABLE, "HTTP {}".format(http_status)
    if http_status == 400:
        return S.DATA_ERROR, "HTTP 400"
    return S.SYSTEM_ERROR, "HTTP {}".format(http_status)


def encode_down(obj: dict) -> bytes:
    """Compact JSON bytes for a down topic; ValueError above contract.MAX_DOWN."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    if len(data) > C.MAX_DOWN:
        raise ValueError("down message of {} bytes > MAX_DOWN {}".format(len(data), C.MAX_DOWN))
    return data


def fit_down(answer: dict) -> dict:
    """The answer trimmed to MAX_DOWN: AdditionalInfo first, then stop identifications from
    the end (fewer may stop the session, never more)."""
    while True:
        try:
            encode_down(answer)
            return answer
        except ValueError:
            sc = answer["StatusCode"]
            stops = answer.get("AuthorizationStopIdentifications")
            if "AdditionalInfo" in sc:
                del sc["AdditionalInfo"]
            elif stops:
                stops.pop()
                if not stops:
                    del answer["AuthorizationStopIdentifications"]
            else:
                raise


# -- Hubject -> charge point ---------------------------------------------------------------
def parse_remote(operation: str, path_provider: str, body: object, operator_id: str) -> dict:
    """The checked fields of an eRoamingAuthorizeRemoteStart/Stop body (§4); Unusable (022)
    naming the first problem. Checks: a JSON object; ProviderID valid and equal to the path's
    (canonical form, §12.15); EvseID an EvseIDType under our OperatorID; SessionID a
    SessionIDType (mandatory when forwarded, even if the IG shows null); partner session ids
    strings <= 250; for a start exactly one usable Identification."""
    if not isinstance(body, dict):
        raise Unusable("body: need a JSON object")
    provider = body.get("ProviderID")
    if not isinstance(provider, str) or not PROVIDER_RE.match(provider):
        raise Unusable("ProviderID {!r}: not a ProviderIDType".format(provider)[:200])
    if canonical(provider) != canonical(path_provider):
        raise Unusable("ProviderID {} differs from the path's {}".format(
            provider, path_provider)[:200])
    out = {"ProviderID": provider,
           "SessionID": check_session(body.get("SessionID")),
           "EvseID": check_evse(body.get("EvseID"), operator_id)}
    for key in ("CPOPartnerSessionID", "EMPPartnerSessionID"):
        v = _opt_str(body, key, PARTNER_SESSION_MAX)
        if v is not None:
            out[key] = v
    if operation == REMOTE_START:
        out["Identification"] = identification(body.get("Identification"), remote=True)
    return out


def remote_command(operation: str, cmd_id: str, req: dict) -> dict:
    """The `down/remote_start` / `down/remote_stop` body for a checked request (contract)."""
    cmd = {"id": cmd_id, "SessionID": req["SessionID"], "EvseID": req["EvseID"]}
    if operation == REMOTE_START:
        cmd["Identification"] = req["Identification"]
        cmd["ProviderID"] = req["ProviderID"]
        for key in ("CPOPartnerSessionID", "EMPPartnerSessionID"):
            if key in req:
                cmd[key] = req[key]
    return cmd


def acknowledgement(result: bool, code: str, req: dict | None = None,
                    info: str | None = None, sc: dict | None = None) -> dict:
    """eRoamingAcknowledgement (§4): Result, StatusCode, and the request's SessionID,
    CPOPartnerSessionID and EMPPartnerSessionID echoed verbatim when it had them."""
    ack = {"Result": result, "StatusCode": sc if sc is not None else status(code, info)}
    for key in ("SessionID", "CPOPartnerSessionID", "EMPPartnerSessionID"):
        if req and req.get(key) is not None:
            ack[key] = req[key]
    return ack


def acknowledgement_from_reply(reply: object, req: dict) -> dict:
    """The eRoamingAcknowledgement for the charge point's `up/reply`: its Result and code
    (000, 602, 601, 700, 603, 510, 022, 400 ...); 021 if the reply is unusable or claims
    success with Result false (or the reverse)."""
    if not isinstance(reply, dict) or not isinstance(reply.get("Result"), bool):
        return acknowledgement(False, S.SYSTEM_ERROR, req, "unusable reply from the EVSE")
    sc = reply.get("StatusCode")
    code = sc.get("Code") if isinstance(sc, dict) else None
    if not is_code(code) or (code == S.SUCCESS) != reply["Result"]:
        return acknowledgement(False, S.SYSTEM_ERROR, req, "unusable reply from the EVSE")
    assert isinstance(sc, dict)
    return acknowledgement(reply["Result"], code, req, sc=_trimmed(sc))


def parse_reply(payload: bytes) -> dict | None:
    """An `up/reply` payload with a string id, or None."""
    try:
        reply = json.loads(payload)
    except (ValueError, UnicodeError):
        return None
    if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
        return None
    return reply
