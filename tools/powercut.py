"""Seeded power-cut campaign against the simulator (issue 10): random sessions, random cuts.

    python -m tools.powercut --interpreter cpython|micropython --seed N --cuts N
                             [--evses 1|2] [--per-run M] [--report FILE] [--settle SECONDS]
                             [--pace X] [--replay FILE] [--quiet]

One run drives a `host_sim.runner.Simulation` (card CARD on the local list) with random console
commands chosen from the seed alone (never from what the firmware said, so a seed always gives
the same command sequence; the firmware's timing decides what it does with them): random
sessions (`Planner`: plug, tap, tap and remove, leave the card on the reader, `ev N
charge|pause|ventilate|unplug`, waits, stop taps; no remote commands) and power cuts of three
kinds -- at a uniformly random moment (0..1.5 s after the previous command, sometimes with an
outage), 5-15 ms after `ev N charge` (while the contactor is being closed), and pairs 0-100 ms
apart (the second right after the first restart's `ready`). A `status`
after each group of commands and after every cut records the simulated meter registers
(`devices` events). `--cuts` is the total; it is split into runs of at most `--per-run` cuts,
with seeds N, N+1, ... (a fresh flash directory each). A run ends with the settle: the card is
removed, every EV unplugged, the run waits (bounded by --settle) until every session has ended,
then one last cut and a quiet window (QUIET_S) prove that nothing is emitted twice.

What is checked, from the event stream only (`Tracker`; units: t in seconds, energy in kWh):
  a. every session ends exactly once (`session_end`); one that closed its contactor (the core's
     `contactor closed=true`, or the coil seen energised by the simulated contactor) has exactly
     one CDR (by CPOPartnerSessionID); one cut by a power loss ends with reason PowerLoss, in
     the first boot after the cut that lived RESTORE_S or longer.
  b. no CDR twice for one CPOPartnerSessionID across all restarts (`cdr` events are counted).
  c. a session that never closed its contactor has no CDR (tolerated and counted: a zero-energy
     CDR of a session cut while its EV asked for charge -- the journal wrote "charging" ahead
     of the coil and the cut came before the coil line left).
  d. the CDR agrees with what happened: SessionID/CPOPartnerSessionID the session's (valid
     OICP SessionIDs), EvseID the EVSE it ran on, the card's UID; ConsumedEnergy ==
     round(MeterValueEnd - MeterValueStart, 3) (unless MeteringCheck Failed, itself a violation
     here: the simulated meter never fails), >= 0 and == the session_end's energy_kwh;
     MeterValueStart >= the register before the session started; MeterValueEnd <= the register
     after it ended and, for a session cut while charging, == the register at the cut (the
     meter stops counting with the power); energy <= duration x P_MAX_W, and >= what the
     register counted while it was charging (less one meter poll, LAG_S x the power seen,
     when it did not end at a cut); SessionStart <=
     ChargingStart <= ChargingEnd <= SessionEnd, each within CLOCK_SLACK_S of when it happened.
  e. the firmware never dies (`error` firmware_exit), boots after every cut (`ready`), and
     reports no `internal`, `restore`, `outbox` (a message not stored) or `store` error (a
     cut must not damage the flash; a write the cut interrupted, cleaned up, is counted only).
  f. the coil is never energised while the EV is not asking for charge (state C, or D on a
     ventilated site) for longer than GRACE_S, and drops within OPEN_TOL_S after the EV stops
     asking (`sim` coil events against the runner's `ev` events).
  g. the outbox on flash loses nothing (no uplink acknowledges here): its depth (`snapshot`)
     does not drop across a cut, and at the end it holds at least every CDR emitted.

Each violation is printed with the seed, the step (command) that caused it, the last commands
up to it (a reproduction: `set` lines plus console commands, runnable with --replay or as a
scenario), and the event window around it. Exit status: 0 no violation, 1 violations, 2 the
campaign could not run.
"""

import argparse
import bisect
import calendar
import json
import math
import random
import re
import sys
import time

from host_sim.runner import RunnerError, Simulation, make_config

CARD = "04A1B2C3D4E5F6"
# the campaign's firmware settings: the shortest connection time-out (10 s) so that a session
# authorized for an outlet nobody plugs into ends within the settle; a card guard time of
# 0.5 s instead of 2 s (the same card back sooner is ignored), so taps cost less waiting
CONFIG = {"connection_timeout_s": 10, "card_guard_ms": 500}
PER_RUN_CUTS = 25
SETTLE_S = 20.0  # longest wait for every session to end after the final unplug (s)
SNAPSHOT_WAIT_S = 2.0  # longest wait for the firmware's answer to `status` (s)
QUIET_S = 2.0  # after the final cut: nothing may be emitted again during this window (s)
RESTORE_S = 3.0  # a boot that lives this long closes every session a cut left open (s)
GRACE_S = 0.25  # coil may still close this long after the EV stopped asking (in flight, s)
OPEN_TOL_S = 0.5  # the coil drops within this after the EV stops asking (s)
P_MAX_W = 7360.0  # 32 A x 230 V: the most one simulated EVSE can deliver (W)
LAG_S = 1.5  # the end reading may be this old (s): the firmware polls the meter once a second
EPS_KWH = 0.0015  # 1 Wh of rounding (the firmware counts whole Wh) plus float32 (kWh)
CLOCK_SLACK_S = 2.5  # the firmware's clock counts whole seconds (s)
CLOSING_S = 0.05  # a cut this soon after the coil was energised hits the closing (s)
CARD_GUARD_S = CONFIG["card_guard_ms"] / 1000 + 0.2  # wait this long before the same card (s)
MAX_STEPS_PER_CUT = 60  # bound on commands per cut, whatever the dice say
WINDOW_BEFORE_S = 1.0  # event window printed around a violation (s)
WINDOW_AFTER_S = 3.0
WINDOW_MAX = 80  # events printed per violation at most
REPRO_TAIL = 25  # commands printed per violation (the report has them all)
SESSION_ID = re.compile(r"^[A-Za-z0-9]{8}(-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12}$")
RUNNER_KINDS = ("ev", "reader", "device", "devices", "sim", "power_cut", "restart")
HEALTH_ERRORS = ("internal", "store", "restore", "outbox")
# a store report about a write the cut interrupted (its tmp file removed, its torn tail cut):
# the atomic-write machinery did its job, nothing reported was lost -- counted, not a violation
STORE_BENIGN = "interrupted write"
CDR_FIELDS = ("SessionID", "CPOPartnerSessionID", "EvseID", "Identification", "SessionStart",
              "SessionEnd", "ChargingStart", "ChargingEnd", "ConsumedEnergy",
              "MeterValueStart", "MeterValueEnd")
