"""Conformance of the virtual PN532 with the fact sheet's frames (hardware.md §1.3-§1.8, §9)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_sim.devices.pn532 import ACK, ERROR_FRAME, Pn532, information_frame

H = bytes.fromhex
WAKE = H("5555" + "00" * 14)
GET_FW = H("0000FF02FED4022A00")
GET_FW_REPLY = H("0000FF06FAD5033201060 7E800".replace(" ", ""))
SAM_NORMAL = H("0000FF03FDD414011700")
SAM_NFCPY = H("0000FF05FBD41401000017 00".replace(" ", ""))
SAM_ADAFRUIT = H("0000FF05FBD41401140102 00".replace(" ", ""))
SAM_REPLY = H("0000FF02FED5151600")
RF_RETRIES_FF_01_01 = H("0000FF06FAD43205FF0101F400")
RF_REPLY = H("0000FF02FED533F800")
ILPT = H("0000FF04FCD44A0100E100")
ILPT_DEADBEEF = H("0000FF0CF4D54B01010004 0804DEADBEEF9600".replace(" ", ""))
ILPT_NONE = H("0000FF03FDD54B00E000")
IN_RELEASE = H("0000FF03FDD45200DA00")
IN_DESELECT = H("0000FF03FDD44400E800")
NACK = H("0000FFFF0000")


def timeline(dev, t0, t1):
    """Advance `dev` from t0 to t1 through its own events; [(time, bytes)] it sent."""
    out = []
    t = t0
    for _ in range(10000):
        chunk = dev.pending(t)
        if chunk:
            out.append((t, chunk))
        nxt = dev.next_event(t)
        if nxt is None or nxt > t1:
            return out
        t = max(nxt, t)
    raise AssertionError("device keeps scheduling events")


def sent(dev, t0, t1):
    return b"".join(chunk for _, chunk in timeline(dev, t0, t1))


def awake_chip(now=0.0, retries=1):
    """Woken, SAM-configured chip with MxRtyPassiveActivation = retries (None: keep 0xFF)."""
    p = Pn532()
    p.feed(WAKE + SAM_NORMAL, now)
    assert sent(p, now, now + 0.1) == ACK + SAM_REPLY
    if retries is not None:
        frame = information_frame(bytes((0x32, 0x05, 0xFF, 0x01, retries)), tfi=0xD4)
        p.feed(frame, now + 0.1)
        assert sent(p, now + 0.1, now + 0.2) == ACK + RF_REPLY
    return p


def test_information_frame_matches_fact_sheet_literals():
    assert information_frame(b"\x02", tfi=0xD4) == GET_FW
    assert information_frame(b"\x14\x01\x00\x00", tfi=0xD4) == SAM_NFCPY
    assert information_frame(b"\x4a\x01\x00", tfi=0xD4) == ILPT
    assert information_frame(b"\x03\x32\x01\x06\x07") == GET_FW_REPLY
    assert information_frame(b"\x4b\x00") == ILPT_NONE
    assert information_frame(b"\x32\x05\xff\x01\x01", tfi=0xD4) == RF_RETRIES_FF_01_01
    # extended frame once the data (with TFI) exceeds 255 bytes
    ext = information_frame(bytes(260))
    assert ext[:8] == H("0000FFFFFF0105FA") and ext[-1] == 0 and len(ext) == 8 + 261 + 2


def test_asleep_after_power_on_ignores_frames_without_wakeup():
    p = Pn532()
    p.feed(GET_FW, 0.0)
    assert sent(p, 0.0, 1.0) == b""
    assert p.status()["power"] == "sleep"
    assert p.counters["dropped_asleep"] == len(GET_FW)


@pytest.mark.parametrize(
    "preamble, sam, reply",
    [
        (WAKE, SAM_NORMAL, SAM_REPLY),  # libnfc / EVerest
        (H("5555" + "00" * 15), SAM_ADAFRUIT, SAM_REPLY),  # Adafruit CircuitPython
    ],
)
def test_wakeup_then_sam_configuration(preamble, sam, reply):
    p = Pn532()
    p.feed(preamble + sam, 0.0)
    out = timeline(p, 0.0, 0.5)
    assert b"".join(c for _, c in out) == ACK + reply
    assert out[0][0] <= 0.015  # ACK "within 15 ms"
    assert p.status()["sam"] is True


def test_revk_style_wakeup_needs_its_retry():
    """27x00 + 55 55 55, then the frame at once: the frame lands in the wake-up window and is
    lost; RevK's driver drains 100 ms and retries, which then works."""
    p = Pn532()
    p.feed(H("00" * 27 + "555555"), 0.0)
    p.feed(H("555555") + SAM_NFCPY, 0.0005)
    assert sent(p, 0.0005, 0.1) == b""
    p.feed(H("555555") + SAM_NFCPY, 0.1)
    assert sent(p, 0.1, 0.2) == ACK + SAM_REPLY


