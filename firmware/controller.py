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

Three modules, one class: `firmware.cards` (taps, authorization, the backend's answers) and
`firmware.remote` (remote start/stop, local list, restore) are mixins of `Controller`, so that
each module compiles within a 128k heap from source.
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware.authlists import AuthCache, LocalList
from firmware.cards import Cards
from firmware.charging import (
    H_CLOSED,
    H_FAULT,
    H_OPENED,
    H_PLUGGED,
    H_STOPPED,
    P_IDLE,
    R_CONNECTION_TIMEOUT,
    Evse,
    earlier,
)
from firmware.remote import Remote
from firmware.session import kwh, record_key
from firmware.timefmt import CLOCK_FLOOR_S, MAX_EPOCH_S
from hal.compat import ticks_add, ticks_diff


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class Controller(Cards, Remote):
    def __init__(self, config, new_session_id):
        self._cfg = config
        self._new_id = new_session_id
        grace = config["stop_grace_s"] * 1000
        conn = config["connection_timeout_s"] * 1000
        evses = config["evses"]
        vent = config.get("ventilation", False)
        self.evses = [Evse(i + 1, e["max_current_a"], e["cable"] == "socket", grace, conn,
                           vent) for i, e in enumerate(evses)]
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
        self._card = None  # UID of the card in the reader field (one presentation)
        self._gone = None  # (uid, ticks) of the card that last left the field
        self.reader_ok = True
        self._requests = {}  # id -> (kind, evse index, uid, deadline or None, local id)
        self._windows = []  # remote-start RFID windows: [token, expiry, session_id, reusable]
        self._started = []  # SessionIDs of the last MAX_STARTED accepted remote starts
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
            d = earlier(d, ev.next_deadline())
        if self._requests:  # .values() allocates a view: not on every idle loop pass
            for req in self._requests.values():
                d = earlier(d, req[3])
        for s in self.sessions:
            if s is not None:
                d = earlier(earlier(d, s.next_progress), s.retry_at)
        for r in self._restored:
            if r is not None:
                d = earlier(d, r[1])
        return d

    def clock_known(self):
        """True once a `time` event gave the wall clock (timestamps are stamped from ticks)."""
        return self._clock is not None

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

    def _persist(self, s, out):
        """Write session `s`'s record (its own key: see session.record_key)."""
        out.append((E.A_PERSIST, 0, (record_key(s.local_id), s.to_record())))

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
        for i, s in enumerate(self.sessions):
            if s is not None and s.retry_at is not None and ticks_diff(now, s.retry_at) >= 0:
                self._post_authorize(i, now, out)
        for i, r in enumerate(self._restored):
            if r is not None and ticks_diff(now, r[1]) >= 0:
                self._close_restored(i, None, now, out)

    # -- wall clock, local list, restore -------------------------------------------------
    def _on_time(self, data, now, out):
        if not _is_int(data) or not 0 <= data < MAX_EPOCH_S:
            self._error(out, 0, E.ERR_BAD_EVENT, "time: need epoch seconds, 1970..2099")
            return
        if data < CLOCK_FLOOR_S:  # an RTC restarted at the epoch: no date is better than 1970
            self._error(out, 0, E.ERR_CLOCK, "clock {} is before this firmware was built: "
                        "kept unknown".format(data))
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
            if h & H_PLUGGED:
                self._claim_floating(i, now, out)
            return
        if h & H_CLOSED and not s.charged():
            s.cs_t = now
            s.charging_start = self._wall(now)
            s.meter_start = s.meter_end = self._meter[i]
            s.next_progress = ticks_add(now, self._cfg["progress_interval_s"] * 1000)
            # write ahead: "charging since, meter start" is on flash before the coil is
            # energised, so a cut right after the close still ends in a CDR
            self._persist(s, out)
            close = (E.A_CONTACTOR, i + 1, True)
            if close in out:
                out.insert(out.index(close), out.pop())
            out.append((E.A_OUTBOX, 0, s.start_notification()))
        if h & H_OPENED:
            s.ce_t = now
            s.charging_end = self._wall(now)
            if not h & H_STOPPED:
                self._persist(s, out)
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
        out.append((E.A_PERSIST, 0, (record_key(s.local_id), None)))

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
        """A register reading (Wh). A register that falls back (meter swapped or reset) is
        re-based: the running session goes on counting from the new value, its record keeps
        the energy before the drop (MeterValueEnd = new register + what was counted before,
        so ConsumedEnergy = End - Start holds) and is flagged MeteringCheck Failed; one error
        per drop; later sessions measure from the new register as usual."""
        if not _is_int(data) or data < 0:
            self._error(out, i + 1, E.ERR_METER, "meter: need energy as int Wh >= 0")
            return
        last = self._meter[i]
        self._meter[i] = data
        s = self.sessions[i]
        if last is not None and data < last:
            self._error(out, i + 1, E.ERR_METER, "meter register fell back from {} to {} Wh: "
                        "re-based".format(last, data))
            if s is not None and s.charged() and s.meter_start is not None:
                s.meter_offset += last - data
                s.meter_fault = True
                s.meter_end = data + s.meter_offset
                self._persist(s, out)
        elif s is not None and s.charged():
            if s.meter_start is None:  # closed before the first reading: persist the start
                s.meter_start = data
                self._persist(s, out)
            s.meter_end = data + s.meter_offset
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
            self._persist(s, out)

    def _on_meter_ok(self, i, data, now, out):
        self._meter_down[i] = False

    def _on_clear(self, i, data, now, out):
        ev = self.evses[i]
        if not ev.oos and not ev.faults:
            self._error(out, i + 1, E.ERR_BAD_EVENT, "clear: EVSE is not out of service")
            return
        self._happen(i, ev.clear(now, out), now, out)


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
