"""Outbox.offer's full-outbox policy against a model (both interpreters): Progress
notifications go first, then the oldest other non-CDR, never a CDR (the limit grows instead);
a superseded EVSE status collapses to the newest. Seeded random sequences of offers, acks
(durable and held in RAM), flushes, clean reboots and reboots that lose the acks held in RAM;
tests/test_outbox_policy.py feeds the same runner from hypothesis on CPython.

After every step: pending() equals the model, len() its length, every CDR offered and not
acknowledged by the backend waits, and what offer said it dropped is what the model drops.
After a reboot without flush, the waiting messages are the model's plus any of those whose
acks were held in RAM (never fewer, never others), in the order they were offered."""


from firmware.store import Outbox, Store
from tests.mp.outbox_kit import rmtree as _rmtree
from tests.mp.outbox_kit import tmpdir as _tmpdir

LIMIT = 6
SEGMENT = 3
EVSES = ("DE*ABC*E1", "DE*ABC*E2")


def is_progress(m):
    return m.get("type") == "notification" and m.get("Type") == "Progress"


class Model:
    """What the outbox must hold: `waiting` (messages, oldest first), `held` (acknowledged
    in RAM only: a reboot without flush may bring them back), the since-boot status map."""

    def __init__(self):
        self.waiting = []
        self.held = []
        self.status = {}
        self.limit = LIMIT
        self.cdrs = []  # ids of CDRs offered and not acknowledged by the backend

    def _find(self, msg_id):
        for m in self.waiting:
            if m["id"] == msg_id:
                return m
        return None

    def _take(self, m):
        self.waiting.remove(m)
        self.held.append(m)

    def offer(self, msg):
        """-> what offer must say: [("drop", id) | ("raise", limit)]."""
        said = []
        if msg["type"] == "evse_status":
            old = self.status.get(msg["EvseID"])
            if old is not None and old != msg["id"] and self._find(old) is not None:
                self._take(self._find(old))
            self.status[msg["EvseID"]] = msg["id"]
        if self._find(msg["id"]) is not None:
            return said
        while len(self.waiting) >= self.limit:
            victims = [m for m in self.waiting if is_progress(m)]
            if not victims:  # the policy: a non-Progress goes only when no Progress waits
                victims = [m for m in self.waiting if m["type"] != "cdr"]
            if not victims:
                self.limit = len(self.waiting) + 1
                said.append(("raise", self.limit))
                break
            assert victims[0]["type"] != "cdr"
            self._take(victims[0])
            said.append(("drop", victims[0]["id"]))
        self.waiting.append(msg)
        if msg["type"] == "cdr":
            self.cdrs.append(msg["id"])
        return said

    def ack(self, msg_id):
        m = self._find(msg_id)
        if m is not None:
            self._take(m)
            if msg_id in self.cdrs:
                self.cdrs.remove(msg_id)
        return m is not None

    def flush(self):
        self.held = []

    def reboot(self, got):
        """A reboot without flush: `got` (pending messages) must be the waiting ones plus
        some held ones, in offering order; it becomes the model."""
        ns = [m["n"] for m in got]
        assert ns == sorted(ns), ns
        want = [m["n"] for m in self.waiting]
        may = [m["n"] for m in self.held]
        for n in want:
            assert n in ns, (n, ns)
        for n in ns:
            assert n in want or n in may, (n, want, may)
        self.waiting = list(got)
        self.held = []
        self.status = {}
        self.limit = LIMIT


def _said(lines):
    out = []
    for line in lines:
        if "dropped" in line:
            out.append(("drop", line.split(" to make room")[0].split(" ")[-1]))
        else:
            out.append(("raise", int(line.split(" ")[-1])))
    return out


