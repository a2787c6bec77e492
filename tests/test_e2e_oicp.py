"""End to end, issue 12: Mosquitto (TLS, a password per device, the shipped ACL), the Hubject
simulator and the OICP bridge over mutual TLS (certificates made by the test, host_sim.pki), and a
simulated charge point with two EVSEs on CPython and on MicroPython (host_sim.chain).

Every body the bridge sent to Hubject and every acknowledgement it answered is also validated
against Hubject's OpenAPI files in ../shared (tests/oicp_spec.py; a missing spec skips that check
on a user's clone and fails under CI=true).
"""

import time

import pytest

from firmware import oicp_status as S
from host_sim.chain import Chain
from tests import brokers, oicp_spec

pytestmark = pytest.mark.slow

EVSE1 = "DE*SIM*E0001*1"
EVSE2 = "DE*SIM*E0001*2"
ROAMING = "04A1B2C3D4E5F6"
STRANGER = "DEADBEEF"
TOKEN = "04C0FFEE112233"
PROVIDER = "DE-ABC"
CARDS = {ROAMING: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER},
         TOKEN: {"status": "Authorized", "code": "000", "ProviderID": PROVIDER}}
USERS = {"bridge": "bridge-secret", "SIM01": "sim01-secret"}


@pytest.fixture(params=["cpython", "micropython"])
def chain(request, tmp_path):
    with brokers.mosquitto(tmp_path, tls=True, users=USERS) as broker:
        with Chain(tmp_path / "chain", interpreter=request.param, evses=2, cards=CARDS,
                   broker=broker, broker_users=USERS) as c:
            yield c


def _calls(chain, operation):
    return [c for c in chain.oicp_calls() if c.get("operation") == operation]


def _code(ack):
    return ((ack.get("body") or {}).get("StatusCode") or {}).get("Code")


def _check_spec(chain):
    """Every request the bridge sent and every answer it gave, against the OpenAPI files (the
    simulator has checked them against its own schemas already: `problems` must be empty)."""
    calls = chain.oicp_calls()
    assert calls
    for c in calls:
        assert not c.get("problems"), c
    oicp_spec.require_spec()
    for c in calls:
        op = c["operation"]
        if op in ("AuthorizeStart", "AuthorizeStop"):
            oicp_spec.assert_valid(op, c["body"])
        elif op in ("AuthorizeRemoteStart", "AuthorizeRemoteStop") and c.get("response"):
            oicp_spec.assert_valid(op, c["response"], response=True)


def test_card_authorized_by_hubject_charges_and_stops(chain):
    sim = chain.sim
    start = len(sim.events)
    sim.command_line("plug 1")
    sim.command_line("ev 1 charge")  # the EV already asks: tap -> closed is the whole chain
    chain.until(chain.event("state", start, evse=1), 5, "plugged")
    t_tap = chain.sim.now()
    sim.command_line("tap " + ROAMING)
    closed = chain.until(chain.event("contactor", start, evse=1, closed=True), 10, "closed")
    sim.command_line("remove")
    assert closed["t"] - t_tap < 1.5, "tap -> closed took {:.3f} s".format(closed["t"] - t_tap)
    starts = _calls(chain, "AuthorizeStart")
    assert len(starts) == 1
    body = starts[0]["body"]
    assert body["OperatorID"] == "DE*SIM" and body["EvseID"] == EVSE1
    assert body["Identification"] == {"RFIDMifareFamilyIdentification": {"UID": ROAMING}}
    sid = starts[0]["response"]["SessionID"]
    session = chain.until(chain.event("session_start", start, evse=1), 5, "session_start")
    assert session.get("session_id") == sid
    sim.command_line("wait 3")  # past the card guard (card_guard_ms 2000 after the removal)
    sim.command_line("tap " + ROAMING)
    chain.until(chain.event("session_end", start, evse=1), 10, "session_end")
    cdr = chain.until(chain.event("cdr", start), 10, "cdr")
    assert cdr["record"]["SessionID"] == sid
    # the bridge logged each OICP call with the UID masked to its last 4 hex digits
    logged = chain.bridge_lines("eRoamingAuthorizeStart")
    assert logged and all(ROAMING not in str(d) for d in chain.bridge.lines)
    _check_spec(chain)


def test_unknown_card_refused_with_102_and_the_evse_stays_usable(chain):
    sim = chain.sim
    start = len(sim.events)
    sim.command_line("plug 1")
    sim.command_line("tap " + STRANGER)
    auth = chain.until(chain.event("auth", start, evse=1, uid=STRANGER), 10, "refusal")
    assert auth["result"] != "accepted" and auth["code"] == "102"
    sim.command_line("remove")
    sim.command_line("tap " + ROAMING)
    chain.until(chain.event("session_start", start, evse=1), 10, "session_start")
    _check_spec(chain)


