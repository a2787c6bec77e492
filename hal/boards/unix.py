"""Board for the MicroPython unix port: serial devices through termios, the rest through simio.

`build(config, reader=PATH, meter=PATH, simio=PATH)` opens each path as a raw serial line
(`UnixUART`); the pilot, contactor and PP of every EVSE come from the simulator I/O channel on
the `simio` path. A port may also be passed as an already-open stream (anything with
read/write/any), which is how tests inject fakes.

The unix port's `termios` has no B1200..B38400 constants (it starts at B9600 and lacks 19200 and
38400 too), so the Linux `Bxxx` numbers from <asm-generic/termbits.h> are used for every rate.
On a pty the rate is irrelevant; on a real USB adapter it matters.
"""

from hal.boards.common import evse_count, field, reader_type, wire_simio
from hal.boards.simio import SimIO
from hal.boards.unix_uart import LINUX_BAUD, UnixUART  # noqa: F401  (re-exported)

SIMIO_BAUD = 115200


def _open(port, baud):
    if port is None or not isinstance(port, str):
        return port
    return UnixUART(port, baud)


def build(config, reader=None, meter=None, simio=None):
    """Board from config + device paths (or open streams)."""
    if simio is None:
        raise ValueError("the unix board needs the simulator I/O channel (simio=PATH)")
    streams = []
    try:
        sio_stream = _open(simio, SIMIO_BAUD)
        streams.append(sio_stream)
        reader_uart = None
        kind = reader_type(config)
        if kind != "none":
            reader_uart = _open(reader, field(config, "reader.baud",
                                              115200 if kind == "pn532" else 9600))
            streams.append(reader_uart)
        meter_uart = None
        if field(config, "meter.type", "none") == "modbus":
            meter_uart = _open(meter, field(config, "meter.baud"))
            streams.append(meter_uart)
        sio = SimIO(sio_stream, evses=evse_count(config))
        return wire_simio(config, sio, reader_uart, meter_uart, streams=streams)
    except Exception:
        for s in streams:
            if s is not None and hasattr(s, "close"):
                s.close()
        raise
