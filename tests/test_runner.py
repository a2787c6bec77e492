"""The simulator's runner, console and scenario language (CPython only: real processes).

The runner mechanics (stamping, bad commands, power cut, firmware death, clean exit) are tested
against a fake firmware and a fake device bench so a failure here points at the runner itself;
tests/test_scenarios.py runs the real firmware with the real devices.
"""

import json
import os
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host_sim import console, scenario
from host_sim.runner import ROOT, RunnerError, Simulation

FAKE_FW = os.path.join(ROOT, "tests", "fakes", "fake_firmware.py")


# -- console ------------------------------------------------------------------------------
def test_console_parses_every_command():
    table = [
        ("tap 04a1b2c3", ("tap", ("04A1B2C3",))),
        ("tap 1000860F4444  # rdm6300 style", ("tap", ("1000860F4444",))),
        ("remove", ("remove", ())),
        ("plug 2", ("plug", (2, 32))),
        ("plug 1 13", ("plug", (1, 13))),
        ("ev 1 pause", ("ev", (1, "pause"))),
        ("fault 2 ignore_pwm_off", ("fault", (2, "ignore_pwm_off"))),
        ("clear 1", ("clear", (1,))),
        ("meter fail", ("meter", ("fail",))),
        ("power_cut", ("power_cut", (0.0,))),
        ("wait 1.5", ("wait", (1.5,))),
        ("status", ("status", ())),
        ("quit", ("quit", ())),
        ("   # only a comment", None),
        ("", None),
    ]
    for line, want in table:
        assert console.parse(line, evses=2) == want, line


def test_console_rejects_bad_lines_naming_the_command():
    table = [
        ("fly 1", "fly"), ("tap", "tap"), ("tap 123", "tap"), ("tap 04A1B2CZ", "tap"),
        ("plug 3", "plug"), ("plug 0", "plug"), ("plug 1 16", "plug"), ("plug x", "plug"),
        ("ev 1 fly", "ev"), ("ev 1", "ev"), ("fault 1 melt", "fault"), ("clear", "clear"),
        ("meter broken", "meter"), ("wait -1", "wait"), ("wait nan", "wait"),
        ("wait soon", "wait"), ("quit now", "quit"), ("remove 1", "remove"),
    ]
    for line, name in table:
        with pytest.raises(console.ConsoleError) as info:
            console.parse(line, evses=2)
        assert info.value.command == name, line


@given(st.text(max_size=40))
def test_console_never_raises_anything_but_console_error(line):
    try:
        console.parse(line, evses=2)
    except console.ConsoleError as e:
        assert e.command == line.split("#")[0].split()[0]


# -- scenario language --------------------------------------------------------------------
def test_expectations_parse_shorthands_and_operators():
    table = [
        ("expect contactor 1 closed within 0.2", "contactor", 1, (("closed", "==", True),),
         None, 0.2),
        ("expect auth 1 rejected code 102", "auth", 1,
         (("result", "==", "rejected"), ("code", "==", 102)), None, None),
        ("expect session_end 1 reason EVDisconnected", "session_end", 1,
         (("reason", "==", "EVDisconnected"),), None, None),
        ("expect cdr energy_kwh >= 0.01", "cdr", None, (("energy_kwh", ">=", 0.01),), None,
         None),
        ("expect no contactor 1 closed within 2", "contactor", 1, (("closed", "==", True),), 0,
         2.0),
        ("expect exactly 1 cdr within 3", "cdr", None, (), 1, 3.0),
        ("expect error kind ~ meter", "error", None, (("kind", "~", "meter"),), None, None),
    ]
    for text, kind, evse, clauses, count, within in table:
        e = scenario.parse_expectation(1, text)
        assert (e.kind, e.evse, e.clauses, e.count, e.within) == (
            kind, evse, clauses, count, within), text


def test_bad_scenarios_are_syntax_errors_naming_the_line():
    table = [
        "expect", "expect contactor 1 ajar", "expect contactor 1 closed x", "expect x within y",
        "expect exactly cdr", "tap nothex!", "set evses 99", "plug 1\nset evses 2",
        "expect cdr energy_kwh >=",
    ]
    for text in table:
        with pytest.raises(scenario.ScenarioSyntaxError) as info:
            scenario.parse_scenario("# header\n" + text)
        assert "line" in str(info.value), text


