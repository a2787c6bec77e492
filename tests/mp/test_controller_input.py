"""Controller: bad input changes nothing; local-list updates (runs on both interpreters)."""

from tests.mp.test_controller_kit import UID_A, UID_B, UID_C, Rig, of


def test_bad_input_changes_nothing():
    r = Rig(2)
    for ev in (("nope", 0, None), ("pilot", 3, ("A", False)), ("pilot", 0, ("A", False)),
               ("pilot", 1, ("G", True)), ("pilot", 1, "A"), ("card", 0, "XYZ"),
               ("card", 0, 12), ("card", 1, UID_A), ("meter", 1, -5), ("meter", 1, 1.5),
               ("pp", 1, "x"), ("contactor", 1, "half"), ("online", 0, 1),
               ("time", 0, "now"), ("local_list", 0, {"full": False, "version": 3,
                                                      "base_version": 7, "add": []}),
               ("local_list", 0, {"full": True, "version": 1, "uids": ["zz"]}),
               ("remote_start", 0, "x"), ("remote_stop", 0, None), ("reader", 0, "meh")):
        before = (r.c.outlets[0].power.state, r.c.outlets[0].session, r.c.local_list.version,
                  r.c.online)
        acts = r.step(*ev)
        assert len(acts) == 1 and acts[0][0] == "error", (ev, acts)
        assert (r.c.outlets[0].power.state, r.c.outlets[0].session, r.c.local_list.version,
                r.c.online) == before
    acts = r.c.step("not a tuple", r.now)
    assert acts[0][0] == "error"


def test_local_list_delta_and_persist():
    r = Rig()
    acts = r.step("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]})
    acts = r.step("local_list", 0, {"full": False, "version": 2, "base_version": 1,
                                    "add": [UID_B], "remove": [UID_A]})
    assert of(acts, "persist") == [("locallist", {"version": 2, "uids": [UID_B]})]
    acts = r.step("local_list", 0, {"full": False, "version": 3, "base_version": 1,
                                    "add": [UID_C]})
    assert acts[0][2][0] == "local_list" and r.c.local_list.version == 2


def test_a_clock_before_the_firmware_build_is_unknown_and_no_record_is_dated_1970():
    from firmware.controller import Controller
    from firmware.timefmt import CLOCK_FLOOR_S
    from tests.mp.test_controller_kit import T0, Ids, config

    c = Controller(config(1), Ids())
    c.step(("contactor", 1, "open"), 100)
    for bad in (0, 946684800, CLOCK_FLOOR_S - 1):  # the epoch, the ESP32's 2000-01-01
        acts = c.step(("time", 0, bad), 200)
        assert acts == [("error", 0, ("clock", "clock {} is before this firmware was built: "
                                                "kept unknown".format(bad)))]
        assert c.clock is None
    c.step(("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]}), 300)
    c.step(("meter", 1, 1000), 400)
    c.step(("pilot", 1, ("B", False)), 500)
    c.step(("card", 0, UID_A), 600)
    c.step(("pilot", 1, ("B", True)), 700)
    acts = c.step(("pilot", 1, ("C", True)), 800)
    start = [a[2] for a in acts if a[0] == "outbox" and a[2].get("Type") == "Start"][0]
    assert start["SessionStart"] is None and start["ChargingStart"] is None  # not 1970
    c.step(("time", 0, T0), 1800)  # the network clock: earlier events are dated from it
    c.step(("contactor", 1, "closed"), 1800)
    c.step(("meter", 1, 1500), 2000)
    c.step(("card_gone", 0, None), 2100)
    c.step(("card", 0, UID_A), 9000)
    acts = c.step(("pilot", 1, ("B", True)), 9100)
    cdr = [a[2] for a in acts if a[0] == "outbox" and a[2].get("type") == "cdr"][0]
    assert cdr["SessionStart"] == "2027-01-15T07:59:58.000Z"  # 1.2 s before T0, floored
    assert cdr["SessionEnd"] == "2027-01-15T08:00:07.000Z"
