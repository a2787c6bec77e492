"""Figures for the MQTT uplink (issue 11, "Measure"): heap, loop gap, flash writes, latency, image.

    python tools/bench_uplink.py [--interpreter cpython|micropython|both] [--sessions 5]
                                 [--fill 50] [--cycles 5] [--json]

Figures are printed, never asserted. Everything runs against a real broker on loopback --
Mosquitto configured from tools/mosquitto (tests/brokers.py), or amqtt when Mosquitto is not
installed (said in the output) -- and the simulated charge point: the real firmware process
(host_sim.runner.Simulation with `broker=`), on MicroPython `-X heapsize=128k` with the code
mapped from the build's ROMFS image, which is how the simulator runs it. The backend is a
paho-mqtt client that answers each authorize request and acknowledges each durable message
from its network thread as the message arrives (no polling delay of ours in between).

1. import heap (MicroPython): tools/heap_report.py's RUNTIME modules (firmware.contract,
   umqtt.simple, firmware.mqtt and firmware.uplink among them) imported one by one, in that
   order, by a probe packed into the image and run by romboot under `-X heapsize=128k` (the
   image mapped outside the heap, as the simulator runs the firmware): the live heap each one
   adds after gc.collect(). "as loaded" includes the qstr pools a module makes grow; "own" is
   heap_report's `--flat` (the pool pre-grown; that alone needs more than 128k, so at 1024k).
   Plus the firmware's own: `ready` heap after boot, its `uplink_code` (what importing
   firmware.contract, firmware.mqtt -- with umqtt.simple -- and firmware.uplink took, measured
   by firmware/app.py in the firmware itself) and the `heap` answer's `base` (taken after all
   the run-time code is imported, the uplink's included: imported code is reported here, not
   as working heap; the Shell, the core, the transport and everything they allocate count as
   working heap).
2. working heap (MicroPython): the `heap` answer's working_peak (the live heap after
   gc.collect(), sampled by the firmware once a second, above `base`: the objects, with all
   the code already loaded; goal <= 24 KB), for a
   run over mqtt:// and one over mqtts:// (trustme CA, tls=True): connect, sessions, reconnects,
   then sessions with the backend not acknowledging until the outbox holds >= --fill messages,
   a reconnect with them waiting, and the drain once the backend acknowledges again.
   For comparison, a run without any uplink (no --broker).
3. loop gap: `status` -> snapshot loop_gap_max_ms, the longest time between two control-loop
   passes since boot (a running maximum; asked after each phase): no uplink, after the first
   connect, after --cycles broker restarts (Mosquitto stopped and started, same port), after
   --cycles `broker down`/`broker up` (the simulated network), after the sessions.
4. flash writes per session (plug, tap, charge, tap, unplug, every message acknowledged):
   counted from outside with inotify on the flash folder of the real firmware process (both
   interpreters), in the firmware's own units (Store.writes: a put = one .tmp written and
   renamed, a delete; Outbox.writes: each append, file write, rename, remove), by file kind.
   The writes per Progress notification (progress_interval_s is at least 300 s, too long for
   the simulator) come from the same shell driven in-process on CPython, firmware.shell with
   a transport stand-in that answers and acknowledges everything, counted by the firmware's
   own counters (store.writes + outbox.writes): a 2-minute and a 31-minute charge at 300 s.
5. latency (backend answering at once, EV already asking for charge): tap (the runner's
   `reader` event, when it hands the UID to the virtual PN532) -> `card` (the firmware read
   it: the PN532 poll period and the pty) -> the authorize request arriving at the backend
   (through the firmware's MQTT thread, the network proxy, the broker, paho) -> `auth` ->
   contactor closed (goal <= 150 ms). The simulator's pipe latency and the poll period count.
   Each session taps a new card (the core lets a card in its cache of positive answers in at
   once, without the backend). Diagnostic: the same sessions once more with TCP_NODELAY on
   both hops that lack it: Mosquitto (`set_tcp_nodelay true` added to the shipped
   configuration; its default is false) and the simulator's network proxy (host_sim.netproxy,
   its socket module swapped in this process for one whose sockets set it). Without it, Nagle
   holds the answer behind the PUBACK sent just before it on the same connection until the
   peer's delayed ACK (~40 ms on loopback).
6. image: the ROMFS image's size against the simulator's slot (host_sim.runner.ROM_SLOT_MAX,
   one environment string of 128 KiB less the variable's name).
"""

import argparse
import contextlib
import ctypes
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from firmware import contract as C  # noqa: E402
from hal.compat import ticks_diff  # noqa: E402
from host_sim import netproxy  # noqa: E402
from host_sim.runner import (  # noqa: E402
    ROM_SLOT_MAX,
    RunnerError,
    Simulation,
    build_for_micropython,
)
from tests import brokers  # noqa: E402
from tools import build, heap_report  # noqa: E402

CP = "SIM01"
USERS = {brokers.BACKEND: "bridge-secret", CP: "sim01-secret"}
CARD = "04D5E6F7"  # not on the local list: only the backend can authorize it


def card_uid(n):
    """The n-th card of a run: a new UID each session, so the core's cache of positive
    answers never decides in the backend's place (a cached card is let in at once)."""
    return "04D5{:04X}".format(n)


