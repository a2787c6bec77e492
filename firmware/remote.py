"""Commands from the backend: remote start and stop (OICP eRoamingAuthorizeRemoteStart/Stop,
answered with an eRoamingAcknowledgement) and local authorization list updates.

Remote-start rules follow ocpi-startsession.md: with an EvseID that EVSE, without one a
plugged unauthorized EV first, else a free EVSE (`outlet.pick`); codes from `oicp_status`. A
remote start whose Identification carries a card UID opens an RFID window: that card is let in
for remote_start_rfid_window_s (the WINDOW check of `authorize.CHAIN`). A repeated remote start
(same SessionID) gets the same answer and starts nothing.
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware import outlet
from firmware.authlists import VersionMismatch
from firmware.ids import IdError, check_session_id
from firmware.records import W_DUE
from firmware.session import canonical, ident_token
from hal.compat import ticks_add, ticks_diff

MAX_STARTED = 8  # SessionIDs of accepted remote starts remembered after their session ended
MAX_WINDOWS = 4  # remote-start RFID windows remembered at once


def _reply(out, rid, ok, code, sid=None):
    r = {"id": rid, "Result": ok, "StatusCode": S.status_code(code)}
    if sid is not None:
        r["SessionID"] = sid
    out.append((E.A_REPLY, 0, r))


def _command_id(cmd, kind, out):
    """The downlink command's "id", or None after an error action (nothing to reply to)."""
    rid = cmd.get("id") if isinstance(cmd, dict) else None
    if not isinstance(rid, str):
        outlet.error(out, 0, E.ERR_BAD_EVENT, kind + ": need an object with 'id'")
        return None
    return rid


def on_remote_start(c, cmd, now, out):
    rid = _command_id(cmd, "remote_start", out)
    if rid is None:
        return
    sid = cmd.get("SessionID")
    ident = cmd.get("Identification")
    evse_id = cmd.get("EvseID")
    try:
        check_session_id(sid)
    except IdError:
        _reply(out, rid, False, S.DATA_ERROR)
        return
    if ident_token(ident) is None or (evse_id is not None and not isinstance(evse_id, str)):
        _reply(out, rid, False, S.DATA_ERROR)
        return
    # a repeat -- of an open session (also one restored after a power cut) or of one of the
    # last remote starts whose session ended meanwhile: the same answer, nothing new starts
    repeat = sid in c.started
    for o in c.outlets:
        repeat = repeat or (o.session is not None and o.session.session_id == sid)
    if repeat:
        _reply(out, rid, True, S.SUCCESS, sid)
        return
    if evse_id is not None:
        o = None
        for p in c.outlets:
            if p.evse_id == evse_id:
                o = p
                break
        if o is None:
            _reply(out, rid, False, S.UNKNOWN_EVSE, sid)
            return
    else:
        o = outlet.pick(c, now)
        if o is None:  # none free: say why -- all out of service, or some in use
            down = all(not p.power.available() for p in c.outlets)
            _reply(out, rid, False, S.EVSE_OUT_OF_SERVICE if down else S.EVSE_IN_USE, sid)
            return
    if not o.power.available() or o.meter_blocks():
        _reply(out, rid, False, S.EVSE_OUT_OF_SERVICE, sid)
        return
    if not o.can_start():
        _reply(out, rid, False, S.EVSE_IN_USE, sid)
        return
    provider = cmd.get("ProviderID") if isinstance(cmd.get("ProviderID"), str) else None
    s = outlet.start(c, o, None, ident, "remote", sid, now, out, provider, evse_id is None)
    _reply(out, rid, True, S.SUCCESS, sid)
    c.started.append(sid)
    if len(c.started) > MAX_STARTED:
        c.started.pop(0)
    rfid = ident.get("RFIDMifareFamilyIdentification")
    if s is not None and isinstance(rfid, dict) and isinstance(rfid.get("UID"), str):
        due = ticks_add(now, c.cfg["remote_start_rfid_window_s"] * 1000)
        # the card named is let in until `due` as this remote start (records.W_*); expired
        # windows go first, beyond MAX_WINDOWS the oldest
        windows = c.windows
        windows[:] = [w for w in windows if ticks_diff(w[W_DUE], now) > 0]
        windows.append([canonical(rfid["UID"]), due, sid, False])
        if len(windows) > MAX_WINDOWS:
            windows.pop(0)


def on_remote_stop(c, cmd, now, out):
    rid = _command_id(cmd, "remote_stop", out)
    if rid is None:
        return
    sid = cmd.get("SessionID")
    evse_id = cmd.get("EvseID")
    for o in c.outlets:
        s = o.session
        if s is not None and s.session_id == sid and (evse_id is None or evse_id == s.evse_id):
            outlet.stop(c, o, E.R_REMOTE, now, out)
            _reply(out, rid, True, S.SUCCESS, sid)
            return
    _reply(out, rid, False, S.SESSION_INVALID, sid if isinstance(sid, str) else None)


def on_local_list(c, d, now, out):
    if not isinstance(d, dict) or not isinstance(d.get("full"), bool):
        outlet.error(out, 0, E.ERR_LOCAL_LIST, "local_list: need an object with 'full'")
        return
    try:
        if d["full"]:
            c.local_list.replace(d.get("version"), d.get("uids") or ())
        else:
            c.local_list.apply_delta(d.get("base_version"), d.get("version"),
                                     d.get("add") or (), d.get("remove") or ())
    except VersionMismatch as e:
        outlet.error(out, 0, E.ERR_LOCAL_LIST, str(e))
        return
    except (ValueError, TypeError) as e:  # IdError is a ValueError
        outlet.error(out, 0, E.ERR_LOCAL_LIST, "local_list: " + str(e))
        return
    out.append((E.A_PERSIST, 0, ("locallist", c.local_list.to_json())))
