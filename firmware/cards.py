"""Card taps and the backend's answers: routing, the authorization policy, post-authorization.

A mixin of `firmware.controller.Controller`: it uses the controller's state and helpers. The
core is split across modules only so that each one compiles within a 128k heap when the
firmware is deployed as source (the .mpy image does not need it).
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware.authlists import offline_decision
from firmware.charging import P_IDLE
from firmware.ids import IdError, check_session_id, normalize_uid
from firmware.session import (
    PA_DONE,
    PA_NEEDED,
    PA_REJECTED,
    PA_SENT,
    Session,
    canonical,
    ident_token,
    rfid_ident,
)
from hal.compat import ticks_add, ticks_diff

# uplink request kinds
Q_START = 0  # authorize a tap, driver waiting
Q_POST = 1  # post-authorize a session already running
Q_STOP = 2  # may this token stop that session?
POST_RETRY_MS = 60000  # an undecided post-authorization (NoDecision) is asked again after this


class Cards:
    # -- cards --------------------------------------------------------------------------
    def _on_card(self, data, now, out):
        """A card entered the field. One held card is one presentation: while it is there
        nothing else counts, and the same card back within `card_guard_ms` after it left
        (a field drop-out, a bogus frame between good ones) is still the same presentation.
        An identifier that no real card has (all bytes 00 or FF) is not a card."""
        if self._card is not None:
            return  # still the same card in the field
        try:
            uid = normalize_uid(data)
        except IdError as e:
            self._error(out, 0, E.ERR_BAD_UID, str(e))
            return
        if not uid.strip("0") or not uid.strip("F"):
            self._error(out, 0, E.ERR_BAD_UID, "UID {}: no real card has it".format(uid))
            return
        self._card = uid
        g = self._gone
        if g is not None and g[0] == uid \
                and ticks_diff(now, g[1]) < self._cfg.get("card_guard_ms", 2000):
            return
        for i, s in enumerate(self.sessions):
            if s is not None and s.may_stop(uid):
                self._stop(i, E.R_LOCAL, now, out)
                return
        for r in self._requests.values():
            if r[2] == uid and r[0] == Q_START:
                return  # already being asked about
        i = self._pick_evse(now)
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
        if self._card is not None:
            self._gone = (self._card, now)
        self._card = None

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
                and self._restored[i] is None and not self._meter_blocks(i))

    def _pick_evse(self, now):
        """Where a tap (or a remote start without EvseID) goes: the newest plug-in that is
        younger than the connection time-out, else an older plug-in, else the first free
        EVSE -- whose authorization then floats: the first outlet that gets a plug-in before
        the connection time-out takes it (`_claim_floating`). None if no EVSE can start."""
        best = None
        rank = None
        for i, ev in enumerate(self.evses):
            if not self._can_start(i):
                continue
            if ev.plugged():
                age = 1 << 40 if ev.plugged_at is None else ticks_diff(now, ev.plugged_at)
                r = age if age < ev.conn_ms else age + (1 << 41)  # stale: after every fresh one
            else:
                r = 1 << 42  # free: after every plug-in
            if rank is None or r < rank:
                best, rank = i, r
        return best

    def _claim_floating(self, j, now, out):
        """EVSE j just got a plug-in and has no session: take a session authorized before any
        plug-in on another, still unplugged EVSE (one reader, several outlets). The session
        moves with its ids; its records now name EVSE j's EvseID."""
        if not self._can_start(j):
            return
        for i, s in enumerate(self.sessions):
            if s is not None and s.floating and i != j and not s.charged() \
                    and not self.evses[i].plugged() and self.evses[i].phase != P_IDLE:
                self.sessions[i] = None
                self.evses[i].stop(None, now, out)  # no session there now: nothing to end
                if s.req is not None and s.req in self._requests:
                    r = self._requests[s.req]
                    self._requests[s.req] = (r[0], j, r[2], r[3], r[4])
                s.evse_id = self.evse_ids[j]
                s.floating = False
                self.sessions[j] = s
                self._persist(s, out)
                self._happen(j, self.evses[j].authorize(now, out), now, out)
                return

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

    def _accept(self, i, uid, ident, source, session_id, now, out, provider=None,
                floating=True):
        if not self._can_start(i):
            self._show(out, i + 1, uid, S.DISPLAY_BACKEND_ERROR, S.EVSE_OUT_OF_SERVICE)
            return None
        s = Session(self._new_id(), self.evse_ids[i], ident, uid, source)
        if session_id is not None:
            s.session_id = session_id
        s.provider_id = provider
        s.ss_t = now
        s.session_start = self._wall(now)
        s.floating = floating and not self.evses[i].plugged()
        self.sessions[i] = s
        if uid is not None:
            self._show(out, i + 1, uid, S.DISPLAY_ACCEPTED, S.SUCCESS)
        out.append((E.A_SESSION_START, i + 1, s.session_id))
        self._persist(s, out)
        self._happen(i, self.evses[i].authorize(now, out), now, out)
        if s.floating:  # an answer that came after an EV was plugged in elsewhere
            for j, ev in enumerate(self.evses):
                if ev.plugged() and ev.plugged_at is not None \
                        and ticks_diff(now, ev.plugged_at) < ev.conn_ms:
                    self._claim_floating(j, now, out)
                    if not s.floating:
                        break
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
        if s.retry_at is not None and ticks_diff(now, s.retry_at) < 0:
            return  # undecided a moment ago: _expire asks again at retry_at
        s.retry_at = None
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
        rid, authorized, code, sid, provider, stop_ids, undecided = parsed
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
        if undecided and not authorized:
            # the backend could not ask Hubject (time-out, 5xx, rate limit): not a refusal --
            # the session goes on and is post-authorized again later (contract: NoDecision)
            s.post_auth = PA_NEEDED
            s.retry_at = ticks_add(now, POST_RETRY_MS)
            self._error(out, i + 1, E.ERR_BAD_REPLY, "post-authorization undecided ({}): "
                        "asked again in {} s".format(code, POST_RETRY_MS // 1000))
            return
        if authorized:
            s.session_id = sid
            s.provider_id = provider
            s.stop_ids = stop_ids
            s.post_auth = PA_DONE
            self.cache.put(uid, now, stop_ids)
            self._persist(s, out)
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
    undecided = reply.get("NoDecision")
    if undecided is not None and not isinstance(undecided, bool):
        return "auth reply: NoDecision must be a bool"
    return reply["id"], status == S.AUTHORIZED, code, sid, provider, tuple(toks), \
        bool(undecided)
