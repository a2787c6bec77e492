"""Contactor driver: verdicts from coil command + mirror contact, with explicit `now` (no clock).

A poll returns None or (CONTACTOR, (state, late_ms)) (hal.kinds); `verdict` checks the kind and
gives the verdict (state, late_ms): a mirror that agrees with the command after the settle window
but before the confirmation time gives the right state with late_ms, a weld / stuck_open needs
the mirror to disagree still at the confirmation time (hal/contactor.py)."""

from hal.compat import ticks_add
from hal.contactor import CONFIRM_MS, DEBOUNCE_MS, SETTLE_MS, Contactor
from hal.kinds import CONTACTOR


class FakePin:
    def __init__(self, v=0):
        self.v = v
        self.writes = []

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        self.writes.append(v)


def verdict(c, now):
    """c.poll(now) -> None or its verdict (state, late_ms), the event's kind checked."""
    ev = c.poll(now)
    if ev is None:
        return None
    assert ev[0] == CONTACTOR, ev
    return ev[1]


SETTLE = 100
DEBOUNCE = 20
CONFIRM = 400


def run(script, mirror0=1, start=0, step=5, late=None):
    """Drive a contactor through `script`, a list of (t_ms, action, arg).

    action "set": command the coil; "mirror": set the mirror pin level; "expect": compare the
    verdict states seen so far with arg. Polls every `step` ms between entries are implicit.
    Returns the list of (t, state) seen; `late`, a list, collects (t, state, late_ms).
    """
    coil = FakePin(1)
    mirror = FakePin(mirror0)
    c = Contactor(coil, mirror, settle_ms=SETTLE, debounce_ms=DEBOUNCE, confirm_ms=CONFIRM)
    assert coil.v == 0, "coil released at construction"
    seen = []
    t = start
    for when, action, arg in script:
        while t < start + when:
            ev = verdict(c, t)
            if ev is not None:
                seen.append((t - start, ev[0]))
                if late is not None:
                    late.append((t - start, ev[0], ev[1]))
            t += step
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


def test_boot_with_open_mirror_is_a_weld_after_the_confirmation_time():
    # construction releases the coil: a reset with the mains closed is a release like any other
    seen, _, _ = run([(CONFIRM - 5, "expect", []), (CONFIRM + 50, "expect", ["welded"])],
                     mirror0=0)
    assert seen[0][0] == CONFIRM


def test_boot_with_a_slow_release_is_open_and_late():
    got = []
    run([(250, "mirror", 1), (400, "expect", ["open"])], mirror0=0, late=got)
    assert got == [(250 + DEBOUNCE, "open", 250)], got


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
        (400 + CONFIRM - 5, "expect", ["open", "closed"]),
        (400 + CONFIRM + 100, "expect", ["open", "closed", "welded"]),
    ]
    seen, _, _ = run(script)
    assert seen[2][0] == 400 + CONFIRM


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
    script = [(200, "set", True), (200 + CONFIRM + 100, "expect", ["open", "stuck_open"])]
    seen, _, _ = run(script)
    assert seen[1][0] == 200 + CONFIRM


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
    assert verdict(c, t0) is None
    assert verdict(c, ticks_add(t0, SETTLE)) == ("open", None)
    c.set(True, ticks_add(t0, SETTLE))
    mirror.v = 0
    assert verdict(c, ticks_add(t0, SETTLE + 10)) is None
    assert verdict(c, ticks_add(t0, 2 * SETTLE - 1)) is None
    assert verdict(c, ticks_add(t0, 2 * SETTLE)) == ("closed", None)


def test_active_low_mirror():
    coil, mirror = FakePin(), FakePin(0)  # 0 = aux contact closed (pulls input to ground)
    c = Contactor(coil, mirror, settle_ms=0, debounce_ms=0, mirror_closed_level=0)
    assert verdict(c, 0) == ("open", None)
    mirror.v = 1
    assert verdict(c, 1) == ("welded", None)


def test_bad_timings_rejected():
    for kw in ({"settle_ms": -1}, {"debounce_ms": -5}, {"settle_ms": 300, "confirm_ms": 299},
               {"confirm_ms": -1}):
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


