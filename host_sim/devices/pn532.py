"""A virtual NXP PN532 on HSU (UART) with a 13.56 MHz card field.

Facts: hardware.md §1 (frames §1.3/§1.4, commands §1.5, RFConfiguration §1.6, InListPassiveTarget
layout §1.7, timing §1.8). The model is deliberately as strict as the chip is described there, so a
driver that works against it has exercised the awkward paths:

* Power-on / PowerDown: the chip sleeps and drops every byte until a 0x55 arrives on HSU_RX; then
  its oscillator needs `wake_s` (default 1 ms, about 11.5 byte times at 115200) during which
  received bytes are lost. Byte arrival times are reconstructed from the baud rate (a chunk fed at
  `now` ended on the wire at `now`, bytes are serialised one byte time apart), so `55 55` + 14×`00`
  before a frame works while the 5-byte Seeed preamble written together with the frame loses the
  frame's first bytes — the failure the fact sheet reports.
* After power-on the chip is in LowVbat mode: only GetFirmwareVersion and SAMConfiguration are
  served; any other command is ACKed and answered with the syntax-error frame (counted as
  `lowvbat_rejected`) until SAMConfiguration has run. PowerDown keeps the SAM setting.
* A transport-valid frame is ACKed after `ack_s`; a frame with a bad LCS or DCS is ignored (no ACK,
  counted) — the host's time-out is the only signal, as with the chip. An unknown/unmodelled
  command or bad parameters: ACK, then the error frame `00 00 FF 01 FF 7F 81 00`.
* One command at a time: a new command frame while one is in progress is dropped (counted as
  `busy_dropped`); an ACK frame from the host aborts it (no response follows); a NACK makes the
  chip resend its last response frame.
* InListPassiveTarget obeys RFConfiguration item 0x05 MxRtyPassiveActivation: 0xFF (the power-on
  default) = silent until a card enters the field; n < 0xFF = answer NbTg=0 after (n+1) ×
  `attempt_s` when no card. A card answers `activation_s` after the later of command and entry.

Console disturbances (host_sim.console `reader ...`), none of which a real chip does by itself
but a noisy UART line or a shaky hand produce:

* `noise(n, now)`: n random bytes on the chip's TX line at `now` (between two frames).
* `dropout(seconds, now)`: the held card leaves the field and re-enters `seconds` later; for the
  chip that is a card entering then, so an InListPassiveTarget in between finds no target.
* `foreign(kind, now)`: one bogus frame at `now`, unasked: `wrong_cmd` a well-formed response
  to a command the host never sent (InDataExchange, D5 41 00), `error_frame` the syntax-error
  frame, `bad_checksum` the target listing of the card in the field with its DCS off by one,
  `zero_uid` a well-formed target listing with UID 00 00 00 00, which no real card has.
* `set_supply(False, now)`: the module's supply (from the controller board) is cut: it answers
  nothing and drops every byte; `set_supply(True, now)` is a cold start (asleep, LowVbat).
"""

import random

from hal.compat import const

ACK = bytes((0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00))
NACK = bytes((0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00))
ERROR_FRAME = bytes((0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00))

TFI_HOST = const(0xD4)
TFI_PN532 = const(0xD5)
MAX_DATA = const(265)  # extended frame: 264 data bytes + TFI

CMD_GET_FIRMWARE_VERSION = const(0x02)
CMD_SAM_CONFIGURATION = const(0x14)
CMD_POWER_DOWN = const(0x16)
CMD_RF_CONFIGURATION = const(0x32)
CMD_IN_DESELECT = const(0x44)
CMD_IN_LIST_PASSIVE_TARGET = const(0x4A)
CMD_IN_RELEASE = const(0x52)

