"""Boards on real pseudo-terminals: the unix board under the MicroPython unix port, the host
board with pyserial, and the shared wiring (config errors, Modbus bus sharing).
The esp32 board is type-checked against micropython-esp32-stubs by `make typecheck`."""

import os
import select
import subprocess
import threading
import time
import tty

import pytest

from firmware.config import load
from hal.boards import common, host
from hal.boards.board import SharedBus
from host_sim.devices.sdm import SdmBus, SdmMeter
from host_sim.devices.simio import SimEvse, SimIo
from tests.mpy import HEAP, ROOT, micropython_exe

ECHO_MP = """
import sys
sys.path.insert(0, ".")
from hal.boards.unix import UnixUART
from hal.compat import ticks_ms, ticks_diff, sleep_ms
u = UnixUART(sys.argv[1], int(sys.argv[2]))
print("open")
want = int(sys.argv[3])
got = 0
t0 = ticks_ms()
while got < want and ticks_diff(ticks_ms(), t0) < 8000:
    n = u.any()
    if n:
        d = u.read(n)
        u.write(d)
        got += len(d)
    else:
        sleep_ms(1)
print("echoed", got)
"""

BOARD_MP = """
import sys, json
sys.path.insert(0, ".")
from firmware.config import load
from hal.boards.unix import build
from hal.compat import ticks_ms, ticks_diff, sleep_ms
config = load({"cp_id": "T1", "evses": [{"evse_id": "DE*ABC*E1*1", "cable": "socket"}],
               "reader": {"type": "none"}, "meter": {"type": "none"}})
board = build(config, simio=sys.argv[1])
assert board.reader is None and board.meters == [None] and board.bus is None
board.pilots[0].set_duty(267)
t0 = ticks_ms()
while ticks_diff(ticks_ms(), t0) < 8000:
    now = ticks_ms()
    for kind, drivers in (("pilot", board.pilots), ("contactor", board.contactors)):
        ev = drivers[0].poll(now)
        if ev is None:
            continue
        if kind == "contactor":
            ev = ev[1]  # (CONTACTOR, (state, late_ms)): the verdict
        print(json.dumps([kind, 0, ev[0], ev[1]]))
        if kind == "pilot" and ev[1] == ("C", True):
            board.contactors[0].set(True, now)
        if kind == "contactor" and ev[0] == "closed":
            print(json.dumps(["amps", board.proximity[0].cable_amps()]))
            print(json.dumps(["garbage", board.contactors[0]._mirror.sio.garbage]))
            sys.exit(0)
    sleep_ms(2)
print("TIMEOUT")
"""


def poll_all(board, now):
    """Poll every driver once, as the shell does -> [(kind, evse index, event)]; a contactor's
    event is its verdict (state, late_ms)."""
    out = []
    for kind, drivers in (("pilot", board.pilots), ("contactor", board.contactors)):
        for i, d in enumerate(drivers):
            ev = d.poll(now)
            if ev is not None:
                out.append((kind, i, ev[1] if kind == "contactor" else ev))
    got = board.bus.poll(now)
    if got is not None:
        out.append(("meter", got[0], got[1]))
    return out


def _pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def _read_until(fd, pred, timeout=5.0):
    out = b""
    end = time.monotonic() + timeout
    while not pred(out) and time.monotonic() < end:
        if select.select([fd], [], [], 0.05)[0]:
            out += os.read(fd, 4096)
    return out


class MpScript:
    """A MicroPython script run in the background (`micropython -X heapsize=HEAP`) whose stdout
    lines are collected as they come, so a test waits for a line (bounded) instead of sleeping
    for a guessed time."""

    def __init__(self, tmp_path, source, args):
        script = tmp_path / "script.py"
        script.write_text(source)
        self.args = [micropython_exe(), "-X", "heapsize=" + HEAP, str(script)] + list(args)
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, *wanted, timeout=10.0):
        """Wait until every line of `wanted` was printed, the script ended, or `timeout` (s)
        passed. -> True if all were printed."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(w in self.lines for w in wanted):
                return True
            if self.proc.poll() is not None:
                self.reader.join(timeout=5)
                break
            time.sleep(0.01)
        return all(w in self.lines for w in wanted)

    def finish(self, timeout=30.0):
        """Wait for the script to end (killed after `timeout` s) -> CompletedProcess."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        self.proc.stdout.close()
        return subprocess.CompletedProcess(self.args, self.proc.returncode,
                                           "".join(line + "\n" for line in self.lines), stderr)


