"""The contract between the charging core and the shell: event and action kinds.

Everything crossing the core boundary is a tuple ``(kind, evse, data)``: ``kind`` is one of the
short strings below, ``evse`` the 1-based EVSE number (0 = the whole charge point), ``data`` as
documented per kind. The shell builds events from drivers and the uplink, calls
``Controller.step(event, now)`` with ``now`` = ``ticks_ms()``, and executes the returned actions in
order. ``Controller.next_deadline()`` says when to send the next ``tick`` (ticks value or None).

Shell duties the core relies on: report the pilot whenever its state OR diode_ok changes;
report the contactor mirror once after every command (also a repeated one) when it agrees with
the LATEST command, or as welded / stuck open when it still disagrees after the weld
confirmation time (hal.contactor; a report that contradicts the latest command is read so);
send `time` at boot once the wall clock is plausible; execute actions in order (a CDR
`outbox` comes before the `persist` None of its session). The first `step` after construction
also emits the boot outputs: contactor open, PWM off, state, status.

Events (shell -> core)
----------------------
pilot        evse  (state, diode_ok): state "A".."F", diode_ok bool (negative half seen), or
                   None when it cannot be measured (no PWM running: B1, or states A/E/F)
pp           evse  cable amps from PP: -1 = coding error, 0 = no cable, else 13/20/32/63
contactor    evse  confirmed mirror state after settling: "open"|"closed"|"welded"|"stuck_open"
meter        evse  energy register, int Wh (monotonic; the core tolerates resets by flagging)
meter_fault  evse  reason string; meter_ok evse None
card         0     UID string (hex) when a card enters the field; card_gone 0 None
reader       0     "failed"|"ok"
auth         0     reply to authorize_start/authorize_stop, OICP names plus our "id":
                   {"id", "AuthorizationStatus", "StatusCode": {"Code", ...}, "SessionID",
                    "AuthorizationStopIdentifications", "ProviderID"}; a body with StatusCode
                   and no AuthorizationStatus counts as NotAuthorized
remote_start 0     {"id", "EvseID" or None, "Identification", "SessionID", "ProviderID",
                    "CPOPartnerSessionID"?, "EMPPartnerSessionID"?}
remote_stop  0     {"id", "SessionID", "EvseID"?}
online       0     bool, uplink up/down
tick         0     None (a deadline passed)
time         0     epoch seconds (UTC) at this `now`; timestamps = that + ticks elapsed
local_list   0     {"full": True, "version", "uids"} or
                   {"full": False, "version", "base_version", "add", "remove"}
clear        evse  None: operator clears OutOfService
restore      evse  persisted session record (the value of a "session.<n>" persist action)

Actions (core -> shell)
-----------------------
contactor    evse  bool, True = close
pwm          evse  duty per mille (hal.iec61851: DUTY_OFF = steady +12 V, DUTY_F = -12 V)
send         0     non-durable uplink request; msg["type"] in MSG_AUTHORIZE_START/STOP, with
                   "id" and "deadline" (ticks), "EvseID", "Identification", "SessionID"?,
                   "CPOPartnerSessionID"
outbox       0     durable uplink message with unique "id"; msg["type"] in MSG_NOTIFICATION
                   (OICP ChargingNotification fields incl. "Type": Start|Progress|End|Error),
                   MSG_CDR (OICP ChargeDetailRecord fields, id "cdr-<local id>"),
                   MSG_EVSE_STATUS ({"EvseID", "EvseStatus"}). OperatorID is added by the
                   bridge. CPOPartnerSessionID is always our local id; SessionID equals it when
                   the session has no Hubject SessionID (local list, not post-authorized)
persist      0     (key, value): key "session.<n>" or "locallist"; value None = delete
auth         evse  {"uid", "result", "code"}: what the driver is shown; result is one of
                   oicp_status.driver_display's values
state        evse  internal state name (STATE_* in firmware.charging)
status       evse  OICP EvseStatus: "Available"|"Occupied"|"Reserved"|"OutOfService"
session_start evse session id
session_end  evse  {"session_id", "energy_kwh", "reason"}
display      evse  what the driver is shown besides an authorization answer: DISPLAY_* below
reply        0     answer to remote_start/remote_stop (an eRoamingAcknowledgement):
                   {"id", "Result", "StatusCode": {"Code", "Description"}, "SessionID"?}
error        evse  (kind, message): observable problem (ERR_* below); state was left unchanged
"""

