"""The simulator console: parse one command line into a checked command tuple.

A console line is split on whitespace; `#` starts a comment. `parse(line, evses, reader)`
returns `(name, args)` with validated, typed arguments, or None for a blank line, and raises
`ConsoleError` (carrying the command name) for anything it cannot accept, so the runner can
report one `error` event and go on. Commands (N = EVSE number 1..evses):

    tap UID                      a card enters the reader's field (hex UID, 4..10 bytes)
    remove                       the card leaves the field
    plug N [AMPS|nopp]           plug EV N in (state B) with a Type 2 cable of AMPS = 13|20|32|63
                                 (default 32; PP resistor 1500|680|220|100 ohm, hardware.md
                                 §4.3) or `nopp`: a cable without its PP resistor (PP open)
    pp N OHMS|open               the plugged cable's PP resistor becomes OHMS (1..999999; < 75
                                 is a coding error, > 2200 no cable, §4.3) or none (`open`)
    ev N charge|ventilate|pause|unplug
                                 EV N asks for charge (state C, +6 V), for charge with
                                 ventilation (state D, +3 V, 246 ohm, §4.1), pauses (back to
                                 B) or unplugs (A)
    fault N weld|stuck|diode|pilot_short|ignore_pwm_off
                                 inject a device fault on EVSE N
    clear N                      clear EVSE N's device faults and tell the firmware `clear N`
    contactor N [make MS] [release MS]
                                 EVSE N's contactor: its main contacts (and so its mirror
                                 contact) follow the coil MS milliseconds (0..5000) after it is
                                 energised / dropped; default 20 each
    meter fail|ok|babble         the meter bus stops answering / answers again / babbles:
                                 noise back to back, never t3.5 of silence, no answers (a
                                 broken slave, a wrong baud rate, a second master); `ok` ends it
    meter set N KWH              EVSE N's meter's import register reads KWH (0..999999) from now
    meter reset N                EVSE N's meter's import register back to 0 (a reset/swapped
                                 meter); same as `meter set N 0`
    reader noise BYTES           BYTES (1..4096) random bytes on the reader's UART
    reader dropout SECONDS       the held card leaves the field for SECONDS (0 < s <= 60), then
                                 is back (PN532: no target found meanwhile; RDM6300: no frames)
    reader foreign [KIND]        one bogus frame between the good ones. PN532: wrong_cmd
                                 (default; a well-formed answer to a command never sent),
                                 error_frame, bad_checksum (the held card's listing, bad DCS),
                                 zero_uid (a listing of UID 00000000). RDM6300: bad_checksum
                                 (default; the held tag's frame, wrong XOR), zero_id (tag
                                 0000000000, no real card), truncated (STX + 6 digits)
    power_cut [SECONDS]          the whole controller loses power for SECONDS (default 0,
                                 max 3600): the firmware dies, every coil drops at once (the
                                 contacts open after their release time), the pilot generator
                                 is unpowered (the EV sees 0 V, draws nothing; the meter stops
                                 counting), the reader is unpowered; then the firmware restarts
                                 on the same flash dir and drives the lines again from its
                                 `hello`
    broker down|up|stall         the charge point's network (with --broker; the broker itself
                                 runs on): `down` closes every connection to the broker
                                 abruptly and refuses new ones; `stall` is a black hole
                                 (connections stay open, nothing passes either way, new ones
                                 are accepted and never forwarded); `up` restores it (stalled
                                 connections resume, those opened during the stall are reset)
    wait SECONDS                 let the simulation run
    status | heap                ask the firmware for a snapshot / its heap figures
    quit                         stop everything

Each command the runner executes shows as one runner event (host_sim.runner, README):
`tap`/`remove`/`reader ...` -> `reader` (action tap|remove|noise|dropout|foreign), `plug`/`pp`/
`ev` -> `ev` (action plug|pp|charge|ventilate|pause|unplug), `fault`/`clear`/`contactor`/
`meter` -> `device`, `power_cut` -> `power_cut` then `restart`, `broker` -> `net` (state).
"""

from host_sim.devices.pn532 import FOREIGN as PN532_FOREIGN
from host_sim.devices.rdm6300 import FOREIGN as RDM6300_FOREIGN

EV_ACTIONS = ("charge", "ventilate", "pause", "unplug")
FAULTS = ("weld", "stuck", "diode", "pilot_short", "ignore_pwm_off")
METER_MODES = ("fail", "ok", "babble")
CABLE_AMPS = (13, 20, 32, 63)
NO_PP = "nopp"
PP_OPEN = "open"
MAX_PP_OHMS = 999999  # six digits; the firmware reads 1 Mohm and above as open (hal/pilot.py)
MAX_WAIT_S = 3600.0
MAX_KWH = 999999.0  # host_sim.devices.sdm.MAX_KWH: the float32 register's resolution limit
MAX_TRAVEL_MS = 5000.0  # host_sim.devices.contactor.MAX_TRAVEL_S
MAX_NOISE_BYTES = 4096  # one UART receive buffer of the simulated pty (PtyPort.rx_limit)
MAX_DROPOUT_S = 60.0  # longer is not a "brief" drop-out: use `remove` and `tap`
NET_STATES = ("down", "up", "stall")  # host_sim.netproxy.STATES
READER_FOREIGN = {"pn532": PN532_FOREIGN, "rdm6300": RDM6300_FOREIGN}
HEX_DIGITS = "0123456789abcdefABCDEF"

