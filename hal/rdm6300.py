"""Non-blocking RDM6300 (125 kHz EM4100) reader over UART 9600 8N1; the module only talks.

Frame: 0x02, 10 ASCII hex digits (5 data bytes: version/customer byte + 4-byte tag id),
2 ASCII hex digits of checksum (XOR of the 5 data bytes), 0x03. A byte-wise state machine
resyncs on the next 0x02 after anything malformed; bytes outside valid frames are counted.

Events (kinds and shapes in hal.kinds): (TAP, (uid, 5)), (GONE, uid), (FAILED, reason) and
(OK, None), at most one per poll.

UID format: what the chip means is the driver's business, so the event carries the OICP UID,
nbytes = 5 (`(TAP, ("0000100086F444", 5))`). OICP only takes 8/14/20 hex chars, so the 5 data
bytes (10 hex chars) map losslessly to 14 chars by prefixing `0000` (`oicp_uid`): a 7-byte
"UID" whose manufacturer byte is 00, which no ISO 14443 card carries, so it cannot collide with
a real 7-byte UID. Keeping the version byte avoids collisions between customers; an EMP must
register EM4100 cards in this form.

Presence: the module variants differ (hardware.md §2): "special" modules repeat the frame every
~50-65 ms while the card is in the field, "standard" ones send it once per presentation. We report
"gone" when no frame came for `removal_ms` (default 300 ms, 4-6 repeat periods). With a
continuous module that is the card leaving; with a standard module "gone" follows each tap after
300 ms even if the card is still held, and the card cannot tap again until it is presented
anew — either way one tap per presentation.

The module cannot be polled, so silence is "no card"; a stream of bytes that never forms a
valid frame (wrong baud rate, noise) is a failure: (FAILED, "garbage") after
`fail_after_garbage` such bytes, (OK, None) at the next valid frame. Silence since start is
reported once, though: no valid frame within `silent_after_ms` of the first poll (or of a
`restart`) gives (FAILED, "no valid frame ...") -- nothing attached, or a reader of another
protocol (a PN532 only speaks when spoken to); the first valid frame gives (OK, None). After
one valid frame, silence is only "no card" again.
"""

from hal.compat import const, ticks_diff
from hal.kinds import FAILED, GONE, OK, TAP

STX = const(0x02)
ETX = const(0x03)
FRAME_LEN = const(14)
_READ_MAX = const(64)


def _nibble(c):
    """ASCII hex digit -> 0..15, or -1."""
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x41 <= c <= 0x46:
        return c - 0x37
    if 0x61 <= c <= 0x66:
        return c - 0x57
    return -1


def encode_frame(data5):
    """The 14 bytes an RDM6300 sends for 5 data bytes (for tests and simulators)."""
    if len(data5) != 5:
        raise ValueError("EM4100 data is 5 bytes")
    ck = 0
    for b in data5:
        ck ^= b
    return b"\x02" + (bytes(data5) + bytes((ck,))).hex().upper().encode() + b"\x03"


def oicp_uid(uid_hex):
    """An OICP UID (8/14/20 upper-case hex) for a reader UID; EM4100's 10 chars -> 14."""
    up = uid_hex.upper()
    for c in up:
        if c not in "0123456789ABCDEF":
            raise ValueError("UID is not hex")
    if len(up) == 10:
        return "0000" + up
    if len(up) in (8, 14, 20):
        return up
    raise ValueError("UID has no OICP form")