def test_unix_uart_echoes_binary_bytes_under_micropython(tmp_path):
    master, slave, path = _pty()
    data = bytes(range(256)) * 2  # every byte value, incl. \n \r ^C ^D XON/XOFF
    script = MpScript(tmp_path, ECHO_MP, [path, "2400", str(len(data))])
    try:
        assert script.wait_lines("open"), script.lines  # the port is open and set up
        for k in range(0, len(data), 100):  # in chunks, so reads see partial data
            os.write(master, data[k:k + 100])
            time.sleep(0.01)
        out = _read_until(master, lambda b: len(b) >= len(data))
    finally:
        proc = script.finish()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "echoed %d" % len(data) in proc.stdout
    assert out == data


def test_unix_board_runs_real_drivers_over_simio_under_micropython(tmp_path):
    """The firmware side under MicroPython; this test plays the simulator by hand."""
    master, slave, path = _pty()
    script = MpScript(tmp_path, BOARD_MP, [path])
    seen = b""
    coil_at = None
    try:
        seen = _read_until(master, lambda b: b"hello\n" in b)
        assert seen.startswith(b"hello\n"), seen
        os.write(master, b"garbage line\ncp 1 9000 -12000\npp 1 220\nmirror 1 1\n")
        seen += _read_until(master, lambda b: b"pwm 1 267\n" in seen + b)
        # the EV in B until the pilot has debounced it and the contactor has settled open
        assert script.wait_lines('["pilot", 0, "pilot", ["B", true]]',
                                 '["contactor", 0, "open", null]'), script.lines
        os.write(master, b"cp 1 6000 -12000\n")  # the EV asks to charge
        seen += _read_until(master, lambda b: b"coil 1 1\n" in seen + b)
        coil_at = time.monotonic()
        os.write(master, b"mirror 1 0\n")  # main contacts closed
    finally:
        proc = script.finish()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert coil_at is not None, seen
    lines = proc.stdout.split("\n")
    assert '["pilot", 0, "pilot", ["B", true]]' in lines, proc.stdout
    assert '["pilot", 0, "pilot", ["C", true]]' in lines, proc.stdout
    assert '["contactor", 0, "open", null]' in lines
    assert '["contactor", 0, "closed", null]' in lines
    assert '["amps", 32]' in lines
    assert '["garbage", 1]' in lines
    # order of what the firmware sent: hello first, initial safe outputs, then the commands
    sent = seen.split(b"\n")
    assert sent[0] == b"hello" and sorted(sent[1:3]) == [b"coil 1 0", b"pwm 1 1000"], sent
    assert sent.index(b"pwm 1 267") < sent.index(b"coil 1 1")


def test_host_uart_over_pyserial_on_a_pty():
    master, slave, path = _pty()
    u = host.HostUART(path, 115200)
    try:
        assert u.any() == 0 and u.read(10) == b""
        data = bytes(range(256))
        os.write(master, data)
        got = b""
        end = time.monotonic() + 3
        while len(got) < len(data) and time.monotonic() < end:
            n = u.any()
            if n:
                got += u.read(n)
        assert got == data
        u.write(b"\x00\xffabc\n")
        assert _read_until(master, lambda b: len(b) >= 6) == b"\x00\xffabc\n"
    finally:
        u.close()
        os.close(master)
        os.close(slave)


class _Link:
    """One host_sim device on the master side of a pty, driven in this thread."""

    def __init__(self, device):
        self.device = device
        self.master, self.slave, self.path = _pty()

    def step(self, now):
        while select.select([self.master], [], [], 0)[0]:
            self.device.feed(os.read(self.master, 4096), now)
        out = self.device.pending(now)
        if out:
            os.write(self.master, out)

    def close(self):
        os.close(self.master)
        os.close(self.slave)


