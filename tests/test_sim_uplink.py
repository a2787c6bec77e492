"""The simulator's side of the uplink (CPython only): the `--broker` options, the console's
`broker down|up|stall`, the network proxy between the firmware and its broker
(host_sim.netproxy), the `outbox` depth events and the restart after a reset exit (75).

The proxy is tested with plain loopback sockets (a stand-in broker whose connections the test
accepts itself); the runner with a fake firmware (tests/fakes/uplink_firmware.py) and a fake
device bench, so a failure here points at the simulator. Every wait is bounded: socket
time-outs, or a condition polled against a deadline.
"""

import json
import os
import select
import socket
import sys
import threading
import time

import pytest

from host_sim import console, netproxy, runner, scenario
from host_sim.netproxy import NetProxy, parse_broker_url
from host_sim.runner import ROOT, RunnerError, Simulation

UPLINK_FW = os.path.join(ROOT, "tests", "fakes", "uplink_firmware.py")
IO_S = 3.0  # socket time-out: anything that should happen does so in milliseconds
QUIET_S = 0.3  # how long "nothing passes" is watched
RESET = (ConnectionResetError, BrokenPipeError)


# -- console and options ------------------------------------------------------------------
def test_console_parses_broker_states():
    for state in ("down", "up", "stall"):
        assert console.parse("broker " + state) == ("broker", (state,))
    assert console.parse("broker stall  # black hole") == ("broker", ("stall",))
    for line in ("broker", "broker sideways", "broker down now", "broker DOWN", "broker 1"):
        with pytest.raises(console.ConsoleError) as info:
            console.parse(line)
        assert info.value.command == "broker" and "down|up|stall" in info.value.message


def test_broker_urls_are_checked_at_the_edge():
    good = [("mqtt://127.0.0.1:1883", ("mqtt", "127.0.0.1", 1883)),
            ("mqtts://localhost:8884", ("mqtts", "localhost", 8884)),
            ("mqtt://broker.example", ("mqtt", "broker.example", 1883)),
            ("mqtts://broker.example", ("mqtts", "broker.example", 8883))]
    for url, want in good:
        assert parse_broker_url(url) == want, url
    bad = ["127.0.0.1:1883", "http://localhost:1883", "mqtt://", "mqtt://:1883",
           "mqtt://host:0", "mqtt://host:65536", "mqtt://host:x", "mqtt://host/path",
           "mqtt://[::1]:1883", "mqtt://u:p@host:1883", "mqtt://host:1883 ", "mqtt://host:１"]
    for url in bad:
        with pytest.raises(ValueError):
            parse_broker_url(url)


