"""The whole uplink on the wire: the simulated charge point (real firmware process, both
interpreters) against a real broker (Mosquitto with the shipped ACL and a password per device,
and the embedded amqtt), with an independent paho-mqtt client as the backend (issue 11).

The backend answers authorize requests and acknowledges durable messages by id the way the
bridge will. A full session must show on the wire: availability and the retained birth with
the EvseIDs, the authorize request, Start/End notifications, EVSE statuses (retained), one CDR
with the backend's SessionID; after the acks the outbox is empty. Then the charge point's
network is cut for a whole session and restored: every durable message arrives, in order.
Bounded everywhere: each wait has a deadline; brokers and processes are started and stopped by
the test on loopback.
"""

import json
import time

import pytest

from firmware import contract as C
from host_sim.runner import Simulation
from tests import brokers

pytestmark = pytest.mark.slow

CP = "SIM01"
CARD = "04D5E6F7"  # not on the local list: only the backend can say yes
SID = "b3c2a1d0-1111-4222-8333-444455556666"
USERS = {"bridge": "bridge-secret", CP: "sim01-secret"}


class Backend:
    """The bridge's stand-in: answers authorize requests, acknowledges durable messages."""

    def __init__(self, client, authorize=True):
        self.c = client
        self.seen = 0
        self.authorize = authorize
        self.durable = []  # (topic, body) in arrival order
        self.requests = []

    def serve(self):
        msgs = self.c.messages
        while self.seen < len(msgs):
            m = msgs[self.seen]
            self.seen += 1
            if not m.topic.startswith(C.tree(CP) + "/"):
                continue
            if m.topic in (C.availability_topic(CP), C.birth_topic(CP)):
                continue
            body = json.loads(m.payload)
            if m.topic == C.up_topic(CP, C.UP_AUTHORIZE):
                self.requests.append(body)
                answer = {"id": body["id"], "StatusCode": {"Code": "000"}}
                if self.authorize:
                    answer.update(AuthorizationStatus="Authorized", SessionID=SID,
                                  ProviderID="DE-8EO")
                else:
                    answer["AuthorizationStatus"] = "NotAuthorized"
                self.c.publish(C.down_topic(CP, C.DOWN_AUTHORIZE), json.dumps(answer))
            elif m.topic == C.up_topic(CP, C.UP_REPLY):
                continue
            elif "id" in body:
                self.durable.append((m.topic, body))
                self.c.publish(C.down_topic(CP, C.DOWN_ACK), json.dumps({"ids": [body["id"]]}))


def _until(sim, backend, cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backend.serve()
        got = cond()
        if got:
            return got
        if sim.fatal is not None:
            raise AssertionError("the firmware died: {}".format(sim.fatal))
        sim.pump(0.02)
    raise AssertionError("{}: not within {} s; last events: {}".format(
        what, timeout, json.dumps(sim.events[-15:])))


def _event(sim, ev, start=0, **fields):
    def find():
        for e in sim.events[start:]:
            if e.get("ev") == ev and all(e.get(k) == v for k, v in fields.items()):
                return e
        return None
    return find


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request, tmp_path):
    if request.param == "mosquitto":
        with brokers.mosquitto(tmp_path, users=USERS) as b:
            yield b
    else:
        with brokers.amqtt_broker(tmp_path, users=USERS) as b:
            yield b


def _session(sim, backend):
    start = len(sim.events)
    sim.command_line("plug 1")
    sim.command_line("tap " + CARD)
    _until(sim, backend, _event(sim, "session_start", start, evse=1), 10, "session_start")
    sim.command_line("remove")
    sim.command_line("ev 1 charge")
    _until(sim, backend, _event(sim, "contactor", start, evse=1, closed=True), 10, "close")
    sim.command_line("wait 2.5")
    sim.command_line("tap " + CARD)
    _until(sim, backend, _event(sim, "cdr", start), 10, "the CDR")
    sim.command_line("remove")
    sim.command_line("ev 1 unplug")


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_a_session_on_the_wire_with_an_independent_backend(broker, interpreter):
    with brokers.MqttClient(broker, "bridge", USERS["bridge"]) as client:
        assert client.subscribe("mpevse/+/#") == 1
        backend = Backend(client)
        with Simulation(interpreter=interpreter, broker=broker.url, cp_id=CP,
                        broker_user=CP, broker_password=USERS[CP]) as sim:
            _until(sim, backend, _event(sim, "uplink", connected=True), 20, "connected")
            birth = client.wait_for(C.birth_topic(CP))
            assert json.loads(birth.payload)["EvseIDs"] == ["DE*SIM*E0001*1"]
            assert client.wait_for(C.availability_topic(CP)).payload == b"online"
            _session(sim, backend)
            req = backend.requests[0]
            assert req["type"] == "authorize_start" and req["EvseID"] == "DE*SIM*E0001*1"
            assert req["Identification"]["RFIDMifareFamilyIdentification"]["UID"] == CARD
            assert 0 < req["ttl_ms"] <= 10000
            _until(sim, backend, lambda: [e for e in sim.events if e.get("ev") == "outbox"
                                          and e.get("depth") == 0
                                          and e["t"] > sim.events[-1]["t"] - 60]
                   and any(b.get("type") == "cdr" for _, b in backend.durable), 15,
                   "every durable message acknowledged")
            cdrs = [b for t, b in backend.durable if t == C.up_topic(CP, C.UP_CDR)]
            assert len(cdrs) == 1 and cdrs[0]["SessionID"] == SID
            assert cdrs[0]["id"] == "cdr-" + cdrs[0]["CPOPartnerSessionID"]
            kinds = [b.get("Type") for t, b in backend.durable
                     if t == C.up_topic(CP, C.UP_NOTIFICATION)]
            assert kinds[0] == "Start" and kinds[-1] == "End"
            statuses = [b["EvseStatus"] for t, b in backend.durable if "/status/" in t]
            assert "Occupied" in statuses
        # the availability went offline with the firmware (last will or its own message)
        last = client.received(C.availability_topic(CP))[-1]
        assert last.payload in (b"online", b"offline")


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_network_down_for_a_whole_session_then_everything_arrives_in_order(tmp_path,
                                                                          interpreter):
    with brokers.mosquitto(tmp_path, users=USERS) as broker, \
            brokers.MqttClient(broker, "bridge", USERS["bridge"]) as client:
        client.subscribe("mpevse/+/#")
        backend = Backend(client)
        with Simulation(interpreter=interpreter, broker=broker.url, cp_id=CP,
                        broker_user=CP, broker_password=USERS[CP],
                        local_cards=[CARD]) as sim:
            _until(sim, backend, _event(sim, "uplink", connected=True), 20, "connected")
            sim.command_line("broker down")
            _until(sim, backend, _event(sim, "uplink", connected=False), 20, "disconnected")
            _session(sim, backend)  # a local card: charges offline
            emitted = [e["record"]["id"] for e in sim.events if e.get("ev") == "cdr"]
            assert len(emitted) == 1 and not [b for _, b in backend.durable
                                              if b.get("type") == "cdr"]
            mark = len(sim.events)
            sim.command_line("broker up")
            _until(sim, backend, _event(sim, "uplink", mark, connected=True), 60,
                   "reconnected")
            _until(sim, backend, _event(sim, "outbox", mark, depth=0), 30, "outbox drained")
            cdrs = [b for _, b in backend.durable if b.get("type") == "cdr"]
            assert [c["id"] for c in cdrs] == emitted
            notes = [b["Type"] for _, b in backend.durable if b.get("type") == "notification"]
            assert notes.index("Start") < notes.index("End")
