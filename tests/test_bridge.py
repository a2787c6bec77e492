"""The OICP bridge as a real process (`python -m tools.bridge`) against a real Mosquitto
(tests/brokers.py, the shipped ACL; the bridge logs in as the backend account `bridge`) and a
stub Hubject over mutual TLS (certificates from host_sim/pki.py). A paho client plays the
charge point: retained availability and birth, up/authorize requests, replies to remote
commands. Every wait is bounded and waits on a condition.

Covered: AuthorizeStart Authorized / 102 / each failure mapping (HTTP 401, 403, 404, 5xx,
status-only body, malformed body, time-out before ttl_ms, 429 retried, budget exhausted),
post-authorization and AuthorizeStop shapes; RemoteStart 000, 602 from the charge point, 501
offline (last will), 501 no reply within the bound, 603 unknown EvseID, 022 malformed
(nothing published), idempotent repeats; RemoteStop; UIDs masked in the log; plain http to a
non-loopback Hubject refused; the endpoints require Hubject's client certificate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from aiohttp import web

from firmware import contract as C
from host_sim import pki as PKI
from tests import brokers

REPO = Path(__file__).resolve().parent.parent
OP = "DE*SIM"
CP = "CP-A"
EVSES = ["DE*SIM*E0001*1", "DE*SIM*E0001*2"]
CP_B = "CP-B"
EVSES_B = ["DE*SIM*E0002*1"]
TIMEOUT = 10.0
REPLY_TIMEOUT_S = 1.5  # the bridge's bound for a charge point's reply in these tests


# -- a stub Hubject --------------------------------------------------------------------------------
class StubHubject:
    """An aiohttp HTTPS server on its own thread: answers AuthorizeStart/Stop by the UID's
    script (default: Authorized with a fresh SessionID), records every call."""

    def __init__(self, pki: dict):
        self.pki = pki
        self.calls: list[dict] = []
        self.scripts: dict[str, list] = {}  # UID -> [(status, body|bytes, delay_s), ...]
        self.cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def script(self, uid: str, *answers) -> None:
        with self.cond:
            self.scripts[uid] = list(answers)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        ident = body.get("Identification") or {}
        uid = (ident.get("RFIDMifareFamilyIdentification") or {}).get("UID")
        with self.cond:
            self.calls.append({"path": request.path, "body": body,
                               "peer_cn": _peer_cn(request)})
            self.cond.notify_all()
            todo = self.scripts.get(uid)
            answer = todo.pop(0) if todo else None
        if answer is None:
            sid = body.get("SessionID") or str(uuid.uuid4())
            answer = (200, {"SessionID": sid, "CPOPartnerSessionID":
                            body.get("CPOPartnerSessionID"), "EMPPartnerSessionID": None,
                            "ProviderID": "DE-8KZ", "AuthorizationStatus": "Authorized",
                            "StatusCode": {"Code": "000", "Description": "Success"},
                            "AuthorizationStopIdentifications": [ident]}, 0)
        status, payload, delay = answer
        if delay:
            await asyncio.sleep(delay)  # the scripted slowness of Hubject
        if isinstance(payload, (bytes, str)):
            return web.Response(status=status, body=payload,
                                headers={"Content-Type": "text/html"})
        return web.json_response(payload, status=status, headers={"Process-ID": "p-1"})

    def wait_calls(self, n: int, timeout: float = TIMEOUT) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.calls) < n:
                left = deadline - time.monotonic()
                assert left > 0, "stub Hubject: {} calls, {} expected".format(
                    len(self.calls), n)
                self.cond.wait(left)
            return list(self.calls)

    def start(self) -> StubHubject:
        ready = threading.Event()

        async def boot():
            app = web.Application()
            app.router.add_post("/api/oicp/charging/v21/operators/{op}/authorize/{verb}",
                                self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            chain, key = self.pki["hubject_server"]
            ctx = PKI.server_context(chain, key, client_ca=self.pki["ca"])
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
            await site.start()
            self.port = self._runner.addresses[0][1]

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(boot())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(TIMEOUT)
        return self

    def stop(self) -> None:
        async def down():
            if self._runner:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)


def _peer_cn(request: web.Request) -> str | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport else None
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


# -- the bridge process ----------------------------------------------------------------------------
class BridgeProcess:
    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.bridge", *argv], cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines: list[dict] = []
        self.raw: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.raw.append(line)
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    self.lines.append({"event": "not-json", "line": line})
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pred, timeout: float = TIMEOUT, what: str = "line") -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for rec in self.lines:
                    if pred(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError("bridge: no {} within {} s; stdout:\n{}\nstderr:\n{}"
                                         .format(what, timeout, "".join(self.raw[-30:]),
                                                 self._stderr()))
                self.cond.wait(min(left, 0.5))

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)


def bridge_argv(broker, pki, hubject_port, *extra) -> list[str]:
    chain, key = pki["cpo_client"]
    schain, skey = pki["cpo_server"]
    return ["--broker", broker.url, "--broker-user", brokers.BACKEND,
            "--broker-password", broker.password(brokers.BACKEND), "--operator-id", OP,
            "--hubject-url", "https://localhost:{}/api/oicp".format(hubject_port),
            "--client-cert", chain, "--client-key", key, "--hubject-ca", pki["ca"],
            "--listen", "127.0.0.1:0", "--server-cert", schain, "--server-key", skey,
            "--client-ca", pki["ca"], "--instance-id", "t1", *extra]


# -- fixtures (one broker, stub and bridge per module: the process start is the slow part) ---------
@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI.make_pki(str(tmp_path_factory.mktemp("pki")), operator_id=OP)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    brokers.require_mosquitto()
    with brokers.mosquitto(tmp_path_factory.mktemp("mosq")) as b:
        yield b


@pytest.fixture(scope="module")
def hubject(pki):
    stub = StubHubject(pki).start()
    yield stub
    stub.stop()


def birth(cp, evse_ids):
    return json.dumps({"cp_id": cp, "EvseIDs": evse_ids, "fw": "0.1.0",
                       "boot": uuid.uuid4().hex[:8]})


@pytest.fixture(scope="module")
def cp(broker):
    """Charge point CP-A: online, born with two EVSEs, listening to its downlink."""
    client = brokers.MqttClient(broker, CP, will=(C.availability_topic(CP), C.OFFLINE, 1, True))
    client.connect()
    # as the firmware's transport and Mosquitto do: no Nagle (else ~40 ms per message here)
    client.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.subscribe(C.down_filter(CP))
    client.publish(C.availability_topic(CP), C.ONLINE, retain=True)
    client.publish(C.birth_topic(CP), birth(CP, EVSES), retain=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def spy(broker):
    """The backend account watching every downlink (what the bridge published)."""
    with brokers.MqttClient(broker, brokers.BACKEND, client_id="spy") as client:
        client.subscribe(C.down_topic("+", "#"))
        yield client


@pytest.fixture(scope="module")
def bridge(broker, pki, hubject, cp, spy):
    # the births are retained before the bridge starts: it knows them at once (ready line)
    b = BridgeProcess(bridge_argv(broker, pki, hubject.port,
                                  "--reply-timeout-s", str(REPLY_TIMEOUT_S),
                                  "--hubject-timeout-ms", "3000"))
    b.ready = b.wait_line(lambda r: r.get("event") == "ready", what="ready line")
    yield b
    b.stop()


# -- helpers ---------------------------------------------------------------------------------------
def authorize(cp_client, uid, evse=EVSES[0], ttl_ms=5000, **extra) -> tuple[dict, float]:
    """Publish up/authorize as the charge point; (the down/authorize answer, seconds)."""
    rid = "r-" + uuid.uuid4().hex[:10]
    msg = {"type": "authorize_start", "id": rid, "ttl_ms": ttl_ms, "EvseID": evse,
           "Identification": {"RFIDMifareFamilyIdentification": {"UID": uid}}}
    msg.update(extra)
    start = len(cp_client.messages)
    t0 = time.monotonic()
    cp_client.publish(C.up_topic(CP, C.UP_AUTHORIZE), C.encode(msg))
    deadline = t0 + TIMEOUT
    while True:
        m = cp_client.wait_for(C.down_topic(CP, C.DOWN_AUTHORIZE),
                               timeout=max(0.01, deadline - time.monotonic()), start=start)
        body = json.loads(m.payload)
        if body["id"] == rid:
            return body, time.monotonic() - t0
        start = cp_client.messages.index(m) + 1


def https(bridge_proc, pki, path, body, cert=True, timeout=TIMEOUT,
          sent: threading.Event | None = None) -> tuple[int, dict]:
    """POST as Hubject (with its client certificate) to the bridge's endpoint."""
    port = int(bridge_proc.ready["listen"].rsplit(":", 1)[1])
    chain, key = pki["hubject_client"] if cert else (None, None)
    ctx = PKI.client_context(pki["ca"], chain, key)
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", "/api/oicp" + path, data,
                     {"Content-Type": "application/json"})
        if sent is not None:
            sent.set()
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def start_path(provider="DE-8KZ"):
    return "/charging/v21/providers/{}/authorize-remote/start".format(provider)