SID = "b3c2a1d0-1111-4222-8333-444455556666"
STEP_S = 15.0  # the longest any single step may take before the bench gives up
PWM_QUIET_S = 5.3  # the core changes PWM at most every 5 s, also off -> on
CARD_GUARD_S = 2.5  # the same card counts again only 2 s after it left the field
MODULES = ("firmware.contract", "umqtt.simple", "firmware.mqtt", "firmware.uplink")
HEAP = "128k"
FLAT_HEAP = "1024k"  # pre-growing the qstr pool (--flat) takes more than 128k itself


class BenchError(Exception):
    pass


# -- the backend ---------------------------------------------------------------------------
class Backend(brokers.MqttClient):
    """The bridge's stand-in, answering from paho's network thread as each message arrives:
    authorize requests get Authorized (with SID) at once; durable messages get their ack at
    once while `acking`. Keeps the arrival time (time.monotonic()) of every authorize request
    and durable message; subscribes again after paho reconnects (a broker restart)."""

    def __init__(self, broker):
        super().__init__(broker, brokers.BACKEND, USERS[brokers.BACKEND])
        self.acking = True
        self.filter = None
        self.arrivals = []  # (monotonic s, topic, body)

    def start(self, topic_filter):
        self.connect()
        self.filter = topic_filter
        self.subscribe(topic_filter)
        return self

    def _on_connect(self, client, userdata, flags, reason, properties):
        super()._on_connect(client, userdata, flags, reason, properties)
        if self.filter is not None:  # a reconnect: the clean session forgot the subscription
            client.subscribe(self.filter, 1)

    def _on_message(self, client, userdata, msg):
        t = time.monotonic()
        super()._on_message(client, userdata, msg)
        topic = msg.topic
        if not topic.startswith(C.tree(CP) + "/") or "/down/" in topic \
                or topic in (C.availability_topic(CP), C.birth_topic(CP)) \
                or topic == C.up_topic(CP, C.UP_REPLY):
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return  # not ours to judge here: the bench only counts what it can read
        with self._cond:
            self.arrivals.append((t, topic, body))
        if topic == C.up_topic(CP, C.UP_AUTHORIZE):
            answer = {"id": body.get("id"), "StatusCode": {"Code": "000"},
                      "AuthorizationStatus": "Authorized", "SessionID": SID,
                      "ProviderID": "DE-8EO"}
            client.publish(C.down_topic(CP, C.DOWN_AUTHORIZE), json.dumps(answer), 1)
        elif self.acking and "id" in body:
            client.publish(C.down_topic(CP, C.DOWN_ACK), json.dumps({"ids": [body["id"]]}), 1)

    def requests_since(self, t_mono):
        with self._cond:
            return [(t, b) for t, topic, b in self.arrivals
                    if t >= t_mono and topic == C.up_topic(CP, C.UP_AUTHORIZE)]


@contextlib.contextmanager
def broker_for(tmp, tls, nodelay=False):
    """Mosquitto (tests/brokers.py, the shipped configuration), else amqtt. `nodelay`
    (Mosquitto only, a diagnostic): the shipped configuration plus `set_tcp_nodelay true`."""
    if not brokers.mosquitto_available():
        with brokers.amqtt_broker(Path(tmp), tls=tls, users=USERS) as b:
            yield b
        return
    render = brokers.render_mosquitto_conf
    if nodelay:
        brokers.render_mosquitto_conf = \
            lambda *a, **k: render(*a, **k) + "set_tcp_nodelay true\n"
    try:
        with brokers.mosquitto(Path(tmp), tls=tls, users=USERS) as b:
            yield b
    finally:
        brokers.render_mosquitto_conf = render


class _NoDelaySocket(socket.socket):
    """A TCP socket with TCP_NODELAY set, also on the connections it accepts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.type == socket.SOCK_STREAM and self.family in (socket.AF_INET,
                                                               socket.AF_INET6):
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def accept(self):
        conn, addr = super().accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class _NoDelaySockets:
    """The socket module as host_sim.netproxy sees it in the diagnostic run: the same, except
    that its sockets set TCP_NODELAY."""

    socket = _NoDelaySocket

    def __getattr__(self, name):
        return getattr(socket, name)


@contextlib.contextmanager
def proxy_nodelay(on):
    """While on: the simulator's network proxy (created in this process) sets TCP_NODELAY."""
    if not on:
        yield
        return
    real = netproxy.socket
    netproxy.socket = _NoDelaySockets()
    try:
        yield
    finally:
        netproxy.socket = real


# -- flash operations seen from outside ----------------------------------------------------
IN_CLOSE_WRITE, IN_OPEN, IN_MOVED_TO, IN_DELETE, IN_Q_OVERFLOW = 0x8, 0x20, 0x80, 0x200, 0x4000
_EVENT = struct.Struct("iIII")


