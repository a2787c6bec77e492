"""OICP 2.3 message schemas and the rules Hubject's OpenAPI misses, written from the fact sheet
(``oicp-2.3-cpo.md``; section numbers below are its sections). Nothing here reads ``../shared``:
a user's clone has no ``../shared``. The tests check these schemas against Hubject's OpenAPI files.

Two layers:

- :data:`SCHEMAS`: one JSON Schema (draft 7) per message. Stricter than the OpenAPI where the
  fact sheet says so: ``maxLength`` where the OpenAPI writes ``maximum`` (§12.9), the upper-case
  EvseID regex of the AsciiDoc (§3), no unknown members in the top level of a message (catches
  e.g. PartnerProductID in AuthorizeStop, §2), no explicit ``null`` from the CPO.
- :func:`problems`: schema errors plus the cross-field rules (§3, §12): exactly one
  Identification member, no RFIDIdentification in authorization/session messages, clear-text
  PIN and no HashedPIN in authorization, EvseID under the OperatorID, path operatorID = body
  OperatorID, ISO 8601 date-times with an offset, kWh with at most 3 decimals, Progress needs a
  duration or an energy.

Each problem is one string ``"<json path>: <what is wrong> [§n]"``; an empty list means valid.
"""

import datetime
import decimal
import re

import fastjsonschema
import jsonschema

# -- identifier regexes (§3, "Identifier regexes"; the `$` anchors are written `\Z` so that a
# trailing newline does not slip through Python's `$`) ---------------------------------------
UID_RE = r"^([0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20})\Z"
EVCO_ID_RE = (r"^(([A-Za-z]{2}\-?[A-Za-z0-9]{3}\-?C[A-Za-z0-9]{8}\-?[\d|A-Za-z])|"
              r"([A-Za-z]{2}[\*|\-]?[A-Za-z0-9]{3}[\*|\-]?[A-Za-z0-9]{6}[\*|\-]?[\d|X]))\Z")
#: Upper case only (the AsciiDoc since 2023-05; the OpenAPI still allows lower case), §3.
EVSE_ID_RE = (r"^(([A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9\*]{1,30})|"
              r"(\+?[0-9]{1,3}\*[0-9]{3}\*[0-9\*]{1,32}))\Z")
OPERATOR_ID_RE = r"^(([A-Za-z]{2}\*?[A-Za-z0-9]{3})|(\+?[0-9]{1,3}\*[0-9]{3}))\Z"
PROVIDER_ID_RE = r"^([A-Za-z]{2}\-?[A-Za-z0-9]{3}|[A-Za-z]{2}[\*|-]?[A-Za-z0-9]{3})\Z"
SESSION_ID_RE = r"^[A-Za-z0-9]{8}(-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12}\Z"
HASH_VALUE_RE = r"^[0-9A-Za-z\.+/=\$]{10,100}\Z"
PHONE_RE = r"^\+[0-9]{5,15}\Z"
#: ISO 8601 ``YYYY-MM-DDThh:mm:ss[.fff]TZD`` (§3 "Date/time format"); Hubject's samples use Z.
DATE_TIME_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\Z"


def _s(pattern):
    return {"type": "string", "pattern": pattern}


def _text(limit):
    return {"type": "string", "maxLength": limit}


UID = _s(UID_RE)
EVCO_ID = _s(EVCO_ID_RE)
EVSE_ID = _s(EVSE_ID_RE)
OPERATOR_ID = _s(OPERATOR_ID_RE)
PROVIDER_ID = _s(PROVIDER_ID_RE)
SESSION_ID = _s(SESSION_ID_RE)
PRODUCT_ID = _text(50)  # ProductIDType: free string <= 50, no regex in 2.3 (§3)
PARTNER_SESSION_ID = _text(250)  # CPO/EMPPartnerSessionID (§1, §3)
DATE_TIME = {"type": "string", "pattern": DATE_TIME_RE}
KWH = {"type": "number"}  # Decimal(,3) kWh (§6); negative values: 022 from the CDR rules
METER_VALUES = {"type": "object", "required": ["meterValues"], "additionalProperties": False,
                "properties": {"meterValues": {"type": "array", "items": KWH}}}  # §12.6

