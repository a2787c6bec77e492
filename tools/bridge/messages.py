"""Durable uplink messages (firmware/contract.py: up/cdr, up/notification, status/<n>) -> OICP
2.3 bodies: pure functions, no I/O; the clock comes in as an argument.

The charge point's records (firmware/session.py) carry OICP field names already; what changes
on the way to Hubject (fact sheet oicp-2.3-cpo.md):
- timestamps: the firmware writes UTC (`2026-11-21T13:38:00.000Z`); Hubject stores and
  forwards them verbatim and a CPO must send the station's local offset (§3 "Date/time
  format", §6 "Timing", §12.13), so each is converted to the charge point's zone (site file
  `time_zone`, an IANA name, or the Address's `TimeZone` "UTC+01:00"; UTC without either) and
  written `YYYY-MM-DDThh:mm:ss+hh:mm`;
- kWh values: JSON numbers with at most 3 decimals (§6 "Units and decimals", §12.12);
- `OperatorID` added to notifications (§5, §12.8: not in their path); members that OICP does
  not have (`type`, `id`, `ProviderID`) dropped, explicit nulls dropped, `MeteringCheck` moved
  into `CalibrationLawVerificationInfo` (§6: Hubject accepts it there);
- Identification: exactly one member (§12.1), RFID as RFIDMifareFamilyIdentification with the
  upper-case UID (§12.2-3), a QR code's EvcoID without its PIN (a CDR is no authorization).

A session is Hubject's when its SessionID is a SessionIDType different from its
CPOPartnerSessionID (the firmware uses its local id for both when Hubject issued none: local
list, free vend, an offline start never post-authorized; firmware/session.py).

Pre-send checks (§6 "HBS validation results": Hubject would refuse with 022, so the message is
not sent but dead-lettered with the reason): a CDR whose SessionEnd or ChargingEnd lies more than
FUTURE_TOLERANCE_S in the future (the charge point's clock is wrong), ConsumedEnergy above
MAX_KWH (probably Wh), an unknown (null) mandatory time (the charge point had no clock).
"""

from __future__ import annotations

import datetime
import math
import re
import zoneinfo

from firmware import oicp_status as S
from tools.bridge import oicp

MAX_KWH = 1000  # ConsumedEnergy above this is refused by Hubject as "probably Wh" (§6), kWh
FUTURE_TOLERANCE_S = 60  # a CDR end later than now + this is "in the future" (§6), seconds
NOTIFICATION_TYPES = ("Start", "Progress", "End", "Error")
ERROR_TYPES = ("ConnectorError", "CriticalError")  # §5, §12.7 (no space)
PUSH_STATUSES = ("Available", "Reserved", "Occupied", "OutOfService", "Unknown")  # §7
OFFSET_RE = re.compile(r"^UTC([+-])([0-9]{2}):([0-9]{2})$")

CDR = "eRoamingChargeDetailRecord"
NOTIFICATIONS = "eRoamingChargingNotifications"
PUSH_STATUS = "eRoamingPushEvseStatus"
PUSH_DATA = "eRoamingPushEvseData"

_TIMES = ("ChargingStart", "ChargingEnd", "SessionStart", "SessionEnd", "EventOccurred",
          "PenaltyTimeStart")
_KWH = ("MeterValueStart", "MeterValueEnd", "ConsumedEnergy", "ConsumedEnergyProgress")
_CDR_REQUIRED_TIMES = ("ChargingStart", "ChargingEnd", "SessionStart", "SessionEnd")
_NOTIFICATION_FIELDS = {  # §5 table: the members each Type may carry besides the common ones
    "Start": ("ChargingStart", "SessionStart", "MeterValueStart", "PartnerProductID"),
    "Progress": ("ChargingStart", "EventOccurred", "ChargingDuration", "SessionStart",
                 "ConsumedEnergyProgress", "MeterValueStart", "MeterValueInBetween",
                 "PartnerProductID"),
    "End": ("ChargingStart", "ChargingEnd", "SessionStart", "SessionEnd", "ConsumedEnergy",
            "MeterValueStart", "MeterValueEnd", "MeterValueInBetween", "PartnerProductID",
            "PenaltyTimeStart"),
    "Error": ("ErrorType", "ErrorAdditionalInfo"),
}
_NOTIFICATION_REQUIRED = {"Start": ("ChargingStart",), "Progress": ("ChargingStart",
                                                                    "EventOccurred"),
                          "End": ("ChargingEnd",), "Error": ("ErrorType",)}


# -- paths (§0) ----------------------------------------------------------------------------
def cdr_path(operator_id: str) -> str:
    return "/cdrmgmt/v22/operators/{}/charge-detail-record".format(operator_id)


NOTIFICATION_PATH = "/notificationmgmt/v11/charging-notifications"  # no operatorID (§12.8)


def status_path(operator_id: str) -> str:
    return "/evsepush/v21/operators/{}/status-records".format(operator_id)


def data_path(operator_id: str) -> str:
    return "/evsepush/v23/operators/{}/data-records".format(operator_id)


