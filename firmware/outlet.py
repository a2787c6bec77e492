"""One EVSE as the core keeps it, and the life of its session: the session records.

`Outlet` is the record: the power side (`charging.Evse`), the session on it, a tap waiting for
the backend, a session restored after a power cut, the meter. The functions take the
controller `c` (its state: `outlets`, `clock`, `cfg`, `requests`, `windows`) and an outlet,
and append actions to `out`:

    start           a session is authorized here (session_start, record persisted, EVSE
                    authorized)
    happen          what the power side's happenings (charging.H_*) do to the session:
                    charging start (write-ahead record, Start notification), charging end,
                    Error, the end
    stop            end the authorization (the power side runs its stop sequence)
    end, finish     a session is over: End + CDR if it charged, session_end, record deleted
    pick            where a tap or a remote start without EvseID goes
    on_restore,     a session cut by a power loss, found on flash at boot: closed once
    close_restored

A session authorized before any plug-in "floats" (one reader, several outlets): the first
outlet that gets a plug-in before the connection time-out takes it (`claim_floating`).

A restored record is repaired field by field (`Session.from_record` names what it dropped; the
shell keeps the original aside) and its session closed with what can be trusted, reason
PowerLoss: MeterValueEnd is the first meter reading after boot, or the persisted last value,
flagged MeteringCheck Failed, if the meter is down, went backwards or stays silent for
RESTORE_METER_WAIT_MS. A session that never charged ends without a CDR.
"""

from firmware import events as E
from firmware import oicp_status as S
from firmware.charging import (
    H_CLOSED,
    H_FAULT,
    H_OPENED,
    H_PLUGGED,
    H_STOPPED,
    P_IDLE,
    R_CONNECTION_TIMEOUT,
)
from firmware.records import RQ_DUE, RQ_KIND, RQ_LID, RQ_UID, W_REUSE, W_SID
from firmware.session import Session, kwh, record_key
from hal.compat import ticks_add, ticks_diff

RESTORE_METER_WAIT_MS = 30000  # a restored session waits this long for a fresh meter reading


class Outlet:
    def __init__(self, n, evse_id, power, meter_stop):
        self.n = n  # EVSE number, 1-based (the `evse` of events and actions)
        self.evse_id = evse_id
        self.power = power  # charging.Evse
        self.session = None
        self.pending = None  # id of the authorize_start a tap here waits for
        self.restored = None  # Session cut by a power loss, waiting for a meter reading
        self.restore_due = None  # ticks: then it is closed with its persisted values
        self.meter = None  # last register reading, Wh
        self.meter_down = False
        self.status = None  # last EvseStatus reported
        self.meter_stop = meter_stop  # no charging while the meter is down (meter_failure)

    def meter_blocks(self):
        """The meter is down and the policy says no charging without it."""
        return self.meter_down and self.meter_stop

    def can_start(self):
        return (self.power.phase == P_IDLE and self.power.available() and self.session is None
                and self.pending is None and self.restored is None and not self.meter_blocks())


# -- plumbing -------------------------------------------------------------------------------
def error(out, n, kind, msg):
    out.append((E.A_ERROR, n, (kind, msg)))


def show(out, n, uid, result, code=None):
    """What the driver is shown (an `auth` action)."""
    out.append((E.A_AUTH, n, {"uid": uid, "result": result, "code": code}))


def wall(clock, now):
    """Epoch seconds at ticks `now` from `clock` = (ticks, epoch s) of the last `time` event,
    or None while the wall clock is unknown."""
    if clock is None:
        return None
    return clock[1] + ticks_diff(now, clock[0]) // 1000


def msg_id(c):
    """A fresh uplink message id: "<8 hex of a session id>-<n>"."""
    if c.msg_prefix is None:
        c.msg_prefix = c._new_id()[:8]
    c.msg_seq += 1
    return "{}-{}".format(c.msg_prefix, c.msg_seq)


def persist(s, out):
    """Write session `s`'s record (its own key: see session.record_key)."""
    out.append((E.A_PERSIST, 0, (record_key(s.local_id), s.to_record())))