# name -> usage (also the list of known commands)
USAGE = {
    "tap": "tap UID",
    "remove": "remove",
    "plug": "plug N [13|20|32|63|nopp]",
    "pp": "pp N OHMS|open",
    "ev": "ev N " + "|".join(EV_ACTIONS),
    "fault": "fault N " + "|".join(FAULTS),
    "clear": "clear N",
    "contactor": "contactor N [make MS] [release MS]",
    "meter": "meter fail|ok|babble | meter set N KWH | meter reset N",
    "reader": "reader noise BYTES | reader dropout SECONDS | reader foreign [KIND]",
    "power_cut": "power_cut [SECONDS]",
    "broker": "broker " + "|".join(NET_STATES),
    "wait": "wait SECONDS",
    "status": "status",
    "heap": "heap",
    "quit": "quit",
}


MAX_LINE = 1024  # characters; the longest real command line is under 60
SHOW_COMMAND = 40  # characters of a bad command name shown in an error event
SHOW_MESSAGE = 300  # characters of an error message (it quotes the bad argument)


def shown(text, limit):
    """`text` as it may go into an event: lone surrogates (what bytes that were not UTF-8
    become under surrogateescape; no UTF-8 JSON line can carry them) as backslash escapes, at
    most `limit` characters after escaping, and the original length when cut. Control
    characters stay: json.dumps escapes them."""
    out = []
    n = 0
    for c in text:
        piece = ascii(c)[1:-1] if "\ud800" <= c <= "\udfff" else c
        if n + len(piece) > limit:
            return "".join(out) + "... ({} characters)".format(len(text))
        out.append(piece)
        n += len(piece)
    return "".join(out)


class ConsoleError(ValueError):
    """A command line that cannot be run; `command` names it ('' for an empty name). Both are
    cut and escaped (`shown`): they end up in a JSON event line."""

    def __init__(self, command, message):
        command = shown(command, SHOW_COMMAND)
        message = shown(message, SHOW_MESSAGE)
        super().__init__("{}: {}".format(command, message))
        self.command = command
        self.message = message


def strip_comment(line):
    i = line.find("#")
    return (line if i < 0 else line[:i]).strip()


def parse(line, evses=1, reader=None):
    """Parse one console line; None for blank/comment lines; ConsoleError if invalid.
    `reader` (pn532|rdm6300, None = not known) decides which `reader foreign` kinds exist.
    A line over MAX_LINE characters, or holding bytes that were not UTF-8 (lone surrogates),
    is refused whole before it is split."""
    if len(line) > MAX_LINE:
        raise ConsoleError("", "line of {} characters, longer than {}: ignored".format(
            len(line), MAX_LINE))
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as e:  # surrogateescape keeps byte B as U+DC00 + B
        c = ord(line[e.start])
        what = "byte 0x{:02X}".format(c - 0xDC00) if 0xDC80 <= c <= 0xDCFF else \
            "lone surrogate U+{:04X}".format(c)
        raise ConsoleError("", "not UTF-8 text ({} at character {}): ignored".format(
            what, e.start)) from None
    words = strip_comment(line).split()
    if not words:
        return None
    name, args = words[0], words[1:]
    if name not in USAGE:
        raise ConsoleError(name, "unknown command (known: {})".format(", ".join(USAGE)))
    try:
        if name == "reader":
            return name, _reader(args, reader)
        return name, _ARGS[name](args, evses)
    except ConsoleError:
        raise
    except ValueError as e:
        raise ConsoleError(name, "{} (usage: {})".format(e, USAGE[name])) from None


def check_uid(text):
    """A UID is 4..10 bytes of hex (PN532 4/7/10-byte UIDs, RDM6300 5 bytes); upper-case it."""
    if len(text) % 2 or not 8 <= len(text) <= 20:
        raise ValueError("UID must be 8..20 hex digits, even count: {!r}".format(text))
    for c in text:
        if c not in HEX_DIGITS:
            raise ValueError("UID must be hex: {!r}".format(text))
    return text.upper()


def _count(args, n, m=None):
    m = n if m is None else m
    if not n <= len(args) <= m:
        want = str(n) if n == m else "{}..{}".format(n, m)
        raise ValueError("expected {} argument(s), got {}".format(want, len(args)))


def _evse(text, evses):
    if not text.isdigit():
        raise ValueError("EVSE number must be an integer: {!r}".format(text))
    n = int(text)
    if not 1 <= n <= evses:
        raise ValueError("EVSE {} out of range 1..{}".format(n, evses))
    return n


def _choice(text, choices, what):
    if text not in choices:
        raise ValueError("{} must be one of {}: {!r}".format(what, "|".join(choices), text))
    return text


