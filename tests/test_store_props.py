"""The outbox against a plain list (hypothesis RuleBasedStateMachine, CPython).

The model is the list of (msg_id, msg) waiting, oldest first. Rules: add (new or waiting
ids, int and str), ack (waiting or not, any order), drop the oldest non-CDR, reboot, a power
cut at the n-th flash operation of an add or an ack (clean or torn), junk left in the folder.
After a cut the next boot must show exactly the list before or exactly the list after the
operation. Invariant after every step: pending() equals the model and len() its length.
Small segments (3 records) and a small limit make segment turnover, retirement, index rewrites
and OutboxFull frequent.
"""

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from firmware.store import OutboxFull, Store
from tests.mp.test_store import _CutBox

IDS = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "cdr-1", "cdr-2", 1, 2, "1", "2"])
KINDS = st.sampled_from(["cdr", "status", "notification"])
LIMIT = 8


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="mpevse_props_")
        self.model = []
        self.n = 0
        self.boot()

    def boot(self):
        _CutBox.budget = -1
        self.ob = _CutBox(Store(self.root), limit=LIMIT, segment=3)

    def teardown(self):
        _CutBox.budget = -1
        shutil.rmtree(self.root, ignore_errors=True)

    def waiting(self, msg_id):
        return [m for m in self.model if m[0] == msg_id and type(m[0]) is type(msg_id)]

    def expect_add(self, msg_id, kind):
        """-> (the model after add(msg_id, msg), whether it raises OutboxFull, msg)."""
        self.n += 1
        msg = {"type": kind, "n": self.n}
        if self.waiting(msg_id):
            return list(self.model), False, msg
        if len(self.model) >= LIMIT:
            return list(self.model), True, msg
        return self.model + [(msg_id, msg)], False, msg

    def after_ack(self, msg_id):
        return [m for m in self.model if not (m[0] == msg_id and type(m[0]) is type(msg_id))]

    @rule(msg_id=IDS, kind=KINDS)
    def add(self, msg_id, kind):
        after, full, msg = self.expect_add(msg_id, kind)
        try:
            added = self.ob.add(msg_id, msg)
        except OutboxFull:
            assert full
            return
        assert not full and added == (after != self.model)
        self.model = after

    @rule(msg_id=IDS)
    def ack(self, msg_id):
        after = self.after_ack(msg_id)
        assert self.ob.ack(msg_id) == (after != self.model)
        self.model = after

    @rule(keep=st.sampled_from(["cdr", "status"]))
    def drop_oldest(self, keep):
        victims = [m for m in self.model if m[1]["type"] != keep]
        assert self.ob.drop_oldest(keep) == (victims[0] if victims else None)
        if victims:
            self.model.remove(victims[0])

    @rule()
    def reboot(self):
        self.boot()

    def cut(self, op, after, at, torn):
        """Run op with the power going at flash operation `at`; then reboot and adopt
        whichever of before/after the flash shows (it must be one of them)."""
        _CutBox.budget = at
        _CutBox.torn = torn
        try:
            op()
        except OSError:
            self.boot()
            got = list(self.ob.pending())
            assert got == self.model or got == after, (got, self.model, after)
            self.model = got
            return
        finally:
            _CutBox.budget = -1
        self.model = after

    @rule(msg_id=IDS, kind=KINDS, at=st.integers(0, 6), torn=st.booleans())
    def cut_add(self, msg_id, kind, at, torn):
        after, full, msg = self.expect_add(msg_id, kind)
        if full:
            return
        self.cut(lambda: self.ob.add(msg_id, msg), after, at, torn)

    @rule(msg_id=IDS, at=st.integers(0, 4), torn=st.booleans())
    def cut_ack(self, msg_id, at, torn):
        self.cut(lambda: self.ob.ack(msg_id), self.after_ack(msg_id), at, torn)

    @rule(name=st.sampled_from(["s1.tmp", "h3.tmp", "zz", "a99", "s"]))
    def junk(self, name):
        with open(os.path.join(self.root, "outbox", name), "w") as f:
            f.write("junk")
        self.boot()
        assert not os.path.exists(os.path.join(self.root, "outbox", name))

    @invariant()
    def pending_is_the_model(self):
        assert list(self.ob.pending()) == self.model
        assert len(self.ob) == len(self.model)


OutboxMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40,
                                           deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestOutbox = OutboxMachine.TestCase
