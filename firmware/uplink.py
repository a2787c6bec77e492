"""Authorize start/stop requests to the backend, their deadlines and their answers.

A mixin of `firmware.controller.Controller` (via `firmware.authorize`), split out to keep each
module small enough to compile in a small MicroPython heap.
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware.ids import IdError, check_session_id
from firmware.session import PA_DONE, PA_NEEDED, PA_REJECTED, PA_SENT, ident_token, rfid_ident
from hal.compat import ticks_add

# uplink request kinds
Q_START = 0  # authorize a tap, driver waiting
Q_POST = 1  # post-authorize a session already running
Q_STOP = 2  # may this token stop that session?


class Uplink:
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