def test_bad_broker_options_raise_runner_error_before_anything_starts(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    table = [
        (dict(broker="tcp://x:1"), "--broker"),
        (dict(cp_id="a/b"), "--cp-id"),
        (dict(cp_id="x" * 33), "--cp-id"),
        (dict(broker_ca=str(ca)), "without --broker"),
        (dict(broker_user="u", broker_password="p"), "without --broker"),
        (dict(broker="mqtt://localhost:1", broker_user="u"), "go together"),
        (dict(broker="mqtt://localhost:1", broker_password="p"), "go together"),
        (dict(broker="mqtt://localhost:1", broker_user="", broker_password="p"), "1-128"),
        (dict(broker="mqtt://localhost:1", broker_user="u", broker_password="p" * 129), "1-128"),
        (dict(broker="mqtts://localhost:1"), "--broker-ca"),
        (dict(broker="mqtt://localhost:1", broker_ca=str(ca)), "mqtts"),
        (dict(broker="mqtts://localhost:1", broker_ca=str(tmp_path / "nope")), "no such file"),
    ]
    for kwargs, why in table:
        with pytest.raises(RunnerError, match=why):
            Simulation(**kwargs)


def test_scenarios_set_the_broker_and_expect_the_new_events():
    options, steps = scenario.parse_scenario(
        "set broker mqtt://127.0.0.1:1883\nset cp_id CP-A\nset broker_user CP-A\n"
        "set broker_password secret-a\nbroker stall\nexpect net stall\n"
        "expect uplink disconnected within 5\nexpect uplink connected\n"
        "expect outbox depth 0\nexpect restart reset\n")
    assert (options["broker"], options["cp_id"], options["broker_user"],
            options["broker_password"], options["broker_ca"]) == (
        "mqtt://127.0.0.1:1883", "CP-A", "CP-A", "secret-a", None)
    assert steps[0][2] == ("broker", ("stall",))
    clauses = [s[2].clauses for s in steps[1:]]
    assert clauses == [(("state", "==", "stall"),), (("connected", "==", False),),
                       (("connected", "==", True),), (("depth", "==", 0),),
                       (("reason", "==", "reset"),)]
    for text in ("set broker http://x:1", "set cp_id a/b", "set broker mqtt://h:0",
                 "broker sideways", "set cp_id"):
        with pytest.raises(scenario.ScenarioSyntaxError, match="line 1"):
            scenario.parse_scenario(text)


# -- the proxy with plain sockets ---------------------------------------------------------
class StandIn:
    """A stand-in broker: a loopback listener; the test accepts its connections itself."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(IO_S)
        self.port = self.sock.getsockname()[1]
        self.address = (socket.AF_INET, ("127.0.0.1", self.port))
        self.url = "mqtt://127.0.0.1:{}".format(self.port)

    def accept(self):
        conn, _ = self.sock.accept()
        conn.settimeout(IO_S)
        return conn

    def pending(self, seconds=QUIET_S):
        """True if a connection waits to be accepted within `seconds`."""
        return bool(select.select([self.sock], [], [], seconds)[0])

    def close(self):
        self.sock.close()


@pytest.fixture
def link():
    broker = StandIn()
    proxy = NetProxy(broker.address, clock=time.monotonic).start()
    opened = []

    def connect():
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_S)
        opened.append(c)
        return c

    yield broker, proxy, connect
    proxy.close()
    broker.close()
    for c in opened:
        c.close()


def recv_exactly(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise EOFError("closed after {} of {} bytes".format(len(buf), n))
        buf += chunk
    return bytes(buf)


def quiet(sock, seconds=QUIET_S):
    """Nothing arrives on `sock` for `seconds` (no data, no EOF, no reset)."""
    return not select.select([sock], [], [], seconds)[0]


def reset_or_eof(sock):
    """What a peer sees after an abrupt close: a reset (or, at worst, EOF)."""
    try:
        return sock.recv(100) == b""
    except RESET:
        return True


def connect_is_reset(port):
    """A connection the proxy accepts and resets at once: the reset may even beat connect()."""
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=IO_S)
    except RESET:
        return True
    with client:
        return reset_or_eof(client)


def pair(broker, connect):
    client = connect()
    return client, broker.accept()


def events_until(proxy, want, timeout_s=IO_S):
    """Proxy events until one with all of `want`'s fields arrived (bounded)."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen += [e for _, e in proxy.drain_events()]
        if any(want.items() <= e.items() for e in seen):
            return seen
        time.sleep(0.01)
    raise AssertionError("no proxy event {} in {}".format(want, seen))


def test_proxy_passes_bytes_both_ways_in_order(link):
    broker, proxy, connect = link
    client, server = pair(broker, connect)
    payload = os.urandom(700 * 1024)  # more than the proxy holds per direction
    got = {}

    def read_all(sock, key):
        try:
            got[key] = recv_exactly(sock, len(payload))
        except (OSError, EOFError) as e:
            got[key] = e

    readers = [threading.Thread(target=read_all, args=(server, "up")),
               threading.Thread(target=read_all, args=(client, "down"))]
    for r in readers:
        r.start()
    client.sendall(payload)
    server.sendall(payload[::-1])
    for r in readers:
        r.join(IO_S * 3)
    assert not any(r.is_alive() for r in readers)
    assert got["up"] == payload and got["down"] == payload[::-1]
    # the proxy counts a chunk after its send returned, which may be just after the reader
    # got it: wait (bounded) for the counters instead of reading them once
    deadline = time.monotonic() + IO_S
    stats = proxy.status()
    while (stats["bytes_up"], stats["bytes_down"]) != (len(payload),) * 2 \
            and time.monotonic() < deadline:
        time.sleep(0.01)
        stats = proxy.status()
    assert stats["bytes_up"] == stats["bytes_down"] == len(payload)
    assert (stats["state"], stats["connections"], stats["accepted"]) == ("up", 1, 1)


def test_orderly_closes_pass_through_after_the_data(link):
    broker, proxy, connect = link
    client, server = pair(broker, connect)
    client.sendall(b"DISCONNECT")
    client.shutdown(socket.SHUT_WR)
    assert recv_exactly(server, 10) == b"DISCONNECT"
    assert server.recv(10) == b""  # EOF after the data
    events_until(proxy, {"conn": 1, "action": "closed", "by": "firmware"})
    client2, server2 = pair(broker, connect)
    server2.sendall(b"CONNACK refused")
    server2.close()
    assert recv_exactly(client2, 15) == b"CONNACK refused"
    assert client2.recv(10) == b""
    events_until(proxy, {"conn": 2, "action": "closed", "by": "broker"})


def test_down_resets_every_connection_and_refuses_new_ones_until_up(link):
    broker, proxy, connect = link
    conns = [pair(broker, connect) for _ in range(2)]
    assert proxy.set_state("down") == {"state": "down", "connections": 2, "closed": 2}
    for client, server in conns:
        assert reset_or_eof(client) and reset_or_eof(server)  # both ends, at once
    with pytest.raises(ConnectionRefusedError):
        connect()
    assert proxy.status()["connections"] == 0
    assert proxy.set_state("down")["closed"] == 0  # twice is harmless
    assert proxy.set_state("up") == {"state": "up", "connections": 0, "closed": 0}
    client, server = pair(broker, connect)  # reconnecting works again
    client.sendall(b"CONNECT")
    assert recv_exactly(server, 7) == b"CONNECT"
    server.sendall(b"CONNACK")
    assert recv_exactly(client, 7) == b"CONNACK"
    seen = events_until(proxy, {"conn": 3, "action": "open"})
    assert [e for e in seen if e["action"] == "closed"] == [
        {"conn": 1, "action": "closed", "by": "down"},
        {"conn": 2, "action": "closed", "by": "down"}]


def test_stall_passes_nothing_and_up_resumes_without_loss(link):
    broker, proxy, connect = link
    client, server = pair(broker, connect)
    client.sendall(b"before")
    assert recv_exactly(server, 6) == b"before"
    assert proxy.set_state("stall") == {"state": "stall", "connections": 1, "closed": 0}
    client.sendall(b"PINGREQ")
    server.sendall(b"PUBLISH")
    assert quiet(server) and quiet(client)  # the black hole: no data, no close
    late = connect()  # accepted by the proxy ...
    late.sendall(b"CONNECT")
    assert not broker.pending()  # ... but never connected upstream
    assert quiet(late)
    assert proxy.status()["connections"] == 2
    assert proxy.set_state("up") == {"state": "up", "connections": 2, "closed": 1}
    assert recv_exactly(server, 7) == b"PINGREQ"  # what waited goes on, in order
    assert recv_exactly(client, 7) == b"PUBLISH"
    assert reset_or_eof(late)  # its handshake never got through: reset
    assert not broker.pending(0.05)
    client.sendall(b"after")
    assert recv_exactly(server, 5) == b"after"
    again, server2 = pair(broker, connect)  # a new connection after the stall works
    again.sendall(b"x")
    assert recv_exactly(server2, 1) == b"x"


def test_stall_then_down_resets_the_frozen_connections_too(link):
    broker, proxy, connect = link
    client, server = pair(broker, connect)
    proxy.set_state("stall")
    late = connect()
    assert proxy.set_state("down") == {"state": "down", "connections": 2, "closed": 2}
    assert reset_or_eof(client) and reset_or_eof(server) and reset_or_eof(late)
    assert proxy.set_state("stall")["state"] == "stall"  # a black hole accepts again
    held = connect()
    assert quiet(held) and not broker.pending(0.05)


def test_an_unreachable_broker_resets_the_firmware_connection():
    holder = socket.socket()  # bound, never listening: connections to it are refused
    holder.bind(("127.0.0.1", 0))
    proxy = NetProxy((socket.AF_INET, holder.getsockname()), clock=time.monotonic).start()
    try:
        assert connect_is_reset(proxy.port)
        seen = events_until(proxy, {"action": "closed", "by": "broker_unreachable"})
        assert seen[-1]["error"] == "ECONNREFUSED"
        assert proxy.status()["upstream_failed"] == 1
    finally:
        proxy.close()
        holder.close()


def test_connections_beyond_the_limit_are_reset():
    broker = StandIn()
    proxy = NetProxy(broker.address, clock=time.monotonic, max_connections=2).start()
    try:
        kept = [socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_S)
                for _ in range(2)]
        assert connect_is_reset(proxy.port)
        events_until(proxy, {"conn": 3, "action": "closed", "by": "limit"})
        assert proxy.status()["reset_on_accept"] == 1
        for c in kept:
            c.close()
    finally:
        proxy.close()
        broker.close()


