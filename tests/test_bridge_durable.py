"""Durable messages through the bridge to Hubject (issue 13 item 1), all real processes: Mosquitto
(shipped ACL), the Hubject simulator and the bridge over mutual TLS (host_sim/pki.py), a paho
client as charge point CP-A publishing what the firmware publishes (records built by
firmware/session.py itself). Checked: a Hubject session's CDR accepted once and acknowledged,
a local-list CDR in the operator's store exactly once (also across a bridge restart),
notifications Start..End in order, EVSE data before status, superseded statuses collapsed,
5xx / time-out retried until stored once, a permanent 022 dead-lettered and acknowledged with
the queue moving on, replay, future-dated and >1000 kWh CDRs dead-lettered without a call, site
file errors naming the field. Every body the bridge sent is checked by the simulator's rules
and against Hubject's OpenAPI (tests/oicp_spec.py: a failure under CI=true without ../shared).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from firmware import contract as C
from firmware.session import Session, rfid_ident
from tests import brokers, oicp_spec, test_bridge
from tests.test_bridge import CP, EVSES, OP, REPO, TIMEOUT, BridgeProcess, authorize
from tests.test_bridge_sim import calls, ctl, hubject_sim

UID = "04A2B3C4D5E6F7"  # Authorized by the simulator's DE-8KZ
SITE = {
    "OperatorName": "mpevse test operator",
    "defaults": {
        "ChargingStationNames": [{"lang": "en", "value": "Test site"}],
        "Address": {"Country": "DEU", "City": "Berlin", "Street": "Teststrasse",
                    "PostalCode": "10115", "HouseNum": "1", "TimeZone": "UTC+01:00"},
        "GeoCoordinates": {"DecimalDegree": {"Latitude": "52.520008",
                                             "Longitude": "13.404954"}},
        "Plugs": ["Type 2 Outlet"],
        "ChargingFacilities": [{"PowerType": "AC_3_PHASE", "Power": 11, "Amperage": 16}],
        "RenewableEnergy": True, "CalibrationLawDataAvailability": "Local",
        "AuthenticationModes": ["NFC RFID Classic", "REMOTE"],
        "PaymentOptions": ["Contract"], "ValueAddedServices": ["None"],
        "Accessibility": "Free publicly accessible", "HotlinePhoneNumber": "+4930123456",
        "IsOpen24Hours": True, "IsHubjectCompatible": True, "DynamicInfoAvailable": "true"},
    "charge_points": {"CP-A": {"time_zone": "Europe/Berlin"}},
}


# -- processes -------------------------------------------------------------------------------
# test_bridge's module fixtures, shared by name (each module gets its own instances)
pki, broker, cp = test_bridge.pki, test_bridge.broker, test_bridge.cp


@pytest.fixture(scope="module")
def hub(pki):
    yield from hubject_sim(pki)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("durable")
    site = d / "site.json"
    site.write_text(json.dumps(SITE))
    return {"dir": d, "site": str(site), "store": str(d / "cdrs.jsonl"),
            "dead": str(d / "dead.jsonl")}


def bridge_flags(broker, pki, hub, files, store=None, dead=None):  # noqa: F811
    chain, key = pki["cpo_client"]
    schain, skey = pki["cpo_server"]
    return ["--broker", broker.url, "--broker-user", brokers.BACKEND,
            "--broker-password", broker.password(brokers.BACKEND), "--operator-id", OP,
            "--hubject-url", "https://localhost:{}/api/oicp".format(hub["port"]),
            "--client-cert", chain, "--client-key", key, "--hubject-ca", pki["ca"],
            "--listen", "127.0.0.1:0", "--server-cert", schain, "--server-key", skey,
            "--client-ca", pki["ca"], "--instance-id", "dur1", "--hubject-timeout-ms", "1500",
            "--site", files["site"], "--cdr-store", store or files["store"],
            "--dead-letter", dead or files["dead"]]


def start_bridge(argv) -> BridgeProcess:
    b = BridgeProcess(argv)
    b.ready = b.wait_line(lambda r: r.get("event") == "ready", what="ready line")
    return b


@pytest.fixture(scope="module")
def bridge(broker, pki, hub, cp, files):  # noqa: F811
    ctl(hub, "POST", "/reset", {"sessions": True})
    b = start_bridge(bridge_flags(broker, pki, hub, files))
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _fresh_faults(request):
    if "hub" in request.fixturenames:
        hub = request.getfixturevalue("hub")
        ctl(hub, "POST", "/reset", {})  # calls, faults, latency; sessions and EVSE data stay


# -- the charge point's side -------------------------------------------------------------------
def session(sid=None, evse=EVSES[0], wh_start=1_000, wh_end=8_500, end_in_s=-1, uid=UID):
    """A finished firmware Session: charged 10 minutes up to `end_in_s` from now."""
    local = str(uuid.uuid4())
    s = Session(local, evse, rfid_ident(uid), uid, "test")
    s.session_id = sid or local
    end = int(time.time()) + end_in_s
    s.session_start, s.charging_start = end - 660, end - 600
    s.charging_end = end - 5
    s.meter_start, s.meter_end = wh_start, wh_end
    s.end_at = end
    return s


def hubject_session(cp) -> Session:
    """A finished session that Hubject authorized (AuthorizeStart through the bridge)."""
    ans, _ = authorize(cp, UID)
    assert ans["AuthorizationStatus"] == "Authorized", ans
    return session(ans["SessionID"])


def publish(client, msg, topic=None):
    if topic is None:
        topic = C.durable_topic(CP, msg, EVSES)
    client.publish(topic, C.encode(msg), retain=topic.startswith(C.tree(CP) + "/status/"))


def acked(client, ids, timeout=TIMEOUT) -> float:
    """Wait until every id was named in a down/ack; returns the seconds waited."""
    t0 = time.monotonic()
    want = set(ids)
    while True:
        got = set()
        for m in client.received(C.down_topic(CP, C.DOWN_ACK)):
            got.update(json.loads(m.payload)["ids"])
        if want <= got:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError("not acknowledged within {} s: {}".format(
                timeout, sorted(want - got)))
        time.sleep(0.05)


def wait_for(pred, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("no {} within {} s".format(what, timeout))
        time.sleep(0.05)


def spec_ok(name, body):
    oicp_spec.require_spec()
    oicp_spec.assert_valid(name, body)


def checked(hub, operation):
    """The simulator's calls of `operation`, each body valid by its rules and the OpenAPI."""
    out = calls(hub, operation)
    for c in out:
        if c["fault"] is None:
            assert c["problems"] == [], c
        else:  # a faulty answer keeps the body as text
            c["body"] = json.loads(c["body"]) if isinstance(c["body"], str) else c["body"]
        spec_ok(operation, c["body"])
    return out


