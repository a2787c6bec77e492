"""Property tests for the RDM6300 driver's frame machine (CPython, hypothesis)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from hal.compat import ticks_add
from hal.rdm6300 import RDM6300, encode_frame
from tests.mp.test_rdm6300 import ByteUart


def drain(stream, chunk, removal_ms=10_000):
    uart = ByteUart(chunk)
    uart.feed(stream)
    drv = RDM6300(uart, removal_ms=removal_ms)
    events = []
    t = 99
    for _ in range(len(stream) + 20):  # every poll consumes >= 1 byte or has an event
        ev = drv.poll(t)
        if ev is not None:
            events.append(ev)
        t = ticks_add(t, 1)
    return events, drv


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_never_raise_and_taps_come_from_valid_frames(stream, chunk):
    events, drv = drain(stream, chunk)
    upper = stream.upper()
    for ev in events:
        assert ev[0] in ("tap", "gone", "failed", "ok")
        if ev[0] == "tap":
            uid, n = ev[1]
            assert n == 5 and len(uid) == 10
            assert encode_frame(bytes.fromhex(uid)) in upper
    assert drv.garbage <= len(stream)


# garbage without ETX cannot complete a frame of its own
garbage = st.binary(max_size=40).filter(lambda g: b"\x03" not in g)
uids = st.binary(min_size=5, max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(garbage, uids), min_size=1, max_size=8), garbage, st.integers(1, 64))
def test_every_valid_frame_is_found_whatever_the_garbage(items, tail, chunk):
    stream = b"".join(g + encode_frame(u) for g, u in items) + tail
    events, drv = drain(stream, chunk)
    assert drv.frames == len(items)
    taps = [ev[1][0] for ev in events if ev[0] == "tap"]
    expected = []
    for _, u in items:  # the same card twice in a row is one presence
        h = "0000" + u.hex().upper()  # the OICP form
        if not expected or expected[-1] != h:
            expected.append(h)
    assert taps == expected


@settings(max_examples=200, deadline=None)
@given(uids, st.integers(1, 13), st.integers(1, 64))
def test_truncated_frame_then_valid_frame(uid, cut, chunk):
    frame = encode_frame(uid)
    events, drv = drain(frame[:cut] + frame, chunk)
    assert [ev for ev in events if ev[0] == "tap"] == [("tap", ("0000" + uid.hex().upper(), 5))]
