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

import contextlib
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
            if m.topic in (C.availability_topic(CP), C.birth_topic(CP)) \
                    or m.topic.startswith(C.tree(CP) + "/down/"):  # our own commands
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


@contextlib.contextmanager
def charge_point(tmp_path, interpreter, **sim_options):
    """Mosquitto (shipped ACL, a password per device), a backend on its own client that
    subscribes to every charge point, and the simulated charge point connected to both;
    yields (client, backend, sim) once the charge point said it is connected."""
    with brokers.mosquitto(tmp_path, users=USERS) as broker, \
            brokers.MqttClient(broker, "bridge", USERS["bridge"]) as client:
        client.subscribe("mpevse/+/#")
        backend = Backend(client)
        with Simulation(interpreter=interpreter, broker=broker.url, cp_id=CP,
                        broker_user=CP, broker_password=USERS[CP], **sim_options) as sim:
            _until(sim, backend, _event(sim, "uplink", connected=True), 20, "connected")
            yield client, backend, sim


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
            health = client.wait_for(C.health_topic(CP))  # retained, the ACL lets it through
            assert json.loads(health.payload)["outbox"] >= 0
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
    with charge_point(tmp_path, interpreter, local_cards=[CARD]) as (client, backend, sim):
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


SID2 = "c3c2a1d0-1111-4222-8333-444455556666"
EVCO = {"RemoteIdentification": {"EvcoID": "DE-8EO-C12345678-X"}}


def _reply(client, start, rid):
    for m in client.messages[start:]:
        if m.topic == C.up_topic(CP, C.UP_REPLY) and json.loads(m.payload).get("id") == rid:
            return json.loads(m.payload)
    return None


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_remote_start_and_stop_and_bad_commands_over_the_wire(tmp_path, interpreter):
    with charge_point(tmp_path, interpreter) as (client, backend, sim):
        down = C.down_topic
        n = len(client.messages)
        client.publish(down(CP, C.DOWN_REMOTE_START), b"{not json")
        bad = _until(sim, backend, lambda: [json.loads(m.payload) for m in
                                            client.messages[n:]
                                            if m.topic == C.up_topic(CP, C.UP_REPLY)],
                     10, "an error reply")[0]
        assert bad["Result"] is False and bad["StatusCode"]["Code"] == "022"
        client.publish(down(CP, "fly"), json.dumps({"id": "x1"}))
        _until(sim, backend, lambda: _reply(client, n, "x1"), 10, "unknown kind refused")
        sim.command_line("plug 1")
        n = len(client.messages)
        client.publish(down(CP, C.DOWN_REMOTE_START), json.dumps(
            {"id": "r1", "SessionID": SID2, "Identification": EVCO,
             "EvseID": "DE*SIM*E0001*9"}))  # an EVSE this charge point does not have
        r = _until(sim, backend, lambda: _reply(client, n, "r1"), 10, "reply r1")
        assert r["Result"] is False and r["StatusCode"]["Code"] == "603"
        client.publish(down(CP, C.DOWN_REMOTE_START), json.dumps(
            {"id": "r2", "SessionID": SID2, "Identification": EVCO,
             "EvseID": "DE*SIM*E0001*1"}))
        r = _until(sim, backend, lambda: _reply(client, n, "r2"), 10, "reply r2")
        assert r["Result"] is True and r["StatusCode"]["Code"] == "000"
        sim.command_line("ev 1 charge")
        _until(sim, backend, _event(sim, "contactor", evse=1, closed=True), 10, "close")
        sim.command_line("wait 1")
        client.publish(down(CP, C.DOWN_REMOTE_STOP), json.dumps(
            {"id": "r3", "SessionID": SID2}))
        r = _until(sim, backend, lambda: _reply(client, n, "r3"), 10, "reply r3")
        assert r["Result"] is True
        _until(sim, backend, _event(sim, "session_end", evse=1, reason="Remote"), 10,
               "session end")
        cdr = _until(sim, backend, lambda: [b for _, b in backend.durable
                                            if b.get("type") == "cdr"], 15, "cdr")[0]
        assert cdr["SessionID"] == SID2
        client.publish(down(CP, C.DOWN_REMOTE_STOP), json.dumps(
            {"id": "r4", "SessionID": SID2}))  # after the CDR: 400 Session is invalid
        r = _until(sim, backend, lambda: _reply(client, n, "r4"), 10, "reply r4")
        assert r["Result"] is False and r["StatusCode"]["Code"] == "400"


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_a_board_clock_at_the_epoch_waits_for_the_backends_time(tmp_path, interpreter,
                                                                  monkeypatch):
    monkeypatch.setenv("MPEVSE_RTC_FROM_EPOCH", "1")  # the simulated RTC restarted at 1970
    with brokers.mosquitto(tmp_path, users=USERS) as broker, \
            brokers.MqttClient(broker, "bridge", USERS["bridge"]) as client:
        client.subscribe("mpevse/+/#")
        backend = Backend(client)
        with Simulation(interpreter=interpreter, broker=broker.url, cp_id=CP,
                        broker_user=CP, broker_password=USERS[CP],
                        local_cards=[CARD]) as sim:
            assert [e for e in sim.events if e.get("ev") == "error"
                    and e.get("kind") == "clock"]
            _until(sim, backend, _event(sim, "uplink", connected=True), 20, "connected")
            client.wait_for(C.birth_topic(CP))
            now = int(time.time())
            client.publish(C.down_topic(CP, C.DOWN_TIME), json.dumps({"time": now}))
            _session(sim, backend)
            cdr = [e["record"] for e in sim.events if e.get("ev") == "cdr"][0]
            year = time.strftime("%Y", time.gmtime(now))
            assert cdr["SessionStart"].startswith(year) and cdr["SessionEnd"].startswith(year)


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_refused_credentials_are_said_and_backed_off_while_charging_goes_on(tmp_path,
                                                                           interpreter):
    with brokers.mosquitto(tmp_path, users=USERS) as broker:
        with Simulation(interpreter=interpreter, broker=broker.url, cp_id=CP,
                        broker_user=CP, broker_password="wrong",
                        local_cards=["04A1B2C3"]) as sim:
            class Nobody:
                def serve(self):
                    pass
            nobody = Nobody()
            down = _until(sim, nobody, _event(sim, "uplink", connected=False), 20,
                          "refused")
            assert "refused" in down.get("reason", ""), down
            start = len(sim.events)
            sim.command_line("plug 1")
            sim.command_line("tap 04A1B2C3")
            _until(sim, nobody, _event(sim, "session_start", start, evse=1), 10,
                   "a local card still charges")
            sim.command_line("wait 3")
            tries = [e for e in sim.events if e.get("ev") == "uplink"]
            assert not any(e.get("connected") for e in tries)
            assert len(tries) <= 4  # back-off (1 s doubling), not a tight loop
            assert sim.fatal is None
