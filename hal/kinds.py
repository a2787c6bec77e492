"""The driver event kinds: every driver's `poll(now)` returns None or `(kind, data)`.

This table is for the drivers what `firmware/events.py` is for the core: the one list of what a
poll can report, with the shape of its data. `firmware.shell` maps these to core events in one
place (`Shell.on_driver`). Kinds are short strings: the build folds them into the code that
uses them (tools/constfold.py: strings of up to 10 characters are interned anyway), so this
module is never imported on the device, and a kind printed by a bench tool reads as a word.

  kind        driver                      data
  PILOT       hal.pilot.Pilot             (state "A".."F", diode_ok True/False/None)
  CONTACTOR   hal.contactor.Contactor     (verdict "open"/"closed"/"welded"/"stuck_open",
                                           late_ms int or None)
  TAP         hal.pn532, hal.rdm6300      (uid: OICP hex str, nbytes: int, the UID's length)
  GONE        hal.pn532, hal.rdm6300      uid: the hex str of the card that left
  UNUSABLE    hal.pn532                   uid_hex: a card with no OICP UID (why_unusable says
                                           why), once per presence
  FAILED      hal.pn532, hal.rdm6300      reason: str, once, when the reader stopped answering
  OK          hal.pn532, hal.rdm6300      None: the first valid answer after FAILED
  READING     hal.meters.Meter, hal.s0    {"energy_wh": int Wh, "energy_kwh": float, "power_w":
                                           float W, ...the model's other fields}
  ERROR       hal.meters.Meter,           the exception that ended the read: a ModbusError
              hal.modbus.ModbusMaster      (or, from a Meter, a MeterValueError); a Meter's
                                           `failed` says whether it counts as down
  REGISTERS   hal.modbus.ModbusMaster     tuple of register values (ints), the answer to `start`
"""

PILOT = "pilot"
CONTACTOR = "contactor"
TAP = "tap"
GONE = "gone"
UNUSABLE = "unusable"
FAILED = "failed"
OK = "ok"
READING = "reading"
ERROR = "error"
REGISTERS = "registers"