def test_short_seeed_preamble_written_with_the_frame_loses_the_frame():
    p = Pn532()
    p.feed(H("5555000000") + SAM_NORMAL, 0.0)
    assert sent(p, 0.0, 0.5) == b""
    # ... but a long preamble works afterwards (the chip is awake now)
    p.feed(SAM_NORMAL, 1.0)
    assert sent(p, 1.0, 1.5) == ACK + SAM_REPLY


def test_separate_wakeup_write_then_frame_later():
    p = Pn532()
    p.feed(b"\x55\x00\x00", 0.0)
    p.feed(SAM_NORMAL, 0.002)  # Adafruit Arduino: delay(2)
    assert sent(p, 0.002, 0.1) == ACK + SAM_REPLY


def test_firmware_version_in_lowvbat_and_after():
    p = Pn532()
    p.feed(WAKE + GET_FW, 0.0)
    assert sent(p, 0.0, 0.1) == ACK + GET_FW_REPLY


def test_lowvbat_rejects_rf_commands_until_sam():
    p = Pn532()
    p.feed(WAKE + ILPT, 0.0)
    assert sent(p, 0.0, 0.5) == ACK + ERROR_FRAME
    assert p.counters["lowvbat_rejected"] == 1
    p.feed(SAM_NORMAL + ILPT, 1.0)
    assert sent(p, 1.0, 1.1) == ACK + SAM_REPLY  # ILPT dropped: chip busy with SAM


def test_rf_configuration_reply():
    p = awake_chip(retries=None)
    p.feed(RF_RETRIES_FF_01_01, 1.0)
    assert sent(p, 1.0, 1.1) == ACK + RF_REPLY
    assert p.status()["mx_rty_passive"] == 1


@pytest.mark.parametrize(
    "uid, expected_target",
    [
        ("DEADBEEF", "01 0004 08 04 DEADBEEF"),
        ("04112233445566", "01 0044 00 07 04112233445566"),
        ("04112233445566778899", "01 0084 00 0A 04112233445566778899"),
    ],
)
def test_ilpt_with_card_by_uid_length(uid, expected_target):
    p = awake_chip()
    p.present(H(uid), now=0.5)
    p.feed(ILPT, 1.0)
    out = timeline(p, 1.0, 2.0)
    expected = information_frame(H("4B01" + expected_target.replace(" ", "")))
    assert b"".join(c for _, c in out) == ACK + expected
    assert out[-1][0] <= 1.0 + 0.110  # inside RevK's 110 ms ILPT time-out
    assert p.status()["target"] == uid.lower()


def test_ilpt_golden_deadbeef_frame():
    p = awake_chip()
    p.present(H("DEADBEEF"))
    p.feed(ILPT, 1.0)
    assert sent(p, 1.0, 2.0) == ACK + ILPT_DEADBEEF