class FlashWatch:
    """inotify on the flash folder and its outbox/: every file written (closed after writing),
    renamed into place or removed by the firmware process, in order. Opens are watched too
    though not counted: inotify merges an event into an identical one still unread, so two
    appends to the same file in a row would count once; the open between them keeps them
    apart."""

    def __init__(self, flash):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._dirs = {}
        for rel in ("", "outbox"):
            path = os.path.join(flash, rel) if rel else flash
            wd = self._libc.inotify_add_watch(self.fd, path.encode(),
                                              IN_CLOSE_WRITE | IN_OPEN | IN_MOVED_TO
                                              | IN_DELETE)
            if wd < 0:
                os.close(self.fd)
                raise OSError(ctypes.get_errno(), "inotify_add_watch " + path)
            self._dirs[wd] = rel
        self.ops = []  # (kind "write"|"rename"|"remove", path relative to the flash folder)
        self.overflow = False

    def take(self):
        """The operations since the last take()."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            i = 0
            while i < len(data):
                wd, mask, _cookie, n = _EVENT.unpack_from(data, i)
                name = data[i + _EVENT.size:i + _EVENT.size + n].rstrip(b"\0").decode()
                i += _EVENT.size + n
                if mask & IN_Q_OVERFLOW:
                    self.overflow = True
                    continue
                if not mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE):
                    continue  # an open
                rel = self._dirs.get(wd, "?")
                path = rel + "/" + name if rel else name
                kind = ("write" if mask & IN_CLOSE_WRITE else
                        "rename" if mask & IN_MOVED_TO else "remove")
                self.ops.append((kind, path))
        ops, self.ops = self.ops, []
        return ops

    def close(self):
        os.close(self.fd)


def classify(ops):
    """Operations -> {file kind: count} in the firmware's units (a Store put is its .tmp
    written then renamed: counted once, as Store.writes does)."""
    out = {}
    for kind, path in ops:
        if path.startswith("outbox/"):
            name = path[len("outbox/"):]
            key = {"h": "outbox index (h*)", "s": "outbox record (s*)",
                   "a": "outbox ack (a*)"}.get(name[:1], "outbox other")
            key += " " + kind
        elif path.endswith(".tmp"):
            if kind != "write":
                continue
            key = "store put " + path[:-len(".json.tmp")].split(".")[0] + ".*"
        elif kind == "rename":
            continue  # the put's rename, counted with its .tmp
        else:
            key = "store {} {}".format(kind, path.split(".")[0] + ".*")
        out[key] = out.get(key, 0) + 1
    return out


# -- the simulation ------------------------------------------------------------------------
class Run:
    """One Simulation against one broker, with the backend and the flash watch."""

    def __init__(self, sim, backend):
        self.sim = sim
        self.backend = backend
        self.offset = time.monotonic() - sim.now()  # monotonic = sim time + offset
        self.gaps = []  # (phase, loop_gap_max_ms after it)
        self.heaps = []  # MicroPython: (phase, the `heap` answer after it)
        self.phase = "boot"  # what the run is doing (said if the firmware dies)
        self.cards = 0

    def cmd(self, line):
        mark = len(self.sim.events)
        self.sim.command_line(line)
        return mark

    def wait(self, match, since, timeout_s=STEP_S, what="an event"):
        sim = self.sim
        deadline = sim.now() + timeout_s
        i = since
        while True:
            while i < len(sim.events):
                if match(sim.events[i]):
                    return sim.events[i]
                i += 1
            if sim.fatal is not None:
                raise BenchError(died(sim.fatal))
            if sim.now() > deadline:
                raise BenchError("no {} within {} s; last events: {}".format(
                    what, timeout_s, json.dumps(sim.events[-8:])))
            sim.pump(0.005)

    def ask(self, command, ev):
        mark = self.cmd(command)
        e = self.wait(lambda e: e.get("ev") == ev, mark, what=ev)
        return {k: v for k, v in e.items() if k not in ("t", "ev")}

    def gap(self, phase):
        g = self.ask("status", "snapshot")["loop_gap_max_ms"]
        self.gaps.append((phase, g))
        return g

    def checkpoint(self, phase):
        """The end of a phase: the loop gap so far and (MicroPython) the heap; -> the gap."""
        g = self.gap(phase)
        if self.sim.interpreter == "micropython":
            self.heaps.append((phase, self.ask("heap", "heap")))
        return g

    def connected(self, since, timeout_s=60.0):
        return self.wait(lambda e: e.get("ev") == "uplink" and e.get("connected") is True,
                         since, timeout_s, "uplink connected")

    def depth_at_least(self, n, since, timeout_s=STEP_S):
        return self.wait(lambda e: e.get("ev") == "outbox" and e.get("depth", -1) >= n,
                         since, timeout_s, "outbox depth >= {}".format(n))

    def settle_outbox(self, timeout_s=STEP_S):
        """Until the firmware's outbox is empty (every message acknowledged)."""
        sim = self.sim
        deadline = sim.now() + timeout_s
        while sim.outbox_depth != 0:
            if sim.fatal is not None:
                raise BenchError(died(sim.fatal))
            if sim.now() > deadline:
                raise BenchError("outbox not empty within {} s (depth {})".format(
                    timeout_s, sim.outbox_depth))
            sim.pump(0.02)

    def session(self):
        """plug, EV asks for charge, tap (the backend authorizes), contactor closed, tap again
        (stop), unplug. -> the tap's timings in ms (tap -> card, request at the backend,
        auth, contactor closed)."""
        sim = self.sim
        is_ev = lambda kind, **f: lambda e: e.get("ev") == kind and all(  # noqa: E731
            e.get(k) == v for k, v in f.items())
        self.cmd("plug 1")
        self.cmd("ev 1 charge")
        sim.pump(0.5)
        self.cards += 1
        uid = card_uid(self.cards)
        mark = self.cmd("tap " + uid)
        tap = self.wait(is_ev("reader", action="tap"), mark, what="the tap")
        card = self.wait(is_ev("card"), mark, what="card")
        auth = self.wait(is_ev("auth", evse=1), mark, what="auth")
        closed = self.wait(is_ev("contactor", evse=1, closed=True), mark, what="closed")
        reqs = self.backend.requests_since(tap["t"] + self.offset - 0.001)
        if not reqs:
            raise BenchError("the backend got no authorize request for the tap")
        self.cmd("remove")
        sim.pump(CARD_GUARD_S)
        mark = self.cmd("tap " + uid)
        end = self.wait(is_ev("session_end", evse=1), mark, what="session_end")
        self.cmd("remove")
        self.cmd("ev 1 unplug")
        t_tap = tap["t"]
        return {"card": (card["t"] - t_tap) * 1000,
                "request": (reqs[0][0] - self.offset - t_tap) * 1000,
                "auth": (auth["t"] - t_tap) * 1000,
                "closed": (closed["t"] - t_tap) * 1000, "end_t": end["t"]}

    def quiet_after(self, end_t):
        """Wait until a PWM change is allowed again after the session's end."""
        left = end_t + PWM_QUIET_S - self.sim.now()
        if left > 0:
            self.sim.pump(left)


