"""The broker infrastructure (tests/brokers.py) and the shipped ACL (tools/mosquitto/acl).

Real brokers on loopback, one per test, with paho-mqtt clients: a backend (`bridge`) and two
charge points (`CP-A`, `CP-B`, user name = cp_id). Every wait is bounded. "X never arrives" is
shown without sleeping: after the forbidden message the same sender publishes a sentinel that
the same receiver may get; the broker keeps one sender's messages in order, so once the sentinel
is there, the forbidden message would have been there before it.

Mosquitto is configured from tools/mosquitto (ACL checked on publish and on every delivery).
amqtt gets the same ACL expanded per user, which it enforces on PUBLISH and SUBSCRIBE (a foreign
subscription is refused with 0x80) but not on delivery; it speaks MQTT 3.1.1 only, so the MQTT 5
"not authorized" PUBACK is Mosquitto's alone.
"""

import ssl
import time

import pytest

from tests import brokers
from tests.brokers import BACKEND, CONNACK_ACCEPTED, CONNACK_NOT_AUTHORIZED, MqttClient

pytestmark = pytest.mark.slow

KINDS = ("mosquitto", "amqtt")


def _start(kind, tmp_path, **kw):
    if kind == "mosquitto":
        return brokers.mosquitto(tmp_path, **kw)
    return brokers.amqtt_broker(tmp_path, users=brokers.DEFAULT_USERS, acl=True, **kw)


@pytest.fixture(params=KINDS)
def broker(request, tmp_path):
    with _start(request.param, tmp_path) as b:
        yield b


@pytest.fixture(params=KINDS)
def tls_broker(request, tmp_path):
    with _start(request.param, tmp_path, tls=True) as b:
        yield b


def _sentinel(sender, receiver, topic):
    """`sender` publishes `topic`; wait until `receiver` has it. Returns what `receiver` had
    received before it (everything the broker delivered to it earlier)."""
    payload = b"sentinel %f" % time.monotonic()
    assert sender.publish(topic, payload) == 0
    msg = receiver.wait_for(topic)
    assert msg.payload == payload
    return receiver.messages[: receiver.messages.index(msg)]


# -- what a charge point may do ------------------------------------------------------------
def test_charge_point_publishes_its_uplink_and_receives_its_downlink(broker):
    with MqttClient(broker, BACKEND) as backend, MqttClient(broker, "CP-A") as cp:
        assert backend.subscribe("mpevse/+/#") == 1
        assert cp.subscribe("mpevse/CP-A/down/#") == 1
        uplink = [
            ("mpevse/CP-A/up/authorize", b'{"type":"authorize_start","id":"a1"}', False),
            ("mpevse/CP-A/up/cdr", b'{"type":"cdr","id":"cdr-1"}', False),
            ("mpevse/CP-A/status/1", b'{"type":"evse_status","id":"s1"}', True),
            ("mpevse/CP-A/birth", b'{"cp_id":"CP-A"}', True),
            ("mpevse/CP-A/availability", b"online", True),
        ]
        for topic, payload, retain in uplink:
            assert cp.publish(topic, payload, retain=retain) == 0
        for topic, payload, _retain in uplink:
            assert backend.wait_for(topic).payload == payload
        assert [m.topic for m in backend.received()] == [t for t, _, _ in uplink]

        assert backend.publish("mpevse/CP-A/down/remote_start", b'{"id":"r1"}') == 0
        got = cp.wait_for("mpevse/CP-A/down/remote_start")
        assert got.payload == b'{"id":"r1"}' and got.qos == 1


def test_charge_point_cannot_publish_into_another_tree(broker):
    with MqttClient(broker, BACKEND) as backend, MqttClient(broker, "CP-A") as cp_a, \
            MqttClient(broker, "CP-B") as cp_b:
        assert backend.subscribe("mpevse/+/#") == 1
        assert cp_b.subscribe("mpevse/CP-B/down/#") == 1
        for topic in (
            "mpevse/CP-B/up/cdr",
            "mpevse/CP-B/birth",
            "mpevse/CP-B/availability",
            "mpevse/CP-B/status/1",
            "mpevse/CP-B/down/remote_stop",  # a forged command to another charge point
            "mpevse/CP-A",  # the tree's root and unlisted branches are not the charge point's
            "mpevse/CP-A/other",
            "elsewhere/CP-A",
        ):
            cp_a.publish(topic, b"forged")
        before = _sentinel(cp_a, backend, "mpevse/CP-A/up/sentinel")
        assert before == []
        assert _sentinel(backend, cp_b, "mpevse/CP-B/down/sentinel") == []


