"""The outbox against a plain list (hypothesis RuleBasedStateMachine, CPython).

The model is the list of (msg_id, msg) waiting, oldest first, and the list of those
acknowledged in RAM only (ack(durable=False): a power cut may bring them back). Rules: add (new
or waiting ids, int and str; with the index entry now or deferred), ack (waiting or not, any
order; durable or held), flush, drop the oldest non-CDR, reboot (a power cut at rest), a power
cut at the n-th flash operation of an add, an ack or a flush (clean or torn), junk left in the
folder. After a reboot the waiting messages must be exactly the model's (before or after the
cut operation) plus any of the held ones, in the order added -- never fewer. Invariant after
every step: pending() equals the model and len() its length.
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
        self.held = []  # acknowledged in RAM only
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

    def adopt(self, got, before, after):
        """After a reboot: `got` (pending) must be `before` or `after` plus held messages,
        in the order added; it becomes the model."""
        held = [m[1]["n"] for m in self.held]
        rest = [m for m in got if m[1]["n"] not in held]
        base = [m for m in before if m[1]["n"] not in held]
        alt = [m for m in after if m[1]["n"] not in held]
        assert rest == base or rest == alt, (got, before, after, self.held)
        ns = [m[1]["n"] for m in got]
        assert ns == sorted(ns), ns
        self.model = got
        self.held = []

    def take(self, msg_id, durable):
        """The model after acknowledging msg_id: with two waiting (a held ack undone by a
        cut, the id added again meanwhile) either may go: the outbox says which."""
        same = self.waiting(msg_id)
        if len(same) > 1:
            got = list(self.ob.pending())
            assert len(got) == len(self.model) - 1 and all(m in self.model for m in got)
            gone = [m for m in self.model if m not in got]
        else:
            got = self.after_ack(msg_id)
            gone = same
        if not durable:
            self.held.extend(gone)
        self.model = got

    @rule(msg_id=IDS, kind=KINDS, index=st.booleans())
    def add(self, msg_id, kind, index):
        after, full, msg = self.expect_add(msg_id, kind)
        try:
            added = self.ob.add(msg_id, msg, index)
        except OutboxFull:
            assert full
            return
        assert not full and added == (after != self.model)
        self.model = after

    @rule(msg_id=IDS, durable=st.booleans())
    def ack(self, msg_id, durable):
        waiting = bool(self.waiting(msg_id))
        assert self.ob.ack(msg_id, durable) == waiting
        if waiting:
            self.take(msg_id, durable)

    @rule()
    def flush(self):
        self.ob.flush()
        self.held = []

    @rule(keep=st.sampled_from(["cdr", "status"]))
    def drop_oldest(self, keep):
        victims = [m for m in self.model if m[1]["type"] != keep]
        assert self.ob.drop_oldest(keep) == (victims[0] if victims else None)
        if victims:
            self.model.remove(victims[0])

    @rule()
    def reboot(self):
        self.boot()
        self.adopt(list(self.ob.pending()), self.model, self.model)

    def cut(self, op, after, at, torn):
        """Run op with the power going at flash operation `at`; then reboot and adopt
        whichever of before/after the flash shows (it must be one of them)."""
        _CutBox.budget = at
        _CutBox.torn = torn
        try:
            op()
        except OSError:
            self.boot()
            self.adopt(list(self.ob.pending()), self.model, after)
            return
        finally:
            _CutBox.budget = -1
        return True

    @rule(msg_id=IDS, kind=KINDS, at=st.integers(0, 8), torn=st.booleans(),
          index=st.booleans())
    def cut_add(self, msg_id, kind, at, torn, index):
        after, full, msg = self.expect_add(msg_id, kind)
        if full:
            return
        if self.cut(lambda: self.ob.add(msg_id, msg, index), after, at, torn):
            self.model = after

    @rule(msg_id=IDS, at=st.integers(0, 4), torn=st.booleans(), durable=st.booleans())
    def cut_ack(self, msg_id, at, torn, durable):
        if len(self.waiting(msg_id)) > 1:
            return  # which of the two goes is the outbox's choice: see ack
        gone = self.waiting(msg_id)
        if self.cut(lambda: self.ob.ack(msg_id, durable), self.after_ack(msg_id), at, torn):
            self.model = self.after_ack(msg_id)
            if not durable:
                self.held.extend(gone)

    @rule(at=st.integers(0, 3), torn=st.booleans())
    def cut_flush(self, at, torn):
        if self.cut(self.ob.flush, self.model, at, torn):
            self.held = []

    @rule(name=st.sampled_from(["s1.tmp", "h3.tmp", "zz", "a99", "s"]))
    def junk(self, name):
        with open(os.path.join(self.root, "outbox", name), "w") as f:
            f.write("junk")
        self.boot()
        self.adopt(list(self.ob.pending()), self.model, self.model)
        assert not os.path.exists(os.path.join(self.root, "outbox", name))

    @invariant()
    def pending_is_the_model(self):
        assert list(self.ob.pending()) == self.model
        assert len(self.ob) == len(self.model)


OutboxMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40,
                                           deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestOutbox = OutboxMachine.TestCase
