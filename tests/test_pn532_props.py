"""Property tests for the PN532 frame parser and driver (CPython, hypothesis)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from hal.compat import ticks_add
from hal.pn532 import PN532
from hal.pn532_frames import (
    ACK,
    ACK_FRAME,
    DATA,
    ERROR,
    NACK,
    TFI_CHIP,
    FrameParser,
    build_frame,
)
from tests.mp.test_pn532_fake import (
    NACK_FRAME,
    FakePN532Uart,
    build_extended_frame,
    ilpt_reply,
)

ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"


def run_parser(stream, cuts):
    """Feed `stream` split at `cuts`, honouring room(); return every frame out."""
    p = FrameParser()
    out = []
    pieces = []
    last = 0
    for c in sorted(set(cuts)):
        if 0 < c < len(stream):
            pieces.append(stream[last:c])
            last = c
    pieces.append(stream[last:])
    for piece in pieces:
        while piece:
            take = piece[: p.room()]
            piece = piece[len(take) :]
            p.feed(take)
            while True:
                f = p.next()
                if f is None:
                    break
                out.append(f)
    return out, p


def encodings(kind, payload):
    """Byte strings (from the start code on) that legitimately produce (kind, payload)."""
    if kind == ACK:
        return [b"\x00\xff\x00\xff"]
    if kind == NACK:
        return [b"\x00\xff\xff\x00"]
    if kind == ERROR:
        return [b"\x00\xff\x01\xff\x7f\x81"]
    n = len(payload)
    dcs = bytes(((-sum(payload)) & 0xFF,))
    out = [b"\x00\xff\xff\xff" + bytes((n >> 8, n & 0xFF, (-((n >> 8) + (n & 0xFF))) & 0xFF))
           + payload + dcs]
    if n <= 255:
        out.append(b"\x00\xff" + bytes((n, (-n) & 0xFF)) + payload + dcs)
    return out


payloads = st.binary(min_size=1, max_size=40).map(lambda b: bytes((TFI_CHIP,)) + b)
frames = st.one_of(
    st.just((ACK_FRAME, (ACK, None))),
    st.just((NACK_FRAME, (NACK, None))),
    st.just((ERROR_FRAME, (ERROR, None))),
    payloads.map(lambda p: (build_frame(p[1:], TFI_CHIP), (DATA, p))),
    st.binary(min_size=0, max_size=300).map(
        lambda b: (build_extended_frame(b), (DATA, bytes((TFI_CHIP,)) + b))),
)
# garbage that cannot contain a start code, even where it touches a frame's 00 bytes
garbage = st.binary(max_size=30).filter(lambda g: b"\x00\xff" not in b"\x00" + g + b"\x00")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=20))
def test_random_bytes_never_raise_and_only_real_frames_come_out(stream, cuts):
    out, p = run_parser(stream, cuts)
    for kind, payload in out:
        assert any(enc in stream for enc in encodings(kind, payload))
    assert (p._end - p._start) <= len(stream)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(garbage, frames), min_size=1, max_size=6), garbage,
       st.lists(st.integers(0, 3000), max_size=30))
def test_every_frame_found_through_splits_and_garbage(items, tail, cuts):
    stream = b"".join(g + f for g, (f, _) in items) + tail
    out, p = run_parser(stream, cuts)
    assert out == [expected for _, (_, expected) in items]
    assert p.bad_frames == 0
    assert p.garbage == sum(len(g) - g.count(0) for g, _ in items) + len(tail) - tail.count(0)


@settings(max_examples=200, deadline=None)
@given(frames, st.data())
def test_truncated_frame_yields_nothing_and_reset_recovers(item, data):
    frame, _ = item
    cut = data.draw(st.integers(0, len(frame) - 3))  # stop before the checksum byte
    p = FrameParser()
    p.feed(frame[:cut])
    assert p.next() is None or frame[:cut].startswith(b"\x00\x00\xff\x00\xff")
    p.reset()
    good = build_frame(b"\x4b\x00", TFI_CHIP)
    p.feed(good)
    assert p.next() == (DATA, good[5:-2])


class RandomChip(FakePN532Uart):
    """Answers every command with scripted bytes drawn by hypothesis."""

    def __init__(self, replies):
        super().__init__()
        self.replies = list(replies)

    def _command(self, cmd, params):
        self.commands.append(cmd)
        if self.replies:
            self.rx.extend(self.replies.pop(0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(1, 40))
def test_driver_survives_a_chip_talking_nonsense(replies, chunk):
    uart = RandomChip(replies)
    uart.chunk = chunk
    drv = PN532(uart, timeout_ms=50, fail_after_ms=300)
    t = 123
    for _ in range(400):
        ev = drv.poll(t)
        if ev is not None:
            assert ev[0] in ("failed", "ok")  # nonsense never becomes a card
        t = ticks_add(t, 5)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=30), st.integers(0, 3), st.integers(1, 30))
def test_driver_reports_only_uids_from_valid_replies(body, nbtg, chunk):
    """Valid ILPT frames with arbitrary target data: a tap only for a well-formed 4/7/10 UID;
    a complete UID of another length up to 10 bytes is reported unusable (hal.pn532)."""

    class OddChip(FakePN532Uart):
        def reply(self, cmd, params):
            if cmd == 0x4A:
                return build_frame(b"\x4b" + bytes((nbtg,)) + body, TFI_CHIP)
            return super().reply(cmd, params)

    uart = OddChip(chunk=chunk)
    drv = PN532(uart)
    t = 7
    taps = []
    for _ in range(200):
        ev = drv.poll(t)
        if ev is not None and ev[0] in ("tap", "unusable"):
            taps.append(ev)
        t = ticks_add(t, 5)
    if nbtg == 0 or len(body) < 5 or not 1 <= body[4] <= 10 or len(body) < 5 + body[4]:
        assert taps == []
    else:
        uid = body[5 : 5 + body[4]]
        assert len(taps) == 1
        random = body[4] == 4 and uid[0] == 0x08  # drawn anew at each activation
        assert taps[0][0] == ("tap" if body[4] in (4, 7, 10) and not random else "unusable")
        assert uid.hex().upper() in (taps[0][1] if taps[0][0] == "unusable" else taps[0][1][0])


def test_ilpt_reply_helper_matches_golden():
    assert ilpt_reply(b"\xde\xad\xbe\xef") == bytes.fromhex(
        "0000FF0CF4D54B0101000408 04DEADBEEF9600".replace(" ", ""))


@settings(max_examples=500, deadline=None)
@given(frames, st.data())
def test_corrupted_frame_is_never_reported(item, data):
    """One byte changed anywhere after the start code: the damaged frame never comes out."""
    frame, expected = item
    i = data.draw(st.integers(3, len(frame) - 2))
    delta = data.draw(st.integers(1, 255))
    bad = bytearray(frame)
    bad[i] = (bad[i] + delta) & 0xFF
    stream = bytes(bad) + ACK_FRAME
    out, p = run_parser(stream, data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    for kind, payload in out:
        assert any(enc in stream for enc in encodings(kind, payload))
    if expected[0] == DATA:
        assert expected not in out