def died(fatal):
    """One line for a firmware death: its exit status, the last line of its stderr and the
    innermost three frames of its traceback."""
    lines = [x.strip() for x in str(fatal.get("stderr", "")).splitlines() if x.strip()]
    where = [x[len("File "):].replace('"', "") for x in lines if x.startswith("File ")][-3:]
    return "the firmware died (exit status {}): {}{}".format(
        fatal.get("status"), lines[-1] if lines else fatal,
        " (at {})".format(" <- ".join(reversed(where))) if where else "")


def measure(interpreter, tls, sessions, fill, cycles, tmp, nodelay=False):
    """One simulation over mqtt:// or mqtts:// -> its figures (those gathered before a
    failure too, which is then in "failed": phase and error). The fill (MicroPython: heap)
    runs only with fill > 0, the reconnects only with cycles > 0."""
    res = {"interpreter": interpreter, "tls": tls, "nodelay": nodelay}
    name = ("tls" if tls else "plain") + ("-nodelay" if nodelay else "")
    run = None
    with broker_for(os.path.join(tmp, name), tls, nodelay) as broker, \
            proxy_nodelay(nodelay):
        res["broker"] = broker.kind
        backend = Backend(broker).start(C.tree(CP) + "/#")
        try:
            with Simulation(interpreter=interpreter, broker=broker.url, cp_id=CP,
                            broker_ca=str(broker.ca) if tls else None,
                            broker_user=CP, broker_password=USERS[CP]) as sim:
                ready = [e for e in sim.events if e.get("ev") == "ready"][0]
                res["ready_heap"] = ready.get("heap")
                res["uplink_code"] = ready.get("uplink_code")
                run = Run(sim, backend)
                run.phase = "connect"
                run.connected(0)
                sim.pump(1.0)
                res["gap_connect"] = run.checkpoint("connect")
                run.phase = "sessions"
                _sessions(run, res, sessions)
                res["gap_sessions"] = run.checkpoint("sessions")
                if cycles > 0:
                    _reconnects(run, res, broker, cycles)
                if interpreter == "micropython" and fill > 0:
                    _fill(run, res, fill)
                if interpreter == "micropython":
                    res["heap"] = run.ask("heap", "heap")
        except BenchError as e:
            res["failed"] = {"phase": run.phase if run else "boot", "error": str(e)}
        finally:
            backend.close()
    res["gaps"] = run.gaps if run else []
    res["heaps"] = run.heaps if run else []
    return res


def _sessions(run, res, n):
    sim = run.sim
    watch = FlashWatch(sim.flash)
    try:
        times = []
        per = []
        for _ in range(n):
            watch.take()
            times.append(run.session())
            run.settle_outbox()
            sim.pump(0.3)  # the last ack's flash write
            ops = watch.take()
            per.append(classify(ops))
            if "session_ops" not in res:
                res["session_ops"] = ops  # the first session's, in order (--json)
            run.quiet_after(times[-1]["end_t"])
        res["overflow"] = watch.overflow
    finally:
        watch.close()
    for key in ("card", "request", "auth", "closed"):
        res["tap_to_" + key + "_ms"] = summary([t[key] for t in times])
    totals = [sum(p.values()) for p in per]
    res["writes_per_session"] = summary(totals, digits=0)
    kinds = {}
    for p in per:
        for k, v in p.items():
            kinds[k] = kinds.get(k, 0) + v
    res["writes_by_kind"] = {k: round(v / len(per), 1) for k, v in sorted(kinds.items())}


def _reconnects(run, res, broker, cycles):
    sim = run.sim
    t = []
    run.phase = "broker restarts"
    for _ in range(cycles):
        mark = len(sim.events)
        broker.restart()
        t0 = sim.now()
        run.connected(mark)
        t.append(sim.now() - t0)
    res["restart_reconnect_s"] = summary(t, digits=2)
    res["gap_restarts"] = run.checkpoint("broker restarts")
    t = []
    run.phase = "broker down/up"
    for _ in range(cycles):
        run.cmd("broker down")
        sim.pump(0.5)
        mark = run.cmd("broker up")
        run.connected(mark)
        t.append(sim.now() - sim.events[mark]["t"])
    res["net_reconnect_s"] = summary(t, digits=2)
    res["gap_net"] = run.checkpoint("broker down/up")