NOISE_KINDS = ("devices", "snapshot", "heap")  # left out of printed event windows


class Violation:
    """One broken invariant: `inv` (a..f), text, the time it is anchored at (s), the step
    (index of the console command) that caused it and the session it concerns (or None)."""

    def __init__(self, inv, text, t, step, session=None):
        self.inv = inv
        self.text = text
        self.t = t
        self.step = step
        self.session = session

    def __repr__(self):
        return "Violation({}, {!r})".format(self.inv, self.text)


class Session:
    """What the event stream says about one session (times in s on the runner's clock)."""

    def __init__(self, sid, evse, boot, t, plugged, step):
        self.sid = sid
        self.step = step  # the command during which it started
        self.evse = evse
        self.boot = boot  # boot index (0 = first) the session started in
        self.start_t = t
        self.floating = not plugged  # authorized before its EV was plugged in
        self.closed_via = set()  # "contactor" (core event) / "coil" (device)
        self.close_t = None  # first close (s)
        self.ends = []  # (event, boot)
        self.cdrs = []  # (event, boot)

    def charged(self):
        return bool(self.closed_via)

    def end_boot(self):
        return self.ends[0][1] if self.ends else None


class Tracker:
    """Follows one run's events (fed one at a time, in `Simulation.events` order) and checks
    the invariants. Boots are numbered from 0; cut k ends boot k. Firmware lines printed just
    before a cut can be recorded after its `power_cut` event: they are given to the old boot
    by their time stamp (<= the moment the killed process was fully read, `clock()` when the
    `power_cut` event is recorded)."""

    def __init__(self, evses, evse_ids, card=CARD, ventilated=False, clock=None):
        self.evses = evses
        self.evse_ids = list(evse_ids)
        self.card = card
        self.ventilated = ventilated
        self.clock = clock
        self.events = []
        self.sessions = {}  # sid -> Session, in start order
        self.open = [{}]  # per boot: evse -> sid of the session open there
        self.cuts = []  # dicts: t, bound, restart_t, reg (evse -> kWh), exact (evse -> bool)
        self.bounds = []  # rounded boundary times of the cuts, ascending
        self.ready = [0]  # `ready` lines per boot
        self.violations = []
        self.errors = {}  # error kind -> count
        self.cdr_count = 0
        self.regs = {n: [] for n in range(1, evses + 1)}  # evse -> [(t, kWh)] from `status`
        self.reg_times = {n: [] for n in range(1, evses + 1)}
        self.request = {n: None for n in range(1, evses + 1)}  # EV: None, "C", "D"
        self.plugged = {n: False for n in range(1, evses + 1)}
        self.asking_changes = {n: [(0.0, False)] for n in range(1, evses + 1)}
        self.not_asking_since = {n: 0.0 for n in range(1, evses + 1)}
        self.coil = {n: False for n in range(1, evses + 1)}
        self.coil_log = {n: [] for n in range(1, evses + 1)}  # (t, on, boot, cause)
        self.must_open = {n: None for n in range(1, evses + 1)}  # t the EV stopped asking
        self.must_open_step = {n: -1 for n in range(1, evses + 1)}
        self.fatal = None
        self.last_t = 0.0
        self.p_seen = 0.0  # the highest meter power seen in a snapshot (W)
        self.stopped = False
        self.depths = []  # (t, boot, outbox depth) from the firmware's `snapshot`
        self.outbox_full = False  # the outbox dropped something under its full policy
        self.step = -1  # the index of the console command being run (set by the runner)

    # -- feeding -----------------------------------------------------------------------------
    def boot(self):
        """The current boot index (for runner and device events)."""
        return len(self.cuts)

    def feed(self, e):
        if self.stopped:
            return  # the run is over: what closing the simulator causes is not checked
        self.events.append(e)
        t = e.get("t", 0.0)
        self.last_t = max(self.last_t, t)
        self._check_open_deadlines(t)
        kind = e.get("ev")
        if kind in RUNNER_KINDS:
            getattr(self, "_on_" + kind)(e, t)
        elif kind == "error" and e.get("kind") in ("command", "firmware_exit"):
            self._on_runner_error(e, t)
        else:
            self._on_firmware(e, t, bisect.bisect_left(self.bounds, t))

    def _v(self, inv, text, t, session=None, step=None):
        if step is None:
            s = self.sessions.get(session)
            if s is not None:
                cut = self._cut_of(s)
                step = cut["step"] if cut is not None else s.step
            else:
                step = self.step
        self.violations.append(Violation(inv, text, t, step, session))

    def _on_runner_error(self, e, t):
        self.errors[e.get("kind")] = self.errors.get(e.get("kind"), 0) + 1
        if e.get("kind") == "firmware_exit":
            self.fatal = e
            self._v("e", "the firmware died (status {}): {}".format(
                e.get("status"), (e.get("stderr") or "").strip()[-600:]), t)
        else:
            self._v("tool", "the campaign sent a refused command: {} ({})".format(
                e.get("command"), e.get("message")), t)

    def _on_firmware(self, e, t, boot):
        kind = e.get("ev")
        while len(self.open) <= boot:
            self.open.append({})
            self.ready.append(0)
        opened = self.open[boot]
        n = e.get("evse")
        if kind == "ready":
            self.ready[boot] += 1
        elif kind == "session_start":
            sid = e.get("session_id")
            if sid in self.sessions:
                self._v("a", "session_start for {} a second time".format(sid), t, sid)
                return
            self.sessions[sid] = Session(sid, n, boot, t, self.plugged.get(n, False),
                                         self.step)
            opened[n] = sid
        elif kind == "contactor" and e.get("closed") is True:
            self._closed(opened, n, t, "contactor", boot)
        elif kind == "session_end":
            s = self.sessions.get(e.get("session_id"))
            if s is None:
                self._v("a", "session_end for a session that never started: {}".format(
                    e.get("session_id")), t)
                return
            s.ends.append((e, boot))
            if opened.get(s.evse) == s.sid:
                del opened[s.evse]
        elif kind == "cdr":
            self.cdr_count += 1
            rec = e.get("record") if isinstance(e.get("record"), dict) else {}
            key = rec.get("CPOPartnerSessionID", e.get("session_id"))
            s = self.sessions.get(key)
            if s is None:
                self._v("c", "a CDR for a session that never started: {}".format(
                    json.dumps(rec, sort_keys=True)[:300]), t)
                return
            s.cdrs.append((e, boot))
        elif kind == "error":
            k = e.get("kind")
            self.errors[k] = self.errors.get(k, 0) + 1
            if k == "store" and STORE_BENIGN in str(e.get("message")):
                self.errors["store:" + STORE_BENIGN] = \
                    self.errors.get("store:" + STORE_BENIGN, 0) + 1
            elif k in HEALTH_ERRORS:
                self._v("e", "error {}: {}".format(k, e.get("message")), t)
            elif k == "outbox_full":
                self.outbox_full = True
        elif kind == "snapshot" and _num(e.get("outbox")):
            self.depths.append((t, boot, e["outbox"]))

    def _closed(self, opened, n, t, via, boot):
        sid = opened.get(n)
        if sid is None:
            sid = self._claim_floating(opened, n)
        if sid is None:
            self._v("f", "{} closed on EVSE {} with no session open there (boot {})".format(
                via, n, boot), t)
            return
        s = self.sessions[sid]
        s.closed_via.add(via)
        if s.close_t is None:
            s.close_t = t

    def _claim_floating(self, opened, n):
        """A close on EVSE n, whose session was authorized before any plug-in on another
        EVSE and moved to n when n was plugged in (the core says nothing when it moves)."""
        for m, sid in list(opened.items()):
            s = self.sessions[sid]
            if m != n and s.floating and not s.charged():
                del opened[m]
                opened[n] = sid
                s.evse = n
                return sid
        return None

    def _on_ev(self, e, t):
        n = e.get("evse")
        action = e.get("action")
        if action == "plug":
            self.plugged[n] = True
            self.request[n] = None
        elif action == "unplug":
            self.plugged[n] = False
            self.request[n] = None
        elif action == "charge":
            self.request[n] = "C"
        elif action == "ventilate":
            self.request[n] = "D"
        elif action == "pause":
            self.request[n] = None
        asking = self.asking(n)
        if asking != self.asking_changes[n][-1][1]:
            self.asking_changes[n].append((t, asking))
            if not asking:
                self.not_asking_since[n] = t
                if self.coil[n]:
                    self.must_open[n] = t
                    self.must_open_step[n] = self.step

    def asking(self, n):
        r = self.request[n]
        return self.plugged[n] and (r == "C" or (r == "D" and self.ventilated))

    def asked_at(self, n, t):
        """Was EV n asking for charge at t, or up to GRACE_S before?"""
        changes = self.asking_changes[n]
        i = bisect.bisect_right([c[0] for c in changes], t) - 1
        if changes[max(i, 0)][1]:
            return True
        return i > 0 and changes[i - 1][1] and t - changes[i][0] <= GRACE_S

    def _on_sim(self, e, t):
        if e.get("what") != "coil":
            return
        n = e.get("evse")
        on = bool(e.get("on"))
        self.coil_log[n].append((t, on, self.boot(), e.get("cause")))
        self.coil[n] = on
        if not on:
            self.must_open[n] = None
            return
        if not self.asking(n) and t - self.not_asking_since[n] > GRACE_S:
            self._v("f", "coil {} energised while the EV is not asking for charge (request "
                    "{}, plugged {}, since t={:.3f})".format(n, self.request[n], self.plugged[n],
                                                             self.not_asking_since[n]), t)
        while len(self.open) <= self.boot():
            self.open.append({})
            self.ready.append(0)
        self._closed(self.open[self.boot()], n, t, "coil", self.boot())

    def _check_open_deadlines(self, t):
        for n, since in self.must_open.items():
            if since is not None and t > since + OPEN_TOL_S:
                self.must_open[n] = None
                self._v("f", "coil {} still energised {:.3f} s after the EV stopped asking "
                        "(at t={:.3f})".format(n, t - since, since), since,
                        step=self.must_open_step[n])

    def _on_reader(self, e, t):
        pass

    def _on_device(self, e, t):
        pass

    def _on_devices(self, e, t):
        try:
            meters = e["devices"]["meter"]["device"]["meters"]
        except (KeyError, TypeError):
            return
        regs = {}
        for m in meters:
            n = m.get("address")
            if n in self.regs and isinstance(m.get("import_kwh"), (int, float)):
                regs[n] = float(m["import_kwh"])
                if _num(m.get("power_w")):
                    self.p_seen = max(self.p_seen, float(m["power_w"]))
                self.regs[n].append((t, regs[n]))
                self.reg_times[n].append(t)
        if self.cuts and self.cuts[-1]["reg"] is None and t >= self.cuts[-1]["t"]:
            cut = self.cuts[-1]
            cut["reg"] = regs
            cut["exact"] = {n: not any(c[1] and c[0] >= cut["t"] for c in self.coil_log[n])
                            for n in regs}

    def _on_power_cut(self, e, t):
        bound = self.clock() if self.clock is not None else t
        self.cuts.append({"t": t, "bound": bound, "restart_t": None, "reg": None,
                          "exact": {}, "step": self.step})
        self.bounds.append(round(bound, 3))
        self.open.append({})
        self.ready.append(0)
        for n in self.coil:
            self.coil[n] = False
            self.must_open[n] = None

    def _on_restart(self, e, t):
        if self.cuts:
            self.cuts[-1]["restart_t"] = t

    # -- queries -----------------------------------------------------------------------------
    def pending(self):
        """Sessions not finished yet: not ended, or charged without a CDR."""
        return [s for s in self.sessions.values()
                if not s.ends or (s.charged() and not s.cdrs)]

    def reg_before(self, n, t):
        """The register (kWh) of the latest snapshot at or before t, or None."""
        i = bisect.bisect_right(self.reg_times[n], t) - 1
        return self.regs[n][i][1] if i >= 0 else None

    def reg_after(self, n, t):
        """The register (kWh) of the earliest snapshot at or after t, or None."""
        i = bisect.bisect_left(self.reg_times[n], t)
        return self.regs[n][i][1] if i < len(self.regs[n]) else None

    def boot_span(self, b):
        """(start, end) of boot b in s (end None: still running)."""
        start = 0.0 if b == 0 else (self.cuts[b - 1]["restart_t"] or self.cuts[b - 1]["t"])
        end = self.cuts[b]["t"] if b < len(self.cuts) else None
        return start, end

    # -- the end of a run --------------------------------------------------------------------
    def finish(self, wall0, complete):
        """Check every session (after the settle). `wall0`: epoch seconds at t = 0;
        `complete`: the run got through its settle (else sessions may legitimately be open)."""
        self._check_open_deadlines(math.inf)
        for b, count in enumerate(self.ready):
            if count == 0 and (b < len(self.cuts) or complete):
                self._v("e", "boot {} never printed `ready`".format(b),
                        self.cuts[b - 1]["t"] if b else 0.0,
                        step=self.cuts[b - 1]["step"] if b else -1)
        for s in self.sessions.values():
            self._check_session(s, wall0, complete)
        self._check_outbox(complete)
        return self.violations

    def _check_outbox(self, complete):
        """Nothing acknowledges here (no uplink), so the persisted outbox never loses a
        message: its depth after a restart is at least the last depth seen before the cut,
        less one (an EVSE status superseded just before the cut, its successor not yet
        written), and at the end it holds at least every CDR emitted."""
        if self.outbox_full:
            return
        for k, cut in enumerate(self.cuts):
            before = [d for t, b, d in self.depths if b == k]
            after = [d for t, b, d in self.depths if b == k + 1]
            if before and after and after[0] < before[-1] - 1:
                self._v("g", "the outbox held {} messages before the cut at t={:.3f} and {} "
                        "after the restart".format(before[-1], cut["t"], after[0]), cut["t"],
                        step=cut["step"])
        cdrs = {s.sid for s in self.sessions.values() if s.cdrs}
        final = [d for t, b, d in self.depths if b == len(self.cuts)]
        if complete and final and final[-1] < len(cdrs):
            self._v("g", "the outbox holds {} messages at the end, but {} CDRs were emitted "
                    "and none acknowledged".format(final[-1], len(cdrs)), self.last_t)

    def _cut_of(self, s):
        """The cut that ended the session's boot while it was open there, or None."""
        if s.end_boot() == s.boot or s.boot >= len(self.cuts):
            return None
        return self.cuts[s.boot]

    def _check_session(self, s, wall0, complete):
        cut = self._cut_of(s)
        anchor = cut["t"] if cut else s.start_t
        ends, cdrs = s.ends, s.cdrs
        if len(ends) > 1:
            self._v("a", "session {} ended {} times: {}".format(
                s.sid, len(ends), "; ".join(_brief(e) for e, _ in ends)), ends[1][0]["t"], s.sid)
        if len(cdrs) > 1:
            self._v("b", "{} CDRs for session {} (boots {})".format(
                len(cdrs), s.sid, [b for _, b in cdrs]), cdrs[1][0]["t"], s.sid)
        if complete and not ends:
            self._v("a", "session {} (EVSE {}, {}) never ended".format(
                s.sid, s.evse, "charged" if s.charged() else "not charged"), anchor, s.sid)
        if complete and s.charged() and not cdrs:
            self._v("a", "session {} closed its contactor ({}) at t={:.3f} but has no CDR{}"
                    .format(s.sid, "+".join(sorted(s.closed_via)), s.close_t,
                            "; ended " + _brief(ends[0][0]) if ends else ""), anchor, s.sid)
        if cut is not None:
            self._check_restored(s, cut)
        if cdrs and not s.charged():
            e = cdrs[0][0]
            rec = e.get("record") or {}
            if cut is not None and self.asked_at(s.evse, cut["t"]) \
                    and rec.get("ConsumedEnergy") == 0:
                self.errors["tolerated:write_ahead_cdr"] = \
                    self.errors.get("tolerated:write_ahead_cdr", 0) + 1
            else:
                self._v("c", "session {} never closed its contactor but has a CDR: {}".format(
                    s.sid, json.dumps(rec, sort_keys=True)[:400]), e["t"], s.sid)
        if cdrs:
            self._check_cdr(s, cdrs[0][0], cut, wall0)

    def _check_restored(self, s, cut):
        """A session a cut left open ends with PowerLoss in the first boot after the cut that
        lived RESTORE_S or longer (a cut soon after a restart may postpone it)."""
        if s.ends:
            reason = s.ends[0][0].get("reason")
            if reason != "PowerLoss":
                self._v("d", "session {} was cut by the power loss at t={:.3f} but ended with "
                        "reason {}".format(s.sid, cut["t"], reason), s.ends[0][0]["t"], s.sid)
        if not s.ends:
            return  # reported as never ended
        last = s.end_boot()
        for b in range(s.boot + 1, last + 1):
            start, end = self.boot_span(b)
            if end is None:
                end = self.last_t
            if b < last and end - start >= RESTORE_S:
                self._v("a", "session {} cut at t={:.3f} was still not ended when boot {} "
                        "(t={:.3f}..{:.3f}) was cut {:.1f} s after its restart".format(
                            s.sid, cut["t"], b, start, end, end - start), start, s.sid)
                return

    def _check_cdr(self, s, e, cut, wall0):
        rec = e.get("record")
        t = e["t"]
        if not isinstance(rec, dict):
            self._v("d", "cdr of {} has no record".format(s.sid), t, s.sid)
            return
        bad = []
        missing = [k for k in CDR_FIELDS if rec.get(k) is None]
        if missing:
            bad.append("missing {}".format(", ".join(missing)))
        sid, cpo = rec.get("SessionID"), rec.get("CPOPartnerSessionID")
        for name, v in (("SessionID", sid), ("CPOPartnerSessionID", cpo)):
            if not isinstance(v, str) or not SESSION_ID.match(v):
                bad.append("{} {!r} is not a valid OICP SessionID".format(name, v))
        if sid != s.sid or cpo != s.sid or e.get("session_id") != s.sid:
            bad.append("ids {!r}/{!r} (event {!r}) are not the session's {}".format(
                sid, cpo, e.get("session_id"), s.sid))
        end_evse = s.ends[0][0].get("evse") if s.ends else s.evse
        if end_evse != s.evse:
            bad.append("session_end names EVSE {}, the session ran on {}".format(end_evse,
                                                                                 s.evse))
        if rec.get("EvseID") != self.evse_ids[s.evse - 1]:
            bad.append("EvseID {!r}, the session ran on {!r}".format(
                rec.get("EvseID"), self.evse_ids[s.evse - 1]))
        uid = ((rec.get("Identification") or {}).get("RFIDMifareFamilyIdentification")
               or {}).get("UID")
        if uid != self.card:
            bad.append("Identification UID {!r}, not the card {}".format(uid, self.card))
        flagged = rec.get("MeteringCheck") == "Failed"
        if flagged:
            bad.append("MeteringCheck Failed, but the simulated meter never failed")
        bad += self._energy(s, rec, t, cut, flagged)
        bad += self._times(s, rec, t, wall0)
        if bad:
            self._v("d", "CDR of session {} disagrees with what happened: {}\n    record: {}"
                    .format(s.sid, "; ".join(bad), json.dumps(rec, sort_keys=True)), t, s.sid)

    def _energy(self, s, rec, t, cut, flagged):
        bad = []
        energy, start, end = (rec.get(k) for k in ("ConsumedEnergy", "MeterValueStart",
                                                   "MeterValueEnd"))
        if not _num(energy):
            return ["ConsumedEnergy {!r} is not a number".format(energy)]
        if energy < 0:
            bad.append("ConsumedEnergy {} < 0".format(energy))
        if s.ends and s.ends[0][0].get("energy_kwh") != energy:
            bad.append("session_end says {} kWh, the CDR {}".format(
                s.ends[0][0].get("energy_kwh"), energy))
        n = s.evse
        if _num(start) and _num(end):
            if not flagged and abs(energy - round(end - start, 3)) > 1e-9:
                bad.append("ConsumedEnergy {} != round(MeterValueEnd {} - MeterValueStart {}, "
                           "3)".format(energy, end, start))
            if end < start:
                bad.append("MeterValueEnd {} < MeterValueStart {}".format(end, start))
            before = self.reg_before(n, s.start_t)
            if before is not None and start < before - EPS_KWH:
                bad.append("MeterValueStart {} below the register {} before the session "
                           "started".format(start, before))
            ended = max(t, s.ends[0][0]["t"]) if s.ends else t
            after = self.reg_after(n, ended)
            if after is not None and end > after + EPS_KWH:
                bad.append("MeterValueEnd {} above the register {} after the session "
                           "ended".format(end, after))
            if cut is not None and s.charged() and cut["reg"] and cut["exact"].get(n):
                at_cut = cut["reg"][n]
                if end > at_cut + EPS_KWH or (not flagged and end < at_cut - EPS_KWH):
                    bad.append("MeterValueEnd {} but the register stood at {} when the power "
                               "failed (t={:.3f})".format(end, at_cut, cut["t"]))
        ended = s.ends[0][0]["t"] if s.ends else t
        most = (ended - s.start_t) * P_MAX_W / 3.6e6 + EPS_KWH
        if energy > most:
            bad.append("ConsumedEnergy {} more than {:.4f} kWh = {:.1f} s x {} W".format(
                energy, most, ended - s.start_t, P_MAX_W))
        least, exact = self._counted(s, cut)
        slack = EPS_KWH if exact else EPS_KWH + LAG_S * (self.p_seen or P_MAX_W) / 3.6e6
        if least is not None and not flagged and energy < least - slack:
            bad.append("ConsumedEnergy {} but the meter counted at least {:.4f} kWh while "
                       "the session charged".format(energy, least))
        return bad

    def _counted(self, s, cut):
        """(kWh, exact): a lower bound of what the register counted while s charged, or
        None; exact when it ends at a cut (the meter stops with the power, and the first
        reading after the boot is the session's end), else the end reading may lag by one
        meter poll (LAG_S)."""
        if not s.charged():
            return None, False
        n = s.evse
        first = self.reg_after(n, s.close_t)
        exact = cut is not None and bool(cut["reg"]) and bool(cut["exact"].get(n))
        if exact:
            last = cut["reg"][n]
        else:
            until = cut["t"] if cut is not None else (
                s.ends[0][0]["t"] + 0.1 if s.ends else self.last_t)
            offs = [c[0] for c in self.coil_log[n] if not c[1] and c[2] == s.boot
                    and s.close_t <= c[0] <= until]
            last = self.reg_before(n, offs[-1]) if offs else None
        if first is None or last is None or last <= first:
            return None, exact
        return last - first, exact

    def _times(self, s, rec, t, wall0):
        bad = []
        ts = {}
        for k in ("SessionStart", "ChargingStart", "ChargingEnd", "SessionEnd"):
            v = rec.get(k)
            if v is None:
                continue
            epoch = _epoch(v)
            if epoch is None:
                bad.append("{} {!r} is not an ISO UTC time".format(k, v))
            else:
                ts[k] = epoch
        order = [k for k in ("SessionStart", "ChargingStart", "ChargingEnd", "SessionEnd")
                 if k in ts]
        for a, b in zip(order, order[1:], strict=False):
            if ts[a] > ts[b]:
                bad.append("{} {} after {} {}".format(a, rec[a], b, rec[b]))
        ended = s.ends[0][0]["t"] if s.ends else t
        limits = (("SessionStart", s.start_t, s.start_t),
                  ("ChargingStart", s.close_t, s.close_t),
                  ("ChargingEnd", s.close_t, ended),
                  ("SessionEnd", s.start_t, max(ended, t)))
        for k, lo, hi in limits:
            if k not in ts or lo is None:
                continue
            if not wall0 + lo - CLOCK_SLACK_S <= ts[k] <= wall0 + hi + CLOCK_SLACK_S:
                bad.append("{} {} is not within t={:.3f}..{:.3f} (+-{} s)".format(
                    k, rec[k], lo, hi, CLOCK_SLACK_S))
        return bad