def test_host_board_with_the_simulator_devices():
    """Two EVSEs: simio against host_sim's SimIo, two SDM120s sharing one Modbus pty."""
    evses = [SimEvse(), SimEvse()]
    sim = _Link(SimIo(evses))
    meters = [SdmMeter(address=1), SdmMeter(address=2)]
    bus = _Link(SdmBus(meters, baud=9600))
    config = load({
        "cp_id": "T1",
        "evses": [{"evse_id": "DE*ABC*E1*1", "cable": "socket"},
                  {"evse_id": "DE*ABC*E1*2", "cable": "tethered"}],
        "reader": {"type": "none"},
        "meter": {"type": "modbus", "model": "sdm120", "baud": 9600, "addresses": [1, 2]},
    })
    simio = host.PtyStream(sim.path)
    meter = host.HostUART(bus.path, 9600)
    board = host.build(config, meter=meter, simio=simio)
    events = []
    try:
        assert board.proximity[1] is None and len(board.meters) == 2
        evses[0].ev.plug(220)
        evses[0].ev.charge()
        board.pilots[0].set_duty(267)
        t0 = time.monotonic()
        readings = set()
        closed = False
        while time.monotonic() - t0 < 8:
            now_s = time.monotonic()
            sim.step(now_s)
            bus.step(now_s)
            for kind, i, ev in poll_all(board, int(now_s * 1000)):
                events.append((kind, i, ev))
                if (kind, i, ev) == ("pilot", 0, ("pilot", ("C", True))):
                    board.contactors[0].set(True, int(now_s * 1000))
                if kind == "contactor" and ev[0] == "closed":
                    closed = True
                if kind == "meter":
                    assert ev[0] == "reading", ev
                    readings.add(i)
            if closed and readings == {0, 1}:
                break
            time.sleep(0.002)
        assert closed, events
        assert readings == {0, 1}, events
        assert ("pilot", 1, ("pilot", ("A", None))) in events
        assert board.proximity[0].cable_amps() == 32
        assert board.contactors[0]._mirror.sio.garbage == 0
        assert evses[0].contactor.coil and not evses[1].contactor.coil
    finally:
        simio.close()
        meter.close()
        sim.close()
        bus.close()


def test_wiring_errors_name_the_field():
    """What config.load cannot know: which ports this board was given (the field rules
    themselves are config.load's, tested in tests/mp/test_config.py)."""
    sio_stream = _FakeStream()
    one = {"cp_id": "T1", "evses": [{"evse_id": "DE*ABC*E1*1"}]}
    table = (
        (dict(one, reader="pn532", meter={"type": "none"}), "reader", {}),
        (dict(one, reader="none"), "meter.type", {}),
        (dict(one, reader="none", meter={"type": "s0", "s0_pins": [4]}), "meter.type",
         {"meter": _FakeStream()}),
    )
    for raw, name, ports in table:
        with pytest.raises(common.ConfigError, match=name):
            host.build(load(raw), simio=sio_stream, **ports)
    board = host.build(load(dict(one, reader="rdm6300")), simio=sio_stream,
                       reader=_FakeStream(), meter=_FakeStream())
    assert board.reader is not None and board.bus is not None and len(board.meters) == 1


class _FakeStream:
    def __init__(self):
        self.written = b""

    def any(self):
        return 0

    def read(self, n=-1):
        return b""

    def write(self, b):
        self.written += bytes(b)
        return len(b)


class _FakeMaster:
    def __init__(self):
        self.busy = False


class _FakeMeter:
    """Takes the bus for `polls` polls when due, then reports."""

    def __init__(self, master, name, polls=3):
        self.master = master
        self.name = name
        self.polls = polls
        self.left = 0
        self.calls = 0

    def poll(self, now):
        self.calls += 1
        assert not (self.master.busy and self.left == 0), "polled while another owns the bus"
        if self.left == 0:
            self.left = self.polls
            self.master.busy = True
            return None
        self.left -= 1
        if self.left == 0:
            self.master.busy = False
            return ("reading", self.name)
        return None


