"""Board for the MicroPython unix port: serial devices through termios, the rest through simio.

`build(config, reader=PATH, meter=PATH, simio=PATH)` opens each path as a raw serial line
(`UnixUART`); the pilot, contactor and PP of every EVSE come from the simulator I/O channel on
the `simio` path. A port may also be passed as an already-open stream (anything with
read/write/any), which is how tests inject fakes.

The unix port's `termios` has no B1200..B38400 constants (it starts at B9600 and lacks 19200 and
38400 too), so the Linux `Bxxx` numbers from <asm-generic/termbits.h> are used for every rate.
On a pty the rate is irrelevant; on a real USB adapter it matters.
"""

from hal.boards.common import build_off_target
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
    return build_off_target(config, _open, _open(simio, SIMIO_BAUD), reader, meter)
