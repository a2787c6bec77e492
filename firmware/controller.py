"""The charge point core: the one object that holds the state and dispatches events.

Pure: `step(event, now) -> actions` (see firmware/events.py for the contract),
`next_deadline()`, `clock_known()`. Every handler validates its input first and reports bad
input as an `error` action (or an error `reply` for downlink commands) without changing state.

State: one `outlet.Outlet` record per EVSE (`outlets`: its power side `charging.Evse`, session,
pending tap, restored session, meter, status) and, for the whole charge point, the local list,
the cache, the link, the card in the field, the requests waiting for the backend, the
remote-start RFID windows and the wall clock. The concepts live in modules that take this
object and never call back into it (each calls only the ones below it):

    firmware.authorize  the authorization chain and the outcome of a tap, requests to the
                        backend and its answers, post-authorization
    firmware.remote     remote start/stop, local list updates
    firmware.outlet     the session records: the per-EVSE record, a session's life (start,
                        happenings, end, End + CDR), sessions restored after a power cut
    firmware.records    the shapes of the small records (named indices, folded away)

This module keeps the power-side events (pilot, PP, contactor, meter), the timers, the wall
clock and the EVSE status reports.
"""

from firmware import authorize, outlet, remote
from firmware import events as E
from firmware.authlists import AuthCache, LocalList
from firmware.charging import P_IDLE, Evse, earlier, passed
from firmware.records import RQ_DUE
from firmware.timefmt import CLOCK_FLOOR_S, MAX_EPOCH_S
from hal.compat import ticks_add, ticks_diff


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class Controller:
    def __init__(self, config, new_session_id):
        self.cfg = config
        self._new_id = new_session_id
        grace = config["stop_grace_s"] * 1000
        conn = config["connection_timeout_s"] * 1000
        vent = config.get("ventilation", False)
        stop_without_meter = config["meter_failure"] == "stop"
        self.outlets = [outlet.Outlet(i + 1, e["evse_id"], Evse(i + 1, e["max_current_a"],
                                                         e["cable"] == "socket", grace, conn,
                                                         vent), stop_without_meter)
                        for i, e in enumerate(config["evses"])]
        self.local_list = LocalList()
        c = config["auth_cache"]
        self.cache = AuthCache(c["size"], c["ttl_s"] * 1000)
        self.online = False
        self.card = None  # UID of the card in the reader field (one presentation)
        self.gone = None  # (uid, ticks) of the card that last left the field
        self.reader_ok = True
        self.requests = {}  # id -> request waiting for the backend (authorize.RQ_* fields)
        self.windows = []  # remote-start RFID windows (authorize.W_* fields)
        self.started = []  # SessionIDs of the last remote.MAX_STARTED accepted remote starts
        self.clock = None  # (ticks, epoch_s) from the last `time` event
        self.last_outcome = None  # how the last tap ended: (authorize.O_*, evse, uid, code)
        self.msg_prefix = None
        self.msg_seq = 0
        self._booted = False

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
            # next boot replays them.
            raise
        except Exception as e:  # a bug, not the device: report it, keep what was decided
            outlet.error(out, 0, "internal", "{}: {}".format(type(e).__name__, e))
        return out

    def next_deadline(self):
        d = None
        for o in self.outlets:
            d = earlier(d, o.power.next_deadline())
            s = o.session
            if s is not None:
                d = earlier(earlier(d, s.next_progress), s.retry_at)
            d = earlier(d, o.restore_due)
        if self.requests:  # .values() allocates a view: not on every idle loop pass
            for req in self.requests.values():
                d = earlier(d, req[RQ_DUE])
        return d

    def clock_known(self):
        """True once a `time` event gave the wall clock (timestamps are stamped from ticks)."""
        return self.clock is not None

    # -- plumbing -----------------------------------------------------------------------
    def _boot(self, now, out):
        self._booted = True
        for o in self.outlets:
            outlet.happen(self, o, o.power.boot(now, out), now, out)

    def _dispatch(self, event, now, out):
        if not isinstance(event, tuple) or len(event) != 3:
            outlet.error(out, 0, E.ERR_BAD_EVENT, "event must be a (kind, evse, data) tuple")
            return
        kind, n, data = event
        fn = _HANDLERS.get(kind)
        if fn is None:
            outlet.error(out, 0, E.ERR_BAD_EVENT, "unknown event kind {!r}".format(kind))
            return
        if kind in _PER_EVSE:
            if not _is_int(n) or not 1 <= n <= len(self.outlets):
                outlet.error(out, 0, E.ERR_BAD_EVENT, "{}: no EVSE {!r}".format(kind, n))
                return
            fn(self, self.outlets[n - 1], data, now, out)
        elif n != 0:
            outlet.error(out, 0, E.ERR_BAD_EVENT, "{}: evse must be 0".format(kind))
        else:
            fn(self, data, now, out)

    def _statuses(self, out):
        for o in self.outlets:
            ev = o.power
            if ev.oos or ev.faults or o.meter_blocks():
                st = E.ST_OUT_OF_SERVICE
            elif ev.plugged() or ev.phase != P_IDLE or o.pending is not None:
                st = E.ST_OCCUPIED
            else:
                st = E.ST_AVAILABLE
            if st != o.status:
                o.status = st
                out.append((E.A_STATUS, o.n, st))
                out.append((E.A_OUTBOX, 0, {"type": E.MSG_EVSE_STATUS, "id": outlet.msg_id(self),
                                            "EvseID": o.evse_id, "EvseStatus": st}))

    # -- timers -------------------------------------------------------------------------
    def _expire(self, now, out):
        for o in self.outlets:
            outlet.happen(self, o, o.power.expire(now, out), now, out)
        due = [rid for rid, r in self.requests.items() if passed(r[RQ_DUE], now)]
        for rid in due:
            authorize.request_failed(self, rid, now, out)
        period = self.cfg["progress_interval_s"] * 1000
        for o in self.outlets:
            s = o.session
            if s is not None and passed(s.next_progress, now):
                s.next_progress = ticks_add(s.next_progress, period)
                out.append((E.A_OUTBOX, 0, s.progress_notification(
                    outlet.wall(self.clock, now), ticks_diff(now, s.charging_start_tick))))
        for o in self.outlets:
            if o.session is not None and passed(o.session.retry_at, now):
                authorize.post_authorize(self, o, now, out)
        for o in self.outlets:
            if o.restored is not None and passed(o.restore_due, now):
                outlet.close_restored(self, o, None, now, out)

    # -- wall clock ---------------------------------------------------------------------
    def _on_time(self, data, now, out):
        if not _is_int(data) or not 0 <= data < MAX_EPOCH_S:
            outlet.error(out, 0, E.ERR_BAD_EVENT, "time: need epoch seconds, 1970..2099")
            return
        if data < CLOCK_FLOOR_S:  # an RTC restarted at the epoch: no date is better than 1970
            outlet.error(out, 0, E.ERR_CLOCK, "clock {} is before this firmware was built: "
                  "kept unknown".format(data))
            return
        first = self.clock is None
        self.clock = (now, data)
        if first:
            for o in self.outlets:
                if o.session is not None:
                    o.session.fill_times(lambda t: outlet.wall(self.clock, t))

    def _on_tick(self, data, now, out):
        pass  # deadlines were handled by _expire before dispatch

    # -- power-side events --------------------------------------------------------------
    def _on_pilot(self, o, data, now, out):
        if not isinstance(data, (tuple, list)) or len(data) != 2 \
                or data[0] not in ("A", "B", "C", "D", "E", "F") \
                or not (data[1] is None or isinstance(data[1], bool)):
            outlet.error(out, o.n, E.ERR_BAD_EVENT,
                         "pilot: need (state A..F, diode_ok bool or None)")
            return
        outlet.happen(self, o, o.power.on_pilot(data[0], data[1], now, out), now, out)

    def _on_pp(self, o, data, now, out):
        if not _is_int(data) or data < -1:
            outlet.error(out, o.n, E.ERR_BAD_EVENT, "pp: need cable amps (int, -1 = error)")
            return
        outlet.happen(self, o, o.power.on_pp(data, now, out), now, out)

    def _on_contactor(self, o, data, now, out):
        if data not in (E.CONTACTOR_OPEN, E.CONTACTOR_CLOSED, E.CONTACTOR_WELDED,
                        E.CONTACTOR_STUCK_OPEN):
            outlet.error(out, o.n, E.ERR_BAD_EVENT, "contactor: unknown state {!r}".format(data))
            return
        outlet.happen(self, o, o.power.on_contactor(data, now, out), now, out)

    def _on_meter(self, o, data, now, out):
        """A register reading (Wh). A register that falls back (meter swapped or reset) is
        re-based: the running session goes on counting from the new value, its record keeps
        the energy before the drop (MeterValueEnd = new register + what was counted before,
        so ConsumedEnergy = End - Start holds) and is flagged MeteringCheck Failed; one error
        per drop; later sessions measure from the new register as usual."""
        if not _is_int(data) or data < 0:
            outlet.error(out, o.n, E.ERR_METER, "meter: need energy as int Wh >= 0")
            return
        last = o.meter
        o.meter = data
        s = o.session
        if last is not None and data < last:
            outlet.error(out, o.n, E.ERR_METER, "meter register fell back from {} to {} Wh: "
                  "re-based".format(last, data))
            if s is not None and s.charged() and s.meter_start is not None:
                s.meter_offset += last - data
                s.meter_fault = True
                s.meter_end = data + s.meter_offset
                outlet.persist(s, out)
        elif s is not None and s.charged():
            if s.meter_start is None:  # closed before the first reading: persist the start
                s.meter_start = data
                outlet.persist(s, out)
            s.meter_end = data + s.meter_offset
        if o.restored is not None:
            outlet.close_restored(self, o, data, now, out)

    def _on_meter_fault(self, o, data, now, out):
        if o.meter_down:
            return
        o.meter_down = True
        outlet.error(out, o.n, E.ERR_METER, "meter failed: {}".format(data))
        if o.restored is not None:
            outlet.close_restored(self, o, None, now, out)
        s = o.session
        if s is None:
            return
        if o.meter_blocks():
            outlet.stop(self, o, E.R_METER_FAULT, now, out)
        elif not s.meter_fault:
            s.meter_fault = True
            outlet.persist(s, out)

    def _on_meter_ok(self, o, data, now, out):
        o.meter_down = False

    def _on_clear(self, o, data, now, out):
        ev = o.power
        if not ev.oos and not ev.faults:
            outlet.error(out, o.n, E.ERR_BAD_EVENT, "clear: EVSE is not out of service")
            return
        outlet.happen(self, o, ev.clear(now, out), now, out)


