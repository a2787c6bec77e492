"""OICP identifiers, checked by hand (MicroPython's `re` has no counted repetition `{n}`).

The rules are the OICP 2.3 regexes (oicp-2.3-cpo.md §3). Each identifier is described as a
short sequence of (allowed characters, min, max) tokens and matched by one tiny backtracking
matcher, so every rule reads like its regex. Checks return the value unchanged and raise
`IdError` naming the identifier and the rule it broke; they never fix input up silently, except
`normalize_uid`, whose job is to upper-case what a reader delivered.

Only the identifiers the device itself checks live here (UID, EvseID, SessionID, cp_id); EvcoID
and OperatorID checks and `uid_from_bytes` had no caller outside the tests (removed to save
heap; see git history before the memory campaign if the bridge needs them).
"""

import binascii

_DIGITS = "0123456789"
_HEX = "0123456789ABCDEF"
_ALNUM_UP = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ALNUM = _ALNUM_UP + "abcdefghijklmnopqrstuvwxyz"

# UIDType: 8, 14 or 20 upper-case hex digits (4, 7 or 10-byte ISO 14443 UIDs).
UID_LENGTHS = (8, 14, 20)

# EvseIDType, upper case as the AsciiDoc has it since 2023-05 ("send upper case"):
#   ISO  [A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9\*]{1,30}
#   DIN  \+?[0-9]{1,3}\*[0-9]{3}\*[0-9\*]{1,32}
_EVSE_ISO = ((_ALNUM_UP[:26], 2, 2), ("*", 0, 1), (_ALNUM_UP, 3, 3), ("*", 0, 1), ("E", 1, 1),
             (_ALNUM_UP + "*", 1, 30))
_EVSE_DIN = (("+", 0, 1), (_DIGITS, 1, 3), ("*", 1, 1), (_DIGITS, 3, 3), ("*", 1, 1),
             (_DIGITS + "*", 1, 32))

# SessionIDType: [A-Za-z0-9]{8}(-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12} (GUID-shaped, not only hex)
_SESSION = ((_ALNUM, 8, 8), ("-", 1, 1), (_ALNUM, 4, 4), ("-", 1, 1), (_ALNUM, 4, 4),
            ("-", 1, 1), (_ALNUM, 4, 4), ("-", 1, 1), (_ALNUM, 12, 12))

RULE_UID = "must be 8, 14 or 20 hex digits"
RULE_EVSE = "must be <Country>*<OperatorID>*E<ID> (ISO) or +<CC>*<Op>*<ID> (DIN), upper case"
RULE_SESSION = "must be 8-4-4-4-12 letters/digits separated by '-'"
RULE_CP_ID = "must be 1-32 characters of A-Z a-z 0-9 _ -"


class IdError(ValueError):
    """An identifier broke its OICP rule; `kind` names the identifier."""

    def __init__(self, kind, value, rule):
        super().__init__("{} {!r}: {}".format(kind, value, rule))
        self.kind = kind


def _match(s, tokens, i=0, t=0):
    """True if s[i:] matches tokens[t:]; greedy with backtracking (patterns are tiny)."""
    if t == len(tokens):
        return i == len(s)
    allowed, lo, hi = tokens[t]
    n = 0
    while n < hi and i + n < len(s) and s[i + n] in allowed:
        n += 1
    while n >= lo:
        if _match(s, tokens, i + n, t + 1):
            return True
        n -= 1
    return False


def _require_str(kind, s):
    if not isinstance(s, str):
        raise IdError(kind, s, "must be a string")


def normalize_uid(s):
    """RFID UID as OICP wants it: upper-case hex of 8, 14 or 20 characters."""
    _require_str("UID", s)
    if len(s) not in UID_LENGTHS:
        raise IdError("UID", s, RULE_UID + ", got {} characters".format(len(s)))
    up = s.upper()
    for c in up:
        if c not in _HEX:
            raise IdError("UID", s, RULE_UID + ", {!r} is not a hex digit".format(c))
    return up


def check_evse_id(s):
    """EvseIDType (ISO or DIN form), upper case only: that is what we send to Hubject."""
    _require_str("EvseID", s)
    for v in (s, s.upper()):
        if _match(v, _EVSE_ISO) or _match(v, _EVSE_DIN):
            if v is s:
                return s
            raise IdError("EvseID", s, "must be upper case (Hubject upper-cases EvseIDs)")
    raise IdError("EvseID", s, RULE_EVSE)


def check_session_id(s):
    """SessionIDType: GUID-shaped; kept as an opaque string (not restricted to hex)."""
    _require_str("SessionID", s)
    if _match(s, _SESSION):
        return s
    raise IdError("SessionID", s, RULE_SESSION)


def new_session_id(rand16):
    """Format 16 random bytes (the caller's os.urandom(16)) as a version-4 UUID string."""
    if not isinstance(rand16, (bytes, bytearray)) or len(rand16) != 16:
        raise IdError("SessionID", rand16, "needs exactly 16 random bytes")
    b = bytearray(rand16)
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = binascii.hexlify(b).decode()
    return "{}-{}-{}-{}-{}".format(h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def check_cp_id(s):
    """Charge point id used in MQTT topics: 1-32 of [A-Za-z0-9_-] (no '/', '+', '#')."""
    _require_str("cp_id", s)
    if not 1 <= len(s) <= 32:
        raise IdError("cp_id", s, RULE_CP_ID)
    for c in s:
        if c not in _ALNUM and c not in "_-":
            raise IdError("cp_id", s, RULE_CP_ID + ", {!r} is not allowed".format(c))
    return s