def _brief(e):
    return "{}@{:.3f}".format(e.get("reason"), e.get("t", 0))


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _epoch(text):
    """Epoch seconds of `YYYY-MM-DDTHH:MM:SS[.fff]Z`, or None."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$", str(text))
    if not m:
        return None
    y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
    try:
        return calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)) + float(m.group(7) or 0)
    except (ValueError, OverflowError):
        return None


# -- the dice ----------------------------------------------------------------------------------
class Planner:
    """Chooses the next group of console commands from the seed and its own picture of the
    world (what is plugged, what the EVs ask for, whether the card lies on the reader, the
    planned time = the sum of the waits), never from what the firmware did.

    The commands come as episodes, each one session's worth on a random EVSE: plug (or, now
    and then, tap before plugging: an authorization that floats to the outlet plugged next),
    tap (the card removed after a moment, or left on the reader), `ev N charge` before or
    0.3..1 s after the tap (sometimes `ventilate` on this unventilated site), charging a while,
    maybe a pause and a resume, then a stop tap, an unplug, both, or nothing (the session
    runs into the next episode). After every group a cut follows with probability CUT_P
    (CHARGING_CUT_P after a charging wait), at a uniformly random moment 0..1.5 s later, or a
    pair of cuts 0..0.1 s apart (DOUBLE_P of them); after `ev N charge` a cut 5..15 ms later
    (while the contactor is being closed) with probability CLOSING_P (CLOSING_P_AUTH when the
    card was tapped 0.3..1 s before, so the session is likely authorized and offering
    current). Each group is a list of (line, kind), kind "cmd" or the cut's kind: "cut",
    "closing", "double" / "double2" (the pair)."""

    CUT_P = 0.1
    CHARGING_CUT_P = 0.4
    DOUBLE_P = 0.35
    CLOSING_P = 0.15
    CLOSING_P_AUTH = 0.6
    OUTAGE_P = 0.2  # a cut with an outage of 0.05..1 s instead of an instant restart

    def __init__(self, rng, evses, card=CARD, pace=1.0):
        self.rng = rng
        self.evses = evses
        self.card = card
        self.pace = pace  # scales the free waits (charging, before a cut): < 1 is quicker
        self.plugged = [False] * evses
        self.request = [None] * evses
        self.card_on = False
        self.clock = 0.0  # the planned time: the sum of the waits so far (s)
        self.removed_at = -CARD_GUARD_S
        self.queue = []  # the rest of the current episode: (action, evse number)
        self.authorizing = False  # the last group was the wait after a tap

    def _wait(self, lo, hi):
        seconds = round(self.rng.uniform(lo, hi), 3)
        self.clock += seconds
        return "wait {:.3f}".format(seconds)

    def _cut_line(self):
        if self.rng.random() < self.OUTAGE_P:
            return "power_cut {:.3f}".format(self.rng.uniform(0.05, 1.0))
        return "power_cut"

    def _episode(self):
        rng = self.rng
        n = rng.randrange(self.evses) + 1
        i = n - 1
        steps = []
        if not self.plugged[i]:
            steps += [("tap", n), ("plug", n)] if rng.random() < 0.15 else \
                [("plug", n), ("tap", n)]
        else:
            steps.append(("tap", n))
        ask = "ventilate" if rng.random() < 0.05 else "charge"
        if self.request[i] != "C" or ask == "ventilate":
            if rng.random() < 0.6:  # after the tap: most often once it was authorized
                steps += [("authorizing", n), (ask, n)]
            else:
                steps.insert(rng.randrange(len(steps)), (ask, n))
        steps.append(("charging", n))
        if ask == "ventilate" or rng.random() < 0.2:
            steps += [("pause", n), ("charging", n), ("charge", n), ("charging", n)]
        end = rng.choices(("stop", "unplug", "both", "leave"), weights=(35, 30, 15, 20))[0]
        if end in ("stop", "both"):
            steps.append(("tap", n))
        if end in ("unplug", "both"):
            steps.append(("unplug", n))
        return steps

    def next_group(self, cuts_left):
        """The next group of commands; `cuts_left` > 0 allows cuts in it."""
        if not self.queue:
            self.queue = self._episode()
        action, n = self.queue.pop(0)
        group = self._group(action, n, cuts_left)
        cuts_left -= sum(1 for _, kind in group if kind != "cmd")
        p = self.CHARGING_CUT_P if action == "charging" else self.CUT_P
        if cuts_left > 0 and self.rng.random() < p:
            if cuts_left > 1 and self.rng.random() < self.DOUBLE_P:
                group += [(self._wait(0.0, 1.5 * self.pace), "cmd"),
                          (self._cut_line(), "double"),
                          (self._wait(0.0, 0.1), "cmd"), ("power_cut", "double2")]
            else:
                group += [(self._wait(0.0, 1.5 * self.pace), "cmd"), (self._cut_line(), "cut")]
        return group

    def _group(self, what, n, cuts_left):
        rng = self.rng
        i = n - 1
        if what == "charging":  # let the EV draw for a while
            return [(self._wait(0.5 * self.pace, 4.0 * self.pace), "cmd")]
        if what == "authorizing":  # the EV asks when the card was (mostly) accepted
            self.authorizing = True
            return [(self._wait(0.3, 1.0), "cmd")]
        if what == "plug":
            self.plugged[i] = True
            self.request[i] = None
            return [("plug {}".format(n), "cmd")]
        if what == "unplug":  # nobody plugs back in within half a second
            self.plugged[i] = False
            self.request[i] = None
            return [("ev {} unplug".format(n), "cmd"), (self._wait(0.5, 1.5), "cmd")]
        if what in ("charge", "ventilate"):
            if not self.plugged[i]:
                return []
            self.request[i] = "C" if what == "charge" else "D"
            group = [("ev {} {}".format(n, what), "cmd")]
            p = self.CLOSING_P_AUTH if self.authorizing else self.CLOSING_P
            self.authorizing = False
            if what == "charge" and cuts_left > 0 and rng.random() < p:
                group += [(self._wait(0.005, 0.015), "cmd"), (self._cut_line(), "closing")]
            return group
        if what == "pause":
            self.request[i] = None
            return [("ev {} pause".format(n), "cmd")] if self.plugged[i] else []
        # a tap: the card that lies on the reader is taken away first; the same card again
        # within the guard time would be ignored, so wait it out
        group = []
        if self.card_on:
            group.append(("remove", "cmd"))
            self.card_on = False
            self.removed_at = self.clock
        guard = self.removed_at + CARD_GUARD_S - self.clock
        if guard > 0:
            group.append((self._wait(guard, guard + 0.3), "cmd"))
        group.append(("tap {}".format(self.card), "cmd"))
        if rng.random() < 0.6:
            group += [(self._wait(0.2, 0.8), "cmd"), ("remove", "cmd")]
            self.removed_at = self.clock
        else:
            self.card_on = True
        return group

    def settle(self):
        """The clean stop: card off the reader, every EV unplugged."""
        group = [("remove", "cmd")] if self.card_on else []
        self.card_on = False
        for i in range(self.evses):
            if self.plugged[i]:
                group.append(("ev {} unplug".format(i + 1), "cmd"))
                self.plugged[i] = False
                self.request[i] = None
        return group


# -- one run -------------------------------------------------------------------------------------
class Run:
    """One seeded run (or a replay) against a fresh simulator: steps, tracker and outcome."""

    def __init__(self, interpreter, seed, cuts, evses=1, settle_s=SETTLE_S, log=None,
                 time_limit_s=None):
        self.interpreter = interpreter
        self.seed = seed
        self.cuts_wanted = cuts
        self.evses = evses
        self.settle_s = settle_s
        self.log = log or (lambda text: None)
        self.time_limit_s = time_limit_s if time_limit_s is not None else 30.0 + cuts * 20.0
        self.config = dict(CONFIG)
        cfg = make_config(evses, "pn532", self.config)
        self.tracker = Tracker(evses, [e["evse_id"] for e in cfg["evses"]],
                               ventilated=bool(cfg.get("ventilation", False)))
        self.steps = []  # (t, line, kind)
        self.sim = None
        self.complete = False
        self.aborted = None  # why the run stopped early
        self.elapsed = 0.0
        self.wall0 = time.time()

    def header(self):
        """The `set` lines that make a scenario / replay file of this run's commands."""
        lines = ["set local_card {}".format(CARD)]
        if self.evses != 1:
            lines.append("set evses {}".format(self.evses))
        for k, v in sorted(self.config.items()):
            lines.append("set config.{} {}".format(k, json.dumps(v)))
        return lines

    def _do(self, line, kind="cmd"):
        sim = self.sim
        self.tracker.step = len(self.steps)
        self.steps.append((sim.now(), line, kind))
        try:
            sim.command_line(line)
        except RunnerError as e:  # a restart that did not boot
            self.tracker._v("e", "no reboot after `{}`: {}".format(line, e), sim.now())
            self.aborted = "the firmware did not boot again"
            return False
        if sim.fatal is not None or self.tracker.fatal is not None:
            self.aborted = "the firmware died"
            return False
        if kind != "cmd" or line.startswith("power_cut"):
            sim.command_line("status")  # the register at the cut (nothing charges yet)
        return True

    def execute(self, planner=None, script=None):
        """Run the random campaign (planner) or a fixed list of console lines (script)."""
        t0 = time.monotonic()
        sim = Simulation(interpreter=self.interpreter, evses=self.evses, local_cards=[CARD],
                         config=self.config, on_event=self.tracker.feed)
        self.sim = sim
        self.tracker.clock = sim.now
        try:
            sim.__enter__()
        except RunnerError as e:
            self.tracker._v("e", "the firmware did not boot: {}".format(e), 0.0)
            self.aborted = "no first boot"
            self.elapsed = time.monotonic() - t0
            return self
        try:
            self.wall0 = time.time() - sim.now()
            self._campaign(planner, script, t0)
            if self.aborted is None:
                self._settle(planner)
        finally:
            self.tracker.stopped = True
            sim.close()
            self.elapsed = time.monotonic() - t0
        self.tracker.finish(self.wall0, self.complete)
        return self

    def _campaign(self, planner, script, t0):
        self.sim.command_line("status")
        if script is not None:
            for line in script:
                if not self._do(line, "cut" if line.startswith("power_cut") else "cmd"):
                    return
            return
        cuts_done = 0
        for _ in range(self.cuts_wanted * MAX_STEPS_PER_CUT + 50):
            if cuts_done >= self.cuts_wanted:
                return
            if time.monotonic() - t0 > self.time_limit_s:
                self.log("run seed {}: time limit {:.0f} s reached after {} cuts".format(
                    self.seed, self.time_limit_s, cuts_done))
                return
            for line, kind in planner.next_group(self.cuts_wanted - cuts_done):
                if not self._do(line, kind):
                    return
                if kind != "cmd":
                    cuts_done += 1
            self.sim.command_line("status")

    def _settle(self, planner):
        """Clean stop, wait (bounded) until every session is finished, one last cut, and a
        quiet window in which nothing may be emitted again."""
        group = planner.settle() if planner is not None else \
            [("remove", "cmd")] + [("ev {} unplug".format(n), "cmd")
                                   for n in range(1, self.evses + 1)]
        for line, kind in group:
            if not self._do(line, kind):
                return
        sim = self.sim
        deadline = sim.now() + self.settle_s
        while self.tracker.pending() and sim.now() < deadline:
            sim.pump(0.1)
            if sim.fatal is not None:
                self.aborted = "the firmware died"
                return
        self.sim.command_line("status")
        if not self._do("power_cut", "final"):
            return
        sim.pump(QUIET_S)
        seen = len(self.tracker.depths)
        sim.command_line("status")
        deadline = sim.now() + SNAPSHOT_WAIT_S
        while len(self.tracker.depths) == seen and sim.now() < deadline \
                and sim.fatal is None:
            sim.pump(0.02)  # the firmware's answer (outbox depth) before the run ends
        self.complete = sim.fatal is None
        if sim.fatal is not None:
            self.aborted = "the firmware died"

    # -- results -------------------------------------------------------------------------------
    def stats(self):
        """The run's figures. cut_kinds: how many cuts of each kind were run; cut_charging:
        cuts that hit a session with its coil energised; cut_closing: cuts within CLOSING_S
        after a coil was energised or after the EV of an authorized session began to ask (the
        contactor is being closed: the write-ahead window); cut_restore: cuts that hit a boot
        while a session a cut had left open was still waiting to be closed."""
        tr = self.tracker
        charged = sum(1 for s in tr.sessions.values() if s.charged())
        kinds = {}
        for _, _, kind in self.steps:
            if kind != "cmd":
                kinds[kind] = kinds.get(kind, 0) + 1
        hits = {"cut_charging": 0, "cut_closing": 0, "cut_restore": 0}
        for k, cut in enumerate(tr.cuts):
            ons = {}
            for n, log in tr.coil_log.items():
                for t, on, boot, cause in log:
                    if boot == k and t <= cut["t"] and cause != "power_cut":
                        ons[n] = t if on else None
            if any(t is not None for t in ons.values()):
                hits["cut_charging"] += 1
            opened = {s.evse for s in tr.sessions.values()
                      if s.boot == k and s.start_t <= cut["t"] and s.end_boot() != k}
            asked = {n for n in opened for t, a in tr.asking_changes[n]
                     if a and 0 <= cut["t"] - t <= CLOSING_S}
            if asked or any(t is not None and cut["t"] - t <= CLOSING_S
                            for t in ons.values()):
                hits["cut_closing"] += 1
            if any(s.boot < k and (s.end_boot() is None or s.end_boot() > k)
                   and self.tracker._cut_of(s) is not None for s in tr.sessions.values()):
                hits["cut_restore"] += 1
        st = {"interpreter": self.interpreter, "seed": self.seed, "evses": self.evses,
              "cuts": len(tr.cuts), "sessions": len(tr.sessions), "charged": charged,
              "cdrs": tr.cdr_count, "violations": len(tr.violations),
              "elapsed_s": round(self.elapsed, 1), "aborted": self.aborted,
              "cut_kinds": kinds, "errors": dict(sorted(tr.errors.items()))}
        st.update(hits)
        return st

    def summary_line(self):
        st = self.stats()
        return ("powercut {interpreter} seed {seed} evses {evses}: {cuts} cuts, {sessions} "
                "sessions, {charged} charged, {cdrs} CDRs, {violations} violations, "
                "{elapsed_s} s (cuts while charging {cut_charging}, while closing (<= {ms} ms) "
                "{cut_closing}, before a restored session closed {cut_restore})".format(
                    ms=int(CLOSING_S * 1000), **st)
                + (" (stopped: {})".format(self.aborted) if self.aborted else ""))

    def describe(self, v, tail=REPRO_TAIL):
        """A violation as text: seed, step, reproduction tail, the session's own events and
        the event window around the moment it is anchored at."""
        tr = self.tracker
        i = v.step
        step = self.steps[i] if 0 <= i < len(self.steps) else (0.0, "(first boot)", "cmd")
        out = ["[{}] {} seed {} evses {}, step {} (t={:.3f}: {}): {}".format(
            v.inv, self.interpreter, self.seed, self.evses, i, step[0], step[1], v.text)]
        lo = max(0, i - tail + 1)
        out.append("  reproduction (commands {}..{} of {}; the report has all):".format(
            lo, i, len(self.steps)))
        out += ["    " + line for line in self.header()]
        if lo > 0:
            out.append("    # ... {} earlier commands".format(lo))
        out += ["    " + s[1] for s in self.steps[lo:i + 1]]
        anchor_t = step[0] if 0 <= i < len(self.steps) else v.t
        s = tr.sessions.get(v.session)
        if s is not None:
            mine = [e for e in tr.events if e.get("session_id") == s.sid
                    or (e.get("ev") == "cdr" and (e.get("record") or {}).get(
                        "CPOPartnerSessionID") == s.sid)]
            out.append("  the session's events (started in boot {}, first close t={}):".format(
                s.boot, s.close_t))
            out += ["    " + _short(e) for e in mine]
        lo_t, hi_t = anchor_t - WINDOW_BEFORE_S, anchor_t + WINDOW_AFTER_S
        window = [e for e in tr.events if lo_t <= e.get("t", 0) <= hi_t
                  and e.get("ev") not in NOISE_KINDS]
        out.append("  events t={:.3f}..{:.3f}{}:".format(
            lo_t, hi_t, " (first {})".format(WINDOW_MAX) if len(window) > WINDOW_MAX else ""))
        out += ["    " + _short(e) for e in window[:WINDOW_MAX]]
        return "\n".join(out)

    def report(self):
        return {"stats": self.stats(), "header": self.header(),
                "commands": [{"t": round(t, 3), "line": line, "kind": k}
                             for t, line, k in self.steps],
                "violations": [{"inv": v.inv, "text": v.text, "t": round(v.t, 3),
                                "step": v.step, "session": v.session,
                                "detail": self.describe(v, 10 ** 6)}
                               for v in self.tracker.violations]}


