"""Several bridge instances on one broker (issue 13 item 2), as real processes against Mosquitto
(the shipped ACL) and a stub Hubject over mutual TLS (helpers of tests/test_bridge.py):

- authorize requests are shared: each handled by exactly one instance, both get some;
- reply routing: a RemoteStart sent to instance A is answered with the charge point's reply
  although instance B receives that reply as well (B counts it `foreign` in its /status and
  drops it), and the same the other way round;
- a repeated RemoteStart (same SessionID) that lands on the other instance starts no second
  session: the charge point -- the real firmware on the host simulator -- answers a SessionID it
  already has with the same result, and that instance relays it;
- one instance killed (SIGKILL) in the middle of a stream of authorize requests: the other
  answers everything sent after the broker noticed, nothing is answered twice, and what was
  in flight on the killed one is simply unanswered (the charge point's deadline then applies
  its offline policy).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import urllib.request
import uuid

import pytest

from firmware import contract as C
from host_sim.chain import Chain
from tests import brokers
from tests.test_bridge import (  # noqa: F401  (module fixtures used by name)
    CP,
    EVSES,
    TIMEOUT,
    BridgeProcess,
    answer_command,
    authorize,
    bridge_argv,
    broker,
    cp,
    https,
    hubject,
    pki,
    remote_body,
    spy,
    start_path,
)

GROUP = "g"
REPLY_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def pair(broker, pki, hubject, cp, spy):  # noqa: F811
    """Instances `ma` and `mb` in one share group, each with its admin port."""
    procs = [BridgeProcess(bridge_argv(broker, pki, hubject.port, "--share-group", GROUP,
                                       "--instance-id", name, "--admin-listen", "127.0.0.1:0",
                                       "--reply-timeout-s", str(REPLY_TIMEOUT_S)))
             for name in ("ma", "mb")]
    try:
        for p in procs:
            p.ready = p.wait_line(lambda r: r.get("event") == "ready", what="ready line")
        yield procs
    finally:
        for p in procs:
            p.stop()


def _status(proc) -> dict:
    with urllib.request.urlopen(proc.ready["admin"] + "/status", timeout=TIMEOUT) as r:
        return json.loads(r.read())


def _until(pred, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, "not within {} s: {}".format(timeout, what)
        time.sleep(0.05)


def _handled(proc, uids) -> list[str]:
    """The UIDs (of `uids`) this instance called Hubject for (its log masks to 4 digits)."""
    with proc.cond:
        return [u for u in uids for r in proc.lines
                if r.get("event") == "oicp" and r.get("direction") == "out"
                and u[-4:] in str(r.get("Identification"))]


def test_each_authorize_handled_by_one_instance_and_both_work(pair, cp, spy, hubject):  # noqa: F811
    uids = ["0000A{:03d}".format(i) for i in range(12)]
    answers = [authorize(cp, uid)[0] for uid in uids]
    assert all(a["AuthorizationStatus"] == "Authorized" for a in answers)
    _until(lambda: len(_handled(pair[0], uids) + _handled(pair[1], uids)) >= len(uids),
           "a log line per request")  # the line follows the answer
    a, b = (_handled(p, uids) for p in pair)
    assert sorted(a + b) == uids  # every request exactly once across the two
    assert a and b, "the broker spreads the shared subscription: {} / {}".format(a, b)
    ids = [a["id"] for a in answers]
    downs = [json.loads(m.payload)["id"] for m in spy.received(C.down_topic(CP, "authorize"))]
    assert all(downs.count(i) == 1 for i in ids)  # one answer each on the charge point's topic
    called = [c for c in hubject.calls if str(c["body"].get("Identification")).find("0000A") > 0]
    assert len(called) == len(uids)


@pytest.mark.parametrize("via", [0, 1])
def test_remote_start_answered_by_the_instance_asked(pair, pki, cp, via):  # noqa: F811
    asked, other = pair[via], pair[1 - via]
    before_other, before_asked = _status(other)["commands"], _status(asked)["commands"]
    body = remote_body()
    start = len(cp.messages)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(https, asked, pki, start_path(), body)
        cmd = answer_command(cp, C.DOWN_REMOTE_START, start)
        status, ack = fut.result(TIMEOUT)
    assert status == 200 and ack["Result"] is True and ack["StatusCode"]["Code"] == "000"
    assert cmd["id"].startswith(asked.ready["instance_id"] + "-")  # the id names its instance
    # the other instance received the same reply and dropped it as not its own
    _until(lambda: _status(other)["commands"]["foreign"] == before_other["foreign"] + 1,
           "the other instance counts the reply foreign")
    after = _status(asked)["commands"]
    assert after["matched"] == before_asked["matched"] + 1 and after["pending"] == 0
    assert _status(other)["commands"]["matched"] == before_other["matched"]
    with other.cond:
        assert not [r for r in other.lines if r.get("SessionID") == body["SessionID"]]


def test_kill_one_instance_mid_stream(pair, cp, spy):  # noqa: F811
    """SIGKILL `ma` after a third of a stream of requests (one per 40 ms, each with its own
    ttl): `mb` answers everything sent once the broker dropped `ma`; nothing twice."""
    n, gap_s, kill_at = 45, 0.04, 15
    sent: list[tuple[str, float]] = []  # (request id, monotonic time sent)
    start = len(cp.messages)
    killed_at = 0.0
    for i in range(n):
        if i == kill_at:
            pair[0].proc.kill()
            pair[0].proc.wait(TIMEOUT)
            killed_at = time.monotonic()
        rid = "k-{}-{}".format(i, uuid.uuid4().hex[:6])
        msg = {"type": "authorize_start", "id": rid, "ttl_ms": 1500, "EvseID": EVSES[0],
               "Identification": {"RFIDMifareFamilyIdentification": {"UID": "0000B{:03d}"
                                                                        .format(i)}}}
        cp.publish(C.up_topic(CP, C.UP_AUTHORIZE), C.encode(msg))
        sent.append((rid, time.monotonic()))
        time.sleep(gap_s)

    def answered() -> list[str]:
        return [json.loads(m.payload)["id"]
                for m in cp.messages[start:] if m.topic == C.down_topic(CP, "authorize")]

    after_kill = [rid for rid, t in sent if t > killed_at + 0.5]
    _until(lambda: set(after_kill) <= set(answered()), "mb answers what came after the kill")
    time.sleep(0.3)  # a duplicate would come within milliseconds: give it the chance
    got = answered()
    assert len(got) == len(set(got)), "an answer twice"
    lost = [rid for rid, _ in sent if rid not in got]
    assert len(lost) <= 2, "only what was in flight on the killed instance: {}".format(lost)
    # the survivor still serves remote commands
    assert pair[1].proc.poll() is None and _status(pair[1])["mqtt"]["connected"]


# -- the real firmware: a repeated RemoteStart on the other instance ----------------------------
EVSE2 = "DE*SIM*E0001*2"
TOKEN = "04C0FFEE112233"
PROVIDER = "DE-ABC"
USERS = {"bridge": "bridge-secret", "SIM01": "sim01-secret"}


def _pumped(chain, fn, *args):
    """fn(*args) in a worker thread while this thread pumps the simulated charge point."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except Exception as e:  # handed to the test below, which raises it
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + TIMEOUT + 5
    while t.is_alive() and time.monotonic() < deadline:
        chain.sim.pump(0.02)
    assert not t.is_alive(), "no answer within the bound"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.slow
