"""Atomic store and durable outbox in a temporary folder (both interpreters).

The outbox's power-cut tests cut at every flash operation of an add, an ack or a boot repair
(the operation raises, as a write does when the power goes; a torn variant writes half of an
append first, as POSIX can), reboot, and require the waiting ids to be exactly those before or
exactly those after the operation."""

import os

from firmware.store import BUCKETS, KEY_MAX, LIMIT, Outbox, OutboxFull, Store, _hash
from tests.mp.outbox_kit import CutBox as _CutBox
from tests.mp.outbox_kit import cut_everywhere
from tests.mp.outbox_kit import ids as _ids
from tests.mp.outbox_kit import rmtree as _rmtree
from tests.mp.outbox_kit import tmpdir as _tmpdir
from tests.mp.outbox_kit import with_dir as _with_dir


def _files(root):
    return sorted(os.listdir(root + "/outbox"))


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_put_get_delete_keys():
    def body(root):
        st = Store(root + "/sub")  # nested, created on demand
        assert st.get("session.1") is None and st.get("x", 5) == 5
        assert st.put("session.1", {"SessionID": "abc", "meter": 12})
        assert st.get("session.1") == {"SessionID": "abc", "meter": 12}
        assert st.put("session.2", [1, 2]) and st.put("locallist", {"version": 1})
        assert st.keys() == ["locallist", "session.1", "session.2"]
        assert st.keys("session.") == ["session.1", "session.2"]
        assert st.put("session.1", None) and not st.put("session.1", None)
        assert st.get("session.1") is None and st.keys("session.") == ["session.2"]
        assert Store(root + "/sub").get("session.2") == [1, 2]  # survives a "reboot"
        assert st.problems == []
        _rmtree(root + "/sub")
    _with_dir("kv", body)


def test_unchanged_value_is_not_rewritten():
    def body(root):
        st = Store(root)
        assert st.put("a", {"x": 1}) and st.writes == 1
        assert not st.put("a", {"x": 1}) and st.writes == 1
        assert st.put("a", {"x": 2}) and st.writes == 2
    _with_dir("wear", body)


def test_bad_keys_and_values_change_nothing():
    def body(root):
        st = Store(root)
        for key in ("", "../etc", "a/b", ".hidden", "x" * (KEY_MAX + 1), None, "sp ace"):
            try:
                st.put(key, 1)
            except ValueError:
                continue
            raise AssertionError(key)
        for value in (object(), {1: "int key"}, [b"bytes"], {"a": {"b": set()}}):
            try:
                st.put("a", value)
            except TypeError:
                continue
            raise AssertionError("non-JSON value accepted: {!r}".format(value))
        assert st.keys() == [] and st.writes == 0
    _with_dir("badkey", body)


def test_crash_between_tmp_and_rename_keeps_old_value():
    def body(root):
        st = Store(root)
        st.put("session.1", {"v": "old"})

        def power_cut(src, dst):
            raise OSError(5)  # EIO: the rename never happened

        st._rename = power_cut
        try:
            st.put("session.1", {"v": "new"})
        except OSError:
            pass
        else:
            raise AssertionError("rename failure swallowed")
        assert "session.1.json.tmp" in os.listdir(root)
        booted = Store(root)  # next boot
        assert booted.get("session.1") == {"v": "old"}
        assert len(booted.problems) == 1 and "interrupted write" in booted.problems[0]
        assert "session.1.json.tmp" not in os.listdir(root)
        assert booted.put("session.1", {"v": "new"}) and Store(root).get("session.1")["v"] == "new"
    _with_dir("crash", body)


def test_corrupt_file_is_reported_not_fatal():
    def body(root):
        st = Store(root)
        st.put("good", 1)
        _write(root + "/session.1.json", '{"SessionID": "ab')  # half-written (FAT, old crash)
        _write(root + "/empty.json", "")
        booted = Store(root)
        assert booted.get("session.1", "dflt") == "dflt"
        assert booted.get("empty") is None
        assert booted.get("good") == 1
        assert len(booted.problems) == 2 and "not valid JSON" in booted.problems[0]
        assert booted.get("session.1") is None and len(booted.problems) == 2  # reported once
        assert "session.1.json.bad" in os.listdir(root)
        assert booted.keys() == ["good"]
    _with_dir("corrupt", body)


