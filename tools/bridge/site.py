"""The site file (`--site FILE`): what Hubject's EVSE map needs and the charge points cannot
say (fact sheet §7; Hubject's EvseDataRecord, OpenAPI `schemas/EvseDataRecord.yaml`). JSON the
operator edits:

    {"OperatorName": "...",                    (mandatory in OperatorEvseData, <= 100)
     "defaults": {FIELDS},                      (every EVSE)
     "charge_points": {"<cp_id>": {FIELDS}},    (that charge point's EVSEs)
     "evses": {"<EvseID>": {FIELDS}}}           (one EVSE)

FIELDS are EvseDataRecord members with Hubject's names (EvseID excepted: it comes from the
charge point's birth), merged member by member: defaults, then the charge point's, then the
EVSE's. Mandatory (OpenAPI `required`): ChargingStationNames, Address (Country alpha-3, City,
Street, PostalCode, HouseNum), GeoCoordinates (Google, DecimalDegree or DegreeMinuteSeconds),
Plugs, ChargingFacilities (PowerType, Power kW), RenewableEnergy, CalibrationLawDataAvailability,
AuthenticationModes, PaymentOptions, ValueAddedServices, Accessibility, HotlinePhoneNumber,
IsOpen24Hours (false needs OpeningTimes), IsHubjectCompatible, DynamicInfoAvailable. One more
member is the bridge's own: `time_zone`, an IANA name (`Europe/Berlin`) for the timestamps of
that charge point's CDRs and notifications (tools/bridge/messages.py); without it Address's
TimeZone (`UTC+01:00`), else UTC.

`load(path, operator_id)` checks the whole file at start-up: every member's type, enum, pattern
and length, unknown members (a typo is not silently dropped), EvseIDs under the OperatorID,
and that defaults + each charge point's entry hold every mandatory member; SiteError names the
field (`charge_points.CP-A.Address.Country: ...`) and the bridge exits 2.
"""

from __future__ import annotations

import datetime
import json
import re

from tools.bridge import messages, oicp

REQUIRED = ("ChargingStationNames", "Address", "GeoCoordinates", "Plugs", "ChargingFacilities",
            "RenewableEnergy", "CalibrationLawDataAvailability", "AuthenticationModes",
            "PaymentOptions", "ValueAddedServices", "Accessibility", "HotlinePhoneNumber",
            "IsOpen24Hours", "IsHubjectCompatible", "DynamicInfoAvailable")
PLUGS = ("Small Paddle Inductive", "Large Paddle Inductive", "AVCON Connector",
         "Tesla Connector", "NEMA 5-20", "Type E French Standard", "Type F Schuko",
         "Type G British Standard", "Type J Swiss Standard",
         "Type 1 Connector (Cable Attached)", "Type 2 Outlet",
         "Type 2 Connector (Cable Attached)", "Type 3 Outlet", "IEC 60309 Single Phase",
         "IEC 60309 Three Phase", "CCS Combo 2 Plug (Cable Attached)",
         "CCS Combo 1 Plug (Cable Attached)", "CHAdeMO")
AUTH_MODES = ("NFC RFID Classic", "NFC RFID DESFire", "PnC", "REMOTE", "Direct Payment",
              "No Authentication Required")
PAYMENT = ("No Payment", "Direct", "Contract")
VAS = ("Reservation", "DynamicPricing", "ParkingSensors", "MaximumPowerCharging",
       "PredictiveChargePointUsage", "ChargingPlans", "RoofProvided", "None")
ACCESSIBILITY = ("Free publicly accessible", "Restricted access", "Paying publicly accessible",
                 "Test Station")
LOCATIONS = ("OnStreet", "ParkingLot", "ParkingGarage", "UndergroundParkingGarage")
ENERGY = ("Solar", "Wind", "HydroPower", "GeothermalEnergy", "Biomass", "Coal",
          "NuclearEnergy", "Petroleum", "NaturalGas")
