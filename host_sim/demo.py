"""`make demo`: the whole chain on one machine, narrated.

An embedded MQTT broker (amqtt), the Hubject simulator (HTTPS, mutual TLS), the OICP bridge and a
simulated charge point with two EVSEs on MicroPython (host_sim.chain). The script:

1. an RFID card is authorized by Hubject (eRoamingAuthorizeStart) -> charging -> the same card
   stops the session (the CDR's energy is shown);
2. an unknown card is refused with 102;
3. an e-mobility provider's app starts a session remotely (eRoamingAuthorizeRemoteStart) ->
   the driver plugs in -> charging -> the app stops it (eRoamingAuthorizeRemoteStop);
4. a second remote start on the occupied EVSE is answered 602;
5. both sessions' charge detail records reach Hubject, once each (with the notifications and
   the EVSE data and status pushes the bridge makes on the way).

Each step prints a narration line, the charge point's key events and the OICP calls Hubject's
side saw, as they happen. The exit status is 0 only if every step saw what it expected; the
last lines say where the bridge's log of OICP calls (one JSON line per call) is kept.
"""

import json
import os
import sys
import tempfile
import time

from host_sim import scenario
from host_sim.chain import Chain, ChainError
from host_sim.runner import RunnerError

EVSE1 = "DE*SIM*E0001*1"
EVSE2 = "DE*SIM*E0001*2"
ROAMING = "04A1B2C3D4E5F6"  # a card of the EMP DE-ABC, known to Hubject
STRANGER = "DEADBEEF"  # known to nobody: Hubject answers 102
APP_TOKEN = "04C0FFEE112233"  # the RFID token of the app user's contract
PROVIDER = "DE-ABC"
CARDS = {ROAMING: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER},
         APP_TOKEN: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER}}
KEY_EVENTS = ("auth", "session_start", "contactor", "session_end", "cdr", "error", "uplink")


class DemoFailed(Exception):
    pass


class Narrator:
    def __init__(self, chain, out):
        self.chain = chain
        self.out = out
        self.seen_events = 0
        self.seen_calls = 0

    def say(self, text):
        self.out.write(text + "\n")
        self.out.flush()

    def show(self):
        """Print the charge point events and the OICP calls since the last show."""
        sim = self.chain.sim
        for e in sim.events[self.seen_events:]:
            if e["ev"] in KEY_EVENTS:
                self.say("    cp  [{:7.3f}] {}".format(e["t"], _describe(e)))
        self.seen_events = len(sim.events)
        calls = self.chain.oicp_calls(self.seen_calls)
        for c in calls:
            self.say("    hub {}".format(_call(c)))
            self.seen_calls = max(self.seen_calls, c["seq"])  # since=N: seq > N
        return calls

    def steps(self, text):
        """Run console commands and expectations (host_sim.scenario syntax)."""
        evses = "set evses {}\n".format(self.chain.evses)  # commands are checked against it
        _, parsed = scenario.parse_scenario(evses + text)
        try:
            scenario.run_steps(self.chain.sim, parsed)
        finally:
            self.show()

    def expect(self, ok, what):
        if not ok:
            raise DemoFailed(what)


def _describe(e):
    if e["ev"] == "cdr":
        rec = e.get("record", {})
        return "cdr: SessionID {} energy {} kWh".format(rec.get("SessionID"),
                                                        rec.get("ConsumedEnergy"))
    fields = {k: v for k, v in e.items() if k not in ("t", "ev")}
    return "{}: {}".format(e["ev"], json.dumps(fields, sort_keys=True))


def _call(c):
    resp = c.get("response") or {}
    status = resp.get("AuthorizationStatus") or resp.get("Result")
    code = (resp.get("StatusCode") or {}).get("Code")
    body = c.get("body") or {}
    op = c.get("operation")
    what = body.get("EvseID", "")
    if op == "ChargingNotifications":
        what += " " + str(body.get("Type"))
    elif op == "ChargeDetailRecord":
        what += " {} kWh".format(body.get("ConsumedEnergy"))
    elif op in ("PushEvseData", "PushEvseStatus"):
        records = body.get("OperatorEvseData") or body.get("OperatorEvseStatus") or {}
        n = len(records.get("EvseDataRecord") or records.get("EvseStatusRecord") or ())
        what = "{} {} EVSE(s)".format(body.get("ActionType"), n)
    sid = resp.get("SessionID") or body.get("SessionID")
    return "{} {} -> HTTP {} {} {}{}".format(op, what, c.get("http_status"), status, code,
                                            " SessionID " + sid if sid else "")


def _ack_code(result):
    body = result.get("body") or {}
    return (body.get("StatusCode") or {}).get("Code")


