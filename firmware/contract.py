"""The uplink contract: what a charge point and its backend (the OICP bridge) say over MQTT.

This docstring is the reference; the firmware (`firmware.uplink`) and the bridge (`tools/`)
both import this module, so a topic or a field has one spelling. Payloads are compact UTF-8
JSON objects whose field names are OICP 2.3's as-is (`EvseID`, `SessionID`, `Identification`,
`AuthorizationStatus`, `StatusCode`, ...; ../shared/reference/oicp-2.3-cpo.md) plus our own
`type` and `id`. MQTT 3.1.1; every topic below is under the charge point's own tree, so a
broker ACL confines a device (tools/mosquitto/acl: user = cp_id may publish only to its
`availability`, `birth`, `health`, `status/#` and `up/#`, and read only its `down/#`; the backend
account reads `mpevse/+/#` and writes `mpevse/+/down/#`). A new up branch needs an ACL line.

Topics (`<cp>` = config `cp_id`, `<n>` = EVSE number 1..4)
-----------------------------------------------------------
up (charge point -> backend)            QoS retain  payload
  mpevse/<cp>/availability               1    yes   b"online"; last will b"offline" (retained)
  mpevse/<cp>/birth                      1    yes   {"cp_id", "EvseIDs": [...], "fw", "boot"}
                                                    after EVERY (re)connect; `boot` is random
                                                    per boot, so a backend can tell reboots
  mpevse/<cp>/up/authorize               1    no    {"type": "authorize_start"|
                                                    "authorize_stop", "id", "ttl_ms", "EvseID",
                                                    "Identification", "SessionID"?,
                                                    "CPOPartnerSessionID"?}: answer within
                                                    ttl_ms or the charge point decides offline
  mpevse/<cp>/up/notification            1    no    durable: {"type": "notification", "id",
                                                    "Type": Start|Progress|End|Error, ...OICP
                                                    ChargingNotification fields}
  mpevse/<cp>/up/cdr                     1    no    durable: {"type": "cdr", "id":
                                                    "cdr-<CPOPartnerSessionID>", "auth",
                                                    ...OICP ChargeDetailRecord fields}; "auth"
                                                    says who authorized the session: "online"
                                                    | "remote" (Hubject: SessionID is its),
                                                    "local" (the operator's own list: no
                                                    Hubject business), "cache" | "free_vend"
                                                    (accepted without Hubject: when SessionID
                                                    is still the local id, the backend
                                                    post-authorizes before sending the CDR)
  mpevse/<cp>/status/<n>                 1    yes   durable: {"type": "evse_status", "id",
                                                    "EvseID", "EvseStatus"}
  mpevse/<cp>/health                     1    yes   {"outbox": durable messages waiting,
                                                    "late": answers that came too late,
                                                    "bad": unusable downlink messages, "boot"}:
                                                    after every (re)connect, then on a change
                                                    at most once a minute; not durable
  mpevse/<cp>/up/reply                   1    no    the answer to every downlink command that
                                                    has an "id": {"id", "Result": bool,
                                                    "StatusCode": {"Code", "Description",
                                                    "AdditionalInfo"?}, "SessionID"?}
down (backend -> charge point): mpevse/<cp>/down/<kind>, QoS 1, never retained
  authorize     the answer to up/authorize: {"id" (the request's), "AuthorizationStatus":
                "Authorized"|"NotAuthorized", "StatusCode", "SessionID"?, "ProviderID"?,
                "AuthorizationStopIdentifications"?, "NoDecision"?: true}. No reply. A late or
                unknown answer is ignored and counted (the request's deadline passed: the
                offline policy ruled). NoDecision: the backend could not get Hubject's decision
                (time-out 310, unavailable 320, unusable answer 021, an error-only body); a tap
                is refused with that code, but a running session being post-authorized goes
                on and is asked about again 60 s later (a refusal would stop it).
  ack           {"ids": [id, ...]}: those durable messages were accepted by their final
                receiver (Hubject: `Result: true`, or the operator's CDR store); they leave
                the outbox. Unknown ids are ignored (an ack may be redelivered). No reply.
  time          {"time": epoch seconds UTC}: the backend's clock, sent when it sees a birth;
                used only if no better clock is known and it is not before the release floor
  remote_start  {"id", "SessionID", "Identification", "EvseID"?, "ProviderID"?,
                "CPOPartnerSessionID"?, "EMPPartnerSessionID"?} -> reply with the core's code:
                000 started, 602 in use, 601 reserved, 603 unknown EVSE, 700 out of service,
                510 no EV connected, 022 bad data
  remote_stop   {"id", "SessionID", "EvseID"?} -> reply 000 or 400 (session invalid)
  local_list    {"id", "full": true, "version", "uids"} or {"id", "full": false, "version",
                "base_version", "add", "remove"} -> reply 000 (persisted) or 022 with why
                (wrong base version, bad UID: the update is refused as a whole)
  config        {"id", "config": {...a whole config.json...}} -> validated like config.json
                (firmware.config); reply 000 then the charge point restarts with it, or 022
                naming the field; nothing is applied in part
  reset         {"id"} -> reply 000, then the charge point restarts (open sessions are closed
                at the next boot like after a power cut, with their CDRs)

Delivery and ids
----------------
- Durable messages (notifications, CDRs, EVSE status) are on flash (firmware.store.Outbox)
  before they are published, and leave it only on a `down/ack` naming their id; after a
  reconnect or a reboot everything unacknowledged is published again, oldest first. Ids are
  stable (`cdr-<local id>`, `<local id>.start`, ...): a receiver de-duplicates by id, so a
  redelivery is harmless. At most WINDOW of them are published and unacknowledged at once.
- Requests (up/authorize) are not durable: their answer is only useful before `ttl_ms`.
- Replies are published QoS 1 and not stored: a backend that lost one repeats the command
  with the same id, and remote start/stop answer a repeated SessionID with the same result.

Limits and errors
-----------------
- An up payload is at most MAX_UP bytes, a down payload at most MAX_DOWN bytes (a local list
  longer than that goes as several deltas). Up topics carry only the types above.
- A bad downlink message changes nothing and is answered on up/reply: {"id": its id or None,
  "Result": false, "StatusCode": {"Code": "022", "Description": "...", "AdditionalInfo":
  "<reason>"}} for malformed JSON, a payload over MAX_DOWN, a non-object, a missing or
  non-string id, wrong types, an unknown kind (down/<kind> not listed), an unknown EVSE (603),
  a local-list version mismatch, an invalid config field. Messages without a reply (authorize,
  ack, time) that are bad are reported as an `error` event on the device and counted.
"""

