"""Scenario files: console commands plus expectations about the events that follow.

    python -m host_sim scenario FILE [--interpreter cpython|micropython]

Exit status 0 when every expectation was met, 1 on the first unmet one (with a readable diff:
the expectation, its line, and the events seen in its window), 2 for a malformed file.

Syntax, one statement per line, `#` starts a comment:

    set evses 2                  runner options, only before the first command:
    set reader rdm6300             evses, reader (pn532|rdm6300), local_card UID (repeatable),
    set local_card 04A1B2C3        config.KEY VALUE (a firmware config.json entry, JSON value)
    set config.connection_timeout_s 10
    set timeout 5                default window for expectations without `within` (s)
    set broker mqtt://127.0.0.1:1883   connect to a broker through the simulated network
    set cp_id CP-A                 (host_sim.runner); also broker_ca FILE, broker_user U,
                                   broker_password P. The command line's --broker/--cp-id/...
                                   flags win over these (a test passes its own broker)

    tap 04A1B2C3                 any console command (see host_sim.console); every one but
                                 `wait` starts a new window
    wait 1.5                     let time pass (does not start a new window)
    mark                         start a new window without a command

    expect KIND [N] [PRIMARY] [FIELD [OP] VALUE]... [within SECONDS]
    expect no KIND ...           negative: no such event in the window
    expect exactly COUNT KIND ...  exactly COUNT such events in the window

KIND is the event's "ev" (contactor, state, pilot, auth, session_start, session_end, cdr,
status, error, pwm, notification, ev, device, reader, power_cut, restart, uplink, net,
outbox, ...). N is the EVSE number. PRIMARY is a shorthand for the kind's main field:
contactor `closed|open`, state/pilot the state, auth the result, status the OICP status,
error the kind, ev and reader the action, device the fault, notification the type, pwm the
duty, session_end the reason, uplink `connected|disconnected`, net the state (up|down|stall),
restart the reason (reset|power_cut); `outbox` has none: `expect outbox depth 0`. FIELD names a
field of the event; a dotted path (`record.SessionID`) goes into nested objects, and a name
missing at the top level is looked up one level down (so `cdr energy_kwh` finds
`record.energy_kwh`). OP is one of == != >= <= > < (default ==) or `~` (the value's text
contains VALUE); VALUE is read as JSON if it parses (numbers, true, false, null), else as text.

Windows: every expectation looks at one window of events, from `start` to `start + SECONDS`
(SECONDS = its `within`, or the `set timeout` value, default 5, when it has none). `start` is
the runner's clock just before the last console command other than `wait` was run, or at the
last `mark`, whichever came later; the window takes the events recorded from then on (so
events the command itself caused are in it) up to t <= start + SECONDS. Expectations between
two commands share one window: a second one does not start a new one, and `wait` only moves
the clock, so `tap X`, `wait 3`, `expect no auth` covers tap .. tap + 5 s, of which 3 s have
already passed when it is checked. A positive expectation passes as soon as a matching event
is in its window and fails once the clock passes the window's end. `no` and `exactly` always
wait until the window's end (with or without `within`), then count; if the window already
ended (a `wait` longer than it), they count the events that fell into it at once. Steps run
in order, so a `no`/`exactly` line holds up the next step until its window has ended.
Timestamps are taken when the runner reads the event, so `within` bounds include the pipe
latency.

Examples:
    expect contactor 1 closed within 0.5
    expect auth 1 rejected code 102
    expect session_end 1 reason EVDisconnected
    expect cdr energy_kwh >= 0.01
    expect no contactor 1 closed within 2
    broker down
    expect uplink disconnected within 5
    expect outbox depth > 0 within 5
"""

import json
import sys

from host_sim import console

OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "~")
DEFAULT_TIMEOUT_S = 5.0
SET_KEYS = ("evses", "reader", "local_card", "timeout", "broker", "cp_id", "broker_ca",
            "broker_user", "broker_password")
BROKER_KEYS = ("broker", "cp_id", "broker_ca", "broker_user", "broker_password")

