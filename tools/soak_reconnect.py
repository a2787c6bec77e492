"""Reconnect soak (issue 11, Tests: "Reconnect soak"): one long charging session while the
broker is restarted RESTARTS times and the charge point's network is cut CUTS times.

    python -m tools.soak_reconnect [--interpreter cpython|micropython|both] [--restarts 50]
                                   [--cuts 50] [--seed N] [--max-dead 2.5] [--long-every 10]
                                   [--report FILE]

The simulated charge point (host_sim.runner.Simulation, the real firmware process) charges
with a local card against a real Mosquitto (tests/brokers.py: the shipped configuration, ACL
and a password per device) with a paho client as the backend, which acknowledges every durable
message. The outages alternate (cut, restart, cut, ...; the longer list goes on alone at the
end) between a first and a last broker restart without dead time (`schedule`: their heap
figures are compared, so they must leave the same state), each other one with a dead time
drawn from the seed (0 to --max-dead seconds, so some outages see no failed attempt and others
two or three), and every --long-every-th one LONG_DEAD_S long (four failed attempts: the
back-off doubles to 8 s):

    restart   the broker process is stopped (SIGTERM; every second one SIGKILLed instead, a
              crash), stays down for the dead time and is started again on the same port
    cut       `broker down` (the proxy resets the link and refuses new connections) for the
              dead time, then `broker up`

After each outage the harness checks, from the event stream:
  - the charge point lost the link (`uplink` connected=false) and got it back
    (`uplink` connected=true), and every wait between attempts kept the transport's back-off
    (firmware/mqtt.py: 1 s after a link that was up and after the first failed attempt, then
    doubling up to 60 s, each drawn within +-25 %): the k-th wait lies within
    [0.75 b(k) - LOW_TOL_S, 1.25 b(k) + HIGH_TOL_S]; an attempt starts at the proxy's `net`
    open of its connection, or at its failure report when the proxy refused it;
  - the reconnect, counted from the later of the restore and the last failure, came within
    1.25 b(failures) + CONNECT_SLACK_S (the connection itself: TCP, CONNECT, SUBSCRIBE, the
    birth messages with their PUBACKs);
  - it subscribed again: the backend's `remote_stop` for a SessionID nobody knows, sent after
    the reconnect, is answered on up/reply (Result false, 400 Session is invalid);
  - the firmware's live heap after a collection (console `heap`; the floor of many answers,
    see heap_floor; HEAP_FLOOR_SAMPLES after the first and the last reconnect, HEAP_SAMPLES
    after the others): the one after the last reconnect must not exceed the one after the
    first by more than HEAP_NOISE_B (two GC blocks of noise; MicroPython; CPython reports 0,
    the run still goes through every check).
At the end: the session never stopped (no `session_end`, the contactor never opened) and the
firmware never died. The longest control-loop gap since boot (`status` -> loop_gap_max_ms) is
reported after each outage with the machine's load average, as a figure: on a shared machine
it follows the load (a CPython firmware with no uplink at all shows 25-35 ms at load 2 on 2
cores), so it is asserted where the issue asks for it, in tests/test_uplink_resilience.py's
safety cases, not here.

Prints one line per outage and the figures; exit status 1 on any violation. The suite runs a
small version (tests/test_uplink_resilience.py: 8 restarts + 8 cuts per interpreter).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid

if __name__ == "__main__":
    sys.path.insert(0, ".")

from firmware import contract as C
from host_sim.runner import INTERPRETERS, Simulation
from tests import brokers

CP = "SIM01"
USERS = {"bridge": "bridge-secret", CP: "sim01-secret"}
CARD = "04A1B2C3"  # on the local list: the session does not depend on the backend
BACKOFF_MIN_S = 1.0  # firmware/mqtt.py BACKOFF_MIN_MS
BACKOFF_MAX_S = 60.0  # firmware/mqtt.py BACKOFF_MAX_MS
JITTER = 0.25
LOW_TOL_S = 0.1  # a wait measured short by the event stamps (stdout vs the proxy's clock)
HIGH_TOL_S = 0.3  # a wait measured long: the loop's pass, the stdout pipe, a busy machine
CONNECT_SLACK_S = 1.0  # TCP + CONNECT/CONNACK + SUBSCRIBE/SUBACK + 2 births with PUBACK
HEAP_SAMPLES = 3  # `heap` answers after each reconnect (the series)
HEAP_FLOOR_SAMPLES = 30  # after the first and the last reconnect (the compared figures)
# Two GC blocks: even the floor of 30 answers moved by one 32 B block between two outages with
# no growth in CI (series 107712..107808, last 107744 > first 107712); a leak of 8 B per
# outage is 128 B over the 16 here, still caught
HEAP_NOISE_B = 64
HEAP_FLOOR_BATCHES = 3  # the last one is sampled again (state unchanged) while above the first
REPLY_TIMEOUT_S = 10.0
LOSS_TIMEOUT_S = 20.0
LONG_DEAD_S = 12.0  # failed attempts after 1, 2, 4 and 8 s, the 5th (at 16 s) gets through


class SoakError(AssertionError):
    """A bounded wait ran out, or the firmware died: the run cannot go on."""


def backoff_base_s(failures):
    """The transport's wait before the next attempt, before jitter, after `failures` failed
    attempts since the link was last up (0: right after the link went)."""
    return min(BACKOFF_MIN_S * 2 ** max(failures - 1, 0), BACKOFF_MAX_S)


def blocking(sim, fn, timeout_s=30.0):
    """fn() in a thread while the simulation is pumped (its devices must never wait for a
    broker starting or a paho call); its result, or its exception raised here."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread below
            box["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = time.monotonic() + timeout_s
    while th.is_alive():
        if time.monotonic() > deadline:
            raise SoakError("{} did not return within {} s".format(
                getattr(fn, "__name__", fn), timeout_s))
        sim.pump(0.01)
    if "error" in box:
        raise box["error"]
    return box.get("value")


class Backend:
    """The bridge's stand-in (paho, user "bridge"): acknowledges every durable message by id,
    answers authorize requests, sends downlink commands and finds their replies. `connect()`
    again after a broker restart (a clean session: the old client's subscription is gone)."""

    def __init__(self, broker):
        self.broker = broker
        self.client = None
        self.seen = 0
        self.durable = []  # (topic, body), arrival order, over every connection
        self.replies = {}  # id -> reply body

    def connect(self):
        self.close()
        client = brokers.MqttClient(self.broker, "bridge", USERS["bridge"])
        client.connect()
        try:
            client.subscribe("mpevse/+/#")
        except BaseException:
            client.close()
            raise
        self.client = client
        self.seen = 0

    def close(self):
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def serve(self):
        if self.client is None:
            return
        msgs = self.client.messages
        tree = C.tree(CP) + "/"
        while self.seen < len(msgs):
            m = msgs[self.seen]
            self.seen += 1
            if not m.topic.startswith(tree) or m.topic.startswith(tree + "down/") \
                    or m.topic in (C.availability_topic(CP), C.birth_topic(CP)):
                continue
            body = json.loads(m.payload)
            if m.topic == C.up_topic(CP, C.UP_REPLY):
                if isinstance(body.get("id"), str):
                    self.replies[body["id"]] = body
            elif m.topic == C.up_topic(CP, C.UP_AUTHORIZE):
                self.client.client.publish(C.down_topic(CP, C.DOWN_AUTHORIZE), json.dumps(
                    {"id": body["id"], "AuthorizationStatus": "NotAuthorized",
                     "StatusCode": {"Code": "000"}}), 1)
            elif "id" in body:
                self.durable.append((m.topic, body))
                # paho's own queue: never waits here (the PUBACK comes on paho's thread)
                self.client.client.publish(C.down_topic(CP, C.DOWN_ACK),
                                           json.dumps({"ids": [body["id"]]}), 1)

    def command(self, sim, kind, body):
        """Publish one downlink command (QoS 1, waits for its PUBACK while pumping)."""
        client = self.client
        payload = json.dumps(body)
        code = blocking(sim, lambda: client.publish(C.down_topic(CP, kind), payload), 10)
        if code not in (0, None):
            raise SoakError("the broker refused the backend's {} command: {}".format(kind, code))


def unknown_session():
    """A well-formed SessionID that no session has: remote_stop answers it 400."""
    return str(uuid.uuid4())


def until(sim, backend, cond, timeout_s, what):
    """Pump until cond() is truthy (returns it); SoakError after timeout_s or a death."""
    deadline = time.monotonic() + timeout_s
    while True:
        if backend is not None:
            backend.serve()
        got = cond()
        if got:
            return got
        if sim.fatal is not None:
            raise SoakError("the firmware died: {}".format(json.dumps(sim.fatal)))
        if time.monotonic() > deadline:
            raise SoakError("{}: not within {} s; last events:\n{}".format(
                what, timeout_s, "\n".join(json.dumps(e) for e in sim.events[-15:])))
        sim.pump(0.02)


def find(sim, ev, start=0, **fields):
    """A condition for `until`: the first event `ev` with these fields from index `start`."""
    def cond():
        for e in sim.events[start:]:
            if e.get("ev") == ev and all(e.get(k) == v for k, v in fields.items()):
                return e
        return None
    return cond


def index_of(sim, event):
    """Index of `event` (the dict itself) in sim.events."""
    for i in range(len(sim.events) - 1, -1, -1):
        if sim.events[i] is event:
            return i
    raise ValueError("event not recorded")


def heap_floor(sim, backend, samples, rng=None):
    """The firmware's live heap after gc.collect() (console `heap`): the least of `samples`
    answers, 20-150 ms apart. One answer alone is not the heap's state: the control loop's
    in-flight objects (a Modbus frame half received, the newest JSON line) and words left on
    the two threads' stacks, which the conservative GC takes for pointers, add 0-300 B that
    change from one collection to the next; the least of many answers is the floor."""
    rng = rng or random.Random(samples)
    got = []
    for k in range(samples):
        if k:
            sim.pump(rng.uniform(0.02, 0.15))
        start = len(sim.events)
        sim.command_line("heap")
        got.append(until(sim, backend, find(sim, "heap", start), 10, "heap answer")["live"])
    return min(got)


def loop_gap_ms(sim, backend):
    """The firmware's longest gap between two control-loop passes since boot (`status`)."""
    start = len(sim.events)
    sim.command_line("status")
    return until(sim, backend, find(sim, "snapshot", start), 10, "status answer")[
        "loop_gap_max_ms"]


def start_charging(sim, backend):
    """Connected, then a local-card session charging, its durable messages acknowledged."""
    until(sim, backend, find(sim, "uplink", connected=True), 30, "first connection")
    start = len(sim.events)
    sim.command_line("plug 1")
    sim.command_line("tap " + CARD)
    until(sim, backend, find(sim, "session_start", start, evse=1), 10, "session_start")
    sim.command_line("remove")
    sim.command_line("ev 1 charge")
    until(sim, backend, find(sim, "contactor", start, evse=1, closed=True), 10,
          "contactor closed")
    until(sim, backend, lambda: sim.outbox_depth == 0 and backend.durable, 15,
          "the session's first durable messages acknowledged")


def backoff_waits(sim, start, end):
    """The waits between attempts in sim.events[start:end+1], which runs from a link loss to
    the reconnect: [(k, base_s, wait_s)], k = failed attempts before the wait."""
    evs = sim.events[start:end + 1]
    fails = [e for e in evs if e.get("ev") == "uplink" and e.get("connected") is False]
    done = evs[-1]
    opens = [e["t"] for e in evs if e.get("ev") == "net" and e.get("action") == "open"]
    out = []
    for k, f in enumerate(fails):
        nxt = fails[k + 1]["t"] if k + 1 < len(fails) else done["t"]
        began = [t for t in opens if f["t"] < t <= nxt]
        out.append((k, backoff_base_s(k), round((began[0] if began else nxt) - f["t"], 3)))
    return out


def check_reconnect(sim, start, restored_t, what):
    """The reconnect after the outage whose events begin at index `start`: figures and the
    violations of the back-off bound (module doc)."""
    loss = find(sim, "uplink", start, connected=False)()
    back = find(sim, "uplink", start, connected=True)()
    i0, i1 = index_of(sim, loss), index_of(sim, back)
    waits = backoff_waits(sim, i0, i1)
    failures = len(waits) - 1
    last_down = [e for e in sim.events[i0:i1] if e.get("ev") == "uplink"][-1]
    last_fail = max(restored_t, last_down["t"])
    reconnect_s = round(back["t"] - last_fail, 3)
    bound_s = round((1 + JITTER) * backoff_base_s(failures) + CONNECT_SLACK_S, 3)
    violations = []
    for k, base, wait in waits:
        lo, hi = (1 - JITTER) * base - LOW_TOL_S, (1 + JITTER) * base + HIGH_TOL_S
        if not lo <= wait <= hi:
            violations.append("{}: wait {} after {} failed attempts: {} s, outside the back-off "
                              "[{:.2f}, {:.2f}] s".format(what, k + 1, k, wait, lo, hi))
    if reconnect_s > bound_s:
        violations.append("{}: reconnected {} s after the restore / last failure, bound {} s "
                          "for {} failures".format(what, reconnect_s, bound_s, failures))
    return {"loss_t": loss["t"], "loss": loss.get("reason"),
            "last_reason": last_down.get("reason"), "restored_t": round(restored_t, 3),
            "connected_t": back["t"], "failures": failures, "waits": waits,
            "reconnect_s": reconnect_s, "bound_s": bound_s,
            "outage_s": round(back["t"] - loss["t"], 3)}, violations


def outage(sim, backend, broker, kind, n, dead_s, kill=False):
    """One outage (`restart` or `cut`) and its reconnect; (figures, violations)."""
    start = len(sim.events)
    if kind == "restart":
        backend.close()
        blocking(sim, broker.kill if kill else broker.stop, 15)
    else:
        sim.command_line("broker down")
    until(sim, backend, find(sim, "uplink", start, connected=False), LOSS_TIMEOUT_S,
          "{} {}: the link loss".format(kind, n))
    sim.pump(dead_s)
    if kind == "restart":
        blocking(sim, broker.start, 30)
        restored_t = sim.now()
        blocking(sim, backend.connect, 15)  # before the charge point's first attempt (>= 0.75 s)
    else:
        sim.command_line("broker up")
        restored_t = [e for e in sim.events[start:] if e.get("ev") == "net"
                      and e.get("state") == "up"][-1]["t"]
    until(sim, backend, find(sim, "uplink", start, connected=True),
          (1 + JITTER) * backoff_base_s(int(dead_s) + 3) + 10,
          "{} {}: the reconnect".format(kind, n))
    figures, violations = check_reconnect(sim, start, restored_t, "{} {}".format(kind, n))
    rid = "soak-{}-{}".format(kind, n)
    t0 = sim.now()
    backend.command(sim, C.DOWN_REMOTE_STOP, {"id": rid, "SessionID": unknown_session()})
    reply = until(sim, backend, lambda: backend.replies.get(rid), REPLY_TIMEOUT_S,
                  "{} {}: the reply to {} (re-subscribed?)".format(kind, n, rid))
    figures["reply_s"] = round(sim.now() - t0, 3)
    if reply.get("Result") is not False or reply.get("StatusCode", {}).get("Code") != "400":
        violations.append("{} {}: remote_stop for an unknown session answered {}".format(
            kind, n, json.dumps(reply)))
    figures.update(kind=kind, n=n, dead_s=round(dead_s, 3), kill=kill)
    return figures, violations


def schedule(restarts, cuts, seed, max_dead_s, long_every=0, long_dead_s=LONG_DEAD_S):
    """[(kind, n, dead_s, kill)]: restarts and cuts alternating, dead times drawn from `seed`,
    every second restart a SIGKILL (`kill`) instead of a SIGTERM; every `long_every`-th outage
    (0: none) lasts `long_dead_s`, long enough for the back-off to double to 8 s. The
    first and the last outage are alike -- a broker restart (SIGTERM) without dead time, so one
    attempt after the 1 s back-off gets through -- because their heap figures are compared:
    the transport keeps the last failure's reason, whose length differs between kinds of
    outage ("link: closed by the broker" / "tcp: OSError: [Errno 111] ECONNREFUSED": one
    32-byte block more or less, not a leak)."""
    rng = random.Random(seed)
    middle_r, middle_c = max(restarts - 2, 0), cuts
    kinds = []
    for i in range(max(middle_r, middle_c)):
        if i < middle_c:
            kinds.append("cut")
        if i < middle_r:
            kinds.append("restart")
    kinds = ["restart"] * min(restarts, 1) + kinds + ["restart"] * min(max(restarts - 1, 0), 1)
    count = {"restart": 0, "cut": 0}
    out = []
    for i, kind in enumerate(kinds):
        count[kind] += 1
        edge = kind == "restart" and i in (0, len(kinds) - 1)
        dead_s = 0.0 if edge else round(rng.uniform(0.0, max_dead_s), 3)
        if long_every and not edge and i % long_every == long_every - 1:
            dead_s = long_dead_s
        out.append((kind, count[kind], dead_s, kind == "restart" and not edge
                    and count[kind] % 2 == 0))
    return out


def run(interpreter, restarts, cuts, seed=1, max_dead_s=2.5, long_every=0, tmp_dir=None,
        log=print):
    """The soak on one interpreter; a report dict (figures, violations). SoakError if a
    bounded wait ran out (the run cannot go on)."""
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="soak-reconnect-", dir=tmp_dir) as tmp:
        with brokers.mosquitto(tmp, users=USERS) as broker:
            backend = Backend(broker)
            backend.connect()
            try:
                with Simulation(interpreter=interpreter, broker=broker.url, cp_id=CP,
                                broker_user=CP, broker_password=USERS[CP],
                                local_cards=[CARD]) as sim:
                    report = _soak(sim, backend, broker, interpreter,
                                   schedule(restarts, cuts, seed, max_dead_s, long_every),
                                   seed, log)
            finally:
                backend.close()
    report["wall_s"] = round(time.monotonic() - t_start, 1)
    return report