DAYS = ("Everyday", "Workdays", "Weekend", "Monday", "Tuesday", "Wednesday", "Thursday",
        "Friday", "Saturday", "Sunday")
LANG_RE = r"^[a-z]{2,3}(?:-[A-Z]{2,3}(?:-[a-zA-Z]{4})?)?(?:-x-[a-zA-Z0-9]{1,8})?$"
DEG_RE = r"^-?1?\d{1,2}\.\d{1,6}$"
GOOGLE_RE = r"^-?1?\d{1,2}\.\d{1,6}\s*\,?\s*-?1?\d{1,2}\.\d{1,6}$"
DMS_RE = r"^-?1?\d{1,2}°[ ]?\d{1,2}'[ ]?\d{1,2}\.\d+''$"
PHONE_RE = r"^\+[0-9]{5,15}$"
HHMM_RE = r"^[0-2][0-9]:[0-5][0-9]$"


class SiteError(ValueError):
    """A wrong site file; the text starts with the field's path."""


def _fail(path: str, why: str):
    raise SiteError("{}: {}".format(path, why))


# -- small checkers: each (value, path) -> None or SiteError -------------------------------------
def _text(limit: int, minimum: int = 0, pattern: str | None = None):
    def check(v, path):
        if not isinstance(v, str) or not minimum <= len(v) <= limit:
            _fail(path, "need a string of {}..{} characters".format(minimum, limit))
        if pattern and not re.match(pattern, v):
            _fail(path, "{!r} does not match {}".format(v, pattern))
    return check


def _enum(values):
    def check(v, path):
        if v not in values:
            _fail(path, "{!r} is not one of: {}".format(v, ", ".join(values)))
    return check


def _bool(v, path):
    if not isinstance(v, bool):
        _fail(path, "need true or false")


def _int(lo: int, hi: int):
    def check(v, path):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            _fail(path, "need an integer {}..{}".format(lo, hi))
    return check


def _number(v, path):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _fail(path, "need a number")


def _list(item, min_items: int = 0):
    def check(v, path):
        if not isinstance(v, list) or len(v) < min_items:
            _fail(path, "need a list of at least {} item(s)".format(min_items))
        for i, x in enumerate(v):
            item(x, "{}[{}]".format(path, i))
    return check


def _object(fields: dict, required=()):
    def check(v, path):
        if not isinstance(v, dict):
            _fail(path, "need an object")
        for k in required:
            if k not in v:
                _fail(path + "." + k, "missing (mandatory)")
        for k, x in v.items():
            if k not in fields:
                _fail(path + "." + k, "unknown member (known: {})".format(", ".join(fields)))
            fields[k](x, path + "." + k)
    return check


_INFO = _object({"lang": _text(10, 2, LANG_RE), "value": _text(150, 1)}, ("lang", "value"))
_GEO_PARTS = {
    "Google": _object({"Coordinates": _text(40, 3, GOOGLE_RE)}, ("Coordinates",)),
    "DecimalDegree": _object({"Longitude": _text(12, 3, DEG_RE),
                              "Latitude": _text(12, 3, DEG_RE)}, ("Longitude", "Latitude")),
    "DegreeMinuteSeconds": _object({"Longitude": _text(30, 5, DMS_RE),
                                    "Latitude": _text(30, 5, DMS_RE)},
                                   ("Longitude", "Latitude")),
}


def _geo(v, path):
    _object(_GEO_PARTS)(v, path)
    if len(v) != 1:
        _fail(path, "need exactly one of Google, DecimalDegree, DegreeMinuteSeconds")


def _payment(v, path):
    _list(_enum(PAYMENT), 1)(v, path)
    if "No Payment" in v and len(v) > 1:
        _fail(path, "'No Payment' can not be combined with other payment options")


