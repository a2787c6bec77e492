"""OICP identifiers, checked by hand (MicroPython's `re` has no counted repetition `{n}`).

The rules are the OICP 2.3 regexes (oicp-2.3-cpo.md §3). Each identifier is described as a
short sequence of (allowed characters, min, max) tokens and matched by one tiny backtracking
matcher, so every rule reads like its regex. Checks return the value unchanged and raise
`IdError` naming the identifier and the rule it broke; they never fix input up silently, except
`normalize_uid`, whose job is to upper-case what a reader delivered.
"""

import binascii

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_HEX = "0123456789ABCDEF"
_ALNUM_UP = _UPPER + _DIGITS
_ALPHA = _UPPER + _LOWER
_ALNUM = _ALPHA + _DIGITS

# UIDType: 8, 14 or 20 upper-case hex digits (4, 7 or 10-byte ISO 14443 UIDs).
UID_LENGTHS = (8, 14, 20)
UID_BYTE_LENGTHS = (4, 7, 10)

# EvseIDType, upper case as the AsciiDoc has it since 2023-05 ("send upper case"):
#   ISO  [A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9\*]{1,30}
#   DIN  \+?[0-9]{1,3}\*[0-9]{3}\*[0-9\*]{1,32}
_EVSE_ISO = ((_UPPER, 2, 2), ("*", 0, 1), (_ALNUM_UP, 3, 3), ("*", 0, 1), ("E", 1, 1),
             (_ALNUM_UP + "*", 1, 30))
_EVSE_DIN = (("+", 0, 1), (_DIGITS, 1, 3), ("*", 1, 1), (_DIGITS, 3, 3), ("*", 1, 1),
             (_DIGITS + "*", 1, 32))

# EvcoIDType (EMAID). The spec regex writes `[\*|\-]` and `[\d|X]`: inside a character class
# `|` is a literal pipe, an obvious slip, so a pipe is NOT accepted here.
#   ISO  [A-Za-z]{2}\-?[A-Za-z0-9]{3}\-?C[A-Za-z0-9]{8}\-?[0-9A-Za-z]
#   DIN  [A-Za-z]{2}[\*\-]?[A-Za-z0-9]{3}[\*\-]?[A-Za-z0-9]{6}[\*\-]?[0-9X]
_EVCO_ISO = ((_ALPHA, 2, 2), ("-", 0, 1), (_ALNUM, 3, 3), ("-", 0, 1), ("C", 1, 1),
             (_ALNUM, 8, 8), ("-", 0, 1), (_ALNUM, 1, 1))
_EVCO_DIN = ((_ALPHA, 2, 2), ("*-", 0, 1), (_ALNUM, 3, 3), ("*-", 0, 1), (_ALNUM, 6, 6),
             ("*-", 0, 1), (_DIGITS + "X", 1, 1))

# OperatorIDType: [A-Za-z]{2}\*?[A-Za-z0-9]{3} | \+?[0-9]{1,3}\*[0-9]{3}
_OPERATOR_ISO = ((_ALPHA, 2, 2), ("*", 0, 1), (_ALNUM, 3, 3))
_OPERATOR_DIN = (("+", 0, 1), (_DIGITS, 1, 3), ("*", 1, 1), (_DIGITS, 3, 3))

# SessionIDType: [A-Za-z0-9]{8}(-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12} (GUID-shaped, not only hex)
_SESSION = ((_ALNUM, 8, 8), ("-", 1, 1), (_ALNUM, 4, 4), ("-", 1, 1), (_ALNUM, 4, 4),
            ("-", 1, 1), (_ALNUM, 4, 4), ("-", 1, 1), (_ALNUM, 12, 12))

_CP_ID_CHARS = _ALNUM + "_-"
CP_ID_MAX = 32