import json

PREFIX = "mpevse"
QOS = 1
MAX_UP = 2048  # bytes; the outbox keeps records up to 2 KB (a CDR is ~700 B)
MAX_DOWN = 4096  # bytes; an ESP32 reads a down message into its heap in one piece
WINDOW = 2  # durable messages published and not yet acknowledged, at most: each in flight
# holds its ~600 B payload in the transport; at 128k with TLS and 52 waiting, a window of 4 ends
# the drain in a MemoryError and 2 does not (tools/bench_uplink.py --only mqtts)

ONLINE = b"online"
OFFLINE = b"offline"

# up kinds
UP_AUTHORIZE = "authorize"
UP_NOTIFICATION = "notification"
UP_CDR = "cdr"
UP_REPLY = "reply"

# down kinds (the last topic level)
DOWN_AUTHORIZE = "authorize"
DOWN_ACK = "ack"
DOWN_TIME = "time"
DOWN_REMOTE_START = "remote_start"
DOWN_REMOTE_STOP = "remote_stop"
DOWN_LOCAL_LIST = "local_list"
DOWN_CONFIG = "config"
DOWN_RESET = "reset"
DOWN_KINDS = (DOWN_AUTHORIZE, DOWN_ACK, DOWN_TIME, DOWN_REMOTE_START, DOWN_REMOTE_STOP,
              DOWN_LOCAL_LIST, DOWN_CONFIG, DOWN_RESET)
NO_REPLY = (DOWN_AUTHORIZE, DOWN_ACK, DOWN_TIME)  # answered by nothing (or by the deed)

DATA_ERROR = "022"  # oicp_status.DATA_ERROR: the message cannot be used


def tree(cp_id):
    """`mpevse/<cp_id>`: the charge point's own topic tree."""
    return PREFIX + "/" + cp_id


def availability_topic(cp_id):
    return tree(cp_id) + "/availability"


def birth_topic(cp_id):
    return tree(cp_id) + "/birth"


def health_topic(cp_id):
    """`mpevse/<cp>/health`, retained: outbox depth and counters, for the operator."""
    return tree(cp_id) + "/health"


def up_topic(cp_id, kind):
    """`mpevse/<cp>/up/<kind>` for kind in UP_AUTHORIZE, UP_NOTIFICATION, UP_CDR, UP_REPLY."""
    return tree(cp_id) + "/up/" + kind


def status_topic(cp_id, n):
    """`mpevse/<cp>/status/<n>`, retained: EVSE n's latest status."""
    return tree(cp_id) + "/status/" + str(n)


def down_topic(cp_id, kind):
    return tree(cp_id) + "/down/" + kind


def down_filter(cp_id):
    """What a charge point subscribes to: its own downlink, nothing else."""
    return tree(cp_id) + "/down/#"