def stop_path(provider="DE-8KZ"):
    return "/charging/v21/providers/{}/authorize-remote/stop".format(provider)


def remote_body(evse=EVSES[1], sid=None, **over):
    body = {"SessionID": sid or str(uuid.uuid4()), "ProviderID": "DE-8KZ", "EvseID": evse,
            "EMPPartnerSessionID": "emp-1", "CPOPartnerSessionID": None,
            "Identification": {"RemoteIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7"},
                               "QRCodeIdentification": None}}
    body.update(over)
    return body


def answer_command(cp_client, kind, start, code="000", result=None):
    """Wait for the bridge's down/<kind> and reply with `code`; the command."""
    m = cp_client.wait_for(C.down_topic(CP, kind), start=start)
    cmd = json.loads(m.payload)
    ok = code == "000" if result is None else result
    cp_client.publish(C.up_topic(CP, C.UP_REPLY), C.encode(
        C.reply(cmd["id"], ok, code, "x", session_id=cmd.get("SessionID"))))
    return cmd


def oicp_lines(bridge_proc, **match):
    with bridge_proc.cond:
        return [r for r in bridge_proc.lines if r.get("event") == "oicp"
                and all(r.get(k) == v for k, v in match.items())]


# -- charge point -> Hubject -----------------------------------------------------------------------
def test_ready_line(bridge):
    r = bridge.ready
    assert r["listen"].startswith("https://127.0.0.1:") and not r["listen"].endswith(":0")
    assert r["charge_points"] >= 1 and r["mutual_tls_in"] is True
    assert "mpevse/+/up/authorize" in r["subscriptions"]


