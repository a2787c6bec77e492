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
        ("power_cut 2.5", ("power_cut", (2.5,))),
        ("ev 2 ventilate", ("ev", (2, "ventilate"))),
        ("plug 1 nopp", ("plug", (1, None))),
        ("pp 2 50", ("pp", (2, 50))),
        ("pp 1 open", ("pp", (1, None))),
        ("meter ok", ("meter", ("ok",))),
        ("meter set 2 1234.5", ("meter", ("set", 2, 1234.5))),
        ("meter reset 1", ("meter", ("reset", 1))),
        ("contactor 1 make 50 release 300", ("contactor", (1, 50.0, 300.0))),
        ("contactor 2 release 0.5", ("contactor", (2, None, 0.5))),
        ("contactor 2 release 300 make 0", ("contactor", (2, 0.0, 300.0))),
        ("reader noise 16", ("reader", ("noise", 16))),
        ("reader dropout 0.4", ("reader", ("dropout", 0.4))),
        ("reader foreign", ("reader", ("foreign", None))),
        ("reader foreign zero_id", ("reader", ("foreign", "zero_id"))),
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
        ("ev 1 ventilation", "ev"), ("plug 1 pp", "plug"), ("plug 1 nopp 2", "plug"),
        ("pp 1", "pp"), ("pp 1 0", "pp"), ("pp 1 -5", "pp"), ("pp 1 1000000", "pp"),
        ("pp 1 22.5", "pp"), ("pp 3 220", "pp"), ("meter set 1", "meter"),
        ("meter set 1 -1", "meter"), ("meter set 1 1e7", "meter"), ("meter set 1 nan", "meter"),
        ("meter set 3 1", "meter"), ("meter reset", "meter"), ("meter reset 1 2", "meter"),
        ("meter", "meter"), ("meter fail 1", "meter"), ("contactor 1", "contactor"),
        ("contactor 1 make", "contactor"), ("contactor 1 make 10 make 20", "contactor"),
        ("contactor 1 open 10", "contactor"), ("contactor 1 make 6000", "contactor"),
        ("contactor 1 release inf", "contactor"), ("contactor x make 1", "contactor"),
        ("reader", "reader"), ("reader noise 0", "reader"), ("reader noise 4097", "reader"),
        ("reader noise 1.5", "reader"), ("reader dropout 0", "reader"),
        ("reader dropout 61", "reader"), ("reader dropout", "reader"),
        ("reader foreign bogus", "reader"), ("reader foreign zero_id x", "reader"),
        ("reader shake", "reader"), ("power_cut -1", "power_cut"),
        ("power_cut 1 2", "power_cut"), ("power_cut soon", "power_cut"),
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


WORDS = st.sampled_from(["meter", "set", "reset", "contactor", "make", "release", "reader",
                         "noise", "dropout", "foreign", "pp", "open", "plug", "nopp", "ev",
                         "ventilate", "power_cut", "zero_uid", "zero_id", "1", "2", "0", "-1",
                         "nan", "inf", "1e9", "0.5", "300", "4096"])


@given(st.lists(WORDS, min_size=1, max_size=6), st.sampled_from([None, "pn532", "rdm6300"]))
def test_console_new_commands_either_parse_or_name_themselves(words, reader):
    """Word soup from the new commands' vocabulary: a tuple or one ConsoleError naming the
    command, never another exception."""
    line = " ".join(words)
    try:
        cmd = console.parse(line, evses=2, reader=reader)
    except console.ConsoleError as e:
        assert e.command == words[0] and e.message
        return
    assert cmd[0] == words[0]


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**7))


@given(NUMBERS)
def test_console_numbers_are_range_checked(x):
    """Every numeric argument is accepted exactly within its documented range."""
    text = repr(x)
    cases = [
        ("meter set 1 " + text, 0 <= x <= console.MAX_KWH, ("meter", ("set", 1, x))),
        ("contactor 1 make " + text, 0 <= x <= console.MAX_TRAVEL_MS,
         ("contactor", (1, x, None))),
        ("reader dropout " + text, 0 < x <= console.MAX_DROPOUT_S, ("reader", ("dropout", x))),
        ("power_cut " + text, 0 <= x <= console.MAX_WAIT_S, ("power_cut", (x,))),
        ("pp 1 " + text, isinstance(x, int) and 1 <= x <= console.MAX_PP_OHMS,
         ("pp", (1, x))),
        ("reader noise " + text, isinstance(x, int) and 1 <= x <= console.MAX_NOISE_BYTES,
         ("reader", ("noise", x))),
    ]
    for line, ok, want in cases:
        if ok:
            assert console.parse(line, evses=1) == want, line
        else:
            with pytest.raises(console.ConsoleError):
                console.parse(line, evses=1)