def _soak(sim, backend, broker, interpreter, plan, seed, log):
    mp = interpreter == "micropython"  # CPython's heap figures are 0: one answer will do
    rng = random.Random(seed)
    start_charging(sim, backend)
    heap_before = heap_floor(sim, backend, HEAP_SAMPLES if mp else 1, rng)
    gap_before = loop_gap_ms(sim, backend)
    mark = len(sim.events)
    rows, violations = [], []
    heap_samples = 0
    for i, (kind, n, dead_s, kill) in enumerate(plan):
        figures, bad = outage(sim, backend, broker, kind, n, dead_s, kill)
        edge = i in (0, len(plan) - 1)
        samples = (HEAP_FLOOR_SAMPLES if edge else HEAP_SAMPLES) if mp else 1
        figures["heap"] = heap_floor(sim, backend, samples, rng)
        if i and i == len(plan) - 1:
            # the state after the last reconnect does not change while it is sampled: sample it
            # again while its floor is above the first one's (a leak stays above, noise not)
            for _ in range(HEAP_FLOOR_BATCHES - 1 if mp else 0):
                if figures["heap"] <= rows[0]["heap"]:
                    break
                figures["heap"] = min(figures["heap"], heap_floor(sim, backend, samples, rng))
                samples += HEAP_FLOOR_SAMPLES
        if edge:
            heap_samples = max(heap_samples, samples)
        figures["gap_ms"] = loop_gap_ms(sim, backend)  # since boot: where it grew, and the load
        figures["load"] = round(os.getloadavg()[0], 2)
        rows.append(figures)
        violations.extend(bad)
        log("{} {:7} {:2}{}  dead {:5.2f} s  failures {}  waits {}  reconnect {:5.3f} s "
            "(bound {:5.3f})  reply {:5.3f} s  heap {}  gap {} ms  load {}{}".format(
                interpreter, kind, n, " (kill)" if kill else "       ", dead_s,
                figures["failures"],
                [w for _, _, w in figures["waits"]], figures["reconnect_s"],
                figures["bound_s"], figures["reply_s"], figures["heap"], figures["gap_ms"],
                figures["load"], "  <-- " + "; ".join(bad) if bad else ""))
    gap = loop_gap_ms(sim, backend)
    after = sim.events[mark:]
    stops = [e for e in after if e.get("ev") == "session_end"
             or (e.get("ev") == "contactor" and e.get("closed") is False)]
    if stops:
        violations.append("the session did not go on: {}".format(json.dumps(stops[0])))
    heaps = [r["heap"] for r in rows]
    if heaps and heaps[-1] > heaps[0] + HEAP_NOISE_B:
        violations.append("heap after the last reconnect {} B > after the first {} B (least of "
                          "{} answers each; series {})".format(heaps[-1], heaps[0], heap_samples,
                                                               heaps))
    recon = [r["reconnect_s"] for r in rows]
    return {
        "interpreter": interpreter, "restarts": sum(r["kind"] == "restart" for r in rows),
        "cuts": sum(r["kind"] == "cut" for r in rows), "seed": seed,
        "reconnect_s_max": max(recon) if recon else None,
        "reconnect_s_mean": round(sum(recon) / len(recon), 3) if recon else None,
        "reconnect_over_bound_max": max(round(r["reconnect_s"] / r["bound_s"], 3)
                                        for r in rows) if rows else None,
        "failures_max": max(r["failures"] for r in rows) if rows else None,
        "reply_s_max": max(r["reply_s"] for r in rows) if rows else None,
        "heap_before": heap_before, "heap_first": heaps[0] if heaps else None,
        "heap_last": heaps[-1] if heaps else None, "heap_samples": heap_samples,
        "heap_min": min(heaps) if heaps else None, "heap_max": max(heaps) if heaps else None,
        "loop_gap_max_ms": gap, "loop_gap_before_ms": gap_before, "violations": violations,
        "outages": rows,
    }


