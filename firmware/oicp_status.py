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

# Meanings as ONE bytes blob of "\n<code><meaning>" records, searched on demand: a dict of 31
# strings would cost ~3 KB of heap on the device for text that is read only in replies.
_TABLE = (
    b"\n000Success"
    b"\n001Hubject system error"
    b"\n002Hubject database error"
    b"\n009Data transaction error"
    b"\n017Unauthorized Access"
    b"\n018Inconsistent EvseID"
    b"\n019Inconsistent EvcoID"
    b"\n021System error"
    b"\n022Data error"
    b"\n101QR Code Authentication failed - Invalid Credentials"
    b"\n102RFID Authentication failed - invalid UID"
    b"\n103RFID Authentication failed - card not readable"
    b"\n105PLC Authentication failed - invalid EvcoID"
    b"\n106No positive authentication response"
    b"\n110QR Code App Authentication failed - time out error"
    b"\n120PLC (ISO/IEC 15118) Authentication failed - invalid underlying EvcoID"
    b"\n121PLC (ISO/IEC 15118) Authentication failed - invalid certificate"
    b"\n122PLC (ISO/IEC 15118) Authentication failed - time out error"
    b"\n200EvcoID locked"
    b"\n210No valid contract"
    b"\n300Partner not found"
    b"\n310Partner did not respond"
    b"\n320Service not available"
    b"\n400Session is invalid"
    b"\n501Communication to EVSE failed"
    b"\n510No EV connected to EVSE"
    b"\n601EVSE already reserved"
    b"\n602EVSE already in use/ wrong token"
    b"\n603Unknown EVSE ID"
    b"\n604EVSE ID is not Hubject compatible"
    b"\n700EVSE out of service"
    b"\n"
)


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


def status_code(code):
    """The OICP StatusCode object of a code from the table: {"Code", "Description"}.

    The device answers only with its own codes; the table stays complete (it is the one table
    the bridge shares), `status_code(c)["Description"]` is how the host reads a meaning.
    """
    i = _TABLE.find(b"\n" + code.encode()) if len(code) == 3 else -1
    if i < 0:
        raise ValueError("status code {!r}: not an OICP 2.3 code".format(code))
    return {"Code": code, "Description": _TABLE[i + 4:_TABLE.find(b"\n", i + 4)].decode()}


def driver_display(authorization_status, code):
    """What the driver sees after an authorization answer (one of DISPLAY_VALUES).

    `authorization_status` is "Authorized", "NotAuthorized" or None (no answer, timed out);
    `code` is StatusCode.Code, a 3-digit string or None (the controller validated both).
    AuthorizationStatus decides acceptance; the code only picks the reason for a refusal.
    Unknown codes on a refusal count as backend errors.
    """
    if authorization_status is None:
        return DISPLAY_TIMEOUT
    if authorization_status == AUTHORIZED:
        return DISPLAY_ACCEPTED
    if code is None:
        return DISPLAY_CARD_UNKNOWN
    # the refusal table, written as code: a tuple of (code, display) pairs measured 1088 B of
    # heap (tools/heap_report.py --flat), these comparisons none (their bytecode stays in ROMFS)
    if code == SUCCESS or code == RFID_INVALID_UID or code == NO_POSITIVE_AUTH_RESPONSE:
        return DISPLAY_CARD_UNKNOWN  # refused without a reason, or no EMP said yes
    if (code == QR_AUTH_FAILED or code == RFID_NOT_READABLE or code == PLC_INVALID_EVCO_ID
            or code == PNC_INVALID_EVCO_ID or code == PNC_INVALID_CERTIFICATE
            or code == EVCO_ID_LOCKED):
        return DISPLAY_CARD_INVALID  # locked, unreadable, bad credentials
    if code == NO_VALID_CONTRACT:
        return DISPLAY_NO_CONTRACT
    if code == QR_APP_TIMEOUT or code == PNC_TIMEOUT:
        return DISPLAY_TIMEOUT
    return DISPLAY_BACKEND_ERROR  # any other code