def test_repeat_on_other_instance_starts_no_second_session(tmp_path):
    with brokers.mosquitto(tmp_path, tls=True, users=USERS) as mq, \
            Chain(tmp_path / "chain", interpreter="cpython", evses=2,
                  cards={TOKEN: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER}},
                  broker=mq, broker_users=USERS,
                  bridge_args=["--share-group", GROUP]) as chain:
        ca = chain.pki["ca"]
        (cc, ck), (sc, sk) = chain.pki["cpo_client"], chain.pki["cpo_server"]
        second = BridgeProcess([
            "--broker", chain.broker_url, "--broker-ca", chain.broker_ca, "--broker-user",
            "bridge", "--broker-password", USERS["bridge"], "--operator-id", "DE*SIM",
            "--hubject-url", chain.hubject_url, "--client-cert", cc, "--client-key", ck,
            "--hubject-ca", ca, "--listen", "127.0.0.1:0", "--server-cert", sc,
            "--server-key", sk, "--client-ca", ca, "--instance-id", "bridge-2",
            "--share-group", GROUP])
        try:
            second.ready = second.wait_line(lambda r: r.get("event") == "ready",
                                            what="ready line")
            sim = chain.sim
            start = len(sim.events)
            first = chain.remote_start(EVSE2, TOKEN, provider=PROVIDER)  # via bridge-1
            assert first["body"]["StatusCode"]["Code"] == "000", first
            sid = first["SessionID"]
            ident = {"RFIDMifareFamilyIdentification": {"UID": TOKEN}}
            body = {"SessionID": sid, "ProviderID": PROVIDER, "EvseID": EVSE2,
                    "Identification": ident}
            status, ack = _pumped(chain, https, second, {"ca": ca, "hubject_client":
                                                         chain.pki["hubject_client"]},
                                  start_path(PROVIDER), body)
            assert status == 200 and ack["Result"] is True, ack
            assert ack["StatusCode"]["Code"] == "000" and ack["SessionID"] == sid
            line = second.wait_line(lambda r: r.get("event") == "oicp"
                                    and r.get("SessionID") == sid, what="bridge-2's call")
            assert line.get("cp_id") == "SIM01" and not line.get("repeat")  # asked the cp
            starts = [e for e in sim.events[start:] if e["ev"] == "session_start"]
            assert [e["session_id"] for e in starts] == [sid], starts
            # a new SessionID on the same EVSE, via bridge-2: the charge point says in use
            other = dict(body, SessionID=str(uuid.uuid4()))
            _, busy = _pumped(chain, https, second, {"ca": ca, "hubject_client":
                                                     chain.pki["hubject_client"]},
                              start_path(PROVIDER), other)
            assert busy["StatusCode"]["Code"] == "602", busy
            assert len([e for e in sim.events[start:] if e["ev"] == "session_start"]) == 1
        finally:
            second.stop()