def _fill(run, res, fill):
    """Sessions with the backend not acknowledging until the outbox holds >= fill; then a
    reconnect with them waiting; then acknowledgements again and the drain."""
    sim = run.sim
    run.backend.acking = False
    run.phase = "sessions, backend not acknowledging"
    n = 0
    while sim.outbox_depth is None or sim.outbox_depth < fill:
        t = run.session()
        n += 1
        sim.pump(0.5)
        res["fill_sessions"] = n
        res["fill_depth"] = sim.outbox_depth
        if sim.outbox_depth is None or sim.outbox_depth < fill:
            run.quiet_after(t["end_t"])
        if n > fill:
            raise BenchError("the outbox does not grow: depth {}".format(sim.outbox_depth))
    run.checkpoint("filled to {}".format(sim.outbox_depth))
    run.phase = "reconnect with {} waiting".format(sim.outbox_depth)
    run.cmd("broker down")
    sim.pump(0.5)
    mark = run.cmd("broker up")
    run.connected(mark)
    sim.pump(3.0)  # a window published, nothing acknowledged
    res["gap_fill"] = run.checkpoint(run.phase)
    res["heap_waiting"] = run.heaps[-1][1]
    run.phase = "drain (backend acknowledging again)"
    run.backend.acking = True
    run.cmd("broker down")
    sim.pump(0.5)
    mark = run.cmd("broker up")  # resent from the oldest: now acknowledged
    run.connected(mark)
    t0 = sim.now()
    run.settle_outbox(timeout_s=120)
    res["drain_s"] = round(sim.now() - t0, 2)
    sim.pump(1.5)  # at least one of the firmware's heap samples after the drain
    res["gap_drain"] = run.checkpoint("drain")


def baseline(interpreter):
    """No uplink at all: loop gap and heap for comparison."""
    with Simulation(interpreter=interpreter) as sim:
        ready = [e for e in sim.events if e.get("ev") == "ready"][0]
        run = Run(sim, None)
        sim.pump(3.0)
        out = {"gap": run.gap("no uplink"), "ready_heap": ready.get("heap")}
        if interpreter == "micropython":
            out["heap"] = run.ask("heap", "heap")
        return out


def summary(values, digits=1):
    if not values:
        return None
    return {"n": len(values), "min": round(min(values), digits),
            "median": round(statistics.median(values), digits),
            "max": round(max(values), digits)}


# -- in-process: writes per Progress -------------------------------------------------------
class _Transport:
    """firmware.uplink's transport, in-process: connected at once; answers each authorize
    request (Authorized) and acknowledges each durable message on the next poll()."""

    def __init__(self):
        self.inbox = [("connected", "")]
        self.connected = True

    def subscribe(self, topic, qos):
        return None

    def birth(self, topic, payload, qos, retain):
        return None

    def start(self):
        return None

    def stop(self):
        return None

    def publish(self, topic, payload, qos, retain):
        body = json.loads(payload)
        if topic == C.up_topic(CP, C.UP_AUTHORIZE):
            self.inbox.append((C.down_topic(CP, C.DOWN_AUTHORIZE), json.dumps(
                {"id": body["id"], "StatusCode": {"Code": "000"},
                 "AuthorizationStatus": "Authorized", "SessionID": SID}).encode()))
        elif "id" in body and topic != C.up_topic(CP, C.UP_REPLY):
            self.inbox.append((C.down_topic(CP, C.DOWN_ACK),
                               json.dumps({"ids": [body["id"]]}).encode()))
        return True

    def poll(self):
        return self.inbox.pop(0) if self.inbox else None


class _Coil:
    def __init__(self):
        self.value = None

    def set(self, value, now):
        self.value = value

    def set_duty(self, value):
        self.value = value


class _Board:
    def __init__(self):
        self.reader = self.bus = None
        self.meters = [None]
        self.proximity = [None]
        self.contactors = [_Coil()]
        self.pilots = [_Coil()]

    def wall_clock(self):
        return 1800000000


def progress_writes(charge_s_list=(120, 1860), interval_s=300):
    """{charge seconds: {writes, progress, cdrs, outbox_left, by_kind}}: one session each,
    driven through firmware.shell in-process with the acking transport stand-in."""
    out = {}
    for charge_s in charge_s_list:
        with tempfile.TemporaryDirectory() as flash:
            out[charge_s] = _progress_session(flash, charge_s, interval_s)
    return out


