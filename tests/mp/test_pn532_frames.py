"""PN532 frame codec against the fact sheet's golden frames (hardware.md §1.5, §1.7, §9)."""

from hal.pn532 import (
    GET_FIRMWARE_VERSION,
    IN_LIST_PASSIVE_TARGET,
    IN_RELEASE,
    SAM_NORMAL,
    WAKE_AND_SAM,
    parse_target,
)
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
from tests.mp.test_pn532_fake import NACK_FRAME, build_extended_frame, rf_max_retries_frame


def h(s):
    return bytes(int(x, 16) for x in s.split())


# (what, built, golden bytes from the fact sheet)
HOST_FRAMES = (
    ("GetFirmwareVersion", GET_FIRMWARE_VERSION, "00 00 FF 02 FE D4 02 2A 00"),
    ("SAMConfiguration 01 00 00", SAM_NORMAL, "00 00 FF 05 FB D4 14 01 00 00 17 00"),
    ("SAMConfiguration 01", build_frame(b"\x14\x01"), "00 00 FF 03 FD D4 14 01 17 00"),
    ("SAMConfiguration 01 14 01", build_frame(b"\x14\x01\x14\x01"),
     "00 00 FF 05 FB D4 14 01 14 01 02 00"),
    ("RFConfiguration 05 FF 01 01", rf_max_retries_frame(1),
     "00 00 FF 06 FA D4 32 05 FF 01 01 F4 00"),
    ("InListPassiveTarget", IN_LIST_PASSIVE_TARGET, "00 00 FF 04 FC D4 4A 01 00 E1 00"),
    ("InRelease", IN_RELEASE, "00 00 FF 03 FD D4 52 00 DA 00"),
    ("InDeselect", build_frame(b"\x44\x00"), "00 00 FF 03 FD D4 44 00 E8 00"),
)

# (what, golden frame, expected parser output)
CHIP_FRAMES = (
    ("ACK", "00 00 FF 00 FF 00", (ACK, None)),
    ("NACK", "00 00 FF FF 00 00", (NACK, None)),
    ("error frame", "00 00 FF 01 FF 7F 81 00", (ERROR, None)),
    ("firmware", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00", (DATA, h("D5 03 32 01 06 07"))),
    ("SAM reply", "00 00 FF 02 FE D5 15 16 00", (DATA, h("D5 15"))),
    ("ILPT DEADBEEF", "00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00",
     (DATA, h("D5 4B 01 01 00 04 08 04 DE AD BE EF"))),
    ("ILPT no card", "00 00 FF 03 FD D5 4B 00 E0 00", (DATA, h("D5 4B 00"))),
)


def parse_all(data, chunk=None):
    p = FrameParser()
    out = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        p.feed(data[i : i + step])
        while True:
            f = p.next()
            if f is None:
                break
            out.append(f)
    return out, p


def test_host_frames_byte_for_byte():
    for what, built, golden in HOST_FRAMES:
        assert built == h(golden), what


def test_wake_preamble_then_sam_in_one_write():
    assert WAKE_AND_SAM[:2] == b"\x55\x55"
    assert WAKE_AND_SAM[2:18] == bytes(16)
    assert WAKE_AND_SAM[18:] == SAM_NORMAL


def test_ack_nack_constants():
    assert ACK_FRAME == h("00 00 FF 00 FF 00")
    assert NACK_FRAME == h("00 00 FF FF 00 00")


def test_chip_frames_parse():
    for what, golden, expected in CHIP_FRAMES:
        out, p = parse_all(h(golden))
        assert out == [expected], what
        assert p.garbage == 0 and p.bad_frames == 0, what


def test_chip_frames_byte_by_byte_and_back_to_back():
    stream = b"".join(h(g) for _, g, _ in CHIP_FRAMES)
    for chunk in (1, 2, 3, 7, 64):
        out, p = parse_all(stream, chunk)
        assert out == [e for _, _, e in CHIP_FRAMES], chunk


def test_garbage_between_frames_is_counted_not_raised():
    junk = b"\x13\x37\xff\x55\xaa"
    stream = junk + h(CHIP_FRAMES[5][1]) + junk + h(CHIP_FRAMES[6][1]) + junk
    out, p = parse_all(stream, 3)
    assert [f[1] for f in out] == [CHIP_FRAMES[5][2][1], CHIP_FRAMES[6][2][1]]
    assert p.garbage == 3 * len(junk)


def test_bad_checksums_are_rejected_and_counted():
    good = h("00 00 FF 03 FD D5 4B 00 E0 00")
    bad_lcs = h("00 00 FF 03 FC D5 4B 00 E0 00")
    bad_dcs = h("00 00 FF 03 FD D5 4B 00 E1 00")
    out, p = parse_all(bad_lcs + bad_dcs + good)
    assert out == [(DATA, h("D5 4B 00"))]
    assert p.bad_frames == 2


def test_extended_frame():
    payload = bytes(range(256)) + b"\x01\x02"  # 258 data bytes: too long for a normal frame
    frame = build_extended_frame(payload)
    assert frame[:5] == h("00 00 FF FF FF")
    assert (frame[5] + frame[6] + frame[7]) & 0xFF == 0
    out, p = parse_all(b"\x00" + frame + h("00 00 FF 00 FF 00"), 5)
    assert out == [(DATA, bytes((TFI_CHIP,)) + payload), (ACK, None)]


def test_build_frame_rejects_oversize():
    for fn, n in ((build_frame, 255), (build_extended_frame, 265)):
        try:
            fn(bytes(n))
        except ValueError:
            continue
        raise AssertionError("accepted an oversize payload")


def test_truncated_frame_waits_then_completes():
    frame = h("00 00 FF 0C F4 D5 4B 01 01 00 04 08 04 DE AD BE EF 96 00")
    p = FrameParser()
    p.feed(frame[:10])
    assert p.next() is None
    p.feed(frame[10:])
    assert p.next() == (DATA, frame[5:-2])
    assert p.next() is None and (p._end - p._start) <= 1


def test_buffer_is_bounded():
    p = FrameParser()
    for _ in range(50):
        p.feed(b"\x5a" * 100)
        assert p.next() is None
    assert (p._end - p._start) == 0
    assert p.garbage == 5000 and p.overflow == 0
    # an oversize burst without next(): the excess is dropped and counted
    p.feed(b"\x00\xff\xff\xff\x01\x00\xff" + b"\x11" * 1000)
    assert p.overflow > 0 and p.room() == 0
    p.reset()
    assert p.room() > 0


def test_parse_target_golden_and_lengths():
    assert parse_target(h("D5 4B 01 01 00 04 08 04 DE AD BE EF")) == h("DE AD BE EF")
    assert parse_target(h("D5 4B 00")) is None
    seven = h("04 A1 B2 C3 D4 E5 F6")
    assert parse_target(h("D5 4B 01 01 00 44 00 07") + seven) == seven
    ten = bytes(range(1, 11))
    # ISO-DEP (SAK 0x20): the ATS follows the UID and is ignored
    assert parse_target(h("D5 4B 01 01 03 44 20 0A") + ten + h("05 78 80 70 02")) == ten
    for bad in ("D5 4B", "D5 4B 01 01 00", "D5 4B 01 01 00 04 08 05 01 02 03 04 05",
                "D5 4B 01 01 00 04 08 07 01 02 03"):
        try:
            parse_target(h(bad))
        except ValueError:
            continue
        raise AssertionError(bad)
