"""tools.cardreader as a real process against a PN532 played on the other end of a pty."""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty

import pytest

from hal.pn532_frames import ACK_FRAME, DATA, TFI_CHIP, TFI_HOST, FrameParser, build_frame
from tests.mp.test_pn532_fake import ilpt_reply
from tests.mpy import ROOT

UID_A = bytes.fromhex("04A1B2C3D4E5F6")
UID_B = bytes.fromhex("DEADBEEF")


def card_schedule(n):
    """Which card the n-th InListPassiveTarget sees."""
    if n < 3:
        return None
    if n < 9:
        return UID_A
    if n < 13:
        return None
    return UID_B


class Responder(threading.Thread):
    """A scripted PN532 on the pty master: ACK + reply per command (or silence)."""

    def __init__(self, fd, silent=False, device=None):
        super().__init__(daemon=True)
        self.fd = fd
        self.silent = silent
        self.device = device  # optional host_sim virtual PN532 instead of the script
        self.stop = threading.Event()
        self.commands = []
        self.polls = 0

    def run(self):
        parser = FrameParser()
        t0 = time.monotonic()
        while not self.stop.is_set():
            r, _, _ = select.select([self.fd], [], [], 0.005)
            data = b""
            if r:
                try:
                    data = os.read(self.fd, 512)
                except OSError:
                    return
            if self.device is not None:
                now = time.monotonic() - t0
                if data:
                    self.device.feed(data, now)
                out = self.device.pending(now)
                if out:
                    os.write(self.fd, out)
                continue
            parser.feed(data)
            while True:
                f = parser.next()
                if f is None:
                    break
                kind, payload = f
                if kind == DATA and payload[0] == TFI_HOST:
                    self.commands.append(payload[1])
                    if not self.silent:
                        os.write(self.fd, ACK_FRAME + self.reply(payload[1]))

    def reply(self, cmd):
        if cmd == 0x4A:
            card = card_schedule(self.polls)
            self.polls += 1
            return ilpt_reply(card)
        if cmd == 0x02:
            return build_frame(b"\x03\x32\x01\x06\x07", TFI_CHIP)
        if cmd == 0x52:
            return build_frame(b"\x53\x00", TFI_CHIP)
        return build_frame(bytes((cmd + 1,)), TFI_CHIP)


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


def start(args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "tools.cardreader"] + args, cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=30):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("cardreader did not exit: " + err) from None
    return proc.returncode, out, err


def test_taps_print_json_lines(pty_pair):
    master, path = pty_pair
    chip = Responder(master)
    chip.start()
    try:
        code, out, err = finish(start(["--port", path, "--count", "2", "--timeout", "20"]))
    finally:
        chip.stop.set()
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines == [{"uid": "04A1B2C3D4E5F6", "reader": "pn532", "bytes": 7},
                     {"uid": "DEADBEEF", "reader": "pn532", "bytes": 4}]
    assert chip.polls >= 13  # card A held for several polls was still one line
    assert "Traceback" not in err


def test_enroll_bumps_version_atomically(pty_pair, tmp_path):
    master, path = pty_pair
    listfile = tmp_path / "local.json"
    listfile.write_text(json.dumps({"version": 3, "uids": ["DEADBEEF"]}))
    chip = Responder(master)
    chip.start()
    try:
        code, out, err = finish(start(["--port", path, "--count", "2", "--timeout", "20",
                                       "--enroll", str(listfile)]))
    finally:
        chip.stop.set()
    assert code == 0, err
    saved = json.loads(listfile.read_text())
    assert saved["version"] == 4  # A was new, B was already listed
    assert sorted(saved["uids"]) == ["04A1B2C3D4E5F6", "DEADBEEF"]
    assert "already listed DEADBEEF" in err
    assert os.listdir(tmp_path) == ["local.json"]  # no tmp file left behind


def test_enroll_creates_missing_file(pty_pair, tmp_path):
    master, path = pty_pair
    listfile = tmp_path / "new.json"
    chip = Responder(master)
    chip.start()
    try:
        code, _, err = finish(start(["--port", path, "--count", "1", "--timeout", "20",
                                     "--enroll", str(listfile)]))
    finally:
        chip.stop.set()
    assert code == 0, err
    assert json.loads(listfile.read_text()) == {"version": 1, "uids": ["04A1B2C3D4E5F6"]}


def test_silent_reader_reports_failure_and_keeps_retrying(pty_pair):
    master, path = pty_pair
    chip = Responder(master, silent=True)
    chip.start()
    try:
        code, out, err = finish(start(["--port", path, "--count", "1", "--timeout", "3"]))
    finally:
        chip.stop.set()
    assert code == 1
    assert out == ""
    assert "pn532 reader on {} failed: no answer; retrying".format(path) in err
    assert "timeout after 0 of 1 taps" in err
    assert chip.commands.count(0x14) >= 3  # kept re-waking with SAMConfiguration


def test_ctrl_c_exits_cleanly(pty_pair):
    master, path = pty_pair
    chip = Responder(master)
    chip.start()
    try:
        proc = start(["--port", path])
        deadline = time.monotonic() + 10
        while chip.polls < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert chip.polls >= 2, "the reader never started polling"
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc, timeout=10)
    finally:
        chip.stop.set()
    assert code == 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_against_the_virtual_pn532(pty_pair):
    """The host_sim chip is strict (wake-up time, LowVbat, retries 0xFF): the tool still reads."""
    from host_sim.devices import pn532

    master, path = pty_pair
    dev = pn532.Pn532()
    dev.present(UID_A)
    chip = Responder(master, device=dev)
    chip.start()
    try:
        code, out, err = finish(start(["--port", path, "--count", "1", "--timeout", "20"]))
    finally:
        chip.stop.set()
    assert code == 0, err
    assert json.loads(out) == {"uid": "04A1B2C3D4E5F6", "reader": "pn532", "bytes": 7}
    st = dev.status()
    assert st["sam"] and st["mx_rty_passive"] == 1


def test_bad_port_is_a_clear_error(tmp_path):
    code, out, err = finish(start(["--port", str(tmp_path / "nope"), "--timeout", "2"]))
    assert code == 2
    assert "nope" in err and "Traceback" not in err
