"""The outbox's cheap paths under power cuts (both interpreters): records added without their
index entry (offer, add(index=False)) and acknowledgements held in RAM (ack(durable=False)).

The power goes at every flash operation of an operation (clean, and torn: half of the append
written), then the outbox boots again. The waiting ids must be those before or those after the
operation, plus any whose acknowledgement was only held in RAM (sent again, de-duplicated by
the receiver) -- never fewer -- in the order they were added; and every one of them must still
be found by its id: acknowledging all empties the outbox for good (none stuck without an index
entry). Plus the flash-write counts that are the point of it (Outbox docstring)."""

from firmware.store import LATE, Outbox, Store
from tests.mp.outbox_kit import cut_everywhere
from tests.mp.outbox_kit import ids as _ids
from tests.mp.outbox_kit import with_dir as _with_dir

ORDER = ["a", "b", "c", "d", "e", "f", "g", "h"]


def _offer(ob, i):
    return ob.offer({"type": "cdr" if i[0] == "c" else "status", "id": i})


def _check(root, got, before, after, may):
    rest = [i for i in got if i not in may]
    assert rest == [i for i in before if i not in may] or \
        rest == [i for i in after if i not in may], (got, before, after, may)
    assert got == [i for i in ORDER if i in got], got  # in the order added
    ob = Outbox(Store(root), segment=3)
    for i in got:
        assert ob.ack(i), (i, got)  # findable: nothing is stuck
    assert _ids(ob) == [] and len(ob) == 0
    again = Outbox(Store(root), segment=3)
    assert _ids(again) == [] and len(again) == 0 and again.store.problems == []


def _cut_everywhere(tag, prepare, op, before, after, may):
    """prepare(outbox) in a fresh folder, then op(outbox) with the power going at its n-th
    flash operation, for n = 0, 1, ... until op completes (clean and torn cuts)."""
    def check(root, n, torn):
        _check(root, _ids(Outbox(Store(root), segment=3)), before, after, may)
    return cut_everywhere(tag, prepare, op, check)


def _offers(ids, held=()):
    def prepare(ob):
        for i in ids:
            _offer(ob, i)
        for i in held:
            assert ob.ack(i, False)
    return prepare


def test_a_roll_writes_held_acks_then_index_entries_power_cut_anywhere():
    # s0 = a b c (no index entries yet), b acked in RAM; d begins s1: a0 gets b, then the
    # buckets get a and c, then d lands
    cuts = _cut_everywhere("lazy_roll", _offers("abc", "b"), lambda ob: _offer(ob, "d"),
                           ["a", "c"], ["a", "c", "d"], ["b"])
    assert cuts >= 4, cuts


def test_an_ack_in_ram_that_completes_a_segment_retires_it_power_cut_anywhere():
    cuts = _cut_everywhere("lazy_retire", _offers("abcd", "ab"),
                           lambda ob: ob.ack("c", False), ["d"], ["d"], ["a", "b", "c"])
    assert cuts >= 1, cuts


def test_flush_power_cut_anywhere():
    cuts = _cut_everywhere("lazy_flush", _offers("abcde", "ae"), lambda ob: ob.flush(),
                           ["b", "c", "d"], ["b", "c", "d"], ["a", "e"])
    assert cuts >= 2, cuts


def test_a_roll_after_a_reboot_indexes_the_rebuilt_tail():
    def body(root):
        ob = Outbox(Store(root), segment=3)
        for i in "abc":
            _offer(ob, i)
        ob = Outbox(Store(root), segment=3)  # the RAM index of s0 is rebuilt from the file
        assert not _offer(ob, "b") and len(ob) == 3  # found there: kept once
        _offer(ob, "d")  # the roll writes a b c's entries
        ob = Outbox(Store(root), segment=3)
        assert ob.ack("b") and ob.ack("a") and ob.ack("d") and _ids(ob) == ["c"]
        assert _ids(Outbox(Store(root), segment=3)) == ["c"]
    _with_dir("lazy_reboot", body)


def test_flash_writes_one_per_message_online():
    def body(root):
        ob = Outbox(Store(root), segment=64)
        w = ob.writes
        for i in range(640):  # the uplink acks each message soon after it is added
            assert ob.add("m{}".format(i), {"n": i}, False)
            if i >= 2:
                assert ob.ack("m{}".format(i - 2), False)
        per = (ob.writes - w) / 640
        assert per <= 1.2, per  # 1 record + (ack append + 2 removes) per 64 + 1 per LATE
        assert len(ob) == 2
        ob.flush()
        assert _ids(Outbox(Store(root), segment=64)) == ["m638", "m639"]
    _with_dir("lazy_writes", body)


def test_at_most_late_minus_one_acks_are_held():
    def body(root):
        ob = Outbox(Store(root), segment=64)
        for i in range(3 * LATE):
            ob.add(i, {"n": i}, False)
        w = ob.writes
        for i in range(LATE - 1):
            ob.ack(i, False)
        assert ob.writes == w  # held
        ob.ack(LATE - 1, False)
        assert ob.writes == w + 1  # LATE held: one append
        ob.ack(LATE, False)
        again = Outbox(Store(root), segment=64)  # the power went: one comes back
        assert _ids(again) == list(range(LATE, 3 * LATE))
    _with_dir("lazy_late", body)