# kind -> (primary field, word -> value map or None)
PRIMARY = {
    "contactor": ("closed", {"closed": True, "open": False}),
    "state": ("state", None),
    "pilot": ("state", None),
    "auth": ("result", None),
    "status": ("status", None),
    "error": ("kind", None),
    "ev": ("action", None),
    "device": ("fault", None),
    "notification": ("type", None),
    "pwm": ("duty", None),
    "session_end": ("reason", None),
    "reader": ("action", None),
    "uplink": ("connected", {"connected": True, "disconnected": False}),
    "net": ("state", None),
    "restart": ("reason", None),
}


class ScenarioSyntaxError(ValueError):
    """A line of a scenario file that cannot be understood (message names the line)."""


class Expectation:
    """One `expect` line: what to match, how many, and within which window."""

    __slots__ = ("line", "text", "kind", "evse", "clauses", "count", "within")

    def __init__(self, line, text, kind, evse, clauses, count, within):
        self.line = line
        self.text = text
        self.kind = kind
        self.evse = evse
        self.clauses = clauses  # tuple of (path, op, value)
        self.count = count  # None = at least one; int = exactly that many
        self.within = within  # seconds or None

    def matches(self, event):
        if event.get("ev") != self.kind:
            return False
        if self.evse is not None and event.get("evse") != self.evse:
            return False
        for path, op, value in self.clauses:
            found, actual = lookup(event, path)
            if not found or not compare(actual, op, value):
                return False
        return True


def lookup(event, path):
    """(found, value) for a dotted path; a plain name falls back to one nesting level."""
    parts = path.split(".")
    cur = event
    for part in parts:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            break
    else:
        return True, cur
    if len(parts) == 1:
        for value in event.values():
            if isinstance(value, dict) and path in value:
                return True, value[path]
    return False, None


def compare(actual, op, expected):
    if op == "~":
        return str(expected) in (actual if isinstance(actual, str) else json.dumps(actual))
    if op in ("==", "!="):
        same = actual == expected or (
            not isinstance(actual, bool) and _num(actual) is not None
            and _num(actual) == _num(expected))
        return same if op == "==" else not same
    a, b = _num(actual), _num(expected)
    if a is None or b is None:
        return False
    return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]


def _num(x):
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, (int, float)):
        return x
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def parse_value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _clauses(tokens):
    """Parse FIELD [OP] VALUE groups; None if the tokens do not split into such groups."""
    out = []
    i = 0
    while i < len(tokens):
        if i + 2 < len(tokens) and tokens[i + 1] in OPERATORS:
            out.append((tokens[i], tokens[i + 1], parse_value(tokens[i + 2])))
            i += 3
        elif i + 1 < len(tokens) and tokens[i] not in OPERATORS and tokens[i + 1] not in OPERATORS:
            out.append((tokens[i], "==", parse_value(tokens[i + 1])))
            i += 2
        else:
            return None
    return out


def parse_expectation(line_no, text):
    words = text.split()[1:]
    count = None
    if words and words[0] == "no":
        count, words = 0, words[1:]
    elif words and words[0] == "exactly":
        if len(words) < 2 or not words[1].isdigit():
            raise ScenarioSyntaxError("line {}: `exactly` needs a count".format(line_no))
        count, words = int(words[1]), words[2:]
    within = None
    if len(words) >= 2 and words[-2] == "within":
        try:
            within = float(words[-1])
        except ValueError:
            raise ScenarioSyntaxError(
                "line {}: `within` needs seconds: {!r}".format(line_no, words[-1])) from None
        if not 0 <= within <= console.MAX_WAIT_S:
            raise ScenarioSyntaxError("line {}: `within` out of range".format(line_no))
        words = words[:-2]
    if not words:
        raise ScenarioSyntaxError("line {}: expect needs an event kind".format(line_no))
    kind, rest = words[0], words[1:]
    evse = None
    if rest and rest[0].isdigit():
        evse, rest = int(rest[0]), rest[1:]
    # `contactor 1 closed` style words are always the primary; otherwise the parity decides
    words_first = kind in PRIMARY and PRIMARY[kind][1] is not None and rest and \
        rest[0] in PRIMARY[kind][1]
    clauses = None if words_first else _clauses(rest)
    if clauses is None and kind in PRIMARY and rest:
        field, words_map = PRIMARY[kind]
        tail = _clauses(rest[1:])
        if tail is not None:
            word = rest[0]
            if words_map is not None:
                if word not in words_map:
                    raise ScenarioSyntaxError("line {}: {} expects {}: {!r}".format(
                        line_no, kind, "|".join(words_map), word))
                value = words_map[word]
            else:
                value = parse_value(word)
            clauses = [(field, "==", value)] + tail
    if clauses is None:
        raise ScenarioSyntaxError("line {}: cannot read conditions {!r}".format(
            line_no, " ".join(rest)))
    return Expectation(line_no, text.strip(), kind, evse, tuple(clauses), count, within)