def _calibration(v, path):
    _enum(("Local", "External", "Not Available"))(v, path)
    if v == "External":
        _fail(path, "External needs SignedMeteringValues in every CDR (§6), which these "
                    "charge points do not produce: use Local or Not Available")


def _zone(v, path):
    if not isinstance(v, str):
        _fail(path, "need an IANA time zone name, e.g. Europe/Berlin")
    try:
        messages.parse_zone(v)
    except ValueError as e:
        _fail(path, str(e))


def _operator(v, path):
    if not isinstance(v, str) or not oicp.OPERATOR_RE.match(v):
        _fail(path, "not an OperatorIDType")


FIELDS = {
    "ChargingStationNames": _list(_INFO, 1),
    "Address": _object({
        "Country": _text(3, 3, r"^[A-Z]{3}$"), "City": _text(50, 1), "Street": _text(100, 2),
        "PostalCode": _text(10, 1), "HouseNum": _text(10, 1), "Floor": _text(5),
        "Region": _text(50), "ParkingFacility": _bool, "ParkingSpot": _text(5),
        "TimeZone": _text(9, 9, r"^UTC[+-][0-9]{2}:[0-9]{2}$")},
        ("Country", "City", "Street", "PostalCode", "HouseNum")),
    "GeoCoordinates": _geo,
    "Plugs": _list(_enum(PLUGS), 1),
    "ChargingFacilities": _list(_object({
        "PowerType": _enum(("AC_1_PHASE", "AC_3_PHASE", "DC")), "Power": _int(0, 999),
        "Voltage": _int(0, 999), "Amperage": _int(0, 99),
        "ChargingModes": _list(_enum(("Mode_1", "Mode_2", "Mode_3", "Mode_4", "CHAdeMO")))},
        ("PowerType", "Power")), 1),
    "RenewableEnergy": _bool,
    "CalibrationLawDataAvailability": _calibration,
    "AuthenticationModes": _list(_enum(AUTH_MODES), 1),
    "PaymentOptions": _payment,
    "ValueAddedServices": _list(_enum(VAS), 1),
    "Accessibility": _enum(ACCESSIBILITY),
    "HotlinePhoneNumber": _text(16, 6, PHONE_RE),
    "IsOpen24Hours": _bool,
    "IsHubjectCompatible": _bool,
    "DynamicInfoAvailable": _enum(("true", "false", "auto")),
    # optional members
    "ChargingPoolID": _text(100, 1),
    "ChargingStationId": _text(50, 1),
    "HardwareManufacturer": _text(50, 1),
    "ChargingStationImage": _text(200, 1),
    "SubOperatorName": _text(100, 1),
    "DynamicPowerLevel": _bool,
    "EnergySource": _list(_object({"Energy": _enum(ENERGY), "Percentage": _int(0, 99)})),
    "EnvironmentalImpact": _object({"CO2Emission": _number, "NuclearWaste": _number}),
    "MaxCapacity": _int(0, 100000),
    "AccessibilityLocation": _enum(LOCATIONS),
    "AdditionalInfo": _list(_INFO),
    "ChargingStationLocationReference": _list(_INFO),
    "GeoChargingPointEntrance": _geo,
    "OpeningTimes": _list(_object({
        "Period": _list(_object({"begin": _text(5, 5, HHMM_RE), "end": _text(5, 5, HHMM_RE)},
                                ("begin", "end")), 1),
        "on": _enum(DAYS)}, ("Period", "on")), 1),
    "HubOperatorID": _operator,
    "ClearinghouseID": _text(20, 1),
    "time_zone": _zone,  # the bridge's own (module docstring), never sent
}
BRIDGE_ONLY = ("time_zone",)


def check_fields(entry: object, path: str) -> dict:
    """Every member of one defaults/charge point/EVSE entry; the entry, or SiteError."""
    if not isinstance(entry, dict):
        _fail(path, "need an object of EvseDataRecord members")
    for k, v in entry.items():
        if k not in FIELDS:
            if k == "EvseID":
                _fail(path + "." + k, "comes from the charge point's birth, not the site file")
            _fail(path + "." + k, "unknown EvseDataRecord member (check the spelling)")
        FIELDS[k](v, path + "." + k)
    return entry