def _short(e):
    e = dict(e)
    if e.get("ev") == "cdr" and isinstance(e.get("record"), dict):
        r = e["record"]
        e["record"] = {k: r.get(k) for k in ("CPOPartnerSessionID", "ConsumedEnergy",
                                             "MeterValueStart", "MeterValueEnd",
                                             "ChargingStart", "ChargingEnd", "SessionEnd",
                                             "MeteringCheck") if k in r}
    if e.get("ev") == "error" and isinstance(e.get("stderr"), str):
        e["stderr"] = e["stderr"][-400:]
    return json.dumps(e, sort_keys=True)


def run_campaign(interpreter, seed, cuts, evses=1, per_run=PER_RUN_CUTS, settle_s=SETTLE_S,
                 log=print, time_limit_s=None, pace=1.0):
    """`cuts` cuts in runs of at most `per_run`, seeds seed, seed+1, ...; returns the Runs.
    Each run's summary line and violations go to `log` as soon as it ends. `pace` scales
    the planner's free waits (Planner)."""
    runs = []
    left = cuts
    k = 0
    while left > 0 or not runs:
        n = min(left, per_run) if left > 0 else 0
        run = Run(interpreter, seed + k, n, evses, settle_s, log, time_limit_s)
        run.execute(planner=Planner(random.Random(seed + k), evses, pace=pace))
        for v in run.tracker.violations:
            log(run.describe(v))
        log(run.summary_line())
        runs.append(run)
        left -= n
        k += 1
    return runs