def parse_scenario(text):
    """Return (options, steps). options: dict for the runner; steps: list of
    ("cmd", line, (name, args), text) | ("expect", line, Expectation) | ("mark", line)."""
    options = {"evses": 1, "reader": "pn532", "local_cards": [], "config": {},
               "timeout": DEFAULT_TIMEOUT_S}
    options.update((k, None) for k in BROKER_KEYS)
    steps = []
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = console.strip_comment(raw)
        if not line:
            continue
        head = line.split()[0]
        if head == "set":
            if steps:
                raise ScenarioSyntaxError("line {}: `set` after the first step".format(line_no))
            _apply_set(options, line_no, line.split()[1:])
        elif head == "expect":
            steps.append(("expect", line_no, parse_expectation(line_no, line)))
        elif head == "mark":
            steps.append(("mark", line_no))
        else:
            try:
                cmd = console.parse(line, options["evses"], options["reader"])
            except console.ConsoleError as e:
                raise ScenarioSyntaxError("line {}: {}".format(line_no, e)) from None
            steps.append(("cmd", line_no, cmd, line))
    return options, steps


def _apply_set(options, line_no, words):
    if len(words) != 2:
        raise ScenarioSyntaxError("line {}: usage: set KEY VALUE".format(line_no))
    key, value = words
    if key.startswith("config.") and len(key) > 7:
        options["config"][key[7:]] = parse_value(value)
    elif key == "evses" and value.isdigit() and 1 <= int(value) <= 8:
        options["evses"] = int(value)
    elif key == "reader" and value in ("pn532", "rdm6300"):
        options["reader"] = value
    elif key == "local_card":
        try:
            options["local_cards"].append(console.check_uid(value))
        except ValueError as e:
            raise ScenarioSyntaxError("line {}: {}".format(line_no, e)) from None
    elif key == "timeout" and _num(value) is not None and 0 < float(value) <= 600:
        options["timeout"] = float(value)
    elif key in BROKER_KEYS:
        options[key] = _broker_value(line_no, key, value)
    else:
        raise ScenarioSyntaxError("line {}: bad setting {} {!r} (keys: {}, config.KEY)".format(
            line_no, key, value, ", ".join(SET_KEYS)))


def _broker_value(line_no, key, value):
    """`set broker URL` / `set cp_id ID` checked like the command line's flags."""
    from firmware.ids import check_cp_id
    from host_sim.netproxy import parse_broker_url

    try:
        if key == "broker":
            parse_broker_url(value)
        elif key == "cp_id":
            check_cp_id(value)
    except ValueError as e:
        raise ScenarioSyntaxError("line {}: set {}: {}".format(line_no, key, e)) from None
    return value


class ScenarioFailed(AssertionError):
    """An expectation was not met; the message is the readable diff."""


def format_failure(exp, window_start, window_end, events, why):
    lines = [
        "line {}: {}".format(exp.line, exp.text),
        "  {}".format(why),
        "  window t = {:.3f} .. {:.3f}; events seen in it:".format(window_start, window_end),
    ]
    seen = [e for e in events if window_start <= e.get("t", 0) <= window_end]
    for e in seen:
        mark = ">>" if exp.matches(e) else "  "
        lines.append("  {} {}".format(mark, json.dumps(e, sort_keys=True)))
    if not seen:
        lines.append("     (none)")
    late = [e for e in events if e.get("t", 0) > window_end and exp.matches(e)]
    for e in late[:3]:
        lines.append("  late (after the window): {}".format(json.dumps(e, sort_keys=True)))
    return "\n".join(lines)


