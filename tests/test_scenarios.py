"""Every flow of the charging core, end to end: the real firmware process (CPython host board and
MicroPython unix port with .mpy files) against the virtual devices, driven by tests/scenarios/.

Each scenario runs in-process through host_sim.scenario so a failure shows the readable diff
(the expectation and the events seen in its window). One CLI run per interpreter checks the
`python -m host_sim` entry points themselves.
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from host_sim import scenario
from host_sim.runner import ROOT, RunnerError, Simulation

SCENARIOS = sorted(glob.glob(os.path.join(ROOT, "tests", "scenarios", "*.scn")))
INTERPRETERS = ("cpython", "micropython")

pytestmark = pytest.mark.slow


def known_bug(path):
    """(line, reason) from a `# KNOWN BUG line N: why` header, or None.

    A scenario that found a real firmware bug keeps its expectation and names the line where
    it fails; the test then expects exactly that failure (so the rest of the scenario still
    guards what works), and fails when the bug is gone so the marker gets removed."""
    with open(path) as f:
        for raw in f:
            m = KNOWN_BUG.match(raw)
            if m:
                return int(m.group(1)), m.group(2).strip()
    return None


KNOWN_BUG = re.compile(r"#\s*KNOWN BUG line (\d+):(.*)")
FAILED_LINE = re.compile(r"line (\d+):")


def _run(path, interpreter):
    """None if every expectation was met, else the failure text (a readable diff)."""
    with open(path) as f:
        options, steps = scenario.parse_scenario(f.read())
    try:
        with Simulation(interpreter=interpreter, evses=options["evses"],
                        reader=options["reader"], local_cards=options["local_cards"],
                        config=options["config"]) as sim:
            try:
                scenario.run_steps(sim, steps, options["timeout"])
            except scenario.ScenarioFailed as e:
                return str(e)
    except RunnerError as e:
        return "the runner: {}".format(e)
    return None


def _is_the_known_failure(failure, line):
    """The run failed at the marked line, or (for a crash) the firmware died at or before it."""
    m = FAILED_LINE.match(failure)
    if m and int(m.group(1)) == line:
        return True
    died = "the firmware died" in failure
    return died and (m is None or int(m.group(1)) <= line)


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: os.path.basename(p)[:-4])
def test_scenario(path, interpreter):
    name = os.path.basename(path)
    bug = known_bug(path)
    failure = _run(path, interpreter)
    if bug is None:
        if failure is not None:
            pytest.fail("{} ({}):\n{}".format(name, interpreter, failure), pytrace=False)
        return
    line, reason = bug
    if failure is None:
        pytest.fail("{} ({}) passed: the KNOWN BUG at line {} seems fixed, remove the marker"
                    .format(name, interpreter, line), pytrace=False)
    if not _is_the_known_failure(failure, line):
        pytest.fail("{} ({}) failed somewhere else than its KNOWN BUG line {}:\n{}".format(
            name, interpreter, line, failure), pytrace=False)
    pytest.xfail("KNOWN BUG ({} line {}): {}".format(name, line, reason))


def test_the_suite_covers_every_flow():
    names = {os.path.basename(p)[:-4] for p in SCENARIOS}
    assert names >= {
        "local_start_stop", "unknown_card", "connection_timeout", "pause_opens", "unplug_ends",
        "weld", "stuck", "diode", "pilot_short", "ignore_pwm_off", "meter_fail", "power_cut",
        "card_held", "two_evses", "rdm6300", "quick_pause"}


def test_a_failing_scenario_exits_nonzero_with_a_diff(tmp_path):
    bad = tmp_path / "bad.scn"
    bad.write_text("plug 1\nexpect contactor 1 closed within 0.5\n")
    res = subprocess.run([sys.executable, "-m", "host_sim", "scenario", str(bad)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "line 2: expect contactor 1 closed within 0.5" in res.stderr
    assert "none came" in res.stderr and '"ev": "ready"' not in res.stderr


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_cli_run_prints_json_events_and_reports_bad_commands(interpreter):
    script = "plug 1\nwait 0.5\nfly away\nplug 9\nstatus\nwait 0.5\nquit\n"
    res = subprocess.run(
        [sys.executable, "-m", "host_sim", "run", "--interpreter", interpreter,
         "--local-card", "04A1B2C3"],
        input=script, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    kinds = [e["ev"] for e in events]
    assert "ready" in kinds and "snapshot" in kinds
    assert [e["command"] for e in events if e["ev"] == "error" and e.get("kind") == "command"] \
        == ["fly", "plug"]
    assert any(e["ev"] == "ev" and e["action"] == "plug" for e in events)
    ts = [e["t"] for e in events]
    assert ts == sorted(ts)
