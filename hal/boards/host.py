"""Board for CPython (simulator, laptop bench): pyserial for devices, a pty file for simio.

`build(config, reader=URL, meter=URL, simio=PATH)`: reader and meter are pyserial URLs or device
paths, so a USB-serial PN532 or an RS-485 adapter on a laptop works as well as a simulator pty;
the pilot, contactor and PP of every EVSE come from the simulator I/O channel on `simio`.
A port may also be an already-open stream with read/write/any (tests inject fakes that way).
"""

import errno
import fcntl
import os
import select
import termios
import tty

import serial

from hal.boards.common import build_off_target

_WRITE_TIMEOUT_S = 1.0


class HostUART:
    """pyserial behind the machine.UART subset drivers use: any() is `in_waiting`."""

    def __init__(self, url, baud):
        self.serial = serial.serial_for_url(url, baudrate=baud, timeout=0)
        self.baud = baud

    def any(self):
        return self.serial.in_waiting

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.serial.in_waiting
        return self.serial.read(n)  # b"" when nothing is there (MicroPython would say None)

    def write(self, data):
        return self.serial.write(data)

    def flush(self):
        self.serial.flush()

    def close(self):
        self.serial.close()


class PtyStream:
    """The simio pty as a plain non-blocking file descriptor (raw mode, FIONREAD for any())."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(self.fd)
        except termios.error:
            os.close(self.fd)
            raise
        self.path = path

    def any(self):
        buf = fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, "little")

    def read(self, n=-1):
        if n is None or n < 0:
            n = 4096
        try:
            return os.read(self.fd, n)
        except BlockingIOError:
            return b""

    def write(self, data):
        """Write all of `data`; waits (bounded) only if the pty buffer is full."""
        view = memoryview(data)
        while view:
            try:
                k = os.write(self.fd, view)
            except BlockingIOError:
                k = 0
            except OSError as e:
                if e.errno != errno.EAGAIN:
                    raise
                k = 0
            view = view[k:]
            if view and not select.select([], [self.fd], [], _WRITE_TIMEOUT_S)[1]:
                raise OSError(errno.ETIMEDOUT, "simio pty not drained by the simulator")
        return len(data)

    def close(self):
        os.close(self.fd)


def _open(port, baud):
    if port is None or not isinstance(port, str):
        return port
    return HostUART(port, baud)


def build(config, reader=None, meter=None, simio=None):
    """Board from config + pyserial URLs / simio pty path (or open streams)."""
    if simio is None:
        raise ValueError("the host board needs the simulator I/O channel (simio=PATH)")
    return build_off_target(config, _open, PtyStream(simio) if isinstance(simio, str) else simio,
                            reader, meter)