# -- a session's life -----------------------------------------------------------------------
def pick(c, now):
    """Where a tap (or a remote start without EvseID) goes: the newest plug-in that is
    younger than the connection time-out, else an older plug-in, else the first free
    outlet -- whose authorization then floats. None if no outlet can start."""
    best = None
    rank = None
    for o in c.outlets:
        if not o.can_start():
            continue
        ev = o.power
        if ev.plugged():
            age = 1 << 40 if ev.plugged_at is None else ticks_diff(now, ev.plugged_at)
            r = age if age < ev.conn_ms else age + (1 << 41)  # stale: after every fresh one
        else:
            r = 1 << 42  # free: after every plug-in
        if rank is None or r < rank:
            best, rank = o, r
    return best


def start(c, o, uid, ident, source, session_id, now, out, provider=None, floating=True):
    """A session authorized on `o` (uid None for a remote start) -> the Session, or None
    if `o` cannot start (shown backend_error, EVSE_OUT_OF_SERVICE)."""
    if not o.can_start():
        show(out, o.n, uid, S.DISPLAY_BACKEND_ERROR, S.EVSE_OUT_OF_SERVICE)
        return None
    s = Session(c._new_id(), o.evse_id, ident, uid, source)
    if session_id is not None:
        s.session_id = session_id
    s.provider_id = provider
    s.session_start_tick = now
    s.session_start = wall(c.clock, now)
    s.floating = floating and not o.power.plugged()
    o.session = s
    if uid is not None:
        show(out, o.n, uid, S.DISPLAY_ACCEPTED, S.SUCCESS)
    out.append((E.A_SESSION_START, o.n, s.session_id))
    persist(s, out)
    happen(c, o, o.power.authorize(now, out), now, out)
    if s.floating:  # an answer that came after an EV was plugged in elsewhere
        for p in c.outlets:
            ev = p.power
            if ev.plugged() and ev.plugged_at is not None \
                    and ticks_diff(now, ev.plugged_at) < ev.conn_ms:
                claim_floating(c, p, now, out)
                if not s.floating:
                    break
    return s


def claim_floating(c, o, now, out):
    """`o` just got a plug-in and has no session: take a session authorized before any
    plug-in on another, still unplugged outlet. The session moves with its ids; its records
    now name `o`'s EvseID."""
    if not o.can_start():
        return
    for p in c.outlets:
        s = p.session
        if s is not None and s.floating and p is not o and not s.charged() \
                and not p.power.plugged() and p.power.phase != P_IDLE:
            p.session = None
            p.power.stop(None, now, out)  # no session there now: nothing to end
            r = c.requests.get(s.req) if s.req is not None else None
            if r is not None:
                c.requests[s.req] = (r[RQ_KIND], o, r[RQ_UID], r[RQ_DUE], r[RQ_LID])
            s.evse_id = o.evse_id
            s.floating = False
            o.session = s
            persist(s, out)
            happen(c, o, o.power.authorize(now, out), now, out)
            return


def happen(c, o, h, now, out):
    """The power side's happenings `h` (charging.H_* bits) on `o` -> its session."""
    if not h:
        return
    s = o.session
    if s is None:
        if h & H_PLUGGED:
            claim_floating(c, o, now, out)
        return
    if h & H_CLOSED and not s.charged():
        s.charging_start_tick = now
        s.charging_start = wall(c.clock, now)
        s.meter_start = s.meter_end = o.meter
        s.next_progress = ticks_add(now, c.cfg["progress_interval_s"] * 1000)
        # write ahead: "charging since, meter start" is on flash before the coil is
        # energised, so a cut right after the close still ends in a CDR
        persist(s, out)
        close = (E.A_CONTACTOR, o.n, True)
        if close in out:
            out.insert(out.index(close), out.pop())
        out.append((E.A_OUTBOX, 0, s.start_notification()))
    if h & H_OPENED:
        s.charging_end_tick = now
        s.charging_end = wall(c.clock, now)
        if not h & H_STOPPED:
            persist(s, out)
    if h & H_FAULT and s.charged():
        ev = o.power
        out.append((E.A_OUTBOX, 0, s.error_notification(ev.oos, ev.fault_text or "")))
    if h & H_STOPPED:
        end(c, o, o.power.stop_reason, now, out)


