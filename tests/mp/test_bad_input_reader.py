"""Issue 16 items 2-4 at the drivers: a reader restarted after its port failed reports "ok" at
its first valid answer; an RDM6300 line without one valid frame is reported once as not
answering; a card whose UID has no OICP form is "unusable", once per presence, never a tap.
Both interpreters."""

from hal.compat import ticks_add
from hal.pn532 import PN532, UnusableUid, parse_target, why_unusable
from hal.rdm6300 import RDM6300, encode_frame
from tests.mp.test_pn532_fake import FakePN532Uart, drive
from tests.mp.test_rdm6300 import ByteUart, run

T0 = 1000


def kinds(events):
    return [e[1][0] for e in events]


def test_uids_without_an_oicp_form_are_unusable_once_per_presence():
    table = (
        # (UID bytes, event kind, why)
        (bytes.fromhex("0102030405"), "unusable", "5-byte UID has no OICP form"),
        (bytes.fromhex("01020304050607080A"), "unusable", "9-byte UID has no OICP form"),
        (bytes.fromhex("08123456"), "unusable", "random UID"),
        (bytes.fromhex("DEADBEEF"), "tap", None),
    )
    for uid, kind, why in table:
        uart = FakePN532Uart()
        drv = PN532(uart)
        _, t = drive(drv, uart, T0, 200)
        uart.card = uid
        events, t = drive(drv, uart, t, 1000)  # held for ten polls: said once
        assert kinds(events) == [kind], (uid, events)
        if why is not None:
            assert events[0][1][1] == uid.hex().upper() and drv.present is None
            assert why in why_unusable(events[0][1][1]), why_unusable(events[0][1][1])
        assert drv.bad_replies == 0, "a card's listing is no bad reply"


def test_parse_target_carries_the_unusable_uid():
    try:
        parse_target(bytes.fromhex("D54B0101000408050102030405"))
    except UnusableUid as e:
        assert e.uid == bytes.fromhex("0102030405") and isinstance(e, ValueError)
    else:
        raise AssertionError("accepted a 5-byte UID")


def test_pn532_restarted_after_a_port_failure_says_ok_at_its_first_answer():
    uart = FakePN532Uart()
    drv = PN532(uart)
    _, t = drive(drv, uart, T0, 200)
    assert not drv.failed
    drv.restart(t)
    assert drv.failed
    events, t = drive(drv, uart, t, 200)
    assert kinds(events) == ["ok"], events
    assert not drv.failed


def test_rdm6300_line_without_a_valid_frame_is_reported_once():
    table = (
        # (what is on the line, the failure's reason)
        ("nothing attached", b"", "no valid frame in 1 s"),
        ("a PN532 (speaks only when spoken to)", b"", "not an RDM6300"),
        ("noise at a wrong baud rate", b"\x80\xf8" * 40, "garbage"),
    )
    for what, noise, reason in table:
        uart = ByteUart()
        drv = RDM6300(uart, silent_after_ms=1000)
        uart.feed(noise)
        events, t = run(drv, 3000, T0)
        assert kinds(events) == ["failed"], (what, events)
        assert reason in events[0][1][1], (what, events)
        uart.feed(encode_frame(b"\x10\x00\x86\xf4\x44"))
        events, t = run(drv, 50, t)
        assert kinds(events) == ["ok", "tap"], (what, events)


def test_rdm6300_after_one_frame_silence_is_no_card():
    uart = ByteUart()
    drv = RDM6300(uart, silent_after_ms=1000)
    uart.feed(encode_frame(b"\x10\x00\x86\xf4\x44"))
    events, t = run(drv, 5000, T0)
    assert kinds(events) == ["tap", "gone"]
    drv.restart(t)  # its port failed and was reopened: failed until a valid frame
    assert drv.failed
    events, t = run(drv, 5000, ticks_add(t, 10))
    assert events == []
    uart.feed(encode_frame(b"\x10\x00\x86\xf4\x44"))
    events, t = run(drv, 50, t)
    assert kinds(events) == ["ok", "tap"]


def test_rdm6300_silence_bound_is_validated():
    try:
        RDM6300(ByteUart(), silent_after_ms=0)
    except ValueError:
        return
    raise AssertionError("accepted silent_after_ms=0")
