"""Power-side events (pilot, PP, contactor, meter, clear) and what they mean for sessions.

A mixin of `firmware.controller.Controller`, split out to keep each module small enough to
compile in a small MicroPython heap. `charging.Evse` reports happenings (H_*); `_happen` turns
them into session records: charging start/end, Start/Error notifications, End + CDR at the end.
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware.charging import H_CLOSED, H_FAULT, H_OPENED, H_STOPPED, R_CONNECTION_TIMEOUT
from firmware.session import kwh
from hal.compat import ticks_add


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class PowerEvents:
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

