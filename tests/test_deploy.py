"""tools.deploy against the virtual board (host_sim/board.py, its own process on a pty).

Fresh flash -> a charging session in the simulator on the very tree the deploy wrote ->
redeploy unchanged (nothing written) -> one changed module (only it crosses the link) -> a
link cut part-way (the previous firmware still boots) -> bad input (nothing written) -> ROMFS.
The figures (time, bytes) are printed for the issue's closing note (pytest -s).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from host_sim import runner
from host_sim.board import running
from host_sim.scenario import parse_scenario, run_steps
from tools import build, deploy

CARD = "04A1B2C3"
SESSION = """
plug 1
expect state 1 plugged
tap {card}
expect auth 1 accepted
expect session_start 1
remove
ev 1 charge
expect contactor 1 closed within 3
wait 2
tap {card}
expect contactor 1 open within 1
expect session_end 1 reason Local
expect exactly 1 cdr
""".format(card=CARD)


def snapshot(folder):
    """{relative path: sha256} of every file under folder."""
    out = {}
    for d, _dirs, files in os.walk(folder):
        for n in files:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def inputs(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(runner.make_config(1, "pn532", {})))
    auth = tmp_path / "authlist.json"
    auth.write_text(json.dumps({"version": 1, "uids": [CARD]}))
    return cfg, auth


def deployed_firmware(flash, slot):
    """Simulation command factory: the firmware from the deployed slot's .mpy files, run with
    the unix board and the simulator's devices, its flash the board's /data."""
    def factory(interpreter, ports, data, build_dir):
        argv = [runner.micropython_exe(), "-X", "heapsize=256k", "-m", "firmware.app",
                "--board", "unix", "--flash", data, "--reader-port", ports["reader"],
                "--meter-port", ports["meter"], "--simio-port", ports["simio"]]
        env = dict(os.environ, MICROPYPATH=os.path.join(flash, "mpevse", slot))
        return argv, env
    return factory


def run_session(flash, slot, cfg_copy, steps=SESSION):
    _options, parsed = parse_scenario(steps)
    with runner.Simulation(interpreter="micropython", flash=os.path.join(flash, "data"),
                           config_file=str(cfg_copy),
                           command_factory=deployed_firmware(str(flash), slot)) as sim:
        run_steps(sim, parsed)
        return sim.events


def test_deploy_fresh_session_redeploy_change_and_cut(tmp_path, inputs, monkeypatch, capsys):
    cfg, auth = inputs
    flash = tmp_path / "board"
    build.build()
    with running(flash) as (port, _):
        first = deploy.deploy(port, str(cfg), str(auth), log=lambda s: None)
    assert first["mode"] == "files" and first["written"] == len(deploy.code_tree(
        build.DEFAULT_OUT))
    version = json.loads((flash / "data" / "version.json").read_text())
    image = open(os.path.join(build.DEFAULT_OUT, build.IMAGE), "rb").read()
    assert version["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert version["code_sha256"] == deploy.tree_hash(deploy.code_tree(build.DEFAULT_OUT))
    assert version["project"] == deploy.project_version() and version["slot"] == "a"
    assert version["git"] and version["time"].endswith("Z")
    assert (flash / "main.py").read_text().startswith(deploy.MAIN_TAG + "a")
    assert not [p for p in snapshot(flash) if p.endswith(".new")]
    # the deployed tree boots and charges: one session in the simulator on those .mpy files
    cfg_copy = tmp_path / "sim-config.json"
    shutil.copyfile(cfg, cfg_copy)
    events = run_session(flash, "a", cfg_copy)
    assert any(e["ev"] == "ready" for e in events)
    # nothing changed: nothing written, no reset
    with running(flash) as (port, _):
        again = deploy.deploy(port, str(cfg), str(auth), log=lambda s: None)
    assert not again["changed"] and again["bytes_sent"] == 0
    # one changed module: only it crosses the link, the rest is copied on the board
    changed = dict(deploy.code_tree(build.DEFAULT_OUT))
    src = tmp_path / "s0.py"
    src.write_text(open(os.path.join(build.ROOT, "hal", "s0.py")).read() + "\n_DEPLOY_TEST = 1\n")
    build.compile_file("hal/s0.py", str(src), str(tmp_path / "s0.mpy"))
    changed["hal/s0.mpy"] = (tmp_path / "s0.mpy").read_bytes()
    monkeypatch.setattr(deploy, "code_tree", lambda out: dict(changed))
    with running(flash) as (port, _):
        one = deploy.deploy(port, str(cfg), str(auth), log=lambda s: None)
    assert (one["written"], one["copied"], one["slot"]) == (1, len(changed) - 1, "b")
    # besides the module only the boot entry (now slot b) and the version record are sent
    others = (flash / "data" / "version.json").stat().st_size + (flash / "main.py").stat().st_size
    assert one["bytes_sent"] == len(changed["hal/s0.mpy"]) + others
    assert (flash / "mpevse" / "b" / "hal" / "s0.mpy").read_bytes() == changed["hal/s0.mpy"]
    assert json.loads((flash / "data" / "version.json").read_text())["slot"] == "b"
    # the link is cut part-way through the next deploy: nothing switched, b still boots
    before = snapshot(flash)
    changed2 = dict(changed)
    changed2["hal/s0.mpy"] = open(os.path.join(build.DEFAULT_OUT, "hal", "s0.mpy"), "rb").read()
    changed2["hal/pilot.mpy"] = (tmp_path / "s0.mpy").read_bytes()  # any different bytes
    monkeypatch.setattr(deploy, "code_tree", lambda out: dict(changed2))
    new_cfg = tmp_path / "config2.json"
    new_cfg.write_text(json.dumps(runner.make_config(1, "pn532", {"card_guard_ms": 1500})))
    with running(flash) as (port, proc):
        def cut(path):
            proc.kill()  # the USB cable pulled after the first file
            proc.wait(5)
        with pytest.raises(deploy.DeployError) as err:
            deploy.deploy(port, str(new_cfg), str(auth), log=lambda s: None, after_write=cut)
    msg = str(err.value)
    assert "nothing was switched: the board still boots the previous firmware (slot b)" in msg
    assert "not written:" in msg and "switch over" in msg.split("not written:")[1]
    after = snapshot(flash)
    for p in ("main.py", "data/config.json", "data/version.json", "data/authlist.json"):
        assert after[p] == before[p], p
    assert {p: h for p, h in after.items() if p.startswith("mpevse/b/")} == \
        {p: h for p, h in before.items() if p.startswith("mpevse/b/")}
    # and it does boot: the simulator starts slot b again (ready), the old config in force
    run_session(flash, "b", cfg_copy, steps="plug 1\nexpect state 1 plugged\n")
    with capsys.disabled():
        print("\n[deploy figures] fresh: {} s, {} files, {} B over the link (code {} B, image "
              "{} B, flash allocated {} B); redeploy unchanged: {} s; one changed module: {} s,"
              " {} B over the link, {} copied on the board".format(
                  first["seconds"], first["written"], first["bytes_sent"],
                  first["code_bytes"], first["image_bytes"], first["flash_needed"],
                  again["seconds"], one["seconds"], one["bytes_sent"], one["copied"]))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tools.deploy", *args], capture_output=True,
                          text=True, timeout=120, cwd=build.ROOT)


def test_bad_input_is_refused_before_anything_is_written(tmp_path, inputs):
    cfg, auth = inputs
    build.build()
    flash = tmp_path / "board"
    # not a MicroPython board: a pty nobody answers on
    master, slave = os.openpty()
    try:
        done = _cli("--port", os.ttyname(slave), "--config", str(cfg), "--timeout", "2")
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 2 and "is not a MicroPython board" in done.stderr
    bad_cfg = tmp_path / "bad.json"
    bad_cfg.write_text(json.dumps(dict(runner.make_config(1, "pn532", {}),
                                       evses=[{"evse_id": "nonsense"}])))
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello, I am no certificate\n")
    tls_cfg = tmp_path / "tls.json"
    tls_cfg.write_text(json.dumps(runner.make_config(1, "pn532", {"uplink": {
        "url": "mqtts://broker.example:8883", "ca_file": "/data/ca.pem"}})))
    with running(flash) as (port, _):
        before = snapshot(flash)
        done = _cli("--port", port, "--config", str(bad_cfg))
        assert done.returncode == 2 and "evses[0].evse_id" in done.stderr, done.stderr
        done = _cli("--port", port, "--config", str(tls_cfg), "--ca", str(not_pem))
        assert done.returncode == 2 and "not a PEM certificate" in done.stderr, done.stderr
        done = _cli("--port", port, "--config", str(cfg), "--romfs")
        assert done.returncode == 2 and "no ROMFS partition" in done.stderr, done.stderr
        assert snapshot(flash) == before
    with running(flash, "--flash-size", "64k") as (port, _):
        done = _cli("--port", port, "--config", str(cfg))
        assert done.returncode == 2 and "too little flash" in done.stderr, done.stderr
    with running(flash, "--version", "1.22.2") as (port, _):
        done = _cli("--port", port, "--config", str(cfg))
        assert done.returncode == 2 and "MicroPython 1.22.2" in done.stderr, done.stderr
    assert snapshot(flash) == before
    with running(flash) as (port, _):  # --dry-run: the plan, nothing written
        done = _cli("--port", port, "--config", str(cfg), "--dry-run")
        assert done.returncode == 0 and "--dry-run: nothing written" in done.stdout
        assert "no ROMFS partition on the board: deploying .mpy files" in done.stdout
    assert snapshot(flash) == before


def test_romfs_partition_written_verified_and_booted_first(tmp_path, inputs):
    cfg, auth = inputs
    flash = tmp_path / "board"
    build.build()
    with running(flash, "--romfs-size", "256k") as (port, _):
        report = deploy.deploy(port, str(cfg), str(auth), log=lambda s: None)
    assert report["mode"] == "romfs"
    assert "rom=1" in (flash / "main.py").read_text().splitlines()[0]
    image = open(os.path.join(build.DEFAULT_OUT, build.IMAGE), "rb").read()
    assert (tmp_path / "board.rom").read_bytes()[:len(image)] == image
    with running(flash, "--romfs-size", "256k") as (port, _):
        out = subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", port, "exec",
             "exec(open('/main.py').read().split('import firmware.main')[0]); "
             "import firmware.app; print(firmware.app.__file__)"],
            capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "/rom/firmware/app.mpy", out.stdout + out.stderr
        again = deploy.deploy(port, str(cfg), str(auth), log=lambda s: None)
    assert not again["changed"]