def summary(report):
    return ("{interpreter}: {restarts} restarts + {cuts} cuts in {wall_s} s; reconnect max "
            "{reconnect_s_max} s (mean {reconnect_s_mean}, worst {reconnect_over_bound_max} of "
            "its bound, up to {failures_max} failed attempts); reply max {reply_s_max} s; heap "
            "live after the 1st reconnect {heap_first} B, after the last {heap_last} B (range "
            "{heap_min}..{heap_max}, before the first outage {heap_before}); longest loop gap "
            "{loop_gap_max_ms} ms (before the first outage {loop_gap_before_ms}); violations "
            "{n}").format(n=len(report["violations"]), **report)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interpreter", choices=INTERPRETERS + ("both",), default="both")
    ap.add_argument("--restarts", type=int, default=50)
    ap.add_argument("--cuts", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-dead", type=float, default=2.5,
                    help="longest dead time of an outage (s)")
    ap.add_argument("--long-every", type=int, default=10,
                    help="every N-th outage lasts {} s (0: none)".format(LONG_DEAD_S))
    ap.add_argument("--report", help="write the reports as JSON here")
    args = ap.parse_args(argv)
    if not brokers.mosquitto_available():
        print("mosquitto and mosquitto_passwd are needed (tools/mosquitto/install.sh)")
        return 2
    which = INTERPRETERS if args.interpreter == "both" else (args.interpreter,)
    reports, failed = [], False
    for interpreter in which:
        try:
            report = run(interpreter, args.restarts, args.cuts, args.seed, args.max_dead,
                         args.long_every)
        except SoakError as e:
            print("{}: stopped: {}".format(interpreter, e))
            failed = True
            continue
        reports.append(report)
        print(summary(report), flush=True)
        for v in report["violations"]:
            print("  VIOLATION " + v)
        failed = failed or bool(report["violations"])
    if args.report:
        with open(args.report, "w") as f:
            json.dump(reports, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
