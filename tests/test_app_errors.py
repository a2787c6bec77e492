"""firmware.app.main: a start-up that fails says why in one `error` line, kind "config" for a
configuration that cannot be used -- refused by config.load or by the board's wiring, one
ConfigError class for both -- and "startup" for anything else (CPython). Each start is its own
process, as a boot is: in-process, modules that the app drops after boot (firmware.config, the
board builders) could be left from another test's boot with another ConfigError class."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = {"cp_id": "T1", "evses": [{"evse_id": "DE*ABC*E1*1"}], "meter": {"type": "none"}}


def _start(tmp_path, capsys, config, *args):
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    res = subprocess.run([sys.executable, "-m", "firmware.app", "--board", "host",
                          "--flash", str(tmp_path)] + list(args), cwd=ROOT,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1 and lines[0]["ev"] == "error", (lines, res.stderr)
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
    assert err["kind"] == "config" and err["message"].startswith("config.json: reader: "), err


def test_anything_else_is_a_startup_error(tmp_path, capsys):
    err = _start(tmp_path, capsys, None)  # no config.json at all
    assert err["kind"] == "startup"
    err = _start(tmp_path, capsys, CONFIG, "--bogus", "1")
    assert err["kind"] == "startup" and "--bogus" in err["message"]