def complete(merged: dict, path: str) -> None:
    """SiteError naming the first mandatory member missing from a merged record."""
    for k in REQUIRED:
        if k not in merged:
            _fail(path + "." + k, "missing: a mandatory EvseDataRecord member (§7), neither "
                                  "here nor in defaults")
    if merged["IsOpen24Hours"] is False and not merged.get("OpeningTimes"):
        _fail(path + ".OpeningTimes", "mandatory when IsOpen24Hours is false")


class Site:
    def __init__(self, operator_name: str, defaults: dict, charge_points: dict, evses: dict):
        self.operator_name = operator_name
        self.defaults = defaults
        self.charge_points = charge_points
        self.evses = {k.upper(): v for k, v in evses.items()}

    def merged(self, cp: str, evse_id: str | None = None) -> dict:
        out = dict(self.defaults)
        out.update(self.charge_points.get(cp, {}))
        if evse_id is not None:
            out.update(self.evses.get(evse_id.upper(), {}))
        return out

    def record(self, cp: str, evse_id: str) -> dict:
        """The EvseDataRecord of `evse_id` (upper case) of charge point `cp`; SiteError naming
        the mandatory member missing for it."""
        merged = self.merged(cp, evse_id)
        complete(merged, "EVSE {} of {}".format(evse_id, cp))
        rec = {"EvseID": evse_id.upper()}
        rec.update((k, v) for k, v in merged.items() if k not in BRIDGE_ONLY)
        return rec

    def zone(self, cp: str, evse_id: str | None = None) -> datetime.tzinfo:
        """The time zone of that charge point's (EVSE's) timestamps (module docstring)."""
        merged = self.merged(cp, evse_id)
        name = merged.get("time_zone") or (merged.get("Address") or {}).get("TimeZone")
        return messages.parse_zone(name) if name else datetime.timezone.utc


def parse(data: object, operator_id: str, name: str = "site") -> Site:
    """A checked Site from the decoded file; SiteError naming the field."""
    if not isinstance(data, dict):
        _fail(name, "need a JSON object")
    for k in data:
        if k not in ("OperatorName", "defaults", "charge_points", "evses"):
            _fail(name + "." + k, "unknown (known: OperatorName, defaults, charge_points, "
                                  "evses)")
    _text(100, 1)(data.get("OperatorName"), name + ".OperatorName")
    defaults = check_fields(data.get("defaults", {}), name + ".defaults")
    cps = data.get("charge_points", {})
    evses = data.get("evses", {})
    for key, group in (("charge_points", cps), ("evses", evses)):
        if not isinstance(group, dict):
            _fail(name + "." + key, "need an object keyed by " + (
                "cp_id" if key == "charge_points" else "EvseID"))
    for cp, entry in cps.items():
        check_fields(entry, "{}.charge_points.{}".format(name, cp))
        merged = dict(defaults)
        merged.update(entry)
        complete(merged, "{}.charge_points.{}".format(name, cp))
    for evse, entry in evses.items():
        try:
            oicp.check_evse(evse, operator_id)
        except oicp.Unusable as e:
            _fail("{}.evses.{}".format(name, evse), str(e))
        check_fields(entry, "{}.evses.{}".format(name, evse))
    if not cps:  # nothing per charge point: the defaults alone must make a record
        complete(defaults, name + ".defaults")
    return Site(data["OperatorName"], defaults, cps, evses)


def load(path: str, operator_id: str) -> Site:
    """Read and check the site file; SiteError (with the file's name) for anything wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise SiteError("site file {}: {}".format(path, e)) from None
    try:
        return parse(data, operator_id)
    except SiteError as e:
        raise SiteError("site file {}: {}".format(path, e)) from None