def test_shared_bus_lets_one_meter_at_a_time_and_takes_turns():
    master = _FakeMaster()
    meters = [_FakeMeter(master, "a"), _FakeMeter(master, "b"), _FakeMeter(master, "c", polls=1)]
    bus = SharedBus(master, meters)
    got = []
    for t in range(40):
        ev = bus.poll(t)
        if ev is not None:
            got.append((ev[0], ev[1][1]))
    assert got[:6] == [(0, "a"), (1, "b"), (2, "c"), (0, "a"), (1, "b"), (2, "c")], got


class _FakeMachine:
    """Just enough of `machine` to run the esp32 board on CPython and record what it opened."""

    def __init__(self):
        opened = self.opened = []

        class Pin:
            IN, OUT, PULL_UP = 1, 3, 2

            def __init__(self, n, mode=-1, pull=-1, value=None):
                self.n, self.mode, self.pull, self.v = n, mode, pull, value or 0
                opened.append(("Pin", n, mode, pull))

            def value(self, v=None):
                if v is None:
                    return self.v
                self.v = v

        class PWM:
            def __init__(self, pin, freq=None, duty_u16=None):
                opened.append(("PWM", pin.n, freq, duty_u16))

            def freq(self, hz):
                pass

            def duty_u16(self, v):
                pass

        class ADC:
            ATTN_11DB = 3

            def __init__(self, pin, atten=None):
                opened.append(("ADC", pin.n, atten))

            def read_uv(self):
                return 1000000

        class UART:
            def __init__(self, num, **kw):
                opened.append(("UART", num, kw.get("baudrate"),
                               kw["tx"].n if "tx" in kw else None, kw["rx"].n))

        self.Pin, self.PWM, self.ADC, self.UART = Pin, PWM, ADC, UART
        self.resets = 0

    def reset(self):
        self.resets += 1


def _esp32_board(monkeypatch):
    import importlib
    import sys

    fake = _FakeMachine()
    monkeypatch.setitem(sys.modules, "machine", fake)
    monkeypatch.delitem(sys.modules, "hal.boards.esp32", raising=False)
    return importlib.import_module("hal.boards.esp32"), fake


def test_esp32_board_defaults_and_pin_rules(monkeypatch):
    esp32, fake = _esp32_board(monkeypatch)
    cfg = load({"cp_id": "CP1", "evses": [{"evse_id": "DE*ABC*E0001"}]})
    board = esp32.build(cfg)
    opened = fake.opened
    assert ("UART", 1, 115200, 22, 21) in opened  # PN532 on UART1, default pins
    assert ("UART", 2, 9600, 17, 16) in opened  # Modbus on UART2
    assert ("PWM", 25, 1000, 65535) in opened  # steady +12 V at boot
    assert ("ADC", 36, 3) in opened and ("ADC", 39, 3) in opened
    assert ("Pin", 26, 3, -1) in opened and ("Pin", 27, 1, 2) in opened  # coil, mirror pull-up
    assert board.contactors[0].poll(0) is None and board.proximity[0] is not None
    # ADC2 pins and UART0 are refused with the field named
    bad_adc = load({"cp_id": "CP1", "evses": [{"evse_id": "DE*ABC*E0001"}]})
    bad_adc["pins"]["cp_adc"] = [25]
    with pytest.raises(common.ConfigError, match=r"pins.cp_adc\[0\].*ADC1"):
        esp32.build(bad_adc)
    uart0 = load({"cp_id": "CP1", "evses": [{"evse_id": "DE*ABC*E0001"}]})
    uart0["reader"]["uart"] = 0
    with pytest.raises(common.ConfigError, match="reader.uart.*REPL"):
        esp32.build(uart0)
    same = load({"cp_id": "CP1", "evses": [{"evse_id": "DE*ABC*E0001"}]})
    same["meter"]["uart"] = 1
    with pytest.raises(common.ConfigError, match="meter.uart.*taken"):
        esp32.build(same)
    rdm = load({"cp_id": "CP1", "evses": [{"evse_id": "DE*ABC*E0001"}], "reader": "rdm6300"})
    fake.opened.clear()
    esp32.build(rdm)
    assert ("UART", 1, 9600, None, 21) in fake.opened  # RX only


