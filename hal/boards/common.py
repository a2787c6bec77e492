"""The drivers of one charge point, wired from the configuration and the ports a board opened.

Every target (esp32, unix, host) only opens ports -- UARTs, pins, PWM, ADC or the simulator
I/O channel -- and hands them to `wire()`, so which driver gets built from which config field
is decided in exactly one place. Driver modules are imported lazily: a board without an RDM6300
never loads its code (RAM matters on the ESP32). This module is boot-time only: what lives on
is in `hal.boards.board`, so the shell can drop this module (and the board's) after `wire()`.
"""

from hal.boards.board import Board, SharedBus  # noqa: F401  (re-exported for the boards)


class ConfigError(ValueError):
    """The configuration cannot be wired; the message names the field."""


def field(config, path, default=ConfigError):
    """config["a"]["b"] for path "a.b"; a missing or None value gives `default`, or a
    ConfigError naming the path when there is none (firmware/config.py uses None for "the
    board's default")."""
    node = config
    for key in path.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            if default is ConfigError:
                raise ConfigError("config field '%s' is missing" % path)
            return default
        node = node[key]
    return node


def evse_count(config):
    evses = field(config, "evses")
    if not isinstance(evses, list) or not evses:
        raise ConfigError("config field 'evses' must be a non-empty list")
    return len(evses)


def per_evse(config, path, n):
    """A list with one entry per EVSE (pins.coil, meter.addresses, ...)."""
    values = field(config, path)
    if not isinstance(values, list) or len(values) != n:
        raise ConfigError("config field '%s' needs one entry per EVSE (%d)" % (path, n))
    return values


def reader_type(config):
    """"pn532" | "rdm6300" | "none"; the reader entry may be a dict or just its type name."""
    reader = field(config, "reader", None)
    kind = reader if isinstance(reader, str) or reader is None else field(config, "reader.type")
    kind = kind or "none"
    if kind not in ("pn532", "rdm6300", "none"):
        raise ConfigError("config field 'reader.type' must be pn532, rdm6300 or none")
    return kind


def meter_type(config):
    kind = field(config, "meter.type", "none")
    if kind not in ("modbus", "s0", "none"):
        raise ConfigError("config field 'meter.type' must be modbus, s0 or none")
    return kind


def tethered(config, i):
    cable = field(config, "evses", [])[i].get("cable", "socket")
    if cable not in ("socket", "tethered"):
        raise ConfigError("config field 'evses[%d].cable' must be socket or tethered" % i)
    return cable == "tethered"


class EvseIO:
    """The opened I/O of one EVSE: coil and mirror pins, CP PWM and ADC, PP ADC (or None)."""

    __slots__ = ("coil", "mirror", "pwm", "cp_adc", "pp_adc")

    def __init__(self, coil, mirror, pwm, cp_adc, pp_adc=None):
        self.coil = coil
        self.mirror = mirror
        self.pwm = pwm
        self.cp_adc = cp_adc
        self.pp_adc = pp_adc


def wire(config, evse_io, reader_uart=None, meter_uart=None, de_pin=None, s0_pins=None,
         cp_divider=None, pp_divider=None, mirror_closed_level=1, simio=None, streams=()):
    """Build every driver from `config` and the opened ports; returns a Board.

    `evse_io` is a list of EvseIO, one per config["evses"] entry.
    """
    from hal.contactor import Contactor
    from hal.pilot import CP_DIVIDER, PP_DIVIDER, Pilot, Proximity

    n = evse_count(config)
    if len(evse_io) != n:
        raise ConfigError("the board opened I/O for %d EVSEs, config has %d" % (len(evse_io), n))
    cp_div = cp_divider or CP_DIVIDER
    pp_div = pp_divider or PP_DIVIDER
    contactors = []
    pilots = []
    proximity = []
    for i, io in enumerate(evse_io):
        contactors.append(Contactor(io.coil, io.mirror, mirror_closed_level=mirror_closed_level))
        pilots.append(Pilot(io.pwm, io.cp_adc, divider=cp_div))
        if tethered(config, i):
            proximity.append(None)
        else:
            if io.pp_adc is None:
                raise ConfigError("evses[%d] has a socket but no PP input (pins.pp_adc)" % i)
            proximity.append(Proximity(io.pp_adc, divider=pp_div))

    kind = reader_type(config)
    reader = None
    if kind != "none":
        if reader_uart is None:
            raise ConfigError("config field 'reader' names a %s but no port was given" % kind)
        if kind == "pn532":
            from hal.pn532 import PN532

            reader = PN532(reader_uart)
        else:
            from hal.rdm6300 import RDM6300

            reader = RDM6300(reader_uart)

    kind = meter_type(config)
    bus = None
    meters = [None] * n
    if kind == "modbus":
        if meter_uart is None:
            raise ConfigError("config field 'meter.type' is modbus but no meter port was given")
        from hal.meters import Meter
        from hal.modbus import ModbusMaster

        master = ModbusMaster(meter_uart, field(config, "meter.baud"), de_pin=de_pin)
        model = field(config, "meter.model")
        try:
            meters = [Meter(master, model, a) for a in per_evse(config, "meter.addresses", n)]
        except ValueError as e:
            raise ConfigError("config field 'meter': %s" % e) from None
        bus = SharedBus(master, meters)
    elif kind == "s0":
        from hal.s0 import S0Meter

        if s0_pins is None or len(s0_pins) != n:
            raise ConfigError("config field 'meter.s0_pins' needs one pin per EVSE")
        ppk = field(config, "meter.pulses_per_kwh")
        meters = [S0Meter(p, ppk) for p in s0_pins]
    return Board(reader, meters, contactors, pilots, proximity, bus=bus, simio=simio,
                 streams=streams)


def wire_simio(config, simio, reader_uart=None, meter_uart=None, streams=()):
    """The off-target boards: pilot, contactor and PP of every EVSE through the simio channel."""
    n = evse_count(config)
    if simio.evses != n:
        raise ConfigError("simio channel serves %d EVSEs, config has %d" % (simio.evses, n))
    io = []
    for e in range(1, n + 1):
        pp = None if tethered(config, e - 1) else simio.pp_adc(e)
        io.append(EvseIO(simio.coil_pin(e), simio.mirror_pin(e), simio.pwm(e), simio.cp_adc(e), pp))
    return wire(config, io, reader_uart=reader_uart, meter_uart=meter_uart,
                cp_divider=simio.cp_divider, pp_divider=simio.pp_divider, mirror_closed_level=1,
                simio=simio, streams=streams)


def build_off_target(config, open_port, simio_stream, reader=None, meter=None):
    """The unix and host boards: serial devices through `open_port(port, baud)` (a path or
    URL, or an already-open stream), pilot/contactor/PP through the simulator I/O channel on
    `simio_stream`. What was opened is closed again if wiring fails."""
    from hal.boards.simio import SimIO

    streams = [simio_stream]
    try:
        reader_uart = None
        kind = reader_type(config)
        if kind != "none":
            reader_uart = open_port(reader, field(config, "reader.baud",
                                                  115200 if kind == "pn532" else 9600))
            streams.append(reader_uart)
        meter_uart = None
        if field(config, "meter.type", "none") == "modbus":
            meter_uart = open_port(meter, field(config, "meter.baud"))
            streams.append(meter_uart)
        sio = SimIO(simio_stream, evses=evse_count(config))
        return wire_simio(config, sio, reader_uart, meter_uart, streams=streams)
    except Exception:
        for s in streams:
            if s is not None and hasattr(s, "close"):
                s.close()
        raise