def test_authorize_start_authorized(bridge, hubject, cp):
    n = len(hubject.calls)
    ans, _ = authorize(cp, "04a1b2c3d4e5f6")
    assert ans["AuthorizationStatus"] == "Authorized" and ans["StatusCode"]["Code"] == "000"
    assert ans["ProviderID"] == "DE-8KZ" and uuid.UUID(ans["SessionID"])
    assert ans["AuthorizationStopIdentifications"] == [
        {"RFIDMifareFamilyIdentification": {"UID": "04A1B2C3D4E5F6"}}]
    call = hubject.wait_calls(n + 1)[n]
    assert call["path"] == "/api/oicp/charging/v21/operators/DE*SIM/authorize/start"
    assert call["body"] == {"OperatorID": OP, "EvseID": EVSES[0], "Identification": {
        "RFIDMifareFamilyIdentification": {"UID": "04A1B2C3D4E5F6"}}}
    assert call["peer_cn"] == OP  # our client certificate (mutual TLS)


def test_post_authorization_and_stop_shapes(bridge, hubject, cp):
    n = len(hubject.calls)
    local = str(uuid.uuid4())
    ans, _ = authorize(cp, "04A1B2C3D4E5F7", CPOPartnerSessionID=local)
    assert ans["AuthorizationStatus"] == "Authorized"
    sid = ans["SessionID"]
    ans2, _ = authorize(cp, "04A1B2C3D4E5F7", type="authorize_stop", SessionID=sid,
                        CPOPartnerSessionID=local)
    assert ans2["AuthorizationStatus"] == "Authorized" and ans2["SessionID"] == sid
    calls = hubject.wait_calls(n + 2)[n:]
    assert calls[0]["body"]["CPOPartnerSessionID"] == local
    assert "SessionID" not in calls[0]["body"]
    assert calls[1]["path"].endswith("/authorize/stop")
    assert calls[1]["body"]["SessionID"] == sid
    assert calls[1]["body"]["CPOPartnerSessionID"] == local


def test_not_authorized_102(bridge, hubject, cp):
    hubject.script("8A3F21C9", (200, {"AuthorizationStatus": "NotAuthorized", "SessionID": None,
                                      "ProviderID": None, "StatusCode": {
                                          "Code": "102", "Description": "invalid UID"}}, 0))
    ans, _ = authorize(cp, "8A3F21C9")
    assert ans["AuthorizationStatus"] == "NotAuthorized" and ans["StatusCode"]["Code"] == "102"
    assert "SessionID" not in ans and "ProviderID" not in ans


