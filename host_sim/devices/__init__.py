"""Virtual devices for the host simulator: each speaks its real wire protocol byte for byte.

Every device is a byte-in/byte-out object driven by the caller's clock (float seconds):

    feed(data, now)      bytes the firmware wrote
    pending(now)         bytes the device sends at `now` (b"" if none)
    next_event(now)      absolute time of the next thing it will do by itself, or None
    status()             small dict snapshot for the simulator's `status` command

so they can be unit-tested without ptys and serviced by `host_sim.devices.hub.Hub`.
Facts come from ../shared/reference/hardware.md (§1 PN532, §2 RDM6300, §3 Modbus/Eastron,
§4 control pilot, §5 contactor), not from the firmware's drivers.
"""