def _progress_session(flash, charge_s, interval_s):
    from firmware import config
    from firmware.shell import Shell
    from firmware.store import Store

    cfg = config.load({"cp_id": CP, "evses": [{"evse_id": "DE*SIM*E0001*1",
                                               "cable": "tethered"}],
                       "meter": {"type": "none"}, "progress_interval_s": interval_s})
    store = Store(flash)
    events = []
    shell = Shell(cfg, _Board(), store, out=lambda ev, **f: events.append((ev, f)),
                  transport=_Transport())
    kinds = {}
    _count_writes(shell, kinds)
    shell.boot(0)
    clock = [0]

    def step(kind, data, dt):
        clock[0] += dt
        shell.feed(kind, 1 if kind in ("pilot", "contactor", "meter") else 0, data, clock[0])
        _pump(shell, clock[0])

    _pump(shell, 0)
    step("contactor", "open", 10)
    before = store.writes + shell.outbox.writes
    kinds.clear()
    step("pilot", ("B", None), 1000)
    step("card", CARD, 100)
    step("card_gone", None, 100)
    step("pilot", ("B", True), 100)
    step("pilot", ("C", True), 100)
    if shell.board.contactors[0].value:
        step("contactor", "closed", 300)
    meter = 100000
    for _ in range(charge_s // 10):
        meter += 20
        step("meter", meter, 10000)
    step("card", CARD, 100)
    step("card_gone", None, 100)
    step("pilot", ("B", True), 100)
    step("contactor", "open", 300)
    step("pilot", ("A", None), 100)
    for _ in range(5):
        step("tick", None, 100)
    return {"writes": store.writes + shell.outbox.writes - before,
            "progress": sum(1 for ev, f in events if ev == "notification"
                            and f.get("type") == "Progress"),
            "cdrs": sum(1 for ev, _ in events if ev == "cdr"),
            "outbox_left": len(shell.outbox), "by_kind": dict(kinds)}


def _pump(shell, now):
    """What poll_once does for the uplink and the core's deadlines, until nothing is left."""
    for _ in range(50):
        up = shell.uplink
        ev = up.poll(now)
        deadline = shell.core.next_deadline()
        if deadline is not None and ticks_diff(now, deadline) >= 0:
            shell.feed("tick", 0, None, now)
        if ev is None:
            if not up.t.inbox:
                return
            continue
        acts = shell.feed(ev[0], ev[1], ev[2], now)
        if ev[0] == "local_list":
            up.answer_local_list(acts)


def _count_writes(shell, kinds):
    """Wrap the flash operations to attribute each count to a file kind."""
    store, box = shell.store, shell.outbox
    put, write, rename, remove = store.put, box._write, box._rename, box._remove

    def note(key):
        kinds[key] = kinds.get(key, 0) + 1

    def counted_put(key, value):
        done = put(key, value)
        if done:
            note("store {} {}.*".format("delete" if value is None else "put", key.split(".")[0]))
        return done

    def counted_write(path, mode, data):
        write(path, mode, data)
        note("outbox {} {}".format(os.path.basename(path)[:1], mode))

    def counted_rename(src, dst):
        rename(src, dst)
        note("outbox rename")

    def counted_remove(path):
        remove(path)
        note("outbox remove " + os.path.basename(path)[:1])

    store.put, box._write, box._rename, box._remove = (counted_put, counted_write,
                                                         counted_rename, counted_remove)


# -- heap of the imported code, image size -------------------------------------------------
PROBE = """
import gc
import sys


def main(args):
    if args[0] == "flat":  # heap_report --flat: pre-grow the qstr pool past a boundary
        for i in range(1310):
            exec("_q%d = 0" % i)
    gc.collect()
    prev = gc.mem_alloc()
    for m in args[1:]:
        __import__(m)
        gc.collect()
        now = gc.mem_alloc()
        print("%s %d" % (m, now - prev))
        prev = now
    print("free %d" % gc.mem_free())
"""


def import_heap():
    """{module: [as loaded, own]} bytes: heap_report's run-time modules imported in its order
    by a probe packed into the image, under micropython -X heapsize=128k with the image mapped
    outside the heap (romboot, as the simulator runs the firmware); and the image's size."""
    from host_sim.runner import boot_dir, rom_command

    with tempfile.TemporaryDirectory() as out:
        build_for_micropython(out)
        src = os.path.join(out, "uplink_probe.py")
        with open(src, "w") as f:
            f.write(PROBE)
        image = build.image_with(out, "uplink_probe", src)
        got = {}
        for flat in (False, True):
            argv, env = rom_command(out, image, "uplink_probe",
                                    ["flat" if flat else "loaded"] + list(heap_report.RUNTIME),
                                    FLAT_HEAP if flat else HEAP)
            res = subprocess.run(argv, env=env, cwd=boot_dir(out), capture_output=True,
                                 text=True, timeout=120, check=False)
            if res.returncode != 0:
                raise BenchError("heap probe failed: " + (res.stderr or res.stdout)[-1000:])
            for line in res.stdout.splitlines():
                name, _, n = line.partition(" ")
                got.setdefault(name, [None, None])[1 if flat else 0] = int(n)
        size = os.path.getsize(os.path.join(out, build.IMAGE))
    got["run-time code, total"] = [sum(got[m][k] for m in heap_report.RUNTIME) for k in (0, 1)]
    return got, size


# -- output --------------------------------------------------------------------------------
def _ms(s):
    if not s:
        return "-"
    return "median {:7.1f}  min {:7.1f}  max {:7.1f}  (n={})".format(
        s["median"], s["min"], s["max"], s["n"])


def _tag(r):
    return "{} / {}{} ({})".format(r["interpreter"], "mqtts" if r["tls"] else "mqtt",
                                   ", TCP_NODELAY broker+proxy" if r.get("nodelay") else "",
                                   r["broker"])


def print_run(r):
    print("\n== " + _tag(r))
    for key, label in (("card", "tap -> card read by the firmware"),
                       ("request", "tap -> authorize request at the backend"),
                       ("auth", "tap -> auth event (backend's answer in)"),
                       ("closed", "tap -> contactor closed (goal <= 150)")):
        print("  {:44s} ms {}".format(label, _ms(r.get("tap_to_" + key + "_ms"))))
    if r.get("nodelay"):
        return
    w = r.get("writes_per_session")
    if w:
        print("  flash writes per session (inotify)           median {} min {} max {} (n={})"
              .format(w["median"], w["min"], w["max"], w["n"]))
        for k, v in r["writes_by_kind"].items():
            print("      {:40s} {:5.1f}".format(k, v))
    for key, label in (("restart_reconnect_s", "broker restart -> connected again"),
                       ("net_reconnect_s", "broker up -> connected again")):
        s = r.get(key)
        if s:
            print("  {:44s} s  median {} min {} max {} (n={})".format(
                label, s["median"], s["min"], s["max"], s["n"]))
    print("  loop gap max (running, ms):  " + ",  ".join(
        "{} {}".format(p, g) for p, g in r["gaps"]))
    h = r.get("heap")
    base = h["base"] if h else (r["heaps"][0][1]["base"] if r.get("heaps") else None)
    if r.get("heaps"):
        print("  heap after each phase (live / peak so far / working_peak so far, B; ready {} "
              "B, base {} B, of which the uplink's imported code {} B):".format(
                  r["ready_heap"], base, r.get("uplink_code")))
        for phase, x in r["heaps"]:
            print("      {:40s} {:7d} {:7d} {:7d}".format(phase, x["live"], x["peak"],
                                                       x["working_peak"]))
    if h:
        print("  end of run: live {} B, peak {} B, working_peak {} B (goal <= 24576), free {} "
              "B; peak above the ready heap {} B".format(
                  h["live"], h["peak"], h["working_peak"], h["free"],
                  h["peak"] - r["ready_heap"]))
    if r.get("fill_depth") is not None:
        print("  outbox filled to {} by {} sessions (backend not acknowledging){}".format(
            r["fill_depth"], r["fill_sessions"], "; drained in {} s".format(r["drain_s"])
            if "drain_s" in r else ""))
    if "failed" in r:
        print("  FAILED in phase '{}': {}".format(r["failed"]["phase"], r["failed"]["error"]))


def working_peak(r):
    """The run's working_peak, or, if the firmware died, the last one it reported, marked."""
    if not isinstance(r, dict):
        return None
    if r.get("heap"):
        return r["heap"]["working_peak"]
    if r.get("heaps"):
        return ">={} (died)".format(r["heaps"][-1][1]["working_peak"])
    return None


def _row(label, goal, values):
    print("{:58s} {:>10s} {:>14s} {:>14s}".format(label, goal, *[
        "-" if v is None else str(v) for v in values]))


def print_table(report, which):
    """Every figure in one table, CPython and MicroPython side by side."""
    def get(interp, run, *keys):
        v = report.get(interp + "/" + run)
        for k in keys:
            if not isinstance(v, dict):
                return None
            v = v.get(k)
        return v

    cols = [i if i in which else None for i in ("cpython", "micropython")]
    print("\n=== summary (broker: {})".format("mosquitto" if report["mosquitto"] else
                                              "amqtt (mosquitto not installed)"))
    _row("figure", "goal", ["cpython", "micropython"])
    img = report["image"]
    _row("image bytes / simulator ROMFS slot (ROM_SLOT_MAX)", "<= slot",
         ["-", "{} / {}".format(img["bytes"], img["slot"])])
    for m in MODULES + ("run-time code, total",):
        a, b = report["import_heap"].get(m, (None, None))
        _row("import heap {} (as loaded / own), B".format(m), "", ["-", "{} / {}".format(a, b)])
    for run, label in (("none", "no uplink"), ("mqtt", "mqtt"), ("mqtts", "mqtts")):
        _row("heap ready / base, {}, B".format(label), "", [
            None if c is None or c == "cpython" else "{} / {}".format(
                get(c, run, "ready_heap"), get(c, run, "heap", "base") or (
                    (get(c, run, "heaps") or [[None, {}]])[0][1].get("base")))
            for c in cols])
    _row("working_peak, no uplink (boot, 3 s idle), B", "<= 24576", [
        None if c is None or c == "cpython" else get(c, "none", "heap", "working_peak")
        for c in cols])
    for run in ("mqtt", "mqtts"):
        _row("uplink code imported before base (firmware's ready), {}, B".format(run), "", [
            None if c is None or c == "cpython" else get(c, run, "uplink_code")
            for c in cols])
        _row("working_peak, {}, >= 50 waiting + drain, B".format(run), "<= 24576", [
            None if c is None or c == "cpython" else working_peak(report.get(c + "/" + run))
            for c in cols])
        for c in cols:
            r = report.get("{}/{}".format(c, run))
            if isinstance(r, dict) and "failed" in r:
                print("  {} {}: FAILED in phase '{}': {}".format(
                    c, run, r["failed"]["phase"], r["failed"]["error"]))
    for run in ("mqtt", "mqtts"):
        _row("outbox depth when the heap was taken, " + run, ">= 50",
             [None if c is None or c == "cpython" else get(c, run, "fill_depth")
              for c in cols])
    _row("loop gap max, no uplink, ms", "< 20", [get(c, "none", "gap") if c else None
                                                  for c in cols])
    for run in ("mqtt", "mqtts"):
        for key, label in (("gap_connect", "connect"), ("gap_sessions", "+ sessions"),
                           ("gap_restarts", "+ broker restarts"),
                           ("gap_net", "+ broker down/up"), ("gap_fill", "+ 50 waiting"),
                           ("gap_drain", "+ drain")):
            _row("loop gap max (running), {}, {}, ms".format(run, label), "< 20",
                 [get(c, run, key) if c else None for c in cols])
    for run in ("mqtt", "mqtts"):
        _row("reconnect after broker restart, {}, median/max s".format(run), "", [
            None if c is None or not get(c, run, "restart_reconnect_s") else "{} / {}".format(
                get(c, run, "restart_reconnect_s", "median"),
                get(c, run, "restart_reconnect_s", "max")) for c in cols])
    prog = report["progress"]
    (_, a), (_, b) = sorted(prog.items())
    per = (b["writes"] - a["writes"]) / max(1, b["progress"] - a["progress"])
    for run in ("mqtt", "mqtts"):
        _row("flash writes per session (inotify), {}, median".format(run), "<= 10",
             [get(c, run, "writes_per_session", "median") if c else None for c in cols])
    _row("flash writes per session, in-process counters", "<= 10", [a["writes"], "-"])
    _row("flash writes per Progress, in-process counters", "<= 1", [round(per, 1), "-"])
    for run in ("mqtt", "mqtts", "mqtt-nodelay"):
        for key, label in (("request", "tap -> request at backend"),
                           ("closed", "tap -> contactor closed")):
            _row("{}, {}, median / max ms".format(label, run),
                 "<= 150" if key == "closed" else "", [
                     None if c is None or not get(c, run, "tap_to_%s_ms" % key) else
                     "{} / {}".format(get(c, run, "tap_to_%s_ms" % key, "median"),
                                      get(c, run, "tap_to_%s_ms" % key, "max"))
                     for c in cols])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--interpreter", choices=("cpython", "micropython", "both"), default="both")
    p.add_argument("--sessions", type=int, default=5)
    p.add_argument("--fill", type=int, default=50)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.add_argument("--only", choices=("mqtt", "mqtts"),
                   help="measure only this uplink (a quicker re-run of one figure)")
    args = p.parse_args(argv)
    which = ("cpython", "micropython") if args.interpreter == "both" else (args.interpreter,)
    report = {"mosquitto": brokers.mosquitto_available()}
    if not report["mosquitto"]:
        print("mosquitto is not installed (PATH, /usr/sbin): measuring against amqtt instead")
    failures = 0
    costs, size = import_heap()
    report["import_heap"] = costs
    report["image"] = {"bytes": size, "slot": ROM_SLOT_MAX}
    print("image {} B, simulator ROMFS slot (ROM_SLOT_MAX) {} B: {} B free ({:.1f} %)".format(
        size, ROM_SLOT_MAX, ROM_SLOT_MAX - size, 100.0 * (ROM_SLOT_MAX - size) / ROM_SLOT_MAX))
    print("heap of the imported code, B (micropython, code in the image; as loaded at -X "
          "heapsize={}, own = qstr pool pre-grown at {}):".format(HEAP, FLAT_HEAP))
    print("  {:26s} {:>9s} {:>6s}".format("module", "as loaded", "own"))
    for m in MODULES + ("run-time code, total",):
        a, b = costs.get(m, (None, None))
        print("  {:26s} {:>9} {:>6}".format(m, a, b))
    prog = progress_writes()
    report["progress"] = prog
    (s_short, a), (s_long, b) = sorted(prog.items())
    per = (b["writes"] - a["writes"]) / max(1, b["progress"] - a["progress"])
    print("in-process (CPython, firmware.shell + an acking transport stand-in, the firmware's "
          "counters): a {} s charge: {} writes ({} Progress); a {} s charge: {} writes ({} "
          "Progress) -> {:.1f} writes per Progress".format(
              s_short, a["writes"], a["progress"], s_long, b["writes"], b["progress"], per))
    for k, v in sorted(a["by_kind"].items()):
        print("      {:40s} {:3d}".format(k, v))
    sys.stdout.flush()
    for interpreter in which:
        with tempfile.TemporaryDirectory(prefix="bench-uplink-") as tmp:
            try:
                base = baseline(interpreter)
                report[interpreter + "/none"] = base
                line = "\n== {} / no uplink: loop gap max {} ms".format(interpreter, base["gap"])
                if "heap" in base:
                    line += ", ready heap {} B, base {} B, working_peak {} B".format(
                        base["ready_heap"], base["heap"]["base"], base["heap"]["working_peak"])
                print(line, flush=True)
                for tls in (False, True):
                    if args.only and args.only != ("mqtts" if tls else "mqtt"):
                        continue
                    r = measure(interpreter, tls, args.sessions, args.fill, args.cycles, tmp)
                    report["{}/{}".format(interpreter, "mqtts" if tls else "mqtt")] = r
                    print_run(r)
                    sys.stdout.flush()
                if report["mosquitto"]:
                    r = measure(interpreter, False, args.sessions, 0, 0, tmp, nodelay=True)
                    report[interpreter + "/mqtt-nodelay"] = r
                    print_run(r)
                    sys.stdout.flush()
            except (BenchError, RunnerError, brokers.BrokerError) as e:
                print("bench on {} failed: {}".format(interpreter, e), file=sys.stderr)
                failures += 1
    print_table(report, which)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
