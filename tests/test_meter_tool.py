"""`python -m tools.meter` as a real process against a Modbus slave on the other end of a pty."""

import json
import os
import select
import subprocess
import sys
import threading
import time
import tty

import pytest

from hal.meter_models import MODELS, plan_requests
from tests.mp.test_meters import _golden
from tests.mp.test_modbus_fake import RegisterSlave
from tests.mpy import ROOT


class PtySlave:
    """Runs `responder(request) -> [(delay_ms, bytes)]` on the master side of a pty."""

    def __init__(self, responder):
        self.responder = responder
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self.slave)

    def _serve(self):
        buf = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                buf += os.read(self.master, 256)
            except OSError:
                return
            while len(buf) >= 8:  # every request of the tool is an 8-byte FC 03/04 read
                req = bytes(buf[:8])
                del buf[:8]
                for delay_ms, frame in self.responder(req):
                    time.sleep(delay_ms / 1000)
                    os.write(self.master, frame)


def run_tool(port, *args, timeout=30):
    cmd = [sys.executable, "-m", "tools.meter", "--port", port] + list(args)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _golden_slave(model):
    for name, fc, regs, want in _golden():
        if name == model:
            return RegisterSlave(1, {fc: regs}, delay_ms=5), want
    raise KeyError(model)


def _line(want):
    return {k: v for k, v in want.items() if k != "energy_wh"}


@pytest.mark.parametrize("model", ["sdm120", "sdm630", "abb_b23", "orno_we516"])
def test_json_lines_for_each_model(model):
    slave, want = _golden_slave(model)
    with PtySlave(slave) as pty:
        res = run_tool(pty.path, "--model", model, "--count", "2", "--interval", "0.05")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert json.loads(line) == _line(want)
    assert list(json.loads(lines[0]))[:2] == ["energy_kwh", "power_w"]
    # Each reading re-read every register group of the model.
    assert len(slave.requests) == 2 * len(plan_requests(MODELS[model]))


def test_exception_exits_3_with_a_clear_message():
    slave, _ = _golden_slave("sdm120")
    slave.regs = {4: {}}  # no registers: the meter answers "illegal data address"
    with PtySlave(slave) as pty:
        res = run_tool(pty.path, "--model", "sdm120")
    assert res.returncode == 3, (res.returncode, res.stderr)
    assert res.stdout == ""
    assert "ModbusException" in res.stderr and "illegal data address" in res.stderr


def test_timeout_exits_4():
    with PtySlave(lambda req: []) as pty:
        t0 = time.monotonic()
        res = run_tool(pty.path, "--model", "sdm630", "--timeout-ms", "200")
    assert res.returncode == 4, (res.returncode, res.stderr)
    assert "ModbusTimeout" in res.stderr and "no answer from slave 1" in res.stderr
    assert time.monotonic() - t0 < 10


def test_wrong_slave_answer_exits_5():
    slave, _ = _golden_slave("sdm120")
    slave.address = 2  # answers as slave 2 (a second meter with a clashing config)

    def as_other_slave(req):
        return slave(bytes((2,)) + req[1:])

    with PtySlave(as_other_slave) as pty:
        res = run_tool(pty.path, "--model", "sdm120")
    assert res.returncode == 5, (res.returncode, res.stderr)
    assert "ModbusWrongSlave" in res.stderr


def test_bad_port_and_bad_arguments():
    res = run_tool("/nonexistent/tty", "--model", "sdm120")
    assert res.returncode == 6 and "cannot open" in res.stderr
    res = run_tool("loop://", "--model", "nope")
    assert res.returncode == 2
    res = run_tool("loop://", "--model", "sdm120", "--address", "300")
    assert res.returncode == 2 and "--address" in res.stderr


class PtyBus(PtySlave):
    """The host simulator's virtual SDM bus (host_sim/devices/sdm.py) behind a pty."""

    def __init__(self, bus):
        super().__init__(None)
        self.bus = bus

    def _serve(self):
        while not self._stop.is_set():
            now = time.monotonic()
            due = self.bus.next_event(now)
            wait = 0.05 if due is None else max(0.0, min(0.05, due - now))
            ready, _, _ = select.select([self.master], [], [], wait)
            now = time.monotonic()
            if ready:
                try:
                    self.bus.feed(os.read(self.master, 256), now)
                except OSError:
                    return
            out = self.bus.pending(now)
            if out:
                os.write(self.master, out)


@pytest.mark.parametrize("model", ["sdm120", "sdm630"])
def test_against_the_virtual_sdm_meter(model):
    from host_sim.devices import sdm

    meter = sdm.SdmMeter(1, model, lambda now: (16.0, 8.0, 0.5), import_kwh=1234.5)
    with PtyBus(sdm.SdmBus([meter])) as pty:
        res = run_tool(pty.path, "--model", model, "--count", "2", "--interval", "0.1")
    assert res.returncode == 0, res.stderr
    first, second = (json.loads(line) for line in res.stdout.splitlines())
    assert first["voltage_v"] == 230.0 and first["current_a"] == 16.0
    power = 230.0 * 16.0 if model == "sdm120" else 230.0 * 24.5
    assert first["power_w"] == power
    assert 1234.5 <= first["energy_kwh"] <= second["energy_kwh"] < 1234.6
    if model == "sdm630":
        assert first["current_l2_a"] == 8.0 and first["current_l3_a"] == 0.5