# -- time zones and timestamps ---------------------------------------------------------------
def parse_zone(text: str) -> datetime.tzinfo:
    """An IANA zone name (`Europe/Berlin`, summer time included) or OICP's fixed
    `UTC+01:00` (AddressIso19773 TimeZone); ValueError otherwise."""
    m = OFFSET_RE.match(text)
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3))
        if minutes > 14 * 60:
            raise ValueError("{!r}: offset beyond 14 hours".format(text))
        return datetime.timezone(datetime.timedelta(minutes=-minutes if m.group(1) == "-"
                                                     else minutes))
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError("{!r}: not an IANA time zone nor UTC+hh:mm ({})".format(
            text, type(e).__name__)) from None


def parse_time(value: object, field: str) -> datetime.datetime:
    """An aware datetime from an ISO 8601 string with `Z` or an offset; Unusable (022)."""
    if not isinstance(value, str):
        raise oicp.Unusable("{}: unknown (the charge point had no clock?) or not a "
                            "string".format(field))
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise oicp.Unusable("{}: {!r} is not an ISO 8601 date-time".format(
            field, value[:40])) from None
    if t.tzinfo is None:
        raise oicp.Unusable("{}: {!r} has no offset".format(field, value[:40]))
    return t


def local_time(t: datetime.datetime, zone: datetime.tzinfo) -> str:
    """`YYYY-MM-DDThh:mm:ss+hh:mm` in `zone` (§3: the station's local offset, never Z);
    milliseconds only when there are any."""
    local = t.astimezone(zone)
    spec = "milliseconds" if local.microsecond else "seconds"
    return local.isoformat(timespec=spec)


