"""RDM6300 driver: golden frame, resync, presence by repeats, failure on garbage (both VMs)."""

from hal.compat import MICROPYTHON, ticks_add
from hal.rdm6300 import RDM6300, encode_frame, oicp_uid

GOLDEN_DATA = b"\x10\x00\x86\xf4\x44"
GOLDEN = b"\x02" + b"10008" + b"6F44426" + b"\x03"  # hardware.md §2/§9: checksum 26
T0 = (1 << 30) - 500 if not MICROPYTHON else 1000


class ByteUart:
    """Module side: `feed` bytes; `read` hands out at most `chunk` of them."""

    def __init__(self, chunk=64):
        self.rx = b""
        self.chunk = chunk

    def feed(self, b):
        self.rx += b

    def any(self):
        return len(self.rx)

    def read(self, n):
        n = min(n, self.chunk, len(self.rx))
        if not n:
            return None
        out, self.rx = self.rx[:n], self.rx[n:]
        return out

    def write(self, b):
        raise AssertionError("the RDM6300 has no RX line")


def run(drv, ms, t, step=10, feeder=None):
    events = []
    for i in range(0, ms, step):
        if feeder:
            feeder(i)
        ev = drv.poll(t)
        if ev is not None:
            events.append((i, ev))
        t = ticks_add(t, step)
    return events, t


def test_golden_frame():
    assert len(GOLDEN) == 14
    assert encode_frame(GOLDEN_DATA) == GOLDEN
    uart = ByteUart()
    drv = RDM6300(uart)
    uart.feed(GOLDEN)
    events, _ = run(drv, 30, T0)
    assert [e[1] for e in events] == [("tap", ("0000100086F444", 5))]
    assert drv.frames == 1 and drv.garbage == 0


def test_oicp_uid_mapping():
    assert oicp_uid("0000100086F444") == "0000100086F444"
    assert oicp_uid("deadbeef") == "DEADBEEF"
    assert oicp_uid("04A1B2C3D4E5F6") == "04A1B2C3D4E5F6"
    for bad in ("12345", "XYZ0123456", ""):
        try:
            oicp_uid(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_lowercase_digits_accepted():
    uart = ByteUart()
    drv = RDM6300(uart)
    uart.feed(GOLDEN.lower())
    events, _ = run(drv, 30, T0)
    assert [e[1] for e in events] == [("tap", ("0000100086F444", 5))]


def test_resync_after_garbage_and_broken_frames():
    bad_ck = GOLDEN[:11] + b"27" + b"\x03"
    no_etx = GOLDEN[:13] + b"\x04"
    bad_digit = GOLDEN[:5] + b"G" + GOLDEN[6:]
    cut = GOLDEN[:7]  # interrupted by the next STX
    for chunk in (1, 3, 14, 64):
        uart = ByteUart(chunk)
        drv = RDM6300(uart)
        uart.feed(b"\xff\x00junk" + bad_ck + no_etx + bad_digit + cut + GOLDEN + b"\x7f")
        events, _ = run(drv, 500, T0, step=5)
        assert [e[1] for e in events[:1]] == [("tap", ("0000100086F444", 5))], chunk
        assert drv.bad_frames == 4 and drv.frames == 1, chunk
        assert drv.garbage == 6 + 14 + 14 + 14 + 7 + 1, (chunk, drv.garbage)


def test_repeats_keep_presence_then_gone_after_removal_ms():
    uart = ByteUart()
    drv = RDM6300(uart, removal_ms=300)

    def repeat(i):
        if i < 1000 and i % 60 == 0:  # a "special" module: repeats every 60 ms
            uart.feed(GOLDEN)

    events, _ = run(drv, 2000, T0, feeder=repeat)
    assert [e[1][0] for e in events] == ["tap", "gone"]
    gone_at = events[1][0]
    assert 1240 <= gone_at <= 1320  # last frame at 960 ms + removal_ms


def test_standard_module_one_frame_one_tap_then_gone():
    uart = ByteUart()
    drv = RDM6300(uart, removal_ms=200)
    uart.feed(GOLDEN)
    events, t = run(drv, 500, T0)
    assert [e[1][0] for e in events] == ["tap", "gone"]
    uart.feed(GOLDEN)  # presented again
    events, t = run(drv, 100, t)
    assert [e[1][0] for e in events] == ["tap"]


def test_card_swap_gone_then_tap():
    other = encode_frame(b"\x01\x02\x03\x04\x05")
    uart = ByteUart()
    drv = RDM6300(uart)
    uart.feed(GOLDEN + other)
    events, _ = run(drv, 50, T0)
    assert [e[1] for e in events] == [("tap", ("0000100086F444", 5)), ("gone", "0000100086F444"),
                                      ("tap", ("00000102030405", 5))]


def test_garbage_stream_fails_then_ok_and_tap():
    uart = ByteUart()
    drv = RDM6300(uart, fail_after_garbage=64)
    uart.feed(b"\x80\x9f\xfe" * 40)  # 9600 module read at the wrong baud rate
    events, t = run(drv, 100, T0)
    assert [e[1] for e in events] == [("failed", "garbage")]
    assert drv.failed
    uart.feed(GOLDEN)
    events, t = run(drv, 50, t)
    assert [e[1] for e in events] == [("ok", None), ("tap", ("0000100086F444", 5))]


def test_silence_is_not_failure():
    drv = RDM6300(ByteUart())
    events, _ = run(drv, 5000, T0, step=50)
    assert events == [] and not drv.failed


def test_bad_parameters_rejected():
    for kw in ({"removal_ms": 0}, {"fail_after_garbage": 0}):
        try:
            RDM6300(ByteUart(), **kw)
        except ValueError:
            continue
        raise AssertionError(kw)