def check(sim, exp, start_t, start_index, default_timeout):
    """Wait for / count events for one expectation; raise ScenarioFailed if unmet.

    `sim` offers `now()`, `events` (list of dicts with "t"), `pump(seconds)` (run the
    simulation and collect events for up to that long) and `fatal` (an error event that ends
    the run: the firmware died unexpectedly, or None)."""
    within = exp.within if exp.within is not None else default_timeout
    deadline = start_t + within
    while True:
        window = [e for e in sim.events[start_index:] if e.get("t", 0) <= deadline]
        hits = [e for e in window if exp.matches(e)]
        if exp.count is None and hits:
            return hits[0]
        if sim.now() > deadline:
            break
        if sim.fatal is not None:
            raise ScenarioFailed(format_failure(
                exp, start_t, sim.now(), sim.events[start_index:],
                "the firmware died: {}".format(json.dumps(sim.fatal))))
        sim.pump(min(0.05, max(0.001, deadline - sim.now())))
    end = deadline
    if exp.count is None:
        why = "expected a matching event, none came"
    elif len(hits) == exp.count:
        return None
    else:
        why = "expected exactly {} matching event(s), saw {}".format(exp.count, len(hits))
    raise ScenarioFailed(format_failure(exp, start_t, end, sim.events[start_index:], why))


def run_steps(sim, steps, default_timeout=DEFAULT_TIMEOUT_S, log=None):
    """Execute parsed steps against a started simulation; raises ScenarioFailed."""
    start_t, start_index = sim.now(), len(sim.events)
    for step in steps:
        if step[0] == "expect":
            check(sim, step[2], start_t, start_index, default_timeout)
            if log:
                log("ok   line {}: {}".format(step[1], step[2].text))
            continue
        if step[0] == "mark":
            start_t, start_index = sim.now(), len(sim.events)
            continue
        _, line_no, cmd, text = step
        if cmd[0] != "wait":
            start_t, start_index = sim.now(), len(sim.events)
        if log:
            log("run  line {}: {}".format(line_no, text))
        sim.command(cmd)
        if sim.fatal is not None:
            raise ScenarioFailed("line {}: {}\n  the firmware died: {}".format(
                line_no, text, json.dumps(sim.fatal)))


def main(path, interpreter="cpython", verbose=False, flash=None, romfs=True, **broker):
    """Run one scenario file. `broker`: broker, cp_id, broker_ca, broker_user,
    broker_password (the command line's flags); those not None win over the file's `set`.
    `romfs` False: MicroPython imports the .mpy tree instead of the ROMFS image."""
    from host_sim.runner import RunnerError, Simulation  # runner imports devices lazily

    try:
        with open(path) as f:
            options, steps = parse_scenario(f.read())
    except (OSError, ScenarioSyntaxError) as e:
        print("scenario: {}: {}".format(path, e), file=sys.stderr)
        return 2
    log = (lambda s: print(s, file=sys.stderr)) if verbose else None
    unknown = set(broker) - set(BROKER_KEYS)
    if unknown:
        raise TypeError("unknown option(s): {}".format(", ".join(sorted(unknown))))
    net = {k: broker[k] if broker.get(k) is not None else options[k] for k in BROKER_KEYS}
    try:
        with Simulation(interpreter=interpreter, evses=options["evses"],
                        reader=options["reader"], local_cards=options["local_cards"],
                        config=options["config"], flash=flash, romfs=romfs, **net) as sim:
            run_steps(sim, steps, options["timeout"], log)
    except ScenarioFailed as e:
        print("scenario {} FAILED ({})\n{}".format(path, interpreter, e), file=sys.stderr)
        return 1
    except RunnerError as e:
        print("scenario {} could not run ({}): {}".format(path, interpreter, e), file=sys.stderr)
        return 1
    print("scenario {} passed ({}, {} steps)".format(path, interpreter, len(steps)))
    return 0
