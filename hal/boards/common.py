"""The drivers of one charge point, wired from the configuration and the ports a board opened.

Every target (esp32, unix, host) only opens ports -- UARTs, pins, PWM, ADC or the simulator
I/O channel -- and hands them to `wire()`, so which driver gets built from which config field
is decided in exactly one place. The configuration is the one `firmware.config.load` returned:
every field is present and checked there (names, ranges, one entry per EVSE), so what is left
to check here is what only the board knows -- which ports it could open.
Driver modules are imported lazily: a board without an RDM6300 never loads its code (RAM
matters on the ESP32). This module is boot-time only: what lives on is in `hal.boards.board`,
so the shell can drop this module (and the board's) after `wire()`. What cannot be wired is a
`firmware.config.ConfigError` like any other configuration error: the field and the rule.
"""

from firmware.config import ConfigError  # noqa: F401  (re-exported for the board modules)
from hal.boards.board import Board, SharedBus


def wire(config, io, reader_uart=None, meter_uart=None, de_pin=None, s0_pins=None,
         mirror_closed_level=1):
    """Build every driver from `config` and the opened ports; returns a Board.

    `io`: one (coil, mirror, pwm, cp_adc, pp_adc) per EVSE; pp_adc None for a tethered cable.
    """
    from hal.contactor import Contactor
    from hal.pilot import Pilot, Proximity

    contactors = []
    pilots = []
    proximity = []
    ct = config["contactor"]
    for coil, mirror, pwm, cp_adc, pp_adc in io:
        contactors.append(Contactor(coil, mirror, settle_ms=ct["settle_ms"],
                                    confirm_ms=ct["weld_confirm_ms"],
                                    mirror_closed_level=mirror_closed_level))
        pilots.append(Pilot(pwm, cp_adc))
        proximity.append(None if pp_adc is None else Proximity(pp_adc))

    kind = config["reader"]["type"]
    reader = None
    if kind != "none":
        if reader_uart is None:
            raise ConfigError("reader", "names a %s but no port was given" % kind)
        if kind == "pn532":
            from hal.pn532 import PN532

            reader = PN532(reader_uart)
        else:
            from hal.rdm6300 import RDM6300

            reader = RDM6300(reader_uart)

    meter = config["meter"]
    kind = meter["type"]
    bus = None
    meters = [None] * len(io)
    if kind == "modbus":
        if meter_uart is None:
            raise ConfigError("meter.type", "modbus, but no meter port was given")
        from hal.meters import Meter
        from hal.modbus import ModbusMaster

        master = ModbusMaster(meter_uart, meter["baud"], de_pin=de_pin)
        meters = [Meter(master, meter["model"], a) for a in meter["addresses"]]
        bus = SharedBus(master, meters)
    elif kind == "s0":
        if s0_pins is None:
            raise ConfigError("meter.type", "s0, but this board has no S0 inputs")
        from hal.s0 import S0Meter

        meters = [S0Meter(p, meter["pulses_per_kwh"]) for p in s0_pins]
    return Board(reader, meters, contactors, pilots, proximity, bus)


def build_off_target(config, open_port, simio, reader=None, meter=None):
    """The unix and host boards: serial devices through `open_port(port, baud)` (a path or
    URL, or an already-open stream), pilot/contactor/PP of every EVSE through the simulator
    I/O channel on the `simio` stream. What was opened is closed again if wiring fails."""
    from hal.boards.simio import SimIO, SimLine

    streams = [simio]
    try:
        reader_uart = None
        if config["reader"]["type"] != "none":
            reader_uart = open_port(reader, config["reader"]["baud"])
            streams.append(reader_uart)
        meter_uart = None
        if config["meter"]["type"] == "modbus":
            meter_uart = open_port(meter, config["meter"]["baud"])
            streams.append(meter_uart)
        evses = config["evses"]
        sio = SimIO(simio, len(evses))
        io = []
        for e in range(1, len(evses) + 1):
            io.append((SimLine(sio, e, "coil"), SimLine(sio, e, "mirror"),
                       SimLine(sio, e, "pwm"), SimLine(sio, e, "cp"),
                       None if evses[e - 1]["cable"] == "tethered" else SimLine(sio, e, "pp")))
        board = wire(config, io, reader_uart, meter_uart)
        # a serial device given by name can vanish (USB-serial unplugged): the board can open
        # it again by that name (Board.reopen); an injected stream cannot be reopened
        # (the port's class, not open_port: that lives in a boot-only module)
        if reader_uart is not None and isinstance(reader, str):
            board.openers["reader"] = (type(reader_uart), reader, config["reader"]["baud"])
        if meter_uart is not None and isinstance(meter, str):
            board.openers["meter"] = (type(meter_uart), meter, config["meter"]["baud"])
        import os
        import time

        if os.getenv("MPEVSE_RTC_FROM_EPOCH"):  # the simulator's board without RTC backup
            board.clock_offset_s = -int(time.time())
        return board
    except Exception:
        for s in streams:
            if s is not None and hasattr(s, "close"):
                s.close()
        raise
