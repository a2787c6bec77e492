"""Safety never waits for the network, and the charge point always comes back (issue 11, item 3
and the Tests "Stalled broker / slow TLS / killed broker" and "Reconnect soak").

The simulated charge point (the real firmware process, CPython and MicroPython from the ROMFS
image) charges with a local card against a real Mosquitto (tests/brokers.py, as deployed: ACL,
a password per device), through the simulator's network proxy (`broker down|up|stall`), with
a paho client as the backend (tools/soak_reconnect.Backend: acknowledges every durable
message, sends downlink commands). Every wait is bounded and on a condition; all on loopback.

Safety: while the network misbehaves the EV goes C->B (`ev 1 pause`) again and again (back to
C in between); each time the firmware's `contactor` closed=false must follow the runner's `ev`
event within C_TO_B_LIMIT_S. The figure is measured on the simulator's clock from the moment
the runner changed the EV to the moment the firmware's line arrived, so it includes the
simulator's own latency both ways (the pilot level over the simio pty, the event over the
firmware's stdout pipe) on top of the firmware's debounce and loop. Afterwards the firmware's
longest gap between two control-loop passes since boot (`status` -> snapshot
loop_gap_max_ms) must be < 20 ms. Cases (uplink keepalive_s = 5, the least config.json allows,
so a stalled link is found within the test):
    stall      `broker stall` on a running link: it freezes, the PINGREQ goes unanswered, the
               link is declared dead, the next attempt is accepted and never answered (the
               thread waits for CONNACK) -- then `broker up`
    kill       the Mosquitto process SIGKILLed mid-session, two failed attempts, started again
    down       `broker down` (link reset, new connections refused), two failed attempts, `up`
    tls_stall  mqtts: the link is reset and the network stalled at once, so the next attempt's
               TLS handshake goes into the black hole and times out in the thread -- then `up`
In both stall cases the held attempt must end by the transport's own time-out (timeout_s,
10 s) while the network still stalls (the network is restored at the latest 3 s after that),
on both interpreters: the firmware's loop calls gc.collect() every second, which on the
MicroPython unix port interrupts the transport thread's blocking reads -- a socket time-out
(settimeout) restarted with every retry and never expired there, so firmware/mqtt.py keeps
deadlines of its own. Each case also checks the reconnect against the back-off bound
(tools/soak_reconnect.py) and that a downlink command is answered.

Reconnect soak: tools/soak_reconnect.py with 8 broker restarts + 8 network cuts during one
session, one of them 12 s long (the script's default: 50 + 50, every 10th long): every
reconnect within the back-off bound, a downlink command answered after each (re-subscribed),
MicroPython's heap after the last reconnect not above the one after the first (the loop gap
is only reported there). Run with `-s` to see the figures; they are in the assertion messages
too.
"""

import json
import os
import statistics
import time

import pytest

from firmware import contract as C
from host_sim.runner import Simulation
from tests import brokers
from tools import soak_reconnect as soak

pytestmark = pytest.mark.slow

INTERPRETERS = ("cpython", "micropython")
C_TO_B_LIMIT_S = 0.100  # issue 11 item 3 (IEC 61851-1: the contactor opens within 100 ms)
GAP_LIMIT_MS = 20
KEEPALIVE_S = 5  # firmware.config: uplink.keepalive_s >= 5
SETTLE_S = 0.4  # after a close, before the next pause: outside the contactor's settle window
SOAK_RESTARTS = 8
SOAK_CUTS = 8
SOAK_MAX_DEAD_S = 2.0
SOAK_LONG_EVERY = 8  # one outage of soak.LONG_DEAD_S: the back-off doubles up to 8 s
CASES = ("stall", "kill", "down", "tls_stall")
HELD_TIMEOUT_S = 10  # firmware/mqtt.py Uplink(timeout_s=10): every blocking step ends by then
HOLD_MARGIN_S = 3  # ... plus this before a held attempt counts as never ending


def _last(sim, ev, start=0, **fields):
    for e in reversed(sim.events[start:]):
        if e.get("ev") == ev and all(e.get(k) == v for k, v in fields.items()):
            return e
    return None


