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
        before = (r.c.evses[0].state, r.c.sessions[0], r.c.local_list.version, r.c.online)
        acts = r.step(*ev)
        assert len(acts) == 1 and acts[0][0] == "error", (ev, acts)
        assert (r.c.evses[0].state, r.c.sessions[0], r.c.local_list.version,
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