@pytest.mark.parametrize("uid,answer,code", [
    ("0000A401", (401, {"StatusCode": {"Code": "017", "Description": "Unauthorized"}}, 0),
     "017"),
    ("0000A403", (403, b"<html>Forbidden</html>", 0), "017"),
    ("0000A404", (404, {"StatusCode": {"Code": "300", "Description": "Partner not found"}}, 0),
     "300"),
    ("0000A500", (500, b"oops", 0), "320"),
    ("0000A501", (500, {"StatusCode": {"Code": "001"}}, 0), "001"),
    ("0000A503", (503, b"", 0), "320"),
    ("0000A200", (200, {"StatusCode": {"Code": "300", "Description": "x"}}, 0), "300"),
    ("0000A222", (200, b"{not json", 0), "021"),
    ("0000A223", (200, {"AuthorizationStatus": "Maybe", "StatusCode": {"Code": "000"}}, 0),
     "021"),
])
def test_failure_mapping(bridge, hubject, cp, uid, answer, code):
    hubject.script(uid, answer)
    ans, _ = authorize(cp, uid)
    assert ans["AuthorizationStatus"] == "NotAuthorized"
    assert ans["StatusCode"]["Code"] == code


def test_timeout_answers_before_ttl(bridge, hubject, cp):
    n = len(hubject.calls)
    hubject.script("0000B001", (200, {"AuthorizationStatus": "Authorized"}, 3.0))
    ans, took = authorize(cp, "0000B001", ttl_ms=1200)
    assert ans["StatusCode"]["Code"] == "310" and ans["AuthorizationStatus"] == "NotAuthorized"
    assert took < 1.2  # before the charge point's deadline
    hubject.wait_calls(n + 1)
    assert len(hubject.calls) == n + 1  # not retried


def test_429_is_retried_within_the_deadline(bridge, hubject, cp):
    n = len(hubject.calls)
    hubject.script("0000C429", (429, {"StatusCode": {"Code": "320"}}, 0))
    ans, _ = authorize(cp, "0000C429", ttl_ms=5000)
    assert ans["AuthorizationStatus"] == "Authorized"
    assert len(hubject.wait_calls(n + 2)) == n + 2


def test_no_time_left_answers_320_without_calling_hubject(bridge, hubject, cp):
    n = len(hubject.calls)
    ans, took = authorize(cp, "0000E001", ttl_ms=100)  # less than the way back needs
    assert ans["StatusCode"]["Code"] == "320" and took < 1.0
    assert len(hubject.calls) == n


def test_bad_requests_never_reach_hubject(bridge, hubject, cp):
    n = len(hubject.calls)
    ans, _ = authorize(cp, "12345ABCD")  # not a UIDType
    assert ans["StatusCode"]["Code"] == "022"
    ans, _ = authorize(cp, "04A1B2C3", evse="DE*SIM*E0002*1")  # CP-B's EVSE, not CP-A's
    assert ans["StatusCode"]["Code"] == "022"
    ans, _ = authorize(cp, "04A1B2C3", evse="DE*XYZ*E1*1")  # another operator
    assert ans["StatusCode"]["Code"] == "022"
    assert len(hubject.calls) == n


def test_log_masks_uids(bridge, cp):
    authorize(cp, "04D00D1E5EC4E7")
    rec = bridge.wait_line(lambda r: r.get("event") == "oicp" and "C4E7" in str(
        r.get("Identification")), what="log line")
    assert rec["operation"] == "eRoamingAuthorizeStart" and rec["direction"] == "out"
    assert rec["Identification"] == "RFIDMifareFamilyIdentification:**********C4E7"
    for key in ("SessionID", "EvseID", "StatusCode", "http_status", "latency_ms"):
        assert key in rec
    with bridge.cond:
        text = "".join(bridge.raw)
    assert "04D00D1E5EC4E7" not in text and "04A1B2C3D4E5F6" not in text
    assert "bridge-secret" not in text and "PRIVATE KEY" not in text


