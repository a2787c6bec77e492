"""Non-blocking PN532 card reader over HSU (UART 115200 8N1).

One command is in flight at a time; `poll(now)` reads only what the UART says is waiting, feeds
the streaming frame parser, checks the deadline with `ticks_diff` and sends the next command when
it is due. It never sleeps and writes at most once per call, so the control loop keeps its pace.

Sequence: wake-up preamble + SAMConfiguration (leave LowVbat), GetFirmwareVersion (liveness),
RFConfiguration item 0x05 with a FINITE MxRtyPassiveActivation (so a poll without a card answers
NbTg=0 instead of blocking the chip forever), then InListPassiveTarget (1 target, 106 kbps type A)
every `poll_interval_ms`, with InRelease after each card found. On a time-out or an error frame
it aborts the command with an ACK frame, drops what it buffered, and starts again from the
wake-up, with exponential back-off while the reader keeps failing.

Events (at most one per poll; kinds and shapes in hal.kinds): (TAP, (uid_hex, nbytes)) when a
card enters the field, (GONE, uid_hex) after `gone_after` consecutive empty polls,
(UNUSABLE, uid_hex) for a random UID (4 bytes starting 0x08: phones, emulated cards) or one that
is not 4, 7 or 10 bytes long, once per presence (`why_unusable` says which), (FAILED, reason)
when no valid answer came for `fail_after_ms`, (OK, None) on the first valid answer after that.
A card held across a reader failure is not reported twice: presence survives the failure.
Facts: ../shared/reference/hardware.md §1.2 (wake-up), §1.5 (the command frames), §1.6
(RFConfiguration items), §1.7 (the InListPassiveTarget reply).
"""

from hal.compat import const, ticks_add, ticks_diff
from hal.kinds import FAILED, GONE, OK, TAP, UNUSABLE
from hal.pn532_frames import ACK, ACK_FRAME, DATA, ERROR, NACK, TFI_CHIP, FrameParser, build_frame

CMD_GET_FIRMWARE_VERSION = const(0x02)
CMD_SAM_CONFIGURATION = const(0x14)
CMD_RF_CONFIGURATION = const(0x32)
CMD_IN_LIST_PASSIVE_TARGET = const(0x4A)
CMD_IN_RELEASE = const(0x52)

SAM_MODE_NORMAL = const(0x01)
RF_ITEM_MAX_RETRIES = const(0x05)  # RFConfiguration CfgItem: MxRtyATR, MxRtyPSL, MxRtyPassiveAct
BRTY_106K_TYPE_A = const(0x00)  # InListPassiveTarget baud rate / modulation: ISO 14443 type A

# SAMConfiguration: normal mode, no virtual-card timeout, no IRQ pin
SAM_NORMAL = build_frame(bytes((CMD_SAM_CONFIGURATION, SAM_MODE_NORMAL, 0x00, 0x00)))
# 55 55 then zeros: the 55s wake the HSU, the 00s give it time (and are valid preamble bytes).
# One write: the zeros double as the frame's preamble.
WAKE_AND_SAM = b"\x55\x55" + bytes(16) + SAM_NORMAL
GET_FIRMWARE_VERSION = build_frame(bytes((CMD_GET_FIRMWARE_VERSION,)))
# MaxTg 1 (one card at a time), 106 kbps type A
IN_LIST_PASSIVE_TARGET = build_frame(bytes((CMD_IN_LIST_PASSIVE_TARGET, 1, BRTY_106K_TYPE_A)))
IN_RELEASE = build_frame(bytes((CMD_IN_RELEASE, 0x00)))  # Tg 0 = all targets


def rf_max_retries(retries):
    """RFConfiguration frame: MxRtyATR FF (the default), MxRtyPSL 01, MxRtyPassiveActivation
    `retries` -- finite, so an InListPassiveTarget without a card answers NbTg=0."""
    return build_frame(bytes((CMD_RF_CONFIGURATION, RF_ITEM_MAX_RETRIES, 0xFF, 0x01, retries)))


class UnusableUid(ValueError):
    """A well-formed listing of a card whose UID has no OICP form: not 4, 7 or 10 bytes (a
    5-byte UID, say). `uid` holds its bytes: the card is there, it just cannot be used."""

    def __init__(self, uid):
        super().__init__("UID of %d bytes: OICP takes 4, 7 or 10" % len(uid))
        self.uid = uid


