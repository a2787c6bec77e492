"""The firmware shell (firmware/shell.py) with scripted drivers: what it feeds the core, what it
does with the core's actions, and how it copes with a full outbox and bad console input."""

import pytest

from firmware import config
from firmware.app import parse_args
from firmware.shell import Shell
from firmware.store import Store

UID = "04A1B2C3"


class Script:
    """A driver whose poll() returns queued events, then None."""

    def __init__(self):
        self.queue = []
        self.failed = False
        self.calls = []

    def poll(self, now):
        return self.queue.pop(0) if self.queue else None

    def set(self, closed, now):
        self.calls.append(("set", closed))

    def set_duty(self, duty):
        self.calls.append(("duty", duty))

    def cable_amps(self):
        return 32


class Board:
    def __init__(self, n):
        self.reader = Script()
        self.meters = [Script() for _ in range(n)]
        self.contactors = [Script() for _ in range(n)]
        self.pilots = [Script() for _ in range(n)]
        self.proximity = [Script() for _ in range(n)]
        self.bus = None

    def wall_clock(self):
        import time

        return int(time.time())


def make_shell(tmp_path, **extra):
    cfg = config.load(dict({"cp_id": "T1", "evses": [{"evse_id": "DE*ABC*E1*1"}]}, **extra))
    store = Store(str(tmp_path))
    store.put("authlist", {"version": 1, "uids": [UID]})
    events = []
    shell = Shell(cfg, Board(1), store, out=lambda ev, **f: events.append(dict(f, ev=ev)))
    return shell, events, store


def run(shell, ms, start=0):
    for now in range(start, start + ms, 2):
        shell.poll_once(now)
    return start + ms


def kinds(events, ev):
    return [e for e in events if e["ev"] == ev]


def test_a_local_card_charges_and_the_cdr_lands_in_the_outbox(tmp_path):
    shell, events, store = make_shell(tmp_path)
    b = shell.board
    shell.boot(0)
    b.contactors[0].queue.append(("contactor", ("open", None)))
    b.pilots[0].queue.append(("pilot", ("B", None)))
    b.meters[0].queue.append(("reading", {"energy_wh": 1000}))
    t = run(shell, 20)
    b.reader.queue.append(("tap", (UID, 4)))
    t = run(shell, 20, t)
    assert kinds(events, "auth")[-1]["result"] == "accepted"
    assert ("duty", 267) in b.pilots[0].calls  # 32 A cable, 16 A EVSE default: 16 A
    b.pilots[0].queue.append(("pilot", ("C", True)))
    t = run(shell, 20, t)
    assert ("set", True) in b.contactors[0].calls
    b.meters[0].queue.append(("reading", {"energy_wh": 3500}))
    t = run(shell, 20, t)
    b.pilots[0].queue.append(("pilot", ("A", None)))  # unplugged under load
    t = run(shell, 20, t)
    assert b.contactors[0].calls[-1] == ("set", False)
    cdr = kinds(events, "cdr")
    assert len(cdr) == 1 and cdr[0]["record"]["ConsumedEnergy"] == 2.5
    assert any(m.get("type") == "cdr" for _, m in shell.outbox.pending())


def test_the_shell_passes_the_drivers_oicp_uid_as_is(tmp_path):
    shell, events, _ = make_shell(tmp_path)
    shell.boot(0)
    shell.board.reader.queue.append(("tap", ("00000A1B2C3D4E", 5)))  # the RDM6300's form
    run(shell, 10)
    assert kinds(events, "card")[0]["uid"] == "00000A1B2C3D4E"


def test_meter_failure_and_recovery_are_fed_once_each(tmp_path):
    shell, events, _ = make_shell(tmp_path)
    shell.boot(0)
    m = shell.board.meters[0]
    m.failed = True
    m.queue += [("error", OSError("timeout")), ("error", OSError("timeout"))]
    t = run(shell, 20)
    assert shell.meter_failed == [True]
    m.failed = False
    m.queue.append(("reading", {"energy_wh": 5}))
    run(shell, 20, t)
    assert shell.meter_failed == [False]


def test_full_outbox_drops_the_oldest_status_never_a_cdr(tmp_path):
    shell, events, _ = make_shell(tmp_path)
    shell.outbox.limit = 3
    shell.to_outbox({"id": "cdr-1", "type": "cdr"})
    shell.to_outbox({"id": "s-1", "type": "evse_status"})
    shell.to_outbox({"id": "cdr-2", "type": "cdr"})
    shell.to_outbox({"id": "cdr-3", "type": "cdr"})
    assert [i for i, _ in shell.outbox.pending()] == ["cdr-1", "cdr-2", "cdr-3"]
    shell.to_outbox({"id": "cdr-4", "type": "cdr"})  # only CDRs left: limit grows
    assert [i for i, _ in shell.outbox.pending()] == ["cdr-1", "cdr-2", "cdr-3", "cdr-4"]
    assert len(kinds(events, "error")) == 2


