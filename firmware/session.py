"""Session records: what OICP needs for charging notifications and the CDR (§5, §6).

Energy is kept as integer Wh and converted to kWh (3 decimals) only when a message is built,
so ConsumedEnergy == MeterValueEnd - MeterValueStart exactly. Times are epoch seconds (None
while the wall clock is unknown; the tick of each is kept so it can be filled in later).
`CPOPartnerSessionID` is always our own local id; `SessionID` is Hubject's when we have one and
the local id otherwise (local-list and not yet post-authorized offline sessions) - the bridge
can tell the two apart because they are equal then.

A session whose meter failed under the "continue" policy is flagged: its CDR and End carry
"MeteringCheck": "Failed" (accepted by Hubject, oicp-2.3-cpo.md §6) and the energy up to the
last good reading.
"""

from firmware import events as E
from firmware.timefmt import iso_utc

MAX_IN_BETWEEN = 8  # MeterValueInBetween entries kept (SignedMeteringValues allow 10 in all)

# post-authorization state
PA_NONE = 0  # not needed (local list, online answer, remote start)
PA_NEEDED = 1  # accepted offline/from cache: ask the backend when online
PA_SENT = 2
PA_DONE = 3
PA_REJECTED = 4

# persisted record keys -> attribute names
_FIELDS = (("lid", "local_id"), ("sid", "session_id"), ("evse_id", "evse_id"),
           ("ident", "ident"), ("uid", "uid"), ("src", "source"), ("pid", "provider_id"),
           ("stop", "stop_ids"), ("ss", "session_start"), ("cs", "charging_start"),
           ("ce", "charging_end"), ("ms", "meter_start"), ("me", "meter_end"),
           ("mb", "meter_between"), ("mf", "meter_fault"), ("pa", "post_auth"),
           ("mo", "meter_offset"))


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
        self.ss_t = self.cs_t = self.ce_t = None
        self.next_progress = None
        self.progress_n = 0
        self.req = None  # id of an outstanding uplink request for this session
        self.floating = False  # authorized before any plug-in: the first plugged outlet takes it

    def may_stop(self, token):
        """Local stop rule: the starting token or one of AuthorizationStopIdentifications."""
        tok = canonical(token)
        return (self.uid is not None and canonical(self.uid) == tok) or tok in self.stop_ids

    def charged(self):
        return self.charging_start is not None or self.cs_t is not None

    def energy_wh(self):
        if self.meter_start is None or self.meter_end is None:
            return 0
        return self.meter_end - self.meter_start

    def fill_times(self, wall_of):
        """The wall clock became known: date the events that happened before it."""
        if self.session_start is None and self.ss_t is not None:
            self.session_start = wall_of(self.ss_t)
        if self.charging_start is None and self.cs_t is not None:
            self.charging_start = wall_of(self.cs_t)
        if self.charging_end is None and self.ce_t is not None:
            self.charging_end = wall_of(self.ce_t)

    # -- persistence --------------------------------------------------------------------
    def to_record(self):
        d = {}
        for key, attr in _FIELDS:
            v = getattr(self, attr)
            if isinstance(v, tuple):
                v = list(v)
            d[key] = v
        return d

    @classmethod
    def from_record(cls, d):
        """Rebuild a persisted session; ValueError names the first bad field."""
        if not isinstance(d, dict):
            raise ValueError("session record: must be an object")
        for key in ("lid", "sid", "evse_id"):
            if not isinstance(d.get(key), str):
                raise ValueError("session record: {!r} must be a string".format(key))
        for key in ("ss", "cs", "ce", "ms", "me", "mo"):
            v = d.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError("session record: {!r} must be an integer >= 0".format(key))
        if d.get("ms") is not None and d.get("me") is not None and d["me"] < d["ms"]:
            raise ValueError("session record: 'me' below 'ms'")
        s = cls(d["lid"], d["evse_id"], d.get("ident"), d.get("uid"), d.get("src"))
        for key, attr in _FIELDS:
            if key in d and key not in ("lid", "evse_id", "ident", "uid", "src"):
                setattr(s, attr, d[key])
        s.stop_ids = tuple(s.stop_ids or ())
        s.meter_between = list(s.meter_between) if s.meter_between else None
        s.meter_fault = bool(s.meter_fault)
        s.meter_offset = s.meter_offset or 0
        return s

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
            if self.meter_fault:
                d["MeteringCheck"] = "Failed"
            out.append(d)
        return out


def _meter(d, key, wh):
    if wh is not None:
        d[key] = kwh(wh)