def _number(text, low, high, what, low_open=False):
    """A finite decimal number within low..high (above low if `low_open`)."""
    try:
        x = float(text)
    except ValueError:
        raise ValueError("{} must be a number: {!r}".format(what, text)) from None
    if not (low < x if low_open else low <= x) or not x <= high:  # also rejects nan, inf
        raise ValueError("{} must be within {}{}..{}: {!r}".format(
            what, "(exclusive) " if low_open else "", low, high, text))
    return x


def _integer(text, low, high, what):
    if not text.isdigit() or not text.isascii():
        raise ValueError("{} must be a whole number: {!r}".format(what, text))
    n = int(text)
    if not low <= n <= high:
        raise ValueError("{} must be within {}..{}: {!r}".format(what, low, high, text))
    return n


def _no_args(args, _evses):
    _count(args, 0)
    return ()


def _tap(args, _evses):
    _count(args, 1)
    return (check_uid(args[0]),)


def _plug(args, evses):
    """(N, AMPS) or (N, None) for a cable without its PP resistor."""
    _count(args, 1, 2)
    n = _evse(args[0], evses)
    amps = 32
    if len(args) == 2:
        if args[1] == NO_PP:
            return (n, None)
        if not args[1].isdigit() or int(args[1]) not in CABLE_AMPS:
            raise ValueError("cable must be one of 13|20|32|63|nopp: {!r}".format(args[1]))
        amps = int(args[1])
    return (n, amps)


def _pp(args, evses):
    """(N, OHMS) or (N, None) for no resistor."""
    _count(args, 2)
    n = _evse(args[0], evses)
    if args[1] == PP_OPEN:
        return (n, None)
    return (n, _integer(args[1], 1, MAX_PP_OHMS, "PP resistance (ohms, or open)"))


def _ev(args, evses):
    _count(args, 2)
    return (_evse(args[0], evses), _choice(args[1], EV_ACTIONS, "EV action"))


def _fault(args, evses):
    _count(args, 2)
    return (_evse(args[0], evses), _choice(args[1], FAULTS, "fault"))


def _clear(args, evses):
    _count(args, 1)
    return (_evse(args[0], evses),)


def _contactor(args, evses):
    """(N, make_ms or None, release_ms or None); at least one of the two."""
    _count(args, 3, 5)
    n = _evse(args[0], evses)
    rest = args[1:]
    if len(rest) % 2:
        raise ValueError("each of make/release needs milliseconds")
    times = {}
    for i in range(0, len(rest), 2):
        key = _choice(rest[i], ("make", "release"), "contactor time")
        if key in times:
            raise ValueError("{} given twice".format(key))
        times[key] = _number(rest[i + 1], 0.0, MAX_TRAVEL_MS, key + " time (ms)")
    return (n, times.get("make"), times.get("release"))


def _meter(args, evses):
    """("fail",) | ("ok",) | ("babble",) | ("set", N, KWH) | ("reset", N)."""
    if not args:
        raise ValueError("expected fail, ok, set or reset")
    mode = _choice(args[0], METER_MODES + ("set", "reset"), "meter command")
    if mode in METER_MODES:
        _count(args, 1)
        return (mode,)
    if mode == "reset":
        _count(args, 2)
        return ("reset", _evse(args[1], evses))
    _count(args, 3)
    return ("set", _evse(args[1], evses), _number(args[2], 0.0, MAX_KWH, "import kWh"))


def _reader(args, reader):
    """("noise", BYTES) | ("dropout", SECONDS) | ("foreign", KIND or None = the default)."""
    if not args:
        raise ValueError("expected noise, dropout or foreign")
    what = _choice(args[0], ("noise", "dropout", "foreign"), "reader disturbance")
    if what == "noise":
        _count(args, 2)
        return ("noise", _integer(args[1], 1, MAX_NOISE_BYTES, "noise bytes"))
    if what == "dropout":
        _count(args, 2)
        return ("dropout", _number(args[1], 0.0, MAX_DROPOUT_S, "dropout seconds",
                                   low_open=True))
    _count(args, 1, 2)
    if len(args) == 1:
        return ("foreign", None)
    kinds = READER_FOREIGN.get(reader) or tuple(
        dict.fromkeys(PN532_FOREIGN + RDM6300_FOREIGN))
    return ("foreign", _choice(args[1], kinds, "foreign frame for {}".format(
        reader or "the reader")))


def _broker(args, _evses):
    _count(args, 1)
    return (_choice(args[0], NET_STATES, "network state"),)


def _seconds(args, _evses, default=None):
    _count(args, 0 if default is not None else 1, 1)
    if not args:
        return (default,)
    return (_number(args[0], 0.0, MAX_WAIT_S, "seconds"),)


def _power_cut(args, evses):
    return _seconds(args, evses, default=0.0)


_ARGS = {
    "tap": _tap,
    "remove": _no_args,
    "plug": _plug,
    "pp": _pp,
    "ev": _ev,
    "fault": _fault,
    "clear": _clear,
    "contactor": _contactor,
    "meter": _meter,
    "power_cut": _power_cut,
    "broker": _broker,
    "wait": _seconds,
    "status": _no_args,
    "heap": _no_args,
    "quit": _no_args,
}