def _seg_files(root):
    return [n for n in _files(root) if n[0] in "as"]


def test_outbox_order_duplicates_ack():
    def body(root):
        ob = Outbox(Store(root))
        assert len(ob) == 0 and list(ob.pending()) == []
        for i in range(12):  # past 10: order must be numeric, not by file name
            assert ob.add("m{}".format(i), {"type": "cdr", "n": i})
        assert not ob.add("m3", {"type": "cdr", "n": 99})  # waiting: kept once
        assert len(ob) == 12
        assert [m["n"] for _, m in ob.pending()] == list(range(12))
        assert next(ob.pending()) == ("m0", {"type": "cdr", "n": 0})
        assert ob.ack("m0") and not ob.ack("m0") and not ob.ack("nope") and not ob.ack(None)
        assert ob.ack("m5") and len(ob) == 10
        again = Outbox(Store(root))  # reboot
        assert _ids(again) == ["m{}".format(i) for i in range(12) if i not in (0, 5)]
        assert len(again) == 10
        assert not again.add("m7", {})
        assert again.add("m0", {"n": "back"})  # an acknowledged id may come again
        assert again.add(7, {"n": "int id"}) and again.add("7", {"n": "str id"})  # two ids
        assert not again.add(7, {})
        assert _ids(Outbox(Store(root)))[-3:] == ["m0", 7, "7"]
        assert again.store.problems == [] and Store(root).keys() == []
        assert again.limit == LIMIT  # a PC's disk has room for more
    _with_dir("outbox", body)


def test_outbox_acks_in_any_order_and_segments_go():
    def body(root):
        ob = Outbox(Store(root), segment=4)
        ids = ["c{}".format(i) for i in range(30)]
        for i in ids:
            ob.add(i, {"n": i})
        assert _seg_files(root) == ["s{}".format(k) for k in range(8)]
        waiting = list(ids)
        for j in range(30):
            victim = ids[j * 7 % 30]  # a permutation: acks far out of order
            assert ob.ack(victim)
            waiting.remove(victim)
            if j % 6 == 5:
                ob = Outbox(Store(root), segment=4)  # reboot now and then
            assert _ids(ob) == waiting and len(ob) == len(waiting)
        assert _seg_files(root) == ["a7", "s7"]  # only the last segment stays
        assert ob.add("new", 1) and _ids(Outbox(Store(root), segment=4)) == ["new"]
        assert ob.store.problems == []
    _with_dir("anyorder", body)


def test_outbox_pending_is_lazy_and_live():
    def body(root):
        ob = Outbox(Store(root), segment=2)
        for i in range(5):
            ob.add(i, {"n": i})
        walk = ob.pending()
        assert next(walk) == (0, {"n": 0})
        assert ob.ack(1) and ob.ack(0)  # acked during the walk: not handed out
        ob.add(5, {"n": 5})
        assert [i for i, _ in walk] == [2, 3, 4, 5]
    _with_dir("lazy", body)


def test_outbox_limit_and_bad_input():
    def body(root):
        ob = Outbox(Store(root), limit=2)
        assert ob.add("a", 1) and ob.add("b", 2)
        assert not ob.add("a", 1)  # a duplicate is no overflow
        try:
            ob.add("c", 3)
        except OutboxFull:
            pass
        else:
            raise AssertionError("limit ignored")
        assert _ids(ob) == ["a", "b"]
        writes = ob.writes
        for bad in (None, 1.5, True, ["x"]):
            try:
                ob.add(bad, 1)
            except ValueError:
                continue
            raise AssertionError(bad)
        for bad in (object(), {1: 2}, "x" * 2100):
            try:
                ob.add("d", bad)
            except (TypeError, ValueError):
                continue
            raise AssertionError(bad)
        assert ob.writes == writes and len(ob) == 2
        assert ob.ack("a") and ob.add("c", 3) and _ids(ob) == ["b", "c"]
    _with_dir("limit", body)