INFINITE = const(0xFF)
# RFConfiguration item -> payload length (hardware.md §1.6)
_RF_ITEM_LEN = {0x01: 1, 0x02: 3, 0x04: 1, 0x05: 3, 0x0A: 11, 0x0B: 8, 0x0C: 3, 0x0D: 9}
# Response delays after the command (s); chosen inside the §1.8 driver time-outs.
_RESPONSE_S = {
    CMD_GET_FIRMWARE_VERSION: 0.002,
    CMD_SAM_CONFIGURATION: 0.002,
    CMD_RF_CONFIGURATION: 0.002,
    CMD_POWER_DOWN: 0.002,
    CMD_IN_DESELECT: 0.003,
    CMD_IN_RELEASE: 0.003,
}
_LOWVBAT_ALLOWED = (CMD_GET_FIRMWARE_VERSION, CMD_SAM_CONFIGURATION)
FAULTS = ("ok", "mute", "garbage")
FOREIGN = ("wrong_cmd", "error_frame", "bad_checksum", "zero_uid")  # first = default
_EXAMPLE_UID = b"\xde\xad\xbe\xef"  # §1.7's example, for `bad_checksum` with no card held


def information_frame(data, tfi=TFI_PN532):
    """Wrap command/response bytes (without TFI) into a normal or extended information frame."""
    body = bytes((tfi,)) + bytes(data)
    dcs = (-sum(body)) & 0xFF
    n = len(body)
    if n > MAX_DATA:
        raise ValueError("PN532 frame data too long: %d" % n)
    if n <= 255:
        head = bytes((0x00, 0x00, 0xFF, n, (-n) & 0xFF))
    else:
        hi, lo = n >> 8, n & 0xFF
        head = bytes((0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, (-(hi + lo)) & 0xFF))
    return head + body + bytes((dcs, 0x00))


class Card:
    """An ISO 14443-A card: UID, ATQA (SENS_RES as sent), SAK, ATS (TL first) if ISO-DEP."""

    __slots__ = ("uid", "atqa", "sak", "ats", "random_uid", "since")

    def __init__(self, uid, atqa=None, sak=None, ats=None, random_uid=False, since=0.0):
        uid = bytes(uid)
        if not 4 <= len(uid) <= 10:  # what the console's `tap` takes
            raise ValueError("UID must be 4..10 bytes, got %d" % len(uid))
        # Defaults by UID size (§1.7): Classic 1K, Ultralight/NTAG, triple-size; any other
        # length (a non-standard card, e.g. 5 bytes) is listed as the 4-byte kind is, so the
        # firmware meets a UID it cannot use (issue 16 item 4)
        default_atqa, default_sak = {7: (b"\x00\x44", 0x00),
                                     10: (b"\x00\x84", 0x00)}.get(len(uid), (b"\x00\x04", 0x08))
        self.uid = uid
        self.atqa = bytes(atqa) if atqa is not None else default_atqa
        if len(self.atqa) != 2:
            raise ValueError("ATQA must be 2 bytes")
        self.sak = default_sak if sak is None else sak
        if self.sak & 0x20 and ats is None:
            ats = b"\x05\x78\x80\x70\x02"
        self.ats = bytes(ats) if (ats is not None and self.sak & 0x20) else b""
        if self.ats and self.ats[0] != len(self.ats):
            raise ValueError("ATS must start with its length byte TL")
        self.random_uid = random_uid
        self.since = since

    def target_data(self, rng):
        """Tg SENS_RES SEL_RES NFCIDLength NFCID1 [ATS] for one activation."""
        uid = self.uid
        if self.random_uid:
            uid = b"\x08" + bytes(rng.getrandbits(8) for _ in range(len(uid) - 1))
        return b"\x01" + self.atqa + bytes((self.sak, len(uid))) + uid + self.ats, uid