def test_reader_foreign_kinds_depend_on_the_reader():
    assert console.parse("reader foreign zero_uid", reader="pn532") == (
        "reader", ("foreign", "zero_uid"))
    assert console.parse("reader foreign truncated", reader="rdm6300") == (
        "reader", ("foreign", "truncated"))
    for line, reader in (("reader foreign zero_uid", "rdm6300"),
                         ("reader foreign truncated", "pn532")):
        with pytest.raises(console.ConsoleError, match="wrong_cmd|bad_checksum"):
            console.parse(line, reader=reader)
    assert console.parse("reader foreign wrong_cmd")[1] == ("foreign", "wrong_cmd")  # unknown
    _, steps = scenario.parse_scenario("set reader rdm6300\nreader foreign zero_id\n")
    assert steps[0][2] == ("reader", ("foreign", "zero_id"))
    with pytest.raises(scenario.ScenarioSyntaxError, match="line 2"):
        scenario.parse_scenario("set reader rdm6300\nreader foreign zero_uid\n")


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


def test_no_and_exactly_without_within_wait_for_the_default_window():
    """`expect no` / `expect exactly` without `within` wait until start + the default window
    (`set timeout`), so an event that comes late in it is seen, not missed."""
    late = [{"t": 3.0, "ev": "auth", "evse": 1, "result": "accepted"},
            {"t": 4.0, "ev": "auth", "evse": 1, "result": "accepted"}]
    for text, why in [
        ("tap 04A1B2C3\nexpect no auth", "exactly 0"),
        ("tap 04A1B2C3\nexpect exactly 1 auth", "saw 2"),
        ("tap 04A1B2C3\nwait 0.5\nexpect exactly 1 auth", "saw 2"),  # wait keeps the window
        ("set timeout 3.5\ntap 04A1B2C3\nexpect exactly 1 auth", "saw 1"),  # passes, then:
    ]:
        options, steps = scenario.parse_scenario(text)
        sim = _Clocked(late)
        if why == "saw 1":
            scenario.run_steps(sim, steps, options["timeout"])
            assert sim.now() == pytest.approx(3.5, abs=0.06)  # it waited for its window
            continue
        with pytest.raises(scenario.ScenarioFailed) as info:
            scenario.run_steps(sim, steps, options["timeout"])
        assert why in str(info.value), text
        assert sim.now() >= 5.0  # it waited for the whole default window
    # after the window: counts at once what fell into it; later events are outside
    _, steps = scenario.parse_scenario("tap 04A1B2C3\nwait 6\nexpect no auth within 2")
    sim = _Clocked(late)
    scenario.run_steps(sim, steps)
    assert sim.now() == pytest.approx(6.0, abs=0.01)


def test_windows_start_at_the_last_command_but_wait_or_at_mark():
    timeline = [{"t": 1.0, "ev": "cdr"}, {"t": 2.5, "ev": "cdr"}]
    # `mark` at 2: only the second cdr is in the new window
    _, steps = scenario.parse_scenario("tap 04A1B2C3\nwait 2\nmark\nexpect exactly 1 cdr")
    scenario.run_steps(_Clocked(timeline), steps)
    # a command other than wait starts a new window as well
    _, steps = scenario.parse_scenario("tap 04A1B2C3\nwait 2\nremove\nexpect exactly 1 cdr")
    sim = _Clocked(timeline)
    scenario.run_steps(sim, steps)
    assert sim.commands == [("tap", ("04A1B2C3",)), ("wait", (2.0,)), ("remove", ())]
    # wait does not: both are in the tap's window
    _, steps = scenario.parse_scenario("tap 04A1B2C3\nwait 2\nexpect exactly 2 cdr")
    scenario.run_steps(_Clocked(timeline), steps)


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

    # what the real DeviceBench returns, where the runner puts it into its event
    RETURNS = {
        "contactor_timing": lambda n, make, release: (make or 20.0, release or 20.0),
        "reader_noise": lambda n: bytes(n),
        "reader_dropout": lambda s: 100.0 + s,
        "reader_foreign": lambda kind: (kind or "wrong_cmd", b"\x00\xff"),
    }
    REFUSE = ("reader_dropout",)  # ... after the first call: "no card on the reader"

    def __getattr__(self, name):
        if name not in ("tap", "remove", "plug", "pp", "ev", "fault", "clear", "meter_ok",
                        "meter_set", "power_off", "power_restore", "flush") + tuple(self.RETURNS):
            raise AttributeError(name)

        def record(*args):
            if name in self.REFUSE and any(c[0] == name for c in self.calls):
                raise ValueError("no card on the reader (tap one first)")
            self.calls.append((name,) + args)
            stamp = args[0] if name in ("power_off", "power_restore") else self.clock()
            self.pending.append((stamp, {"what": name}))
            return self.RETURNS[name](*args) if name in self.RETURNS else None
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


