"""Issue 16 item 8: the console at both ends. The firmware reads back-to-back lines at once
(no readline buffer hidden from select), so `quit` right after another command ends it cleanly;
over-long and non-UTF-8 lines are refused without their text; the simulator's console parser
(hypothesis) never puts more than a bounded, escaped piece of a line into an event."""

import json
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_sim import console
from host_sim.runner import ROOT, Simulation

INTERPRETERS = ("cpython", "micropython")


def _strict_json(obj):
    """The event as a strict UTF-8 JSON line (a lone surrogate cannot be encoded)."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(), max_size=3000), st.integers(1, 4))
def test_any_line_parses_or_gives_a_bounded_escaped_error(line, evses):
    try:
        console.parse(line, evses)
    except console.ConsoleError as e:
        _strict_json({"command": e.command, "message": e.message})
        assert len(e.command) <= console.SHOW_COMMAND + 25
        assert len(e.message) <= console.SHOW_MESSAGE + 25


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_any_bytes_through_surrogateescape_never_reach_an_event_raw(data):
    line = data.decode("utf-8", "surrogateescape")
    try:
        console.parse(line, 2)
    except console.ConsoleError as e:
        _strict_json({"command": e.command, "message": e.message})


def test_bad_lines_table():
    table = (
        ("x" * 1000000, "", "line of 1000000 characters, longer than 1024: ignored"),
        (b"tap \xff\xfe".decode("utf-8", "surrogateescape"), "",
         "not UTF-8 text (byte 0xFF at character 4): ignored"),
        ("tap \ud800", "", "not UTF-8 text (lone surrogate U+D800 at character 4): ignored"),
        ("q" * 100, "q" * 40 + "... (100 characters)", "unknown command"),
        ("a\x1bb", "a\x1bb", "unknown command"),  # json.dumps escapes it
    )
    for line, command, words in table:
        with pytest.raises(console.ConsoleError) as e:
            console.parse(line, 1)
        assert e.value.command == command and words in e.value.message, (line[:20], e.value)


@pytest.mark.slow
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_the_firmware_reads_back_to_back_lines_at_once(interpreter):
    with Simulation(interpreter=interpreter) as sim:
        sim.pump(0.2)
        start = len(sim.events)
        stdin = sim.fw.proc.stdin
        stdin.write(b"status\nstatus\nstatus\n" + b"\xff\xfe\n" + b"h" * 5000 + b"\n")
        stdin.flush()
        sim.pump(0.5)  # no further input: every line must be answered already
        new = sim.events[start:]
        assert len([e for e in new if e["ev"] == "snapshot"]) == 3, new
        said = [e["message"] for e in new if e["ev"] == "error" and e.get("kind") == "console"]
        assert said == ["console line of 2 bytes is not UTF-8 text: ignored",
                        "console line of 5000 bytes, longer than 128: ignored"], said
        assert max(e["loop_gap_max_ms"] for e in new if e["ev"] == "snapshot") < 50
        stdin.write(b"status\nquit\n")
        stdin.flush()
        t = time.monotonic()
        while sim.fw.poll() is None and time.monotonic() - t < 3:
            sim.pump(0.05)
        assert sim.fw.poll() == 0, "quit after another command must end the firmware itself"
        sim.quit_requested = True


@pytest.mark.slow
def test_the_command_line_escapes_and_cuts_what_it_echoes():
    data = b"\xff\xfe tap\n" + b"w" * 1000000 + b"\n" + b"zz\x07\n" + b"quit\n"
    res = subprocess.run([sys.executable, "-m", "host_sim", "run"], cwd=ROOT, input=data,
                         capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    events = [json.loads(line.decode("utf-8")) for line in res.stdout.splitlines()]
    for e in events:
        _strict_json(e)
    said = [e for e in events if e["ev"] == "error" and e.get("kind") == "command"]
    assert [e["message"] for e in said][:2] == [
        "not UTF-8 text (byte 0xFF at character 0): ignored",
        "line of 1000001 characters, longer than 1024: ignored"], said
    assert said[2]["command"] == "zz\x07"
    assert max(len(line) for line in res.stdout.splitlines()) < 2000