def script(n):
    c = n.chain
    n.say("\n* An EV is plugged into EVSE 1; its driver taps a roaming card. The bridge asks "
          "Hubject (eRoamingAuthorizeStart): Authorized.")
    n.steps("plug 1\ntap {}\nexpect auth 1 accepted within 5\nexpect session_start 1\n"
            "remove".format(ROAMING))
    starts = [x for x in c.oicp_calls() if x.get("operation") == "AuthorizeStart"]
    n.expect(starts and (starts[-1].get("response") or {}).get("AuthorizationStatus")
             == "Authorized", "Hubject saw no authorized AuthorizeStart")
    n.say("\n* The EV asks for charge (state C): the contactor closes; 4 s of charging.")
    n.steps("ev 1 charge\nexpect contactor 1 closed within 3\nwait 4")
    n.say("\n* The same card stops the session; the CDR carries Hubject's SessionID.")
    n.steps("tap {}\nexpect contactor 1 open within 3\nexpect session_end 1 within 3\n"
            "expect cdr ConsumedEnergy > 0 within 3\nremove".format(ROAMING))

    n.say("\n* A stranger taps an unknown card at EVSE 1: Hubject answers 102, refused.")
    n.steps("tap {}\nexpect auth 1 result != accepted within 5\n"
            "expect no session_start within 1\nremove".format(STRANGER))
    refused = [e for e in c.sim.events if e["ev"] == "auth" and e.get("uid") == STRANGER]
    n.expect(refused and refused[-1].get("code") == "102",
             "the unknown card was not refused with 102: {}".format(refused))

    n.say("\n* An app starts a session on EVSE 2 (eRoamingAuthorizeRemoteStart).")
    r = c.remote_start(EVSE2, APP_TOKEN, provider=PROVIDER)
    n.show()
    n.say("    acknowledgement: {} in {} ms".format(_ack_code(r), r.get("latency_ms")))
    n.expect(_ack_code(r) == "000", "remote start not accepted: {}".format(r))
    sid = r["SessionID"]
    n.expect([e for e in c.sim.events if e["ev"] == "session_start" and e.get("evse") == 2
              and e.get("session_id") == sid], "no session on EVSE 2 for " + str(sid))
    n.say("\n* The driver plugs in at EVSE 2: the pilot offers current; the EV charges for 3 s.")
    n.steps("plug 2\nexpect pwm 2 within 5\nev 2 charge\n"
            "expect contactor 2 closed within 3\nwait 3")

    n.say("\n* Another app user tries the occupied EVSE 2: answered 602.")
    r2 = c.remote_start(EVSE2, ROAMING, provider=PROVIDER)
    n.show()
    n.say("    acknowledgement: {}".format(_ack_code(r2)))
    n.expect(_ack_code(r2) == "602", "remote start on an occupied EVSE: {}".format(r2))

    n.say("\n* The app stops the session (eRoamingAuthorizeRemoteStop).")
    first = len(c.sim.events)
    r3 = c.remote_stop(EVSE2, sid, provider=PROVIDER)
    c.wait_event(lambda e: e["ev"] == "cdr", 5.0, start=first)
    n.show()
    n.say("    acknowledgement: {}".format(_ack_code(r3)))
    n.expect(_ack_code(r3) == "000", "remote stop not accepted: {}".format(r3))
    ends = [e for e in c.sim.events if e["ev"] == "session_end" and e.get("evse") == 2
            and e.get("session_id") == sid]
    n.expect(ends and ends[-1]["reason"] == "Remote" and ends[-1]["energy_kwh"] > 0,
             "the remote stop did not end the charging session: {}".format(ends))

    n.say("\n* The charge detail records reach Hubject through the bridge, once each.")
    deadline = time.monotonic() + 15
    cdrs = []
    while time.monotonic() < deadline:
        cdrs = [x for x in c.oicp_calls() if x.get("operation") == "ChargeDetailRecord"
                and (x.get("response") or {}).get("Result") is True]
        if len({x["body"]["SessionID"] for x in cdrs}) >= 2:
            break
        c.sim.pump(0.2)
    n.show()
    sids = [x["body"]["SessionID"] for x in cdrs]
    n.expect(sid in sids and len(sids) == len(set(sids)) == 2,
             "the CDRs at Hubject: {}".format(sids))


def run(interpreter="micropython", out=sys.stdout, workdir=None):
    """Play the script; returns 0 if every step went as expected."""
    workdir = workdir or tempfile.mkdtemp(prefix="mpevse-demo-")
    out.write("mpevse demo: broker (amqtt), Hubject simulator, OICP bridge and a charge point "
              "with two EVSEs (firmware on {}); files in {}\n".format(interpreter, workdir))
    out.flush()
    code = 1
    try:
        with Chain(workdir, interpreter=interpreter, evses=2, cards=CARDS) as chain:
            n = Narrator(chain, out)
            n.say("  all running; the charge point is connected to the broker")
            try:
                script(n)
                code = 0
            except (DemoFailed, scenario.ScenarioFailed) as e:
                n.say("\nDEMO FAILED:\n{}".format(e))
    except (ChainError, RunnerError) as e:
        out.write("\nDEMO COULD NOT RUN: {}\n".format(e))
    log = os.path.join(workdir, "bridge.log")
    if code == 0:
        out.write("\nDemo complete: Hubject authorized a card, refused another (102), an app "
                  "started and stopped a session, a second start was answered 602, and both "
                  "CDRs reached Hubject once.\n")
    out.write("The bridge's log of OICP calls (one JSON line per call): {}\n".format(log))
    out.flush()
    return code


def main(interpreter="micropython"):
    return run(interpreter)


if __name__ == "__main__":
    sys.exit(main())
