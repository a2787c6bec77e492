"""A virtual RDM6300 125 kHz EM4100 reader: transmit-only UART at 9600 8N1 (hardware.md §2).

Frame: STX 0x02, 10 ASCII hex digits of the 5 data bytes (version/customer byte + 4-byte tag id),
2 ASCII hex digits of their XOR, ETX 0x03 — 14 bytes. Two module variants exist: "special"
modules repeat the frame every ~50-65 ms while the tag stays in the field (`repeat_s`, default
60 ms); "standard" modules send it once per insertion (`read_once=True`).
"""

FRAME_LEN = 14
STX = 0x02
ETX = 0x03


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

    def __init__(self, *, repeat_s=0.060, read_once=False, baud=9600):
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

    def present(self, tag, now=0.0):
        """Tag enters the field; the first frame leaves after one frame time."""
        self._frame = rdm6300_frame(tag)
        self.tag = bytes(tag)
        self._next = now + self.frame_s

    def remove(self):
        self.tag = None
        self._next = None

    def feed(self, data, now):
        self.bytes_ignored += len(data)

    def pending(self, now):
        if self._next is None or now < self._next:
            return b""
        out = bytearray()
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
        return self._next

    def status(self, now=None):
        return {
            "tag": None if self.tag is None else self.tag.hex(),
            "mode": "once" if self.read_once else "repeat %d ms" % round(self.repeat_s * 1000),
            "frames_sent": self.frames_sent,
            "bytes_ignored": self.bytes_ignored,
        }
