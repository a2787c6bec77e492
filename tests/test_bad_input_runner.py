"""Issue 16 item 7: the runner applies the firmware's own rules (imported, not copied) before it
starts anything, so what it accepts the firmware accepts: --local-card by firmware.ids, --evses
by firmware.config.MAX_EVSES, a --config's EVSE count against --evses, --flash a directory."""

import json
import os
import subprocess
import sys

import pytest

from firmware import config
from host_sim.runner import ROOT, RunnerError, Simulation


def _config(tmp_path, n):
    path = tmp_path / "cfg{}.json".format(n)
    path.write_text(json.dumps({"cp_id": "C1", "evses": [
        {"evse_id": "DE*ABC*E1*{}".format(i + 1)} for i in range(n)]}))
    return str(path)


def test_each_flag_is_checked_by_the_firmwares_rule(tmp_path):
    a_file = tmp_path / "flash-file"
    a_file.write_text("x")
    table = (
        ({"local_cards": ["0102030405"]}, "00000102030405"),
        ({"local_cards": ["04A1B2C3D4"]}, "8, 14 or 20"),
        ({"local_cards": ["04A1B2CZ"]}, "not a hex digit"),
        ({"local_cards": ["04" * 500]}, "--local-card"),
        ({"evses": 0}, "1..%d" % config.MAX_EVSES),
        ({"evses": config.MAX_EVSES + 1}, "1..%d" % config.MAX_EVSES),
        ({"evses": 8}, "the firmware's limit"),
        ({"flash": str(a_file)}, "not a directory"),
        ({"config_file": _config(tmp_path, 1), "evses": 2}, "has 1 EVSE(s) but --evses is 2"),
        ({"config_file": _config(tmp_path, 2)}, "give --evses 2"),
    )
    for kw, words in table:
        with pytest.raises(RunnerError) as e:
            Simulation(**kw)
        assert words in str(e.value), (kw, str(e.value))
        assert len(str(e.value)) < 600
    assert a_file.read_text() == "x"  # nothing touched


def test_what_the_runner_accepts_is_what_the_firmware_accepts():
    sim = Simulation(local_cards=["04a1b2c3", "0000100086F444"], evses=config.MAX_EVSES)
    assert sim.local_cards == ["04A1B2C3", "0000100086F444"]


def test_the_command_line_says_it_without_a_traceback(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("")
    for args, words in ((["--flash", str(a_file)], "not a directory"),
                        (["--local-card", "0102030405"], "00000102030405"),
                        (["--evses", "5"], "evses must be 1..4")):
        res = subprocess.run([sys.executable, "-m", "host_sim", "run"] + args, cwd=ROOT,
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert res.returncode == 2 and words in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    assert os.path.isfile(a_file)
