"""Atomic store and durable outbox in a temporary folder (both interpreters)."""

import os

from firmware.store import Outbox, OutboxFull, Store


def _tmpdir(tag):
    name = "/tmp/mpevse_{}_{}".format(tag, "".join("{:02x}".format(b) for b in os.urandom(6)))
    return name


def _rmtree(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


def _with_dir(tag, fn):
    root = _tmpdir(tag)
    try:
        fn(root)
    finally:
        try:
            _rmtree(root)
        except OSError:
            pass


def _ids(ob):
    return [msg_id for msg_id, _ in ob.pending()]


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
        for key in ("", "../etc", "a/b", ".hidden", "x" * 41, None, "sp ace"):
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


def test_outbox_order_duplicates_ack():
    def body(root):
        ob = Outbox(Store(root))
        assert len(ob) == 0 and ob.pending() == []
        for i in range(12):  # past 10: order must be numeric, not by file name
            assert ob.add("m{}".format(i), {"type": "cdr", "n": i})
        assert not ob.add("m3", {"type": "cdr", "n": 99})  # duplicate id: kept once
        assert len(ob) == 12
        assert [m["n"] for _, m in ob.pending()] == list(range(12))
        assert ob.pending()[0] == ("m0", {"type": "cdr", "n": 0})
        assert ob.ack("m0") and not ob.ack("m0") and not ob.ack("nope")
        assert ob.ack("m5")
        again = Outbox(Store(root))  # reboot
        assert _ids(again) == ["m{}".format(i) for i in range(12) if i not in (0, 5)]
        assert not again.add("m7", {})
        assert again.add("m12", {"n": 12}) and _ids(again)[-1] == "m12"
        assert again.add(7, {"n": "int id"})
        assert _ids(Outbox(Store(root)))[-2:] == ["m12", 7]
    _with_dir("outbox", body)


def test_outbox_limit_and_damaged_entry():
    def body(root):
        st = Store(root)
        ob = Outbox(st, limit=2)
        ob.add("a", 1)
        ob.add("b", 2)
        try:
            ob.add("c", 3)
        except OutboxFull:
            pass
        else:
            raise AssertionError("limit ignored")
        assert _ids(ob) == ["a", "b"]
        _write(root + "/outbox.9.json", "{garbage")
        st.put("outbox.x", {"id": "q", "msg": 1})
        st.put("outbox.10", {"no": "id"})
        again = Outbox(Store(root))
        assert _ids(again) == ["a", "b"]
        assert len(again.store.problems) == 3, again.store.problems  # JSON, no id, bad seq
        assert again.add("c", 3)
        for bad in (None, 1.5, True, ["x"]):
            try:
                again.add(bad, 1)
            except ValueError:
                continue
            raise AssertionError(bad)
    _with_dir("limit", body)
