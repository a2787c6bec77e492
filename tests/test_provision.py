"""tools.provision: config.json the firmware accepts, a password never printed, and lines a
real Mosquitto accepts (the device connects with its credentials and the ACL confines it)."""

import json
import stat
import subprocess
import sys

import pytest

from firmware import config
from tests import brokers
from tools import provision


def run(tmp_path, *extra):
    return subprocess.run(
        [sys.executable, "-m", "tools.provision", "--cp-id", "CP-0001", "--evses", "2",
         "--operator-id", "DE*ABC", "--broker-url", "mqtts://localhost:8883",
         "--out", str(tmp_path / "out"), *extra],
        capture_output=True, text=True, timeout=60, cwd=provision_root())


def provision_root():
    import os

    return os.path.dirname(os.path.dirname(os.path.abspath(provision.__file__)))


def test_files_idempotence_rotation_and_no_password_in_the_log(tmp_path):
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "out" / "CP-0001"
    password = (folder / "password").read_text().strip()
    assert len(password) >= 32
    assert password not in done.stdout + done.stderr
    for name in ("password", "config.json", "passwd.line"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    cfg = config.load((folder / "config.json").read_text())
    assert [e["evse_id"] for e in cfg["evses"]] == ["DE*ABC*ECP0001*1", "DE*ABC*ECP0001*2"]
    assert (cfg["uplink"]["user"], cfg["uplink"]["password"]) == ("CP-0001", password)
    assert cfg["uplink"]["ca_file"] == "/data/ca.pem"
    user, _, line_hash = (folder / "passwd.line").read_text().strip().partition(":")
    assert user == "CP-0001" and provision.verify_hash(password, line_hash)
    files = {n: (folder / n).read_bytes() for n in ("config.json", "passwd.line", "acl")}
    again = run(tmp_path)  # idempotent: same password, same files
    assert again.returncode == 0 and "password kept" in again.stdout
    assert {n: (folder / n).read_bytes() for n in files} == files
    rotated = run(tmp_path, "--rotate")
    assert rotated.returncode == 0 and "new password" in rotated.stdout
    assert (folder / "password").read_text().strip() != password
    assert password not in rotated.stdout + rotated.stderr


@pytest.mark.parametrize("args, says", [
    (["--cp-id", "bridge"], "backend's MQTT user name"),
    (["--cp-id", "CP/1"], "--cp-id"),
    (["--evses", "9"], "evses"),
    (["--operator-id", "XX"], "EvseID"),
])
def test_bad_input(tmp_path, args, says):
    base = {"--cp-id": "CP-0001", "--evses": "2", "--operator-id": "DE*ABC"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [x for kv in base.items() for x in kv]
    done = subprocess.run([sys.executable, "-m", "tools.provision", *argv, "--broker-url",
                           "mqtts://localhost:8883", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=provision_root())
    assert done.returncode == 2 and says in done.stderr, done.stderr


def test_mosquitto_accepts_the_device_and_confines_it(tmp_path):
    """The provisioned passwd line (our PBKDF2 hash, not mosquitto_passwd's) in a real
    Mosquitto with the shipped ACL: the device logs in with its config.json's credentials, may
    publish in its own tree only, and a wrong password is refused."""
    brokers.require_mosquitto()
    folder = provision.provision("CP-0001", 1, "DE*ABC", "mqtt://127.0.0.1:1883",
                                 out=str(tmp_path / "out"), log=lambda s: None)
    cfg = json.loads(open(folder + "/config.json").read())
    user, password = cfg["uplink"]["user"], cfg["uplink"]["password"]
    with brokers.mosquitto(tmp_path, users={"bridge": "bridge-pw"}) as b:
        with open(b.folder / "passwd", "a") as f:
            f.write(open(folder + "/passwd.line").read())
        b.restart()
        with brokers.MqttClient(b, "bridge", "bridge-pw") as backend:
            backend.client.subscribe("mpevse/#", qos=1)
            with brokers.MqttClient(b, user, password) as device:
                device.client.publish("mpevse/CP-0001/up/authorize", b"mine", qos=1)
                device.client.publish("mpevse/CP-0002/up/authorize", b"foreign", qos=1)
                device.client.publish("mpevse/CP-0001/down/remote_start", b"own-down", qos=1)
                device.client.publish("mpevse/CP-0001/status/x", b"last", qos=1)
                backend.wait_for("mpevse/CP-0001/status/#", 10)
            got = [m.payload for m in backend.messages]
            assert b"mine" in got and b"last" in got
            assert b"foreign" not in got and b"own-down" not in got
        with pytest.raises(brokers.ConnectRefused):
            brokers.MqttClient(b, user, password + "x").connect()