# -- Hubject -> charge point -----------------------------------------------------------------------
def test_remote_start_000_and_idempotent(bridge, pki, cp, spy):
    body = remote_body()
    start = len(cp.messages)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(https, bridge, pki, start_path(), body)
        cmd = cp.wait_for(C.down_topic(CP, C.DOWN_REMOTE_START), start=start)
        sent = threading.Event()
        second = pool.submit(https, bridge, pki, start_path(), body, sent=sent)
        assert sent.wait(TIMEOUT)  # the repeat is on its way while the first waits for the cp
        answer_command(cp, C.DOWN_REMOTE_START, start)
        s1, a1 = first.result(TIMEOUT)
        s2, a2 = second.result(TIMEOUT)
    command = json.loads(cmd.payload)
    assert command["SessionID"] == body["SessionID"] and command["EvseID"] == EVSES[1]
    assert command["Identification"] == {
        "RemoteIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7"}}
    assert command["ProviderID"] == "DE-8KZ" and command["EMPPartnerSessionID"] == "emp-1"
    assert s1 == s2 == 200 and a1 == a2
    assert a1["Result"] is True and a1["StatusCode"]["Code"] == "000"
    assert a1["SessionID"] == body["SessionID"] and a1["EMPPartnerSessionID"] == "emp-1"
    s3, a3 = https(bridge, pki, start_path(), body)  # a repeat after the answer
    assert a3 == a1
    published = [m for m in spy.received(C.down_topic("+", C.DOWN_REMOTE_START))
                 if json.loads(m.payload)["SessionID"] == body["SessionID"]]
    assert len(published) == 1


def test_remote_start_602_from_the_charge_point(bridge, pki, cp):
    body = remote_body(evse=EVSES[0])
    start = len(cp.messages)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(https, bridge, pki, start_path(), body)
        answer_command(cp, C.DOWN_REMOTE_START, start, code="602")
        status, ack = fut.result(TIMEOUT)
    assert status == 200 and ack["Result"] is False and ack["StatusCode"]["Code"] == "602"
    assert ack["SessionID"] == body["SessionID"]


def test_remote_start_no_reply_501_within_bound(bridge, pki, cp, spy):
    body = remote_body()
    n = len(spy.received(C.down_topic(CP, C.DOWN_REMOTE_START)))
    t0 = time.monotonic()
    status, ack = https(bridge, pki, start_path(), body)  # CP-A never replies
    took = time.monotonic() - t0
    assert ack["Result"] is False and ack["StatusCode"]["Code"] == "501"
    assert REPLY_TIMEOUT_S - 0.1 < took < REPLY_TIMEOUT_S + 1.0
    assert len(spy.received(C.down_topic(CP, C.DOWN_REMOTE_START))) == n + 1


def test_remote_start_offline_501_at_once(broker, bridge, pki, spy):
    # CP-B is born and online, then dies: its last will says offline (retained)
    with brokers.MqttClient(broker, CP_B) as b:
        b.publish(C.availability_topic(CP_B), C.ONLINE, retain=True)
        b.publish(C.birth_topic(CP_B), birth(CP_B, EVSES_B), retain=True)
    sock, code = brokers.raw_connect(
        broker.host, broker.port, client_id="cpb-will", username=CP_B,
        password=broker.password(CP_B),
        will=(C.availability_topic(CP_B), C.OFFLINE, 1, True))
    assert code == 0
    start = len(spy.messages)
    with brokers.MqttClient(broker, brokers.BACKEND, client_id="will-watch") as w:
        w.subscribe(C.availability_topic(CP_B))
        sock.close()  # abrupt: the broker publishes the will
        seen = 0
        while True:
            m = w.wait_for(C.availability_topic(CP_B), start=seen)
            seen = w.messages.index(m) + 1
            if m.payload == C.OFFLINE:
                break
    t0 = time.monotonic()
    status, ack = https(bridge, pki, start_path(), remote_body(evse=EVSES_B[0]))
    assert ack["Result"] is False and ack["StatusCode"]["Code"] == "501"
    assert time.monotonic() - t0 < 1.0
    assert not [m for m in spy.messages[start:] if m.topic.startswith(C.tree(CP_B))]


def test_remote_start_unknown_evse_603(bridge, pki, spy):
    start = len(spy.messages)
    status, ack = https(bridge, pki, start_path(), remote_body(evse="DE*SIM*E9999*1"))
    assert status == 200 and ack["Result"] is False and ack["StatusCode"]["Code"] == "603"
    assert spy.messages[start:] == []