def test_runner_routes_the_new_commands_with_one_event_each():
    lines = ["ev 1 ventilate", "plug 2 nopp", "pp 2 50", "pp 2 open", "meter set 2 1234.5",
             "meter reset 1", "contactor 1 make 50 release 300", "contactor 2 release 1",
             "reader noise 8", "reader dropout 0.4", "reader foreign", "reader foreign zero_uid",
             "reader dropout 0.4", "reader foreign truncated", "meter set 1 -3"]
    with _sim(evses=2) as sim:
        first = len(sim.events)
        for line in lines:
            sim.command_line(line)
        calls = sim.bench.calls
        events = [e for e in sim.events[first:] if e["ev"] != "sim"]
    assert calls == [
        ("ev", 1, "ventilate"), ("plug", 2, None), ("pp", 2, 50), ("pp", 2, None),
        ("meter_set", 2, 1234.5), ("meter_set", 1, 0.0), ("contactor_timing", 1, 50.0, 300.0),
        ("contactor_timing", 2, None, 1.0), ("reader_noise", 8), ("reader_dropout", 0.4),
        ("reader_foreign", None), ("reader_foreign", "zero_uid")]
    fields = [{k: v for k, v in e.items() if k != "t"} for e in events]
    assert fields == [
        {"ev": "ev", "evse": 1, "action": "ventilate"},
        {"ev": "ev", "evse": 2, "action": "plug", "cable_a": None, "pp_ohms": None},
        {"ev": "ev", "evse": 2, "action": "pp", "pp_ohms": 50},
        {"ev": "ev", "evse": 2, "action": "pp", "pp_ohms": None},
        {"ev": "device", "evse": 2, "meter": "set", "kwh": 1234.5},
        {"ev": "device", "evse": 1, "meter": "reset", "kwh": 0.0},
        {"ev": "device", "evse": 1, "contactor": "timing", "make_ms": 50.0, "release_ms": 300.0},
        {"ev": "device", "evse": 2, "contactor": "timing", "make_ms": 20.0, "release_ms": 1.0},
        {"ev": "reader", "action": "noise", "bytes": 8},
        {"ev": "reader", "action": "dropout", "seconds": 0.4, "until": 100.4},
        {"ev": "reader", "action": "foreign", "kind": "wrong_cmd", "hex": "00ff"},
        {"ev": "reader", "action": "foreign", "kind": "zero_uid", "hex": "00ff"},
        # refused by the device, refused at the edge by the console (wrong reader kind, range)
        {"ev": "error", "kind": "command", "command": "reader",
         "message": "no card on the reader (tap one first)"},
        {"ev": "error", "kind": "command", "command": "reader", "message": fields[-2]["message"]},
        {"ev": "error", "kind": "command", "command": "meter", "message": fields[-1]["message"]},
    ]
    assert "truncated" in fields[-2]["message"] and "0..999999" in fields[-1]["message"]


def test_power_cut_cuts_the_devices_before_the_restart_and_waits_the_outage():
    with _sim() as sim:
        first = len(sim.events)
        sim.command_line("power_cut 0.5")
        calls = [c[0] for c in sim.bench.calls]
        events = sim.events[first:]
        restore_t = [t for t, f in [(e["t"], e.get("what")) for e in events]
                     if f == "power_restore"]
    assert calls == ["power_off", "flush", "power_restore"]
    cut = _first(events, "power_cut")
    assert cut["outage_s"] == 0.5 and cut["status"] == -9
    off = _first(events, "sim")
    assert off["what"] == "power_off" and off["t"] == cut["t"]  # the devices are cut at t
    assert restore_t and restore_t[0] >= cut["t"] + 0.5  # the outage lasted
    ready = [e for e in events if e["ev"] == "ready"]
    assert len(ready) == 1 and ready[0]["t"] >= restore_t[0]
    assert events[-1]["ev"] == "restart"


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


# -- the real devices: a power cut is the whole controller losing power ------------------
def _simio_client(bench):
    import serial

    return serial.Serial(bench.ports["simio"], 115200, timeout=0)


