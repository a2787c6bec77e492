"""PN532 frame codec (UM0701-02 §6.2): builds host frames, and a streaming parser for the reply.

The parser is fed whatever the UART happened to deliver: frames split across reads, several
frames in one read, garbage or line noise in between. It hunts for the start code `00 FF`,
checks LCS and DCS, and hands out one frame at a time. Its buffer is allocated once and bounded;
bytes it has to throw away are counted, never raised, so a noisy line cannot crash the caller.
"""

from hal.compat import const

ACK_FRAME = b"\x00\x00\xff\x00\xff\x00"  # host -> PN532 it aborts the command in progress

TFI_HOST = const(0xD4)  # host -> PN532
TFI_CHIP = const(0xD5)  # PN532 -> host
TFI_ERROR = const(0x7F)  # application-level error frame `00 FF 01 FF 7F 81`, no command byte

# What `FrameParser.next()` returns as the first tuple element.
ACK = const(1)
NACK = const(2)
ERROR = const(3)
DATA = const(4)

MAX_NORMAL_LEN = const(255)  # LEN counts TFI + data
MAX_EXTENDED_LEN = const(265)  # TFI + 264 data bytes
# Longest frame from the start code through DCS: 00 FF FF FF LENM LENL LCS (7) + 265 + DCS.
_MAX_FRAME = const(273)
BUFFER_SIZE = const(288)  # > _MAX_FRAME, so a buffer that holds no complete frame has room


def build_frame(payload, tfi=TFI_HOST):
    """A normal information frame around `payload` (command byte first, then parameters)."""
    n = len(payload) + 1
    if n > MAX_NORMAL_LEN:
        raise ValueError("payload > 254")
    out = bytearray(n + 7)
    out[2] = 0xFF
    out[3] = n
    out[4] = (-n) & 0xFF
    out[5] = tfi
    out[6 : 6 + n - 1] = payload
    out[n + 5] = (-(tfi + sum(payload))) & 0xFF
    return bytes(out)


class FrameParser:
    """Streaming parser: `feed(data)` bytes in, `next()` frames out.

    `next()` returns None (need more bytes) or `(kind, payload)`: `(ACK, None)`,
    `(NACK, None)`, `(ERROR, None)` or `(DATA, bytes)` where the payload starts at the TFI
    byte (`D5 4B ...`). Counters: `garbage` bytes skipped while hunting for a start code
    (preamble/postamble `00`s are not garbage), `bad_frames` candidates rejected on LCS/DCS or
    length, `overflow` bytes dropped because the caller fed more than `room()`.
    """

    def __init__(self, size=BUFFER_SIZE):
        if size <= _MAX_FRAME:
            raise ValueError("size <= 273")
        self._buf = bytearray(size)
        self._mv = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self.garbage = 0
        self.bad_frames = 0
        self.overflow = 0

    def room(self):
        """How many bytes `feed` can take without dropping any."""
        return len(self._buf) - (self._end - self._start)

    def reset(self):
        """Forget everything buffered (e.g. after a time-out); counted as garbage if not 00."""
        self._skip(self._end - self._start)
        self._start = self._end = 0

    def feed(self, data):
        """Append bytes; anything beyond `room()` is dropped and counted in `overflow`."""
        n = len(data)
        if not n:
            return
        size = len(self._buf)
        if self._end + n > size and self._start:
            held = self._end - self._start
            self._mv[0:held] = self._mv[self._start : self._end]
            self._start, self._end = 0, held
        take = size - self._end
        if take > n:
            take = n
        self._buf[self._end : self._end + take] = data[:take] if take < n else data
        self._end += take
        self.overflow += n - take

    def _skip(self, n):
        """Drop n bytes from the front; the non-zero ones are garbage."""
        buf = self._buf
        s = self._start
        for i in range(s, s + n):
            if buf[i]:
                self.garbage += 1
        self._start = s + n

    def next(self):
        """The next complete frame, or None when more bytes are needed."""
        buf = self._buf
        while True:
            s, e = self._start, self._end
            j = buf.find(b"\x00\xff", s, e)
            if j < 0:
                # keep a trailing 00: it may be the first half of a start code
                keep = 1 if e > s and buf[e - 1] == 0 else 0
                self._skip(e - s - keep)
                if self._start == self._end:
                    self._start = self._end = 0
                return None
            if j > s:
                self._skip(j - s)
            if e - j < 4:
                return None
            a, b = buf[j + 2], buf[j + 3]
            if a == 0x00 and b == 0xFF:
                self._start = j + 4
                return (ACK, None)
            if a == 0xFF and b == 0x00:
                self._start = j + 4
                return (NACK, None)
            if a == 0xFF and b == 0xFF:
                if e - j < 7:
                    return None
                hi, lo = buf[j + 4], buf[j + 5]
                n = (hi << 8) | lo
                ok = not (hi + lo + buf[j + 6]) & 0xFF and 0 < n <= MAX_EXTENDED_LEN
                body = j + 7
            else:
                n = a
                ok = not (a + b) & 0xFF and n > 0
                body = j + 4
            if ok:
                if e - body < n + 1:
                    return None
                if not sum(self._mv[body : body + n + 1]) & 0xFF:
                    self._start = body + n + 1
                    if n == 1 and buf[body] == TFI_ERROR:
                        return (ERROR, None)
                    return (DATA, bytes(self._mv[body : body + n]))
            # A start code that did not lead to a valid frame (LCS, DCS or length): skip it and
            # hunt on.
            self.bad_frames += 1
            self._start = j + 2