def test_console_commands_and_bad_input(tmp_path):
    shell, events, _ = make_shell(tmp_path)
    shell.boot(0)
    shell.command("frobnicate 3\n", 0)
    shell.command("clear x\n", 0)
    shell.command("\n", 0)
    assert [e["kind"] for e in kinds(events, "error")] == ["console", "console"]
    shell.command("heap\n", 0)
    assert kinds(events, "heap")
    shell.command("quit\n", 0)
    assert not shell.running


def test_a_session_open_at_power_cut_is_closed_at_boot_with_one_cdr(tmp_path):
    shell, events, store = make_shell(tmp_path)
    b = shell.board
    shell.boot(0)
    b.contactors[0].queue.append(("contactor", ("open", None)))
    b.pilots[0].queue.append(("pilot", ("C", None)))
    b.meters[0].queue.append(("reading", {"energy_wh": 100}))
    t = run(shell, 20)
    b.reader.queue.append(("tap", (UID, 4)))
    t = run(shell, 20, t)
    b.pilots[0].queue.append(("pilot", ("C", True)))  # PWM on: the diode is measurable
    t = run(shell, 20, t)
    assert ("set", True) in b.contactors[0].calls
    assert store.keys("session.")  # the open session is on flash
    # power cut: a new shell on the same flash directory
    shell2, events2, _ = make_shell(tmp_path)
    shell2.boot(0)
    shell2.board.meters[0].queue.append(("reading", {"energy_wh": 900}))
    run(shell2, 20)
    cdrs = kinds(events2, "cdr")
    assert len(cdrs) == 1 and cdrs[0]["record"]["ConsumedEnergy"] == 0.8
    assert not store.keys("session.")
    shell3, events3, _ = make_shell(tmp_path)  # and once more: nothing left to close
    shell3.boot(0)
    run(shell3, 20)
    assert not kinds(events3, "cdr")


def test_parse_args():
    opts, ports = parse_args(["--board", "unix", "--flash", "d", "--reader-port", "/dev/x"])
    assert opts == {"board": "unix", "flash": "d"} and ports == {"reader": "/dev/x"}
    with pytest.raises(ValueError):
        parse_args(["--bogus", "1"])
    with pytest.raises(ValueError):
        parse_args(["--board"])


def test_modbus_meters_are_polled_through_the_shared_bus_only(tmp_path):
    cfg = config.load({"cp_id": "T1", "evses": [{"evse_id": "DE*ABC*E1*1"},
                                                 {"evse_id": "DE*ABC*E1*2"}]})
    board = Board(2)
    board.bus = Script()
    board.bus.queue.append((1, ("reading", {"energy_wh": 42})))
    board.meters[0].queue.append(("error", RuntimeError("must not be polled directly")))
    events = []
    shell = Shell(cfg, board, Store(str(tmp_path)),
                  out=lambda ev, **f: events.append(dict(f, ev=ev)))
    shell.boot(0)
    run(shell, 10)
    assert board.meters[0].queue  # untouched: only the bus decides who talks
    assert not kinds(events, "error")
    assert [o.meter for o in shell.core.outlets] == [None, 42]  # fed to EVSE 2


def test_expired_cache_entries_are_purged_before_the_tick_counter_can_wrap(tmp_path):
    shell, _, _ = make_shell(tmp_path)
    shell.boot(0)
    shell.core.cache.put("04D5E6F7", 0)
    day = 86400 * 1000
    shell.poll_once(day - 1)  # purged, but not yet expired
    assert len(shell.core.cache) == 1
    for hour in range(1, 30):
        shell.poll_once(day + hour * 3600 * 1000)
    assert len(shell.core.cache) == 0  # dropped once expired, not left to alias after a wrap


def test_safe_state_opens_every_contactor_and_stops_pwm(tmp_path):
    shell, _, _ = make_shell(tmp_path)
    shell.boot(0)
    shell.safe_state(5)
    assert shell.board.contactors[0].calls[-1] == ("set", False)
    assert shell.board.pilots[0].calls[-1] == ("duty", 1000)