# -- event kinds --------------------------------------------------------------------------
EV_PILOT = "pilot"
EV_PP = "pp"
EV_CONTACTOR = "contactor"
EV_METER = "meter"
EV_METER_FAULT = "meter_fault"
EV_METER_OK = "meter_ok"
EV_CARD = "card"
EV_CARD_GONE = "card_gone"
EV_READER = "reader"
EV_AUTH = "auth"
EV_REMOTE_START = "remote_start"
EV_REMOTE_STOP = "remote_stop"
EV_ONLINE = "online"
EV_TICK = "tick"
EV_TIME = "time"
EV_LOCAL_LIST = "local_list"
EV_CLEAR = "clear"
EV_RESTORE = "restore"

EVENT_KINDS = (
    EV_PILOT, EV_PP, EV_CONTACTOR, EV_METER, EV_METER_FAULT, EV_METER_OK, EV_CARD,
    EV_CARD_GONE, EV_READER, EV_AUTH, EV_REMOTE_START, EV_REMOTE_STOP, EV_ONLINE, EV_TICK,
    EV_TIME, EV_LOCAL_LIST, EV_CLEAR, EV_RESTORE,
)

# -- action kinds -------------------------------------------------------------------------
A_CONTACTOR = "contactor"
A_PWM = "pwm"
A_SEND = "send"
A_OUTBOX = "outbox"
A_PERSIST = "persist"
A_AUTH = "auth"
A_STATE = "state"
A_STATUS = "status"
A_SESSION_START = "session_start"
A_SESSION_END = "session_end"
A_REPLY = "reply"
A_ERROR = "error"
A_DISPLAY = "display"

ACTION_KINDS = (
    A_CONTACTOR, A_PWM, A_SEND, A_OUTBOX, A_PERSIST, A_AUTH, A_STATE, A_STATUS,
    A_SESSION_START, A_SESSION_END, A_REPLY, A_ERROR, A_DISPLAY,
)

# -- driver display messages (A_DISPLAY data) ---------------------------------------------
DISPLAY_VENTILATION = "ventilation_required"  # EV in state D, site not ventilated
DISPLAY_CABLE = "cable_fault"  # PP coding error or no PP resistor on a socket cable

# -- contactor mirror states (EV_CONTACTOR data) ------------------------------------------
CONTACTOR_OPEN = "open"
CONTACTOR_CLOSED = "closed"
CONTACTOR_WELDED = "welded"
CONTACTOR_STUCK_OPEN = "stuck_open"

# -- uplink message types (msg["type"] of send/outbox actions) ---------------------------
MSG_AUTHORIZE_START = "authorize_start"
MSG_AUTHORIZE_STOP = "authorize_stop"
MSG_NOTIFICATION = "notification"
MSG_CDR = "cdr"
MSG_EVSE_STATUS = "evse_status"

# -- OICP EVSE status values (A_STATUS data) ----------------------------------------------
ST_AVAILABLE = "Available"
ST_OCCUPIED = "Occupied"
ST_RESERVED = "Reserved"
ST_OUT_OF_SERVICE = "OutOfService"

# -- error kinds (A_ERROR data[0]) --------------------------------------------------------
ERR_BAD_EVENT = "bad_event"  # unknown kind, bad evse number, malformed data
ERR_BAD_UID = "bad_uid"
ERR_BAD_REPLY = "bad_reply"  # malformed or unexpected auth reply
ERR_LOCAL_LIST = "local_list"  # version mismatch or malformed list
ERR_WELDED = "welded"
ERR_STUCK_OPEN = "stuck_open"
ERR_METER = "meter"
ERR_PILOT = "pilot"  # E/F or diode failure
ERR_READER = "reader"
ERR_RESTORE = "restore"
ERR_VENTILATION = "ventilation"  # EV asks for ventilation (D), the site is not ventilated
ERR_CABLE = "cable"  # PP coding error or missing PP resistor
ERR_CLOCK = "clock"  # an implausible wall clock (before the firmware's build), kept unknown

# -- session end reasons (A_SESSION_END data["reason"]) ----------------------------------
R_LOCAL = "Local"  # card tap at the charge point
R_REMOTE = "Remote"  # remote stop
R_EV_DISCONNECTED = "EVDisconnected"
R_DEAUTHORIZED = "DeAuthorized"  # post-authorization said NotAuthorized
R_FAULT = "Fault"  # contactor, pilot or diode fault
R_METER_FAULT = "MeterFault"
R_POWER_LOSS = "PowerLoss"  # closed at boot from a persisted record


def event(kind, evse=0, data=None):
    """Build an event tuple (a helper for the shell and tests)."""
    return (kind, evse, data)
