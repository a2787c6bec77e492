"""Contactor driver: verdicts from coil command + mirror contact, with explicit `now` (no clock)."""

from hal.compat import ticks_add
from hal.contactor import Contactor


class FakePin:
    def __init__(self, v=0):
        self.v = v
        self.writes = []

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        self.writes.append(v)


SETTLE = 100
DEBOUNCE = 20


def run(script, mirror0=1, start=0):
    """Drive a contactor through `script`, a list of (t_ms, action, arg).

    action "set": command the coil; "mirror": set the mirror pin level; "poll": poll and compare
    with arg (an event kind or None). Polls every 5 ms between entries are implicit and must
    produce nothing unless an entry says so. Returns the list of (t, event) seen.
    """
    coil = FakePin(1)
    mirror = FakePin(mirror0)
    c = Contactor(coil, mirror, settle_ms=SETTLE, debounce_ms=DEBOUNCE)
    assert coil.v == 0, "coil released at construction"
    seen = []
    t = start
    for when, action, arg in script:
        while t < start + when:
            ev = c.poll(t)
            if ev is not None:
                seen.append((t - start, ev[0]))
            t += 5
        if action == "set":
            c.set(arg, t)
        elif action == "mirror":
            mirror.v = arg
        elif action == "expect":
            assert [k for _, k in seen] == arg, (seen, arg)
    return seen, coil, c


def test_boot_reports_open_after_settle():
    seen, coil, c = run([(200, "expect", ["open"])])
    assert seen[0][0] >= SETTLE and c.state == "open"


def test_boot_with_open_mirror_is_a_weld():
    seen, _, _ = run([(200, "expect", ["welded"])], mirror0=0)


def test_normal_close_then_open():
    script = [
        (200, "set", True),
        (210, "mirror", 0),  # mains close 10 ms after the coil
        (400, "expect", ["open", "closed"]),
        (400, "set", False),
        (415, "mirror", 1),
        (600, "expect", ["open", "closed", "open"]),
    ]
    seen, coil, c = run(script)
    assert coil.writes == [0, 1, 0]
    t_closed = seen[1][0]
    assert 300 <= t_closed <= 300 + DEBOUNCE + 10, seen  # verdict right after the settle window


def test_bounce_within_settle_window_is_ignored():
    script = [(200, "set", True)]
    for k in range(8):  # chatter for 40 ms, ends closed (mirror 0)
        script.append((205 + 5 * k, "mirror", k % 2))
    script.append((245, "mirror", 0))
    script.append((500, "expect", ["open", "closed"]))
    run(script)


def test_weld_on_open():
    script = [
        (200, "set", True),
        (210, "mirror", 0),
        (400, "set", False),  # mirror stays open: a pole is welded
        (700, "expect", ["open", "closed", "welded"]),
    ]
    seen, _, _ = run(script)
    assert seen[2][0] >= 400 + SETTLE


def test_weld_while_idle_and_recovery_reported():
    script = [
        (200, "mirror", 0),  # nobody commanded anything, the mirror opens
        (200 + DEBOUNCE - 5, "expect", ["open"]),
        (300, "expect", ["open", "welded"]),
        (400, "mirror", 1),
        (500, "expect", ["open", "welded", "open"]),
    ]
    run(script)


def test_stuck_open():
    script = [(200, "set", True), (500, "expect", ["open", "stuck_open"])]
    seen, _, _ = run(script)
    assert seen[1][0] == 300


def test_glitch_shorter_than_debounce_is_ignored():
    script = [
        (200, "mirror", 0),
        (210, "mirror", 1),  # 10 ms < DEBOUNCE
        (400, "expect", ["open"]),
        (400, "set", True),
        (410, "mirror", 0),
        (600, "mirror", 1),  # 10 ms drop-out while closed
        (610, "mirror", 0),
        (800, "expect", ["open", "closed"]),
    ]
    run(script)


def test_repeat_command_does_not_restart_settle_or_emit():
    script = [
        (200, "set", True),
        (205, "mirror", 0),
        (250, "set", True),  # repeat inside the window: verdict still at 300
        (400, "expect", ["open", "closed"]),
    ]
    seen, coil, _ = run(script)
    assert seen[1][0] == 300 and coil.writes == [0, 1]


def test_works_across_tick_wrap():
    coil, mirror = FakePin(), FakePin(1)
    c = Contactor(coil, mirror, settle_ms=SETTLE, debounce_ms=DEBOUNCE)
    t0 = ticks_add(0, -50)  # 50 ms before this platform's tick counter wraps
    assert c.poll(t0) is None
    assert c.poll(ticks_add(t0, SETTLE)) == ("open", None)
    c.set(True, ticks_add(t0, SETTLE))
    mirror.v = 0
    assert c.poll(ticks_add(t0, SETTLE + 10)) is None
    assert c.poll(ticks_add(t0, 2 * SETTLE - 1)) is None
    assert c.poll(ticks_add(t0, 2 * SETTLE)) == ("closed", None)


def test_active_low_mirror():
    coil, mirror = FakePin(), FakePin(0)  # 0 = aux contact closed (pulls input to ground)
    c = Contactor(coil, mirror, settle_ms=0, debounce_ms=0, mirror_closed_level=0)
    assert c.poll(0) == ("open", None)
    mirror.v = 1
    assert c.poll(1) == ("welded", None)


def test_bad_timings_rejected():
    for kw in ({"settle_ms": -1}, {"debounce_ms": -5}):
        try:
            Contactor(FakePin(), FakePin(), **kw)
        except ValueError:
            continue
        raise AssertionError(kw)



def test_a_verdict_follows_every_command_even_when_unchanged():
    # close, then open again inside the settle window: the mains never moved, yet the core
    # waits for a verdict after each command before it may close again
    script = [
        (200, "expect", ["open"]),
        (200, "set", True),
        (220, "set", False),
        (500, "expect", ["open", "open"]),
        (900, "expect", ["open", "open"]),  # and only once
    ]
    run(script)
