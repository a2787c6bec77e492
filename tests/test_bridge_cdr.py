"""The durable-message mapping (tools/bridge/messages.py) as pure functions, with hypothesis:
records built by firmware/session.py itself become OICP bodies that the Hubject simulator's rules
(host_sim.hubject.schemas.problems) and Hubject's OpenAPI (tests/oicp_spec.py) accept, with kWh
to 3 decimals, ConsumedEnergy = MeterValueEnd - MeterValueStart, and timestamps naming the same
instant in the charge point's zone (fact sheet §3, §5, §6, §12.12-13).
"""

from __future__ import annotations

import datetime
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.session import Session, rfid_ident
from host_sim.hubject import schemas, server
from tests import oicp_spec
from tools.bridge import messages as M
from tools.bridge import oicp

OP = "DE*SIM"
EVSE = "DE*SIM*E0001*1"
NOW = 1_800_000_000  # 2027-01-15, after the firmware's clock floor
ZONES = ["Europe/Berlin", "UTC+05:30", "America/New_York", "UTC-03:00"]


def _session(start, minutes, wh_start, wh, zone_offset=0):
    s = Session(str(uuid.uuid4()), EVSE, rfid_ident("04A2B3C4D5E6F7"), "04A2B3C4D5E6F7", "t")
    s.session_id = str(uuid.uuid4())
    s.session_start, s.charging_start = start, start + 30
    s.charging_end = start + 30 + minutes * 60
    s.meter_start, s.meter_end = wh_start, wh_start + wh
    return s


sessions = st.builds(_session, st.integers(NOW - 86400 * 30, NOW - 40_000),
                     st.integers(1, 600), st.integers(0, 10**9), st.integers(0, 999_999))


@settings(max_examples=60, deadline=None)
@given(s=sessions, zone=st.sampled_from(ZONES))
def test_cdr_body_is_valid_and_exact(s, zone):
    oicp_spec.require_spec()
    cdr = s.end_records(s.charging_end + 10)[1]
    now = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc)
    body = M.cdr_body(cdr, OP, M.parse_zone(zone), now)
    assert schemas.problems("eRoamingChargeDetailRecord", body, path_operator_id=OP) == []
    oicp_spec.assert_valid("ChargeDetailRecord", body)
    assert body["SessionID"] == s.session_id and body["CPOPartnerSessionID"] == s.local_id
    for key in ("ConsumedEnergy", "MeterValueStart", "MeterValueEnd"):
        assert schemas.decimals(body[key]) <= 3
    assert abs(body["MeterValueEnd"] - body["MeterValueStart"] - body["ConsumedEnergy"]) \
        <= server.ENERGY_TOLERANCE_KWH
    for key in ("SessionStart", "ChargingStart", "ChargingEnd", "SessionEnd"):
        assert not body[key].endswith("Z")
        assert datetime.datetime.fromisoformat(body[key]) == \
            datetime.datetime.fromisoformat(cdr[key].replace("Z", "+00:00"))


@settings(max_examples=40, deadline=None)
@given(s=sessions, zone=st.sampled_from(ZONES))
def test_notifications_are_valid(s, zone):
    oicp_spec.require_spec()
    tz = M.parse_zone(zone)
    msgs = [s.start_notification(), s.progress_notification(s.charging_start + 300, 300_000),
            s.error_notification(True, "contactor welded"), s.end_records(s.charging_end)[0]]
    for msg in msgs:
        body = M.notification_body(msg, OP, tz)
        assert body["OperatorID"] == OP and body["Type"] == msg["Type"]
        assert schemas.problems("eRoamingChargingNotification", body) == [], body
        oicp_spec.assert_valid("ChargingNotifications", body)


def test_local_sessions_are_not_hubjects():
    s = _session(NOW - 3600, 10, 0, 1000)
    assert M.is_hubject_session(s.end_records(NOW - 60)[1])
    s.session_id = s.local_id
    assert not M.is_hubject_session(s.end_records(NOW - 60)[1])


@pytest.mark.parametrize("change,reason", [
    ({"SessionEnd": "2027-01-15T09:00:00.000Z"}, "in the future"),
    ({"ConsumedEnergy": 1000.5, "MeterValueEnd": 1000.5, "MeterValueStart": 0}, "probably Wh"),
    ({"ChargingStart": None}, "ChargingStart: unknown"),
    ({"EvseID": "DE*XYZ*E1"}, "not under OperatorID"),
])
def test_cdr_pre_send_checks(change, reason):
    s = _session(NOW - 3600, 10, 0, 1000)
    cdr = s.end_records(NOW - 60)[1]
    cdr.update(change)
    now = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc)
    with pytest.raises(oicp.Unusable, match=reason):
        M.cdr_body(cdr, OP, datetime.timezone.utc, now)


def test_metering_check_goes_into_calibration_info():
    s = _session(NOW - 3600, 10, 0, 1000)
    s.meter_fault = True
    now = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc)
    body = M.cdr_body(s.end_records(NOW - 60)[1], OP, datetime.timezone.utc, now)
    assert body["CalibrationLawVerificationInfo"] == {"MeteringCheck": "Failed"}
    assert "MeteringCheck" not in body and "ProviderID" not in body
