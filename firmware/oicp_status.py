"""The one OICP 2.3 status code table, shared by the firmware and the bridge.

Codes are 3-digit strings exactly as OICP sends them (`StatusCode.Code` is a string, "000", never
a number). Meanings follow Hubject's own table (OpenAPI `schemas/StatusCode.yaml`, the same list
as CPO03 and oicp-2.3-cpo.md §9). 401/404/500 are HTTP statuses, not OICP codes, and are absent.
"""

# -- named codes (string values; use these in logic, never bare literals) -----------------
SUCCESS = "000"
HUBJECT_SYSTEM_ERROR = "001"
HUBJECT_DATABASE_ERROR = "002"
DATA_TRANSACTION_ERROR = "009"
UNAUTHORIZED_ACCESS = "017"  # certificate/OperatorID mismatch or partner locked
INCONSISTENT_EVSE_ID = "018"
INCONSISTENT_EVCO_ID = "019"
SYSTEM_ERROR = "021"  # generic partner-side failure (what we answer on an internal error)
DATA_ERROR = "022"  # bad request (what we answer when a request cannot be parsed)
QR_AUTH_FAILED = "101"  # QR code authentication failed - invalid credentials
RFID_INVALID_UID = "102"  # RFID authentication failed - invalid UID
RFID_NOT_READABLE = "103"
PLC_INVALID_EVCO_ID = "105"
NO_POSITIVE_AUTH_RESPONSE = "106"
QR_APP_TIMEOUT = "110"
PNC_INVALID_EVCO_ID = "120"
PNC_INVALID_CERTIFICATE = "121"
PNC_TIMEOUT = "122"
EVCO_ID_LOCKED = "200"
NO_VALID_CONTRACT = "210"
PARTNER_NOT_FOUND = "300"
PARTNER_DID_NOT_RESPOND = "310"
SERVICE_NOT_AVAILABLE = "320"
SESSION_INVALID = "400"
EVSE_COMMUNICATION_FAILED = "501"
NO_EV_CONNECTED = "510"
EVSE_RESERVED = "601"
EVSE_IN_USE = "602"  # EVSE already in use / wrong token
UNKNOWN_EVSE = "603"
EVSE_NOT_HUBJECT_COMPATIBLE = "604"
EVSE_OUT_OF_SERVICE = "700"

CODES = {
    SUCCESS: "Success",
    HUBJECT_SYSTEM_ERROR: "Hubject system error",
    HUBJECT_DATABASE_ERROR: "Hubject database error",
    DATA_TRANSACTION_ERROR: "Data transaction error",
    UNAUTHORIZED_ACCESS: "Unauthorized Access",
    INCONSISTENT_EVSE_ID: "Inconsistent EvseID",
    INCONSISTENT_EVCO_ID: "Inconsistent EvcoID",
    SYSTEM_ERROR: "System error",
    DATA_ERROR: "Data error",
    QR_AUTH_FAILED: "QR Code Authentication failed - Invalid Credentials",
    RFID_INVALID_UID: "RFID Authentication failed - invalid UID",
    RFID_NOT_READABLE: "RFID Authentication failed - card not readable",
    PLC_INVALID_EVCO_ID: "PLC Authentication failed - invalid EvcoID",
    NO_POSITIVE_AUTH_RESPONSE: "No positive authentication response",
    QR_APP_TIMEOUT: "QR Code App Authentication failed - time out error",
    PNC_INVALID_EVCO_ID: "PLC (ISO/IEC 15118) Authentication failed - invalid underlying EvcoID",
    PNC_INVALID_CERTIFICATE: "PLC (ISO/IEC 15118) Authentication failed - invalid certificate",
    PNC_TIMEOUT: "PLC (ISO/IEC 15118) Authentication failed - time out error",
    EVCO_ID_LOCKED: "EvcoID locked",
    NO_VALID_CONTRACT: "No valid contract",
    PARTNER_NOT_FOUND: "Partner not found",
    PARTNER_DID_NOT_RESPOND: "Partner did not respond",
    SERVICE_NOT_AVAILABLE: "Service not available",
    SESSION_INVALID: "Session is invalid",
    EVSE_COMMUNICATION_FAILED: "Communication to EVSE failed",
    NO_EV_CONNECTED: "No EV connected to EVSE",
    EVSE_RESERVED: "EVSE already reserved",
    EVSE_IN_USE: "EVSE already in use/ wrong token",
    UNKNOWN_EVSE: "Unknown EVSE ID",
    EVSE_NOT_HUBJECT_COMPATIBLE: "EVSE ID is not Hubject compatible",
    EVSE_OUT_OF_SERVICE: "EVSE out of service",
}