def mains_after(command, delay, settle=SETTLE, confirm=CONFIRM, debounce=DEBOUNCE, repeats=(),
                until=None):
    """Close at 0 (mirror confirms 10 ms later), then at T = 1000 command `command`; the mains
    follow `delay` ms after T (None: never). `repeats`: ms after T of repeated commands.
    Polls every 1 ms; returns [(ms after T, state, late_ms)] of the verdicts after T."""
    coil, mirror = FakePin(), FakePin(1)
    c = Contactor(coil, mirror, settle_ms=settle, debounce_ms=debounce, confirm_ms=confirm)
    t_cmd = 1000
    if command is False:
        verdict(c, 0)
        c.set(True, 0)
    out = []
    for t in range(0, t_cmd + (until or confirm + 200)):
        if t == 10 and command is False:
            mirror.v = 0  # mains closed
        if t == t_cmd or (t - t_cmd) in repeats:
            c.set(command, t)
        if delay is not None and t == t_cmd + delay:
            mirror.v = 0 if command else 1
        ev = verdict(c, t)
        if ev is not None and t >= t_cmd:
            out.append((t - t_cmd, ev[0], ev[1]))
    assert coil.v == (1 if command else 0)
    return out


S, C, D = SETTLE, CONFIRM, DEBOUNCE
RELEASE_ROWS = (  # (mains open after ms, verdicts (ms after the command, state, late_ms))
    (10, [(S, "open", None)]),
    (S - D, [(S, "open", None)]),
    (S - 1, [(S - 1 + D, "open", None)]),  # moved inside the window, debounced after it
    (S, [(S + D, "open", None)]),  # boundary: an edge at the window's end is in time
    (S + 1, [(S + 1 + D, "open", S + 1)]),  # first late ms
    (300, [(300 + D, "open", 300)]),
    (C - D - 1, [(C - 1, "open", C - D - 1)]),
    (C - 1, [(C - 1 + D, "open", C - 1)]),  # still debouncing at C: no weld on a moving contact
    (C, [(C + D, "open", C)]),  # moving at the confirmation poll itself: not welded
    (C + 1, [(C, "welded", None), (C + 1 + D, "open", None)]),  # too late: weld, then news
    (None, [(C, "welded", None)]),
)
MAKE_ROWS = (  # (mains closed after ms, verdicts): the same windows for stuck_open
    (10, [(S, "closed", None)]),
    (S, [(S + D, "closed", None)]),
    (S + 1, [(S + 1 + D, "closed", S + 1)]),
    (C - 1, [(C - 1 + D, "closed", C - 1)]),
    (C + 1, [(C, "stuck_open", None), (C + 1 + D, "closed", None)]),
    (None, [(C, "stuck_open", None)]),
)


def test_release_table():
    for delay, want in RELEASE_ROWS:
        got = mains_after(False, delay)
        assert got == want, (delay, got, want)


def test_make_table():
    for delay, want in MAKE_ROWS:
        got = mains_after(True, delay)
        assert got == want, (delay, got, want)


def test_issue_9_slow_release_with_the_default_windows():
    # main contacts open 300 ms after the command, past the 250 ms settle window: late, not welded
    assert (SETTLE_MS, CONFIRM_MS, DEBOUNCE_MS) == (250, 1000, 50)
    got = mains_after(False, 300, settle=SETTLE_MS, confirm=CONFIRM_MS, debounce=DEBOUNCE_MS)
    assert got == [(350, "open", 300)], got
    got = mains_after(False, None, settle=SETTLE_MS, confirm=CONFIRM_MS, debounce=DEBOUNCE_MS)
    assert got == [(1000, "welded", None)], got


def test_settle_equal_to_confirm_gives_the_old_single_window():
    assert mains_after(False, S + 1, confirm=S) == [(S, "welded", None),
                                                    (S + 1 + D, "open", None)]
    assert mains_after(True, None, confirm=S) == [(S, "stuck_open", None)]


def test_repeated_commands_inside_the_windows_restart_nothing():
    rows = (  # (command, mains after, repeats at ms after the command, verdicts)
        (False, 300, (5, S - 1, S + 50, 299), [(300 + D, "open", 300)]),
        (False, None, (1, S, C - 1), [(C, "welded", None)]),
        (True, 20, (S - 1,), [(S, "closed", None)]),
        (True, None, (S + 10, C - 10), [(C, "stuck_open", None)]),
    )
    for command, delay, repeats, want in rows:
        got = mains_after(command, delay, repeats=repeats)
        assert got == want, (command, delay, repeats, got, want)