def test_matching_looks_into_nested_records_and_compares_numbers():
    cdr = {"ev": "cdr", "session_id": "s1", "record": {"energy_kwh": 0.25, "EvseID": "E1"}}
    table = [
        ("expect cdr energy_kwh >= 0.01", True),
        ("expect cdr energy_kwh > 0.25", False),
        ("expect cdr record.EvseID E1", True),
        ("expect cdr record.EvseID ~ E", True),
        ("expect cdr session_id != s1", False),
        ("expect cdr missing 1", False),
        ("expect cdr 1", False),  # the cdr has no evse
    ]
    for text, want in table:
        assert scenario.parse_expectation(1, text).matches(cdr) is want, text
    closed = {"ev": "contactor", "evse": 1, "closed": True}
    assert scenario.parse_expectation(1, "expect contactor 1 closed").matches(closed)
    assert not scenario.parse_expectation(1, "expect contactor 1 open").matches(closed)
    assert not scenario.parse_expectation(1, "expect contactor 2 closed").matches(closed)


class _Clocked:
    """A simulation stand-in with a virtual clock: pump() advances it and delivers events."""

    def __init__(self, timeline):
        self.timeline = sorted(timeline, key=lambda e: e["t"])
        self.events = []
        self.t = 0.0
        self.fatal = None
        self.commands = []

    def now(self):
        return self.t

    def pump(self, seconds):
        self.t += max(seconds, 0.001)
        while self.timeline and self.timeline[0]["t"] <= self.t:
            self.events.append(self.timeline.pop(0))

    def command(self, cmd):
        self.commands.append(cmd)
        if cmd[0] == "wait":
            self.pump(cmd[1][0])


def test_windows_positive_negative_and_exact():
    timeline = [{"t": 0.15, "ev": "contactor", "evse": 1, "closed": True},
                {"t": 1.0, "ev": "cdr"}, {"t": 1.2, "ev": "cdr"}]
    ok = ("tap 04A1B2C3\nexpect contactor 1 closed within 0.2\nexpect no contactor 1 open "
          "within 0.5\nwait 1.5\nexpect exactly 2 cdr\n")
    _, steps = scenario.parse_scenario(ok)
    sim = _Clocked(timeline)
    scenario.run_steps(sim, steps)
    assert sim.commands == [("tap", ("04A1B2C3",)), ("wait", (1.5,))]
    for text, why in [
        ("tap 04A1B2C3\nexpect contactor 1 closed within 0.1", "none came"),
        ("tap 04A1B2C3\nexpect no contactor 1 closed within 0.5", "exactly 0"),
        ("tap 04A1B2C3\nwait 2\nexpect exactly 1 cdr", "saw 2"),
    ]:
        _, steps = scenario.parse_scenario(text)
        with pytest.raises(scenario.ScenarioFailed) as info:
            scenario.run_steps(_Clocked(timeline), steps)
        msg = str(info.value)
        assert why in msg and "line 2" in msg or "line 3" in msg, msg
        assert '"ev": "' in msg or "(none)" in msg  # the events in the window are listed


# -- the runner with a fake firmware and fake devices -------------------------------------
class FakeBench:
    def __init__(self, evses, reader, with_reader, clock):
        self.calls = []
        self.clock = clock
        self.pending = []
        self.ports = {"reader": "/dev/null-reader" if with_reader else None,
                      "meter": "/dev/null-meter", "simio": "/dev/null-simio"}
        self.closed = False

    def run_once(self, timeout_s):
        time.sleep(timeout_s)

    def drain_events(self):
        out, self.pending = self.pending, []
        return out

    def close(self):
        self.closed = True

    def __getattr__(self, name):
        if name not in ("tap", "remove", "plug", "ev", "fault", "clear", "meter_ok",
                        "power_off", "power_restore", "flush"):
            raise AttributeError(name)

        def record(*args):
            self.calls.append((name,) + args)
            self.pending.append((self.clock(), {"what": name}))
        return record


def _fake_command(interpreter, ports, flash, build_dir):
    return [sys.executable, FAKE_FW, "--flash", flash, "--reader-port", str(ports["reader"])], \
        dict(os.environ)


def _sim(**kw):
    kw.setdefault("bench_factory", FakeBench)
    return Simulation(command_factory=_fake_command, **kw)


