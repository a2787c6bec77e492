"""Controller: meter and contactor faults, progress notifications, restore at boot,
wall clock and tick wrap (runs on both interpreters; see test_controller_kit)."""


from tests.mp.test_controller_kit import (
    UID_A,
    Rig,
    of,
    outbox,
)


def test_meter_fault_policies():
    r = Rig()
    r.plug_and_charge()
    acts = r.step("meter_fault", 1, "timeout")
    assert ("error", 1, ("meter", "meter failed: timeout")) in acts
    assert ("pwm", 1, 1000) in acts and ("status", 1, "OutOfService") in acts
    r.step("pilot", 1, ("B", True))
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_A, dt=3000)
    assert not of(acts, "session_start")  # no new session while the meter is down
    assert of(r.step("meter_ok", 1, None), "status") == ["Occupied"]

    r = Rig(meter_failure="continue")
    r.plug_and_charge()
    r.step("meter", 1, 1500)
    acts = r.step("meter_fault", 1, "crc")
    assert r.c.outlets[0].power.closed and of(acts, "persist")
    r.step("card_gone", 0, None)
    r.step("card", 0, UID_A, dt=3000)
    cdr = outbox(r.step("pilot", 1, ("B", True)), "cdr")[0]
    assert cdr["MeteringCheck"] == "Failed" and cdr["ConsumedEnergy"] == 0.5


def test_meter_register_falling_back_is_rebased_once_and_flagged():
    r = Rig()
    r.step("meter", 1, 500)
    acts = r.step("meter", 1, 400)  # no session: the new register is simply the base
    assert acts[0][0] == "error" and r.c.outlets[0].meter == 400
    r = Rig()
    r.plug_and_charge()  # meter 1000 Wh at the start
    r.step("meter", 1, 1234500)  # 1233.5 kWh charged (a meter that read 1234.5 kWh)
    acts = r.step("meter", 1, 0)  # the register drops to 0: meter swapped or reset
    assert of(acts, "error") == [("meter", "meter register fell back from 1234500 to 0 Wh: "
                                            "re-based")]
    assert of(acts, "persist")  # the flag and the offset are on flash
    assert not of(r.step("meter", 1, 100), "error")  # one error per drop, not per reading
    acts = r.step("meter", 1, 700)
    r.step("card_gone", 0, None)
    acts = r.step("card", 0, UID_A, dt=3000)
    cdr = outbox(r.step("pilot", 1, ("B", True)), "cdr")[0]
    assert cdr["ConsumedEnergy"] == 1234.2  # 1233.5 before the drop + 0.7 after
    assert cdr["MeteringCheck"] == "Failed" and cdr["MeterValueStart"] == 1.0
    assert cdr["MeterValueEnd"] == 1235.2  # End - Start == ConsumedEnergy
    r.step("card_gone", 0, None)
    r.step("pilot", 1, ("A", None))
    r.step("meter", 1, 700, dt=5000)  # past the card guard time and the 5 s PWM rule
    acts = r.plug_and_charge()  # the next session measures from the new register
    r.step("meter", 1, 1700)
    r.step("card_gone", 0, None)
    r.step("card", 0, UID_A, dt=3000)
    cdr = outbox(r.step("pilot", 1, ("B", True)), "cdr")[0]
    assert cdr["ConsumedEnergy"] == 0.7 and "MeteringCheck" not in cdr  # 1000 -> 1700 Wh


def test_welded_out_of_service_until_clear():
    r = Rig()
    r.plug_and_charge()
    acts = r.step("contactor", 1, "welded")
    assert ("status", 1, "OutOfService") in acts and ("pwm", 1, 0) in acts
    assert outbox(acts, "notification", "Error")[0]["ErrorType"] == "CriticalError"
    assert len(outbox(acts, "cdr")) == 1
    r.step("pilot", 1, ("A", False))
    assert r.c.outlets[0].power.state == "out_of_service"
    acts = r.step("clear", 1, None)
    assert ("contactor", 1, False) in acts and ("status", 1, "Available") in acts
    assert of(r.step("clear", 1, None), "error")  # nothing to clear
