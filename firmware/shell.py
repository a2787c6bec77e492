"""The run-time shell: drivers in, charging core in the middle, actuators/store/console out.

Everything that touches time, ports or flash at run time lives here; the core
(`firmware.controller`) only maps (event, now) to actions. One control-loop pass (`poll_once`)
polls every driver once -- each poll is non-blocking by contract -- feeds what they report to the
core and executes the actions in order. `firmware.app` boots (configuration, board) and imports
this module only afterwards, so the boot-only code and the run-time code are never in the heap
together.
"""

import gc
import os

from firmware import events as E
from firmware.charging import passed
from firmware.controller import Controller
from firmware.ids import IdError, new_session_id, normalize_uid
from firmware.session import KEY_PREFIX, Session, is_session_id, migrate, record_key
from firmware.store import Outbox
from firmware.timefmt import CLOCK_FLOOR_S
from hal import kinds as K
from hal.compat import ticks_add, ticks_diff
from hal.iec61851 import DUTY_OFF

try:
    from gc import mem_alloc, mem_free
except ImportError:  # CPython has no heap figures: report 0

    def mem_alloc():
        return 0

    mem_free = mem_alloc

GC_EVERY_MS = 1000  # controlled collection point; also where the live heap is sampled
PP_EVERY_MS = 500  # the cable rating cannot change while plugged; a slow look suffices
# AuthCache entries carry a ticks stamp: an entry older than the ESP32's 2**30 ms tick period
# would look fresh again, so expired ones are purged well within half of it.
PURGE_EVERY_MS = 3600000
# A reader or meter port that failed (OSError: a USB-serial adapter unplugged) is tried again
# after these back-offs, doubling (ms); the control loop never waits for it
PORT_RETRY_MIN_MS = 500
PORT_RETRY_MAX_MS = 8000


