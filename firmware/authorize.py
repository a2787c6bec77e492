"""Authorization: the chain a tapped card goes through, the named outcome of every tap, the
requests to the backend and its answers (OICP eRoamingAuthorizeStart/Stop, oicp-2.3-cpo.md
§1-§2), post-authorization.

A tap first stops a session it may stop (the card that started it, or one of its
AuthorizationStopIdentifications); else it goes to the outlet `outlet.pick` chooses and runs
the chain there; with no outlet free and the link up, it asks the backend whether it may stop
a running session (authorize_stop).

The chain is a table of small pure checks (CHAIN), in order; the first that does not pass
decides:

    check           verdict                  source     when
    LOCAL_LIST      accept                   "local"    the UID is on the local list
    WINDOW          accept                   "remote"   a remote start named this UID within
                                                        remote_start_rfid_window_s
    CACHE           accept, post-authorize   "cache"    online and cached (not expired)
    BACKEND         ask (authorize_start)    "online"   online
    OFFLINE_POLICY  accept, post-authorize   policy's   offline_decision (authlists) allows
                    or refuse                           ("local" needs no post-auth)

`check(name, c, uid, now)` runs one: it reads the controller, the UID and `now`, and returns
None (pass) or a verdict `(verdict, source, detail)`: detail is the RFID window that matched,
the cached stop tokens, or None. After an unanswered authorize_start only OFFLINE runs (the
backend had its chance; no blind retry).

Every tap ends in one outcome (O_*), kept by the controller as `last_outcome` = (outcome,
evse number or 0, uid, code); a tap that waits for the backend gets its final outcome when the
answer (or the time-out) comes.

Anything accepted without a backend answer (cache, offline policy) is post-authorized
(authorize_start for that session) when the link is up; a refusal then stops the session
(reason DeAuthorized); an undecided answer (NoDecision) is asked again after POST_RETRY_MS.
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware import outlet
from firmware.authlists import offline_decision
from firmware.charging import P_IDLE, passed
from firmware.ids import IdError, check_session_id, normalize_uid
from firmware.records import RQ_KIND, RQ_UID, W_DUE, W_REUSE, W_SID, W_TOKEN
from firmware.session import (
    PA_DONE,
    PA_NEEDED,
    PA_REJECTED,
    PA_SENT,
    canonical,
    ident_token,
    rfid_ident,
)
from hal.compat import ticks_add, ticks_diff

# verdicts of a check (a check that passes returns None)
ACCEPT = "accept"
REFUSE = "refuse"
ASK = "ask"

# the outcome of a tap
O_STARTED = "started"  # a session started (or its authorization waits for the plug-in)
O_STOPPED_OWN = "stop_own"  # the card that started a session stopped it
O_STOPPED_BY_TOKEN = "stop_token"  # one of a session's AuthorizationStopIdentifications
O_STOPPED_BY_BACKEND = "stop_auth"  # authorize_stop answered Authorized
O_REFUSED = "refused"  # not authorized (code: the OICP status code, or None offline)
O_WAITING = "waiting"  # authorize_start sent (or already waiting for this card)
O_STOP_ASKED = "stop_asked"  # no EVSE free: authorize_stop sent for the running sessions
O_NO_EVSE = "no_evse"  # no EVSE free and nothing to ask: card_invalid, EVSE_IN_USE
O_TIMED_OUT = "timed_out"  # authorize_stop unanswered
O_SAME_CARD = "same_card"  # still the same presentation: nothing done
O_BAD_UID = "bad_uid"  # not a card identifier: an error action

# uplink request kinds
Q_START = 0  # authorize a tap, driver waiting
Q_POST = 1  # post-authorize a session already running
Q_STOP = 2  # may this token stop that session?
POST_RETRY_MS = 60000  # an undecided post-authorization (NoDecision) is asked again after this


# -- the chain ------------------------------------------------------------------------------
LOCAL_LIST = "local_list"
WINDOW = "window"
CACHE = "cache"
BACKEND = "backend"
OFFLINE_POLICY = "offline"
CHAIN = (LOCAL_LIST, WINDOW, CACHE, BACKEND, OFFLINE_POLICY)
OFFLINE = (OFFLINE_POLICY,)  # after an unanswered authorize_start


def check(name, c, uid, now):
    """The check `name` of the chain for `uid`: None (pass) or (verdict, source, detail).
    Pure: reads the controller `c`. (One function with a branch per check, not one function
    per check: each function object costs ~100 B of heap on the device.)"""
    if name == LOCAL_LIST:
        if c.local_list.contains(uid):
            return ACCEPT, "local", None
    elif name == WINDOW:
        tok = canonical(uid)
        for w in c.windows:
            if w[W_TOKEN] == tok and ticks_diff(w[W_DUE], now) > 0:
                return ACCEPT, "remote", w
    elif name == CACHE:
        if c.online:
            hit = c.cache.get(uid, now)
            if hit is not None:
                return ACCEPT, "cache", hit
    elif name == BACKEND:
        if c.online:
            return ASK, "online", None
    else:  # OFFLINE_POLICY: never passes
        allowed, source = offline_decision(c.cfg["offline_policy"], uid, c.local_list,
                                           c.cache, now)
        return (ACCEPT if allowed else REFUSE), source, None
    return None


# -- taps -----------------------------------------------------------------------------------
def on_card(c, data, now, out):
    """A card entered the field. One held card is one presentation: while it is there
    nothing else counts, and the same card back within `card_guard_ms` after it left
    (a field drop-out, a bogus frame between good ones) is still the same presentation.
    An identifier that no real card has (all bytes 00 or FF) is not a card."""
    if c.card is not None:
        c.last_outcome = (O_SAME_CARD, 0, c.card, None)
        return
    try:
        uid = normalize_uid(data)
    except IdError as e:
        outlet.error(out, 0, E.ERR_BAD_UID, str(e))
        c.last_outcome = (O_BAD_UID, 0, None, None)
        return
    if not uid.strip("0") or not uid.strip("F"):
        outlet.error(out, 0, E.ERR_BAD_UID, "UID {}: no real card has it".format(uid))
        c.last_outcome = (O_BAD_UID, 0, uid, None)
        return
    c.card = uid
    g = c.gone
    if g is not None and g[0] == uid \
            and ticks_diff(now, g[1]) < c.cfg.get("card_guard_ms", 2000):
        c.last_outcome = (O_SAME_CARD, 0, uid, None)
        return
    for o in c.outlets:
        s = o.session
        right = None if s is None else s.may_stop(uid)
        if right is not None:
            outlet.stop(c, o, E.R_LOCAL, now, out)
            c.last_outcome = (O_STOPPED_OWN if right == "own" else O_STOPPED_BY_TOKEN, o.n,
                              uid, None)
            return
    for r in c.requests.values():
        if r[RQ_UID] == uid and r[RQ_KIND] == Q_START:
            c.last_outcome = (O_WAITING, 0, uid, None)  # already being asked about
            return
    o = outlet.pick(c, now)
    if o is not None:
        tap(c, o, uid, now, out)
        return
    asked = False
    if c.online:
        for p in c.outlets:
            s = p.session
            if s is not None and s.session_id != s.local_id and s.req is None \
                    and p.power.phase != P_IDLE:
                s.req = send(c, Q_STOP, p, uid, s, now, out)
                asked = True
    if asked:
        c.last_outcome = (O_STOP_ASKED, 0, uid, None)
    else:
        outlet.show(out, 0, uid, S.DISPLAY_CARD_INVALID, S.EVSE_IN_USE)
        c.last_outcome = (O_NO_EVSE, 0, uid, S.EVSE_IN_USE)


def tap(c, o, uid, now, out, chain=CHAIN):
    """Run the authorization `chain` for `uid` on outlet `o` and carry out its verdict."""
    for name in chain:  # the last check never passes
        v = check(name, c, uid, now)
        if v is not None:
            break
    verdict, source, detail = v
    if verdict == ASK:
        o.pending = send(c, Q_START, o, uid, None, now, out)
        c.last_outcome = (O_WAITING, o.n, uid, None)
        return
    if verdict != ACCEPT:
        outlet.show(out, o.n, uid, S.DISPLAY_CARD_UNKNOWN)
        c.last_outcome = (O_REFUSED, o.n, uid, None)
        return
    sid = None
    if source == "remote":  # detail: the RFID window
        if detail[W_REUSE]:
            sid = detail[W_SID]
        detail[W_REUSE] = False
    s = outlet.start(c, o, uid, rfid_ident(uid), source, sid, now, out)
    if s is None:
        c.last_outcome = (O_REFUSED, o.n, uid, S.EVSE_OUT_OF_SERVICE)
        return
    c.last_outcome = (O_STARTED, o.n, uid, None)
    if source != "local" and source != "remote":  # accepted without the backend's answer
        s.post_auth = PA_NEEDED
        if source == "cache" and detail is not None:  # the online cache hit: ask at once
            s.stop_ids = detail
            post_authorize(c, o, now, out)


def on_card_gone(c, data, now, out):
    if c.card is not None:
        c.gone = (c.card, now)
    c.card = None


def on_reader(c, data, now, out):
    if data not in ("ok", "failed"):
        outlet.error(out, 0, E.ERR_BAD_EVENT, "reader: need 'ok' or 'failed'")
        return
    ok = data == "ok"
    if not ok and c.reader_ok:
        outlet.error(out, 0, E.ERR_READER, "card reader failed")
    c.reader_ok = ok


# -- requests to the backend and its answers ------------------------------------------------
def send(c, kind, o, uid, s, now, out):
    """Send an authorize_start (Q_START, Q_POST) or authorize_stop (Q_STOP) -> its id."""
    rid = outlet.msg_id(c)
    deadline = ticks_add(now, c.cfg["auth_timeout_s"] * 1000)
    c.requests[rid] = (kind, o, uid, deadline, None if s is None else s.local_id)
    msg = {"type": E.MSG_AUTHORIZE_STOP if kind == Q_STOP else E.MSG_AUTHORIZE_START,
           "id": rid, "deadline": deadline, "EvseID": o.evse_id,
           "Identification": rfid_ident(uid) if uid is not None else s.ident}
    if s is not None:
        msg["CPOPartnerSessionID"] = s.local_id
        if kind == Q_STOP:
            msg["SessionID"] = s.session_id
    out.append((E.A_SEND, 0, msg))
    return rid


def post_authorize(c, o, now, out):
    s = o.session
    if s is None or s.post_auth != PA_NEEDED or not c.online or s.req is not None:
        return
    if s.retry_at is not None and not passed(s.retry_at, now):
        return  # undecided a moment ago: the controller asks again at retry_at
    s.retry_at = None
    s.post_auth = PA_SENT
    s.req = send(c, Q_POST, o, s.uid, s, now, out)


def request_failed(c, rid, now, out):
    """No answer in time (or the link went down): decide without the backend."""
    kind, o, uid, _, lid = c.requests.pop(rid)
    if kind == Q_START:
        o.pending = None
        tap(c, o, uid, now, out, OFFLINE)
        return
    s = o.session
    if s is None or s.local_id != lid:
        return
    s.req = None
    if kind == Q_POST:
        s.post_auth = PA_NEEDED  # ask again when the link comes back
    else:
        outlet.show(out, o.n, uid, S.DISPLAY_TIMEOUT)
        c.last_outcome = (O_TIMED_OUT, o.n, uid, None)


def on_auth(c, reply, now, out):
    parsed = parse_reply(reply)
    if isinstance(parsed, str):
        outlet.error(out, 0, E.ERR_BAD_REPLY, parsed)
        return
    rid, authorized, code, sid, provider, stop_ids, undecided = parsed
    req = c.requests.get(rid)
    if req is None:
        outlet.error(out, 0, E.ERR_BAD_REPLY,
                     "auth reply for unknown or expired request " + repr(rid))
        return
    kind, o, uid, _, lid = req
    if authorized and kind != Q_STOP and sid is None:
        outlet.error(out, 0, E.ERR_BAD_REPLY, "Authorized without a valid SessionID")
        return
    del c.requests[rid]
    status = S.AUTHORIZED if authorized else S.NOT_AUTHORIZED
    shown = S.driver_display(status, code)
    if kind == Q_START:
        o.pending = None
        if authorized:
            c.cache.put(uid, now, stop_ids)
            s = outlet.start(c, o, uid, rfid_ident(uid), "online", sid, now, out, provider)
            if s is not None:
                s.stop_ids = stop_ids
                c.last_outcome = (O_STARTED, o.n, uid, code)
            else:
                c.last_outcome = (O_REFUSED, o.n, uid, S.EVSE_OUT_OF_SERVICE)
        else:
            c.cache.remove(uid)
            outlet.show(out, o.n, uid, shown, code)
            c.last_outcome = (O_REFUSED, o.n, uid, code)
        return
    s = o.session
    if s is None or s.local_id != lid:
        return  # the session ended meanwhile
    s.req = None
    if kind == Q_STOP:
        if authorized:
            outlet.stop(c, o, E.R_LOCAL, now, out)
            c.last_outcome = (O_STOPPED_BY_BACKEND, o.n, uid, code)
        else:
            outlet.show(out, o.n, uid, shown, code)
            c.last_outcome = (O_REFUSED, o.n, uid, code)
        return
    if undecided and not authorized:
        # the backend could not ask Hubject (time-out, 5xx, rate limit): not a refusal --
        # the session goes on and is post-authorized again later (contract: NoDecision)
        s.post_auth = PA_NEEDED
        s.retry_at = ticks_add(now, POST_RETRY_MS)
        outlet.error(out, o.n, E.ERR_BAD_REPLY, "post-authorization undecided ({}): asked again in "
              "{} s".format(code, POST_RETRY_MS // 1000))
        return
    if authorized:
        s.session_id = sid
        s.provider_id = provider
        s.stop_ids = stop_ids
        s.post_auth = PA_DONE
        c.cache.put(uid, now, stop_ids)
        outlet.persist(s, out)
    else:
        s.post_auth = PA_REJECTED
        c.cache.remove(uid)
        outlet.show(out, o.n, uid, shown, code)
        outlet.stop(c, o, E.R_DEAUTHORIZED, now, out)


def on_online(c, data, now, out):
    if not isinstance(data, bool):
        outlet.error(out, 0, E.ERR_BAD_EVENT, "online: need a bool")
        return
    was = c.online
    c.online = data
    if data and not was:
        for o in c.outlets:
            post_authorize(c, o, now, out)
    elif was and not data:
        for rid in list(c.requests):
            request_failed(c, rid, now, out)


# -- reading the backend's answer ----------------------------------------------------------
def parse_reply(reply):
    """Validate an authorization answer -> (id, authorized, code, SessionID, ProviderID,
    stop tokens, undecided), or a string saying what is wrong with it."""
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