class Pn532:
    """The chip. Times are float seconds from the caller's clock."""

    def __init__(self, *, baud=115200, seed=0, wake_s=0.001, ack_s=0.001, attempt_s=0.010,
                 activation_s=0.015, rx_timeout_s=0.050, garbage_period_s=0.020,
                 firmware=(0x32, 0x01, 0x06, 0x07), strict_lowvbat=True):
        self.byte_s = 10.0 / baud
        self.wake_s = wake_s
        self.ack_s = ack_s
        self.attempt_s = attempt_s
        self.activation_s = activation_s
        self.rx_timeout_s = rx_timeout_s
        self.garbage_period_s = garbage_period_s
        self.firmware = bytes(firmware)
        self.strict_lowvbat = strict_lowvbat
        self._rng = random.Random(seed)
        self._noise_rng = random.Random(seed + 1)
        self.supplied = True
        self.card = None
        self.fault = "ok"
        self.counters = {}
        self.power_on()

    # ---- test/console controls -------------------------------------------------------------
    def power_on(self):
        """Cold start: asleep, LowVbat, default retries, empty queues."""
        self.power = "sleep"
        self.sam_done = False
        self.mx_rty = [0xFF, 0x01, INFINITE]  # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
        self.rf_field = 0
        self.target = None
        self._awake_at = 0.0
        self._sleep_after_send = False
        self._last_byte_t = -1.0
        self._rx = bytearray()
        self._rx_last = 0.0
        self._out = []  # [(due, frame, is_response)]
        self._busy = False
        self._ilpt = None  # (start, brty, deadline or None)
        self._last_response = None
        self._next_garbage = None

    def present(self, uid, now=0.0, atqa=None, sak=None, ats=None):
        """Put a card with this UID in the field."""
        self.card = Card(uid, atqa, sak, ats, since=now)
        self.target = None

    def present_random(self, now=0.0, sak=0x20):
        """A phone-like card: 4-byte random UID `08 xx xx xx`, new at every activation."""
        self.card = Card(b"\x08\x00\x00\x00", sak=sak, random_uid=True, since=now)
        self.target = None

    def remove(self):
        self.card = None
        self.target = None

    def dropout(self, seconds, now):
        """The held card leaves the field at `now` and is back `seconds` later."""
        if self.card is None:
            raise ValueError("no card on the reader (tap one first)")
        if not seconds > 0:
            raise ValueError("dropout must last > 0 s, got %r" % seconds)
        self.card.since = now + seconds  # it (re-)enters the field then
        self.target = None
        self._count("dropouts")
        return self.card.since

    def noise(self, n, now):
        """`n` random bytes leave on TX at `now`; returns them."""
        data = bytes(self._noise_rng.getrandbits(8) for _ in range(n))
        self._inject(data, now, "noise_bytes")
        return data

    def foreign(self, kind=None, now=0.0):
        """One bogus frame of `kind` (FOREIGN; None = the first) leaves at `now`; returns it."""
        kind = FOREIGN[0] if kind is None else kind
        if kind == "wrong_cmd":
            frame = information_frame(b"\x41\x00")
        elif kind == "error_frame":
            frame = ERROR_FRAME
        elif kind == "bad_checksum":
            card = self.card
            if card is None or card.random_uid:
                card = Card(_EXAMPLE_UID)
            good = information_frame(b"\x4b\x01" + card.target_data(self._rng)[0])
            frame = good[:-2] + bytes(((good[-2] + 1) & 0xFF, 0x00))
        elif kind == "zero_uid":
            frame = information_frame(b"\x4b\x01\x01\x00\x04\x08\x04\x00\x00\x00\x00")
        else:
            raise ValueError("unknown PN532 foreign frame %r (one of %s)"
                             % (kind, ", ".join(FOREIGN)))
        self._inject(frame, now, "foreign_frames")
        return frame

    def set_supply(self, on, now=0.0):
        """Cut (False) or restore (True) the module's supply; either way a cold start."""
        self.power_on()
        self.supplied = bool(on)

    def _inject(self, data, now, counter):
        if not self.supplied:
            raise ValueError("the reader has no power")
        self._out.append((now, bytes(data), False))
        self._count(counter, 1 if counter == "foreign_frames" else len(data))

    def set_fault(self, name, now=0.0):
        if name not in FAULTS:
            raise ValueError("unknown PN532 fault %r (one of %s)" % (name, ", ".join(FAULTS)))
        self.fault = name
        self._out = []
        self._ilpt = None
        self._busy = False
        self._rx = bytearray()
        self._next_garbage = now if name == "garbage" else None

    # ---- byte interface --------------------------------------------------------------------
    def feed(self, data, now):
        n = len(data)
        if not self.supplied:
            self._count("dropped_unpowered", n)
            return
        if self.fault != "ok":
            self._count("dropped_" + self.fault, n)
            return
        for i, b in enumerate(data):
            t = max(now - (n - 1 - i) * self.byte_s, self._last_byte_t + self.byte_s)
            self._last_byte_t = t
            if self.power == "sleep":
                if b == 0x55:
                    self.power = "waking"
                    self._awake_at = t + self.wake_s
                    self._count("wakeups")
                else:
                    self._count("dropped_asleep")
                continue
            if self.power == "waking":
                if t < self._awake_at:
                    self._count("dropped_waking")
                    continue
                self.power = "awake"
            self._rx.append(b)
            self._rx_last = now
        self._parse(now)

    def pending(self, now):
        if not self.supplied:
            return b""
        if self.fault == "garbage":
            return self._garbage(now)
        if self.power == "waking" and now >= self._awake_at:
            self.power = "awake"
        self._poll_ilpt(now)
        if self._rx and now >= self._rx_last + self.rx_timeout_s:
            if self._rx[:2] == b"\x00\xff":
                # An incomplete frame that never finished: drop its start code and re-hunt.
                self._count("rx_timeouts")
                del self._rx[:2]
                self._parse(now)
            else:
                del self._rx[:]  # an idle trailing 00 (postamble/preamble), not an error
        out = bytearray()
        keep = []
        for item in self._out:
            due, frame, is_response = item
            if due <= now:
                out += frame
                if is_response:
                    self._busy = False
                    if self._sleep_after_send:
                        self._sleep_after_send = False
                        self.power = "sleep"
            else:
                keep.append(item)
        self._out = keep
        return bytes(out)

    def next_event(self, now):
        if not self.supplied:
            return None
        times = [due for due, _, _ in self._out]
        if self.fault == "garbage" and self._next_garbage is not None:
            times.append(self._next_garbage)
        if self._rx:
            times.append(self._rx_last + self.rx_timeout_s)
        if self._ilpt is not None:
            due = self._ilpt_due()
            if due is not None:
                times.append(due)
        return min(times) if times else None

    def status(self, now=None):
        card = self.card
        return {
            "supplied": self.supplied,
            "power": self.power,
            "sam": self.sam_done,
            "card": None if card is None else ("random" if card.random_uid else card.uid.hex()),
            "card_since": None if card is None else round(card.since, 3),
            "target": None if self.target is None else self.target.hex(),
            "busy": self._busy,
            "mx_rty_passive": self.mx_rty[2],
            "fault": self.fault,
            "counters": dict(self.counters),
        }

    # ---- internals -------------------------------------------------------------------------
    def _count(self, key, n=1):
        self.counters[key] = self.counters.get(key, 0) + n

    def _parse(self, now):
        rx = self._rx
        while True:
            i = rx.find(b"\x00\xff")
            if i < 0:
                # keep a trailing 00 that may start a start code
                keep = 1 if rx and rx[-1] == 0 else 0
                del rx[: len(rx) - keep]
                return
            del rx[:i]
            if len(rx) < 4:
                return
            a, b = rx[2], rx[3]
            if a == 0x00 and b == 0xFF:
                del rx[:4]
                self._on_ack()
                continue
            if a == 0xFF and b == 0x00:
                del rx[:4]
                self._on_nack(now)
                continue
            if a == 0xFF and b == 0xFF:  # extended frame
                if len(rx) < 7:
                    return
                hi, lo, lcs = rx[4], rx[5], rx[6]
                start, length = 7, hi * 256 + lo
                lcs_ok = (hi + lo + lcs) & 0xFF == 0
            else:
                start, length = 4, a
                lcs_ok = (a + b) & 0xFF == 0
            if not lcs_ok or length == 0 or length > MAX_DATA:
                self._count("bad_lcs")
                del rx[:2]
                continue
            if len(rx) < start + length + 1:
                return
            body = bytes(rx[start : start + length])
            if (sum(body) + rx[start + length]) & 0xFF:
                self._count("bad_dcs")
                del rx[:2]
                continue
            del rx[: start + length + 1]
            if body[0] != TFI_HOST or length < 2:
                self._count("bad_tfi")
                continue
            self._on_command(body[1], body[2:], now)

    def _on_ack(self):
        if not self._busy:
            self._count("host_acks")
            return
        self._count("aborted")
        self._out = [item for item in self._out if not item[2]]
        self._ilpt = None
        self._busy = False
        self._sleep_after_send = False

    def _on_nack(self, now):
        self._count("nacks")
        if self._busy or self._last_response is None:
            return
        self._out.append((now + self.ack_s, self._last_response, False))

    def _respond(self, due, data):
        frame = information_frame(data) if data is not None else ERROR_FRAME
        self._last_response = frame
        self._out.append((due, frame, True))

    def _on_command(self, cmd, params, now):
        if self._busy:
            self._count("busy_dropped")
            return
        self._count("commands")
        self._busy = True
        self._out.append((now + self.ack_s, ACK, False))
        if self.strict_lowvbat and not self.sam_done and cmd not in _LOWVBAT_ALLOWED:
            self._count("lowvbat_rejected")
            self._respond(now + self.ack_s + 0.001, None)
            return
        if cmd == CMD_IN_LIST_PASSIVE_TARGET:
            self._start_ilpt(params, now)
            return
        data = self._execute(cmd, params)
        if data is None:
            self._count("error_frames")
        self._respond(now + _RESPONSE_S.get(cmd, 0.002), data)

    def _execute(self, cmd, p):
        """Response bytes (after TFI) of an immediate command, None for a syntax error."""
        if cmd == CMD_GET_FIRMWARE_VERSION:
            return b"\x03" + self.firmware
        if cmd == CMD_SAM_CONFIGURATION:
            if not 1 <= len(p) <= 3 or not 1 <= p[0] <= 4:
                return None
            self.sam_done = True
            return b"\x15"
        if cmd == CMD_RF_CONFIGURATION:
            if not p or _RF_ITEM_LEN.get(p[0]) != len(p) - 1:
                return None
            if p[0] == 0x05:
                self.mx_rty = [p[1], p[2], p[3]]
            elif p[0] == 0x01:
                self.rf_field = p[1]
            return b"\x33"
        if cmd in (CMD_IN_RELEASE, CMD_IN_DESELECT):
            if len(p) != 1:
                return None
            if cmd == CMD_IN_RELEASE:
                self.target = None
            return bytes((cmd + 1, 0x00))
        if cmd == CMD_POWER_DOWN:
            if not 1 <= len(p) <= 2:
                return None
            self._sleep_after_send = True
            self.target = None
            return b"\x17\x00"
        self._count("unsupported")
        return None

    def _start_ilpt(self, p, now):
        if len(p) < 2 or p[0] not in (1, 2) or p[1] > 4:
            self._count("error_frames")
            self._respond(now + 0.002, None)
            return
        retries = self.mx_rty[2]
        deadline = None if retries == INFINITE else now + (retries + 1) * self.attempt_s
        self._ilpt = (now, p[1], deadline)

    def _ilpt_plan(self):
        """(due, card or None): when the pending InListPassiveTarget answers, and with what."""
        start, brty, deadline = self._ilpt
        card = self.card if brty == 0 else None
        if card is not None:
            due = max(start, card.since) + self.activation_s
            if deadline is None or due <= deadline:
                return due, card
        return deadline, None

    def _ilpt_due(self):
        return self._ilpt_plan()[0]

    def _poll_ilpt(self, now):
        if self._ilpt is None:
            return
        due, card = self._ilpt_plan()
        if due is None or due > now:
            return
        self._ilpt = None
        if card is not None:
            data, uid = card.target_data(self._rng)
            self.target = uid
            self._count("cards_listed")
            self._respond(due, b"\x4b\x01" + data)
        else:
            self._count("no_card")
            self._respond(due, b"\x4b\x00")

    def _garbage(self, now):
        if self._next_garbage is None or now < self._next_garbage:
            return b""
        self._next_garbage = now + self.garbage_period_s
        n = self._rng.randint(1, 16)
        self._count("garbage_bytes", n)
        return bytes(self._rng.getrandbits(8) for _ in range(n))