class Shell:
    """Owns the board, the core, the store and the outbox; runs one control-loop pass at a time.
    Every observable event goes to `out(ev, **fields)`: the board's sink (`board.emit`, one
    JSON line on stdout off target) unless a test passes its own."""

    def __init__(self, cfg, board, store, out=None, transport=None):
        self.cfg = cfg
        self.board = board
        self.store = store
        self.outbox = Outbox(store)
        self.out = out = board.emit if out is None else out
        self.core = Controller(cfg, lambda: new_session_id(os.urandom(16)))
        self.uplink = None  # firmware.uplink.Uplink when config "uplink.url" is set
        self.reset = False  # the backend asked for a restart (reset / config change)
        up = cfg.get("uplink") or {}
        if transport is None and up.get("url"):
            from firmware import contract  # only where an uplink is configured: heap
            from firmware.mqtt import Uplink as Transport

            transport = Transport(up["url"], cfg["cp_id"], up.get("user"), up.get("password"),
                                  up.get("ca_file"), up.get("keepalive_s", 30),
                                  will=(contract.availability_topic(cfg["cp_id"]),
                                        contract.OFFLINE, True, contract.QOS),
                                  clock_sync=getattr(board, "sync_clock", None))
        if transport is not None:
            from firmware.uplink import Uplink

            self.uplink = Uplink(cfg, self.outbox, store, transport, out,
                                 new_session_id(os.urandom(16))[:8])
        n = len(cfg["evses"])
        self.pp_amps = [None] * n
        self.meter_failed = [False] * n
        self.next_pp = 0
        self.next_gc = 0
        self.next_purge = 0
        self.heap_base = 0
        self.heap_peak = 0
        self.gap_max_ms = 0  # longest time between two control-loop passes (app.run measures)
        # "reader"/"meter" -> [next try tick, back-off ms] while that port is down
        self.ports_down = {}
        self.running = True

    # -- boot --------------------------------------------------------------------------
    def boot(self, now):
        """Wall clock, uplink state, local list, then whatever a power cut left open.
        The persisted list (kept current by updates) wins over the provisioned file.

        Which rule applies where (issue 16 item 5): the list found on flash at boot keeps its
        valid UIDs and drops the malformed ones, reported once in one error (the core then
        persists the valid list, so the next boot finds nothing to report); an update over
        the uplink is atomic instead -- one bad UID refuses it whole (firmware.remote), since
        the backend can be told and send it again. A list file that is not JSON is moved aside
        by the store and reported here."""
        store = self.store
        for problem in store.problems:
            self.out("error", kind="store", message=str(problem))
        reported = len(store.problems)
        wall = self.board.wall_clock()
        if wall >= CLOCK_FLOOR_S:
            self.feed(E.EV_TIME, 0, wall, now)
        else:  # an RTC that restarted: no record may leave with a made-up date
            self.out("error", kind=E.ERR_CLOCK, message="clock {} is before this firmware's "
                     "build: unknown until the network sets it".format(wall))
        self.feed(E.EV_ONLINE, 0, False, now)  # online once the uplink says it is connected
        data = store.get("locallist")
        if data is None:
            data = store.get(self.cfg["local_list_file"].rsplit(".json", 1)[0])
        if isinstance(data, dict) and "version" in data and "uids" in data:
            # the core validates the rest (an error action names what is wrong), persists it
            self.feed(E.EV_LOCAL_LIST, 0, {"full": True, "version": data["version"],
                                           "uids": self._valid_uids(data["uids"])}, now)
        elif data is not None:
            self.out("error", kind="local_list",
                     message="local list: must be an object with 'version' and 'uids'")
        for problem in store.problems[reported:]:  # an unreadable list file, moved aside
            self.out("error", kind="store", message=str(problem))
        for key in store.keys(KEY_PREFIX):
            self.restore(key, now)
        if self.uplink is not None:
            self.out("outbox", depth=len(self.outbox))
            self.uplink.start()  # connects in the background: online when it says so
        self.next_pp = now
        self.next_gc = now
        self.next_purge = ticks_add(now, PURGE_EVERY_MS)

    def _valid_uids(self, uids):
        """The UIDs of a list read from flash that are valid; the others are reported in one
        error naming the first few (a list that is not a list goes to the core as it is: the
        core refuses it whole, naming why)."""
        if not isinstance(uids, list):
            return uids
        good = []
        bad = []
        for u in uids:
            try:
                normalize_uid(u)
                good.append(u)
            except IdError as e:
                bad.append(str(e)[:120] if len(bad) < 3 else None)  # a huge entry: cut
        if bad:
            self.out("error", kind="local_list", message="local list on flash: {} of {} "
                     "entries dropped, the valid {} kept: {}{}".format(
                         len(bad), len(uids), len(good), "; ".join(b for b in bad[:3]),
                         "; ..." if len(bad) > 3 else ""))
        return good

    def restore(self, key, now):
        """Hand one session record left on flash to the core, once. A damaged record is kept
        aside as `bad.<key>` (for inspection, never read again), reported once naming its
        fields, and replaced by its repair -- written before the core sees it, so the next
        boot finds a sound record or none. A record of the older per-EVSE form
        (`session.<n>`) moves to its session's own key the same way, and one with the short
        keys of older firmware is rewritten with the OICP names (session.migrate)."""
        store = self.store
        found = store.get(key)
        if found is None:
            return  # unreadable JSON: Store.get moved it aside and listed it in problems
        raw = migrate(found) if isinstance(found, dict) else found
        evse_ids = [e["evse_id"] for e in self.cfg["evses"]]
        tail = key[len(KEY_PREFIX):]
        n = None
        if tail.isdigit():
            n = int(tail)
        elif isinstance(raw, dict) and raw.get("EvseID") in evse_ids:
            n = evse_ids.index(raw["EvseID"]) + 1
        elif len(evse_ids) == 1:
            n = 1
        if n is None or not 1 <= n <= len(evse_ids) or not isinstance(raw, dict):
            self.out("error", kind=E.ERR_RESTORE, message="{}: not a session record of this "
                     "charge point, kept as bad.{}".format(key, key))
            store.put("bad." + key, found)
            store.put(key, None)
            return
        # a lost local id: the key still names it (or a fresh one for the old per-EVSE form)
        s, bad = Session.from_record(
            raw, evse_ids[n - 1], lambda: tail if is_session_id(tail) else self.core._new_id())
        new_key = record_key(s.local_id)
        if bad:
            self.out("error", evse=n, kind=E.ERR_RESTORE, message="{}: {}; kept as bad.{}"
                     .format(key, "; ".join(bad), key))
            store.put("bad." + key, found)
        if bad or new_key != key or raw is not found:
            raw = s.to_record()
            store.put(new_key, raw)
            if new_key != key:
                store.put(key, None)
        self.feed(E.EV_RESTORE, n, raw, now)

    # -- the control loop --------------------------------------------------------------
    def poll_once(self, now):
        """One pass over every driver (each poll returns at once with at most one event),
        then the due housekeeping: PP look, core deadline, hourly cache purge, and a
        controlled GC point once a second whose live heap the `heap` command reports."""
        b = self.board
        for i in range(len(b.pilots)):
            ev = b.pilots[i].poll(now)
            if ev is not None:
                self.on_driver(i + 1, ev, now)
        for i in range(len(b.contactors)):
            ev = b.contactors[i].poll(now)
            if ev is not None:
                self.on_driver(i + 1, ev, now)
        ev = None
        if b.reader is not None and self._port_up("reader", now):  # reader type "none"
            try:
                ev = b.reader.poll(now)
            except OSError as e:  # the port vanished: a reader failure, charging goes on
                self._port_failed("reader", e, now)
        if ev is not None:
            self.on_driver(0, ev, now)
        if b.bus is not None:  # Modbus meters share one bus: the SharedBus takes turns
            ev = None
            if self._port_up("meter", now):
                try:
                    ev = b.bus.poll(now)  # (meter index, event)
                except OSError as e:  # the bus's port vanished: every meter on it failed
                    self._port_failed("meter", e, now)
            if ev is not None:
                self.on_driver(ev[0] + 1, ev[1], now)
        else:
            for i in range(len(b.meters)):
                if b.meters[i] is not None:  # meter type "none"
                    ev = b.meters[i].poll(now)
                    if ev is not None:
                        self.on_driver(i + 1, ev, now)
        if ticks_diff(now, self.next_pp) >= 0:
            self.next_pp = ticks_add(now, PP_EVERY_MS)
            for i, pp in enumerate(b.proximity):
                if pp is not None:
                    amps = pp.cable_amps()
                    if amps != self.pp_amps[i]:
                        self.pp_amps[i] = amps
                        self.feed(E.EV_PP, i + 1, amps, now)
        up = self.uplink
        if up is not None:
            ev = up.poll(now)
            if ev is not None:
                acts = self.feed(ev[0], ev[1], ev[2], now)
                if ev[0] == E.EV_LOCAL_LIST:
                    up.answer_local_list(acts)
            if up.reset_requested:
                self.reset = True
                self.running = False
        deadline = self.core.next_deadline()
        if passed(deadline, now):
            self.feed(E.EV_TICK, 0, None, now)
        if ticks_diff(now, self.next_purge) >= 0:
            self.next_purge = ticks_add(now, PURGE_EVERY_MS)
            self.core.cache.purge(now)
        if ticks_diff(now, self.next_gc) >= 0:
            self.next_gc = ticks_add(now, GC_EVERY_MS)
            if not self.core.clock_known():
                # an RTC set meanwhile (NTP from the uplink's thread): reading it never blocks
                wall = self.board.wall_clock()
                if wall >= CLOCK_FLOOR_S:
                    self.feed(E.EV_TIME, 0, wall, now)
            gc.collect()
            self.heap_peak = max(self.heap_peak, mem_alloc())

    def _port_failed(self, which, err, now):
        """The reader's or the meter bus's port raised OSError: report it once, tell the core
        (reader failed / meter fault: the configured meter_failure policy applies), restart
        the driver and try to reopen the port with back-off (`_port_up`)."""
        b = self.board
        down = self.ports_down.get(which)
        if down is not None:  # reopened, failed again before it ever worked: said already
            down[1] = min(down[1] * 2, PORT_RETRY_MAX_MS)
            down[0] = ticks_add(now, down[1])
            return
        self.ports_down[which] = [ticks_add(now, PORT_RETRY_MIN_MS), PORT_RETRY_MIN_MS]
        self.out("error", kind=which, message="{} port failed: {}; reopening".format(which, err))
        if which == "reader":
            b.reader.restart(now)
            self.feed(E.EV_READER, 0, "failed", now)
            return
        b.bus.restart()
        for i in range(len(b.meters)):
            if not self.meter_failed[i]:
                self.meter_failed[i] = True
                self.feed(E.EV_METER_FAULT, i + 1, "meter port failed: {}".format(err), now)

    def _port_up(self, which, now):
        """True if the port of `which` may be polled: it never failed, it was reopened (on
        trial until its driver reports something good: `_port_works`), or it is due for a new
        try and the board reopened it (or cannot reopen ports: the old one is polled again)."""
        down = self.ports_down.get(which)
        if down is None or down[0] is None:
            return True
        if ticks_diff(now, down[0]) < 0:
            return False
        try:
            self.board.reopen(which)
        except OSError:
            down[1] = min(down[1] * 2, PORT_RETRY_MAX_MS)
            down[0] = ticks_add(now, down[1])
            return False
        down[0] = None
        return True

    def _port_works(self, which):
        """The driver on a reopened port reported a valid answer: the port is up again."""
        if which in self.ports_down:
            del self.ports_down[which]
            self.out("port", which=which, state="up")  # its failure was an error event

    def on_driver(self, n, ev, now):
        """The one place where a driver's event (hal.kinds: `(kind, data)`) becomes core events
        and JSON lines. `n` is the EVSE number of the pilot, contactor or meter that reported
        (1-based), 0 for the charge point's one reader.

          PILOT      -> "pilot" line, EV_PILOT (state, diode_ok)
          CONTACTOR  -> "mirror" line (+ "contactor_slow" error if late), EV_CONTACTOR state
          TAP        -> "card" line, EV_CARD uid       GONE -> EV_CARD_GONE
          UNUSABLE   -> "reader" error line only (the core never sees a card it cannot use)
          FAILED     -> EV_READER "failed", "reader" error line
          OK         -> EV_READER "ok" (and a reopened reader port is up again)
          READING    -> EV_METER energy_wh (EV_METER_OK first if the meter was down)
          ERROR      -> EV_METER_FAULT once, when the driver declares the meter failed (after
                        its own count of consecutive errors); the next reading clears it
        """
        kind, data = ev
        out = self.out
        if kind == K.PILOT:
            state, diode = data
            out("pilot", evse=n, state=state, diode_ok=diode)
            self.feed(E.EV_PILOT, n, data, now)
        elif kind == K.CONTACTOR:
            state, late = data
            if late is not None:  # confirmed, but after the settle window: a warning
                out("error", evse=n, kind="contactor_slow", message="contactor {} after "
                    "{} ms, later than its settle window: slow or worn contacts".format(
                        "released" if state == "open" else "closed", late))
            out("mirror", evse=n, state=state)
            self.feed(E.EV_CONTACTOR, n, state, now)
        elif kind == K.TAP:
            uid, nbytes = data  # the driver gives the OICP form (RDM6300: 0000 + EM4100 id)
            out("card", uid=uid, bytes=nbytes)
            self.feed(E.EV_CARD, 0, uid, now)
        elif kind == K.GONE:
            self.feed(E.EV_CARD_GONE, 0, None, now)
        elif kind == K.UNUSABLE:  # the reasons of hal.pn532.why_unusable (not imported)
            out("error", kind="reader", message="card {} unusable: {}".format(data, (
                "random UID (a phone or an emulated card)"
                if len(data) == 8 and data.startswith("08")
                else "a {}-byte UID has no OICP form (4, 7 or 10 bytes)".format(
                    len(data) // 2))))
        elif kind == K.FAILED:
            self.feed(E.EV_READER, 0, "failed", now)
            out("error", kind="reader", message="reader failed: {}".format(data))
        elif kind == K.OK:
            self._port_works("reader")
            self.feed(E.EV_READER, 0, "ok", now)
        elif kind == K.READING:
            self._port_works("meter")
            if self.meter_failed[n - 1]:
                self.meter_failed[n - 1] = False
                self.feed(E.EV_METER_OK, n, None, now)
            self.feed(E.EV_METER, n, data["energy_wh"], now)
        elif kind == K.ERROR:
            if self.board.meters[n - 1].failed and not self.meter_failed[n - 1]:
                self.meter_failed[n - 1] = True
                self.feed(E.EV_METER_FAULT, n, str(data), now)
        else:
            raise KeyError(kind)  # not in hal.kinds: a driver bug, not bad input

    # -- actions -----------------------------------------------------------------------
    def feed(self, kind, evse, data, now):
        """One event into the core; its actions are executed in order. Most actions are only
        reported: the JSON event is named after the action (firmware/events.py has the data)."""
        out = self.out
        acts = self.core.step((kind, evse, data), now)
        for name, n, value in acts:  # n: EVSE number
            if name == E.A_CONTACTOR:
                self.board.contactors[n - 1].set(value, now)
                out(name, evse=n, closed=value)
            elif name == E.A_PWM:
                self.board.pilots[n - 1].set_duty(value)
                out(name, evse=n, duty=value)
            elif name == E.A_PERSIST:
                self.store.put(value[0], value[1])
            elif name == E.A_OUTBOX:
                self.to_outbox(value)
            elif name == E.A_STATE:
                out(name, evse=n, state=value)
            elif name == E.A_STATUS:
                out(name, evse=n, status=value)
            elif name == E.A_SESSION_START:
                out(name, evse=n, session_id=value)
            elif name == E.A_SESSION_END:
                out(name, evse=n, session_id=value.get("session_id"),
                    energy_kwh=value.get("energy_kwh"), reason=value.get("reason"))
            elif name == E.A_AUTH:
                out(name, evse=n, uid=value.get("uid"), result=value.get("result"),
                    code=value.get("code"))
            elif name == E.A_REPLY:
                out(name, **value)
                if self.uplink is not None:
                    self.uplink.reply(value)
            elif name == E.A_DISPLAY:
                out(name, evse=n, message=value)
            elif name == E.A_ERROR:
                out(name, evse=n, kind=value[0], message=value[1])
            elif name == E.A_SEND:
                if self.uplink is None or not self.uplink.request(value, now):
                    # the request's deadline makes the core apply the offline policy
                    out("error", kind="uplink", message="offline, not sent: "
                        + value.get("type", "?"))
            else:
                raise KeyError(name)  # not in the contract: a core bug, not bad input
        return acts

    def to_outbox(self, msg):
        """Persist a durable message under the outbox's policy (Outbox.offer: superseded EVSE
        status collapsed, oldest non-CDR dropped when full, CDRs never), say what it dropped,
        tell the uplink, and report CDRs and notifications."""
        try:
            for problem in self.outbox.offer(msg):
                self.out("error", kind="outbox_full", message=problem)
        except (OSError, ValueError) as e:  # flash full or broken, a record over 2 KB: the
            # message cannot be kept; say so loudly rather than stop charging (a reset loop)
            self.out("error", kind="outbox", message="{} {} not stored: {}".format(
                msg.get("type"), msg.get("id"), e))
            return
        if self.uplink is not None:
            self.uplink.durable_added()
            self.out("outbox", depth=len(self.outbox))
        kind = msg.get("type")
        if kind == E.MSG_CDR:
            self.out("cdr", session_id=msg.get("SessionID"), record=msg)
        elif kind == E.MSG_NOTIFICATION:
            self.out("notification", type=msg.get("Type"), session_id=msg.get("SessionID"))

    def safe_state(self, now):
        """Open every contactor and stop offering current: the last thing before the loop
        ends, also when it ends by an exception (a reset then replays the persisted state)."""
        for c in self.board.contactors:
            c.set(False, now)
        for p in self.board.pilots:
            p.set_duty(DUTY_OFF)

    # -- console -----------------------------------------------------------------------
    def command(self, line, now):
        """A console line from stdin; unknown or malformed commands are answered, not fatal."""
        words = line.split()
        if not words:
            return
        cmd = words[0]
        if cmd == "quit":
            self.running = False
        elif cmd == "heap":
            gc.collect()
            live = mem_alloc()
            peak = max(self.heap_peak, live)
            self.out("heap", base=self.heap_base, live=live, peak=peak,
                     working_peak=peak - self.heap_base, free=mem_free())
        elif cmd == "status":
            self.out("snapshot", outbox=len(self.outbox), pp=self.pp_amps,
                     loop_gap_max_ms=self.gap_max_ms,
                     meter_failed=self.meter_failed)
        elif cmd == "clear" and len(words) == 2 and words[1].isdigit():
            self.feed(E.EV_CLEAR, int(words[1]), None, now)
        else:
            text = line.strip()  # shown cut: a console line is anyone's input
            self.out("error", kind="console", message="unknown command: {}{}".format(
                text[:60], "... ({} characters)".format(len(text)) if len(text) > 60 else ""))