def stop(c, o, reason, now, out):
    happen(c, o, o.power.stop(reason, now, out), now, out)


def end(c, o, reason, now, out):
    """The authorization on `o` is over: its session ends."""
    s = o.session
    o.session = None
    if s.req is not None:
        c.requests.pop(s.req, None)
    if not s.charged() and s.source == "remote":
        for w in c.windows:
            if w[W_SID] == s.session_id:
                w[W_REUSE] = True  # never charged: a card fallback may reuse the SessionID
    finish(o, s, wall(c.clock, now), reason, out)
    if reason == R_CONNECTION_TIMEOUT:
        show(out, o.n, s.uid, S.DISPLAY_TIMEOUT)


def finish(o, s, session_end, reason, out):
    """Session `s` of `o` is over: End + CDR if it charged, session_end, its record deleted."""
    if s.charged():
        for d in s.end_records(session_end):
            out.append((E.A_OUTBOX, 0, d))
    out.append((E.A_SESSION_END, o.n, {"session_id": s.session_id,
                                       "energy_kwh": kwh(s.energy_wh()),
                                       "reason": reason}))
    out.append((E.A_PERSIST, 0, (record_key(s.local_id), None)))


# -- sessions cut by a power loss ---------------------------------------------------------
RESTORE_METER_WAIT_MS = 30000  # a restored session waits this long for a fresh meter reading


def on_restore(c, o, record, now, out):
    """A session record found on flash at boot for outlet `o`: close it, once. The repaired
    record is written back under its own key first, so a cut while it waits for the meter
    does not lose it. A second record for an outlet that already has one waiting is closed
    at once with its persisted values (flagged)."""
    try:
        s, bad = Session.from_record(record, o.evse_id, c._new_id)
    except ValueError as e:
        error(out, o.n, E.ERR_RESTORE, str(e))
        return
    for p in c.outlets:
        for live in (p.session, p.restored):
            if live is not None and live.local_id == s.local_id:
                return  # the same record twice (old and new key): already being closed
    if bad:
        error(out, o.n, E.ERR_RESTORE, "session {}: {}".format(s.local_id, "; ".join(bad)))
        persist(s, out)
    if not s.charged():
        finish(o, s, None, E.R_POWER_LOSS, out)
        return
    if o.restored is not None:
        s.meter_fault = True
        _restored_end(c, o, s, now, out)
        return
    o.restored = s
    o.restore_due = ticks_add(now, RESTORE_METER_WAIT_MS)
    if o.meter_down:
        close_restored(c, o, None, now, out)
    elif o.meter is not None:
        close_restored(c, o, o.meter, now, out)


def close_restored(c, o, wh, now, out):
    """Close the session waiting on `o`: MeterValueEnd = `wh` (the first reading after boot),
    or the persisted last value if `wh` is None (meter down, time-out) or went backwards."""
    s = o.restored
    o.restored = o.restore_due = None
    if wh is not None:
        wh += s.meter_offset  # the session's register was re-based before the cut
    known = s.meter_end if s.meter_end is not None else s.meter_start
    if wh is not None and (known is None or wh >= known):
        s.meter_end = wh
        if s.meter_start is None:
            s.meter_start = wh
    elif wh is not None or o.meter_down:
        s.meter_fault = True
    _restored_end(c, o, s, now, out)


def _restored_end(c, o, s, now, out):
    session_end = wall(c.clock, now)
    if session_end is None:
        session_end = s.charging_end if s.charging_end is not None else s.charging_start
    if s.charging_end is None:
        s.charging_end = session_end
    finish(o, s, session_end, E.R_POWER_LOSS, out)