def test_a_memory_error_in_the_core_is_not_swallowed(tmp_path):
    # a step that stopped half-way must not be reported and carried on from: it propagates,
    # the shell's safe state opens the contactors and a reset replays the persisted records
    shell, _, _ = make_shell(tmp_path)

    def exhausted(*args):
        raise MemoryError("heap exhausted")

    shell.core._dispatch = exhausted
    with pytest.raises(MemoryError):
        shell.feed("card", 0, UID, 0)


def test_a_clock_before_the_build_is_not_fed_and_said_once(tmp_path, monkeypatch):
    import time as _time

    from firmware.timefmt import CLOCK_FLOOR_S

    monkeypatch.setattr(_time, "time", lambda: 0.0)  # an RTC that restarted at the epoch
    shell, events, _ = make_shell(tmp_path)
    shell.boot(0)
    errs = [e for e in kinds(events, "error") if e["kind"] == "clock"]
    assert len(errs) == 1 and "before this firmware's build" in errs[0]["message"]
    assert shell.core.clock is None
    monkeypatch.setattr(_time, "time", lambda: float(CLOCK_FLOOR_S + 10))
    shell, events, _ = make_shell(tmp_path / "b")
    shell.boot(0)
    assert not [e for e in kinds(events, "error") if e["kind"] == "clock"]
    assert shell.core.clock == (0, CLOCK_FLOOR_S + 10)


def test_an_rtc_set_later_by_ntp_reaches_the_core_within_a_second(tmp_path, monkeypatch):
    """The RTC starts at the epoch; the uplink's thread sets it by NTP later (Esp32Board.
    sync_clock): the shell reads the RTC (non-blocking) about once a second while the core has
    no clock, and feeds it once it is past the release floor."""
    import time as _time

    from firmware.timefmt import CLOCK_FLOOR_S

    rtc = [0.0]
    monkeypatch.setattr(_time, "time", lambda: rtc[0])
    shell, events, _ = make_shell(tmp_path)
    shell.boot(0)
    now = run(shell, 3000)
    assert not shell.core.clock_known()
    rtc[0] = float(CLOCK_FLOOR_S + 100)  # NTP answered in the transport's thread
    now = run(shell, 1100, now)
    assert shell.core.clock_known() and shell.core.clock[1] == CLOCK_FLOOR_S + 100


def _record(**over):
    rec = {"CPOPartnerSessionID": "b3c2a1d0-1111-4222-8333-444455556666",
           "SessionID": "b3c2a1d0-1111-4222-8333-444455556666", "EvseID": "DE*ABC*E1*1",
           "Identification": {"RFIDMifareFamilyIdentification": {"UID": UID}}, "UID": UID,
           "AuthorizedBy": "local", "ProviderID": None, "AuthorizationStopTokens": [],
           "SessionStart": 1800000000, "ChargingStart": 1800000005, "ChargingEnd": None,
           "MeterValueStart": 100, "MeterValueEnd": 400, "MeterValueInBetween": None,
           "MeterFault": False, "PostAuthorization": 0, "MeterOffset": 0}
    rec.update(over)
    return rec


def _old_record(**over):
    """_record as firmware before issue 14 wrote it: short keys."""
    rec = {"lid": "b3c2a1d0-1111-4222-8333-444455556666",
           "sid": "b3c2a1d0-1111-4222-8333-444455556666", "evse_id": "DE*ABC*E1*1",
           "ident": {"RFIDMifareFamilyIdentification": {"UID": UID}}, "uid": UID,
           "src": "local", "pid": None, "stop": [], "ss": 1800000000, "cs": 1800000005,
           "ce": None, "ms": 100, "me": 400, "mb": None, "mf": False, "pa": 0, "mo": 0}
    rec.update(over)
    return rec


def test_a_damaged_record_is_kept_aside_reported_once_and_its_session_billed(tmp_path):
    key = "session.b3c2a1d0-1111-4222-8333-444455556666"
    store = Store(str(tmp_path))
    # year 2200; a meter start as text
    store.put(key, _record(ChargingStart=7258118400, MeterValueStart="100"))
    shell, events, store = make_shell(tmp_path)
    shell.boot(0)
    errs = [e for e in kinds(events, "error") if e["kind"] == "restore"]
    assert len(errs) == 1 and "ChargingStart:" in errs[0]["message"] \
        and "MeterValueStart:" in errs[0]["message"]
    # the original, for inspection
    assert store.get("bad." + key)["ChargingStart"] == 7258118400
    repaired = store.get(key)["ChargingStart"]
    assert repaired is None or repaired != 7258118400  # the repair
    shell.board.meters[0].queue.append(("reading", {"energy_wh": 900}))
    run(shell, 20)
    cdrs = kinds(events, "cdr")
    assert len(cdrs) == 1 and cdrs[0]["record"]["MeteringCheck"] == "Failed"
    assert cdrs[0]["record"]["SessionID"] == "b3c2a1d0-1111-4222-8333-444455556666"
    assert not store.keys("session.")
    shell2, events2, _ = make_shell(tmp_path)  # the next boot: nothing reported again
    shell2.boot(0)
    run(shell2, 20)
    assert not [e for e in kinds(events2, "error") if e["kind"] == "restore"]
    assert not kinds(events2, "cdr")