@pytest.mark.parametrize("retries", [0, 1, 16, 0xFE])
def test_ilpt_finite_retries_no_card_answers_zero_targets_after_retry_time(retries):
    p = awake_chip(retries=retries)
    p.feed(ILPT, 1.0)
    out = timeline(p, 1.0, 10.0)
    assert b"".join(c for _, c in out) == ACK + ILPT_NONE
    assert out[-1][0] == pytest.approx(1.0 + (retries + 1) * p.attempt_s)


def test_ilpt_infinite_retries_is_silent_until_card_enters():
    p = awake_chip(retries=None)  # power-on default 0xFF
    p.feed(ILPT, 1.0)
    assert sent(p, 1.0, 30.0) == ACK
    assert p.status()["busy"] is True
    p.present(H("DEADBEEF"), now=30.0)
    out = timeline(p, 30.0, 31.0)
    assert b"".join(c for _, c in out) == ILPT_DEADBEEF
    assert out[-1][0] == pytest.approx(30.0 + p.activation_s)


def test_card_entering_during_finite_retries_is_found():
    p = awake_chip(retries=16)  # 170 ms window
    p.feed(ILPT, 1.0)
    assert sent(p, 1.0, 1.05) == ACK
    p.present(H("DEADBEEF"), now=1.05)
    assert sent(p, 1.05, 2.0) == ILPT_DEADBEEF


def test_ack_from_host_aborts_pending_ilpt():
    p = awake_chip(retries=None)
    p.feed(ILPT, 1.0)
    assert sent(p, 1.0, 2.0) == ACK
    p.feed(ACK, 2.0)
    p.present(H("DEADBEEF"), now=2.1)
    assert sent(p, 2.0, 5.0) == b""
    assert p.counters["aborted"] == 1
    # chip is free again: next command is served
    p.feed(GET_FW, 5.0)
    assert sent(p, 5.0, 5.1) == ACK + GET_FW_REPLY


def test_busy_chip_drops_a_new_command_without_abort():
    """A host time-out without ACK-abort leaves the chip busy (fact sheet §0 #1)."""
    p = awake_chip(retries=None)
    p.feed(ILPT, 1.0)
    p.feed(GET_FW, 2.0)
    assert sent(p, 1.0, 3.0) == ACK
    assert p.counters["busy_dropped"] == 1


def test_in_release_and_in_deselect():
    p = awake_chip()
    p.present(H("DEADBEEF"))
    p.feed(ILPT, 1.0)
    sent(p, 1.0, 2.0)
    p.feed(IN_RELEASE, 2.0)
    assert sent(p, 2.0, 2.1) == ACK + information_frame(b"\x53\x00")
    assert p.status()["target"] is None
    p.feed(IN_DESELECT, 3.0)
    assert sent(p, 3.0, 3.1) == ACK + information_frame(b"\x45\x00")


@pytest.mark.parametrize(
    "bad",
    [
        H("0000FF02FDD4022A00"),  # LCS wrong
        H("0000FF02FED4022B00"),  # DCS wrong
    ],
)
def test_bad_checksums_are_ignored_silently_and_counted(bad):
    p = awake_chip()
    p.feed(bad, 1.0)
    assert sent(p, 1.0, 2.0) == b""
    assert p.counters.get("bad_lcs", 0) + p.counters.get("bad_dcs", 0) == 1
    p.feed(GET_FW, 2.0)
    assert sent(p, 2.0, 2.1) == ACK + GET_FW_REPLY


def test_unknown_command_and_bad_params_get_ack_then_error_frame():
    p = awake_chip()
    for i, data in enumerate([b"\x7e", b"\x14\x09", b"\x32\x05\x01", b"\x4a\x05\x00"]):
        t = 1.0 + i
        p.feed(information_frame(data, tfi=0xD4), t)
        assert sent(p, t, t + 0.1) == ACK + ERROR_FRAME, data