def lines(file) -> list[dict]:
    try:
        with open(file) as f:
            return [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        return []


def hub_session(hub, sid):
    return next(s for s in ctl(hub, "GET", "/sessions")["sessions"] if s["SessionID"] == sid)


# -- tests -------------------------------------------------------------------------------------
def test_local_cdr_goes_to_the_store_exactly_once_across_restarts(broker, pki, hub, cp,
                                                                  files, tmp_path):  # noqa: F811
    store = str(tmp_path / "own.jsonl")
    argv = bridge_flags(broker, pki, hub, files, store=store)
    s = session()  # SessionID == local id: no Hubject session
    start = s.start_notification()
    end, cdr = s.end_records(s.end_at)
    b = start_bridge(argv)
    try:
        for m in (start, end, cdr):
            publish(cp, m)
        acked(cp, [start["id"], end["id"], cdr["id"]])
        publish(cp, cdr)  # redelivered to the same bridge
        time.sleep(0.3)
    finally:
        b.stop()
    b = start_bridge(argv)  # a restarted bridge knows the stored ids from the file
    try:
        before = len(cp.received(C.down_topic(CP, C.DOWN_ACK)))
        publish(cp, cdr)
        wait_for(lambda: len(cp.received(C.down_topic(CP, C.DOWN_ACK))) > before,
                 what="ack after the restart")
        b.wait_line(lambda r: r.get("event") == "local_cdr" and r.get("stored") is False)
    finally:
        b.stop()
    stored = lines(store)
    assert [r["id"] for r in stored] == [cdr["id"]]
    assert stored[0]["cp_id"] == CP and stored[0]["record"]["ConsumedEnergy"] == 7.5
    assert calls(hub, "ChargeDetailRecord") == [] and calls(hub, "ChargingNotifications") == []


def test_hubject_session_notifications_and_cdr(bridge, hub, cp):
    s = hubject_session(cp)
    start = s.start_notification()
    progress = s.progress_notification(s.charging_start + 300, 300_000)
    end, cdr = s.end_records(s.end_at)
    for m in (start, progress, end, cdr):
        publish(cp, m)
    acked(cp, [start["id"], progress["id"], end["id"], cdr["id"]])
    types = [c["body"]["Type"] for c in checked(hub, "ChargingNotifications")]
    assert types == ["Start", "Progress", "End"]
    call, = checked(hub, "ChargeDetailRecord")
    body = call["body"]
    assert call["response"]["Result"] is True
    assert body["SessionID"] == s.session_id and body["CPOPartnerSessionID"] == s.local_id
    assert body["ConsumedEnergy"] == 7.5 and body["MeterValueEnd"] - body["MeterValueStart"] \
        == 7.5
    assert body["SessionEnd"][-6:] in ("+01:00", "+02:00"), body  # Europe/Berlin, not Z
    assert "ProviderID" not in body and hub_session(hub, s.session_id)["cdr"] is not None
    # a redelivery (the ack was lost) is acknowledged again without a second call
    n_acks = len(cp.received(C.down_topic(CP, C.DOWN_ACK)))
    publish(cp, cdr)
    wait_for(lambda: len(cp.received(C.down_topic(CP, C.DOWN_ACK))) > n_acks, what="re-ack")
    assert len(calls(hub, "ChargeDetailRecord")) == 1
    line = bridge.wait_line(lambda r: r.get("operation") == "eRoamingChargeDetailRecord"
                            and r.get("id") == cdr["id"])
    assert line["StatusCode"] == "000" and line["http_status"] == 200


def test_status_after_data_and_superseded_statuses_collapsed(bridge, hub, cp):
    data = ctl(hub, "GET", "/evses")["data"]
    assert set(EVSES) <= set(data)  # the fullLoad at start, from the birth and the site file
    rec = data[EVSES[0]]
    spec_ok("PushEvseData", {"ActionType": "fullLoad", "OperatorEvseData": {
        "OperatorID": OP, "OperatorName": SITE["OperatorName"], "EvseDataRecord": [rec]}})
    ctl(hub, "POST", "/latency", {"operation": "PushEvseStatus", "ms": 600})
    msgs = [{"type": "evse_status", "id": "st-" + uuid.uuid4().hex[:8], "EvseID": EVSES[0],
             "EvseStatus": st} for st in ("Occupied", "Available", "OutOfService", "Available")]
    publish(cp, msgs[0])
    time.sleep(0.2)  # the first push is under way (the simulator holds it 600 ms)
    for m in msgs[1:]:
        publish(cp, m)
    acked(cp, [m["id"] for m in msgs])
    pushes = checked(hub, "PushEvseStatus")
    assert len(pushes) <= 2, [p["body"] for p in pushes]  # the last three became one
    assert all(p["warnings"] == [] for p in pushes)  # never two in flight
    assert pushes[-1]["body"]["OperatorEvseStatus"]["EvseStatusRecord"] == [
        {"EvseID": EVSES[0], "EvseStatus": "Available"}]
    assert ctl(hub, "GET", "/evses")["status"][EVSES[0]] == "Available"
    assert calls(hub, "PushEvseData") == []  # nothing changed since the fullLoad


def test_status_waits_for_the_data_push(bridge, hub, cp):
    ctl(hub, "POST", "/reset", {"sessions": True})  # Hubject forgets the EVSE data
    msg = {"type": "evse_status", "id": "st-" + uuid.uuid4().hex[:8], "EvseID": EVSES[1],
           "EvseStatus": "Occupied"}
    publish(cp, msg)
    acked(cp, [msg["id"]], timeout=TIMEOUT + 5)  # 603, then a fullLoad, then the status
    seq = [(c["operation"], c["response"].get("StatusCode", {}).get("Code"))
           for c in ctl(hub, "GET", "/calls")["calls"]
           if c["operation"] in ("PushEvseData", "PushEvseStatus")]
    assert seq[-2:] == [("PushEvseData", "000"), ("PushEvseStatus", "000")], seq
    assert ctl(hub, "GET", "/evses")["status"][EVSES[1]] == "Occupied"
    checked(hub, "PushEvseData")


@pytest.mark.parametrize("fault", [{"mode": "http_500", "count": 2},
                                   {"mode": "timeout", "count": 1, "seconds": 2.5}])
def test_cdr_retried_until_accepted_and_stored_once(bridge, hub, cp, fault):
    s = hubject_session(cp)
    _end, cdr = s.end_records(s.end_at)
    ctl(hub, "POST", "/faults", dict(fault, operation="ChargeDetailRecord"))
    publish(cp, cdr)
    acked(cp, [cdr["id"]], timeout=TIMEOUT + 10)
    got = wait_for(lambda: [c for c in checked(hub, "ChargeDetailRecord")
                            if c["body"]["SessionID"] == s.session_id
                            and (c["response"] or {}).get("Result") is True],
                   what="the CDR stored")
    assert len(got) == 1  # stored once; a later attempt after the time-out got 400 = duplicate
    assert hub_session(hub, s.session_id)["cdr"]["CPOPartnerSessionID"] == s.local_id
    retries = [r for r in bridge.lines if r.get("event") == "retry" and r.get("id") == cdr["id"]]
    assert retries and all(r["retry_s"] > 0 for r in retries)
    assert not [r for r in bridge.lines if r.get("kind") == "dead_letter"
                and r.get("id") == cdr["id"]]


def test_permanent_022_dead_lettered_queue_moves_on_then_replay(bridge, broker, pki, hub, cp,
                                                               files):  # noqa: F811
    bad, good = hubject_session(cp), hubject_session(cp)
    bad_cdr, good_cdr = bad.end_records(bad.end_at)[1], good.end_records(good.end_at)[1]
    ctl(hub, "POST", "/faults", {"operation": "ChargeDetailRecord", "mode": "status_only",
                                 "code": "022", "count": 1})
    publish(cp, bad_cdr)
    acked(cp, [bad_cdr["id"]])
    publish(cp, good_cdr)
    acked(cp, [good_cdr["id"]])
    dead = [r for r in lines(files["dead"]) if r["id"] == bad_cdr["id"]]
    assert len(dead) == 1 and dead[0]["answer"]["StatusCode"]["Code"] == "022"
    assert dead[0]["body"]["SessionID"] == bad.session_id and dead[0]["message"] == bad_cdr
    err = bridge.wait_line(lambda r: r.get("kind") == "dead_letter"
                           and r.get("id") == bad_cdr["id"])
    assert err["event"] == "error" and err["cp_id"] == CP and err["StatusCode"] == "022"
    assert hub_session(hub, good.session_id)["cdr"] is not None
    # replay: the session is still open at Hubject, so the CDR goes through now
    only = files["dir"] / "replay.jsonl"
    only.write_text(json.dumps(dead[0]) + "\n")
    out = subprocess.run([sys.executable, "-m", "tools.bridge", "replay", str(only),
                          *bridge_flags(broker, pki, hub, files)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out
    result, = [json.loads(x) for x in out.stdout.splitlines()]
    assert result["result"] == "accepted" and result["id"] == bad_cdr["id"], result
    assert hub_session(hub, bad.session_id)["cdr"] is not None
    checked(hub, "ChargeDetailRecord")
    # a second replay: Hubject refuses the duplicate (400) and replay says so
    out = subprocess.run([sys.executable, "-m", "tools.bridge", "replay", str(only),
                          *bridge_flags(broker, pki, hub, files)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert json.loads(out.stdout)["StatusCode"] == "400"


def test_a_session_accepted_offline_is_post_authorized_before_its_cdr(bridge, hub, cp,
                                                                       files):  # noqa: F811
    """A CDR whose session the charge point accepted without Hubject ("auth" free_vend or
    cache, SessionID still the local id): AuthorizeStart first, then the CDR with Hubject's
    SessionID; a refusal parks it as a dead letter (energy no EMP pays for), never in the
    operator's own store."""
    known, stranger = session(), session(uid="0BADCAFE")  # 0BADCAFE: the simulator's 102
    known.source = "free_vend"
    stranger.source = "cache"
    cdr = known.end_records(known.end_at)[1]
    refused = stranger.end_records(stranger.end_at)[1]
    assert cdr["SessionID"] == cdr["CPOPartnerSessionID"] and cdr["auth"] == "free_vend"
    publish(cp, cdr)
    publish(cp, refused)
    acked(cp, [cdr["id"], refused["id"]])
    starts = checked(hub, "AuthorizeStart")
    assert {c["body"]["CPOPartnerSessionID"] for c in starts} == {known.local_id,
                                                                  stranger.local_id}
    sent, = checked(hub, "ChargeDetailRecord")
    assert sent["body"]["CPOPartnerSessionID"] == known.local_id
    assert sent["body"]["SessionID"] != known.local_id and "auth" not in sent["body"]
    assert hub_session(hub, sent["body"]["SessionID"])["cdr"] is not None
    dead = [r for r in lines(files["dead"]) if r["id"] == refused["id"]]
    assert len(dead) == 1 and "post-authorization refused" in dead[0]["reason"], dead
    assert refused["id"] not in [r["id"] for r in lines(files["store"])]


@pytest.mark.parametrize("what,make", [
    ("future", lambda: session(end_in_s=3600)),
    ("kwh", lambda: session(wh_start=0, wh_end=1_500_000)),
])
def test_implausible_cdr_dead_lettered_without_a_call(bridge, hub, cp, files, what, make):
    s = make()
    s.session_id = hubject_session(cp).session_id
    cdr = s.end_records(s.end_at)[1]
    publish(cp, cdr)
    acked(cp, [cdr["id"]])
    dead, = [r for r in lines(files["dead"]) if r["id"] == cdr["id"]]
    assert ("future" if what == "future" else "1000 kWh") in dead["reason"], dead
    assert dead["answer"] is None
    assert calls(hub, "ChargeDetailRecord") == []
    bridge.wait_line(lambda r: r.get("event") == "error" and r.get("id") == cdr["id"]
                     and r.get("cp_id") == CP)


@pytest.mark.parametrize("patch,field", [
    ({"defaults": {"Address": {"Country": "DE", "City": "B", "Street": "St",
                               "PostalCode": "1", "HouseNum": "1"}}},
     "defaults.Address.Country"),
    ({"charge_points": {"CP-A": {"HotlinePhoneNumber": "030-123"}}},
     "charge_points.CP-A.HotlinePhoneNumber"),
    ({"charge_points": {"CP-A": {"Plugs": ["Type 2"]}}}, "charge_points.CP-A.Plugs[0]"),
    ({"charge_points": {"CP-A": {"time_zone": "Mars/Olympus"}}},
     "charge_points.CP-A.time_zone"),
    ({"defaults": {"Plug": ["Type 2 Outlet"]}}, "defaults.Plug"),
])
def test_site_file_errors_name_the_field(broker, pki, hub, files, tmp_path, patch,
                                         field):  # noqa: F811
    site = json.loads(json.dumps(SITE))
    for key, value in patch.items():
        for k, v in value.items():
            if isinstance(v, dict) and isinstance(site[key].get(k), dict) and key != "defaults":
                site[key][k].update(v)
            else:
                site[key][k] = v
    path = tmp_path / "site.json"
    path.write_text(json.dumps(site))
    argv = bridge_flags(broker, pki, hub, files)
    argv[argv.index("--site") + 1] = str(path)
    out = subprocess.run([sys.executable, "-m", "tools.bridge", *argv], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    err = json.loads(out.stdout.splitlines()[-1])
    assert err["event"] == "error" and field in err["message"], err


def test_site_file_missing_mandatory_field(broker, pki, hub, files, tmp_path):  # noqa: F811
    site = json.loads(json.dumps(SITE))
    del site["defaults"]["Accessibility"]
    path = tmp_path / "site.json"
    path.write_text(json.dumps(site))
    argv = bridge_flags(broker, pki, hub, files)
    argv[argv.index("--site") + 1] = str(path)
    out = subprocess.run([sys.executable, "-m", "tools.bridge", *argv], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "charge_points.CP-A.Accessibility: missing" in out.stdout