RULE_UID = "must be 8, 14 or 20 hex digits (a 4, 7 or 10-byte UID)"
RULE_EVSE = ("must be <Country>*<OperatorID>*E<ID> (ISO, e.g. DE*AB7*E840*6487, '*' optional, "
             "ID 1-30 of A-Z 0-9 *) or +<CC>*<Op>*<ID> (DIN, e.g. +49*810*000*438), upper case")
RULE_EVCO = ("must be <CC>-<Prov>-C<8 chars>-<check> (ISO, e.g. DE-8EO-CAet5e4XY-3, '-' optional) "
             "or <CC>*<Prov>*<6 chars>*<digit|X> (DIN, e.g. DE*8EO*Aet5e4*3, '*' or '-' optional)")
RULE_OPERATOR = "must be <Country>*<3 chars> (ISO, e.g. DE*A36) or +<CC>*<3 digits> (DIN)"
RULE_SESSION = "must be 8-4-4-4-12 letters/digits separated by '-' (OICP SessionID)"
RULE_CP_ID = "must be 1-32 characters of A-Z a-z 0-9 _ -"


class IdError(ValueError):
    """An identifier broke its OICP rule; `kind` names the identifier, `rule` the rule."""

    def __init__(self, kind, value, rule):
        super().__init__("{} {!r}: {}".format(kind, value, rule))
        self.kind = kind
        self.value = value
        self.rule = rule


def _match(s, i, tokens, t):
    """True if s[i:] matches tokens[t:]; greedy with backtracking (patterns are tiny)."""
    if t == len(tokens):
        return i == len(s)
    allowed, lo, hi = tokens[t]
    n = 0
    while n < hi and i + n < len(s) and s[i + n] in allowed:
        n += 1
    while n >= lo:
        if _match(s, i + n, tokens, t + 1):
            return True
        n -= 1
    return False


def matches(s, tokens):
    """Whole-string match of `s` against a token pattern (exported for other checks/tests)."""
    return _match(s, 0, tokens, 0)


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


def uid_from_bytes(b):
    """UID bytes from a reader (4, 7 or 10 of them, first byte first) -> upper-case hex."""
    if not isinstance(b, (bytes, bytearray)):
        raise IdError("UID", b, "must be bytes")
    if len(b) not in UID_BYTE_LENGTHS:
        raise IdError("UID", bytes(b), "must be 4, 7 or 10 bytes, got {}".format(len(b)))
    return binascii.hexlify(b).decode().upper()


def check_evse_id(s):
    """EvseIDType (ISO or DIN form), upper case only: that is what we send to Hubject."""
    _require_str("EvseID", s)
    if matches(s, _EVSE_ISO) or matches(s, _EVSE_DIN):
        return s
    if s != s.upper() and (matches(s.upper(), _EVSE_ISO) or matches(s.upper(), _EVSE_DIN)):
        raise IdError("EvseID", s, "must be upper case (Hubject upper-cases EvseIDs)")
    raise IdError("EvseID", s, RULE_EVSE)


def check_evco_id(s):
    """EvcoIDType (EMAID, ISO or DIN form); case is kept as given (Hubject upper-cases it)."""
    _require_str("EvcoID", s)
    if matches(s, _EVCO_ISO) or matches(s, _EVCO_DIN):
        return s
    raise IdError("EvcoID", s, RULE_EVCO)


def check_operator_id(s):
    """OperatorIDType (ISO or DIN form)."""
    _require_str("OperatorID", s)
    if matches(s, _OPERATOR_ISO) or matches(s, _OPERATOR_DIN):
        return s
    raise IdError("OperatorID", s, RULE_OPERATOR)


def check_session_id(s):
    """SessionIDType: GUID-shaped; kept as an opaque string (not restricted to hex)."""
    _require_str("SessionID", s)
    if matches(s, _SESSION):
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
    if not 1 <= len(s) <= CP_ID_MAX:
        raise IdError("cp_id", s, RULE_CP_ID)
    for c in s:
        if c not in _CP_ID_CHARS:
            raise IdError("cp_id", s, RULE_CP_ID + ", {!r} is not allowed".format(c))
    return s