def test_a_cut_while_a_repaired_record_waits_for_the_meter_bills_it_once(tmp_path):
    key = "session.b3c2a1d0-1111-4222-8333-444455556666"
    store = Store(str(tmp_path))
    store.put(key, _record(CPOPartnerSessionID="garbage", MeterValueEnd=-3))
    shell, events, _ = make_shell(tmp_path)
    shell.boot(0)  # repaired (lid from the key), waits for a meter reading: power cut
    assert len([e for e in kinds(events, "error") if e["kind"] == "restore"]) == 1
    shell2, events2, store2 = make_shell(tmp_path)
    shell2.boot(0)
    assert not [e for e in kinds(events2, "error") if e["kind"] == "restore"]
    shell2.board.meters[0].queue.append(("reading", {"energy_wh": 900}))
    run(shell2, 20)
    cdrs = kinds(events2, "cdr")
    assert len(cdrs) == 1
    assert cdrs[0]["record"]["CPOPartnerSessionID"] == "b3c2a1d0-1111-4222-8333-444455556666"
    assert store2.keys("session.") == []


def test_an_old_per_evse_record_moves_to_its_session_key_and_closes_once(tmp_path):
    store = Store(str(tmp_path))
    store.put("session.1", _record())
    shell, events, store = make_shell(tmp_path)
    shell.boot(0)
    assert store.keys("session.") == ["session.b3c2a1d0-1111-4222-8333-444455556666"]
    assert not kinds(events, "error") or all(e["kind"] != "restore"
                                             for e in kinds(events, "error"))
    shell.board.meters[0].queue.append(("reading", {"energy_wh": 900}))
    run(shell, 20)
    assert len(kinds(events, "cdr")) == 1 and not store.keys("session.")


@pytest.mark.parametrize("key", ["session.b3c2a1d0-1111-4222-8333-444455556666", "session.1"])
def test_a_record_of_older_firmware_is_rewritten_with_oicp_names_and_closes_once(tmp_path, key):
    store = Store(str(tmp_path))
    store.put(key, _old_record(me=450, mb=[200, 300], pa=1))
    shell, events, store = make_shell(tmp_path)
    shell.boot(0)  # migrated before the core sees it: nothing reported, nothing set aside
    assert not [e for e in kinds(events, "error") if e["kind"] == "restore"]
    new_key = "session.b3c2a1d0-1111-4222-8333-444455556666"
    assert store.keys("session.") == [new_key] and not store.keys("bad.")
    assert store.get(new_key) == _record(MeterValueEnd=450, MeterValueInBetween=[200, 300],
                                         PostAuthorization=1)
    shell2, events2, store2 = make_shell(tmp_path)  # a cut before the meter answered
    shell2.boot(0)
    assert not [e for e in kinds(events2, "error") if e["kind"] == "restore"]
    shell2.board.meters[0].queue.append(("reading", {"energy_wh": 900}))
    run(shell2, 20)
    cdrs = kinds(events2, "cdr")
    assert len(cdrs) == 1 and not store2.keys("session.")
    rec = cdrs[0]["record"]
    assert rec["SessionID"] == "b3c2a1d0-1111-4222-8333-444455556666"
    assert rec["MeterValueStart"] == 0.1 and rec["MeterValueEnd"] == 0.9
    assert rec["MeterValueInBetween"] == {"meterValues": [0.2, 0.3]}
    assert "MeteringCheck" not in rec


def test_a_record_of_no_evse_here_is_kept_aside_and_reported(tmp_path):
    store = Store(str(tmp_path))
    store.put("session.x", [1, 2])
    shell, events, store = make_shell(tmp_path)
    shell.boot(0)
    errs = [e for e in kinds(events, "error") if e["kind"] == "restore"]
    assert len(errs) == 1 and store.get("bad.session.x") == [1, 2]
    assert not store.keys("session.")
