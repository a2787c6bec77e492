"""Issue 16 item 1: a CDR whose energy no meter reading backs (a meter that never answered,
meter type "none") says MeteringCheck Failed instead of a silent 0.0 kWh. Both interpreters."""

from tests.mp.test_controller_kit import UID_A, Rig, outbox


def test_cdr_without_any_meter_reading_is_flagged():
    r = Rig()
    r.step("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]})
    r.step("pilot", 1, ("B", False))  # no meter reading ever arrives
    r.step("card", 0, UID_A)
    r.step("card_gone", 0, None)
    r.step("pilot", 1, ("B", True))
    r.step("pilot", 1, ("C", True))
    assert r.c.outlets[0].power.closed
    cdr = outbox(r.step("pilot", 1, ("A", None), dt=1000), "cdr")[0]
    assert cdr["MeteringCheck"] == "Failed" and cdr["ConsumedEnergy"] == 0.0, cdr


def test_cdr_with_readings_is_not_flagged():
    r = Rig()
    r.plug_and_charge()
    r.step("meter", 1, 1500)
    cdr = outbox(r.step("pilot", 1, ("A", None), dt=1000), "cdr")[0]
    assert "MeteringCheck" not in cdr and cdr["ConsumedEnergy"] == 0.5, cdr
