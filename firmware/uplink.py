"""The charge point's end of the uplink contract (firmware.contract) over an MQTT transport.

The shell hands it the core's `send` actions (authorize requests), tells it when the outbox
got a message, and gives it every core reply; `poll(now)` returns the events for the core
(`online`, `auth`, `remote_start`, `remote_stop`, `local_list`, `time`) one at a time, and
does the rest itself: availability and birth after every (re)connect, the durable messages of
the outbox published in order with at most contract.WINDOW unacknowledged, acknowledgements
(`down/ack`) taken off the outbox, error replies for bad downlink messages, configuration
changes and resets. It never waits: the transport (firmware.mqtt) queues what is published
and reports what arrived; nothing here blocks the control loop.

Configuration (config.json "uplink"): url (`mqtt://host:port` or `mqtts://...`; None = no
uplink: the charge point stays offline and its outbox waits), user, password, ca_file,
keepalive_s.
"""

from firmware import contract as C
from firmware import events as E
from hal.compat import ticks_diff

RESET_EXIT = 75  # the unix/CPython firmware exits with this to ask its runner for a restart
FW_VERSION = "0.1.0"  # pyproject.toml's version; the birth message carries it
RESEND_MS = 60000  # unacknowledged durable messages are published again after this silence
HEALTH_MS = 60000  # the retained health message changes at most this often (contract)