def test_outbox_drop_oldest_keeps_every_cdr():
    def body(root):
        ob = Outbox(Store(root), segment=3)
        for i, kind in enumerate(("cdr", "status", "cdr", "status", "cdr")):
            ob.add("{}-{}".format(kind, i), {"type": kind})
        assert ob.drop_oldest("cdr") == ("status-1", {"type": "status"})
        assert ob.drop_oldest("cdr") == ("status-3", {"type": "status"})
        assert ob.drop_oldest("cdr") is None
        ob.add("status-5", {"type": "status"})
        assert ob.drop_oldest("cdr")[0] == "status-5"
        ob.add("cdr-6", {"type": "cdr"})
        assert ob.drop_oldest("cdr") is None
        assert _ids(ob) == ["cdr-0", "cdr-2", "cdr-4", "cdr-6"] and len(ob) == 4
        assert ob.drop_oldest("status") == ("cdr-0", {"type": "cdr"})  # another rule: anew
    _with_dir("drop", body)


def test_outbox_damage_is_reported_once_and_never_stops_boot():
    def body(root):
        ob = Outbox(Store(root), segment=4)
        for i in "abc":
            ob.add(i, {"n": i})
        seg = root + "/outbox/s0"
        with open(seg, "ab") as f:
            f.write(b'{"not": "a record"\n')  # a complete line that is no record
            f.write(b'"d"\t{"n": ')  # and a torn one after it
        _write(root + "/outbox/s0.tmp", "half")
        _write(root + "/outbox/junk", "?")
        _write(root + "/outbox/a9", "\x00")  # acks of a segment that is gone
        booted = Outbox(Store(root), segment=4)
        problems = booted.store.problems
        assert len(problems) == 3, problems  # tmp, junk, torn tail
        assert len(booted) == 4  # the damaged line is found when it is read
        assert _ids(booted) == ["a", "b", "c"] and len(booted) == 3
        assert len(problems) == 4 and "damaged" in problems[3], problems
        assert _ids(booted) == ["a", "b", "c"] and len(problems) == 4  # reported once
        assert "junk.bad" in _files(root) and "a9" not in _files(root)
        with open(root + "/outbox/bad", "rb") as f:
            assert f.read() == b'{"not": "a record"\n'
        again = Outbox(Store(root), segment=4)
        assert again.store.problems == [] and _ids(again) == ["a", "b", "c"]
        assert again.add("d", 4) and again.add("e", 5)  # a new segment begins cleanly
        assert _ids(Outbox(Store(root), segment=4)) == ["a", "b", "c", "d", "e"]
    _with_dir("damage", body)


def test_outbox_an_overlong_damaged_line_is_one_record():
    def body(root):
        ob = Outbox(Store(root), segment=4)
        ob.add("a", 1)
        ob.add("b", 2)
        with open(root + "/outbox/s0", "ab") as f:
            for _ in range(20):  # no record, longer than any record may be
                f.write(b"x" * 1000)
            f.write(b"\n")
        ob = Outbox(Store(root), segment=4)
        assert ob.add("c", 3) and ob.add("d", 4) and len(ob) == 5
        assert _ids(ob) == ["a", "b", "c", "d"] and len(ob) == 4
        assert len(ob.store.problems) == 1 and "damaged" in ob.store.problems[0]
        assert ob.ack("c") and _ids(ob) == ["a", "b", "d"]
        again = Outbox(Store(root), segment=4)
        assert _ids(again) == ["a", "b", "d"] and again.store.problems == []
    _with_dir("overlong", body)