UNKNOWN = "Unknown status code"

# What a CPO may answer a RemoteStart/RemoteStop with (BPMN-R: 500-700 range, plus 000 and the
# general 021/022 for internal failures and unparsable requests, plus 400 for unknown sessions).
REMOTE_ACK_CODES = (SUCCESS, SYSTEM_ERROR, DATA_ERROR, SESSION_INVALID, EVSE_COMMUNICATION_FAILED,
                    NO_EV_CONNECTED, EVSE_RESERVED, EVSE_IN_USE, UNKNOWN_EVSE,
                    EVSE_OUT_OF_SERVICE)

# -- what the driver is shown after an authorization answer --------------------------------
DISPLAY_ACCEPTED = "accepted"
DISPLAY_CARD_UNKNOWN = "card_unknown"  # no EMP knows the card
DISPLAY_CARD_INVALID = "card_invalid"  # known, but refused: locked, unreadable, bad credentials
DISPLAY_NO_CONTRACT = "no_contract"  # no contract between this CPO and the card's EMP
DISPLAY_BACKEND_ERROR = "backend_error"  # Hubject, partner or transport failure
DISPLAY_TIMEOUT = "timeout"  # no answer in time
DISPLAY_VALUES = (DISPLAY_ACCEPTED, DISPLAY_CARD_UNKNOWN, DISPLAY_CARD_INVALID,
                  DISPLAY_NO_CONTRACT, DISPLAY_BACKEND_ERROR, DISPLAY_TIMEOUT)

AUTHORIZED = "Authorized"
NOT_AUTHORIZED = "NotAuthorized"

_NOT_AUTHORIZED_DISPLAY = {
    SUCCESS: DISPLAY_CARD_UNKNOWN,  # refused without a reason
    RFID_INVALID_UID: DISPLAY_CARD_UNKNOWN,
    NO_POSITIVE_AUTH_RESPONSE: DISPLAY_CARD_UNKNOWN,  # broadcast: no EMP said yes
    QR_AUTH_FAILED: DISPLAY_CARD_INVALID,
    RFID_NOT_READABLE: DISPLAY_CARD_INVALID,
    PLC_INVALID_EVCO_ID: DISPLAY_CARD_INVALID,
    PNC_INVALID_EVCO_ID: DISPLAY_CARD_INVALID,
    PNC_INVALID_CERTIFICATE: DISPLAY_CARD_INVALID,
    EVCO_ID_LOCKED: DISPLAY_CARD_INVALID,
    NO_VALID_CONTRACT: DISPLAY_NO_CONTRACT,
    QR_APP_TIMEOUT: DISPLAY_TIMEOUT,
    PNC_TIMEOUT: DISPLAY_TIMEOUT,
}


def normalize(code):
    """A code as OICP writes it: "000". Accepts an int (2 -> "002"); None stays None."""
    if code is None or isinstance(code, str):
        return code
    if isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 999:
        return "{:03d}".format(code)
    raise ValueError("status code {!r}: must be a 3-digit string".format(code))


def describe(code):
    """Meaning of a code. An unknown code is not an error here: it returns UNKNOWN
    ("Unknown status code") and the caller decides; `is_known` tells the two apart."""
    return CODES.get(normalize(code), UNKNOWN)


def is_known(code):
    return normalize(code) in CODES


def status_code(code, description=None, additional_info=None):
    """An OICP StatusCode object; Description defaults to the table's meaning."""
    code = normalize(code)
    if code not in CODES:
        raise ValueError("status code {!r}: not an OICP 2.3 code".format(code))
    out = {"Code": code, "Description": description or CODES[code]}
    if additional_info:
        out["AdditionalInfo"] = additional_info
    return out


def driver_display(authorization_status, code):
    """What the driver sees after an authorization answer (one of DISPLAY_VALUES).

    `authorization_status` is "Authorized", "NotAuthorized" or None (no answer, timed out);
    `code` is StatusCode.Code (may be None). AuthorizationStatus decides acceptance; the code
    only picks the reason for a refusal. Unknown codes on a refusal count as backend errors.
    """
    if authorization_status is None:
        return DISPLAY_TIMEOUT
    if authorization_status == AUTHORIZED:
        return DISPLAY_ACCEPTED
    if authorization_status != NOT_AUTHORIZED:
        raise ValueError("AuthorizationStatus {!r}: must be Authorized, NotAuthorized or None"
                         .format(authorization_status))
    code = normalize(code)
    if code is None:
        return DISPLAY_CARD_UNKNOWN
    return _NOT_AUTHORIZED_DISPLAY.get(code, DISPLAY_BACKEND_ERROR)