@pytest.mark.parametrize("path,body", [
    (start_path(), b"{not json"),
    (start_path(), b"[1, 2]"),
    (start_path("DE-XYZ"), remote_body()),  # path providerID != body ProviderID
    (start_path(), remote_body(SessionID=None)),
    (start_path(), remote_body(evse="DE*ABC*E0001*1")),  # not our operator
    (start_path(), remote_body(evse="garbage")),
    (start_path(), remote_body(Identification={
        "RemoteIdentification": {"EvcoID": "DE-8KZ-C12AB34CD-7"},
        "RFIDMifareFamilyIdentification": {"UID": "04A1B2C3"}})),
    (start_path(), remote_body(Identification={})),
    (stop_path(), {"SessionID": "x", "ProviderID": "DE-8KZ", "EvseID": EVSES[0]}),
])
def test_malformed_remote_022_nothing_published(bridge, pki, spy, path, body):
    start = len(spy.messages)
    status, ack = https(bridge, pki, path, body)
    assert status == 200 and ack["Result"] is False and ack["StatusCode"]["Code"] == "022"
    assert spy.messages[start:] == []


def test_remote_stop(bridge, pki, cp):
    sid = str(uuid.uuid4())
    body = {"SessionID": sid, "ProviderID": "DE*8KZ", "EvseID": EVSES[1],
            "CPOPartnerSessionID": "cpo-9"}
    for code in ("000", "400"):
        start = len(cp.messages)
        body["SessionID"] = sid if code == "000" else str(uuid.uuid4())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(https, bridge, pki, stop_path("DE*8KZ"), body)
            cmd = answer_command(cp, C.DOWN_REMOTE_STOP, start, code=code)
            status, ack = fut.result(TIMEOUT)
        assert cmd == {"id": cmd["id"], "SessionID": body["SessionID"], "EvseID": EVSES[1]}
        assert ack["Result"] is (code == "000") and ack["StatusCode"]["Code"] == code
        assert ack["CPOPartnerSessionID"] == "cpo-9"
    assert oicp_lines(bridge, operation="eRoamingAuthorizeRemoteStop", StatusCode="400")


def test_endpoint_requires_hubject_client_certificate(bridge, pki):
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https(bridge, pki, start_path(), remote_body(), cert=False, timeout=5)


# -- separate processes ----------------------------------------------------------------------------
def test_budget_exhausted_answers_320_at_once(broker, pki, hubject, cp):
    b = BridgeProcess(bridge_argv(broker, pki, hubject.port, "--budget",
                                  "AuthorizeStart=1/min", "--instance-id", "t2"))
    try:
        b.wait_line(lambda r: r.get("event") == "ready", what="ready line")
        # both bridges get every request (no shared subscription): look at t2's log only
        authorize(cp, "0000D001")
        b.wait_line(lambda r: r.get("event") == "oicp" and r.get("StatusCode") == "000",
                    what="first call")
        authorize(cp, "0000D002")
        rec = b.wait_line(lambda r: r.get("event") == "oicp" and r.get("StatusCode") == "320",
                          what="320 for the second call")
        assert "http_status" not in rec  # nothing was sent
        assert rec["latency_ms"] < 100
    finally:
        b.stop()


def test_plain_http_to_remote_hubject_refused(broker):
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bridge", "--broker", broker.url, "--operator-id", OP,
         "--hubject-url", "http://hubject.example.com/api/oicp", "--listen", "127.0.0.1:0"],
        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    err = json.loads(proc.stdout.splitlines()[-1])
    assert err["event"] == "error" and "loopback" in err["message"]


def test_shared_group_hands_each_request_to_one_instance(broker, pki, hubject, cp):
    procs = [BridgeProcess(bridge_argv(broker, pki, hubject.port, "--share-group", "g",
                                       "--instance-id", name)) for name in ("t3", "t4")]
    uids = ["0000F00{}".format(i) for i in range(6)]

    def handled(p):
        with p.cond:
            return [u for u in uids for r in p.lines
                    if r.get("event") == "oicp" and u[-4:] in str(r.get("Identification"))]

    try:
        for p in procs:
            p.wait_line(lambda r: r.get("event") == "ready", what="ready line")
        for uid in uids:
            authorize(cp, uid)
        deadline = time.monotonic() + TIMEOUT
        while len(handled(procs[0]) + handled(procs[1])) < len(uids):
            assert time.monotonic() < deadline, (handled(procs[0]), handled(procs[1]))
            with procs[0].cond:  # wake on t3's next line, or look again after 50 ms
                procs[0].cond.wait(0.05)
        got = handled(procs[0]) + handled(procs[1])
        assert sorted(got) == uids  # each request went to exactly one of the two
    finally:
        for p in procs:
            p.stop()