def test_nack_resends_last_response():
    p = awake_chip()
    p.feed(GET_FW, 1.0)
    assert sent(p, 1.0, 1.1) == ACK + GET_FW_REPLY
    p.feed(NACK, 2.0)
    assert sent(p, 2.0, 2.1) == GET_FW_REPLY


def test_frame_split_across_feeds_and_leading_garbage():
    p = awake_chip()
    stream = b"\x13\x37\xff\x00" + GET_FW
    for i, b in enumerate(stream):
        p.feed(bytes((b,)), 1.0 + i * 0.0001)
    assert sent(p, 1.01, 1.1) == ACK + GET_FW_REPLY


def test_power_down_needs_a_new_wakeup():
    p = awake_chip()
    p.feed(information_frame(b"\x16\x10", tfi=0xD4), 1.0)
    assert sent(p, 1.0, 1.1) == ACK + information_frame(b"\x17\x00")
    p.feed(GET_FW, 2.0)
    assert sent(p, 2.0, 2.1) == b""
    p.feed(WAKE + GET_FW, 3.0)
    assert sent(p, 3.0, 3.1) == ACK + GET_FW_REPLY
    assert p.status()["sam"] is True  # PowerDown keeps normal mode


def test_random_uid_card_changes_every_activation():
    p = awake_chip()
    p.present_random()
    uids = set()
    for i in range(5):
        t = 1.0 + i
        p.feed(ILPT, t)
        frame = sent(p, t, t + 0.2)[len(ACK) :]
        body = frame[5:-2]
        # D5 4B 01 | 01 ATQA(2) SAK(20) len(4) UID(4) ATS(05 ...)
        assert body[:4] == H("D54B0101") and body[6] == 0x20 and body[7] == 4
        assert body[8] == 0x08
        assert body[12:] == H("0578807002")
        uids.add(body[8:12])
    assert len(uids) > 1


def test_faults_mute_and_garbage():
    p = awake_chip()
    p.set_fault("mute")
    p.feed(GET_FW, 1.0)
    assert sent(p, 1.0, 2.0) == b""
    p.set_fault("garbage", now=2.0)
    noise = sent(p, 2.0, 2.5)
    assert len(noise) > 10
    p.set_fault("ok")
    p.feed(GET_FW, 3.0)
    assert sent(p, 3.0, 3.1) == ACK + GET_FW_REPLY
    with pytest.raises(ValueError):
        p.set_fault("melt")


def test_present_rejects_bad_uid_length():
    with pytest.raises(ValueError):
        Pn532().present(b"\x01\x02\x03")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(1, 40), max_size=10))
def test_random_bytes_never_crash_and_chip_recovers(noise, cuts):
    """Any byte soup, split anywhere: no exception, and after an ACK-abort and a quiet period
    a well-formed command is served exactly."""
    p = awake_chip()
    t = 1.0
    pos = 0
    for c in cuts + [len(noise)]:
        p.feed(noise[pos : pos + c], t)
        pos += c
        t += 0.001
    sent(p, t, t + 0.5)
    p.feed(ACK, t + 0.5)  # abort whatever the noise started
    sent(p, t + 0.5, t + 1.0)
    p.feed(GET_FW, t + 1.0)
    assert sent(p, t + 1.0, t + 1.1).endswith(GET_FW_REPLY)


# -- console disturbances (host_sim.console `reader ...`) ----------------------------------
def test_dropout_hides_the_card_from_ilpt_then_it_is_found_again():
    p = awake_chip(retries=1)  # 20 ms per InListPassiveTarget without a card
    p.present(H("DEADBEEF"), now=0.5)
    p.feed(ILPT, 1.0)
    assert sent(p, 1.0, 1.1) == ACK + ILPT_DEADBEEF
    assert p.dropout(0.4, now=1.2) == pytest.approx(1.6)
    assert p.status()["target"] is None
    for t in (1.2, 1.3, 1.5):  # the card is out of the field: no target
        p.feed(ILPT, t)
        assert sent(p, t, t + 0.05) == ACK + ILPT_NONE, t
    p.feed(ILPT, 1.6)  # back in the field: found after the activation time
    out = timeline(p, 1.6, 2.0)
    assert b"".join(c for _, c in out) == ACK + ILPT_DEADBEEF
    assert out[-1][0] == pytest.approx(1.6 + p.activation_s)
    assert p.counters["dropouts"] == 1
    with pytest.raises(ValueError):
        p.dropout(0.0, now=3.0)
    p.remove()
    with pytest.raises(ValueError, match="no card"):
        p.dropout(0.4, now=3.0)