def read_script(path):
    """(evses, console lines) from a scenario/replay file: `set evses` is honoured, other
    `set` lines (the campaign's own card and config are used) and `expect`/`mark` skipped."""
    evses = 1
    lines = []
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "set":
                if len(words) == 3 and words[1] == "evses" and words[2] in ("1", "2"):
                    evses = int(words[2])
                continue
            if words[0] in ("expect", "mark"):
                continue
            lines.append(line)
    return evses, lines


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.powercut", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--interpreter", choices=("cpython", "micropython"), default="cpython")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cuts", type=int, default=20, help="total power cuts (all runs)")
    p.add_argument("--evses", type=int, choices=(1, 2), default=1)
    p.add_argument("--per-run", type=int, default=PER_RUN_CUTS,
                   help="cuts per run (a fresh simulator each; seeds seed, seed+1, ...)")
    p.add_argument("--pace", type=float, default=1.0,
                   help="scale the free waits (charging, before a cut) by this: 0.5 is quicker")
    p.add_argument("--settle", type=float, default=SETTLE_S,
                   help="longest wait (s) for every session to end after the final unplug")
    p.add_argument("--report", help="write every run's figures, commands and violations "
                   "(JSON) to this file")
    p.add_argument("--replay", help="run the console lines of this file (a reproduction) "
                   "instead of random ones, then settle and check")
    p.add_argument("--quiet", action="store_true", help="only the summary lines")
    args = p.parse_args(argv)
    if args.cuts < 0 or args.per_run < 1 or args.settle <= 0 or not 0 < args.pace <= 4:
        p.error("--cuts >= 0, --per-run >= 1, --settle > 0, 0 < --pace <= 4")
    shown = []

    def log(text):
        if not args.quiet or text.startswith("powercut "):
            print(text, flush=True)
        shown.append(text)

    t0 = time.monotonic()
    try:
        if args.replay:
            evses, script = read_script(args.replay)
            run = Run(args.interpreter, "replay", 0, evses, args.settle, log)
            run.execute(script=script)
            for v in run.tracker.violations:
                log(run.describe(v))
            log(run.summary_line())
            runs = [run]
        else:
            runs = run_campaign(args.interpreter, args.seed, args.cuts, args.evses,
                                args.per_run, args.settle, log, pace=args.pace)
    except (RunnerError, OSError) as e:
        print("powercut: cannot run: {}".format(e), file=sys.stderr)
        return 2
    total = {k: sum(r.stats()[k] for r in runs)
             for k in ("cuts", "sessions", "charged", "cdrs", "violations", "cut_charging",
                       "cut_closing", "cut_restore")}
    print("powercut {} total: {} runs, {cuts} cuts, {sessions} sessions, {charged} charged, "
          "{cdrs} CDRs, {violations} violations, {:.1f} s (cuts while charging "
          "{cut_charging}, while closing (<= {ms} ms) {cut_closing}, before a restored session "
          "closed {cut_restore})".format(args.interpreter, len(runs), time.monotonic() - t0,
                                         ms=int(CLOSING_S * 1000), **total), flush=True)
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"interpreter": args.interpreter, "total": total,
                       "runs": [r.report() for r in runs]}, f, indent=1)
    return 1 if total["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
