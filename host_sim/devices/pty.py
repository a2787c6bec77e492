"""A pseudo-terminal attachment: the firmware opens `path` (the slave), the sim uses the master.

The slave is put in raw mode (no echo, no line editing, 8-bit clean) and the sim keeps its own
slave descriptor open, so the master never sees EIO/hang-up while no firmware is attached or
between firmware restarts. A UART has a finite receive buffer: when more than `rx_limit` bytes
wait unread on the firmware side the sim flushes them (an overrun, counted) instead of growing
an unbounded backlog of stale frames.
"""

import errno
import fcntl
import os
import struct
import termios
import tty

READ_CHUNK = 4096
MAX_BACKLOG = 65536


class PtyPort:
    def __init__(self, *, rx_limit=4096):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.rx_limit = rx_limit
        self._out = bytearray()
        self.bytes_in = 0
        self.bytes_out = 0
        self.overruns = 0
        self.dropped = 0

    @property
    def backlog(self):
        """Bytes the device produced that the pty could not take yet."""
        return len(self._out)

    def fileno(self):
        return self.master

    def read(self):
        """Whatever the firmware wrote (b"" if nothing)."""
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # cannot happen while we hold the slave, but be safe
                return b""
            raise
        self.bytes_in += len(data)
        return data

    def unread(self):
        """Bytes written to the firmware that it has not read yet."""
        buf = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", buf)[0]

    def write(self, data):
        if data:
            self._out += data
            if len(self._out) > MAX_BACKLOG:
                extra = len(self._out) - MAX_BACKLOG
                self.dropped += extra
                del self._out[:extra]
        self.flush()

    def flush(self):
        """Push queued bytes to the master; returns True when nothing is left queued."""
        if not self._out:
            return True
        if self.unread() > self.rx_limit:
            termios.tcflush(self._slave, termios.TCIFLUSH)
            self.overruns += 1
        try:
            n = os.write(self.master, self._out)
        except BlockingIOError:
            return False
        self.bytes_out += n
        del self._out[:n]
        return not self._out

    def discard(self):
        """Drop every byte in flight both ways, as a power cut empties both UARTs' FIFOs: what
        the device had queued or the pty held for the firmware, and what the firmware wrote
        that the device has not read."""
        self._out = bytearray()
        termios.tcflush(self._slave, termios.TCIFLUSH)
        termios.tcflush(self.master, termios.TCIFLUSH)

    def status(self):
        return {"path": self.path, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "queued": len(self._out), "overruns": self.overruns, "dropped": self.dropped}

    def close(self):
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
