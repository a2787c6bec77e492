"""The charge point core: card routing, authorization, remote start/stop, timers, sessions.

Pure: `step(event, now) -> actions` (see firmware/events.py for the contract). Per EVSE the
power side lives in `charging.Evse`; this module decides *who* may charge and keeps the session
records. Every handler validates its input first and reports bad input as an `error` action
(or an error `reply` for downlink commands) without changing state.

Authorization order for a tapped card: local list -> remote-start RFID window -> (online) cache
hit, accepted at once and post-authorized in the background -> (online) authorize_start and wait
-> (offline, request deadline or link loss) `offline_policy`. Anything accepted without a backend
answer is post-authorized (`authorize_start` for that session) when the link is up; a refusal
then stops the session (reason DeAuthorized).

Remote-start rules follow ocpi-startsession.md: with an EvseID that EVSE, without one a plugged
unauthorized EV first, else a free EVSE; codes from `oicp_status`.

One module and one class (it was four mixins): every class and module costs fixed heap on the
device, and the mixins repeated the same imports.
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware.authlists import AuthCache, LocalList, VersionMismatch, offline_decision
from firmware.charging import (
    H_CLOSED,
    H_FAULT,
    H_OPENED,
    H_STOPPED,
    P_IDLE,
    R_CONNECTION_TIMEOUT,
    Evse,
)
from firmware.ids import IdError, check_session_id, normalize_uid
from firmware.session import (
    PA_DONE,
    PA_NEEDED,
    PA_REJECTED,
    PA_SENT,
    Session,
    canonical,
    ident_token,
    kwh,
    rfid_ident,
)
from firmware.timefmt import MAX_EPOCH_S
from hal.compat import ticks_add, ticks_diff

RESTORE_METER_WAIT_MS = 30000  # a restored session waits this long for a fresh meter reading
MAX_WINDOWS = 4  # remote-start RFID windows remembered at once

# uplink request kinds
Q_START = 0  # authorize a tap, driver waiting
Q_POST = 1  # post-authorize a session already running
Q_STOP = 2  # may this token stop that session?


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _earlier(a, b):
    if a is None:
        return b
    if b is None or ticks_diff(a, b) < 0:
        return a
    return b




class Controller:
    def __init__(self, config, new_session_id):
        self._cfg = config
        self._new_id = new_session_id
        grace = config["stop_grace_s"] * 1000
        conn = config["connection_timeout_s"] * 1000
        evses = config["evses"]
        self.evses = [Evse(i + 1, e["max_current_a"], e["cable"] == "socket", grace, conn)
                      for i, e in enumerate(evses)]
        self.evse_ids = [e["evse_id"] for e in evses]
        n = len(evses)
        self.sessions = [None] * n
        self._pending = [None] * n  # request id of a Q_START waiting per EVSE
        self._restored = [None] * n  # [Session, deadline] waiting for a meter reading
        self._meter = [None] * n
        self._meter_down = [False] * n
        self._status = [None] * n
        self.local_list = LocalList()
        c = config["auth_cache"]
        self.cache = AuthCache(c["size"], c["ttl_s"] * 1000)
        self.online = False
        self._card = False  # a card is in the reader field (debounce)
        self.reader_ok = True
        self._requests = {}  # id -> (kind, evse index, uid, deadline or None, local id)
        self._windows = []  # remote-start RFID windows: [token, expiry, session_id, reusable]
        self._clock = None  # (ticks, epoch_s) from the last `time` event
        self._booted = False
        self._prefix = None
        self._seq = 0
        self.errors = 0  # bad input / internal errors reported

    # -- the contract -------------------------------------------------------------------
    def step(self, event, now):
        out = []
        try:
            if not self._booted:
                self._boot(now, out)
            self._expire(now, out)
            self._dispatch(event, now, out)
            self._statuses(out)
        except MemoryError:
            # Not bad input: the step may have stopped half-way (a restored session already
            # taken off its slot, its CDR not yet built). Only a reset recovers that safely:
            # the persisted records are untouched (persisting happens after step), so the
            # next boot replays them. Swallowing it here lost the CDR.
            raise
        except Exception as e:  # a bug, not the device: report it, keep what was decided
            self._error(out, 0, "internal", "{}: {}".format(type(e).__name__, e))
        return out

    def next_deadline(self):
        d = None
        for ev in self.evses:
            d = _earlier(d, ev.next_deadline())
        for req in self._requests.values():
            d = _earlier(d, req[3])
        for s in self.sessions:
            if s is not None:
                d = _earlier(d, s.next_progress)
        for r in self._restored:
            if r is not None:
                d = _earlier(d, r[1])
        return d

    # -- plumbing -----------------------------------------------------------------------
    def _error(self, out, n, kind, msg):
        self.errors += 1
        out.append((E.A_ERROR, n, (kind, msg)))

    def _msg_id(self):
        if self._prefix is None:
            self._prefix = self._new_id()[:8]
        self._seq += 1
        return "{}-{}".format(self._prefix, self._seq)

    def _wall(self, now):
        c = self._clock
        if c is None:
            return None
        return c[1] + ticks_diff(now, c[0]) // 1000

    def _boot(self, now, out):
        self._booted = True
        for i, ev in enumerate(self.evses):
            self._happen(i, ev.boot(now, out), now, out)

    def _dispatch(self, event, now, out):
        if not isinstance(event, tuple) or len(event) != 3:
            self._error(out, 0, E.ERR_BAD_EVENT, "event must be a (kind, evse, data) tuple")
            return
        kind, n, data = event
        fn = _HANDLERS.get(kind)
        if fn is None:
            self._error(out, 0, E.ERR_BAD_EVENT, "unknown event kind {!r}".format(kind))
            return
        if kind in _PER_EVSE:
            if not _is_int(n) or not 1 <= n <= len(self.evses):
                self._error(out, 0, E.ERR_BAD_EVENT, "{}: no EVSE {!r}".format(kind, n))
                return
            fn(self, n - 1, data, now, out)
        elif n != 0:
            self._error(out, 0, E.ERR_BAD_EVENT, "{}: evse must be 0".format(kind))
        else:
            fn(self, data, now, out)

    def _statuses(self, out):
        for i, ev in enumerate(self.evses):
            if ev.oos or ev.faults or self._meter_blocks(i):
                st = E.ST_OUT_OF_SERVICE
            elif ev.plugged() or ev.phase != P_IDLE or self._pending[i] is not None:
                st = E.ST_OCCUPIED
            else:
                st = E.ST_AVAILABLE
            if st != self._status[i]:
                self._status[i] = st
                out.append((E.A_STATUS, i + 1, st))
                out.append((E.A_OUTBOX, 0, {"type": E.MSG_EVSE_STATUS, "id": self._msg_id(),
                                            "EvseID": self.evse_ids[i], "EvseStatus": st}))

    def _persist(self, i, out):
        s = self.sessions[i]
        out.append((E.A_PERSIST, 0, ("session.{}".format(i + 1),
                                     None if s is None else s.to_record())))

    # -- timers -------------------------------------------------------------------------
    def _expire(self, now, out):
        for i, ev in enumerate(self.evses):
            self._happen(i, ev.expire(now, out), now, out)
        due = [rid for rid, r in self._requests.items()
               if r[3] is not None and ticks_diff(now, r[3]) >= 0]
        for rid in due:
            self._request_failed(rid, now, out)
        period = self._cfg["progress_interval_s"] * 1000
        for s in self.sessions:
            if s is not None and s.next_progress is not None \
                    and ticks_diff(now, s.next_progress) >= 0:
                s.next_progress = ticks_add(s.next_progress, period)
                out.append((E.A_OUTBOX, 0, s.progress_notification(
                    self._wall(now), ticks_diff(now, s.cs_t))))
        for i, r in enumerate(self._restored):
            if r is not None and ticks_diff(now, r[1]) >= 0:
                self._close_restored(i, None, now, out)

    # -- wall clock, local list, restore -------------------------------------------------
    def _on_time(self, data, now, out):
        if not _is_int(data) or not 0 <= data < MAX_EPOCH_S:
            self._error(out, 0, E.ERR_BAD_EVENT, "time: need epoch seconds, 1970..2099")
            return
        first = self._clock is None
        self._clock = (now, data)
        if first:
            for s in self.sessions:
                if s is not None:
                    s.fill_times(self._wall)

    def _on_tick(self, data, now, out):
        pass  # deadlines were handled by _expire before dispatch

    # -- EVSE happenings -> sessions ----------------------------------------------------
    def _happen(self, i, h, now, out):
        if not h:
            return
        s = self.sessions[i]
        if s is None:
            return
        if h & H_CLOSED and not s.charged():
            s.cs_t = now
            s.charging_start = self._wall(now)
            s.meter_start = s.meter_end = self._meter[i]
            s.next_progress = ticks_add(now, self._cfg["progress_interval_s"] * 1000)
            out.append((E.A_OUTBOX, 0, s.start_notification()))
            self._persist(i, out)
        if h & H_OPENED:
            s.ce_t = now
            s.charging_end = self._wall(now)
            if not h & H_STOPPED:
                self._persist(i, out)
        if h & H_FAULT and s.charged():
            ev = self.evses[i]
            out.append((E.A_OUTBOX, 0, s.error_notification(ev.oos, ev.fault_text or "")))
        if h & H_STOPPED:
            self._end_session(i, self.evses[i].stop_reason, now, out)

    def _end_session(self, i, reason, now, out):
        s = self.sessions[i]
        self.sessions[i] = None
        if s.req is not None:
            self._requests.pop(s.req, None)
        if not s.charged() and s.source == "remote":
            for w in self._windows:
                if w[2] == s.session_id:
                    w[3] = True  # never charged: a card fallback may reuse the SessionID
        self._finish(i, s, self._wall(now), reason, out)
        if reason == R_CONNECTION_TIMEOUT:
            self._show(out, i + 1, s.uid, S.DISPLAY_TIMEOUT)

    def _finish(self, i, s, end, reason, out):
        """A session is over: End + CDR if it charged, session_end, its record deleted."""
        if s.charged():
            for d in s.end_records(end):
                out.append((E.A_OUTBOX, 0, d))
        out.append((E.A_SESSION_END, i + 1, {"session_id": s.session_id,
                                             "energy_kwh": kwh(s.energy_wh()),
                                             "reason": reason}))
        out.append((E.A_PERSIST, 0, ("session.{}".format(i + 1), None)))

    def _show(self, out, n, uid, result, code=None):
        """What the driver is shown (an `auth` action)."""
        out.append((E.A_AUTH, n, {"uid": uid, "result": result, "code": code}))

    def _stop(self, i, reason, now, out):
        self._happen(i, self.evses[i].stop(reason, now, out), now, out)

    def _meter_blocks(self, i):
        """The meter of EVSE i is down and the policy says no charging without it."""
        return self._meter_down[i] and self._cfg["meter_failure"] == "stop"

    # -- power-side events --------------------------------------------------------------
    def _on_pilot(self, i, data, now, out):
        if not isinstance(data, (tuple, list)) or len(data) != 2 \
                or data[0] not in ("A", "B", "C", "D", "E", "F") \
                or not (data[1] is None or isinstance(data[1], bool)):
            self._error(out, i + 1, E.ERR_BAD_EVENT,
                        "pilot: need (state A..F, diode_ok bool or None)")
            return
        self._happen(i, self.evses[i].on_pilot(data[0], data[1], now, out), now, out)

    def _on_pp(self, i, data, now, out):
        if not _is_int(data) or data < -1:
            self._error(out, i + 1, E.ERR_BAD_EVENT, "pp: need cable amps (int, -1 = error)")
            return
        self._happen(i, self.evses[i].on_pp(data, now, out), now, out)

    def _on_contactor(self, i, data, now, out):
        if data not in (E.CONTACTOR_OPEN, E.CONTACTOR_CLOSED, E.CONTACTOR_WELDED,
                        E.CONTACTOR_STUCK_OPEN):
            self._error(out, i + 1, E.ERR_BAD_EVENT, "contactor: unknown state {!r}".format(data))
            return
        self._happen(i, self.evses[i].on_contactor(data, now, out), now, out)

    def _on_meter(self, i, data, now, out):
        if not _is_int(data) or data < 0:
            self._error(out, i + 1, E.ERR_METER, "meter: need energy as int Wh >= 0")
            return
        last = self._meter[i]
        if last is not None and data < last:
            self._error(out, i + 1, E.ERR_METER, "meter went backwards: {} < {}".format(data, last))
            return
        self._meter[i] = data
        s = self.sessions[i]
        if s is not None and s.charged():
            if s.meter_start is None:
                s.meter_start = data
            s.meter_end = data
        if self._restored[i] is not None:
            self._close_restored(i, data, now, out)

    def _on_meter_fault(self, i, data, now, out):
        if self._meter_down[i]:
            return
        self._meter_down[i] = True
        self._error(out, i + 1, E.ERR_METER, "meter failed: {}".format(data))
        if self._restored[i] is not None:
            self._close_restored(i, None, now, out)
        s = self.sessions[i]
        if s is None:
            return
        if self._meter_blocks(i):
            self._stop(i, E.R_METER_FAULT, now, out)
        elif not s.meter_fault:
            s.meter_fault = True
            self._persist(i, out)

    def _on_meter_ok(self, i, data, now, out):
        self._meter_down[i] = False

    def _on_clear(self, i, data, now, out):
        ev = self.evses[i]
        if not ev.oos and not ev.faults:
            self._error(out, i + 1, E.ERR_BAD_EVENT, "clear: EVSE is not out of service")
            return
        self._happen(i, ev.clear(now, out), now, out)

    # -- cards --------------------------------------------------------------------------
    def _on_card(self, data, now, out):
        if self._card:
            return  # still the same card in the field
        try:
            uid = normalize_uid(data)
        except IdError as e:
            self._error(out, 0, E.ERR_BAD_UID, str(e))
            return
        self._card = True
        for i, s in enumerate(self.sessions):
            if s is not None and s.may_stop(uid):
                self._stop(i, E.R_LOCAL, now, out)
                return
        for r in self._requests.values():
            if r[2] == uid and r[0] == Q_START:
                return  # already being asked about
        i = self._pick_evse()
        if i is not None:
            self._authorize(i, uid, now, out)
            return
        asked = False
        if self.online:
            for j, s in enumerate(self.sessions):
                if s is not None and s.session_id != s.local_id and s.req is None \
                        and self.evses[j].phase != P_IDLE:
                    s.req = self._send(Q_STOP, j, uid, s, now, out)
                    asked = True
        if not asked:
            self._show(out, 0, uid, S.DISPLAY_CARD_INVALID, S.EVSE_IN_USE)

    def _on_card_gone(self, data, now, out):
        self._card = False

    def _on_reader(self, data, now, out):
        if data not in ("ok", "failed"):
            self._error(out, 0, E.ERR_BAD_EVENT, "reader: need 'ok' or 'failed'")
            return
        ok = data == "ok"
        if not ok and self.reader_ok:
            self._error(out, 0, E.ERR_READER, "card reader failed")
        self.reader_ok = ok

    def _can_start(self, i):
        return (self.evses[i].phase == P_IDLE and self.evses[i].available()
                and self.sessions[i] is None and self._pending[i] is None
                and not self._meter_blocks(i))

    def _pick_evse(self):
        """A plugged, unauthorized EV first, else the first free EVSE."""
        free = None
        for i, ev in enumerate(self.evses):
            if self._can_start(i):
                if ev.plugged():
                    return i
                if free is None:
                    free = i
        return free

    def _authorize(self, i, uid, now, out):
        if self.local_list.contains(uid):
            self._accept(i, uid, rfid_ident(uid), "local", None, now, out)
            return
        w = self._window(uid, now)
        if w is not None:
            sid = w[2] if w[3] else None
            w[3] = False
            self._accept(i, uid, rfid_ident(uid), "remote", sid, now, out)
            return
        if self.online:
            hit = self.cache.get(uid, now)
            if hit is not None:
                s = self._accept(i, uid, rfid_ident(uid), "cache", None, now, out)
                if s is not None:
                    s.stop_ids = hit
                    s.post_auth = PA_NEEDED
                    self._post_authorize(i, now, out)
                return
            self._pending[i] = self._send(Q_START, i, uid, None, now, out)
            return
        self._decide_offline(i, uid, now, out)

    def _decide_offline(self, i, uid, now, out, ask_now=True):
        """Offline policy; a roaming card let in is post-authorized - at once if the link is
        up, or (after a timed-out request: no blind retry) on the next reconnect."""
        allowed, source = offline_decision(self._cfg["offline_policy"], uid, self.local_list,
                                           self.cache, now)
        if not allowed:
            self._show(out, i + 1, uid, S.DISPLAY_CARD_UNKNOWN)
            return
        s = self._accept(i, uid, rfid_ident(uid), source, None, now, out)
        if s is not None and source != "local":
            s.post_auth = PA_NEEDED
            if ask_now:
                self._post_authorize(i, now, out)

    def _accept(self, i, uid, ident, source, session_id, now, out, provider=None):
        if not self._can_start(i):
            self._show(out, i + 1, uid, S.DISPLAY_BACKEND_ERROR, S.EVSE_OUT_OF_SERVICE)
            return None
        s = Session(self._new_id(), self.evse_ids[i], ident, uid, source)
        if session_id is not None:
            s.session_id = session_id
        s.provider_id = provider
        s.ss_t = now
        s.session_start = self._wall(now)
        self.sessions[i] = s
        if uid is not None:
            self._show(out, i + 1, uid, S.DISPLAY_ACCEPTED, S.SUCCESS)
        out.append((E.A_SESSION_START, i + 1, s.session_id))
        self._persist(i, out)
        self._happen(i, self.evses[i].authorize(now, out), now, out)
        return s

    def _window(self, uid, now):
        tok = canonical(uid)
        self._windows = [w for w in self._windows if ticks_diff(w[1], now) > 0]
        for w in self._windows:
            if w[0] == tok:
                return w
        return None

    # -- uplink requests and their answers -----------------------------------------------

    def _send(self, kind, i, uid, s, now, out):
        rid = self._msg_id()
        deadline = ticks_add(now, self._cfg["auth_timeout_s"] * 1000)
        self._requests[rid] = (kind, i, uid, deadline, None if s is None else s.local_id)
        msg = {"type": E.MSG_AUTHORIZE_STOP if kind == Q_STOP else E.MSG_AUTHORIZE_START,
               "id": rid, "deadline": deadline, "EvseID": self.evse_ids[i],
               "Identification": rfid_ident(uid) if uid is not None else s.ident}
        if s is not None:
            msg["CPOPartnerSessionID"] = s.local_id
            if kind == Q_STOP:
                msg["SessionID"] = s.session_id
        out.append((E.A_SEND, 0, msg))
        return rid

    def _post_authorize(self, i, now, out):
        s = self.sessions[i]
        if s is None or s.post_auth != PA_NEEDED or not self.online or s.req is not None:
            return
        s.post_auth = PA_SENT
        s.req = self._send(Q_POST, i, s.uid, s, now, out)

    def _request_failed(self, rid, now, out):
        """No answer in time (or the link went down): decide without the backend."""
        kind, i, uid, _, lid = self._requests.pop(rid)
        if kind == Q_START:
            self._pending[i] = None
            self._decide_offline(i, uid, now, out, ask_now=False)
            return
        s = self.sessions[i]
        if s is None or s.local_id != lid:
            return
        s.req = None
        if kind == Q_POST:
            s.post_auth = PA_NEEDED  # ask again when the link comes back
        else:
            self._show(out, i + 1, uid, S.DISPLAY_TIMEOUT)

    def _on_auth(self, reply, now, out):
        parsed = _parse_auth(reply)
        if isinstance(parsed, str):
            self._error(out, 0, E.ERR_BAD_REPLY, parsed)
            return
        rid, authorized, code, sid, provider, stop_ids = parsed
        req = self._requests.get(rid)
        if req is None:
            self._error(out, 0, E.ERR_BAD_REPLY, "auth reply for unknown or expired request "
                        + repr(rid))
            return
        kind, i, uid, _, lid = req
        if authorized and kind != Q_STOP and sid is None:
            self._error(out, 0, E.ERR_BAD_REPLY, "Authorized without a valid SessionID")
            return
        del self._requests[rid]
        status = S.AUTHORIZED if authorized else S.NOT_AUTHORIZED
        shown = S.driver_display(status, code)
        if kind == Q_START:
            self._pending[i] = None
            if authorized:
                self.cache.put(uid, now, stop_ids)
                s = self._accept(i, uid, rfid_ident(uid), "online", sid, now, out, provider)
                if s is not None:
                    s.stop_ids = stop_ids
            else:
                self.cache.remove(uid)
                self._show(out, i + 1, uid, shown, code)
            return
        s = self.sessions[i]
        if s is None or s.local_id != lid:
            return  # the session ended meanwhile
        s.req = None
        if kind == Q_STOP:
            if authorized:
                self._stop(i, E.R_LOCAL, now, out)
            else:
                self._show(out, i + 1, uid, shown, code)
            return
        if authorized:
            s.session_id = sid
            s.provider_id = provider
            s.stop_ids = stop_ids
            s.post_auth = PA_DONE
            self.cache.put(uid, now, stop_ids)
            self._persist(i, out)
        else:
            s.post_auth = PA_REJECTED
            self.cache.remove(uid)
            self._show(out, i + 1, uid, shown, code)
            self._stop(i, E.R_DEAUTHORIZED, now, out)

    def _on_online(self, data, now, out):
        if not isinstance(data, bool):
            self._error(out, 0, E.ERR_BAD_EVENT, "online: need a bool")
            return
        was = self.online
        self.online = data
        if data and not was:
            for i in range(len(self.sessions)):
                self._post_authorize(i, now, out)
        elif was and not data:
            for rid in list(self._requests):
                self._request_failed(rid, now, out)

    # -- remote start / stop ------------------------------------------------------------
    def _reply(self, out, rid, ok, code, sid=None):
        r = {"id": rid, "Result": ok, "StatusCode": S.status_code(code)}
        if sid is not None:
            r["SessionID"] = sid
        out.append((E.A_REPLY, 0, r))

    def _command_id(self, cmd, kind, out):
        """The downlink command's "id", or None after an error action (nothing to reply to)."""
        rid = cmd.get("id") if isinstance(cmd, dict) else None
        if not isinstance(rid, str):
            self._error(out, 0, E.ERR_BAD_EVENT, kind + ": need an object with 'id'")
            return None
        return rid

    def _on_remote_start(self, cmd, now, out):
        rid = self._command_id(cmd, "remote_start", out)
        if rid is None:
            return
        sid = cmd.get("SessionID")
        ident = cmd.get("Identification")
        evse_id = cmd.get("EvseID")
        try:
            check_session_id(sid)
        except IdError:
            self._reply(out, rid, False, S.DATA_ERROR)
            return
        if ident_token(ident) is None or (evse_id is not None and not isinstance(evse_id, str)):
            self._reply(out, rid, False, S.DATA_ERROR)
            return
        for s in self.sessions:
            if s is not None and s.session_id == sid:
                self._reply(out, rid, True, S.SUCCESS, sid)  # a repeat: same answer
                return
        if evse_id is not None:
            if evse_id not in self.evse_ids:
                self._reply(out, rid, False, S.UNKNOWN_EVSE, sid)
                return
            i = self.evse_ids.index(evse_id)
        else:
            i = self._pick_evse()
            if i is None:
                i = 0 if all(not self.evses[j].available() for j in range(len(self.evses))) \
                    else None
                code = S.EVSE_OUT_OF_SERVICE if i is not None else S.EVSE_IN_USE
                self._reply(out, rid, False, code, sid)
                return
        if not self.evses[i].available() or self._meter_blocks(i):
            self._reply(out, rid, False, S.EVSE_OUT_OF_SERVICE, sid)
            return
        if not self._can_start(i):
            self._reply(out, rid, False, S.EVSE_IN_USE, sid)
            return
        provider = cmd.get("ProviderID") if isinstance(cmd.get("ProviderID"), str) else None
        s = self._accept(i, None, ident, "remote", sid, now, out, provider)
        self._reply(out, rid, True, S.SUCCESS, sid)
        rfid = ident.get("RFIDMifareFamilyIdentification")
        if s is not None and isinstance(rfid, dict) and isinstance(rfid.get("UID"), str):
            window = self._cfg["remote_start_rfid_window_s"] * 1000
            self._windows.append([canonical(rfid["UID"]), ticks_add(now, window), sid, False])
            if len(self._windows) > MAX_WINDOWS:
                self._windows.pop(0)

    def _on_remote_stop(self, cmd, now, out):
        rid = self._command_id(cmd, "remote_stop", out)
        if rid is None:
            return
        sid = cmd.get("SessionID")
        evse_id = cmd.get("EvseID")
        for i, s in enumerate(self.sessions):
            if s is not None and s.session_id == sid and (evse_id is None
                                                          or evse_id == s.evse_id):
                self._stop(i, E.R_REMOTE, now, out)
                self._reply(out, rid, True, S.SUCCESS, sid)
                return
        self._reply(out, rid, False, S.SESSION_INVALID, sid if isinstance(sid, str) else None)


    def _on_local_list(self, d, now, out):
        if not isinstance(d, dict) or not isinstance(d.get("full"), bool):
            self._error(out, 0, E.ERR_LOCAL_LIST, "local_list: need an object with 'full'")
            return
        try:
            if d["full"]:
                self.local_list.replace(d.get("version"), d.get("uids") or ())
            else:
                self.local_list.apply_delta(d.get("base_version"), d.get("version"),
                                            d.get("add") or (), d.get("remove") or ())
        except VersionMismatch as e:
            self._error(out, 0, E.ERR_LOCAL_LIST, str(e))
            return
        except (ValueError, TypeError) as e:  # IdError is a ValueError
            self._error(out, 0, E.ERR_LOCAL_LIST, "local_list: " + str(e))
            return
        out.append((E.A_PERSIST, 0, ("locallist", self.local_list.to_json())))

    def _on_restore(self, i, record, now, out):
        try:
            s = Session.from_record(record)
        except (ValueError, TypeError) as e:
            self._error(out, i + 1, E.ERR_RESTORE, str(e))
            return
        if s.evse_id != self.evse_ids[i]:
            self._error(out, i + 1, E.ERR_RESTORE, "record is for EVSE " + s.evse_id)
            return
        if self.sessions[i] is not None or self._restored[i] is not None:
            self._error(out, i + 1, E.ERR_RESTORE, "EVSE already has a session")
            return
        if not s.charged():
            self._finish(i, s, None, E.R_POWER_LOSS, out)
            return
        self._restored[i] = [s, ticks_add(now, RESTORE_METER_WAIT_MS)]
        if self._meter_down[i]:
            self._close_restored(i, None, now, out)
        elif self._meter[i] is not None:
            self._close_restored(i, self._meter[i], now, out)

    def _close_restored(self, i, wh, now, out):
        """Close a session cut by a power loss: MeterValueEnd = first reading after boot (or
        the persisted last value if the meter is down or went backwards); one CDR."""
        s = self._restored[i][0]
        self._restored[i] = None
        if wh is not None and (s.meter_start is None or wh >= s.meter_start):
            s.meter_end = wh
            if s.meter_start is None:
                s.meter_start = wh
        elif wh is not None or self._meter_down[i]:
            s.meter_fault = True
        end = self._wall(now)
        if end is None:
            end = s.charging_end if s.charging_end is not None else s.charging_start
        if s.charging_end is None:
            s.charging_end = end
        self._finish(i, s, end, E.R_POWER_LOSS, out)