class Runner:
    """Applies ops (kind 0-9, a: any int choosing what it applies to) to an outbox and the
    model, checking after each."""

    def __init__(self, root):
        self.root = root
        self.model = Model()
        self.n = 0
        self.seen = {"drop": 0, "raise": 0, "back": 0}  # what the sequence exercised
        self.boot()

    def boot(self):
        self.ob = Outbox(Store(self.root), limit=LIMIT, segment=SEGMENT)

    def new(self, kind, a):
        self.n += 1
        sid = "s{}".format(a % 4)
        if kind == "cdr":
            return {"type": "cdr", "id": "cdr-{}".format(self.n), "n": self.n, "SessionID": sid}
        if kind == "status":
            return {"type": "evse_status", "id": "st{}".format(self.n), "n": self.n,
                    "EvseID": EVSES[a % 2], "EvseStatus": "Occupied"}
        return {"type": "notification", "id": "{}.{}".format(sid, self.n), "n": self.n,
                "Type": kind, "SessionID": sid}

    def step(self, op, a):
        model = self.model
        if op <= 5:  # offers: Progress most often, so it is what fills the outbox
            kind = ("Progress", "Progress", "cdr", "status", "Start", "End")[op]
            msg = self.new(kind, a)
            want = model.offer(msg)
            assert _said(self.ob.offer(msg)) == want, want
            for what, _ in want:
                self.seen[what] += 1
        elif op == 6:  # the backend acknowledges something waiting (or an unknown id)
            ids = [m["id"] for m in model.waiting] + ["nope"]
            msg_id = ids[a % len(ids)]
            durable = a % 3 == 0
            assert self.ob.ack(msg_id, durable) == model.ack(msg_id)
            if durable and model.held and model.held[-1]["id"] == msg_id:
                model.held.pop()  # on flash: it cannot come back
        elif op == 7:  # a status offered again with the same id (a repeat): kept once
            st = [m for m in model.waiting if m["type"] == "evse_status"]
            if st:
                m = st[a % len(st)]
                assert model.offer(m) == []
                assert self.ob.offer(m) == []
        elif op == 8:
            self.ob.flush()
            model.flush()
            if a % 2:
                self.boot()
                model.reboot(list(m for _, m in self.ob.pending()))
        else:  # the power goes: the acks held in RAM are lost
            self.boot()
            n = len(model.waiting)
            model.reboot(list(m for _, m in self.ob.pending()))
            self.seen["back"] += len(model.waiting) - n
        self.check()

    def check(self):
        got = [m for _, m in self.ob.pending()]
        assert got == self.model.waiting, (got, self.model.waiting)
        assert len(self.ob) == len(got)
        ids = [m["id"] for m in got]
        for cdr in self.model.cdrs:
            assert cdr in ids, cdr


def run_ops(ops, tag="policy"):
    root = _tmpdir(tag)
    try:
        r = Runner(root)
        for op, a in ops:
            r.step(op, a)
        return r
    finally:
        _rmtree(root)


def _lcg_ops(seed, count):
    x = seed
    out = []
    for _ in range(count):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(((x >> 8) % 10, x >> 12))
    return out


def test_offer_policy_on_seeded_random_sequences():
    seen = {"drop": 0, "raise": 0, "back": 0}
    for seed in range(12):
        r = run_ops(_lcg_ops(seed + 1, 70))
        for k in seen:
            seen[k] += r.seen[k]
    assert seen["drop"] > 10 and seen["raise"] > 0 and seen["back"] > 0, seen


def test_progress_goes_first_then_other_non_cdrs_never_a_cdr():
    def body(root):
        ob = Outbox(Store(root), limit=4, segment=SEGMENT)
        ob.offer({"type": "evse_status", "id": "st1", "EvseID": EVSES[0]})
        ob.offer({"type": "notification", "Type": "Start", "id": "a.start"})
        ob.offer({"type": "notification", "Type": "Progress", "id": "a.p1"})
        ob.offer({"type": "cdr", "id": "cdr-0"})
        said = ob.offer({"type": "notification", "Type": "Progress", "id": "a.p2"})
        assert said == ["outbox full: dropped notification Progress a.p1 to make room"], said
        said = ob.offer({"type": "cdr", "id": "cdr-a"})  # the newer Progress goes too
        assert "Progress a.p2" in said[0], said
        said = ob.offer({"type": "cdr", "id": "cdr-b"})  # no Progress left: the oldest
        assert "dropped evse_status st1" in said[0], said
        said = ob.offer({"type": "cdr", "id": "cdr-c"})
        assert "notification Start a.start" in said[0], said
        said = ob.offer({"type": "cdr", "id": "cdr-d"})
        assert said == ["outbox full of CDRs: limit raised to 5"], said
        assert [i for i, _ in ob.pending()] == ["cdr-0", "cdr-a", "cdr-b", "cdr-c", "cdr-d"]
    root = _tmpdir("progress")
    try:
        body(root)
    finally:
        _rmtree(root)


def test_a_cut_that_undoes_held_drops_leaves_offer_working():
    root = _tmpdir("undo")
    try:
        ob = Outbox(Store(root), limit=3, segment=8)  # one segment: no roll writes the acks
        for i in range(3):
            ob.offer({"type": "notification", "Type": "Progress", "id": "p{}".format(i)})
        for i in range(3):  # each drops a Progress, held in RAM
            ob.offer({"type": "cdr", "id": "c{}".format(i)})
        ob = Outbox(Store(root), limit=3, segment=8)  # the power went
        assert len(ob) == 6  # some drops came back (never a CDR lost)
        said = ob.offer({"type": "cdr", "id": "c3"})  # drops as many as it takes
        ids = [i for i, _ in ob.pending()]
        assert ids[-4:] == ["c0", "c1", "c2", "c3"] and len(ids) == 4, (ids, said)
    finally:
        _rmtree(root)
