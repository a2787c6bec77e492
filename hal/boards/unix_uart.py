"""A raw serial line on the MicroPython unix port (termios), with the machine.UART subset.

Kept apart from the unix board's wiring (`hal.boards.unix`) because the opened lines live on
after start-up while the wiring is dropped. The unix port's `termios` has no B1200..B38400
constants, so the Linux `Bxxx` numbers from <asm-generic/termbits.h> are used for every rate.
"""

import select
import termios

from hal.compat import const

# Linux speed codes (asm-generic/termbits.h): the octal CBAUD values.
LINUX_BAUD = {
    1200: 0o11, 2400: 0o13, 4800: 0o14, 9600: 0o15, 19200: 0o16, 38400: 0o17,
    57600: 0o10001, 115200: 0o10002, 230400: 0o10003, 460800: 0o10004, 921600: 0o10007,
}
_VTIME = const(5)  # c_cc indices on Linux
_VMIN = const(6)
_CHUNK = const(256)


class UnixUART:
    """A raw, non-blocking serial line with the machine.UART subset drivers use (any, read,
    write) and close. Only the unix port runs it: its termios has setraw (CPython's does not)."""

    def __init__(self, path, baud=9600):
        if baud not in LINUX_BAUD:
            raise ValueError("unsupported baud rate %r" % baud)
        self._f = open(path, "r+b")
        try:
            fd = self._f.fileno()
            termios.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = LINUX_BAUD[baud]
            attrs[6][_VMIN] = 0  # read() returns at once with what is there
            attrs[6][_VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            self._poll = select.poll()
            self._poll.register(self._f, select.POLLIN)
        except Exception:
            self._f.close()
            raise
        self._pending = b""

    def any(self):
        """Bytes waiting (reads what the kernel has into a small buffer; never blocks)."""
        if not self._pending and self._poll.poll(0):
            self._pending = self._f.read(_CHUNK) or b""
        return len(self._pending)

    def read(self, n=-1):
        """Up to n bytes that are already there, or None (like machine.UART)."""
        if not self.any():
            return None
        data = self._pending
        if n is None or n < 0 or n >= len(data):
            self._pending = b""
            return data
        self._pending = data[n:]
        return data[:n]

    def write(self, data):
        n = self._f.write(data)
        return len(data) if n is None else n

    def close(self):
        self._f.close()
