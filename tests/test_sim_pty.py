"""The virtual devices behind real ptys, serviced by the single-threaded hub.

A pyserial client (or a real tool as a subprocess) opens the slave path; the hub runs in this
test's thread between the client's steps. Every wait is bounded.
"""

import json
import os
import select
import subprocess
import sys
import time

import pytest
import serial

from host_sim.devices.hub import Hub
from host_sim.devices.pn532 import ACK, Pn532
from host_sim.devices.rdm6300 import Rdm6300
from host_sim.devices.sdm import SdmBus, SdmMeter
from host_sim.devices.simio import SimEvse, SimIo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H = bytes.fromhex


def collect(hub, ser, n, timeout_s=2.0):
    """Run the hub until the client has `n` bytes (or the time-out); returns them."""
    buf = bytearray()
    end = time.monotonic() + timeout_s
    while len(buf) < n and time.monotonic() < end:
        hub.run_once(0.01)
        waiting = ser.in_waiting
        if waiting:
            buf += ser.read(waiting)
    return bytes(buf)


def open_client(path, baud):
    return serial.Serial(path, baud, timeout=0)


def test_pn532_over_pty():
    with Hub() as hub:
        chip = Pn532()
        port = hub.attach("reader", chip)
        with open_client(port.path, 115200) as ser:
            ser.write(H("5555" + "00" * 14) + H("0000FF05FBD4140100001700"))
            assert collect(hub, ser, 15) == ACK + H("0000FF02FED5151600")
            ser.write(H("0000FF06FAD43205FF0101F400"))
            assert collect(hub, ser, 15) == ACK + H("0000FF02FED533F800")
            chip.present(H("DEADBEEF"), hub.clock())
            t0 = time.monotonic()
            ser.write(H("0000FF04FCD44A0100E100"))
            reply = collect(hub, ser, 25)
            assert reply == ACK + H("0000FF0CF4D54B01010004 0804DEADBEEF9600".replace(" ", ""))
            assert time.monotonic() - t0 < 0.5
        st = hub.status()["reader"]
        assert st["device"]["target"] == "deadbeef" and st["port"]["bytes_out"] == 55


def test_sdm_bus_over_pty_two_slaves():
    with Hub() as hub:
        bus = SdmBus([SdmMeter(1, "sdm120"), SdmMeter(2, "sdm120", import_kwh=7.0)])
        port = hub.attach("meter", bus)
        with open_client(port.path, 2400) as ser:
            ser.write(H("01040000000271CB"))
            assert collect(hub, ser, 9) == H("010404436600000E1F")
            ser.write(H("020400480002F1EE"))
            reply = collect(hub, ser, 9)
            assert reply[:3] == H("020404") and reply[3:7] == H("40E00000")  # 7.0
            ser.write(H("030400000002"))  # no CRC, unknown slave: silence
            assert collect(hub, ser, 1, timeout_s=0.3) == b""


def test_simio_over_pty():
    with Hub() as hub:
        evse = SimEvse()
        io = SimIo([evse])
        port = hub.attach("simio", io)
        with open_client(port.path, 115200) as ser:
            ser.write(b"hello\n")
            text = collect(hub, ser, len(b"cp 1 12000 12000\npp 1 0\nmirror 1 1\n"))
            assert text == b"cp 1 12000 12000\npp 1 0\nmirror 1 1\n"
            evse.ev.plug()
            evse.ev.charge()
            ser.write(b"pwm 1 267\ncoil 1 1\nbogus\n")
            text = collect(hub, ser, len(b"pp 1 220\ncp 1 6000 -12000\nmirror 1 0\n"))
            assert set(text.decode().splitlines()) == {"cp 1 6000 -12000", "pp 1 220",
                                                       "mirror 1 0"}
        assert io.malformed == 1 and io.lines_in == 4


def test_rdm6300_repeats_over_pty_and_overrun_is_bounded():
    with Hub() as hub:
        reader = Rdm6300(repeat_s=0.005)
        port = hub.attach("rdm", reader, rx_limit=256)
        reader.present(H("100086F444"), hub.clock())
        with open_client(port.path, 9600) as ser:
            frames = collect(hub, ser, 28)
            assert frames[:28] == (b"\x02100086F44426\x03") * 2
        hub.run_for(0.5)  # nobody reads: the "UART FIFO" overruns instead of growing
        assert port.overruns > 0 and port.unread() <= 256 + 14 * 16
        assert hub.status()["rdm"]["device"]["frames_sent"] > 50