def test_outbox_a_cut_short_segment_loses_only_what_is_gone():
    def body(root):
        ob = Outbox(Store(root), segment=3)
        for i in "abcde":
            ob.add(i, {"n": i})
        with open(root + "/outbox/s0", "rb") as f:
            first = f.readline()
        with open(root + "/outbox/s0", "wb") as f:
            f.write(first)  # b and c are gone (say, a FAT copy)
        with open(root + "/outbox/a1", "wb") as f:
            f.write(bytes([2]))  # an ack of a slot the last segment never had
        ob = Outbox(Store(root), segment=3)
        assert len(ob) == 5 and _ids(ob) == ["a", "d", "e"] and len(ob) == 3
        assert len(ob.store.problems) == 1 and "2 lost" in ob.store.problems[0]
        assert ob.add("f", 6) and _ids(ob) == ["a", "d", "e", "f"]  # not into the acked slot
        again = Outbox(Store(root), segment=3)
        assert _ids(again) == ["a", "d", "e", "f"] and len(again) == 4
        assert again.store.problems == []
        assert again.ack("a") and "s0" not in _files(root)
    _with_dir("short", body)


def test_outbox_moves_the_old_layout_in():
    def body(root):
        st = Store(root)
        st.put("outbox.2", {"id": "b", "msg": {"n": 2}})
        st.put("outbox.10", {"id": "c", "msg": 3})
        st.put("outbox.1", {"id": "a", "msg": 1})
        st.put("outbox.11", {"id": "a", "msg": 1})  # a crash between add and ack of a re-add
        st.put("outbox.x", {"no": "id"})
        _write(root + "/outbox.9.json", "{garbage")
        ob = Outbox(Store(root))
        assert _ids(ob) == ["a", "b", "c"]
        assert len(ob.store.problems) == 2, ob.store.problems  # not JSON, not an entry
        assert Store(root).keys() == []
        again = Outbox(Store(root))
        assert _ids(again) == ["a", "b", "c"] and again.store.problems == []
    _with_dir("migrate", body)


def _cut_everywhere(tag, prepare, op, before, after):
    """For n = 0, 1, ...: a fresh folder, prepare(outbox), then op(outbox) with the power
    going at its n-th flash operation (both ways), until op completes. The next boot must
    show the ids `before` or `after`, and op repeated there must give `after`."""
    def prepared(ob):
        prepare(ob)
        assert _ids(ob) == before

    def check(root, n, torn):
        booted = Outbox(Store(root), segment=3)
        got = _ids(booted)
        assert got == before or got == after, (tag, n, torn, got)
        assert len(booted) == len(got)
        op(booted)
        assert _ids(booted) == after and len(booted) == len(after), (tag, n, torn)
        assert _ids(Outbox(Store(root), segment=3)) == after
    return cut_everywhere(tag, prepared, op, check)


def _add_all(ids):
    def prepare(ob):
        for i in ids:
            ob.add(i, {"type": "cdr" if i[0] == "c" else "status", "id": i})
    return prepare


def _then_ack(prepare, ids):
    def both(ob):
        prepare(ob)
        for i in ids:
            assert ob.ack(i)
    return both


def _add(msg_id):
    return lambda ob: ob.add(msg_id, {"type": "cdr", "id": msg_id})


def _ack(msg_id):
    return lambda ob: ob.ack(msg_id)


def test_outbox_power_cut_at_every_add_write():
    assert _cut_everywhere("cut_add", _add_all(["a", "b"]), _add("c"),
                           ["a", "b"], ["a", "b", "c"]) >= 4
    # a new segment begins and the full one before it, all acknowledged, is removed
    prep = _then_ack(_add_all(["a", "b", "c"]), ["b", "a", "c"])
    assert _cut_everywhere("cut_roll", prep, _add("d"), [], ["d"]) >= 8


def test_outbox_power_cut_at_every_ack_write():
    five = ["a", "b", "c", "d", "e"]
    _cut_everywhere("cut_ack", _add_all(five), _ack("c"), five, ["a", "b", "d", "e"])
    # the ack that completes a segment (not the last) removes it
    prep = _then_ack(_add_all(five), ["a", "c"])
    assert _cut_everywhere("cut_retire", prep, _ack("b"), ["b", "d", "e"], ["d", "e"]) >= 6