# event kind -> handler; the first eight take an EVSE index, the rest are for the whole point
_HANDLERS = {
    E.EV_PILOT: Controller._on_pilot,
    E.EV_PP: Controller._on_pp,
    E.EV_CONTACTOR: Controller._on_contactor,
    E.EV_METER: Controller._on_meter,
    E.EV_METER_FAULT: Controller._on_meter_fault,
    E.EV_METER_OK: Controller._on_meter_ok,
    E.EV_CLEAR: Controller._on_clear,
    E.EV_RESTORE: Controller._on_restore,
    E.EV_CARD: Controller._on_card,
    E.EV_CARD_GONE: Controller._on_card_gone,
    E.EV_READER: Controller._on_reader,
    E.EV_AUTH: Controller._on_auth,
    E.EV_REMOTE_START: Controller._on_remote_start,
    E.EV_REMOTE_STOP: Controller._on_remote_stop,
    E.EV_ONLINE: Controller._on_online,
    E.EV_TICK: Controller._on_tick,
    E.EV_TIME: Controller._on_time,
    E.EV_LOCAL_LIST: Controller._on_local_list,
}
_PER_EVSE = (E.EV_PILOT, E.EV_PP, E.EV_CONTACTOR, E.EV_METER, E.EV_METER_FAULT, E.EV_METER_OK,
             E.EV_CLEAR, E.EV_RESTORE)


