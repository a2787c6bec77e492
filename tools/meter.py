"""Bench meter reader: the firmware's own Modbus master and meter table on a host serial port.

    python -m tools.meter --port /dev/ttyUSB0 --model sdm120 [--address 1] [--baud 2400]
                          [--count N] [--interval S] [--timeout-ms MS]

Prints one JSON line per reading with the fields the model offers (`energy_kwh` first). A Modbus
exception, a time-out or a bad frame prints one line on stderr and exits non-zero, so a script
can tell the cases apart: 3 exception, 4 time-out (nothing came), 5 bad frame (also bytes that
were no answer: garbage), 6 port, 7 bus busy (never silent for t3.5: nothing could be sent).
`--port` takes anything pyserial's `serial_for_url` opens (`/dev/ttyUSB0`,
`rfc2217://host:port`, `loop://`).
"""

import argparse
import json
import math
import sys

import serial

from hal.boards.host import HostUART
from hal.compat import sleep_ms, ticks_ms
from hal.kinds import READING
from hal.meter_models import MODELS
from hal.meters import Meter, MeterValueError
from hal.modbus import ModbusBusBusy, ModbusError, ModbusException, ModbusMaster, ModbusTimeout

EXIT_EXCEPTION = 3
EXIT_TIMEOUT = 4
EXIT_BAD_FRAME = 5  # also "garbage": bytes came, none of them an answer
EXIT_PORT = 6
EXIT_BUS_BUSY = 7  # the bus never fell silent for t3.5: nothing could be sent
BAUD_RANGE = (1200, 115200)  # firmware.config: meter.baud
MAX_INTERVAL_S = 86400.0
MAX_TIMEOUT_MS = 60000

FIRST_KEYS = ("energy_kwh", "power_w", "voltage_v", "current_a")


def reading_line(reading):
    """The JSON line for one reading: energy_kwh, power, voltage, current, then per-phase."""
    out = {}
    for key in FIRST_KEYS:
        if key in reading:
            out[key] = reading[key]
    for key in sorted(reading):
        if key not in out and key != "energy_wh":
            out[key] = reading[key]
    return json.dumps(out)


def exit_code(exc):
    if isinstance(exc, ModbusBusBusy):
        return EXIT_BUS_BUSY
    if isinstance(exc, ModbusException):
        return EXIT_EXCEPTION
    if isinstance(exc, ModbusTimeout):
        return EXIT_TIMEOUT
    return EXIT_BAD_FRAME


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m tools.meter", description=__doc__.split("\n")[0])
    p.add_argument("--port", required=True, help="serial port or pyserial URL")
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--address", type=int, default=1, help="Modbus slave address (1..247)")
    p.add_argument("--baud", type=int, default=None, help="default: the model's factory setting")
    p.add_argument("--count", type=int, default=1, help="readings to print (0 = until Ctrl-C)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    p.add_argument("--timeout-ms", type=int, default=500, help="response time-out per request")
    args = p.parse_args(argv)
    if not 1 <= args.address <= 247:
        p.error("--address must be 1..247")
    if args.count < 0:
        p.error("--count must be >= 0 (0: until Ctrl-C), got %d" % args.count)
    if not math.isfinite(args.interval) or not 0 <= args.interval <= MAX_INTERVAL_S:
        p.error("--interval must be a number of seconds 0..%d, got %r"
                % (MAX_INTERVAL_S, args.interval))
    if not 0 < args.timeout_ms <= MAX_TIMEOUT_MS:
        p.error("--timeout-ms must be 1..%d, got %d" % (MAX_TIMEOUT_MS, args.timeout_ms))
    if args.baud is None:
        args.baud = MODELS[args.model]["baud"]
    if not BAUD_RANGE[0] <= args.baud <= BAUD_RANGE[1]:
        p.error("--baud must be %d..%d, got %d" % (BAUD_RANGE + (args.baud,)))
    return args


def run(args, out=sys.stdout, err=sys.stderr):
    try:
        port = HostUART(args.port, args.baud)
    except (serial.SerialException, ValueError, OSError) as e:
        print("error: cannot open %s: %s" % (args.port, e), file=err)
        return EXIT_PORT
    try:
        master = ModbusMaster(port, args.baud, timeout_ms=args.timeout_ms)
        meter = Meter(master, args.model, args.address,
                      interval_ms=int(args.interval * 1000), max_errors=1)
        printed = 0
        while args.count == 0 or printed < args.count:
            event = meter.poll(ticks_ms())
            if event is None:
                sleep_ms(1)
                continue
            kind, data = event
            if kind == READING:
                print(reading_line(data), file=out, flush=True)
                printed += 1
                continue
            if isinstance(data, (ModbusError, MeterValueError)):
                print("error: %s %s at address %d: %s: %s" % (
                    MODELS[args.model]["name"], args.port, args.address,
                    type(data).__name__, data), file=err)
                return exit_code(data)
            raise data
        return 0
    finally:
        port.close()


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
