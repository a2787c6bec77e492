"""Outbox.offer's full-outbox policy against its model, sequences from hypothesis (CPython):
the runner and model of tests/mp/test_outbox_policy.py (which run seeded sequences on both
interpreters). Ops: offers of Progress/Start/End notifications, CDRs and EVSE statuses (two
EVSEs), repeats, acks (durable or held in RAM), flushes, clean reboots and power cuts that
lose the acks held in RAM. Checked after every op: pending() is the model; no CDR offered and
not acknowledged is missing; offer drops the oldest Progress first, then the oldest other
non-CDR, never a CDR, and says so."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mp.test_outbox_policy import run_ops

OPS = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 1 << 16)), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_offer_policy_holds_for_any_sequence(ops):
    run_ops(ops, "policy_hyp")
