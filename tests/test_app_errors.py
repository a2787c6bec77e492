"""firmware.app.main: a start-up that fails says why in one `error` line, kind "config" for a
configuration that cannot be used -- refused by config.load or by the board's wiring, one
ConfigError class for both -- and "startup" for anything else (CPython)."""

import json
import os

import pytest

from firmware.app import main

CONFIG = {"cp_id": "T1", "evses": [{"evse_id": "DE*ABC*E1*1"}], "meter": {"type": "none"}}


def _start(tmp_path, capsys, config, *args):
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as e:
        main(["--board", "host", "--flash", str(tmp_path)] + list(args))
    assert e.value.code == 2
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 1 and lines[0]["ev"] == "error", lines
    return lines[0]


def test_a_field_config_load_refuses_is_a_config_error(tmp_path, capsys):
    err = _start(tmp_path, capsys, dict(CONFIG, cp_id=""))
    assert err["kind"] == "config" and "cp_id" in err["message"]


def test_a_field_the_board_cannot_wire_is_a_config_error_too(tmp_path, capsys):
    master, slave = os.openpty()
    try:  # a reader is configured (pn532, the default) but no reader port is given
        err = _start(tmp_path, capsys, CONFIG, "--simio-port", os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)
    assert err["kind"] == "config" and err["message"].startswith("config.json: reader: ")


def test_anything_else_is_a_startup_error(tmp_path, capsys):
    err = _start(tmp_path, capsys, None)  # no config.json at all
    assert err["kind"] == "startup"
    err = _start(tmp_path, capsys, CONFIG, "--bogus", "1")
    assert err["kind"] == "startup" and "--bogus" in err["message"]