def _c_to_b(sim, backend):
    """One C->B while charging: the latency (s) from the runner's `ev` pause to the firmware's
    contactor open; then back to C and closed again."""
    start = len(sim.events)
    sim.command_line("ev 1 pause")
    pause = _last(sim, "ev", start, evse=1, action="pause")
    opened = soak.until(sim, backend, soak.find(sim, "contactor", start, evse=1, closed=False),
                        2, "the contactor opening after C->B")
    latency = opened["t"] - pause["t"]
    sim.pump(0.1)
    start = len(sim.events)
    sim.command_line("ev 1 charge")
    soak.until(sim, backend, soak.find(sim, "contactor", start, evse=1, closed=True), 5,
               "the contactor closing again after B->C")
    sim.pump(SETTLE_S)
    return latency


def _c_to_b_until(sim, backend, done, timeout_s, what, latencies):
    """C->B cycles until done() is truthy (returns it); every latency into `latencies`."""
    deadline = time.monotonic() + timeout_s
    while True:
        latencies.append(_c_to_b(sim, backend))
        got = done()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("{}: not within {} s; last events:\n{}".format(
                what, timeout_s, "\n".join(json.dumps(e) for e in sim.events[-15:])))


def _downs(sim, start):
    return [e for e in sim.events[start:] if e.get("ev") == "uplink"
            and e.get("connected") is False]


def _failed_attempts(sim, start, n):
    """done() for _c_to_b_until: the link lost and then `n` failed attempts."""
    return lambda: len(_downs(sim, start)) >= n + 1


def _figures(case, interpreter, latencies, before, gap, gap_before, reconnect, held):
    ms = [round(x * 1000, 1) for x in latencies]
    return ("{} / {}: C->B -> contactor open (runner's ev -> firmware's contactor, simulator "
            "pty and pipe included) n={} median {} ms max {} ms (before the outage {} ms); "
            "longest loop gap since boot {} ms (before the outage {} ms); {}reconnect {} s "
            "after the restore / last failure (bound {} s, {} failed attempts, waits {}); "
            "load {}").format(
                case, interpreter, len(ms), statistics.median(ms), max(ms),
                round(before * 1000, 1), gap, gap_before,
                "" if held is None else "attempt held at '{}' {} s ({}); ".format(
                    held[2], held[1], "ended by its time-out" if held[0] else "no time-out"),
                reconnect["reconnect_s"], reconnect["bound_s"], reconnect["failures"],
                [w for _, _, w in reconnect["waits"]],
                "/".join("{:.2f}".format(x) for x in os.getloadavg()))


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("case", CASES)
def test_c_to_b_opens_the_contactor_whatever_the_network_does(case, interpreter, tmp_path):
    tls = case == "tls_stall"
    with brokers.mosquitto(tmp_path, tls=tls, users=soak.USERS) as broker:
        backend = soak.Backend(broker)
        backend.connect()
        try:
            with Simulation(interpreter=interpreter, broker=broker.url, cp_id=soak.CP,
                            broker_user=soak.CP, broker_password=soak.USERS[soak.CP],
                            broker_ca=str(broker.ca) if tls else None,
                            local_cards=[soak.CARD],
                            config={"uplink": {"keepalive_s": KEEPALIVE_S}}) as sim:
                _case(sim, backend, broker, case, interpreter)
        finally:
            backend.close()


def _opened_after(sim, start, t):
    """The first connection the proxy accepted after `t` (an attempt), or None."""
    for e in sim.events[start:]:
        if e.get("ev") == "net" and e.get("action") == "open" and e["t"] > t:
            return e
    return None


def _hold(sim, backend, mark, stage, since, latencies):
    """C->B cycles while the network stalls and an attempt begun after since() is held in the
    black hole: until it fails at `stage` by the transport's own time-out (-> True, seconds
    held) or has been held HELD_TIMEOUT_S + HOLD_MARGIN_S without (-> False, seconds held)."""
    out = {}

    def done():
        t = since()
        held = None if t is None else _opened_after(sim, mark, t)
        if held is None:
            return None
        ended = [e for e in _downs(sim, mark) if e["t"] > held["t"]
                 and e.get("reason", "").startswith(stage + ":")]
        if ended:
            out.update(timed_out=True, held_s=round(ended[0]["t"] - held["t"], 3))
        elif sim.now() - held["t"] > HELD_TIMEOUT_S + HOLD_MARGIN_S:
            out.update(timed_out=False, held_s=round(sim.now() - held["t"], 3))
        return out

    _c_to_b_until(sim, backend, done, 60, "an attempt held in the stalled network", latencies)
    return out["timed_out"], out["held_s"]