def durable_topic(cp_id, msg, evse_ids):
    """The topic of a durable outbox message (dict with "type"); ValueError if none."""
    kind = msg.get("type")
    if kind == "evse_status":
        ev = msg.get("EvseID")
        if ev not in evse_ids:
            raise ValueError("evse_status for an EvseID not of this charge point")
        return status_topic(cp_id, evse_ids.index(ev) + 1)
    if kind in (UP_NOTIFICATION, UP_CDR):
        return up_topic(cp_id, kind)
    raise ValueError("no topic for a durable message of type {!r}".format(kind))


def text_field(data, key):
    """The string value of `key` in a compact or spaced JSON object `data` (bytes) as the
    outbox stores it, without decoding the object; None if absent. Only for keys that occur
    once and hold a plain string (the durable messages' "type" and "EvseID": no OICP member
    nested inside them is called so)."""
    pat = b'"' + key.encode() + b'"'
    i = data.find(pat)
    if i < 0:
        return None
    i += len(pat)
    n = len(data)
    while i < n and data[i] in (32, 58):  # spaces and the colon
        i += 1
    if i >= n or data[i] != 34:
        return None
    j = i + 1
    while j < n and data[j] != 34:
        if data[j] == 92:  # a backslash: not a plain string
            return None
        j += 1
    return data[i + 1:j].decode() if j < n else None


def durable_topic_of(cp_id, data, evse_ids):
    """durable_topic for a stored message's JSON text (outbox walk with raw=True)."""
    return durable_topic(cp_id, {"type": text_field(data, "type"),
                                 "EvseID": text_field(data, "EvseID")}, evse_ids)


def encode(obj):
    """Compact JSON bytes; ValueError if longer than MAX_UP."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    if len(data) > MAX_UP:
        raise ValueError("up message of {} bytes > MAX_UP {}".format(len(data), MAX_UP))
    return data


class BadMessage(ValueError):
    """A downlink message that cannot be used: `code` (OICP), `reason` (text), `id` (the
    command's id if one could be read, else None)."""

    def __init__(self, reason, msg_id=None, code=DATA_ERROR):
        super().__init__(reason)
        self.reason = reason
        self.id = msg_id
        self.code = code


def parse_down(cp_id, topic, payload):
    """(kind, body) of a downlink message on `topic` (str) with `payload` (bytes).

    Checks what the contract promises for every kind: the topic is this charge point's
    downlink, the kind is known, the payload fits MAX_DOWN and is a JSON object, commands that
    are replied to carry a string "id", `ack` carries a list of ids, `time` an integer. What a
    command means (a valid SessionID, a known EVSE, a list version) is the core's to judge.
    Raises BadMessage naming the reason (with the id when one could be read)."""
    prefix = tree(cp_id) + "/down/"
    if not topic.startswith(prefix):
        raise BadMessage("not this charge point's downlink: " + topic[:80])
    kind = topic[len(prefix):]
    if len(payload) > MAX_DOWN:
        raise BadMessage("{}: payload of {} bytes > MAX_DOWN {}".format(
            kind[:40], len(payload), MAX_DOWN))
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeError):
        raise BadMessage(kind[:40] + ": not valid JSON") from None
    if not isinstance(body, dict):
        raise BadMessage(kind[:40] + ": must be a JSON object")
    msg_id = body.get("id")
    if not isinstance(msg_id, str) or not 1 <= len(msg_id) <= 64:
        msg_id = None
    if kind not in DOWN_KINDS:
        raise BadMessage("unknown command kind {!r}".format(kind[:40]), msg_id)
    if msg_id is None and (kind not in NO_REPLY or kind == DOWN_AUTHORIZE):
        raise BadMessage(kind + ": need a string 'id' of 1-64 characters")
    if kind == DOWN_ACK:
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids:
            raise BadMessage("ack: need a non-empty list 'ids'", msg_id)
        for i in ids:
            if type(i) not in (str, int):  # type: a bool is an int to isinstance
                raise BadMessage("ack: ids must be strings or integers", msg_id)
    elif kind == DOWN_TIME:
        t = body.get("time")
        if type(t) is not int:
            raise BadMessage("time: need integer epoch seconds 'time'", msg_id)
    elif kind == DOWN_CONFIG:
        if not isinstance(body.get("config"), dict):
            raise BadMessage("config: need an object 'config'", msg_id)
    elif kind == DOWN_LOCAL_LIST:
        if not isinstance(body.get("full"), bool):
            raise BadMessage("local_list: need a bool 'full'", msg_id)
    return kind, body


def reply(msg_id, ok, code, description, info=None, session_id=None):
    """The up/reply body for a command (an eRoamingAcknowledgement shape)."""
    sc = {"Code": code, "Description": description}
    if info:
        sc["AdditionalInfo"] = info[:200]
    r = {"id": msg_id, "Result": ok, "StatusCode": sc}
    if session_id is not None:
        r["SessionID"] = session_id
    return r