def test_a_repeat_after_the_verdict_is_answered_once():
    # the core re-commands open on "clear" and waits for the verdict: it gets the current one
    for delay, repeat, want in (
        (10, S + 100, [(S, "open", None), (S + 100, "open", None)]),
        (None, C + 100, [(C, "welded", None), (C + 100, "welded", None)]),
    ):
        got = mains_after(False, delay, repeats=(repeat,), until=C + 400)
        assert got == want, (delay, got, want)


def test_reversal_inside_the_confirmation_window_judges_the_latest_command():
    # released at 1000; mains still closed at +S+50, when the command turns to close again: the
    # mirror agrees with "closed" -- no weld, and the verdict follows the new window
    coil, mirror = FakePin(), FakePin(1)
    c = Contactor(coil, mirror, settle_ms=S, debounce_ms=D, confirm_ms=C)
    verdict(c, 0)
    c.set(True, 0)
    mirror.v = 0
    seen = []
    for t in range(0, 1000 + 2 * C):
        if t == 1000:
            c.set(False, t)
        if t == 1000 + S + 50:
            c.set(True, t)
        ev = verdict(c, t)
        if ev is not None:
            seen.append((t, ev))
    assert seen == [(S, ("closed", None)), (1000 + 2 * S + 50, ("closed", None))], seen


def test_late_is_not_fooled_by_a_stamp_a_tick_period_old():
    # the mirror has not moved for most of a tick period (2**30 ms on the ESP32 and CPython);
    # a close-then-open inside the window leaves the mains as they were: on time, not late
    coil, mirror = FakePin(), FakePin(1)
    c = Contactor(coil, mirror, settle_ms=S, debounce_ms=D, confirm_ms=C)
    assert verdict(c, 0) is None and verdict(c, S) == ("open", None)
    t = S
    for _ in range(7):  # 7/8 of 2**30 ms in all, polled every 1/8 (as a loop would, in step)
        t = ticks_add(t, 1 << 27)
        assert verdict(c, t) is None
    c.set(True, t)
    c.set(False, ticks_add(t, 20))
    got = [verdict(c, ticks_add(t, dt)) for dt in range(0, S + 40, 5)]
    assert [g for g in got if g is not None] == [("open", None)], got


def test_idle_poll_allocates_nothing():
    try:
        import gc

        alloc = gc.mem_alloc
    except AttributeError:  # CPython: no heap figures
        return
    coil, mirror = FakePin(), FakePin(1)
    c = Contactor(coil, mirror, settle_ms=S, debounce_ms=D, confirm_ms=C)
    for t in range(0, S + 10):
        c.poll(t)
    c.set(False, S + 10)  # a repeat: answered once, then quiet
    c.poll(S + 11)
    t = S + 12
    gc.collect()
    before = alloc()
    while t < S + 500:  # no range object: the loop itself allocates nothing
        c.poll(t)
        t += 1
    assert alloc() == before, alloc() - before


def test_wire_takes_the_windows_from_the_config():
    from firmware.config import load
    from hal.boards.common import wire

    class PWM:
        def freq(self, hz):
            pass

        def duty_u16(self, v):
            pass

    class ADC:
        def read_uv(self):
            return 0

    cfg = load({"cp_id": "cp1", "evses": [{"evse_id": "DE*AB7*E840*6487"}], "reader": "none",
                "meter": {"type": "none"},
                "contactor": {"settle_ms": 300, "weld_confirm_ms": 2000}})
    mirror = FakePin(0)  # mains closed at boot: released now, welded only if still so at 2 s
    c = wire(cfg, [(FakePin(1), mirror, PWM(), ADC(), None)]).contactors[0]
    assert verdict(c, 0) is None and verdict(c, 1999) is None
    assert verdict(c, 2000) == ("welded", None)
    mirror.v = 1  # the weld frees itself: news after the 50 ms debounce
    assert verdict(c, 2100) is None and verdict(c, 2150) == ("open", None)
    c.set(True, 3000)
    c.set(False, 3001)
    assert verdict(c, 3300) is None and verdict(c, 3301) == ("open", None)  # 300 ms settle window
