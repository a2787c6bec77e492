"""Operator visibility (issue 13 item 3): the registry's per-charge-point view, the hooks the
durable path calls (note_cdr / note_dead_letter), reply counting by instance, the merge of
several instances' documents and the table; then the bridge as a real process against
Mosquitto with `--admin-listen`: GET /status and `python -m tools.bridge status`.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import time
import urllib.request

import pytest

from firmware import contract as C
from host_sim import pki as PKI
from tests import brokers
from tests.test_bridge import (  # noqa: F401  (module fixtures used by name)
    CP,
    EVSES,
    REPO,
    TIMEOUT,
    BridgeProcess,
    birth,
    bridge_argv,
    broker,
    hubject,
    pki,
)
from tools.bridge import status
from tools.bridge.commands import Commands
from tools.bridge.config import ConfigError, load
from tools.bridge.registry import OFFLINE, ONLINE, Registry


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- registry -------------------------------------------------------------------------------------
def test_since_is_exact_only_for_live_changes():
    clock = Clock()
    reg = Registry(clock)
    live = [False]
    reg.live = lambda: live[0]
    reg.on_availability("A", C.ONLINE)  # the retained burst at start-up
    live[0] = True
    clock.t += 60
    reg.on_availability("A", C.ONLINE)  # the same state again (a reconnect): since stays
    reg.on_availability("B", C.ONLINE)
    clock.t += 5
    reg.on_availability("B", C.OFFLINE)  # B's last will
    rows = {r["cp_id"]: r for r in reg.charge_points()}
    assert rows["A"]["state"] == ONLINE and rows["A"]["since"] == 1_800_000_000.0
    assert rows["A"]["since_exact"] is False
    assert rows["B"]["state"] == OFFLINE and rows["B"]["since"] == 1_800_000_065.0
    assert rows["B"]["since_exact"] is True


def test_birth_outbox_cdr_and_dead_letters():
    clock = Clock()
    reg = Registry(clock)
    assert reg.on_birth("A", json.dumps({"cp_id": "A", "EvseIDs": ["DE*SIM*E1*1"],
                                         "boot": "b1"}).encode()) is None
    assert reg.on_health("A", json.dumps({"outbox": 7, "late": 1, "bad": 0,
                                          "boot": "b1"}).encode()) is None
    # an unusable health message changes nothing
    assert "outbox" in reg.on_health("A", b'{"outbox": "many"}')
    assert "JSON" in reg.on_health("A", b"\xff{")
    reg.note_cdr("A", 1_799_999_990)
    reg.note_cdr("A")
    reg.note_dead_letter("A")
    reg.note_dead_letter("Z", 2)  # a charge point never born still shows
    rows = {r["cp_id"]: r for r in reg.charge_points()}
    a = rows["A"]
    assert a["outbox"] == 7 and a["late"] == 1 and a["bad"] == 0
    assert a["born_at"] == clock.t and a["boot"] == "b1"
    assert a["last_cdr"] == clock.t and a["cdrs"] == 2 and a["dead_letters"] == 1
    assert a["EvseIDs"] == ["DE*SIM*E1*1"] and a["state"] == "unknown"
    assert rows["Z"]["dead_letters"] == 2
    # a cleared retained health message: the depth is unknown again
    reg.on_health("A", b"")
    assert reg.charge_points()[0]["outbox"] is None


def test_replies_counted_by_whose_id_they_carry():
    async def run():
        sent = []

        async def publish(topic, payload):
            sent.append((topic, payload))

        a, b = Commands("a", publish), Commands("a-b", publish)
        cmd = {"id": a.new_id(), "SessionID": "s"}
        waiter = asyncio.ensure_future(a.send(CP, C.DOWN_REMOTE_START, cmd, 2.0))
        while not sent:
            await asyncio.sleep(0)
        reply = json.dumps({"id": cmd["id"], "Result": True}).encode()
        assert b.on_reply(CP, reply) is False  # the other instance drops it
        assert a.on_reply("CP-X", reply) is False  # our id, but not that charge point's
        assert a.on_reply(CP, reply) is True
        assert (await waiter)["Result"] is True
        assert a.on_reply(CP, reply) is False  # a repeat after the answer: late
        assert a.on_reply(CP, b"{}") is False
        return a.counts, b.counts, a.pending()

    mine, other, pending = asyncio.run(run())
    assert other["foreign"] == 1 and other["matched"] == 0
    assert mine == {"sent": 1, "matched": 1, "foreign": 0, "unmatched": 2, "bad": 1}
    assert pending == 0


# -- several instances, the table ----------------------------------------------------------------
def _row(cp, state, since, exact=True, **over):
    row = {"cp_id": cp, "state": state, "since": since, "since_exact": exact,
           "EvseIDs": ["E1"], "boot": "x", "born_at": since, "outbox": None,
           "last_cdr": None, "cdrs": 0, "dead_letters": 0}
    row.update(over)
    return row


def test_merge_takes_latest_change_sums_counts():
    d1 = {"charge_points": [_row("A", ONLINE, 100.0, exact=False, last_cdr=150.0, cdrs=1,
                                 dead_letters=1),
                            _row("B", ONLINE, 100.0)]}
    d2 = {"charge_points": [_row("A", ONLINE, 120.0, last_cdr=170.0, cdrs=2, outbox=3),
                            _row("B", OFFLINE, 130.0)]}
    rows = {r["cp_id"]: r for r in status.merge([d1, d2])}
    a, b = rows["A"], rows["B"]
    assert a["state"] == ONLINE and a["since"] == 120.0 and a["since_exact"] is True
    assert a["last_cdr"] == 170.0 and a["cdrs"] == 3 and a["dead_letters"] == 1
    assert a["outbox"] == 3
    assert b["state"] == OFFLINE and b["since"] == 130.0
    text = status.table(list(rows.values()))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["CHARGE", "POINT"] and len(lines) == 3
    assert "1970-01-01 00:02:00Z" in lines[1]
    assert lines[2].split()[1] == OFFLINE


def test_admin_listen_is_loopback_only(tmp_path):
    base = ["--broker", "mqtt://127.0.0.1:1", "--operator-id", "DE*SIM", "--hubject-url",
            "http://127.0.0.1:9/api/oicp", "--listen", "127.0.0.1:0"]
    with pytest.raises(ConfigError, match="loopback"):
        load(base + ["--admin-listen", "0.0.0.0:8081"])
    cfg = load(base + ["--admin-listen", "127.0.0.1:0"])
    assert cfg.admin_host == "127.0.0.1" and cfg.admin_port == 0


# -- the bridge as a process ---------------------------------------------------------------------
def _get_status(url: str, query: str = "") -> dict:
    with urllib.request.urlopen(url + "/status" + query, timeout=TIMEOUT) as r:
        return json.loads(r.read())


def _wait_status(url: str, pred, what: str) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while True:
        doc = _get_status(url)
        if pred(doc):
            return doc
        assert time.monotonic() < deadline, "no {} in /status: {}".format(what, doc)
        time.sleep(0.05)


def test_status_endpoint_and_command(broker, pki, hubject):  # noqa: F811
    # CP-A is born and online before the bridge starts (retained: "at or before")
    with brokers.MqttClient(broker, CP) as a:
        a.publish(C.availability_topic(CP), C.ONLINE, retain=True)
        a.publish(C.birth_topic(CP), birth(CP, EVSES), retain=True)
    b = BridgeProcess(bridge_argv(broker, pki, hubject.port, "--admin-listen", "127.0.0.1:0",
                                  "--instance-id", "st1"))
    try:
        ready = b.wait_line(lambda r: r.get("event") == "ready", what="ready line")
        admin = ready["admin"]
        assert admin.startswith("http://127.0.0.1:") and not admin.endswith(":0")
        # CP-B comes online while the bridge runs (exact), then dies: its will says offline
        sock, code = brokers.raw_connect(
            broker.host, broker.port, client_id="cpb-st", username="CP-B",
            password=broker.password("CP-B"),
            will=(C.availability_topic("CP-B"), C.OFFLINE, 1, True))
        assert code == 0
        with brokers.MqttClient(broker, "CP-B") as cpb:
            cpb.publish(C.availability_topic("CP-B"), C.ONLINE, retain=True)
            cpb.publish(C.birth_topic("CP-B"), birth("CP-B", ["DE*SIM*E0002*1"]),
                        retain=True)
        _wait_status(admin, lambda d: any(r["cp_id"] == "CP-B" and r["state"] == ONLINE
                                          for r in d["charge_points"]), "CP-B online")
        t_kill = time.time()
        sock.close()
        doc = _wait_status(admin, lambda d: any(r["cp_id"] == "CP-B" and r["state"] == OFFLINE
                                                for r in d["charge_points"]), "CP-B offline")
        rows = {r["cp_id"]: r for r in doc["charge_points"]}
        assert rows[CP]["state"] == ONLINE and rows[CP]["since_exact"] is False
        assert rows[CP]["EvseIDs"] == EVSES and rows[CP]["outbox"] is None
        assert rows["CP-B"]["since_exact"] is True
        assert t_kill - 1 <= rows["CP-B"]["since"] <= time.time()
        assert doc["instance_id"] == "st1" and doc["mqtt"] == {"connected": True,
                                                               "subscribed": True}
        assert doc["totals"]["offline"] >= 1 and doc["commands"]["pending"] == 0
        # the command prints the table
        proc = subprocess.run([sys.executable, "-m", "tools.bridge", "status", "--url", admin],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("instance st1: mqtt connected")
        table = {line.split()[0]: line.split() for line in lines[2:]}
        assert table[CP][1] == ONLINE and table[CP][2].startswith("<=")
        assert table["CP-B"][1] == OFFLINE and not table["CP-B"][2].startswith("<=")
        assert table[CP][5] == "?"  # outbox depth: this stand-in published no health
        proc = subprocess.run([sys.executable, "-m", "tools.bridge", "status", "--url", admin,
                               "--state", OFFLINE, "--json"],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
        assert [r["cp_id"] for r in json.loads(proc.stdout)["charge_points"]] == ["CP-B"]
        only = _get_status(admin, "?cp=" + CP)
        assert [r["cp_id"] for r in only["charge_points"]] == [CP]
        assert only["totals"]["online"] >= 1 and only["totals"]["offline"] >= 1
        # an instance that does not answer: reported, exit status 1, the others still shown
        proc = subprocess.run([sys.executable, "-m", "tools.bridge", "status", "--url", admin,
                               "--url", "http://127.0.0.1:1", "--json"],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1 and "http://127.0.0.1:1" in proc.stderr
        assert json.loads(proc.stdout)["instances"] == ["st1"]
        # /status is not on the OICP port (which only Hubject's certificate may call)
        port = int(ready["listen"].rsplit(":", 1)[1])
        chain, key = pki["hubject_client"]
        conn = http.client.HTTPSConnection(
            "localhost", port, context=PKI.client_context(pki["ca"], chain, key),
            timeout=TIMEOUT)
        try:
            conn.request("GET", "/status")
            assert conn.getresponse().status == 404
        finally:
            conn.close()
    finally:
        b.stop()
