"""Issue 16 item 5: files on flash at boot, through the real firmware process on both
interpreters. A local list with some malformed UIDs keeps the valid ones (reported once: the
next boot is quiet); an unreadable list file is moved aside and reported; the shell's own rule
is also checked in-process (an uplink update stays atomic: firmware/remote.py)."""

import json
import os

import pytest

from firmware import config
from firmware.shell import Shell
from firmware.store import Store
from host_sim.runner import Simulation
from tests.test_app import Board

pytestmark = pytest.mark.slow
INTERPRETERS = ("cpython", "micropython")
GOOD = ["04A1B2C3", "04D5E6F7"]


def boot(flash, interpreter):
    with Simulation(interpreter=interpreter, flash=str(flash)) as sim:
        sim.pump(0.3)
        return [e for e in sim.events if e.get("ev") == "error"]


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_half_bad_local_list_keeps_its_valid_uids_and_says_so_once(tmp_path, interpreter):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "authlist.json").write_text(json.dumps(
        {"version": 3, "uids": [GOOD[0], "0102030405", "zz" * 4, 7, GOOD[1]]}))
    errors = boot(flash, interpreter)
    said = [e for e in errors if e.get("kind") == "local_list"]
    assert len(said) == 1, errors
    assert "3 of 5 entries dropped, the valid 2 kept" in said[0]["message"]
    assert "0102030405" in said[0]["message"]
    stored = json.loads((flash / "locallist.json").read_text())
    assert stored == {"version": 3, "uids": GOOD}
    assert [e for e in boot(flash, interpreter) if e.get("kind") == "local_list"] == []


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_an_unreadable_local_list_is_moved_aside_and_reported(tmp_path, interpreter):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "authlist.json").write_text('{"version": 1, "uids": ["04A1B2C3"')
    errors = boot(flash, interpreter)
    said = [e for e in errors if e.get("kind") == "store"]
    assert len(said) == 1 and "authlist.json: not valid JSON" in said[0]["message"], errors
    assert os.path.exists(flash / "authlist.json.bad")


def _shell(tmp_path, data):
    cfg = config.load({"cp_id": "T1", "evses": [{"evse_id": "DE*ABC*E1*1"}]})
    store = Store(str(tmp_path))
    store.put("authlist", data)
    events = []
    shell = Shell(cfg, Board(1), store, out=lambda ev, **f: events.append(dict(f, ev=ev)))
    shell.boot(0)
    return shell, [e for e in events if e["ev"] == "error"]


def test_the_boot_rule_per_kind_of_bad_list(tmp_path):
    table = (
        # (list file, local list afterwards, error kind, words)
        ({"version": 1, "uids": GOOD}, GOOD, None, None),
        ({"version": 1, "uids": ["X" * 100000] + GOOD}, GOOD, "local_list", "1 of 3"),
        ({"version": 1, "uids": "04A1B2C3"}, [], "local_list", "list of UID strings"),
        ({"version": -1, "uids": GOOD}, [], "local_list", "version"),
        (["04A1B2C3"], [], "local_list", "'version' and 'uids'"),
    )
    for i, (data, after, kind, words) in enumerate(table):
        shell, errors = _shell(tmp_path / str(i), data)
        assert shell.core.local_list.uids() == after, data
        if kind is None:
            assert errors == [], errors
        else:
            assert len(errors) == 1 and errors[0]["kind"] == kind, (data, errors)
            assert words in errors[0]["message"] and len(errors[0]["message"]) < 600


def test_an_uplink_update_stays_atomic(tmp_path):
    shell, _ = _shell(tmp_path, {"version": 1, "uids": GOOD})
    acts = shell.feed("local_list", 0, {"full": True, "version": 2,
                                        "uids": [GOOD[0], "0102030405"]}, 0)
    assert [a for a in acts if a[0] == "error"] and shell.core.local_list.version == 1
    assert shell.core.local_list.uids() == GOOD