def test_mosquitto_tells_an_mqtt5_client_its_publish_was_not_authorized(tmp_path):
    with brokers.mosquitto(tmp_path) as b, MqttClient(b, "CP-A", mqtt5=True) as cp:
        assert cp.publish("mpevse/CP-B/up/cdr", b"forged") == 0x87
        assert cp.publish("mpevse/CP-A/down/reset", b"forged") == 0x87
        assert cp.publish("mpevse/CP-A/up/cdr", b"mine") == 0x10  # success, no matching subscribers


def test_charge_point_cannot_publish_into_its_own_downlink(broker):
    with MqttClient(broker, BACKEND) as backend, MqttClient(broker, "CP-A") as cp:
        assert cp.subscribe("mpevse/CP-A/down/#") == 1
        assert backend.subscribe("mpevse/+/#") == 1
        cp.publish("mpevse/CP-A/down/remote_start", b'{"id":"forged"}')
        cp.publish("mpevse/CP-A/down", b"forged")
        assert _sentinel(backend, cp, "mpevse/CP-A/down/sentinel") == []
        # the backend reads downlinks too: it saw its own sentinel and nothing forged
        before = _sentinel(cp, backend, "mpevse/CP-A/up/sentinel")
        assert [m.topic for m in before] == ["mpevse/CP-A/down/sentinel"]


def test_charge_point_receives_nothing_of_another_charge_point(broker):
    with MqttClient(broker, BACKEND) as backend, MqttClient(broker, "CP-A") as cp_a, \
            MqttClient(broker, "CP-B") as cp_b:
        # CP-B's retained messages exist before CP-A subscribes
        assert cp_b.publish("mpevse/CP-B/birth", b'{"cp_id":"CP-B"}', retain=True) == 0
        assert cp_b.publish("mpevse/CP-B/availability", b"online", retain=True) == 0
        assert cp_b.subscribe("mpevse/CP-B/down/#") == 1
        foreign = ("mpevse/CP-B/down/#", "mpevse/+/down/#", "mpevse/#", "#")
        granted = {f: cp_a.subscribe(f) for f in foreign}
        if broker.kind == "mosquitto":
            assert set(granted.values()) == {1}  # granted, but the ACL filters every delivery
        else:
            assert set(granted.values()) == {0x80}  # amqtt refuses the subscription itself
        assert cp_a.subscribe("mpevse/CP-A/down/#") == 1

        assert backend.publish("mpevse/CP-B/down/remote_start", b'{"id":"b1"}') == 0
        assert cp_b.publish("mpevse/CP-B/up/cdr", b'{"id":"cdr-b"}') == 0
        assert cp_b.wait_for("mpevse/CP-B/down/remote_start").payload == b'{"id":"b1"}'
        assert _sentinel(backend, cp_a, "mpevse/CP-A/down/sentinel") == []
        assert [m.topic for m in cp_a.received()] == ["mpevse/CP-A/down/sentinel"]


def test_backend_cannot_forge_a_charge_point_uplink(broker):
    with MqttClient(broker, BACKEND, client_id="bridge-1") as bridge, \
            MqttClient(broker, BACKEND, client_id="bridge-2") as watcher, \
            MqttClient(broker, "CP-A") as cp:
        assert watcher.subscribe("mpevse/+/#") == 1
        bridge.publish("mpevse/CP-A/up/cdr", b"forged")
        bridge.publish("mpevse/CP-A/availability", b"offline", retain=True)
        bridge.publish("elsewhere", b"forged")
        assert _sentinel(bridge, watcher, "mpevse/CP-A/down/sentinel") == []
        before = _sentinel(cp, watcher, "mpevse/CP-A/up/sentinel")
        assert [m.topic for m in before] == ["mpevse/CP-A/down/sentinel"]


