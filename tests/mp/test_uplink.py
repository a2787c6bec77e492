"""The uplink session (firmware.uplink) and the contract's parser, over a scripted transport
(both interpreters): birth and availability on every connect, durable messages in order with a
window, acknowledgements, requests, every downlink kind and the error reply for bad ones."""

import json
import os

from firmware import contract as C
from firmware.store import Outbox, Store
from firmware.uplink import Uplink

CP = "CP1"
CFG = {"cp_id": CP, "evses": [{"evse_id": "DE*ABC*E1"}, {"evse_id": "DE*ABC*E2"}]}


class FakeTransport:
    """Records what is published; `arrive()` queues what poll() returns."""

    def __init__(self):
        self.sent = []
        self.inbox = []
        self.subs = []
        self.births = []
        self.started = False
        self.room = 100

    def start(self):
        self.started = True

    def subscribe(self, topic, qos):
        self.subs.append((topic, qos))

    def publish(self, topic, payload, qos, retain):
        if self.room <= 0:
            return False
        self.room -= 1
        self.sent.append((topic, payload, qos, retain))
        return True

    def birth(self, topic, payload, qos, retain):
        self.births.append((topic, payload, qos, retain))

    def poll(self):
        """What arrived; a connection first publishes the births, as firmware.mqtt does."""
        ev = self.inbox.pop(0) if self.inbox else None
        if ev is not None and ev[0] == "connected":
            self.sent.extend(self.births)
        return ev

    def arrive(self, kind, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.inbox.append((C.down_topic(CP, kind), data))

    def stop(self):
        pass


def _rig(tag):
    root = "/tmp/mpevse_up_{}_{}".format(tag, "".join("{:02x}".format(b)
                                                       for b in os.urandom(6)))
    store = Store(root)
    box = Outbox(store)
    t = FakeTransport()
    events = []
    up = Uplink(CFG, box, store, t, lambda ev, **f: events.append((ev, f)), "boot1234")
    up.start()
    return up, t, box, events


def _drain(up, n=20):
    got = []
    for _ in range(n):
        ev = up.poll(0)
        if ev is not None:
            got.append(ev)
    return got


def _topics(t):
    return [s[0] for s in t.sent]


def test_connect_publishes_availability_and_birth_and_goes_online():
    up, t, box, events = _rig("birth")
    assert t.started and t.subs == [("mpevse/CP1/down/#", 1)]
    t.inbox.append(("connected", None))
    assert _drain(up) == [("online", 0, True)]
    assert t.sent[0] == ("mpevse/CP1/availability", b"online", 1, True)
    topic, payload, qos, retain = t.sent[1]
    birth = json.loads(payload)
    assert topic == "mpevse/CP1/birth" and retain and qos == 1
    assert birth["EvseIDs"] == ["DE*ABC*E1", "DE*ABC*E2"] and birth["boot"] == "boot1234"
    t.inbox.append(("disconnected", "broker gone"))
    assert _drain(up) == [("online", 0, False)]
    t.inbox.append(("connected", None))  # every reconnect: birth and availability again
    _drain(up)
    assert _topics(t).count("mpevse/CP1/birth") == 2


def test_durable_messages_go_in_order_within_the_window_and_leave_on_ack():
    up, t, box, events = _rig("window")
    for k in range(6):
        box.add("m{}".format(k), {"type": "notification", "id": "m{}".format(k), "Type": "Start"})
        up.durable_added()
    box.add("st", {"type": "evse_status", "id": "st", "EvseID": "DE*ABC*E2",
                   "EvseStatus": "Occupied"})
    up.durable_added()
    _drain(up)
    assert t.sent == []  # offline: everything waits on flash
    t.inbox.append(("connected", None))
    _drain(up)
    w = C.WINDOW

    def published():
        return [json.loads(s[1])["id"] for s in t.sent
                if "/up/notification" in s[0] or "/status/" in s[0]]

    assert published() == ["m{}".format(k) for k in range(w)]  # at most WINDOW unacked
    t.arrive("ack", {"ids": ["m0", "unknown"]})  # an unknown id is ignored
    _drain(up)
    assert published()[w:] == ["m{}".format(w)]  # one acknowledged: one more goes
    assert len(box) == 6
    for _ in range(8):  # acknowledge what is out until the status went too
        t.arrive("ack", {"ids": [i for i in published() if i != "st"]})
        _drain(up)
        if "st" in published():
            break
    st = [s for s in t.sent if "/status/" in s[0]]
    assert st and st[0][0] == "mpevse/CP1/status/2" and st[0][3] is True  # retained
    t.inbox.append(("disconnected", "cut"))
    t.inbox.append(("connected", None))  # unacknowledged ones are sent again after a reconnect
    _drain(up)
    assert [s[0] for s in t.sent].count("mpevse/CP1/status/2") == 2
    t.arrive("ack", {"ids": sorted(set(published()))})
    _drain(up)
    assert len(box) == 0


def test_a_full_transport_queue_resends_the_same_message_later():
    up, t, box, events = _rig("full")
    t.inbox.append(("connected", None))
    _drain(up)
    t.room = 0
    box.add("c1", {"type": "cdr", "id": "c1"})
    up.durable_added()
    _drain(up)
    t.room = 10
    up.durable_added()
    _drain(up)
    assert [json.loads(s[1])["id"] for s in t.sent if s[0].endswith("/up/cdr")] == ["c1"]


def test_authorize_request_carries_ttl_and_answers_reach_the_core():
    up, t, box, events = _rig("auth")
    msg = {"type": "authorize_start", "id": "r1", "deadline": 10000, "EvseID": "DE*ABC*E1",
           "Identification": {"RFIDMifareFamilyIdentification": {"UID": "04A1B2C3"}}}
    assert up.request(msg, 4000) is False  # offline: the core's deadline decides
    t.inbox.append(("connected", None))
    _drain(up)
    assert up.request(msg, 4000) is True
    topic, payload, qos, retain = t.sent[-1]
    body = json.loads(payload)
    assert topic == "mpevse/CP1/up/authorize" and body["ttl_ms"] == 6000
    assert "deadline" not in body and body["id"] == "r1"
    answer = {"id": "r1", "AuthorizationStatus": "Authorized",
              "SessionID": "b3c2a1d0-1111-4222-8333-444455556666"}
    t.arrive("authorize", answer)
    assert _drain(up) == [("auth", 0, answer)]


def test_commands_become_core_events_and_replies_go_up():
    up, t, box, events = _rig("cmd")
    t.inbox.append(("connected", None))
    _drain(up)
    rs = {"id": "c1", "SessionID": "b3c2a1d0-1111-4222-8333-444455556666",
          "Identification": {"RemoteIdentification": {"EvcoID": "DE-8EO-C12345678-X"}}}
    t.arrive("remote_start", rs)
    t.arrive("remote_stop", {"id": "c2", "SessionID": "x"})
    t.arrive("time", {"time": 1800000000})
    assert _drain(up) == [("remote_start", 0, rs), ("remote_stop", 0, {"id": "c2",
                                                                        "SessionID": "x"}),
                          ("time", 0, 1800000000)]
    up.reply({"id": "c1", "Result": True, "StatusCode": {"Code": "000"}})
    assert t.sent[-1][0] == "mpevse/CP1/up/reply"
    ll = {"id": "c3", "full": True, "version": 2, "uids": ["04A1B2C3"]}
    t.arrive("local_list", ll)
    assert _drain(up) == [("local_list", 0, ll)]
    up.answer_local_list([("persist", 0, ("locallist", {}))])
    assert json.loads(t.sent[-1][1])["Result"] is True
    t.arrive("local_list", ll)
    _drain(up)
    up.answer_local_list([("error", 0, ("local_list", "version 2: expected base 3"))])
    r = json.loads(t.sent[-1][1])
    assert r["id"] == "c3" and r["Result"] is False and r["StatusCode"]["Code"] == "022"
    assert "expected base" in r["StatusCode"]["AdditionalInfo"]


def test_bad_downlink_messages_get_an_error_reply_and_change_nothing():
    up, t, box, events = _rig("bad")
    t.inbox.append(("connected", None))
    _drain(up)
    n = len(t.sent)
    for kind, payload, rid in (
            ("remote_start", b"{not json", None),
            ("remote_start", b"[1, 2]", None),
            ("remote_start", json.dumps({"SessionID": "x"}).encode(), None),
            ("remote_stop", json.dumps({"id": 5}).encode(), None),
            ("fly", json.dumps({"id": "c9"}).encode(), "c9"),
            ("local_list", json.dumps({"id": "c7", "full": "yes"}).encode(), "c7"),
            ("config", json.dumps({"id": "c8", "config": 3}).encode(), "c8"),
            ("remote_start", b"{" + b" " * C.MAX_DOWN + b"}", None)):
        t.inbox.append((C.down_topic(CP, kind), payload))
        assert _drain(up) == []
        r = json.loads(t.sent[-1][1])
        assert t.sent[-1][0] == "mpevse/CP1/up/reply" and r["Result"] is False, (kind, payload)
        assert r["id"] == rid and r["StatusCode"]["Code"] == "022"
    assert len(t.sent) == n + 8 and up.bad == 8
    for kind, payload in (("ack", b'{"ids": "x"}'), ("time", b'{"time": "now"}'),
                          ("authorize", b'{"AuthorizationStatus": "Authorized"}')):
        t.inbox.append((C.down_topic(CP, kind), payload))
        assert _drain(up) == []
    assert len(t.sent) == n + 8  # no reply where the contract has none: an error event
    assert [e for e in events if e[0] == "error"][-1][1]["kind"] == "downlink"


def test_reset_and_config_change():
    up, t, box, events = _rig("reset")
    t.inbox.append(("connected", None))
    _drain(up)
    t.arrive("config", {"id": "k1", "config": {"cp_id": CP}})  # no evses: refused whole
    _drain(up)
    r = json.loads(t.sent[-1][1])
    assert r["Result"] is False and "evses" in r["StatusCode"]["AdditionalInfo"]
    assert not up.reset_requested and up.store.get("config") is None
    new = {"cp_id": CP, "evses": [{"evse_id": "DE*ABC*E1"}]}
    t.arrive("config", {"id": "k2", "config": new})
    _drain(up)
    assert json.loads(t.sent[-1][1])["Result"] is True and up.reset_requested
    assert up.store.get("config") == new
    up2, t2, _, _ = _rig("reset2")
    t2.inbox.append(("connected", None))
    _drain(up2)
    t2.arrive("reset", {"id": "z1"})
    _drain(up2)
    assert up2.reset_requested and json.loads(t2.sent[-1][1])["id"] == "z1"


def test_unacknowledged_messages_go_again_after_a_silence():
    from firmware.uplink import RESEND_MS

    up, t, box, events = _rig("resend")
    t.inbox.append(("connected", None))
    up.poll(0)
    box.add("c1", {"type": "cdr", "id": "c1"})
    up.durable_added()
    up.poll(10)
    assert [s[0] for s in t.sent].count("mpevse/CP1/up/cdr") == 1
    up.poll(RESEND_MS - 1)
    assert [s[0] for s in t.sent].count("mpevse/CP1/up/cdr") == 1
    up.poll(RESEND_MS + 20)  # no ack for a minute: the backend may have lost it
    up.poll(RESEND_MS + 30)
    assert [s[0] for s in t.sent].count("mpevse/CP1/up/cdr") == 2
