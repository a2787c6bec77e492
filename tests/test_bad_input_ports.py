"""Issue 16 item 2: a reader or meter port that fails (the USB-serial adapter unplugged: OSError
from any/read/write) is a reader failure / meter fault, never the firmware's death; charging
control goes on; the port is reopened with back-off and the drivers go on where they were.
The shell runs with the real PN532 driver and Modbus master over streams that can vanish; the
host board's port on a real pty shows the OSError is what a vanished device gives."""

import errno
import os
import tty

import pytest
import serial

from firmware import config
from firmware.shell import PORT_RETRY_MAX_MS, PORT_RETRY_MIN_MS, Shell
from firmware.store import Store
from hal.boards.board import Board, SharedBus
from hal.boards.host import HostUART
from hal.meters import Meter
from hal.modbus import ModbusMaster
from hal.pn532 import PN532
from host_sim.devices.pn532 import Pn532
from host_sim.devices.sdm import SdmBus, SdmMeter
from tests.test_app import Script

UID = "04A1B2C3"
PLUGGED = {}  # port name -> the device behind it, or absent: unplugged


class VanishingPort:
    """A stream to a simulated device that raises OSError(EIO) once its name is unplugged,
    like a pty or a USB-serial adapter whose device went away; opening it then fails too."""

    opened = []

    def __init__(self, name, baud):
        if name not in PLUGGED:
            raise OSError(errno.ENOENT, "no such device: " + name)
        self.name = name
        self.dev = PLUGGED[name]
        self.now = 0.0
        self.rx = b""
        self.closed = False
        VanishingPort.opened.append(name)

    def _check(self):
        if self.closed or PLUGGED.get(self.name) is not self.dev:
            raise OSError(errno.EIO, "Input/output error")

    def any(self):
        self._check()
        self.rx += self.dev.pending(self.now)
        return len(self.rx)

    def read(self, n=-1):
        self._check()
        data, self.rx = self.rx[:n], self.rx[n:]
        return data

    def write(self, data):
        self._check()
        self.dev.feed(bytes(data), self.now)
        return len(data)

    def flush(self):
        self._check()

    def close(self):
        self.closed = True


def make(tmp_path, reader=True, meter=False):
    cfg = config.load({"cp_id": "T1", "evses": [{"evse_id": "DE*ABC*E1*1"}]})
    store = Store(str(tmp_path))
    store.put("authlist", {"version": 1, "uids": [UID]})
    board = Board(None, [Script()], [Script()], [Script()], [Script()], None)
    board.wall_clock = lambda: 1800000000
    if reader:
        PLUGGED["reader"] = Pn532()
        board.reader = PN532(VanishingPort("reader", 115200))
        board.openers["reader"] = (VanishingPort, "reader", 115200)
    if meter:
        PLUGGED["meter"] = SdmBus([SdmMeter(address=1)], baud=9600)
        master = ModbusMaster(VanishingPort("meter", 9600), 9600)
        board.meters = [Meter(master, "sdm120", 1)]
        board.bus = SharedBus(master, board.meters)
        board.openers["meter"] = (VanishingPort, "meter", 9600)
    events = []
    shell = Shell(cfg, board, store, out=lambda ev, **f: events.append(dict(f, ev=ev)))
    shell.boot(0)
    return shell, board, events


def run(shell, board, start, ms):
    for now in range(start, start + ms, 2):
        for drv in (board.reader, board.bus and board.bus.master):
            if drv is not None and drv.uart is not None:
                drv.uart.now = now / 1000
        shell.poll_once(now)
    return start + ms


def errors(events, kind):
    return [e["message"] for e in events if e["ev"] == "error" and e["kind"] == kind]


def test_a_vanished_reader_is_a_reader_failure_reopened_with_backoff(tmp_path):
    PLUGGED.clear()
    shell, board, events = make(tmp_path)
    t = run(shell, board, 0, 300)
    assert board.reader.firmware is not None  # the PN532 answered: it is up
    dev = PLUGGED.pop("reader")  # unplugged
    VanishingPort.opened.clear()
    t = run(shell, board, t, 100)
    assert errors(events, "reader")[0].startswith("reader port failed: [Errno 5]")
    assert "card reader failed" in errors(events, "reader")[1]
    assert shell.ports_down["reader"][1] == PORT_RETRY_MIN_MS
    t = run(shell, board, t, 20000)  # still gone: tried with growing back-off, no death
    tries = shell.ports_down["reader"][1]
    assert tries == PORT_RETRY_MAX_MS and VanishingPort.opened == []
    assert len(errors(events, "reader")) == 2, "reported once"
    # control goes on while the reader is gone: a pilot event still reaches the core
    board.pilots[0].queue.append(("pilot", ("B", True)))
    t = run(shell, board, t, 10)
    assert [e for e in events if e["ev"] == "state" and e["state"] == "plugged"]
    PLUGGED["reader"] = dev  # plugged in again
    t = run(shell, board, t, PORT_RETRY_MAX_MS + 500)
    assert VanishingPort.opened == ["reader"] and "reader" not in shell.ports_down
    assert [e for e in events if e["ev"] == "port"] == [
        {"ev": "port", "which": "reader", "state": "up"}]
    assert shell.core.reader_ok
    assert len(errors(events, "reader")) == 2


def test_a_vanished_meter_port_is_a_meter_fault_under_the_policy(tmp_path):
    PLUGGED.clear()
    shell, board, events = make(tmp_path, reader=False, meter=True)
    t = run(shell, board, 0, 1500)
    meters = [o.meter for o in shell.core.outlets]
    assert meters == [0] and shell.meter_failed == [False]  # it reads
    dev = PLUGGED.pop("meter")
    t = run(shell, board, t, 1100)  # the next cycle (interval 1 s) finds the port gone
    assert errors(events, "meter")[0].startswith("meter port failed: [Errno 5]")
    assert shell.meter_failed == [True]
    assert [e for e in events if e["ev"] == "status" and e["status"] == "OutOfService"]
    t = run(shell, board, t, 3000)
    assert len(errors(events, "meter")) == 2  # the port failure and the core's meter fault
    PLUGGED["meter"] = dev
    t = run(shell, board, t, PORT_RETRY_MAX_MS + 1500)
    assert shell.meter_failed == [False] and "meter" not in shell.ports_down
    assert [e for e in events if e["ev"] == "status"][-1]["status"] == "Available"


def test_a_pty_whose_device_went_away_raises_oserror_and_cannot_be_reopened():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    uart = HostUART(path, 115200)
    os.close(slave)
    os.close(master)  # the device side is gone
    with pytest.raises(OSError):
        for _ in range(3):
            uart.write(b"\x00")
            uart.any()
            uart.read(1)
    uart.close()
    with pytest.raises((OSError, serial.SerialException)):
        HostUART("/dev/mpevse-no-such-adapter", 115200)
