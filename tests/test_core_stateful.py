"""Random event sequences against the charging core (hypothesis RuleBasedStateMachine).

A simulated contactor driver confirms commands (or reports a weld/stuck-open when told to).
Invariants after every step: the contactor is never commanded or left closed unless
authorized AND pilot C/D AND diode OK AND no fault; C->B opens in the same step; every session
that closed the contactor ends with exactly one CDR whose ConsumedEnergy = MeterValueEnd -
MeterValueStart >= 0; `step` never raises (an internal error would show as an "internal" error
action, which fails the test).
"""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from firmware.charging import P_AUTHORIZED, P_STOPPING
from firmware.controller import Controller
from tests.mp.test_controller_kit import SID_1, UID_A, UID_B, Ids, config

UIDS = (UID_A, UID_B, "04ABCDEF", "zz", "04A1B2C3D4E5F6")
N = 2


class CoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.c = Controller(config(N, offline_policy="local_and_cache"), Ids())
        self.now = (1 << 30) - 20000  # cross the CPython-emulated tick wrap early on
        self.closed = [False] * N
        self.meter = [0] * N
        self.cdrs = {}
        self.charged = set()
        self.requests = []
        self.feed(("time", 0, 1800000000))
        self.feed(("local_list", 0, {"full": True, "version": 1, "uids": [UID_A]}))
        for i in range(N):
            self.feed(("contactor", i + 1, "open"))

    def feed(self, ev, dt=50):
        self.now = (self.now + dt) & ((1 << 30) - 1)
        pilot_before = [o.power.pilot for o in self.c.outlets]
        acts = self.c.step(ev, self.now)
        self.check(acts)
        if (ev[0] == "pilot" and 1 <= ev[1] <= N and ev[2][0] not in "CD"
                and pilot_before[ev[1] - 1] in "CD"):
            assert not self.c.outlets[ev[1] - 1].power.closed, "C->B/A must open in the same step"
        for a in acts:
            if a[0] == "contactor":
                self.closed[a[1] - 1] = a[2]
                self.feed(("contactor", a[1], "closed" if a[2] else "open"), dt=0)
        return acts

    def check(self, acts):
        for a in acts:
            assert not (a[0] == "error" and a[2][0] == "internal"), a
            if a[0] == "contactor" and a[2]:
                ev = self.c.outlets[a[1] - 1].power
                assert ev.phase == P_AUTHORIZED and ev.pilot in "CD" and ev.diode
                assert not ev.faults and not ev.oos
                self.charged.add(self.c.outlets[a[1] - 1].session.local_id)
            if a[0] == "outbox" and a[2]["type"] == "cdr":
                m = a[2]
                lid = m["CPOPartnerSessionID"]
                assert lid not in self.cdrs, "second CDR for " + lid
                self.cdrs[lid] = m
                e = m["ConsumedEnergy"]
                assert e >= 0
                if "MeterValueStart" in m:
                    assert round(e * 1000) == round(m["MeterValueEnd"] * 1000) - round(
                        m["MeterValueStart"] * 1000)
            if a[0] == "send":
                self.requests.append(a[2])

    @invariant()
    def contactor_only_when_allowed(self):
        for ev in (o.power for o in self.c.outlets):
            if ev.closed:
                assert ev.phase in (P_AUTHORIZED, P_STOPPING) and ev.pilot in "CD"
                assert not ev.faults and not ev.oos

    @invariant()
    def every_charged_session_that_ended_has_its_cdr(self):
        live = {o.session.local_id for o in self.c.outlets if o.session is not None}
        for lid in self.charged - live:
            assert lid in self.cdrs, lid

    @rule(i=st.integers(1, N), state=st.sampled_from("AABBCCDEF"), diode=st.booleans())
    def pilot(self, i, state, diode):
        self.feed(("pilot", i, (state, diode)))

    @rule(uid=st.sampled_from(UIDS))
    def card(self, uid):
        self.feed(("card", 0, uid))
        self.feed(("card_gone", 0, None))

    @rule(i=st.integers(1, N), wh=st.integers(0, 5000))
    def meter(self, i, wh):
        self.meter[i - 1] += wh
        self.feed(("meter", i, self.meter[i - 1]))

    @rule(i=st.integers(1, N), kind=st.sampled_from(("meter_fault", "meter_ok", "clear")))
    def evse_misc(self, i, kind):
        self.feed((kind, i, "x" if kind == "meter_fault" else None))

    @rule(i=st.integers(1, N), s=st.sampled_from(("welded", "stuck_open", "closed", "open")))
    def contactor_fault(self, i, s):
        self.feed(("contactor", i, s))

    @rule(up=st.booleans())
    def online(self, up):
        self.feed(("online", 0, up))

    @precondition(lambda self: self.requests)
    @rule(ok=st.booleans(), malformed=st.booleans())
    def answer(self, ok, malformed):
        req = self.requests.pop(0)
        if malformed:
            self.feed(("auth", 0, {"id": req["id"], "AuthorizationStatus": "Perhaps"}))
            return
        self.feed(("auth", 0, {"id": req["id"], "StatusCode": {"Code": "000" if ok else "102"},
                               "AuthorizationStatus": "Authorized" if ok else "NotAuthorized",
                               "SessionID": SID_1}))

    @rule(evse=st.sampled_from((None, "DE*ABC*E1", "DE*ABC*E2", "DE*X*E9")),
          n=st.integers(0, 3))
    def remote_start(self, evse, n):
        sid = "{:08x}-1111-4222-8333-444455556666".format(n)
        self.feed(("remote_start", 0, {"id": "r", "EvseID": evse, "SessionID": sid,
                                       "Identification": {"RFIDMifareFamilyIdentification":
                                                          {"UID": UID_B}}}))

    @rule(n=st.integers(0, 3))
    def remote_stop(self, n):
        sid = "{:08x}-1111-4222-8333-444455556666".format(n)
        self.feed(("remote_stop", 0, {"id": "s", "SessionID": sid}))

    @rule(ms=st.sampled_from((100, 1000, 5000, 6000, 10000, 60000, 300000)))
    def wait(self, ms):
        end = (self.now + ms) & ((1 << 30) - 1)
        from hal.compat import ticks_diff
        for _ in range(50):
            d = self.c.next_deadline()
            if d is None or ticks_diff(end, d) < 0:
                break
            self.now = d
            self.feed(("tick", 0, None), dt=0)
        self.now = end

    @rule(junk=st.sampled_from((("nope", 0, 1), ("pilot", 9, ("A", True)), ("card", 0, 5),
                                ("auth", 0, None), ("restore", 1, {"lid": 3}), "x")))
    def junk(self, junk):
        self.feed(junk)


CoreMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=40,
                                         deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestCore = CoreMachine.TestCase
