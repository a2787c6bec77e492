"""Card taps and the backend's answers: routing, the authorization policy, post-authorization.

A mixin of `firmware.controller.Controller` (split out to keep each module small enough to
compile on the ESP32); it uses the controller's state and helpers.
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware.authlists import offline_decision
from firmware.charging import P_IDLE
from firmware.ids import IdError, normalize_uid
from firmware.session import (
    PA_NEEDED,
    Session,
    canonical,
    rfid_ident,
)
from firmware.uplink import Q_START, Q_STOP, Uplink
from hal.compat import ticks_diff


class Authorization(Uplink):
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