# -- authentication ------------------------------------------------------------------------
def test_wrong_password_is_refused(broker):
    for user, password in (("CP-A", "wrong"), ("CP-A", brokers.DEFAULT_USERS["CP-B"]),
                           ("CP-C", "secret-a"), (None, None)):
        sock, code = brokers.raw_connect(
            broker.host, broker.port, client_id="probe", username=user, password=password,
        )
        sock.close()
        assert code == CONNACK_NOT_AUTHORIZED, (user, password)
    with pytest.raises(brokers.ConnectRefused) as refused:
        MqttClient(broker, "CP-A", "wrong").connect()
    assert refused.value.reason.is_failure
    sock, code = brokers.raw_connect(
        broker.host, broker.port, client_id="CP-A", username="CP-A", password="secret-a"
    )
    sock.close()
    assert code == CONNACK_ACCEPTED


# -- retained messages, last will ----------------------------------------------------------
def test_retained_message_reaches_a_later_subscriber(broker):
    with MqttClient(broker, "CP-A") as cp:
        assert cp.publish("mpevse/CP-A/birth", b'{"cp_id":"CP-A","EvseIDs":["DE*SIM*E0001*1"]}',
                          retain=True) == 0
        assert cp.publish("mpevse/CP-A/status/1", b"old", retain=True) == 0
        assert cp.publish("mpevse/CP-A/status/1", b"new", retain=True) == 0
    with MqttClient(broker, BACKEND) as backend:
        assert backend.subscribe("mpevse/+/birth") == 1
        assert backend.subscribe("mpevse/+/status/+") == 1
        birth = backend.wait_for("mpevse/CP-A/birth")
        assert birth.retain and birth.payload.startswith(b'{"cp_id":"CP-A"')
        status = backend.wait_for("mpevse/CP-A/status/1")
        assert status.retain and status.payload == b"new"
        assert len(backend.received("mpevse/CP-A/status/1")) == 1


def test_last_will_on_abrupt_close(broker):
    topic = "mpevse/CP-A/availability"
    with MqttClient(broker, BACKEND) as backend:
        assert backend.subscribe(topic) == 1
        sock, code = brokers.raw_connect(
            broker.host, broker.port, client_id="CP-A", username="CP-A",
            password=broker.password("CP-A"), will=(topic, b"offline", 1, True),
        )
        assert code == CONNACK_ACCEPTED
        sock.close()  # no DISCONNECT: the connection is lost, as in a power cut
        assert backend.wait_for(topic).payload == b"offline"
    with MqttClient(broker, BACKEND) as later:
        assert later.subscribe(topic) == 1
        will = later.wait_for(topic)
        assert will.payload == b"offline" and will.retain


def test_orderly_disconnect_sends_no_will(broker):
    topic = "mpevse/CP-A/availability"
    with MqttClient(broker, BACKEND) as backend, MqttClient(broker, "CP-B") as cp_b:
        assert backend.subscribe("mpevse/+/availability") == 1
        with MqttClient(broker, "CP-A", will=(topic, b"offline", 1, True)) as cp:
            assert cp.publish(topic, b"online", retain=True) == 0
            assert backend.wait_for(topic).payload == b"online"
        before = _sentinel(cp_b, backend, "mpevse/CP-B/availability")
        assert [m.payload for m in before] == [b"online"]