# event kind -> handler; a handler of a _PER_EVSE kind takes the outlet, the rest the point
_HANDLERS = {
    E.EV_PILOT: Controller._on_pilot,
    E.EV_PP: Controller._on_pp,
    E.EV_CONTACTOR: Controller._on_contactor,
    E.EV_METER: Controller._on_meter,
    E.EV_METER_FAULT: Controller._on_meter_fault,
    E.EV_METER_OK: Controller._on_meter_ok,
    E.EV_CLEAR: Controller._on_clear,
    E.EV_RESTORE: outlet.on_restore,
    E.EV_CARD: authorize.on_card,
    E.EV_CARD_GONE: authorize.on_card_gone,
    E.EV_READER: authorize.on_reader,
    E.EV_AUTH: authorize.on_auth,
    E.EV_REMOTE_START: remote.on_remote_start,
    E.EV_REMOTE_STOP: remote.on_remote_stop,
    E.EV_ONLINE: authorize.on_online,
    E.EV_TICK: Controller._on_tick,
    E.EV_TIME: Controller._on_time,
    E.EV_LOCAL_LIST: remote.on_local_list,
}
_PER_EVSE = (E.EV_PILOT, E.EV_PP, E.EV_CONTACTOR, E.EV_METER, E.EV_METER_FAULT, E.EV_METER_OK,
             E.EV_CLEAR, E.EV_RESTORE)