def _lines_until(bench, ser, want, timeout_s=2.0):
    """Run the hub until the firmware side has read a line `want`; returns every line read."""
    got = []
    buf = bytearray()
    ok = bench.hub.run_until(lambda: _read_into(ser, buf, got) or want in got, timeout_s)
    assert ok, (want, got)
    return got


def _read_into(ser, buf, got):
    n = ser.in_waiting
    if n:
        buf += ser.read(n)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            got.append(line.decode())
    return False


def test_device_bench_power_cut_drops_coil_pilot_current_and_reader():
    from host_sim.runner import DeviceBench

    bench = DeviceBench(evses=1, reader="pn532", with_reader=True, clock=time.monotonic)
    try:
        evse, meter = bench.evses[0], bench.meters[0]
        bench.contactor_timing(1, 20.0, 200.0)
        bench.plug(1, 32)
        bench.ev(1, "charge")
        bench.tap("04A1B2C3")
        with _simio_client(bench) as ser:
            ser.write(b"hello\npwm 1 267\ncoil 1 1\n")  # what the firmware does: 16 A offered
            _lines_until(bench, ser, "mirror 1 0")
            assert bench.hub.run_until(lambda: meter.power_w() > 0, 1.0)
            cut = bench.clock()
            bench.power_off(cut)
            bench.flush()
            kwh = meter.import_kwh()
            assert bench.drain_events()[-1] == (cut, {"what": "coil", "evse": 1, "on": 0,
                                                      "cause": "power_cut"})
            assert evse.contactor.coil is False and evse.lines(cut)["cp"] == (0, 0)
            assert bench.reader.status()["supplied"] is False
            # the mains open after the release time; nothing is sent to the dead firmware
            assert bench.hub.run_until(lambda: not evse.contactor.main_closed(bench.clock()),
                                       1.0)
            assert bench.clock() - cut >= 0.2
            bench.hub.run_for(0.1)
            assert ser.in_waiting == 0
            assert meter.import_kwh() == kwh and meter.power_w() == 0.0  # stopped counting
            bench.power_restore(bench.clock())
            st = bench.reader.status()
            assert st["supplied"] and st["power"] == "sleep" and st["card"] == "04a1b2c3"
            assert evse.powered is False  # until the firmware drives the lines again
            ser.write(b"hello\n")
            got = _lines_until(bench, ser, "mirror 1 1")
            assert got == ["cp 1 9000 9000", "pp 1 220", "mirror 1 1"]  # B1: no PWM yet
            assert evse.powered and meter.import_kwh() == kwh
    finally:
        bench.close()


def test_power_cut_with_the_real_firmware_stops_the_energy_during_the_outage():
    """CPython firmware: charging at 16 A, then `power_cut 1`: at the cut the coil is off,
    the pilot and the reader unpowered; the meter counts nothing during the outage and the
    boot after it."""
    seen = {}

    def on_event(event):
        if event["ev"] == "power_cut":
            evse = sim.bench.evses[0]
            seen["at_cut"] = (evse.contactor.coil, evse.powered,
                              sim.bench.reader.status()["supplied"])
            seen["kwh"] = sim.bench.meters[0].import_kwh()

    def pump_until(kind, **fields):
        deadline = sim.now() + 5
        while sim.now() < deadline:
            if any(e["ev"] == kind and fields.items() <= e.items() for e in sim.events):
                return
            sim.pump(0.02)
        raise AssertionError("no {} {} in {}".format(kind, fields, sim.events))

    sim = Simulation(local_cards=["04A1B2C3"], on_event=on_event)
    with sim:
        sim.command_line("plug 1")
        sim.command_line("tap 04A1B2C3")
        pump_until("auth", result="accepted")
        sim.command_line("remove")
        sim.command_line("ev 1 charge")
        pump_until("mirror", state="closed")
        sim.pump(0.3)
        before = sim.bench.meters[0].import_kwh()
        assert sim.bench.meters[0].power_w() > 0 and before > 0
        sim.command_line("power_cut 1")
        after_restart = sim.bench.meters[0].import_kwh()
        events = list(sim.events)
    assert seen["at_cut"] == (False, False, False)
    cut = _first(events, "power_cut")
    drop = [e for e in events if e["ev"] == "sim" and e.get("cause") == "power_cut"]
    assert [(e["evse"], e["on"], e["t"]) for e in drop] == [(1, 0, cut["t"])]
    # energy only up to the cut (a few ms after `before`), none in the >= 1 s after it
    assert after_restart == seen["kwh"]
    assert seen["kwh"] - before < 3680 * 0.05 / 3.6e6  # < 50 ms at 3.68 kW
    assert _first(events, "restart")["t"] >= cut["t"] + 1.0