class RDM6300:
    def __init__(self, uart, removal_ms=300, fail_after_garbage=64, silent_after_ms=60000):
        if removal_ms <= 0 or fail_after_garbage <= 0 or silent_after_ms <= 0:
            raise ValueError("removal_ms, fail_after_garbage and silent_after_ms must be "
                             "positive")
        self.uart = uart
        self.silent_after_ms = silent_after_ms
        self._since = None  # tick of the first poll / restart while no valid frame came yet
        self.removal_ms = removal_ms
        self.fail_after_garbage = fail_after_garbage
        self._digits = bytearray(12)
        self._data = bytearray(6)  # 5 data bytes + checksum
        self._idx = -1  # -1: hunting for STX; 0..11: digits seen; 12: waiting for ETX
        self._rest = b""
        self._pos = 0
        self._events = []  # events beyond the one a poll may return (at most 2 queued)
        self._present = None
        self._last_seen = 0
        self._junk_run = 0
        self._failed = False
        self.frames = 0
        self.garbage = 0  # bytes outside valid frames
        self.bad_frames = 0  # STX seen, then bad digit, missing ETX or wrong checksum

    @property
    def failed(self):
        return self._failed

    @property
    def present(self):
        return self._present

    def restart(self, now, reason="port failed"):
        """Its port failed and was (or will be) opened again: forget the partial frame, count
        as failed (the shell reported it) until a valid frame, and wait for one afresh."""
        self._idx = -1
        self._rest = b""
        self._pos = 0
        self._junk_run = 0
        self._failed = True
        self._since = now

    def poll(self, now):
        if self._events:
            return self._events.pop(0)
        if self._since is None and self.frames == 0:
            self._since = now
        ev = self._receive(now)
        if ev is not None:
            return ev
        since = self._since
        if since is not None and ticks_diff(now, since) >= self.silent_after_ms:
            self._since = None  # said once
            if not self._failed:
                self._failed = True
                return (FAILED, "no valid frame in %d s: nothing attached, or not an RDM6300"
                        % (self.silent_after_ms // 1000))
        if self._present is not None and ticks_diff(now, self._last_seen) >= self.removal_ms:
            old, self._present = self._present, None
            return (GONE, old)
        return None

    def _receive(self, now):
        if self._pos >= len(self._rest):
            n = self.uart.any()
            if not n:
                return None
            data = self.uart.read(n if n < _READ_MAX else _READ_MAX)
            if not data:
                return None
            self._rest, self._pos = data, 0
        rest = self._rest
        while self._pos < len(rest):
            c = rest[self._pos]
            self._pos += 1
            if self._byte(c):
                ev = self._on_frame(now)
                if ev is not None:
                    return ev
        if not self._failed and self._junk_run >= self.fail_after_garbage:
            self._failed = True
            return (FAILED, "garbage")
        return None

    def _junk(self, n):
        self.garbage += n
        self._junk_run += n

    def _byte(self, c):
        """Advance the frame state machine; True when a frame with a good checksum ended."""
        idx = self._idx
        if idx < 0:
            if c == STX:
                self._idx = 0
            else:
                self._junk(1)
            return False
        if idx < 12:
            if _nibble(c) >= 0:
                self._digits[idx] = c
                self._idx = idx + 1
                return False
            return self._bad(idx + 1, c)
        if c != ETX:
            return self._bad(idx + 1, c)
        self._idx = -1
        data, digits = self._data, self._digits
        ck = 0
        for i in range(6):
            data[i] = (_nibble(digits[2 * i]) << 4) | _nibble(digits[2 * i + 1])
            if i < 5:
                ck ^= data[i]
        if ck != data[5]:
            self.bad_frames += 1
            self._junk(FRAME_LEN)
            return False
        return True

    def _bad(self, consumed, c):
        """A malformed frame: count it; a fresh STX starts the next frame at once."""
        self.bad_frames += 1
        if c == STX:
            self._junk(consumed)
            self._idx = 0
        else:
            self._junk(consumed + 1)
            self._idx = -1
        return False

    def _on_frame(self, now):
        self.frames += 1
        self._junk_run = 0
        self._since = None
        self._last_seen = now
        uid = "0000" + bytes(self._data[:5]).hex().upper()  # oicp_uid: the OICP form
        ev = None
        if uid != self._present:
            if self._present is not None:
                ev = (GONE, self._present)
                self._events.append((TAP, (uid, 5)))
            else:
                ev = (TAP, (uid, 5))
            self._present = uid
        if self._failed:
            self._failed = False
            if ev is not None:
                self._events.insert(0, ev)
            return (OK, None)
        return ev
