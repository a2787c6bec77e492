"""Session records: what OICP needs for charging notifications and the CDR (§5, §6).

Energy is kept as integer Wh and converted to kWh (3 decimals) only when a message is built,
so ConsumedEnergy == MeterValueEnd - MeterValueStart exactly. Times are epoch seconds (None
while the wall clock is unknown; the tick of each is kept so it can be filled in later).
`CPOPartnerSessionID` is always our own local id; `SessionID` is Hubject's when we have one and
the local id otherwise (local-list and not yet post-authorized offline sessions) - the bridge
can tell the two apart because they are equal then.

A session whose meter failed under the "continue" policy is flagged: its CDR and End carry
"MeteringCheck": "Failed" (accepted by Hubject, oicp-2.3-cpo.md §6) and the energy up to the
last good reading. So is one that charged with no meter reading at its start or end (a meter
that never answered, meter type "none"): its 0 kWh is not a measurement.

The record on flash (`session.<local id>.json`, `to_record`) names each field as OICP does
(oicp-2.3-cpo.md §5 notifications, §6 CDR), in this firmware's units: times are epoch seconds
UTC (OICP: ISO 8601), meter values integer Wh (OICP: kWh with 3 decimals; integers keep
ConsumedEnergy exact). CPOPartnerSessionID, SessionID, EvseID, Identification, UID (of the card
that started it; null for a remote start), ProviderID, SessionStart, ChargingStart,
ChargingEnd, MeterValueStart, MeterValueEnd, MeterValueInBetween (a plain list of Wh, not
OICP's {"meterValues": [...]}). Fields OICP has no name for:
  AuthorizedBy             how it was authorized: the CDR's "auth" (local, cache, ...)
  AuthorizationStopTokens  the canonical tokens of the AuthorizationStopIdentifications (§11)
  MeterFault               the meter failed during the session: MeteringCheck "Failed"
  MeterOffset              Wh counted before the meter's register fell back (re-based)
  PostAuthorization        0 not needed, 1 needed, 2 sent, 3 done, 4 rejected (PA_*)
Firmware before issue 14 wrote two- and three-letter keys (lid, sid, ss, ...): `migrate` reads
them; the shell rewrites such a file at boot.
"""

from firmware import events as E
from firmware.ids import IdError, check_session_id
from firmware.timefmt import CLOCK_FLOOR_S, MAX_EPOCH_S, iso_utc

MAX_IN_BETWEEN = 8  # MeterValueInBetween entries kept (SignedMeteringValues allow 10 in all)

# post-authorization state
PA_NONE = 0  # not needed (local list, online answer, remote start)
PA_NEEDED = 1  # accepted offline/from cache: ask the backend when online
PA_SENT = 2
PA_DONE = 3
PA_REJECTED = 4

# record key -> Session attribute (the module docstring says what each holds)
_FIELDS = (("CPOPartnerSessionID", "local_id"), ("SessionID", "session_id"),
           ("EvseID", "evse_id"), ("Identification", "ident"), ("UID", "uid"),
           ("AuthorizedBy", "source"), ("ProviderID", "provider_id"),
           ("AuthorizationStopTokens", "stop_ids"), ("SessionStart", "session_start"),
           ("ChargingStart", "charging_start"), ("ChargingEnd", "charging_end"),
           ("MeterValueStart", "meter_start"), ("MeterValueEnd", "meter_end"),
           ("MeterValueInBetween", "meter_between"), ("MeterFault", "meter_fault"),
           ("PostAuthorization", "post_auth"), ("MeterOffset", "meter_offset"))
# what each field of _FIELDS holds, a word each: id (checked one by one in from_record), str,
# tokens (a list of str), time (epoch s), wh (Wh), whs (a list of Wh), flag (bool), pa
# (PA_NONE..PA_REJECTED). Words here, not a third column of _FIELDS: that costs 576 B of heap.
_KINDS = "id id id id id id str tokens time time time wh wh whs flag pa wh"


KEY_PREFIX = "session."  # one record per session: "session.<local id>"


def record_key(local_id):
    """The store key of a session's record: one per session, never shared, so no record can
    overwrite or delete another session's (two sessions may be open on one EVSE across a
    power cut: the restored one and a new one)."""
    return KEY_PREFIX + local_id


def migrate(d):
    """Record `d` (a dict) with the current keys: one written by firmware before issue 14
    (short keys) comes back as a new dict with the OICP names, any other as `d` itself (so
    `migrate(d) is d` says nothing needed rewriting). A key present in both forms keeps its
    current value."""
    out = d
    i = 0
    # the old keys, in _FIELDS order: one string, as a tuple of 17 costs ~480 B of heap
    for old in "lid sid evse_id ident uid src pid stop ss cs ce ms me mb mf pa mo".split():
        if old in d:
            if out is d:
                out = dict(d)
            v = out.pop(old)
            if _FIELDS[i][0] not in out:
                out[_FIELDS[i][0]] = v
        i += 1
    return out


