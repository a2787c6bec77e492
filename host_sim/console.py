"""The simulator console: parse one command line into a checked command tuple.

A console line is split on whitespace; `#` starts a comment. `parse(line, evses)` returns
`(name, args)` with validated, typed arguments, or None for a blank line, and raises
`ConsoleError` (carrying the command name) for anything it cannot accept, so the runner can
report one `error` event and go on. Commands:

    tap UID                      a card enters the reader's field (hex UID, 4..10 bytes)
    remove                       the card leaves the field
    plug N [AMPS]                plug EV N in (state B); AMPS = cable rating 13|20|32|63
    ev N charge|pause|unplug     EV N requests charge (C), pauses (C->B) or unplugs (A)
    fault N weld|stuck|diode|pilot_short|ignore_pwm_off
                                 inject a device fault on EVSE N
    clear N                      clear EVSE N's device faults and tell the firmware `clear N`
    meter fail|ok                the meter bus stops answering / answers again
    power_cut                    SIGKILL the firmware, restart it on the same flash dir
    wait SECONDS                 let the simulation run
    status | heap                ask the firmware for a snapshot / its heap figures
    quit                         stop everything
"""

EV_ACTIONS = ("charge", "pause", "unplug")
FAULTS = ("weld", "stuck", "diode", "pilot_short", "ignore_pwm_off")
METER_MODES = ("fail", "ok")
CABLE_AMPS = (13, 20, 32, 63)
MAX_WAIT_S = 3600.0
HEX_DIGITS = "0123456789abcdefABCDEF"

# name -> usage (also the list of known commands)
USAGE = {
    "tap": "tap UID",
    "remove": "remove",
    "plug": "plug N [13|20|32|63]",
    "ev": "ev N charge|pause|unplug",
    "fault": "fault N " + "|".join(FAULTS),
    "clear": "clear N",
    "meter": "meter fail|ok",
    "power_cut": "power_cut",
    "wait": "wait SECONDS",
    "status": "status",
    "heap": "heap",
    "quit": "quit",
}


class ConsoleError(ValueError):
    """A command line that cannot be run; `command` names it ('' for an empty name)."""

    def __init__(self, command, message):
        super().__init__("{}: {}".format(command, message))
        self.command = command
        self.message = message


def strip_comment(line):
    i = line.find("#")
    return (line if i < 0 else line[:i]).strip()


def parse(line, evses=1):
    """Parse one console line; None for blank/comment lines; ConsoleError if invalid."""
    words = strip_comment(line).split()
    if not words:
        return None
    name, args = words[0], words[1:]
    if name not in USAGE:
        raise ConsoleError(name, "unknown command (known: {})".format(", ".join(USAGE)))
    try:
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


def _no_args(args, _evses):
    _count(args, 0)
    return ()


def _tap(args, _evses):
    _count(args, 1)
    return (check_uid(args[0]),)


def _plug(args, evses):
    _count(args, 1, 2)
    n = _evse(args[0], evses)
    amps = 32
    if len(args) == 2:
        if not args[1].isdigit() or int(args[1]) not in CABLE_AMPS:
            raise ValueError("cable rating must be one of 13|20|32|63: {!r}".format(args[1]))
        amps = int(args[1])
    return (n, amps)


def _ev(args, evses):
    _count(args, 2)
    return (_evse(args[0], evses), _choice(args[1], EV_ACTIONS, "EV action"))


def _fault(args, evses):
    _count(args, 2)
    return (_evse(args[0], evses), _choice(args[1], FAULTS, "fault"))


def _clear(args, evses):
    _count(args, 1)
    return (_evse(args[0], evses),)


def _meter(args, _evses):
    _count(args, 1)
    return (_choice(args[0], METER_MODES, "meter mode"),)


def _wait(args, _evses):
    _count(args, 1)
    try:
        s = float(args[0])
    except ValueError:
        raise ValueError("seconds must be a number: {!r}".format(args[0])) from None
    if not 0 <= s <= MAX_WAIT_S:  # also rejects nan
        raise ValueError("seconds must be within 0..{}: {!r}".format(MAX_WAIT_S, args[0]))
    return (s,)


_ARGS = {
    "tap": _tap,
    "remove": _no_args,
    "plug": _plug,
    "ev": _ev,
    "fault": _fault,
    "clear": _clear,
    "meter": _meter,
    "power_cut": _no_args,
    "wait": _wait,
    "status": _no_args,
    "heap": _no_args,
    "quit": _no_args,
}