def parse_target(payload):
    """InListPassiveTarget reply `D5 4B NbTg [Tg SENS_RES(2) SEL_RES len NFCID ...]`.

    Returns None for no card, the UID bytes for a card, or raises ValueError for a reply that
    is malformed, UnusableUid (a ValueError) for a complete UID whose length is not 4, 7 or 10
    (OICP accepts only those; ISO 14443-3 UIDs are 4, 7 or 10 bytes, so it is a non-standard
    card or reader).
    """
    n = len(payload)
    if n < 3:
        raise ValueError("short reply")
    if payload[2] == 0:
        return None
    uid_len = payload[7] if n >= 8 else 0
    if n < 8 + uid_len:
        raise ValueError("short UID")
    if uid_len not in (4, 7, 10):
        if 0 < uid_len <= 10:
            raise UnusableUid(bytes(payload[8 : 8 + uid_len]))
        raise ValueError("UID length")
    return payload[8 : 8 + uid_len]


def why_unusable(uid_hex):
    """The reason an (UNUSABLE, uid_hex) event's UID cannot be used, for a message."""
    if len(uid_hex) == 8 and uid_hex.startswith("08"):
        return "random UID (a phone or an emulated card): drawn anew at every tap"
    return "a %d-byte UID has no OICP form (4, 7 or 10 bytes)" % (len(uid_hex) // 2)


# Driver phases, in the order of the start-up sequence; each sends one command.
_WAKE = const(0)  # wake preamble + SAMConfiguration
_FIRMWARE = const(1)
_RF_CONFIG = const(2)
_POLL = const(3)
_RELEASE = const(4)
# the command byte each phase sends (its reply's command byte is this + 1)
_PHASE_CMDS = bytes((CMD_SAM_CONFIGURATION, CMD_GET_FIRMWARE_VERSION, CMD_RF_CONFIGURATION,
                     CMD_IN_LIST_PASSIVE_TARGET, CMD_IN_RELEASE))


class PN532:
    def __init__(
        self,
        uart,
        retries=1,
        poll_interval_ms=100,
        timeout_ms=250,
        gone_after=2,
        fail_after_ms=1000,
        backoff_min_ms=50,
        backoff_max_ms=4000,
    ):
        if not 0 <= retries < 0xFF:
            raise ValueError("retries 0..254")  # 0xFF would make the chip wait forever
        if timeout_ms <= 0 or poll_interval_ms < 0 or gone_after < 1:
            raise ValueError("bad timing")
        self.uart = uart
        self.poll_interval_ms = poll_interval_ms
        self.timeout_ms = timeout_ms
        self.gone_after = gone_after
        self.fail_after_ms = fail_after_ms
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        # What each phase writes, in phase order.
        self._frames = (
            WAKE_AND_SAM,
            GET_FIRMWARE_VERSION,
            rf_max_retries(retries),
            IN_LIST_PASSIVE_TARGET,
            IN_RELEASE,
        )
        self.parser = FrameParser()
        self.firmware = None  # (IC, Ver, Rev, Support) once GetFirmwareVersion answered
        # counters, for diagnostics; nothing bad is dropped without being counted
        self.timeouts = 0
        self.error_frames = 0
        self.unexpected = 0  # valid frames nobody asked for (stale replies, NACKs)
        self.bad_replies = 0  # InListPassiveTarget replies with unusable target data
        self.polls = 0
        self.stale = 0  # bytes found waiting before a command and thrown away
        self.failed = False  # no valid answer for fail_after_ms (reported as FAILED)
        self.present = None  # UID hex of the card in the field (None if none or a random UID)
        self._phase = _WAKE
        self._busy = False
        self._deadline = 0
        self._due = None  # None: the first poll sends at once
        self._sent_at = 0
        self._trouble_since = None  # send time of the first failed exchange since a good one
        self._rx_since_send = 0
        self._frames_since_send = 0
        self._aborted = False
        self._fails = 0  # consecutive aborted exchanges
        self._reason = None
        self._pending = None  # an event held back because OK went first
        self._present = None  # raw UID bytes of the card in the field (random ones too)
        self._present_random = False
        self._empty = 0

    def poll(self, now):
        if self._due is None:
            self._due = now
        if self._pending is not None:
            ev, self._pending = self._pending, None
            return ev
        self._aborted = False
        uart, parser = self.uart, self.parser
        n = uart.any()
        if n:
            room = parser.room()
            data = uart.read(n if n < room else room)
            if data:
                self._rx_since_send += len(data)
                parser.feed(data)
        while True:
            frame = parser.next()
            if frame is None:
                break
            ev = self._on_frame(frame[0], frame[1], now)
            if ev is not None:
                return ev
        if self._busy:
            if ticks_diff(now, self._deadline) >= 0:
                if self._frames_since_send:
                    self._abort(now, "no reply")
                else:
                    self._abort(now, "garbage" if self._rx_since_send else "no answer")
        elif not self._aborted and ticks_diff(now, self._due) >= 0:
            self._send(now)  # at most one write per poll: not in the poll that sent an abort
        since = self._trouble_since
        if not self.failed and since is not None and ticks_diff(now, since) >= self.fail_after_ms:
            self.failed = True
            return (FAILED, self._reason)
        return None

    def restart(self, now, reason="port failed"):
        """Its port failed and was (or will be) opened again: start over from the wake-up and
        count as failed (the shell has reported the failure), so the first valid answer on the
        new port reports (OK, None). A card in the field stays present."""
        self.parser.reset()
        self._busy = False
        self._phase = _WAKE
        self._due = now
        self._fails = 0
        self._trouble_since = now
        self._reason = reason
        self.failed = True

    # -- receiving --------------------------------------------------------------------------
    def _on_frame(self, kind, payload, now):
        if not self._busy:
            self.unexpected += 1
            return None
        self._frames_since_send += 1
        if kind == ACK:
            return None
        if kind == NACK:
            self.unexpected += 1
            return None
        if kind == ERROR:
            self.error_frames += 1
            self._abort(now, "error frame")
            return None
        if kind != DATA:
            return None
        phase = self._phase
        if len(payload) < 2 or payload[0] != TFI_CHIP or payload[1] != _PHASE_CMDS[phase] + 1:
            self.unexpected += 1
            return None
        self._busy = False
        self._trouble_since = None
        self._fails = 0
        ev = None
        # The start-up phases follow each other at once; after a poll or a release the next
        # poll is due after poll_interval_ms, unless a card was found (then release it now).
        self._due = now
        if phase < _POLL:
            if phase == _FIRMWARE and len(payload) >= 6:
                self.firmware = tuple(payload[2:6])
            self._phase = phase + 1
        else:
            self._phase = _POLL
            self._due = ticks_add(now, self.poll_interval_ms)
            if phase == _POLL:
                self.polls += 1
                try:
                    uid = parse_target(payload)
                except UnusableUid as e:
                    uid = e.uid  # a card, reported UNUSABLE by _card
                except ValueError:
                    self.bad_replies += 1
                    uid = False
                if uid is None:
                    if self._present is not None:
                        self._empty += 1
                        if self._empty >= self.gone_after:
                            ev = self._forget()
                elif uid:
                    self._phase, self._due = _RELEASE, now
                    ev = self._card(uid)
        if self.failed:
            self.failed = False
            self._reason = None
            self._pending = ev
            return (OK, None)
        return ev

    # -- presence ---------------------------------------------------------------------------
    def _forget(self):
        old = self.present
        self._present = self.present = None
        self._present_random = False
        self._empty = 0
        return None if old is None else (GONE, old)

    def _card(self, uid):
        self._empty = 0
        # ISO 14443-3: a 4-byte UID starting 0x08 is drawn anew at each activation.
        random = len(uid) == 4 and uid[0] == 0x08
        unusable = random or len(uid) not in (4, 7, 10)
        if self._present is not None:
            if random and self._present_random:
                return None  # the same phone, with a new random UID each activation
            if not random and not self._present_random and uid == self._present:
                return None
            ev = self._forget()  # a different card: gone now, the next poll finds the new one
            if ev is not None:
                return ev
        self._present = bytes(uid)
        self._present_random = random
        uid_hex = self._present.hex().upper()
        if unusable:  # once per presence; why_unusable(uid_hex) says why
            return (UNUSABLE, uid_hex)
        self.present = uid_hex
        return (TAP, (uid_hex, len(uid)))

    # -- sending and recovery -----------------------------------------------------------------
    def _send(self, now):
        # Stale bytes before a new command are garbage: count them, forget them.
        uart = self.uart
        n = uart.any()
        if n:
            data = uart.read(n)
            if data:
                self.stale += len(data)
        self.parser.reset()
        uart.write(self._frames[self._phase])
        self._busy = True
        self._sent_at = now
        self._rx_since_send = 0
        self._frames_since_send = 0
        self._deadline = ticks_add(now, self.timeout_ms)

    def _abort(self, now, reason):
        """Time-out or error: ACK aborts the chip's command; then re-wake after a back-off."""
        if reason != "error frame":
            self.timeouts += 1
        self.uart.write(ACK_FRAME)
        self.parser.reset()
        self._busy = False
        self._aborted = True
        self._reason = reason
        if self._trouble_since is None:
            self._trouble_since = self._sent_at
        self._fails += 1
        self._phase = _WAKE
        if self._fails < 2:
            delay = 0
        else:
            delay = self.backoff_min_ms << min(self._fails - 2, 16)
            if delay > self.backoff_max_ms:
                delay = self.backoff_max_ms
        self._due = ticks_add(now, delay)