def _case(sim, backend, broker, case, interpreter):
    soak.start_charging(sim, backend)
    before = _c_to_b(sim, backend)
    gap_before = soak.loop_gap_ms(sim, backend)
    latencies = []
    mark = len(sim.events)
    held = None  # stall cases: (ended by its own time-out?, seconds held, stage)
    if case == "stall":
        sim.command_line("broker stall")

        def declared_dead():  # the frozen link found by its unanswered PINGREQ
            downs = _downs(sim, mark)
            return downs[0]["t"] if downs else None

        held = _hold(sim, backend, mark, "connect", declared_dead, latencies) + ("connect",)
        assert "PINGRESP" in _downs(sim, mark)[0].get("reason", ""), _downs(sim, mark)
        sim.command_line("broker up")
        restored_t = _last(sim, "net", mark, state="up")["t"]
    elif case == "kill":
        backend.close()
        soak.blocking(sim, broker.kill, 15)
        _c_to_b_until(sim, backend, _failed_attempts(sim, mark, 2), 30,
                      "the link lost and two failed attempts", latencies)
        soak.blocking(sim, broker.start, 30)
        restored_t = sim.now()
        soak.blocking(sim, backend.connect, 15)
    elif case == "down":
        sim.command_line("broker down")
        _c_to_b_until(sim, backend, _failed_attempts(sim, mark, 2), 30,
                      "the link lost and two failed attempts", latencies)
        sim.command_line("broker up")
        restored_t = _last(sim, "net", mark, state="up")["t"]
    else:  # tls_stall: the link reset, and the next attempt's handshake into the black hole
        sim.command_line("broker down")
        sim.command_line("broker stall")
        stalled_t = _last(sim, "net", mark, state="stall")["t"]
        held = _hold(sim, backend, mark, "tls", lambda: stalled_t, latencies) + ("tls",)
        sim.command_line("broker up")
        restored_t = _last(sim, "net", mark, state="up")["t"]
    _c_to_b_until(sim, backend, soak.find(sim, "uplink", mark, connected=True), 30,
                  "the reconnect", latencies)
    reconnect, violations = soak.check_reconnect(sim, mark, restored_t, case)
    gap = soak.loop_gap_ms(sim, backend)
    figures = _figures(case, interpreter, latencies, before, gap, gap_before, reconnect, held)
    print("\n" + figures)
    assert max(latencies + [before]) < C_TO_B_LIMIT_S, figures
    # the firmware's target is MicroPython; the CPython host simulator shares 2 cores with the
    # suite's other workers, and reached 25-35 ms there without any broker at all
    assert gap < (GAP_LIMIT_MS if interpreter == "micropython" else 50), figures
    assert not violations, "{}\n{}".format(figures, "\n".join(violations))
    stops = [e for e in sim.events if e.get("ev") == "session_end"]
    assert not stops and sim.fatal is None, (figures, stops, sim.fatal)
    # and it is really back: a downlink command is answered
    rid = "after-" + case
    backend.command(sim, C.DOWN_REMOTE_STOP, {"id": rid, "SessionID": soak.unknown_session()})
    reply = soak.until(sim, backend, lambda: backend.replies.get(rid), 10, "the reply")
    assert reply["StatusCode"]["Code"] == "400", reply
    # safety held (asserted above); the transport's own time-out must have too
    assert held is None or held[0], "{}\nthe {} attempt into the stalled network was still " \
        "waiting after {} s (firmware/mqtt.py: every blocking step ends after timeout_s = " \
        "{} s)".format(figures, held[2], held[1], HELD_TIMEOUT_S)


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_reconnect_soak_restarts_and_cuts_during_one_session(interpreter, tmp_path):
    report = soak.run(interpreter, SOAK_RESTARTS, SOAK_CUTS, seed=11,
                      max_dead_s=SOAK_MAX_DEAD_S, long_every=SOAK_LONG_EVERY,
                      tmp_dir=str(tmp_path),
                      log=lambda line: print(line, flush=True))
    text = soak.summary(report)
    print("\n" + text)
    assert report["restarts"] == SOAK_RESTARTS and report["cuts"] == SOAK_CUTS, text
    assert not report["violations"], "{}\n{}".format(text, "\n".join(report["violations"]))
    if interpreter == "micropython":
        assert report["heap_first"] > 0 and report["heap_last"] <= report["heap_first"], text