def test_close_ends_the_thread_and_every_connection(link):
    broker, proxy, connect = link
    client, server = pair(broker, connect)
    thread = proxy._thread
    proxy.close()
    assert not thread.is_alive()
    assert reset_or_eof(client) and reset_or_eof(server)
    with pytest.raises(ConnectionRefusedError):
        connect()
    with pytest.raises(netproxy.ProxyError):
        proxy.set_state("down", timeout_s=0.5)
    proxy.close()  # twice is harmless
    with pytest.raises(ValueError, match="up|down|stall"):
        proxy.set_state("sideways")


# -- the runner with a fake firmware ------------------------------------------------------
class Bench:
    """The device bench stand-in: records what the runner does to the devices."""

    def __init__(self, evses, reader, with_reader, clock):
        self.calls = []
        self.ports = {"reader": "/dev/null-reader", "meter": "/dev/null-meter",
                      "simio": "/dev/null-simio"}

    def run_once(self, timeout_s):
        time.sleep(timeout_s)

    def drain_events(self):
        return []

    def close(self):
        self.calls.append(("close",))

    def power_off(self, t):
        self.calls.append(("power_off",))

    def power_restore(self, t):
        self.calls.append(("power_restore",))

    def flush(self):
        self.calls.append(("flush",))


def _fake(*extra):
    def command(interpreter, ports, flash, build_dir):
        return [sys.executable, UPLINK_FW, "--flash", flash] + list(extra), dict(os.environ)
    return command


