"""PN532 driver state machine against a scripted chip (both interpreters)."""

from hal.compat import MICROPYTHON, ticks_add
from hal.pn532 import (
    GET_FIRMWARE_VERSION,
    IN_LIST_PASSIVE_TARGET,
    IN_RELEASE,
    PN532,
    WAKE_AND_SAM,
)
from hal.pn532_frames import ACK_FRAME
from tests.mp.test_pn532_fake import FakePN532Uart, drive, rf_max_retries_frame

UID4 = b"\xde\xad\xbe\xef"
UID7 = b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"
UID10 = bytes(range(0x11, 0x1B))
T0 = (1 << 30) - 700 if not MICROPYTHON else 5000  # CPython: cross the ESP32 tick wrap


def new(card=None, mode="normal", chunk=64, **kw):
    uart = FakePN532Uart(card=card, mode=mode, chunk=chunk)
    return PN532(uart, **kw), uart


def kinds(events):
    return [e[1][0] for e in events]


def test_startup_sequence_golden_bytes():
    drv, uart = new()
    events, _ = drive(drv, uart, T0, 300)
    assert events == []
    assert uart.written[:4] == [WAKE_AND_SAM, GET_FIRMWARE_VERSION, rf_max_retries_frame(1),
                                IN_LIST_PASSIVE_TARGET]
    assert drv.firmware == (0x32, 0x01, 0x06, 0x07)
    assert set(uart.written[3:]) == {IN_LIST_PASSIVE_TARGET}
    # poll_interval_ms=100: three polls in 300 ms, not a busy loop
    assert 2 <= uart.commands.count(0x4A) <= 4