class Uplink:
    """One charge point's uplink session. `transport` offers start(), subscribe(topic, qos),
    publish(topic, payload, qos, retain) -> bool (queued), poll() -> None | (topic, payload)
    | ("connected"|"disconnected", reason), `connected`, stop() (firmware.mqtt)."""

    def __init__(self, cfg, outbox, store, transport, out, boot_id):
        self.cp = cfg["cp_id"]
        self.evse_ids = [e["evse_id"] for e in cfg["evses"]]
        self.outbox = outbox
        self.store = store
        self.t = transport
        self.out = out  # the shell's event output (JSON lines)
        self.boot_id = boot_id
        self.online = False
        self.inflight = []  # ids of durable messages published and not yet acknowledged
        self._pos = None  # outbox position after the last published message
        self._more = True  # the outbox may have something not yet published
        self.reset_requested = False
        self.late = 0  # answers for requests that had timed out or were unknown
        self.bad = 0  # downlink messages that could not be used
        self.pending_list = None  # id of a local_list command fed to the core, to answer
        self._acked_at = 0  # ticks of the last message from the transport
        self._health = None  # (outbox depth, late, bad) last published on `health`
        self._health_at = 0  # ticks of that publication

    def start(self):
        """Subscribe to the downlink and register availability and birth, which the transport
        makes / publishes first on EVERY connection; then connect in the background."""
        t = self.t
        t.subscribe(C.down_filter(self.cp), C.QOS)
        t.birth(C.availability_topic(self.cp), C.ONLINE, C.QOS, True)
        t.birth(C.birth_topic(self.cp), C.encode(
            {"cp_id": self.cp, "EvseIDs": self.evse_ids, "fw": FW_VERSION,
             "boot": self.boot_id}), C.QOS, True)
        t.start()

    # -- from the shell ---------------------------------------------------------------
    def request(self, msg, now):
        """A core `send` action (authorize start/stop): published at once if connected;
        False if not (the core's deadline then applies the offline policy)."""
        if not self.online:
            return False
        body = {}
        for k in msg:
            if k != "deadline":
                body[k] = msg[k]
        body["ttl_ms"] = max(0, ticks_diff(msg["deadline"], now))
        return self.t.publish(C.up_topic(self.cp, C.UP_AUTHORIZE), C.encode(body), C.QOS,
                              False)

    def durable_added(self):
        """The outbox got a message: publish it when the window has room."""
        self._more = True

    def reply(self, body):
        """A core `reply` action (remote start/stop answer) -> up/reply."""
        if self.online:
            self.t.publish(C.up_topic(self.cp, C.UP_REPLY), C.encode(body), C.QOS, False)

    def answer_local_list(self, actions):
        """The core's actions for the local_list event fed from `poll`: persisted or refused."""
        rid = self.pending_list
        self.pending_list = None
        if rid is None:
            return
        for a in actions:
            if a[0] == E.A_ERROR and a[2][0] == E.ERR_LOCAL_LIST:
                self.reply(C.reply(rid, False, C.DATA_ERROR, "local list refused", a[2][1]))
                return
        self.reply(C.reply(rid, True, "000", "Success"))

    # -- the loop ---------------------------------------------------------------------
    def poll(self, now):
        """At most one event for the core, or None; publishes the next durable messages, and
        publishes the unacknowledged ones again when no ack came for RESEND_MS (the backend
        may have lost them: it acknowledges only what its final receiver accepted)."""
        ev = self.t.poll()
        if ev is not None:
            self._acked_at = now
            got = self._on_transport(ev)
            if got is not None:
                return got
        if self.online:
            if self.inflight and ticks_diff(now, self._acked_at) >= RESEND_MS:
                self._acked_at = now
                self._resend()
            if self._more and len(self.inflight) < C.WINDOW:
                self._send_durable()
            self._publish_health(now)
        return None

    def _publish_health(self, now):
        """The retained `health` message: after each connection, then on a change at most
        every HEALTH_MS (a newer one supersedes it: not durable)."""
        h = self._health
        if h is not None and (ticks_diff(now, self._health_at) < HEALTH_MS
                              or (h[0] == len(self.outbox) and h[1] == self.late
                                  and h[2] == self.bad)):
            return
        h = (len(self.outbox), self.late, self.bad)
        if self.t.publish(C.health_topic(self.cp), C.encode(
                {"outbox": h[0], "late": h[1], "bad": h[2], "boot": self.boot_id}),
                C.QOS, True):
            self._health = h
            self._health_at = now

    def _resend(self):
        """From the oldest unacknowledged message on, again (ids make repeats harmless)."""
        self.inflight = []
        self._pos = None
        self._more = True

    def _on_transport(self, ev):
        topic, data = ev
        if topic == "connected":
            self.online = True
            self._health = None  # said again on every connection
            self._resend()
            self.out("uplink", connected=True)
            return (E.EV_ONLINE, 0, True)
        if topic == "disconnected":
            was = self.online
            self.online = False
            self.inflight = []
            self.out("uplink", connected=False, reason=str(data))
            return (E.EV_ONLINE, 0, False) if was else None
        return self._on_down(topic, data)

    def _send_durable(self):
        """Publish waiting durable messages until WINDOW are unacknowledged. The walk over the
        outbox is made anew from `_pos` on each call and closed before returning: a walk kept
        between calls held its last record (line and decoded dict, ~3 KB for a CDR) for as
        long as the backend took to acknowledge, which the heap at 128k cannot spare (the
        mqtts benchmark died of a MemoryError with 52 waiting)."""
        if len(self.inflight) >= C.WINDOW:
            return
        walk = self.outbox.walk(self._pos, True)  # the stored JSON text is the payload
        try:
            for pos, mid, data in walk:
                try:
                    topic = C.durable_topic_of(self.cp, data, self.evse_ids)
                    if len(data) > C.MAX_UP:
                        raise ValueError("{} bytes > MAX_UP {}".format(len(data), C.MAX_UP))
                except ValueError as e:  # can never be sent: said once, kept for inspection
                    self._pos = pos
                    self.out("error", kind="uplink", message="outbox {}: {}".format(mid, e))
                    continue
                if not self.t.publish(topic, data, C.QOS, topic.find("/status/") > 0):
                    return  # the transport's queue is full: this one again next time
                self._pos = pos
                self.inflight.append(mid)
                if len(self.inflight) >= C.WINDOW:
                    return
            self._more = False
        finally:
            walk.close()

    def _on_down(self, topic, payload):
        try:
            kind, body = C.parse_down(self.cp, topic, payload)
        except C.BadMessage as e:
            self.bad += 1
            self.out("error", kind="downlink", message=e.reason)
            if e.id is not None or not topic.endswith(("/ack", "/time", "/authorize")):
                self.reply(C.reply(e.id, False, e.code, "bad message", e.reason))
            return None
        rid = body.get("id")
        if kind == C.DOWN_ACK:
            n = len(self.outbox)
            for mid in body["ids"]:
                self.outbox.ack(mid, False)  # held in RAM (Outbox docstring: flash writes)
                if mid in self.inflight:
                    self.inflight.remove(mid)
            self._more = True
            if len(self.outbox) != n:
                self.out("outbox", depth=len(self.outbox))
            return None
        if kind == C.DOWN_AUTHORIZE:
            return (E.EV_AUTH, 0, body)
        if kind == C.DOWN_TIME:
            return (E.EV_TIME, 0, body["time"])
        if kind == C.DOWN_REMOTE_START:
            return (E.EV_REMOTE_START, 0, body)
        if kind == C.DOWN_REMOTE_STOP:
            return (E.EV_REMOTE_STOP, 0, body)
        if kind == C.DOWN_LOCAL_LIST:
            self.pending_list = rid
            return (E.EV_LOCAL_LIST, 0, body)
        if kind == C.DOWN_CONFIG:
            self._configure(rid, body["config"])
            return None
        self.reply(C.reply(rid, True, "000", "Success"))  # reset
        self.reset_requested = True
        return None

    def _configure(self, rid, new):
        """Validate a whole config.json like at boot; write it atomically and restart, or
        refuse it naming the field. The validator is boot-only code: imported for this and
        dropped again (firmware.unload)."""
        from firmware import config
        from firmware.unload import forget

        try:
            config.load(new)
        except ValueError as e:  # config.ConfigError names the field and the rule
            self.reply(C.reply(rid, False, C.DATA_ERROR, "configuration refused", str(e)))
            return
        finally:
            del config
            forget("firmware.config")
        self.store.put("config", new)
        self.reply(C.reply(rid, True, "000", "Success", "applied at restart"))
        self.reset_requested = True
