"""Power cuts with the uplink in the loop (issue 11 item 5): seeded random cuts while sessions
run and the charge point's network comes and goes, against Mosquitto and an independent
backend that acknowledges durable messages by id (tests/test_uplink_broker.Backend).

Afterwards the backend must hold every CDR the firmware emitted exactly once after
de-duplication by id (redeliveries are allowed and counted: that is what ids are for), in the
order the firmware emitted them (one EVSE, so per EVSE), and nothing the firmware never
emitted. The suite runs CUTS cuts per interpreter (MPEVSE_CUTS overrides; `make soak` runs 50);
each session takes ~9 s (card guard, the 5 s between PWM changes), so the suite keeps it short;
a failure prints the seed and the commands.
"""

import json
import os
import random
import time

import pytest

from firmware import contract as C
from tests.test_uplink_broker import CP, _until, charge_point

pytestmark = pytest.mark.slow

CARD = "04A1B2C3D4E5F6"
CUTS = int(os.environ.get("MPEVSE_CUTS", "8"))


def _campaign(sim, backend, rng, cuts, log):
    """Sessions with cuts at random moments; the network goes down and up between them."""
    done = 0
    while done < cuts:
        if rng.random() < 0.3:
            state = rng.choice(("down", "up"))
            log.append("broker " + state)
            sim.command_line("broker " + state)
        # a session: past the card guard (2 s) and the 5 s between PWM changes before the next
        # (the reader polls: a card must rest a moment to be read)
        steps = ["plug 1", "tap " + CARD, "wait 0.4", "remove", "ev 1 charge",
                 "wait {:.2f}".format(rng.uniform(0.3, 1.5)), "wait 2.2", "tap " + CARD,
                 "wait 0.4", "remove", "ev 1 unplug", "wait 5.2"]
        cut_at = rng.randrange(len(steps) + 1)
        for k, line in enumerate(steps):
            if k == cut_at:
                pause = "wait {:.3f}".format(rng.uniform(0, 0.4))
                log.extend([pause, "power_cut"])
                sim.command_line(pause)
                sim.command_line("power_cut")
                done += 1
                if rng.random() < 0.25:  # a second cut close behind the first
                    log.append("power_cut")
                    sim.command_line("power_cut")
                    done += 1
            log.append(line)
            sim.command_line(line)
            backend.serve()
        if sim.fatal is not None:
            raise AssertionError("the firmware died: {}".format(sim.fatal))


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_every_cdr_reaches_the_backend_exactly_once_in_order(tmp_path, interpreter):
    seed = int(time.time()) % 100000 if os.environ.get("MPEVSE_RANDOM_SEED") else 1107
    rng = random.Random(seed)
    log = []
    with charge_point(tmp_path, interpreter, local_cards=[CARD]) as (client, backend, sim):
        try:
            _campaign(sim, backend, rng, CUTS, log)
            sim.command_line("broker up")
            sim.command_line("wait 1")
            emitted = []
            for e in sim.events:
                if e.get("ev") == "cdr" and e["record"]["id"] not in emitted:
                    emitted.append(e["record"]["id"])

            def drained():
                got = [b["id"] for _, b in backend.durable if b.get("type") == "cdr"]
                return got if set(got) >= set(emitted) else None

            got = _until(sim, backend, drained, 90, "every CDR at the backend")
        except AssertionError as e:
            raise AssertionError("seed {} ({}): {}\ncommands: {}".format(
                seed, interpreter, e, "; ".join(log))) from None
    first = []
    for i in got:
        if i not in first:
            first.append(i)
    assert first == emitted, ("seed {}: the backend's first arrivals are not in the order "
                              "emitted\nemitted {}\ngot {}\ncommands: {}".format(
                                  seed, emitted, got, "; ".join(log)))
    charged = {e["session_id"] for e in sim.events if e.get("ev") == "session_end"
               and e.get("energy_kwh", 0) > 0}
    ids = {b["CPOPartnerSessionID"] for _, b in backend.durable if b.get("type") == "cdr"}
    assert charged <= ids, ("seed {}: charged sessions without a CDR at the backend: {}"
                            .format(seed, charged - ids))
    cuts = sum(1 for line in log if line == "power_cut")
    print("powercut+uplink {}: seed {}, {} cuts, {} CDRs emitted, {} received ({} "
          "redelivered)".format(interpreter, seed, cuts, len(emitted), len(got),
                                len(got) - len(first)))
    assert cuts >= CUTS and emitted
    assert all(json.loads(m.payload) for m in client.received(C.up_topic(CP, C.UP_CDR)))