def kwh(value: object, field: str) -> float | int:
    """A kWh number rounded to 3 decimals (§6 Decimal(,3)); Unusable if not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise oicp.Unusable("{}: {!r} is not a number of kWh".format(field, value))
    return round(value, 3)


# -- shared pieces ---------------------------------------------------------------------------
def is_hubject_session(msg: dict) -> bool:
    """True if the message belongs to a session Hubject issued (module docstring)."""
    sid = msg.get("SessionID")
    return isinstance(sid, str) and bool(oicp.SESSION_RE.match(sid)) \
        and sid != msg.get("CPOPartnerSessionID")


def session_identification(ident: object) -> dict:
    """The one Identification member for a CDR or notification (module docstring)."""
    if isinstance(ident, dict):
        qr = ident.get("QRCodeIdentification")
        if isinstance(qr, dict) and len([v for v in ident.values() if v is not None]) == 1:
            evco = qr.get("EvcoID")
            if not isinstance(evco, str) or not oicp.EVCO_RE.match(evco):
                raise oicp.Unusable("Identification: EvcoID is not an EvcoIDType")
            return {"QRCodeIdentification": {"EvcoID": evco}}
    return oicp.identification(ident, remote=True)


def _common(msg: dict, operator_id: str) -> dict:
    body: dict = {"SessionID": oicp.check_session(msg.get("SessionID"))}
    for key in ("CPOPartnerSessionID", "EMPPartnerSessionID"):
        v = msg.get(key)
        if v is not None:
            if not isinstance(v, str) or len(v) > oicp.PARTNER_SESSION_MAX:
                raise oicp.Unusable("{}: need a string of at most {} characters".format(
                    key, oicp.PARTNER_SESSION_MAX))
            body[key] = v
    pp = msg.get("PartnerProductID")
    if isinstance(pp, str) and 0 < len(pp) <= 50:
        body["PartnerProductID"] = pp
    body["EvseID"] = oicp.check_evse(msg.get("EvseID"), operator_id)
    return body


def _meter_between(value: object) -> dict | None:
    if not isinstance(value, dict) or not isinstance(value.get("meterValues"), list):
        return None
    return {"meterValues": [kwh(v, "MeterValueInBetween") for v in value["meterValues"]]}


def _copy_fields(msg: dict, body: dict, fields, zone) -> None:
    """Copy the non-null `fields` of msg into body, converting times and kWh."""
    for key in fields:
        v = msg.get(key)
        if v is None:
            continue
        if key in _TIMES:
            body[key] = local_time(parse_time(v, key), zone)
        elif key in _KWH:
            body[key] = kwh(v, key)
        elif key == "MeterValueInBetween":
            mb = _meter_between(v)
            if mb is not None:
                body[key] = mb
        else:
            body[key] = v


# -- CDR (§6) ------------------------------------------------------------------------------
def cdr_body(msg: dict, operator_id: str, zone: datetime.tzinfo,
             now: datetime.datetime) -> dict:
    """The eRoamingChargeDetailRecord for the charge point's CDR `msg` (a Hubject session),
    every mandatory 2.3 member: SessionID (Hubject's), EvseID, Identification, ChargingStart,
    ChargingEnd, SessionStart, SessionEnd, ConsumedEnergy; CPOPartnerSessionID = the local id.
    Unusable (022, not to be sent) for a bad member or a failed pre-send check (module
    docstring); `now` is an aware datetime."""
    body = _common(msg, operator_id)
    body["Identification"] = session_identification(msg.get("Identification"))
    for key in _CDR_REQUIRED_TIMES:
        if msg.get(key) is None:
            raise oicp.Unusable("{}: unknown (the charge point had no clock when it "
                                "happened)".format(key))
    if msg.get("ConsumedEnergy") is None:
        raise oicp.Unusable("ConsumedEnergy: missing")
    _copy_fields(msg, body, _CDR_REQUIRED_TIMES + ("MeterValueStart", "MeterValueEnd",
                                                   "MeterValueInBetween", "ConsumedEnergy"),
                 zone)
    if msg.get("MeteringCheck") in ("Passed", "Failed", "Not Apply"):
        body["CalibrationLawVerificationInfo"] = {"MeteringCheck": msg["MeteringCheck"]}
    check_cdr(body, now)
    return body


def check_cdr(body: dict, now: datetime.datetime) -> None:
    """The pre-send checks (module docstring); Unusable with the reason."""
    if body["ConsumedEnergy"] > MAX_KWH:
        raise oicp.Unusable("ConsumedEnergy {} kWh > {} kWh: probably Wh (Hubject refuses it, "
                            "§6)".format(body["ConsumedEnergy"], MAX_KWH))
    limit = now + datetime.timedelta(seconds=FUTURE_TOLERANCE_S)
    for key in ("SessionEnd", "ChargingEnd"):
        t = datetime.datetime.fromisoformat(body[key])
        if t > limit:
            raise oicp.Unusable("{} {} is {:.0f} s in the future: the charge point's clock is "
                                "wrong (Hubject refuses it, §6)".format(
                                    key, body[key], (t - now).total_seconds()))


# -- notifications (§5) --------------------------------------------------------------------
def notification_body(msg: dict, operator_id: str, zone: datetime.tzinfo) -> dict:
    """The eRoamingChargingNotification of the charge point's notification `msg` (Type Start,
    Progress, End or Error); Unusable for a bad member or a missing mandatory one."""
    kind = msg.get("Type")
    if kind not in NOTIFICATION_TYPES:
        raise oicp.Unusable("Type {!r}: not Start, Progress, End or Error".format(kind))
    body: dict = {"Type": kind}
    body.update(_common(msg, operator_id))
    body["OperatorID"] = operator_id
    try:
        body["Identification"] = session_identification(msg.get("Identification"))
    except oicp.Unusable:
        pass  # optional in notifications (§5): left out rather than the message lost
    for key in _NOTIFICATION_REQUIRED[kind]:
        if msg.get(key) is None:
            raise oicp.Unusable("{}: mandatory in a {} notification (§5)".format(key, kind))
    _copy_fields(msg, body, _NOTIFICATION_FIELDS[kind], zone)
    if kind == "Error":
        if body["ErrorType"] not in ERROR_TYPES:
            raise oicp.Unusable("ErrorType {!r}: ConnectorError or CriticalError".format(
                body["ErrorType"]))
        info = body.get("ErrorAdditionalInfo")
        if info is not None:
            body["ErrorAdditionalInfo"] = str(info)[:250]
    if kind == "Progress":
        d = body.get("ChargingDuration")
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 0):
            del body["ChargingDuration"]
        if "ChargingDuration" not in body and "ConsumedEnergyProgress" not in body:
            raise oicp.Unusable("Progress: needs ChargingDuration or ConsumedEnergyProgress")
    return body


# -- EVSE status (§7) ----------------------------------------------------------------------
def status_record(msg: dict, operator_id: str) -> dict:
    """{"EvseID", "EvseStatus"} of the charge point's evse_status `msg`; Unusable if bad."""
    evse = oicp.check_evse(msg.get("EvseID"), operator_id)
    st = msg.get("EvseStatus")
    if st not in PUSH_STATUSES:
        raise oicp.Unusable("EvseStatus {!r}: not one of {}".format(st, ", ".join(
            PUSH_STATUSES)))
    return {"EvseID": evse, "EvseStatus": st}


def push_status_body(operator_id: str, records: list[dict], action: str = "update") -> dict:
    """eRoamingPushEvseStatus (§7): one record per EvseID (duplicates give 018)."""
    return {"ActionType": action, "OperatorEvseStatus": {
        "OperatorID": operator_id, "EvseStatusRecord": records}}


# -- Hubject's acknowledgement ---------------------------------------------------------------
def acknowledgement_code(body: object) -> tuple[bool | None, dict | None]:
    """(Result, StatusCode) of an eRoamingAcknowledgement; (None, StatusCode or None) when
    `Result` is missing or not a boolean (an error-only body, §1)."""
    if not isinstance(body, dict):
        return None, None
    sc = body.get("StatusCode")
    sc = sc if isinstance(sc, dict) and oicp.is_code(sc.get("Code")) else None
    result = body.get("Result")
    return (result if isinstance(result, bool) else None), sc


DATA_ERROR = S.DATA_ERROR
