"""Remote start/stop, local list updates and sessions restored after a power cut.

A mixin of `firmware.controller.Controller` (see `firmware.cards` for why the core is split).
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware.authlists import VersionMismatch
from firmware.ids import IdError, check_session_id
from firmware.session import (
    Session,
    canonical,
    ident_token,
)
from hal.compat import ticks_add

RESTORE_METER_WAIT_MS = 30000  # a restored session waits this long for a fresh meter reading
MAX_WINDOWS = 4  # remote-start RFID windows remembered at once
MAX_STARTED = 8  # SessionIDs of accepted remote starts remembered after their session ended


class Remote:
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
        # a repeat -- of an open session (also one restored after a power cut) or of one of the
        # last remote starts whose session ended meanwhile: the same answer, nothing new starts
        repeat = sid in self._started
        for s in self.sessions:
            repeat = repeat or (s is not None and s.session_id == sid)
        if repeat:
            self._reply(out, rid, True, S.SUCCESS, sid)
            return
        if evse_id is not None:
            if evse_id not in self.evse_ids:
                self._reply(out, rid, False, S.UNKNOWN_EVSE, sid)
                return
            i = self.evse_ids.index(evse_id)
        else:
            i = self._pick_evse(now)
            if i is None:  # none free: say why -- all out of service, or some in use
                down = all(not e.available() for e in self.evses)
                self._reply(out, rid, False, S.EVSE_OUT_OF_SERVICE if down else S.EVSE_IN_USE,
                            sid)
                return
        if not self.evses[i].available() or self._meter_blocks(i):
            self._reply(out, rid, False, S.EVSE_OUT_OF_SERVICE, sid)
            return
        if not self._can_start(i):
            self._reply(out, rid, False, S.EVSE_IN_USE, sid)
            return
        provider = cmd.get("ProviderID") if isinstance(cmd.get("ProviderID"), str) else None
        s = self._accept(i, None, ident, "remote", sid, now, out, provider, evse_id is None)
        self._reply(out, rid, True, S.SUCCESS, sid)
        self._started.append(sid)
        if len(self._started) > MAX_STARTED:
            self._started.pop(0)
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
        """A session record found on flash at boot (for EVSE i): close it, once. A damaged
        record is repaired field by field (Session.from_record names what it dropped; the
        shell keeps the original aside) and its session closed with what can be trusted; the
        repaired record is written back under its own key first, so a cut while it waits for
        the meter does not lose it. A second record for an EVSE that already has one waiting
        is closed at once with its persisted values (flagged)."""
        try:
            s, bad = Session.from_record(record, self.evse_ids[i], self._new_id)
        except ValueError as e:
            self._error(out, i + 1, E.ERR_RESTORE, str(e))
            return
        for live in self.sessions + [r[0] for r in self._restored if r is not None]:
            if live is not None and live.local_id == s.local_id:
                return  # the same record twice (old and new key): already being closed
        if bad:
            self._error(out, i + 1, E.ERR_RESTORE, "session {}: {}".format(
                s.local_id, "; ".join(bad)))
            self._persist(s, out)
        if not s.charged():
            self._finish(i, s, None, E.R_POWER_LOSS, out)
            return
        if self._restored[i] is not None:
            s.meter_fault = True
            self._restored_end(i, s, now, out)
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
        if wh is not None:
            wh += s.meter_offset  # the session's register was re-based before the cut
        known = s.meter_end if s.meter_end is not None else s.meter_start
        if wh is not None and (known is None or wh >= known):
            s.meter_end = wh
            if s.meter_start is None:
                s.meter_start = wh
        elif wh is not None or self._meter_down[i]:
            s.meter_fault = True
        self._restored_end(i, s, now, out)

    def _restored_end(self, i, s, now, out):
        end = self._wall(now)
        if end is None:
            end = s.charging_end if s.charging_end is not None else s.charging_start
        if s.charging_end is None:
            s.charging_end = end
        self._finish(i, s, end, E.R_POWER_LOSS, out)