def test_hub_wakes_for_timed_answers_without_input():
    """An infinite-retry InListPassiveTarget answers when the card enters, with nothing read."""
    with Hub() as hub:
        chip = Pn532()
        port = hub.attach("reader", chip)
        with open_client(port.path, 115200) as ser:
            ser.write(H("5555" + "00" * 14) + H("0000FF03FDD414011700"))
            assert collect(hub, ser, 15).startswith(ACK)
            ser.write(H("0000FF04FCD44A0100E100"))
            assert collect(hub, ser, 6) == ACK
            assert collect(hub, ser, 1, timeout_s=0.3) == b""
            chip.present(H("01020304"), hub.clock())
            assert collect(hub, ser, 19)[6:10] == H("4B010100")


def run_tool_against(hub, args, timeout_s=20.0):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m"] + args, cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ok = hub.run_until(lambda: proc.poll() is not None, timeout_s)
        if not ok:
            proc.kill()
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert ok, "tool did not finish: " + err
    return proc.returncode, out, err


@pytest.mark.slow
def test_tools_meter_reads_the_virtual_sdm120():
    with Hub() as hub:
        meter = SdmMeter(1, "sdm120", lambda now: (10.0, 0.0, 0.0), import_kwh=42.0)
        port = hub.attach("meter", SdmBus([meter]))
        code, out, err = run_tool_against(
            hub, ["tools.meter", "--port", port.path, "--model", "sdm120", "--count", "1"])
    assert code == 0, err
    reading = json.loads(out.splitlines()[0])
    assert reading["voltage_v"] == 230.0 and reading["current_a"] == 10.0
    assert reading["power_w"] == 2300.0
    assert 42.0 <= reading["energy_kwh"] < 42.01


@pytest.mark.slow
def test_tools_cardreader_reads_the_virtual_pn532_through_the_hub():
    with Hub() as hub:
        chip = Pn532()
        chip.present(H("04A1B2C3D4E5F6"))
        port = hub.attach("reader", chip)
        code, out, err = run_tool_against(
            hub, ["tools.cardreader", "--port", port.path, "--count", "1", "--timeout", "15"])
    assert code == 0, err
    assert json.loads(out) == {"uid": "04A1B2C3D4E5F6", "reader": "pn532", "bytes": 7}
    assert chip.status()["sam"] is True


def test_add_reader_for_a_console_and_run_for_bound():
    calls = []
    r, w = os.pipe()
    try:
        with Hub() as hub:
            hub.add_reader(r, lambda now: calls.append(os.read(r, 100)))
            os.write(w, b"status\n")
            t0 = time.monotonic()
            hub.run_for(0.1)
            assert 0.1 <= time.monotonic() - t0 < 0.3
            assert calls == [b"status\n"]
            assert hub.run_until(lambda: False, 0.05) is False
            with pytest.raises(ValueError):
                hub.attach("x", Rdm6300())
                hub.attach("x", Rdm6300())
    finally:
        os.close(r)
        os.close(w)


def test_discard_drops_bytes_in_flight_both_ways():
    """A power cut empties both UART FIFOs: what the device queued for the firmware and what
    the firmware wrote that the device had not read yet."""
    from host_sim.devices.pty import PtyPort

    port = PtyPort()
    try:
        with open_client(port.path, 9600) as ser:
            port.write(b"stale reply")
            ser.write(b"stale command")
            ser.flush()
            end = time.monotonic() + 2.0
            while port.unread() < len(b"stale reply") and time.monotonic() < end:
                time.sleep(0.001)
            port.discard()
            assert port.read() == b"" and port.unread() == 0 and port.backlog == 0
            assert ser.in_waiting == 0
            ser.write(b"fresh")  # the line still works afterwards
            ser.flush()
            got = b""
            while len(got) < 5 and select.select([port.master], [], [], 2.0)[0]:
                got += port.read()
            assert got == b"fresh"
    finally:
        port.close()