def test_noise_bytes_leave_at_once_between_frames():
    p = awake_chip()
    noise = p.noise(100, now=1.0)
    assert len(noise) == 100 and len(set(noise)) > 20
    assert sent(p, 1.0, 1.0) == noise
    assert p.counters["noise_bytes"] == 100
    again = p.noise(3, now=2.0)
    assert again != noise[:3] and sent(p, 2.0, 2.0) == again  # fresh bytes each time
    p.feed(GET_FW, 3.0)  # the chip itself is undisturbed
    assert sent(p, 3.0, 3.1) == ACK + GET_FW_REPLY


def _checksums_ok(frame):
    """(LEN + LCS, TFI..DCS) sums of a normal information frame, both 0 when valid."""
    n = frame[3]
    return (n + frame[4]) & 0xFF, sum(frame[5 : 5 + n + 1]) & 0xFF


def test_foreign_frames_are_what_they_claim():
    p = awake_chip()
    p.present(H("04112233445566"), now=0.5)
    wrong = p.foreign("wrong_cmd", now=1.0)
    assert wrong == information_frame(H("4100")) and _checksums_ok(wrong) == (0, 0)
    assert p.foreign(None, now=1.0) == wrong  # the default kind
    assert p.foreign("error_frame", now=1.0) == ERROR_FRAME
    bad = p.foreign("bad_checksum", now=1.0)
    good = information_frame(H("4B01010044000704112233445566"))
    assert bad[:-2] == good[:-2] and bad[-2] == (good[-2] + 1) & 0xFF
    assert _checksums_ok(bad)[0] == 0 and _checksums_ok(bad)[1] != 0
    zero = p.foreign("zero_uid", now=1.0)
    assert zero == information_frame(H("4B0101000408040000 0000".replace(" ", "")))
    assert sent(p, 1.0, 1.0) == wrong * 2 + ERROR_FRAME + bad + zero
    assert p.counters["foreign_frames"] == 5
    p.remove()
    assert p.foreign("bad_checksum", now=2.0)[:-2] == ILPT_DEADBEEF[:-2]  # §1.7's example
    with pytest.raises(ValueError):
        p.foreign("rdm_frame", now=2.0)


def test_supply_cut_silences_the_chip_and_restore_is_a_cold_start():
    p = awake_chip()
    p.present(H("DEADBEEF"), now=0.5)
    p.feed(ILPT, 1.0)
    p.set_supply(False, now=1.001)  # before it answered
    assert sent(p, 1.001, 2.0) == b"" and p.next_event(2.0) is None
    p.feed(WAKE + SAM_NORMAL, 2.0)
    assert sent(p, 2.0, 3.0) == b"" and p.counters["dropped_unpowered"] > 0
    with pytest.raises(ValueError, match="power"):
        p.noise(4, now=2.5)
    p.set_supply(True, now=3.0)
    st = p.status()
    assert (st["supplied"], st["power"], st["sam"], st["card"]) == (True, "sleep", False,
                                                                   "deadbeef")
    p.feed(GET_FW, 3.1)  # asleep: needs the wake-up again
    assert sent(p, 3.1, 3.5) == b""
    p.feed(WAKE + SAM_NORMAL, 4.0)
    assert sent(p, 4.0, 4.1) == ACK + SAM_REPLY