def _sim(command=None, **kw):
    return Simulation(bench_factory=Bench, command_factory=command or _fake(), **kw)


def pump_until(sim, match, start=0, timeout_s=IO_S * 2):
    """Pump until an event at index >= `start` for which match(event) is true (bounded);
    returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for e in sim.events[start:]:
            if match(e):
                return e
        start = len(sim.events)
        sim.pump(0.02)
    raise AssertionError("no matching event; saw {}".format(
        json.dumps(sim.events[-20:])))


def test_a_reset_exit_restarts_the_firmware_on_the_same_flash_without_a_power_cut():
    with _sim() as sim:
        flash = sim.flash
        assert sim.fw.send("reset")
        restart = pump_until(sim, lambda e: e["ev"] == "restart")
        assert sim.fatal is None
        assert {k: restart[k] for k in ("boot", "reason", "status")} == {
            "boot": 2, "reason": "reset", "status": 75}
        readies = [e for e in sim.events if e["ev"] == "ready"]
        assert [e["boots"] for e in readies] == [1, 2]  # same flash dir: the counter went on
        assert restart["exit_t"] <= readies[1]["t"] <= restart["t"]
        assert sim.bench.calls == []  # the power stayed: no device was cut or flushed
        assert not [e for e in sim.events if e["ev"] == "error"]
        assert sim.fw.send("reset")  # and again
        pump_until(sim, lambda e: e["ev"] == "restart" and e["boot"] == 3)
        sim.command_line("power_cut")  # a power cut still says so
        restarts = [e for e in sim.events if e["ev"] == "restart"]
        assert [e["reason"] for e in restarts] == ["reset", "reset", "power_cut"]
        assert sim.flash == flash and sim.fatal is None


def test_a_reset_exit_before_ready_is_a_death_not_a_restart_loop():
    sim = _sim(_fake("--reset-before-ready"), boot_timeout_s=5)
    with pytest.raises(RunnerError, match="died while booting"):
        with sim:
            pass
    assert sim.fatal["kind"] == "firmware_exit" and sim.fatal["status"] == 75
    assert sim.boot_count == 1


def test_broker_options_write_the_uplink_section_pointing_at_the_proxy(tmp_path):
    broker = StandIn()
    try:
        with _sim(broker=broker.url, cp_id="CP-A", evses=2) as sim:
            ready = sim.events[0]
            with open(os.path.join(sim.flash, "config.json")) as f:
                cfg = json.load(f)
            proxy_port = sim.net.port
        assert ready["cp_id"] == cfg["cp_id"] == "CP-A"
        assert [e["evse_id"] for e in cfg["evses"]] == ["DE*SIM*E0001*1", "DE*SIM*E0001*2"]
        assert cfg["uplink"] == {"url": "mqtt://127.0.0.1:{}".format(proxy_port),
                                 "ca_file": None}
        assert proxy_port != broker.port
    finally:
        broker.close()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    with _sim(broker="mqtts://localhost:8883", broker_ca=str(ca), broker_user="CP-A",
              broker_password="secret-a",
              config={"uplink": {"keepalive_s": 5}}) as sim:
        up = sim.events[0]["uplink"]
        assert up["url"] == "mqtts://localhost:{}".format(sim.net.port)  # the cert's name
        assert up["ca_file"] == os.path.join(sim.flash, runner.BROKER_CA)
        with open(up["ca_file"]) as f:
            assert f.read() == ca.read_text()
        assert (up["user"], up["password"], up["keepalive_s"]) == ("CP-A", "secret-a", 5)
        assert sim.events[0]["cp_id"] == "SIM01"  # the default stays
    with _sim(broker="mqtt://192.0.2.1:1883") as sim:  # a remote broker: via 127.0.0.1
        assert sim.events[0]["uplink"]["url"] == "mqtt://127.0.0.1:{}".format(sim.net.port)
    with pytest.raises(RunnerError, match="certificate"):
        with _sim(broker="mqtts://192.0.2.1:8883", broker_ca=str(ca)):
            pass


def test_a_config_file_gets_the_broker_and_cp_id(tmp_path):
    src = tmp_path / "config.json"
    src.write_text(json.dumps({"cp_id": "X", "evses": [{"evse_id": "DE*ABC*E1*1"}],
                               "uplink": {"keepalive_s": 7}}))
    with _sim(broker="mqtt://127.0.0.1:1", cp_id="CP-B", config_file=str(src)) as sim:
        with open(os.path.join(sim.flash, "config.json")) as f:
            cfg = json.load(f)
    assert cfg["cp_id"] == "CP-B" and cfg["evses"] == [{"evse_id": "DE*ABC*E1*1"}]
    assert cfg["uplink"]["keepalive_s"] == 7 and cfg["uplink"]["url"].startswith("mqtt://127.")
    src.write_text("{not json")
    with pytest.raises(RunnerError, match="cannot read --config"):
        with _sim(broker="mqtt://127.0.0.1:1", config_file=str(src)):
            pass


def test_broker_commands_cut_and_restore_the_firmware_connection():
    broker = StandIn()
    try:
        with _sim(broker=broker.url) as sim:
            assert sim.fw.send("connect")
            server = broker.accept()
            assert recv_exactly(server, 4) == b"ping"
            server.sendall(b"pong")
            up = pump_until(sim, lambda e: e["ev"] == "uplink")
            assert up["connected"] and up["got"] == "pong"
            sim.command_line("broker down")
            net = [e for e in sim.events if e["ev"] == "net"]
            assert [{k: v for k, v in e.items() if k != "t"} for e in net] == [
                {"ev": "net", "conn": 1, "action": "open"},
                {"ev": "net", "conn": 1, "action": "closed", "by": "down"},
                {"ev": "net", "state": "down", "connections": 1, "closed": 1}]
            assert reset_or_eof(server)
            sim.fw.send("recv")
            lost = pump_until(sim, lambda e: e["ev"] == "uplink" and not e["connected"])
            assert "Reset" in lost["reason"] or lost["reason"] == "closed"
            first = len(sim.events)
            sim.fw.send("connect")
            refused = pump_until(sim, lambda e: e["ev"] == "uplink", start=first)
            assert "Refused" in refused["reason"]
            sim.command_line("broker stall")
            sim.command_line("broker up")
            sim.fw.send("connect")
            server = broker.accept()
            assert recv_exactly(server, 4) == b"ping"
            server.sendall(b"back")
            back = pump_until(sim, lambda e: e["ev"] == "uplink" and e.get("got") == "back")
            assert back["connected"]
            sim.command_line("status")
            devices = pump_until(sim, lambda e: e["ev"] == "devices")
            assert devices["devices"]["net"]["state"] == "up"
            states = [e["state"] for e in sim.events if e["ev"] == "net" and "state" in e]
            assert states == ["down", "stall", "up"]
            server.close()
    finally:
        broker.close()


def test_a_failed_proxy_thread_is_reported_not_silent():
    broker = StandIn()
    try:
        with _sim(broker=broker.url) as sim:
            def boom():
                raise RuntimeError("boom")

            sim.net._accept = boom
            sim.fw.send("connect")
            error = pump_until(sim, lambda e: e["ev"] == "error" and e["kind"] == "net")
            assert "boom" in error["message"]
            sim.command_line("broker down")
            refused = [e for e in sim.events if e["ev"] == "error" and e["kind"] == "command"]
            assert refused[0]["command"] == "broker" and "boom" in refused[0]["message"]
            assert sim.fatal is None
    finally:
        broker.close()


def test_broker_commands_without_a_broker_are_refused_by_name():
    with _sim() as sim:
        sim.command_line("broker down")
        sim.command_line("broker sideways")
        errors = [e for e in sim.events if e["ev"] == "error"]
    assert [e["command"] for e in errors] == ["broker", "broker"]
    assert "--broker" in errors[0]["message"] and "down|up|stall" in errors[1]["message"]


def test_outbox_depth_events_come_from_status_asks_kept_to_the_runner():
    broker = StandIn()
    try:
        with _sim(broker=broker.url) as sim:
            pump_until(sim, lambda e: e["ev"] == "outbox" and e["depth"] == 0)
            for _ in range(2):
                sim.fw.send("add")
            pump_until(sim, lambda e: e["ev"] == "outbox" and e["depth"] == 2)
            sim.fw.send("ack")
            pump_until(sim, lambda e: e["ev"] == "outbox" and e["depth"] == 1)
            sim.command_line("status")  # the user's ask still answers with a snapshot
            mine = pump_until(sim, lambda e: e["ev"] == "snapshot")
            assert mine["outbox"] == 1 and mine["asked"] >= 4
            assert len([e for e in sim.events if e["ev"] == "snapshot"]) == 1
            depths = [e["depth"] for e in sim.events if e["ev"] == "outbox"]
            assert depths[0] == 0 and depths[-1] == 1
            assert all(depths[i] != depths[i + 1] for i in range(len(depths) - 1))  # changes
            # the firmware reports its depth itself: the runner stops asking
            sim.fw.send("say_outbox")
            pump_until(sim, lambda e: e["ev"] == "outbox", start=len(sim.events))
            sim.pump(0.1)  # an ask already on its way is answered
            first = len(sim.events)
            sim.command_line("status")
            before = pump_until(sim, lambda e: e["ev"] == "snapshot", start=first)
            sim.pump(runner.OUTBOX_POLL_S * 3)
            first = len(sim.events)
            sim.command_line("status")
            after = pump_until(sim, lambda e: e["ev"] == "snapshot", start=first)
            assert after["asked"] == before["asked"] + 1
            sim.fw.send("add")
            pump_until(sim, lambda e: e["ev"] == "outbox" and e["depth"] == 2,
                       start=len(sim.events))
    finally:
        broker.close()


def test_without_a_broker_the_runner_never_asks():
    with _sim() as sim:
        sim.pump(runner.OUTBOX_POLL_S * 3)
        sim.command_line("status")
        snap = pump_until(sim, lambda e: e["ev"] == "snapshot")
        assert snap["asked"] == 1
        assert not [e for e in sim.events if e["ev"] in ("outbox", "net")]


def test_a_scenario_file_runs_broker_commands_with_the_flag_winning(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "firmware_command", _fake())
    monkeypatch.setattr(runner, "default_bench", Bench)
    broker = StandIn()
    path = tmp_path / "net.scn"
    path.write_text("set broker mqtt://127.0.0.1:1  # the test's --broker wins\n"
                    "set cp_id CP-A\n"
                    "mark\n"
                    "expect outbox depth 0 within 3\n"
                    "broker down\n"
                    "expect net down within 1\n"
                    "expect exactly 0 error within 0.2\n"
                    "broker stall\n"
                    "expect net state stall\n"
                    "broker up\n"
                    "expect net up closed 0\n")
    try:
        assert scenario.main(str(path), broker=broker.url) == 0
        path.write_text("broker down\nexpect net down within 0.5\n")
        assert scenario.main(str(path)) == 1  # no broker: refused by name, the expect fails
    finally:
        broker.close()