# -- TLS -----------------------------------------------------------------------------------
def test_tls_with_the_ca_works_and_another_ca_or_name_fails(tls_broker, tmp_path):
    b = tls_broker
    assert b.url.startswith("mqtts://127.0.0.1:")
    for name in ("127.0.0.1", "localhost"):
        with MqttClient(b, BACKEND, server_hostname=name) as backend, \
                MqttClient(b, "CP-A", server_hostname=name) as cp:
            assert backend.subscribe("mpevse/+/up/#") == 1
            assert cp.publish("mpevse/CP-A/up/cdr", b"over tls") == 0
            assert backend.wait_for("mpevse/CP-A/up/cdr").payload == b"over tls"

    other = brokers.make_tls(tmp_path / "other-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        MqttClient(b, "CP-A", ca=other.ca).connect()
    # the right CA, a name the certificate does not carry
    with pytest.raises(ssl.SSLCertVerificationError):
        brokers.raw_connect(b.host, b.port, client_id="x", ssl_context=brokers.client_context(b.ca),
                            server_hostname="broker.invalid")
    # plain MQTT on the TLS port gets no CONNACK
    with pytest.raises((brokers.BrokerError, OSError)):
        brokers.raw_connect(b.host, b.port, client_id="x", username="CP-A",
                            password=b.password("CP-A"), timeout=2.0)


# -- the infrastructure itself -------------------------------------------------------------
def test_mosquitto_restart_keeps_retained_messages_and_port(tmp_path):
    with brokers.mosquitto(tmp_path) as b:
        port = b.port
        with MqttClient(b, "CP-A") as cp:
            assert cp.publish("mpevse/CP-A/birth", b"born", retain=True) == 0
        b.restart()  # SIGTERM: Mosquitto saves its persistence file (shipped: persistence true)
        assert b.port == port and b.running()
        with MqttClient(b, BACKEND) as backend:
            assert backend.subscribe("mpevse/+/birth") == 1
            assert backend.wait_for("mpevse/CP-A/birth").payload == b"born"
        b.kill()
        assert not b.running()
        with pytest.raises(OSError):
            brokers.raw_connect(b.host, b.port, client_id="x", timeout=1.0)
        b.start()
        assert b.running()


def test_amqtt_anonymous_for_the_demo(tmp_path):
    with brokers.amqtt_broker(tmp_path) as b:
        assert b.users == {} and b.url.startswith("mqtt://127.0.0.1:")
        with MqttClient(b, None) as sub, MqttClient(b, None) as pub:
            assert sub.subscribe("mpevse/#") == 1
            assert pub.publish("mpevse/SIM01/up/cdr", b"x") == 0
            assert sub.wait_for("mpevse/SIM01/up/cdr").payload == b"x"


def test_rendered_conf_is_the_shipped_one_on_loopback(tmp_path):
    shipped = brokers.SHIPPED_CONF.read_text()
    tls = brokers.TlsFiles(tmp_path / "ca.crt", tmp_path / "server.crt", tmp_path / "server.key")
    conf = brokers.render_mosquitto_conf(shipped, port=12345, folder=tmp_path, tls=tls, acl=True)
    lines = conf.splitlines()
    assert "listener 12345 127.0.0.1" in lines
    assert "password_file {}".format(tmp_path / "passwd") in lines
    assert "acl_file {}".format(tmp_path / "acl") in lines
    assert "certfile {}".format(tls.cert) in lines
    replaced = {"listener", "password_file", "acl_file", "persistence_location", "log_dest",
                "cafile", "certfile", "keyfile"}
    for raw in shipped.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and line.split()[0] not in replaced:
            assert line in lines, line
    assert "allow_anonymous false" in lines
    plain = brokers.render_mosquitto_conf(shipped, port=1, folder=tmp_path, tls=None, acl=False)
    assert not any(k in plain for k in ("certfile", "keyfile", "cafile", "acl_file"))


def test_shipped_acl_confines_each_charge_point():
    rules = brokers.parse_acl(brokers.SHIPPED_ACL.read_text())
    cp = brokers.acl_for(rules, "CP-A")
    assert cp["read"] == ["mpevse/CP-A/down/#"]
    assert cp["write"] and all(t.startswith("mpevse/CP-A/") for t in cp["write"])
    assert not any(t.startswith("mpevse/CP-A/down") or "+" in t or t.endswith("CP-A/#")
                   for t in cp["write"])
    bridge = brokers.acl_for(rules, BACKEND)
    assert "mpevse/+/#" in bridge["read"] and "mpevse/+/down/#" in bridge["write"]
    assert not any(t.startswith("mpevse/+/") and "/down/" not in t for t in bridge["write"])


def test_require_mosquitto_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(brokers, "mosquitto_binary", lambda: None)
    assert not brokers.mosquitto_available()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the Mosquitto tests"):
        brokers.require_mosquitto()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="make test"):
        brokers.require_mosquitto()


def test_ci_has_mosquitto():
    """Under CI=true the broker tests above must not have been skipped for want of Mosquitto."""
    if not brokers.in_ci():
        pytest.skip("only meaningful under CI=true")
    assert brokers.mosquitto_available(), "make test should have installed mosquitto"
