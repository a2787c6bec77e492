"""End to end, issue 13: a scripted day at one charge point with two EVSEs, on both interpreters,
against Mosquitto (TLS, per-device passwords, the shipped ACL), the Hubject simulator and the
bridge (mutual TLS both ways, the example site file, the operator's CDR store): host_sim.chain.

Every session ends in exactly one valid CDR where it belongs -- at Hubject for a Hubject
session, with Hubject's (or the RemoteStart's) SessionID; in the operator's own store for a
local-list customer -- with ConsumedEnergy = MeterValueEnd - MeterValueStart, and Hubject's
sessions get their notifications Start ... End in order. The sessions: a local-list start, a
Hubject start stopped by another token of AuthorizationStopIdentifications, a remote start
stopped by unplugging, and a Hubject session cut by a power cut mid-charge.
"""

import json

import pytest

from host_sim.chain import Chain
from tests import brokers, oicp_spec

pytestmark = pytest.mark.slow

EVSE1 = "DE*SIM*E0001*1"
EVSE2 = "DE*SIM*E0001*2"
LOCAL = "04AA00000000E1"  # the operator's own customer: on the local list
ROAMING = "04A1B2C3D4E5F6"  # an EMP's card; its contract's second card may stop its sessions
SECOND = "04A1B2C3D4E5F7"
TOKEN = "04C0FFEE112233"  # the app user's RFID token (remote start)
CUT = "04BB00000000C7"  # charges when the power goes
PROVIDER = "DE-ABC"
CARDS = {ROAMING: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER,
                   "stop_ids": [ROAMING, SECOND]},
         SECOND: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER},
         TOKEN: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER},
         CUT: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER}}
USERS = {"bridge": "bridge-secret", "SIM01": "sim01-secret"}


def _charge(chain, n, seconds=2.5):
    sim = chain.sim
    start = len(sim.events)
    sim.command_line("ev {} charge".format(n))
    chain.until(chain.event("contactor", start, evse=n, closed=True), 20, "closed")
    sim.command_line("wait {}".format(seconds))


def _tap(chain, uid):
    chain.sim.command_line("tap " + uid)
    chain.sim.command_line("wait 0.5")
    chain.sim.command_line("remove")
    chain.sim.command_line("wait 2.5")  # the reader sees the card gone: the next tap is new


def _store(chain):
    try:
        with open(chain.cdr_store) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_a_day_every_session_one_cdr_where_it_belongs(tmp_path, interpreter):
    with brokers.mosquitto(tmp_path, tls=True, users=USERS) as broker, \
            Chain(tmp_path / "chain", interpreter=interpreter, evses=2, cards=CARDS,
                  broker=broker, broker_users=USERS, local_cards=[LOCAL],
                  sim_config={"connection_timeout_s": 120}) as chain:
        sim = chain.sim
        ended = {}

        def session_end(n, start):
            e = chain.until(chain.event("session_end", start, evse=n), 30, "session end")
            ended[e["session_id"]] = e
            return e

        # 1. the operator's own customer: local list, no Hubject involved
        start = len(sim.events)
        sim.command_line("plug 1")
        _tap(chain, LOCAL)
        _charge(chain, 1)
        _tap(chain, LOCAL)
        local = session_end(1, start)
        sim.command_line("ev 1 unplug")

        # 2. a Hubject session stopped by the contract's other card (AuthorizationStopIds)
        start = len(sim.events)
        sim.command_line("wait 1")
        sim.command_line("plug 1")
        _tap(chain, ROAMING)
        _charge(chain, 1)
        _tap(chain, SECOND)
        roaming = session_end(1, start)
        assert roaming["reason"] == "Local"
        sim.command_line("ev 1 unplug")

        # 3. an app's remote start, stopped by unplugging
        start = len(sim.events)
        for _ in range(5):  # an EMP retries a 501: on two loaded cores the link may be
            ack = chain.remote_start(EVSE2, TOKEN, provider=PROVIDER)  # reconnecting
            if ((ack.get("body") or {}).get("StatusCode") or {}).get("Code") != "501":
                break
            sim.command_line("wait 3")
        assert ((ack.get("body") or {}).get("StatusCode") or {}).get("Code") == "000", ack
        sim.command_line("plug 2")
        _charge(chain, 2)
        sim.command_line("ev 2 unplug")
        remote = session_end(2, start)
        assert remote["session_id"] == ack["SessionID"] and remote["reason"] == "EVDisconnected"

        # 4. a Hubject session when the power goes mid-charge: closed at the next boot
        start = len(sim.events)
        sim.command_line("wait 1")
        sim.command_line("plug 1")
        _tap(chain, CUT)
        _charge(chain, 1, 1.5)
        sim.command_line("power_cut 1")
        cut = session_end(1, start)
        assert cut["reason"] == "PowerLoss"

        hubject_sids = {roaming["session_id"], remote["session_id"], cut["session_id"]}

        def delivered():
            calls = chain.oicp_calls()
            cdrs = [c for c in calls if c["operation"] == "ChargeDetailRecord"
                    and (c.get("response") or {}).get("Result") is True]
            got = {c["body"]["SessionID"] for c in cdrs}
            return (calls, cdrs) if got >= hubject_sids and _store(chain) else None

        calls, cdrs = chain.until(delivered, 90, "every CDR at its place")
        # exactly once at Hubject, with its SessionID; none for the local customer
        sids = [c["body"]["SessionID"] for c in cdrs]
        assert sorted(sids) == sorted(hubject_sids), sids
        assert local["session_id"] not in sids
        for c in cdrs:
            body = c["body"]
            energy = round(body["MeterValueEnd"] - body["MeterValueStart"], 3)
            assert abs(body["ConsumedEnergy"] - energy) <= 0.001, body
            assert body["ConsumedEnergy"] > 0
            assert not c.get("problems"), c
        # the operator's store: the local session once
        store = [r["record"] for r in _store(chain)]  # {"id", "cp_id", "stored_at", "record"}
        assert [r.get("SessionID") for r in store].count(local["session_id"]) == 1, store
        assert not hubject_sids & {r.get("SessionID") for r in store}
        rec = store[0]
        assert abs(rec["ConsumedEnergy"] - (rec["MeterValueEnd"] - rec["MeterValueStart"])) \
            <= 0.001 and rec["ConsumedEnergy"] > 0
        # notifications Start ... End in order, per Hubject session
        for sid in (roaming["session_id"], remote["session_id"]):
            kinds = [c["body"]["Type"] for c in calls if c["operation"]
                     == "ChargingNotifications" and c["body"].get("SessionID") == sid]
            assert kinds[:1] == ["Start"] and kinds[-1:] == ["End"], (sid, kinds)
        # EVSE data before any status (Hubject refuses a status of an unknown EVSE)
        ops = [c["operation"] for c in calls if c["operation"].startswith("PushEvse")]
        assert ops and ops[0] == "PushEvseData", ops
        assert all(not c.get("problems") for c in calls), [c for c in calls
                                                           if c.get("problems")]
        oicp_spec.require_spec()
        for c in calls:
            if c["operation"] in ("ChargeDetailRecord", "ChargingNotifications",
                                  "PushEvseStatus", "PushEvseData", "AuthorizeStart"):
                oicp_spec.assert_valid(c["operation"], c["body"])
        # and the charge point's outbox drained: everything acknowledged
        chain.until(lambda: [e for e in sim.events if e["ev"] == "outbox"
                               and e.get("depth") == 0 and e["t"] > cut["t"]], 60,
               "the outbox drained")
