"""A virtual RDM6300 125 kHz EM4100 reader: transmit-only UART at 9600 8N1 (hardware.md §2).

Frame: STX 0x02, 10 ASCII hex digits of the 5 data bytes (version/customer byte + 4-byte tag id),
2 ASCII hex digits of their XOR, ETX 0x03 — 14 bytes. Two module variants exist: "special"
modules repeat the frame every ~50-65 ms while the tag stays in the field (`repeat_s`, default
60 ms); "standard" modules send it once per insertion (`read_once=True`).

Console disturbances (host_sim.console `reader ...`): `noise(n, now)` n random bytes on the
module's TX line; `dropout(seconds, now)` the held tag leaves the field, no frame is sent for
`seconds`, then the module reads it as a new entry (one frame time later; a standard module
sends its single frame again); `foreign(kind, now)` one bogus frame between the good ones:
`bad_checksum` the held tag's frame with a wrong XOR, `zero_id` a well-formed frame of tag
00 00 00 00 00, which no real card has, `truncated` STX and 6 digits of a frame, then nothing.
`set_supply(False, now)` cuts the module's supply (from the controller board): no frames until
`set_supply(True, now)`, after which a tag still in the field is read anew.
"""

import random

FRAME_LEN = 14
STX = 0x02
ETX = 0x03
FOREIGN = ("bad_checksum", "zero_id", "truncated")  # first = default
_EXAMPLE_TAG = bytes.fromhex("100086F444")  # hardware.md §2's example, when no tag is held


def rdm6300_frame(tag):
    """The 14 wire bytes for a 5-byte EM4100 tag (uppercase hex digits)."""
    tag = bytes(tag)
    if len(tag) != 5:
        raise ValueError("EM4100 tag must be 5 bytes, got %d" % len(tag))
    xor = 0
    for b in tag:
        xor ^= b
    return bytes((STX,)) + (tag.hex() + "%02x" % xor).upper().encode() + bytes((ETX,))


class Rdm6300:
    """Emits frames for the tag in its field; ignores (and counts) anything written to it."""

    def __init__(self, *, repeat_s=0.060, read_once=False, baud=9600, seed=0):
        if repeat_s <= 0:
            raise ValueError("repeat_s must be > 0")
        self.repeat_s = repeat_s
        self.read_once = read_once
        self.frame_s = FRAME_LEN * 10.0 / baud  # time the module needs to read+send a frame
        self.tag = None
        self._frame = b""
        self._next = None
        self.frames_sent = 0
        self.bytes_ignored = 0
        self.supplied = True
        self.away_until = None  # end of a dropout (the tag is out of the field until then)
        self._extra = []  # [(due, bytes)] noise and foreign frames
        self._rng = random.Random(seed)
        self.counters = {}

    def present(self, tag, now=0.0):
        """Tag enters the field; the first frame leaves after one frame time."""
        self._frame = rdm6300_frame(tag)
        self.tag = bytes(tag)
        self.away_until = None
        self._next = now + self.frame_s if self.supplied else None

    def remove(self):
        self.tag = None
        self.away_until = None
        self._next = None

    def dropout(self, seconds, now):
        """The held tag leaves the field at `now` and is back `seconds` later; returns then."""
        if self.tag is None:
            raise ValueError("no tag on the reader (tap one first)")
        if not seconds > 0:
            raise ValueError("dropout must last > 0 s, got %r" % seconds)
        self.away_until = now + seconds
        if self.supplied:
            back = self.away_until + self.frame_s
            self._next = back if self._next is None else max(self._next, back)
        self._count("dropouts")
        return self.away_until

    def noise(self, n, now):
        """`n` random bytes leave on TX at `now`; returns them."""
        data = bytes(self._rng.getrandbits(8) for _ in range(n))
        self._inject(data, now, "noise_bytes", len(data))
        return data

    def foreign(self, kind=None, now=0.0):
        """One bogus frame of `kind` (FOREIGN; None = the first) leaves at `now`; returns it."""
        kind = FOREIGN[0] if kind is None else kind
        good = rdm6300_frame(self.tag if self.tag is not None else _EXAMPLE_TAG)
        if kind == "bad_checksum":
            xor = int(good[11:13], 16) ^ 0x01
            frame = good[:11] + ("%02X" % xor).encode() + good[13:]
        elif kind == "zero_id":
            frame = rdm6300_frame(bytes(5))
        elif kind == "truncated":
            frame = good[:7]
        else:
            raise ValueError("unknown RDM6300 foreign frame %r (one of %s)"
                             % (kind, ", ".join(FOREIGN)))
        self._inject(frame, now, "foreign_frames", 1)
        return frame

    def set_supply(self, on, now=0.0):
        """Cut (False) or restore (True) the module's supply; a tag in the field is read anew
        one frame time after the supply returns."""
        self.supplied = bool(on)
        self._extra = []
        self._next = None
        if self.supplied and self.tag is not None:
            back = now if self.away_until is None else max(now, self.away_until)
            self._next = back + self.frame_s

    def _inject(self, data, now, counter, n):
        if not self.supplied:
            raise ValueError("the reader has no power")
        self._extra.append((now, bytes(data)))
        self._count(counter, n)

    def _count(self, key, n=1):
        self.counters[key] = self.counters.get(key, 0) + n

    def feed(self, data, now):
        self.bytes_ignored += len(data)

    def pending(self, now):
        out = bytearray()
        if self._extra:
            keep = []
            for due, data in self._extra:
                if due <= now:
                    out += data
                else:
                    keep.append((due, data))
            self._extra = keep
        if self._next is None or now < self._next:
            return bytes(out)
        # A late caller gets every frame it missed (bounded), as a real UART FIFO would hold them.
        for _ in range(16):
            out += self._frame
            self.frames_sent += 1
            if self.read_once:
                self._next = None
                break
            self._next += self.repeat_s
            if self._next > now:
                break
        else:
            self._next = now + self.repeat_s
        return bytes(out)

    def next_event(self, now):
        times = [due for due, _ in self._extra]
        if self._next is not None:
            times.append(self._next)
        return min(times) if times else None

    def status(self, now=None):
        return {
            "tag": None if self.tag is None else self.tag.hex(),
            "mode": "once" if self.read_once else "repeat %d ms" % round(self.repeat_s * 1000),
            "frames_sent": self.frames_sent,
            "bytes_ignored": self.bytes_ignored,
            "supplied": self.supplied,
            "away_until": None if self.away_until is None else round(self.away_until, 3),
            "counters": dict(self.counters),
        }