def test_esp32_reset_is_the_boards(monkeypatch):
    """firmware/main.py (firmware died) and firmware/app.py (the backend's reset) reset the
    ESP32 through the board module, the only place that touches `machine`."""
    esp32, fake = _esp32_board(monkeypatch)
    esp32.reset()
    board = esp32.build(load({"cp_id": "CP1", "evses": [{"evse_id": "DE*ABC*E0001"}]}))
    board.reset()
    assert fake.resets == 2


def test_esp32_clock_from_ntp_only_below_the_floor_and_at_most_once_a_minute(monkeypatch):
    """Esp32Board.sync_clock (run by the MQTT transport's thread): NTP while the RTC is below
    timefmt.CLOCK_FLOOR_S, retried at most every NTP_RETRY_MS; a failure is kept; wall_clock
    itself never touches the network."""
    import sys
    import time as _time
    import types

    from firmware.timefmt import CLOCK_FLOOR_S

    esp32, _ = _esp32_board(monkeypatch)
    rtc = [0.0]
    ticks = [0]
    answers = [OSError(110, "ETIMEDOUT"), CLOCK_FLOOR_S + 5]
    tries = []

    def settime():
        tries.append(ticks[0])
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        rtc[0] = float(a)

    monkeypatch.setitem(sys.modules, "ntptime", types.SimpleNamespace(settime=settime))
    monkeypatch.setattr(_time, "time", lambda: rtc[0])
    monkeypatch.setattr(_time, "ticks_ms", lambda: ticks[0], raising=False)
    monkeypatch.setattr(_time, "ticks_diff", lambda a, b: a - b, raising=False)
    cfg = load({"cp_id": "CP1", "evses": [{"evse_id": "DE*ABC*E0001"}]})
    board = esp32.build(cfg)
    assert board.wall_clock() == 0 and tries == []  # reading never asks NTP
    assert board.sync_clock() is False and "ETIMEDOUT" in board.ntp_error
    ticks[0] = esp32.NTP_RETRY_MS - 1
    assert board.sync_clock() is False and len(tries) == 1  # not again within a minute
    ticks[0] = esp32.NTP_RETRY_MS
    assert board.sync_clock() is True and board.ntp_error is None
    assert board.wall_clock() == CLOCK_FLOOR_S + 5
    assert board.sync_clock() is True and len(tries) == 2  # a set clock is left alone


def test_board_emit_is_one_json_line_on_stdout(capsys):
    """Off target the event sink is the board's: one JSON line, the fields then "ev", exactly
    as the simulator and the tests read it."""
    from hal.boards.board import Board

    Board(None, [], [], [], [], None).emit("card", uid="04A2B3C4", bytes=4)
    assert capsys.readouterr().out == '{"uid": "04A2B3C4", "bytes": 4, "ev": "card"}\n'


def test_esp32_emit_keeps_events_in_a_ring_and_prints_only_errors(monkeypatch, capsys):
    """On the ESP32 stdout is the REPL UART: events go to the bounded RAM ring (the oldest
    overwritten, whole lines read back), only "ready"/"error" are printed too."""
    esp32, _ = _esp32_board(monkeypatch)
    board = esp32.build(load({"cp_id": "CP1", "evses": [{"evse_id": "DE*ABC*E0001"}]}))
    board.emit("pilot", evse=1, state="B", diode_ok=True)
    board.emit("error", kind="reader", message="reader failed: no answer")
    assert capsys.readouterr().out == \
        '{"kind": "reader", "message": "reader failed: no answer", "ev": "error"}\n'
    assert board.log.lines() == ['{"evse": 1, "state": "B", "diode_ok": true, "ev": "pilot"}',
                                 '{"kind": "reader", "message": "reader failed: no answer", '
                                 '"ev": "error"}']
    for i in range(200):  # ~40 bytes each: the ring (LOG_BYTES) wraps several times
        board.emit("status", evse=1, status=str(i))
    lines = board.log.lines()
    assert lines[-1] == '{"evse": 1, "status": "199", "ev": "status"}', lines[-1]
    assert all(line.endswith('"ev": "status"}') for line in lines)  # no cut line
    assert sum(len(line) + 1 for line in lines) <= esp32.LOG_BYTES
    assert board.log.count == 202 and capsys.readouterr().out == ""
