"""`make demo`: a narrated charging session on the simulated charge point.

A driver with a card on the local list plugs in and taps, a stranger's card is refused, the EV
charges for a few seconds, the driver taps again to stop, and the charge detail record reports
the energy. Each step prints a narration line and the key events it caused; the exit status is 0
only if every step saw what it expected (the same expectation engine as the scenario files).
"""

import json
import sys

from host_sim import scenario
from host_sim.runner import RunnerError, Simulation

CARD = "04A1B2C3"
STRANGER = "DEADBEEF"
KEY_EVENTS = ("auth", "session_start", "contactor", "session_end", "cdr", "error", "state")

# (narration, console lines, expectations)
SCRIPT = (
    ("The driver plugs the EV in.", ["plug 1"], ["expect state 1 plugged"]),
    ("A stranger taps an unknown card: it is refused.", ["tap " + STRANGER],
     ["expect auth 1 result != accepted", "expect no session_start within 1"]),
    ("The stranger takes the card away.", ["remove"], []),
    ("The driver taps a card from the local list: accepted, a session starts.",
     ["tap " + CARD], ["expect auth 1 accepted", "expect session_start 1"]),
    ("The EV asks for charge (state C): the contactor closes.",
     ["remove", "ev 1 charge"], ["expect contactor 1 closed within 3"]),
    ("Charging for 4 seconds ...", ["wait 4"], []),
    ("The driver taps again to stop: the contactor opens, the session ends.",
     ["tap " + CARD],
     ["expect contactor 1 open within 1", "expect session_end 1 reason Local",
      "expect cdr ConsumedEnergy > 0"]),
)


def _describe(event):
    ev = event["ev"]
    if ev == "cdr":
        rec = event.get("record", {})
        return "cdr: session {} energy {} kWh ({} .. {})".format(
            event.get("session_id"), rec.get("ConsumedEnergy"), rec.get("SessionStart"),
            rec.get("SessionEnd"))
    fields = {k: v for k, v in event.items() if k not in ("t", "ev")}
    return "{}: {}".format(ev, json.dumps(fields, sort_keys=True))


def run(interpreter="cpython", out=sys.stdout):
    """Play the script; returns 0 if every step went as expected."""
    def say(text):
        out.write(text + "\n")
        out.flush()

    say("mpevse demo: one simulated charge point, firmware on {}".format(interpreter))
    try:
        with Simulation(interpreter=interpreter, local_cards=[CARD],
                        config={"connection_timeout_s": 30}) as sim:
            boot = next(e for e in sim.events if e["ev"] == "ready")
            say("  firmware ready after {} ms".format(boot.get("boot_ms")))
            for narration, commands, expectations in SCRIPT:
                say("\n* " + narration)
                text = "\n".join(commands + expectations)
                _, steps = scenario.parse_scenario(text)
                first = len(sim.events)
                try:
                    scenario.run_steps(sim, steps)
                finally:
                    for e in sim.events[first:]:
                        if e["ev"] in KEY_EVENTS:
                            say("    [{:7.3f}] {}".format(e["t"], _describe(e)))
            cdr = [e for e in sim.events if e["ev"] == "cdr"]
    except scenario.ScenarioFailed as e:
        say("\nDEMO FAILED:\n{}".format(e))
        return 1
    except RunnerError as e:
        say("\nDEMO COULD NOT RUN: {}".format(e))
        return 1
    say("\nDemo complete: accepted, refused, charged, stopped; the CDR reports {} kWh."
        .format(cdr[-1]["record"].get("ConsumedEnergy")))
    return 0


def main(interpreter="cpython"):
    return run(interpreter)


if __name__ == "__main__":
    sys.exit(main())
