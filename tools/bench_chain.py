"""Benchmark the whole OICP chain (issue 12's Measure): prints figures, asserts nothing.

    python -m tools.bench_chain [--interpreter micropython|cpython|both] [--runs N]

On one machine (host_sim.chain): the embedded broker, the Hubject simulator answering at once,
the bridge (mutual TLS both ways) and a simulated charge point with two EVSEs. Per interpreter:

- tap -> contactor closed, with the EV already asking for charge (state C), a new card each
  time (no cache hit): the reader's poll, the card read, the authorize request over MQTT, the
  bridge's eRoamingAuthorizeStart over HTTPS, the answer back, the coil switched; goal <= 150 ms
  median;
- RemoteStart request -> eRoamingAcknowledgement as Hubject's side measures it (through the
  bridge, MQTT, the charge point's core and back); goal <= 300 ms;
- the bridge's own added latency per AuthorizeStart: `bridge_ms` of the bridge's log line (its
  handling from the MQTT message in to the answer published, less the Hubject round trip).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time

from host_sim.chain import Chain

TOKEN = "04C0FFEE112233"
# one card per run: a card seen before is accepted from the charge point's cache (and only
# post-authorized), which would not measure the chain
CARD_LIST = ["04A1B2C3D4{:04X}".format(k) for k in range(100)]
CARDS = {uid: {"status": "Authorized", "code": "000", "ProviderID": "DE-ABC"}
         for uid in CARD_LIST + [TOKEN]}


def _wait(chain, start, pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for e in chain.sim.events[start:]:
            if pred(e):
                return e
        chain.sim.pump(0.005)
    raise RuntimeError("timed out; last events {}".format(chain.sim.events[-8:]))


def _stats(values):
    if not values:
        return "n/a"
    return "median {:.0f} ms, min {:.0f}, max {:.0f} (n={})".format(
        statistics.median(values), min(values), max(values), len(values))


def measure(interpreter, runs):
    taps, remote, added = [], [], []
    with Chain(tempfile.mkdtemp(prefix="bench-chain-"), interpreter=interpreter, evses=2,
               cards=CARDS, sim_config={"connection_timeout_s": 60, "card_guard_ms": 0}) as c:
        sim = c.sim
        for run in range(runs):
            start = len(sim.events)
            sim.command_line("plug 1")
            sim.command_line("ev 1 charge")  # the EV asks at once: tap -> closed is the chain
            _wait(c, start, lambda e: e["ev"] == "state" and e.get("evse") == 1)
            sim.command_line("wait 2.5")  # past the PP settling after a plug-in
            start = len(sim.events)
            card = CARD_LIST[run % len(CARD_LIST)]
            sim.command_line("tap " + card)
            tap = _wait(c, start, lambda e: e["ev"] == "reader" and e.get("action") == "tap")
            closed = _wait(c, start, lambda e: e["ev"] == "contactor" and e.get("evse") == 1
                           and e.get("closed"))
            taps.append((closed["t"] - tap["t"]) * 1000)
            sim.command_line("remove")
            sim.command_line("wait 2.5")  # the reader sees the card gone, not a drop-out
            start = len(sim.events)
            sim.command_line("tap " + card)
            _wait(c, start, lambda e: e["ev"] == "session_end" and e.get("evse") == 1)
            sim.command_line("remove")
            sim.command_line("ev 1 unplug")
            sim.command_line("wait 2.5")
        for line in c.bridge_lines("eRoamingAuthorizeStart"):
            if isinstance(line.get("bridge_ms"), (int, float)):
                added.append(line["bridge_ms"])  # its own time, the Hubject round trip excluded
        for _ in range(runs):
            r = c.remote_start("DE*SIM*E0001*2", TOKEN)
            remote.append(r["latency_ms"])
            c.remote_stop("DE*SIM*E0001*2", r["SessionID"])
            sim.pump(0.3)
    return {"tap_to_closed_ms": taps, "remote_start_ack_ms": remote,
            "bridge_added_ms": added}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--interpreter", choices=("cpython", "micropython", "both"), default="both")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = p.parse_args(argv)
    kinds = ("cpython", "micropython") if args.interpreter == "both" else (args.interpreter,)
    for kind in kinds:
        r = measure(kind, args.runs)
        print("{}:".format(kind))
        print("  tap -> contactor closed          {}".format(_stats(r["tap_to_closed_ms"])))
        print("  RemoteStart -> acknowledgement   {}".format(_stats(r["remote_start_ack_ms"])))
        print("  bridge's own time per AuthorizeStart {}".format(_stats(r["bridge_added_ms"])))
        if args.json:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
