"""A fake UART that plays the PN532's side by script, shared by the PN532 tests and the bench.

The host's writes are parsed as host frames; each command gets an ACK and a reply according to
the chip's current mode: `normal`, `silent` (a dead or unplugged reader), `garbage` (wrong baud
rate: bytes but never a frame), `error` (answers with the application error frame) or `ack_only`
(ACKs, then never replies: what MxRtyPassiveActivation=FF does without a card). `card` is the
UID in the field (bytes) or None. `chunk` limits how many bytes one `read` returns, so frames
arrive split the way a UART delivers them.
"""

from hal.pn532_frames import ACK_FRAME, DATA, TFI_CHIP, TFI_HOST, FrameParser, build_frame

ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
NACK_FRAME = b"\x00\x00\xff\xff\x00\x00"


def build_extended_frame(payload, tfi=TFI_CHIP):
    """An extended information frame (the PN532 uses it for > 254 data bytes); the driver only
    parses these, so the builder lives with the tests."""
    n = len(payload) + 1
    if n > 265:
        raise ValueError("payload too long for an extended frame")
    hi, lo = n >> 8, n & 0xFF
    head = bytes((0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, (-(hi + lo)) & 0xFF, tfi))
    return head + bytes(payload) + bytes(((-(tfi + sum(payload))) & 0xFF, 0x00))


def rf_max_retries_frame(passive_activation):
    """RFConfiguration item 0x05 as the driver sends it: MxRtyATR FF, MxRtyPSL 01, then
    MxRtyPassiveActivation (golden bytes in test_pn532_frames)."""
    return build_frame(bytes((0x32, 0x05, 0xFF, 0x01, passive_activation)))


def ilpt_reply(uid, sens_res=b"\x00\x04", sel_res=0x08, ats=b""):
    """InListPassiveTarget reply with one target (or none when uid is None)."""
    if uid is None:
        return build_frame(b"\x4b\x00", TFI_CHIP)
    body = b"\x4b\x01\x01" + sens_res + bytes((sel_res, len(uid))) + bytes(uid) + ats
    return build_frame(body, TFI_CHIP)


class FakePN532Uart:
    def __init__(self, card=None, mode="normal", chunk=64, none_when_empty=True):
        self.card = card
        self.mode = mode
        self.chunk = chunk
        self.none_when_empty = none_when_empty
        self.rx = bytearray()  # chip -> host bytes not yet read
        self.written = []  # every write, as bytes
        self.commands = []  # command bytes the chip understood, in order
        self.acks_from_host = 0
        self.writes_this_poll = 0
        self._parser = FrameParser()

    # the UART interface the driver sees
    def any(self):
        return len(self.rx)

    def read(self, n):
        n = min(n, self.chunk, len(self.rx))
        if n <= 0:
            return None if self.none_when_empty else b""
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def write(self, b):
        b = bytes(b)
        self.written.append(b)
        self.writes_this_poll += 1
        self._parser.feed(b)
        while True:
            f = self._parser.next()
            if f is None:
                break
            kind, payload = f
            if kind != DATA:
                self.acks_from_host += 1
                continue
            if payload[0] == TFI_HOST:
                self._command(payload[1], payload[2:])
        return len(b)

    # the chip
    def _command(self, cmd, params):
        self.commands.append(cmd)
        mode = self.mode
        if mode == "silent":
            return
        if mode == "garbage":
            self.rx.extend(b"\x13\x37\xa5\xff\x00\x42\x99" * 3)
            return
        self.rx.extend(ACK_FRAME)
        if mode == "ack_only":
            return
        if mode == "error":
            self.rx.extend(ERROR_FRAME)
            return
        self.rx.extend(self.reply(cmd, params))

    def reply(self, cmd, params):
        if cmd == 0x02:
            return build_frame(b"\x03\x32\x01\x06\x07", TFI_CHIP)
        if cmd == 0x4A:
            return ilpt_reply(self.card)
        if cmd == 0x52:
            return build_frame(b"\x53\x00", TFI_CHIP)
        return build_frame(bytes((cmd + 1,)), TFI_CHIP)


def drive(driver, uart, start, ms, step=5):
    """Poll every `step` ms for `ms` ms; returns ([(t_offset, event)], end time).

    Asserts the HAL rule that one poll writes at most once.
    """
    from hal.compat import ticks_add

    events = []
    t = start
    for i in range(0, ms, step):
        uart.writes_this_poll = 0
        ev = driver.poll(t)
        assert uart.writes_this_poll <= 1
        if ev is not None:
            events.append((i, ev))
        t = ticks_add(t, step)
    return events, t