def test_outbox_power_cut_while_the_id_index_is_rewritten():
    same = []  # ids whose index entries share one bucket
    j = 0
    while len(same) < 5:
        name = "k{}".format(j)
        if _hash(('"' + name + '"').encode()) % BUCKETS == 0:
            same.append(name)
        j += 1
    prep = _then_ack(_add_all(same[:4]), same[:3])
    _cut_everywhere("cut_index", prep, _add(same[4]), [same[3]], [same[3], same[4]])

    def body(root):  # the rewrite did happen: the bucket holds the two live entries
        ob = Outbox(Store(root), segment=3)
        prep(ob)
        ob.add(same[4], 1)
        assert os.stat(root + "/outbox/h0")[6] == 20
    _with_dir("index", body)


def test_outbox_power_cut_while_dropping():
    _cut_everywhere("cut_drop", _add_all(["c1", "s2", "c3"]), lambda ob: ob.drop_oldest("cdr"),
                    ["c1", "s2", "c3"], ["c1", "c3"])


def test_outbox_power_cut_during_boot_repairs():
    n = 0
    while True:
        root = _tmpdir("cut_boot")
        try:
            ob = Outbox(Store(root), segment=3)
            for i in "abcd":
                ob.add(i, {"n": i})
            with open(root + "/outbox/s1", "ab") as f:
                f.write(b'"e"\t{"n')  # torn tail
            _write(root + "/outbox/s1.tmp", "x")
            _write(root + "/outbox/junk", "?")
            _write(root + "/outbox/a7", "\x00")
            Store(root).put("outbox.3", {"id": "z", "msg": {"n": "z"}})  # the old layout
            _CutBox.budget = n
            try:
                _CutBox(Store(root), segment=3)
                cut = False
            except OSError:
                cut = True
            _CutBox.budget = -1
            assert _ids(Outbox(Store(root), segment=3)) == ["a", "b", "c", "d", "z"], n
            again = Outbox(Store(root), segment=3)
            assert again.store.problems == [] and len(again) == 5
        finally:
            _CutBox.budget = -1
            _rmtree(root)
        if not cut:
            break
        n += 1
    assert n >= 5


def test_outbox_heap_does_not_grow_with_the_backlog():
    import gc

    if not hasattr(gc, "mem_alloc"):
        return  # CPython: nothing to measure

    def boot_heap(root):
        gc.collect()
        before = gc.mem_alloc()
        ob = Outbox(Store(root), segment=8)
        gc.collect()
        used = gc.mem_alloc() - before
        assert len(ob) >= 0
        return used

    def body(root):
        ob = Outbox(Store(root), segment=8)
        ob.add("first", 0)
        small = boot_heap(root)
        for i in range(300):
            ob.add("m{}".format(i), {"type": "status", "n": i})
        for i in range(0, 300, 3):
            ob.ack("m{}".format(i))
        big = boot_heap(root)
        assert big - small < 256, (small, big)
    _with_dir("heap", body)


def test_offer_collapses_superseded_status_and_never_drops_a_cdr():
    def body(root):
        ob = Outbox(Store(root), limit=3)
        st = {"type": "evse_status", "EvseID": "DE*ABC*E1"}
        assert ob.offer(dict(st, id="s1", EvseStatus="Occupied")) == []
        assert ob.offer(dict(st, id="s2", EvseStatus="Available")) == []
        assert _ids(ob) == ["s2"]  # the older status for the same EVSE is gone
        assert ob.offer(dict(st, id="t1", EvseID="DE*ABC*E2", EvseStatus="Occupied")) == []
        assert ob.offer({"type": "cdr", "id": "c1"}) == []
        said = ob.offer({"type": "cdr", "id": "c2"})  # full: the oldest non-CDR goes
        assert len(said) == 1 and "dropped evse_status s2" in said[0]
        assert _ids(ob) == ["t1", "c1", "c2"]
        ob.offer({"type": "cdr", "id": "c3"})
        said = ob.offer({"type": "cdr", "id": "c4"})  # only CDRs: the limit grows, loudly
        assert _ids(ob) == ["c1", "c2", "c3", "c4"] and "limit raised" in said[0]
    _with_dir("offer", body)
