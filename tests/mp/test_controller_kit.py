"""Shared rig for the core tests (runs on CPython and MicroPython; no test functions here).

`Rig` feeds events with an advancing `now`, keeps every action, and can confirm contactor
commands the way the contactor driver would (`auto=True`).
"""

from firmware.controller import Controller

UID_A = "04A1B2C3"
UID_B = "04D5E6F7"
UID_C = "0411223344556677"[:14]
SID_1 = "b3c2a1d0-1111-4222-8333-444455556666"
SID_2 = "c3c2a1d0-1111-4222-8333-444455556666"
EVSE_IDS = ("DE*ABC*E1", "DE*ABC*E2", "DE*ABC*E3", "DE*ABC*E4")
T0 = 1800000000  # 2027-01-15: after timefmt.CLOCK_FLOOR_S


def config(n=1, **over):
    """A configuration as firmware.config.load returns it (documented keys only)."""
    c = {"cp_id": "cp1",
         "evses": [{"evse_id": EVSE_IDS[i], "max_current_a": 16, "phases": 3,
                    "cable": "tethered"} for i in range(n)],
         "offline_policy": "local_only", "connection_timeout_s": 60, "auth_timeout_s": 10,
         "auth_cache": {"size": 100, "ttl_s": 86400}, "meter_failure": "stop",
         "remote_start_rfid_window_s": 900, "progress_interval_s": 900, "stop_grace_s": 6,
         "mains_voltage_v": 230}
    for k, v in over.items():
        c[k] = v
    return c


class Ids:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return "{:08x}-0000-4000-8000-{:012x}".format(self.n, self.n)


class Rig:
    def __init__(self, n=1, start=1000, auto=True, **over):
        self.c = Controller(config(n, **over), Ids())
        self.now = start
        self.auto = auto
        self.log = []
        self.step("time", 0, T0)
        for i in range(n):
            self.step("contactor", i + 1, "open")

    def step(self, kind, evse=0, data=None, dt=100):
        self.now = (self.now + dt) & ((1 << 30) - 1)
        acts = self.c.step((kind, evse, data), self.now)
        self.log.extend(acts)
        if self.auto:
            for a in acts:
                if a[0] == "contactor":
                    more = self.c.step(("contactor", a[1], "closed" if a[2] else "open"),
                                       self.now)
                    self.log.extend(more)
                    acts = acts + more
        return acts

    def run(self, seq):
        out = []
        for ev in seq:
            out.extend(self.step(*ev))
        return out

    def plug_and_charge(self, evse=1, uid=UID_A):
        """Local-list card, EV plugged, diode seen, EV requests C: contactor closes."""
        self.step("local_list", 0, {"full": True, "version": 1, "uids": [uid]})
        self.step("meter", evse, 1000)
        self.step("pilot", evse, ("B", False))
        self.step("card", 0, uid)
        self.step("card_gone", 0, None)
        self.step("pilot", evse, ("B", True))
        return self.step("pilot", evse, ("C", True))

    def idle(self, ms):
        """Advance time, sending ticks at every deadline on the way (as the shell would)."""
        from hal.compat import ticks_diff
        end = (self.now + ms) & ((1 << 30) - 1)
        out = []
        while True:
            d = self.c.next_deadline()
            if d is None or ticks_diff(end, d) < 0:
                break
            self.now = d
            out.extend(self.step("tick", 0, None, dt=0))
        self.now = end
        return out


def of(actions, kind, evse=None):
    return [a[2] for a in actions if a[0] == kind and (evse is None or a[1] == evse)]


def outbox(actions, typ, sub=None):
    return [m for m in of(actions, "outbox")
            if m["type"] == typ and (sub is None or m.get("Type") == sub)]


AUTHORIZED = {"AuthorizationStatus": "Authorized", "StatusCode": {"Code": "000"},
              "SessionID": SID_1, "ProviderID": "DE*ICE"}


def reply(req, **over):
    """A positive backend answer to request `req`, with fields overridden by `over`."""
    r = {"id": req["id"]}
    r.update(AUTHORIZED)
    r.update(over)
    return r


def sent(actions, typ="authorize_start"):
    """The uplink requests of type `typ` among `actions`."""
    return [m for m in of(actions, "send") if m["type"] == typ]
