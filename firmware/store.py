"""Atomic JSON persistence in one directory (littlefs on the ESP32, a folder on a PC).

Each key is one file `<key>.json`. A write goes to `<key>.json.tmp`, is closed (littlefs commits
file data on close), then renamed over the old file: littlefs and POSIX rename atomically, so a
power cut leaves either the old or the new value, never half of one. A value equal to what is on
flash is not rewritten (flash wears). Damage found later (a leftover `.tmp`, a file that is not
JSON, e.g. from a FAT volume or an older firmware) is listed in `problems` and never stops boot.
"""

import json
import os

_SUFFIX = ".json"
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
KEY_MAX = 40
OUTBOX_PREFIX = "outbox."


class OutboxFull(Exception):
    """The outbox holds `limit` messages; nothing was added."""


def _check_key(key):
    if not isinstance(key, str) or not 1 <= len(key) <= KEY_MAX or key[0] == "." \
            or any(c not in _KEY_CHARS for c in key):
        raise ValueError("store key {!r}: 1-{} of A-Z a-z 0-9 . _ -, not starting with ."
                         .format(key, KEY_MAX))


def _check_jsonable(value, depth=0):
    """MicroPython's json.dumps writes repr() for unknown objects (invalid JSON on flash), so
    check the types first: None, bool, int, float, str, list/tuple, dict with str keys."""
    if depth > 16:
        raise TypeError("store value: nested deeper than 16")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError("store value: dict key {!r} is not a str".format(k))
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        raise TypeError("store value: {} is not JSON".format(type(value).__name__))
    for v in value:
        _check_jsonable(v, depth + 1)


class Store:
    """Key -> JSON value, one file per key, atomic replace. `problems`: what was found damaged."""

    def __init__(self, root_dir):
        root = self.root = root_dir.rstrip("/") or "/"
        self.problems = []
        self.writes = 0  # files actually written: lets tests (and you) watch flash wear
        self._rename = os.rename  # replaces its target atomically on littlefs and POSIX
        part = ""
        for name in root.split("/"):  # os.makedirs for MicroPython (which has only os.mkdir)
            part = part + "/" + name if part or root[0] == "/" else name
            if name:
                try:
                    os.mkdir(part)
                except OSError:  # already there; anything else fails in listdir below
                    pass
        for name in os.listdir(root):
            if name.endswith(".tmp"):
                self.problems.append(name + ": left over from an interrupted write, removed")
                os.remove(root + "/" + name)

    def _read_text(self, key):
        try:
            with open(self.root + "/" + key + _SUFFIX) as f:
                return f.read()
        except OSError:
            return None

    def get(self, key, default=None):
        """The stored value, or `default` if absent or damaged (damage is reported, and the
        file is renamed to `<key>.json.bad` so it is reported once and kept for inspection)."""
        _check_key(key)
        text = self._read_text(key)
        if text is None:
            return default
        try:
            return json.loads(text)
        except ValueError:
            path = self.root + "/" + key + _SUFFIX
            self.problems.append("{}: not valid JSON ({} bytes), moved to {}.bad".format(
                path, len(text), path))
            os.rename(path, path + ".bad")
            return default

    def put(self, key, value):
        """Store `value` (JSON-able) atomically; None deletes. Returns True if flash was
        written, False if the value was already there (or already absent)."""
        _check_key(key)
        path = self.root + "/" + key + _SUFFIX
        if value is None:
            try:
                os.remove(path)
            except OSError:  # not there
                return False
        else:
            _check_jsonable(value)  # raises TypeError before anything is touched
            text = json.dumps(value)
            if self._read_text(key) == text:
                return False
            with open(path + ".tmp", "w") as f:
                f.write(text)
            self._rename(path + ".tmp", path)
        self.writes += 1
        return True

    def keys(self, prefix=""):
        """Stored keys starting with `prefix`, sorted."""
        out = []
        for name in os.listdir(self.root):
            if name.endswith(_SUFFIX) and name.startswith(prefix):
                out.append(name[:-len(_SUFFIX)])
        out.sort()
        return out


class Outbox:
    """Durable messages waiting for the bridge's acknowledgement, in insertion order.

    One file per message (`outbox.<seq>` -> {"id", "msg"}) so adding never rewrites the others;
    `seq` only grows and is persisted with each entry, so the order survives a reboot. Only ids
    and sequence numbers stay in RAM (a short list: lookups scan it); messages are read from
    flash when asked for. Damaged entries are skipped at load and listed in store.problems.
    """

    def __init__(self, store, limit=200):
        self.store = store
        self.limit = limit
        found = []
        for key in store.keys(OUTBOX_PREFIX):
            seq = key[len(OUTBOX_PREFIX):]
            entry = store.get(key)
            if seq.isdigit() and isinstance(entry, dict) and "id" in entry and "msg" in entry:
                found.append((int(seq), entry["id"]))
            elif entry is not None:  # None: bad JSON, already reported by get()
                store.problems.append(key + ": not an outbox entry, ignored")
        found.sort()
        self._order = []  # [(seq, msg_id)] ascending
        for seq, msg_id in found:
            if self._seq(msg_id) is None:
                self._order.append((seq, msg_id))
            else:  # a crash between add and ack of a re-add: keep the first
                store.problems.append("outbox.{}: duplicate id {!r}, removed".format(seq, msg_id))
                store.put(OUTBOX_PREFIX + str(seq), None)
        self._next = found[-1][0] + 1 if found else 1

    def __len__(self):
        return len(self._order)

    def _seq(self, msg_id):
        for seq, i in self._order:
            if i == msg_id:
                return seq
        return None

    def add(self, msg_id, msg):
        """Persist `msg` under `msg_id`; an id already waiting is kept once (returns False)."""
        if not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool):
            raise ValueError("outbox id {!r}: must be a str or int".format(msg_id))
        if self._seq(msg_id) is not None:
            return False
        if len(self._order) >= self.limit:
            raise OutboxFull("outbox full ({}): {!r} not added".format(self.limit, msg_id))
        seq = self._next
        self.store.put(OUTBOX_PREFIX + str(seq), {"id": msg_id, "msg": msg})
        self._next = seq + 1
        self._order.append((seq, msg_id))
        return True

    def pending(self):
        """[(msg_id, msg)] oldest first; reads every file."""
        out = []
        for seq, msg_id in self._order:
            entry = self.store.get(OUTBOX_PREFIX + str(seq))
            if entry is not None:
                out.append((msg_id, entry["msg"]))
        return out

    def ack(self, msg_id):
        """The bridge confirmed `msg_id`: delete it. Unknown id -> False."""
        seq = self._seq(msg_id)
        if seq is None:
            return False
        self._order.remove((seq, msg_id))
        self.store.put(OUTBOX_PREFIX + str(seq), None)
        return True