def is_session_id(v):
    """True if `v` is a valid OICP SessionID (ids.check_session_id)."""
    try:
        check_session_id(v)
        return True
    except IdError:
        return False


def kwh(wh):
    return round(wh / 1000, 3)


def rfid_ident(uid):
    return {"RFIDMifareFamilyIdentification": {"UID": uid}}


def ident_token(ident):
    """The canonical token of an OICP Identification (UID or EvcoID), or None."""
    if not isinstance(ident, dict):
        return None
    for key, inner in (("RFIDMifareFamilyIdentification", "UID"), ("RFIDIdentification", "UID"),
                       ("RemoteIdentification", "EvcoID"), ("PlugAndChargeIdentification",
                                                            "EvcoID")):
        v = ident.get(key)
        if isinstance(v, dict) and isinstance(v.get(inner), str):
            return canonical(v[inner])
    return None


def canonical(token):
    """Upper case without separators, so DE*ICE*... and DE-ICE-... compare equal."""
    return token.upper().replace("*", "").replace("-", "")


class Session:
    def __init__(self, local_id, evse_id, ident, uid, source):
        self.local_id = local_id
        self.session_id = local_id
        self.evse_id = evse_id
        self.ident = ident
        self.uid = uid
        self.source = source
        self.provider_id = None
        self.stop_ids = ()
        self.session_start = None
        self.charging_start = None
        self.charging_end = None
        self.meter_start = None
        self.meter_end = None
        self.meter_between = None
        self.meter_fault = False
        self.meter_offset = 0  # Wh counted before the register fell back (re-based)
        self.post_auth = PA_NONE
        # ticks ms of the same three events: dated once the wall clock is known (fill_times)
        self.session_start_tick = self.charging_start_tick = self.charging_end_tick = None
        self.next_progress = None
        self.progress_n = 0
        self.req = None  # id of an outstanding uplink request for this session
        self.retry_at = None  # ticks ms: ask again for an undecided post-authorization
        self.floating = False  # authorized before any plug-in: the first plugged outlet takes it

    def may_stop(self, token):
        """Local stop rule: "own" if `token` started this session, "stop_id" if it is one of
        its AuthorizationStopIdentifications, else None."""
        tok = canonical(token)
        if self.uid is not None and canonical(self.uid) == tok:
            return "own"
        return "stop_id" if tok in self.stop_ids else None

    def charged(self):
        return self.charging_start is not None or self.charging_start_tick is not None

    def energy_wh(self):
        if self.meter_start is None or self.meter_end is None:
            return 0
        return self.meter_end - self.meter_start

    def fill_times(self, wall_of):
        """The wall clock became known: date the events that happened before it."""
        if self.session_start is None and self.session_start_tick is not None:
            self.session_start = wall_of(self.session_start_tick)
        if self.charging_start is None and self.charging_start_tick is not None:
            self.charging_start = wall_of(self.charging_start_tick)
        if self.charging_end is None and self.charging_end_tick is not None:
            self.charging_end = wall_of(self.charging_end_tick)

    # -- persistence --------------------------------------------------------------------
    def to_record(self):
        """The record to persist: a dict of _FIELDS' keys (the module docstring)."""
        d = {}
        for key, attr in _FIELDS:
            v = getattr(self, attr)
            if isinstance(v, tuple):
                v = list(v)
            d[key] = v
        return d

    @classmethod
    def from_record(cls, d, evse_id, new_id):
        """Rebuild a persisted session, field by field: what cannot be trusted is dropped
        and named. Returns (session, problems) -- problems a list of "field: why" strings,
        empty for a sound record. A bad local id becomes the SessionID (if valid) or a
        fresh `new_id()`; a bad time or meter value becomes unknown and flags the record
        (MeteringCheck Failed); a bad charging start counts as "charged" (the meter is read:
        a session whose charging state is unknown is billed, never lost). Times must lie
        within [timefmt.CLOCK_FLOOR_S, MAX_EPOCH_S). `evse_id` is the EVSE the record was
        found for. A record with the keys of older firmware is read through `migrate`.
        ValueError only if `d` is not an object."""
        if not isinstance(d, dict):
            raise ValueError("session record: must be an object")
        d = migrate(d)
        bad = []
        lid = d.get("CPOPartnerSessionID")
        sid = d.get("SessionID")
        if not is_session_id(lid):
            bad.append("CPOPartnerSessionID: not a SessionID")
            lid = sid if is_session_id(sid) else new_id()
        if not is_session_id(sid):
            if "SessionID" in d:
                bad.append("SessionID: not a SessionID")
            sid = lid
        if d.get("EvseID") != evse_id:
            bad.append("EvseID: {!r} is not {}".format(d.get("EvseID"), evse_id))
        uid = d.get("UID") if isinstance(d.get("UID"), str) else None
        ident = d.get("Identification")
        if ident_token(ident) is None:
            bad.append("Identification: not an OICP Identification")
            ident = rfid_ident(uid) if uid is not None else None
        source = d.get("AuthorizedBy")
        s = cls(lid, evse_id, ident, uid, source if isinstance(source, str) else None)
        s.session_id = sid
        kinds = _KINDS.split()
        for i in range(6, len(_FIELDS)):
            key, attr = _FIELDS[i]
            kind = kinds[i]
            v = d.get(key)
            if kind == "flag" and isinstance(v, bool):
                s.meter_fault = s.meter_fault or v  # a flag raised above stays raised
                continue
            if v is None:
                setattr(s, attr, v)
                continue
            if kind in ("time", "wh", "pa"):
                ok = type(v) is int and v >= 0  # type: a bool is an int to isinstance
                if kind == "time":
                    ok = ok and CLOCK_FLOOR_S <= v < MAX_EPOCH_S
                elif kind == "pa":
                    ok = ok and v <= PA_REJECTED
            elif kind == "str":
                ok = isinstance(v, str)
            else:  # tokens, whs; a flag that is not a bool fails unless it is a list of ints
                ok = isinstance(v, list) and all(
                    isinstance(x, str) if kind == "tokens" else type(x) is int for x in v)
            if ok:
                setattr(s, attr, v)
            else:
                bad.append("{}: {!r} is not valid".format(key, v))
                if kind in ("wh", "whs") or key == "ChargingStart":
                    s.meter_fault = True  # the energy is no measurement then
                if key == "ChargingStart":  # did it charge? unknown: bill what the meter says
                    s.charging_start = s.session_start
                    s.charging_start_tick = 0
        if s.meter_start is not None and s.meter_end is not None \
                and s.meter_end < s.meter_start:
            bad.append("MeterValueEnd: {} is below MeterValueStart {}".format(
                s.meter_end, s.meter_start))
            s.meter_end = None
            s.meter_fault = True
        s.stop_ids = tuple(s.stop_ids or ())
        s.meter_fault = bool(s.meter_fault)
        s.meter_offset = s.meter_offset or 0
        s.post_auth = s.post_auth or PA_NONE
        return s, bad

    # -- messages -----------------------------------------------------------------------
    def _base(self, msg_id, kind):
        """The common fields of a ChargingNotification of `kind`, or of the CDR (kind None)."""
        d = {"type": E.MSG_CDR if kind is None else E.MSG_NOTIFICATION, "id": msg_id,
             "SessionID": self.session_id, "CPOPartnerSessionID": self.local_id,
             "EvseID": self.evse_id, "Identification": self.ident}
        if kind is not None:
            d["Type"] = kind
        return d

    def _started(self, msg_id, kind):
        d = self._base(msg_id, kind)
        d["ChargingStart"] = iso_utc(self.charging_start)
        d["SessionStart"] = iso_utc(self.session_start)
        _meter(d, "MeterValueStart", self.meter_start)
        return d

    def start_notification(self):
        return self._started(self.local_id + ".start", "Start")

    def progress_notification(self, wall_now, duration_ms):
        self.progress_n += 1
        d = self._started("{}.p{}".format(self.local_id, self.progress_n), "Progress")
        d["EventOccurred"] = iso_utc(wall_now)
        d["ChargingDuration"] = duration_ms
        d["ConsumedEnergyProgress"] = kwh(self.energy_wh())
        if self.meter_end is not None:
            mb = self.meter_between
            if mb is None:
                mb = self.meter_between = []
            if len(mb) < MAX_IN_BETWEEN:
                mb.append(self.meter_end)
        return d

    def error_notification(self, critical, info):
        self.progress_n += 1
        d = self._base("{}.x{}".format(self.local_id, self.progress_n), "Error")
        d["ErrorType"] = "CriticalError" if critical else "ConnectorError"
        d["ErrorAdditionalInfo"] = info[:250]
        return d

    def end_records(self, session_end):
        """The End notification and the one CDR of this session. The CDR id is stable, so a
        re-emission after a power cut is recognised as the same message."""
        out = []
        for msg_id, kind in ((self.local_id + ".end", "End"), ("cdr-" + self.local_id, None)):
            d = self._started(msg_id, kind)
            d["ChargingEnd"] = iso_utc(self.charging_end)
            d["SessionEnd"] = iso_utc(session_end)
            d["ConsumedEnergy"] = kwh(self.energy_wh())
            _meter(d, "MeterValueEnd", self.meter_end)
            if self.meter_between:
                d["MeterValueInBetween"] = {"meterValues": [kwh(w) for w in self.meter_between]}
            if self.provider_id:
                d["ProviderID"] = self.provider_id
            if kind is None:
                # how the session was authorized (contract: the bridge post-authorizes a CDR
                # accepted without Hubject, and stores a local-list customer's itself)
                d["auth"] = self.source
            if self.meter_fault or (self.charged() and (self.meter_start is None
                                                        or self.meter_end is None)):
                # energy that no meter reading backs (a failed or absent meter, meter "none")
                # is not trustworthy: the record says so instead of a silent 0.0 kWh
                d["MeteringCheck"] = "Failed"
            out.append(d)
        return out


def _meter(d, key, wh):
    if wh is not None:
        d[key] = kwh(wh)