def test_retries_setting_reaches_the_chip_and_ff_is_refused():
    drv, uart = new(retries=5)
    drive(drv, uart, T0, 50)
    assert rf_max_retries_frame(5) in uart.written
    for bad in (0xFF, -1, 300):
        try:
            PN532(FakePN532Uart(), retries=bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_tap_once_while_held_then_gone():
    drv, uart = new()
    _, t = drive(drv, uart, T0, 200)
    uart.card = UID4
    events, t = drive(drv, uart, t, 1000)
    assert [e[1] for e in events] == [("tap", ("DEADBEEF", 4))]
    assert IN_RELEASE in uart.written
    assert uart.commands.count(0x4A) >= 8  # kept polling while the card was held
    assert drv.present == "DEADBEEF"
    uart.card = None
    events, t = drive(drv, uart, t, 500)
    assert [e[1] for e in events] == [("gone", "DEADBEEF")]
    assert 100 <= events[0][0] <= 300  # two empty polls (gone_after=2), 100 ms apart
    assert drv.present is None


def test_uid_lengths_become_oicp_uids():
    for uid, text in ((UID4, "DEADBEEF"), (UID7, "04A1B2C3D4E5F6"),
                      (UID10, "1112131415161718191A")):
        drv, uart = new(card=uid)
        events, _ = drive(drv, uart, T0, 300)
        assert [e[1] for e in events] == [("tap", (text, len(uid)))]
        assert len(text) == 2 * len(uid)


def test_random_uid_is_unusable_once_per_presence():
    drv, uart = new()
    _, t = drive(drv, uart, T0, 100)
    seen = []
    for i in range(6):  # a phone: a new random UID at every activation
        uart.card = bytes((0x08, i, 0x20, 0x30))
        events, t = drive(drv, uart, t, 110)
        seen.extend(events)
    assert kinds(seen) == ["unusable"]
    assert seen[0][1][1] == "08002030"
    assert drv.present is None
    uart.card = None
    events, t = drive(drv, uart, t, 500)
    assert events == []  # a random UID was never a card, so it is never "gone"
    uart.card = UID4
    events, t = drive(drv, uart, t, 300)
    assert kinds(events) == ["tap"]


def test_only_a_4_byte_uid_starting_08_is_random():
    for uid, kind in ((b"\x08\x12\x34\x56", "unusable"), (b"\x04\x12\x34\x56", "tap"),
                      (b"\x08\x12\x34\x56\x78\x9a\xbc", "tap")):
        drv, uart = new(card=uid)
        events, _ = drive(drv, uart, T0, 300)
        assert kinds(events) == [kind], (uid, events)


def test_card_swap_reports_gone_then_the_new_tap():
    drv, uart = new(card=UID4)
    _, t = drive(drv, uart, T0, 300)
    uart.card = UID7
    events, t = drive(drv, uart, t, 400)
    assert [e[1] for e in events] == [("gone", "DEADBEEF"), ("tap", ("04A1B2C3D4E5F6", 7))]


def test_frames_split_into_single_bytes_and_none_or_empty_reads():
    for none_when_empty in (True, False):
        drv, uart = new(card=UID7, chunk=1)
        uart.none_when_empty = none_when_empty
        events, _ = drive(drv, uart, T0, 400, step=1)
        assert [e[1] for e in events] == [("tap", ("04A1B2C3D4E5F6", 7))]


def test_silent_reader_fails_in_bounded_time_and_backs_off():
    drv, uart = new(mode="silent", timeout_ms=100, fail_after_ms=500, backoff_max_ms=800)
    events, t = drive(drv, uart, T0, 6000)
    assert kinds(events) == ["failed"]
    assert events[0][1][1] == "no answer"
    assert 500 <= events[0][0] <= 700
    assert drv.failed
    # every time-out aborts with ACK and re-wakes
    wakes = [i for i, w in enumerate(uart.written) if w == WAKE_AND_SAM]
    aborts = [i for i, w in enumerate(uart.written) if w == ACK_FRAME]
    assert len(wakes) >= 5 and len(aborts) >= len(wakes) - 1
    for a in aborts:
        assert uart.written[a + 1] == WAKE_AND_SAM if a + 1 < len(uart.written) else True
    # back-off: far fewer attempts than one per time-out (6000/100 = 60)
    assert len(wakes) < 16


def test_backoff_grows_then_caps():
    drv, uart = new(mode="silent", timeout_ms=100, backoff_min_ms=50, backoff_max_ms=400)
    t = T0
    sent = []
    for i in range(0, 5000, 5):
        uart.writes_this_poll = 0
        n = len(uart.written)
        drv.poll(t)
        if len(uart.written) > n and uart.written[-1] == WAKE_AND_SAM:
            sent.append(i)
        t = ticks_add(t, 5)
    gaps = [sent[i + 1] - sent[i] for i in range(len(sent) - 1)]
    # gap = time-out + back-off: 100+0, 100+50, 100+100, 100+200, then capped at 100+400
    assert gaps[0] <= 110
    assert gaps[1] < gaps[2] < gaps[3] < gaps[4]
    assert all(495 <= g <= 510 for g in gaps[4:])


def test_recovery_reports_ok_then_the_card():
    drv, uart = new(mode="silent", timeout_ms=100, fail_after_ms=400, backoff_max_ms=300)
    events, t = drive(drv, uart, T0, 1500)
    assert kinds(events) == ["failed"]
    uart.mode = "normal"
    uart.card = UID4
    events, t = drive(drv, uart, t, 1500)
    assert kinds(events) == ["ok", "tap"]
    assert not drv.failed


def test_card_held_across_a_failure_is_not_tapped_twice():
    drv, uart = new(card=UID4, timeout_ms=100, fail_after_ms=300)
    events, t = drive(drv, uart, T0, 300)
    assert kinds(events) == ["tap"]
    uart.mode = "silent"
    events, t = drive(drv, uart, t, 1000)
    assert kinds(events) == ["failed"]
    uart.mode = "normal"
    events, t = drive(drv, uart, t, 2000)
    assert kinds(events) == ["ok"]
    uart.card = None
    events, t = drive(drv, uart, t, 500)
    assert kinds(events) == ["gone"]


def test_garbage_reader_fails_with_reason_garbage():
    drv, uart = new(mode="garbage", timeout_ms=100, fail_after_ms=500)
    events, _ = drive(drv, uart, T0, 2000)
    assert [e[1] for e in events] == [("failed", "garbage")]
    assert drv.parser.garbage > 0


def test_ack_without_reply_times_out_and_aborts():
    # what MxRtyPassiveActivation=FF does without a card: ACK, then nothing
    drv, uart = new(timeout_ms=100, fail_after_ms=10000)
    _, t = drive(drv, uart, T0, 100)
    uart.mode = "ack_only"
    n = len(uart.written)
    _, t = drive(drv, uart, t, 300)
    assert ACK_FRAME in uart.written[n:]
    assert drv.timeouts >= 1
    assert drv._reason == "no reply"
    uart.mode = "normal"
    uart.card = UID4
    events, t = drive(drv, uart, t, 500)
    assert kinds(events) == ["tap"]


def test_error_frame_aborts_and_rewakes():
    drv, uart = new(timeout_ms=100, fail_after_ms=10000)
    _, t = drive(drv, uart, T0, 100)
    uart.mode = "error"
    _, t = drive(drv, uart, t, 100)
    assert drv.error_frames >= 1
    assert ACK_FRAME in uart.written and uart.written.count(WAKE_AND_SAM) >= 2


def test_stale_and_unexpected_frames_are_counted_not_events():
    drv, uart = new()
    _, t = drive(drv, uart, T0, 150)
    uart.rx.extend(uart.reply(0x02, b""))  # a reply nobody asked for, between commands
    events, t = drive(drv, uart, t, 300)
    assert events == []
    assert drv.unexpected + drv.stale > 0
