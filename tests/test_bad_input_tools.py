"""Issue 16 item 9: the bench tools' flags. A bad value gets a clear message naming the flag,
exit status 2 (argparse's), no traceback, and nothing written -- checked before any port is
opened; a meter answering garbage is a bad frame (5), not "no answer", and a babbling bus is
its own status (7) within the time-out instead of a hang."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.mpy import ROOT
from tests.test_meter_tool import PtySlave, run_tool

GOOD_LIST = {"version": 3, "uids": ["04A1B2C3"]}


def _cardreader(*args):
    return subprocess.run([sys.executable, "-m", "tools.cardreader", "--port",
                           "/dev/mpevse-no-such-port"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_cardreader_flags_table(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    bad_uid = tmp_path / "baduid.json"
    bad_uid.write_text(json.dumps({"version": 1, "uids": ["0102030405"]}))
    not_list = tmp_path / "notlist.json"
    not_list.write_text("[1, 2]")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    table = (
        (["--baud", "0"], "--baud must be 1200..921600, got 0"),
        (["--baud", "-9600"], "--baud must be 1200..921600, got -9600"),
        (["--baud", "nine"], "--baud: invalid int value"),
        (["--timeout", "nan"], "--timeout must be a number of seconds > 0"),
        (["--timeout", "inf"], "--timeout must be"),
        (["--timeout", "-1"], "--timeout must be"),
        (["--count", "-1"], "--count must be >= 0"),
        (["--enroll", str(bad_json)], "--enroll %s: not a local list" % bad_json),
        (["--enroll", str(bad_uid)], "8, 14 or 20"),
        (["--enroll", str(not_list)], "not a local list"),
        (["--enroll", str(tmp_path)], "cannot write there"),
        (["--enroll", str(tmp_path / "missing" / "x.json")], "cannot write there"),
    )
    if os.geteuid() != 0:  # root writes anywhere
        table += ((["--enroll", str(ro / "x.json")], "cannot write there"),)
    before = {p: p.read_bytes() for p in (bad_json, bad_uid, not_list)}
    for args, words in table:
        res = _cardreader(*args)
        assert res.returncode == 2 and words in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr and "no-such-port" not in res.stderr, args
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["bad.json", "baduid.json", "notlist.json", "ro"]


def test_an_enroll_that_cannot_be_written_names_the_file_not_the_port(tmp_path):
    from tools import cardreader

    path = tmp_path / "list.json"
    path.write_text(json.dumps(GOOD_LIST))
    (tmp_path / "list.json.tmp").mkdir()  # the write cannot happen
    with pytest.raises(cardreader.EnrollError) as e:
        cardreader.enroll(str(path), "04D5E6F7")
    assert str(e.value).startswith("--enroll %s: cannot write it" % path)
    assert json.loads(path.read_text()) == GOOD_LIST


def test_meter_flags_table():
    table = (
        (["--baud", "0"], "--baud must be 1200..115200, got 0"),
        (["--baud", "-9600"], "--baud must be 1200..115200, got -9600"),
        (["--interval", "nan"], "--interval must be a number of seconds"),
        (["--interval", "inf"], "--interval must be"),
        (["--interval", "-1"], "--interval must be"),
        (["--count", "-1"], "--count must be >= 0"),
        (["--timeout-ms", "0"], "--timeout-ms must be 1..60000"),
        (["--address", "0"], "--address must be 1..247"),
    )
    for args, words in table:
        res = run_tool("/dev/mpevse-no-such-port", "--model", "sdm120", *args)
        assert res.returncode == 2 and words in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_a_meter_answering_garbage_is_a_bad_frame_not_no_answer():
    with PtySlave(lambda req: [(5, b"\xff\x00" * 16)]) as slave:
        res = run_tool(slave.path, "--model", "sdm120", "--baud", "9600", "--timeout-ms", "200")
    assert res.returncode == 5, res.stderr
    assert "garbage: 32 bytes" in res.stderr and "no answer" not in res.stderr


@pytest.mark.slow
def test_a_babbling_bus_ends_within_the_timeout():
    with PtySlave(lambda req: []) as slave:
        stop = threading.Event()

        def babble():  # a byte every millisecond: never 4 ms of silence at 9600 Bd
            while not stop.is_set():
                os.write(slave.master, b"\x00")
                time.sleep(0.001)

        t = threading.Thread(target=babble, daemon=True)
        t.start()
        try:
            t0 = time.monotonic()
            res = run_tool(slave.path, "--model", "sdm120", "--baud", "9600", "--timeout-ms",
                           "300")
            took = time.monotonic() - t0
        finally:
            stop.set()
            t.join(2)
    assert res.returncode in (5, 7), res.stderr  # 5 if a gap let the request out
    assert took < 10
    if res.returncode == 7:
        assert "bus never silent" in res.stderr