def _parse_auth(reply):
    """Validate an authorization answer; a string says what is wrong with it."""
    if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
        return "auth reply: need an object with a string 'id'"
    status = reply.get("AuthorizationStatus")
    sc = reply.get("StatusCode")
    code = sc.get("Code") if isinstance(sc, dict) else None
    if code is not None and (not isinstance(code, str) or len(code) != 3
                             or not code.isdigit()):
        return "auth reply: StatusCode.Code must be a 3-digit string"
    if status is None:
        if code is None:
            return "auth reply: neither AuthorizationStatus nor StatusCode"
        status = S.NOT_AUTHORIZED  # an acknowledgement-only body is a refusal
    if status not in (S.AUTHORIZED, S.NOT_AUTHORIZED):
        return "auth reply: AuthorizationStatus {!r}".format(status)
    sid = reply.get("SessionID")
    if sid is not None:
        try:
            check_session_id(sid)
        except IdError as e:
            return "auth reply: " + str(e)
    provider = reply.get("ProviderID")
    if provider is not None and not isinstance(provider, str):
        return "auth reply: ProviderID must be a string"
    stops = reply.get("AuthorizationStopIdentifications") or ()
    if not isinstance(stops, (list, tuple)):
        return "auth reply: AuthorizationStopIdentifications must be a list"
    toks = []
    for ident in stops:
        t = ident_token(ident)
        if t is None:
            return "auth reply: unusable entry in AuthorizationStopIdentifications"
        toks.append(t)
    return reply["id"], status == S.AUTHORIZED, code, sid, provider, tuple(toks)