def test_remote_start_plug_charge_remote_stop_and_602_on_the_occupied_evse(chain):
    sim = chain.sim
    start = len(sim.events)
    t0 = time.monotonic()
    ack = chain.remote_start(EVSE2, TOKEN, provider=PROVIDER)
    elapsed_ms = (time.monotonic() - t0) * 1000
    assert _code(ack) == "000" and ack["body"]["Result"] is True, ack
    assert elapsed_ms < 3000, elapsed_ms
    sid = ack["SessionID"]
    sim.command_line("plug 2")
    chain.until(chain.event("session_start", start, evse=2), 10, "session_start")
    sim.command_line("ev 2 charge")
    chain.until(chain.event("contactor", start, evse=2, closed=True), 10, "closed")
    # the OCPI rule: the token of the remote start tapped at the same charge point within
    # 15 minutes is already authorized -- Hubject sees no AuthorizeStart for it
    busy = chain.remote_start(EVSE2, ROAMING, provider=PROVIDER)
    assert _code(busy) == "602", busy
    repeat = chain.remote_start(EVSE2, TOKEN, provider=PROVIDER, session_id=sid)
    assert _code(repeat) == "000", "a repeated SessionID gets the same answer: {}".format(repeat)
    stop = chain.remote_stop(EVSE2, sid, provider=PROVIDER)
    assert _code(stop) == "000", stop
    chain.until(chain.event("session_end", start, evse=2), 10, "session_end")
    assert _calls(chain, "AuthorizeStart") == []
    _check_spec(chain)


def test_tap_of_the_remote_start_token_needs_no_authorize_start(chain):
    sim = chain.sim
    start = len(sim.events)
    ack = chain.remote_start(EVSE1, TOKEN, provider=PROVIDER)
    assert _code(ack) == "000", ack
    sim.command_line("plug 1")
    chain.until(chain.event("session_start", start, evse=1), 10, "session_start")
    sim.command_line("tap " + TOKEN)  # the driver taps the contract's card at the same CP
    sim.command_line("wait 1")
    sim.command_line("remove")
    assert _calls(chain, "AuthorizeStart") == []


@pytest.mark.parametrize("interpreter", ["micropython"])
def test_failures_at_hubject_refuse_the_driver_with_the_right_code(tmp_path, interpreter):
    with brokers.mosquitto(tmp_path, tls=True, users=USERS) as broker, \
            Chain(tmp_path / "chain", interpreter=interpreter, evses=2, cards=CARDS,
                  broker=broker, broker_users=USERS,
                  sim_config={"connection_timeout_s": 120, "card_guard_ms": 0}) as chain:
        sim = chain.sim
        sim.command_line("plug 1")
        # the bridge passes Hubject's own StatusCode on when the answer has one, else maps the
        # failure (tools/bridge/oicp.py failure_code; the simulator's 500 carries 001, its 403
        # is an HTML page, its 404 carries 300)
        for fault, expected in ((dict(mode="http_500"), S.HUBJECT_SYSTEM_ERROR),
                                (dict(mode="status_only", code="017"), S.UNAUTHORIZED_ACCESS),
                                (dict(mode="http_403"), S.UNAUTHORIZED_ACCESS),
                                (dict(mode="http_404"), S.PARTNER_NOT_FOUND),
                                (dict(mode="malformed"), S.SYSTEM_ERROR),
                                (dict(mode="timeout", seconds=30), S.PARTNER_DID_NOT_RESPOND)):
            chain.control("POST", "/faults", dict(fault, operation="AuthorizeStart", count=1))
            start = len(sim.events)
            sim.command_line("tap " + ROAMING)
            auth = chain.until(chain.event("auth", start, evse=1), 20, "answer to " + str(fault))
            sim.command_line("remove")
            sim.command_line("wait 2.5")  # the reader sees the card gone (no resting card)
            assert auth["result"] != "accepted", (fault, auth)
            assert auth["code"] == expected, (fault, auth)
        # still usable: the next tap is authorized
        start = len(sim.events)
        sim.command_line("tap " + ROAMING)
        chain.until(chain.event("session_start", start, evse=1), 10, "session_start")


@pytest.mark.parametrize("interpreter", ["micropython"])
def test_remote_start_offline_unknown_and_malformed(tmp_path, interpreter):
    with brokers.mosquitto(tmp_path, tls=True, users=USERS) as broker, \
            Chain(tmp_path / "chain", interpreter=interpreter, evses=2, cards=CARDS,
                  broker=broker, broker_users=USERS) as chain:
        unknown = chain.remote_start("DE*SIM*E0009*1", TOKEN, provider=PROVIDER)
        assert _code(unknown) == "603", unknown
        before = len(chain.sim.events)
        bad = chain.control("POST", "/remote-start", {
            "ProviderID": PROVIDER, "EvseID": EVSE1,
            "raw": {"ProviderID": PROVIDER, "EvseID": EVSE1, "SessionID": "not-a-uuid"}})
        assert _code(bad) == "022", bad
        chain.sim.pump(0.5)
        assert not [e for e in chain.sim.events[before:] if e["ev"] in ("reply", "error")
                    and "remote" in str(e)], "a malformed RemoteStart reached the charge point"
        chain.sim.command_line("broker down")
        chain.until(chain.event("uplink", before, connected=False), 10, "link down")
        t0 = time.monotonic()
        off = chain.remote_start(EVSE1, TOKEN, provider=PROVIDER)
        assert _code(off) == "501", off
        assert time.monotonic() - t0 < 11.0