STATUS_CODE = {  # §1 response table, §9: Code is a 3-digit string (§12.5)
    "type": "object", "required": ["Code"], "additionalProperties": False,
    "properties": {"Code": {"type": "string", "pattern": r"^[0-9]{3}\Z"},
                   "Description": _text(200), "AdditionalInfo": _text(1000)},
}


def _obj(required, properties, closed=True):
    schema = {"type": "object", "required": list(required), "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


IDENTIFICATION = _obj([], {  # §3 table; "exactly one member" is checked in problems()
    "RFIDMifareFamilyIdentification": _obj(["UID"], {"UID": UID}),
    "RFIDIdentification": _obj(["UID", "RFID"], {
        "UID": UID, "EvcoID": EVCO_ID,
        "RFID": {"enum": ["mifareCls", "mifareDes", "calypso", "nfc", "mifareFamily"]},
        "PrintedNumber": _text(150), "ExpiryDate": DATE_TIME}),
    "QRCodeIdentification": _obj(["EvcoID"], {
        "EvcoID": EVCO_ID,
        "HashedPIN": _obj(["Value", "Function"], {
            "Value": _s(HASH_VALUE_RE), "Function": {"enum": ["Bcrypt"]},
            "LegacyHashData": _obj(["Function"], {
                "Function": {"enum": ["MD5", "SHA-1"]}, "Salt": _text(100),
                "Value": _text(20)})}),
        "PIN": _text(20)}),
    "PlugAndChargeIdentification": _obj(["EvcoID"], {"EvcoID": EVCO_ID}),
    "RemoteIdentification": _obj(["EvcoID"], {"EvcoID": EVCO_ID}),
})

_PARTNER_IDS = {"CPOPartnerSessionID": PARTNER_SESSION_ID,
                "EMPPartnerSessionID": PARTNER_SESSION_ID}

AUTHORIZE_START = _obj(["OperatorID", "Identification"], {  # §1 request
    "SessionID": SESSION_ID, **_PARTNER_IDS, "OperatorID": OPERATOR_ID, "EvseID": EVSE_ID,
    "Identification": IDENTIFICATION, "PartnerProductID": PRODUCT_ID})

AUTHORIZE_STOP = _obj(["SessionID", "OperatorID", "Identification"], {  # §2: no PartnerProductID
    "SessionID": SESSION_ID, **_PARTNER_IDS, "OperatorID": OPERATOR_ID, "EvseID": EVSE_ID,
    "Identification": IDENTIFICATION})

AUTHORIZATION_START = _obj(["AuthorizationStatus", "StatusCode"], {  # §1 response
    "SessionID": SESSION_ID, **_PARTNER_IDS, "ProviderID": PROVIDER_ID,
    "AuthorizationStatus": {"enum": ["Authorized", "NotAuthorized"]}, "StatusCode": STATUS_CODE,
    "AuthorizationStopIdentifications": {"type": "array", "items": IDENTIFICATION}})

AUTHORIZATION_STOP = _obj(["AuthorizationStatus", "StatusCode"], {  # §2 response
    "SessionID": SESSION_ID, **_PARTNER_IDS, "ProviderID": PROVIDER_ID,
    "AuthorizationStatus": {"enum": ["Authorized", "NotAuthorized"]}, "StatusCode": STATUS_CODE})

AUTHORIZE_REMOTE_START = _obj(["SessionID", "ProviderID", "EvseID", "Identification"], {  # §4
    "SessionID": SESSION_ID, **_PARTNER_IDS, "ProviderID": PROVIDER_ID, "EvseID": EVSE_ID,
    "Identification": IDENTIFICATION, "PartnerProductID": PRODUCT_ID})

AUTHORIZE_REMOTE_STOP = _obj(["SessionID", "ProviderID", "EvseID"], {  # §4: no Identification
    "SessionID": SESSION_ID, **_PARTNER_IDS, "ProviderID": PROVIDER_ID, "EvseID": EVSE_ID})

ACKNOWLEDGEMENT = _obj(["Result", "StatusCode"], {  # §4 "CPO response"
    "Result": {"type": "boolean"}, "StatusCode": STATUS_CODE, "SessionID": SESSION_ID,
    **_PARTNER_IDS})

CHARGE_DETAIL_RECORD = _obj(  # §6 table
    ["SessionID", "EvseID", "Identification", "ChargingStart", "ChargingEnd", "SessionStart",
     "SessionEnd", "ConsumedEnergy"], {
        "SessionID": SESSION_ID, **_PARTNER_IDS, "PartnerProductID": PRODUCT_ID,
        "EvseID": EVSE_ID, "Identification": IDENTIFICATION,
        "ChargingStart": DATE_TIME, "ChargingEnd": DATE_TIME, "SessionStart": DATE_TIME,
        "SessionEnd": DATE_TIME, "MeterValueStart": KWH, "MeterValueEnd": KWH,
        "MeterValueInBetween": METER_VALUES, "ConsumedEnergy": KWH,
        "SignedMeteringValues": {"type": "array", "maxItems": 10, "items": _obj([], {
            "SignedMeteringValue": _text(3000),
            "MeteringStatus": {"enum": ["Start", "Progress", "End"]}})},
        "CalibrationLawVerificationInfo": _obj([], {
            "CalibrationLawCertificateID": _text(100), "PublicKey": _text(1000),
            "MeteringSignatureUrl": _text(200), "MeteringSignatureEncodingFormat": _text(50),
            "SignedMeteringValuesVerificationInstruction": _text(400),
            "MeteringCheck": {"enum": ["Passed", "Failed", "Not Apply"]}}),
        "HubOperatorID": OPERATOR_ID, "HubProviderID": PROVIDER_ID})

_NOTIFICATION_COMMON = {  # §5 "All types share these fields"
    "SessionID": SESSION_ID, **_PARTNER_IDS, "Identification": IDENTIFICATION,
    "EvseID": EVSE_ID, "OperatorID": OPERATOR_ID}
_NOTIFICATION_REQUIRED = ["Type", "SessionID", "EvseID", "OperatorID"]

NOTIFICATIONS = {  # §5 table, one schema per Type
    "Start": _obj(_NOTIFICATION_REQUIRED + ["ChargingStart"], {
        **_NOTIFICATION_COMMON, "Type": {"const": "Start"}, "ChargingStart": DATE_TIME,
        "SessionStart": DATE_TIME, "MeterValueStart": KWH, "PartnerProductID": PRODUCT_ID}),
    "Progress": _obj(_NOTIFICATION_REQUIRED + ["ChargingStart", "EventOccurred"], {
        **_NOTIFICATION_COMMON, "Type": {"const": "Progress"}, "ChargingStart": DATE_TIME,
        "EventOccurred": DATE_TIME, "ChargingDuration": {"type": "integer", "minimum": 0},
        "SessionStart": DATE_TIME, "ConsumedEnergyProgress": KWH, "MeterValueStart": KWH,
        "MeterValueInBetween": METER_VALUES, "PartnerProductID": PRODUCT_ID}),
    "End": _obj(_NOTIFICATION_REQUIRED + ["ChargingEnd"], {
        **_NOTIFICATION_COMMON, "Type": {"const": "End"}, "ChargingStart": DATE_TIME,
        "ChargingEnd": DATE_TIME, "SessionStart": DATE_TIME, "SessionEnd": DATE_TIME,
        "ConsumedEnergy": KWH, "MeterValueStart": KWH, "MeterValueEnd": KWH,
        "MeterValueInBetween": METER_VALUES, "PartnerProductID": PRODUCT_ID,
        "PenaltyTimeStart": DATE_TIME}),
    "Error": _obj(_NOTIFICATION_REQUIRED + ["ErrorType"], {  # §5/§12.7: no timestamp
        **_NOTIFICATION_COMMON, "Type": {"const": "Error"},
        "ErrorType": {"enum": ["ConnectorError", "CriticalError"]},
        "ErrorAdditionalInfo": _text(250)}),
}
CHARGING_NOTIFICATION = {  # dispatch on Type (§5: one URL, Type selects)
    "type": "object", "required": ["Type"],
    "properties": {"Type": {"enum": list(NOTIFICATIONS)}},
    "allOf": [{"if": {"properties": {"Type": {"const": t}}}, "then": s}
              for t, s in NOTIFICATIONS.items()],
}

EVSE_STATUS_VALUES = ["Available", "Reserved", "Occupied", "OutOfService", "EvseNotFound",
                      "Unknown"]
PUSH_EVSE_STATUS = _obj(["ActionType", "OperatorEvseStatus"], {  # §7 body
    "ActionType": {"enum": ["fullLoad", "update", "insert", "delete"]},
    "OperatorEvseStatus": _obj(["OperatorID", "EvseStatusRecord"], {
        "OperatorID": OPERATOR_ID, "OperatorName": _text(100),
        "EvseStatusRecord": {"type": "array", "items": _obj(["EvseID", "EvseStatus"], {
            "EvseID": EVSE_ID, "EvseStatus": {"enum": EVSE_STATUS_VALUES}})}})})

_INFO_TEXT = _obj(["lang", "value"], {
    "lang": _s(r"^[a-z]{2,3}(?:-[A-Z]{2,3}(?:-[a-zA-Z]{4})?)?(?:-x-[a-zA-Z0-9]{1,8})?\Z"),
    "value": _text(150)})
_COORD = r"^-?1?\d{1,2}\.\d{1,6}\Z"
EVSE_DATA_RECORD = _obj(  # Hubject's EvseDataRecord: required members and their types/enums
    ["EvseID", "ChargingStationNames", "Address", "GeoCoordinates", "Plugs",
     "ChargingFacilities", "RenewableEnergy", "CalibrationLawDataAvailability",
     "AuthenticationModes", "PaymentOptions", "ValueAddedServices", "Accessibility",
     "HotlinePhoneNumber", "IsOpen24Hours", "IsHubjectCompatible", "DynamicInfoAvailable"], {
        "EvseID": EVSE_ID,
        "ChargingStationNames": {"type": "array", "minItems": 1, "items": _INFO_TEXT},
        "Address": _obj(["Country", "City", "Street", "PostalCode", "HouseNum"], {
            "Country": _s(r"^[A-Z]{3}\Z"), "City": {"type": "string", "minLength": 1,
                                                    "maxLength": 50},
            "Street": {"type": "string", "minLength": 2, "maxLength": 100},
            "PostalCode": _text(10), "HouseNum": _text(10), "Floor": _text(5),
            "Region": _text(50), "ParkingFacility": {"type": "boolean"},
            "ParkingSpot": _text(5), "TimeZone": _s(r"^UTC[+-][0-9]{2}:[0-9]{2}\Z")},
            closed=False),
        "GeoCoordinates": {"type": "object", "minProperties": 1, "properties": {
            "Google": _obj(["Coordinates"], {"Coordinates": _s(
                r"^-?1?\d{1,2}\.\d{1,6}\s*\,?\s*-?1?\d{1,2}\.\d{1,6}\Z")}),
            "DecimalDegree": _obj(["Longitude", "Latitude"], {
                "Longitude": _s(_COORD), "Latitude": _s(_COORD)})}},
        "Plugs": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "ChargingFacilities": {"type": "array", "minItems": 1, "items": _obj(
            ["PowerType", "Power"], {
                "PowerType": {"enum": ["AC_1_PHASE", "AC_3_PHASE", "DC"]},
                "Voltage": {"type": "integer", "minimum": 0, "maximum": 999},
                "Amperage": {"type": "integer", "minimum": 0, "maximum": 99},
                "Power": {"type": "integer", "minimum": 0, "maximum": 999},
                "ChargingModes": {"type": "array", "items": {
                    "enum": ["Mode_1", "Mode_2", "Mode_3", "Mode_4", "CHAdeMO"]}}},
            closed=False)},
        "RenewableEnergy": {"type": "boolean"},
        "CalibrationLawDataAvailability": {"enum": ["Local", "External", "Not Available"]},
        "AuthenticationModes": {"type": "array", "items": {"enum": [
            "NFC RFID Classic", "NFC RFID DESFire", "PnC", "REMOTE", "Direct Payment",
            "No Authentication Required"]}},
        "PaymentOptions": {"type": "array", "minItems": 1, "items": {
            "enum": ["No Payment", "Direct", "Contract"]}},
        "ValueAddedServices": {"type": "array", "items": {"type": "string"}},
        "Accessibility": {"enum": ["Free publicly accessible", "Restricted access",
                                   "Paying publicly accessible", "Test Station"]},
        "HotlinePhoneNumber": _s(PHONE_RE),
        "IsOpen24Hours": {"type": "boolean"},
        "IsHubjectCompatible": {"type": "boolean"},
        "DynamicInfoAvailable": {"enum": ["true", "false", "auto"]},
        "ChargingPoolID": {"type": "string"}, "HubOperatorID": OPERATOR_ID},
    closed=False)  # many optional members; spellings differ between documents (§12.16)

PUSH_EVSE_DATA = _obj(["ActionType", "OperatorEvseData"], {
    "ActionType": {"enum": ["fullLoad", "update", "insert", "delete"]},
    "OperatorEvseData": _obj(["OperatorID", "OperatorName", "EvseDataRecord"], {
        "OperatorID": OPERATOR_ID, "OperatorName": _text(100),
        "EvseDataRecord": {"type": "array", "items": EVSE_DATA_RECORD}})})

#: Message name -> schema. Request names are Hubject's schema names; answers likewise.
SCHEMAS = {
    "eRoamingAuthorizeStart": AUTHORIZE_START,
    "eRoamingAuthorizeStop": AUTHORIZE_STOP,
    "eRoamingAuthorizationStart": AUTHORIZATION_START,
    "eRoamingAuthorizationStop": AUTHORIZATION_STOP,
    "eRoamingAuthorizeRemoteStart": AUTHORIZE_REMOTE_START,
    "eRoamingAuthorizeRemoteStop": AUTHORIZE_REMOTE_STOP,
    "eRoamingAcknowledgement": ACKNOWLEDGEMENT,
    "eRoamingChargeDetailRecord": CHARGE_DETAIL_RECORD,
    "eRoamingChargingNotification": CHARGING_NOTIFICATION,
    "eRoamingPushEvseStatus": PUSH_EVSE_STATUS,
    "eRoamingPushEvseData": PUSH_EVSE_DATA,
}

_VALIDATORS = {name: jsonschema.Draft7Validator(schema) for name, schema in SCHEMAS.items()}
for _schema in SCHEMAS.values():
    jsonschema.Draft7Validator.check_schema(_schema)
# The same schemas compiled to Python by fastjsonschema: the yes/no answer for a valid body in
# a few microseconds (jsonschema's iter_errors took ~1 ms per CDR, a third of the simulator's
# CPU under bench_bridge). Only a body it refuses goes through jsonschema for the readable
# error list. Formats are off in both (Draft7Validator checks none without a format checker).
_FAST = {name: fastjsonschema.compile(schema, use_formats=False)
         for name, schema in SCHEMAS.items()}

#: Messages whose Identification is an authorization medium: RFIDIdentification is forbidden
#: there (§3 table, §12.2); the PIN rule (§1, §12.4) applies to the first two.
_AUTH_MESSAGES = ("eRoamingAuthorizeStart", "eRoamingAuthorizeStop")
_KWH_FIELDS = ("MeterValueStart", "MeterValueEnd", "ConsumedEnergy", "ConsumedEnergyProgress")
_DATE_FIELDS = ("ChargingStart", "ChargingEnd", "SessionStart", "SessionEnd", "EventOccurred",
                "PenaltyTimeStart")


def _where(path):
    return "/".join(str(p) for p in path) or "(body)"


#: Regex -> the OICP type it checks, for readable problems.
PATTERN_NAMES = {UID_RE: "UIDType: upper-case hex, 8/14/20 characters [§3, §12.3]",
                 EVCO_ID_RE: "EvcoIDType [§3]", EVSE_ID_RE: "EvseIDType, upper case [§3]",
                 OPERATOR_ID_RE: "OperatorIDType [§3]", PROVIDER_ID_RE: "ProviderIDType [§3]",
                 SESSION_ID_RE: "SessionIDType [§3]", HASH_VALUE_RE: "HashValueType [§3]",
                 PHONE_RE: "PhoneNumberType [§3]",
                 DATE_TIME_RE: "an ISO 8601 date-time with offset YYYY-MM-DDThh:mm:ssTZD [§3]"}


def _message(error):
    if error.validator == "pattern" and error.validator_value in PATTERN_NAMES:
        return "%r is not %s" % (error.instance, PATTERN_NAMES[error.validator_value])
    return error.message


def _valid_fast(name, body):
    """True when the compiled schema accepts ``body`` (False: ask jsonschema what is wrong)."""
    try:
        _FAST[name](body)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def schema_problems(name, body):
    """Problems of ``body`` against :data:`SCHEMAS[name]` only, as ``"path: message"`` strings."""
    if _valid_fast(name, body):
        return []
    errors = sorted(_VALIDATORS[name].iter_errors(body), key=lambda e: list(e.absolute_path))
    return ["%s: %s" % (_where(e.absolute_path), _message(e)) for e in errors]


def canonical_id(value):
    """Upper case without the ``*``/``-``/``+`` separators, for comparing ids (§12.15)."""
    return re.sub(r"[*\-+|]", "", value).upper()


def evse_under_operator(evse_id, operator_id):
    """True when EvseID ``evse_id`` belongs to OperatorID ``operator_id`` (§6: else 018).

    An ISO EvseID is the OperatorID (country + 3 characters) followed by ``E...``; a DIN one
    starts with the DIN OperatorID. Compared in canonical form (separators dropped, §12.15).
    """
    return canonical_id(evse_id).startswith(canonical_id(operator_id))


def identification_members(ident):
    """The members of an Identification object that are present (not absent, not null)."""
    if not isinstance(ident, dict):
        return []
    return [k for k, v in ident.items() if v is not None]


def parse_time(text):
    """An aware ``datetime`` for an OICP date-time string, or None when it is not one (§3)."""
    if not isinstance(text, str) or not re.match(DATE_TIME_RE, text):
        return None
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


def decimals(value):
    """The number of fractional digits of a JSON number as written (0 for an int)."""
    if isinstance(value, int):
        return 0
    exponent = decimal.Decimal(repr(value)).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _check_identification(name, ident, where, out):
    members = identification_members(ident)
    if isinstance(ident, dict) and len(members) != 1:
        out.append("%s: must carry exactly one member, has %d (%s) [§3, §12.1]"
                   % (where, len(members), ", ".join(members) or "none"))
    if "RFIDIdentification" in members:
        out.append("%s: RFIDIdentification must not be used here; RFID goes as "
                   "RFIDMifareFamilyIdentification [§3, §12.2]" % where)
    qr = ident.get("QRCodeIdentification") if isinstance(ident, dict) else None
    if name in _AUTH_MESSAGES and isinstance(qr, dict):
        if qr.get("HashedPIN") is not None:
            out.append("%s/QRCodeIdentification: HashedPIN must be absent in authorization; "
                       "send the clear-text PIN [§1, §12.4]" % where)
        if qr.get("PIN") is None:
            out.append("%s/QRCodeIdentification: PIN (clear text) is required in "
                       "authorization [§1, §12.4]" % where)


def _check_numbers(body, out):
    for key in _KWH_FIELDS:
        value = body.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and decimals(value) > 3:
            out.append("%s: at most 3 decimals (kWh, Decimal(,3)), got %r [§6, §12.12]"
                       % (key, value))
    between = body.get("MeterValueInBetween")
    if isinstance(between, dict) and isinstance(between.get("meterValues"), list):
        for i, value in enumerate(between["meterValues"]):
            if isinstance(value, float) and decimals(value) > 3:
                out.append("MeterValueInBetween/meterValues/%d: at most 3 decimals, got %r "
                           "[§6]" % (i, value))


def _check_times(body, out):
    for key in _DATE_FIELDS:
        if key in body and isinstance(body[key], str) and parse_time(body[key]) is None:
            out.append("%s: not an ISO 8601 date-time with offset (YYYY-MM-DDThh:mm:ssTZD), "
                       "got %r [§3 Date/time format]" % (key, body[key]))


def problems(name, body, path_operator_id=None, path_provider_id=None):
    """Every problem of message ``name`` (a key of :data:`SCHEMAS`) with ``body``.

    ``path_operator_id`` / ``path_provider_id``: the ``{operatorID}``/``{providerID}`` path
    segment, which must equal the body's OperatorID/ProviderID (§0, §10). Returns a list of
    strings, empty when the body is valid. Semantic rules that Hubject answers with a code of
    their own (CDR energy checks, sessions, 018) are not here: the server applies them.
    """
    if not isinstance(body, dict):
        return ["(body): must be a JSON object, got %s" % type(body).__name__]
    out = schema_problems(name, body)
    if "Identification" in body:
        _check_identification(name, body["Identification"], "Identification", out)
    for i, ident in enumerate(body.get("AuthorizationStopIdentifications") or []):
        _check_identification(name, ident, "AuthorizationStopIdentifications/%d" % i, out)
    _check_numbers(body, out)
    _check_times(body, out)
    operator = body.get("OperatorID")
    if name == "eRoamingPushEvseStatus":
        operator = (body.get("OperatorEvseStatus") or {}).get("OperatorID")
    elif name == "eRoamingPushEvseData":
        operator = (body.get("OperatorEvseData") or {}).get("OperatorID")
    if path_operator_id is not None and isinstance(operator, str) \
            and operator != path_operator_id:
        out.append("OperatorID: %r differs from the path operatorID %r [§0, §10]"
                   % (operator, path_operator_id))
    if path_operator_id is not None and not re.match(OPERATOR_ID_RE, path_operator_id):
        out.append("(path) operatorID: %r is not an OperatorID [§3]" % path_operator_id)
    evse = body.get("EvseID")
    if name in _AUTH_MESSAGES + ("eRoamingChargingNotification",) and isinstance(evse, str) \
            and isinstance(operator, str) and not evse_under_operator(evse, operator):
        out.append("EvseID: %r is not under OperatorID %r [§3, §6]" % (evse, operator))
    provider = body.get("ProviderID")
    if path_provider_id is not None and isinstance(provider, str) \
            and provider != path_provider_id:
        out.append("ProviderID: %r differs from the path providerID %r [§0, §10]"
                   % (provider, path_provider_id))
    if name == "eRoamingChargingNotification" and body.get("Type") == "Progress" \
            and "ChargingDuration" not in body and "ConsumedEnergyProgress" not in body:
        out.append("(body): a Progress notification needs ChargingDuration or "
                   "ConsumedEnergyProgress [§5]")
    return out