def test_runner_stamps_events_and_routes_commands():
    with _sim(evses=2, local_cards=["04a1b2c3"]) as sim:
        assert sim.events[0]["ev"] == "ready" and sim.events[0]["evses"] == 2
        for line in ("tap 04A1B2C3", "plug 2 20", "ev 2 charge", "fault 1 weld", "clear 1",
                     "meter fail", "status", "bogus 1", "ev 3 charge", "wait 0.3"):
            sim.command_line(line)
        bench = sim.bench
        with open(os.path.join(sim.flash, "authlist.json")) as f:
            assert json.load(f) == {"version": 1, "uids": ["04A1B2C3"]}
        evs = sim.events
    assert bench.closed
    assert bench.calls == [("tap", "04A1B2C3"), ("plug", 2, 20), ("ev", 2, "charge"),
                           ("fault", 1, "weld"), ("clear", 1), ("meter_ok", False)]
    kinds = [e["ev"] for e in evs]
    assert kinds.count("sim") == 6
    assert {"ev": "state", "evse": 1, "state": "idle"}.items() <= _first(evs, "state").items()
    assert _first(evs, "snapshot")["argv"][0] == "--flash"
    errors = [e for e in evs if e["ev"] == "error"]
    assert [e["command"] for e in errors] == ["bogus", "ev"]
    ts = [e["t"] for e in evs]
    assert ts == sorted(ts) and all(round(t, 3) == t for t in ts)


def test_power_cut_restarts_on_the_same_flash_and_death_is_reported():
    with _sim() as sim:
        sim.command_line("power_cut")
        readies = [e for e in sim.events if e["ev"] == "ready"]
        assert [e["boots"] for e in readies] == [1, 2]
        assert [e["ev"] for e in sim.events if e["ev"] in ("power_cut", "restart")] == [
            "power_cut", "restart"]
        assert sim.fatal is None
        sim.fw.send("garble")
        sim.fw.send("die")
        deadline = time.monotonic() + 5
        while sim.fatal is None and time.monotonic() < deadline:
            sim.pump(0.05)
        assert sim.fatal is not None
        assert sim.fatal["status"] == 3 and "told to die" in sim.fatal["stderr"]
        assert any(e.get("kind") == "firmware_output" for e in sim.events)


def test_boot_timeout_and_bad_options_raise_runner_error():
    def silent(interpreter, ports, flash, build_dir):
        return [sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ)

    t0 = time.monotonic()
    with pytest.raises(RunnerError, match="ready"):
        with Simulation(bench_factory=FakeBench, command_factory=silent, boot_timeout_s=0.5):
            pass
    assert time.monotonic() - t0 < 5
    with pytest.raises(RunnerError, match="cpython"):
        Simulation(interpreter="micropython", reader_port="/dev/ttyUSB0")
    with pytest.raises(RunnerError):
        Simulation(evses=0)


def _first(events, kind):
    return next(e for e in events if e["ev"] == kind)


@pytest.mark.parametrize("reader", ("pn532", "rdm6300"))
def test_hub_status_calls_every_device_with_now(reader):
    """Hub.status() passes its time to each device's status(now): readers, SDM bus and simio."""
    from host_sim.runner import DeviceBench

    bench = DeviceBench(evses=2, reader=reader, with_reader=True, clock=time.monotonic)
    try:
        bench.plug(1, 32)
        st = bench.status()
        json.dumps(st)
        assert sorted(st) == ["meter", "reader", "simio"]
        assert all("path" in st[name]["port"] for name in st)
        evses = st["simio"]["device"]["evses"]
        assert [e["ev"]["plugged"] for e in evses] == [True, False]
        assert len(st["meter"]["device"]["meters"]) == 2
        assert ("sam" in st["reader"]["device"]) == (reader == "pn532")
    finally:
        bench.close()


def test_micropython_firmware_sees_only_the_build():
    """The unix port puts "" first on sys.path: run from the repo, `import firmware` would
    compile the sources in the heap instead of loading the .mpy image (it once did, silently).
    The firmware comes from the ROMFS image; only the launcher's folder is on MICROPYPATH."""
    from host_sim.runner import boot_dir, build_for_micropython, firmware_command
    from tools.build import IMAGE

    ports = {"reader": "/dev/null", "meter": "/dev/null", "simio": "/dev/null"}
    build_dir = os.path.join(ROOT, "build", "mpy")
    build_for_micropython(build_dir)
    argv, env = firmware_command("micropython", ports, "/tmp/flash", build_dir)
    assert env["MICROPYPATH"].split(":") == [boot_dir(build_dir), ".frozen"]
    assert argv[argv.index("-m") + 1:argv.index("-m") + 4] == [
        "romboot", os.path.join(build_dir, IMAGE), "firmware.app"]
    assert len(env["MPEVSE_ROM"]) == os.path.getsize(os.path.join(build_dir, IMAGE))
    assert list(env)[0] == "MPEVSE_ROM"
    assert os.listdir(boot_dir(build_dir)) == ["romboot.mpy"]
