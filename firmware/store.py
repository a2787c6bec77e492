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
_TMP = ".tmp"
_BAD = ".bad"
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
KEY_MAX = 40
OUTBOX_PREFIX = "outbox."


class OutboxFull(Exception):
    """The outbox holds `limit` messages; nothing was added."""


def _check_key(key):
    if not isinstance(key, str) or not 1 <= len(key) <= KEY_MAX or key[0] == ".":
        raise ValueError("store key {!r}: must be 1-{} characters, not starting with '.'"
                         .format(key, KEY_MAX))
    for c in key:
        if c not in _KEY_CHARS:
            raise ValueError("store key {!r}: {!r} not allowed (A-Z a-z 0-9 . _ -)"
                             .format(key, c))


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _mkdirs(path):
    """os.makedirs for MicroPython (which has only os.mkdir)."""
    part = ""
    for name in path.split("/"):
        part = part + "/" + name if part or path.startswith("/") else name
        if not name:
            continue
        try:
            os.mkdir(part)
        except OSError:
            if not _exists(part):
                raise


def _check_jsonable(value, depth=0):
    """MicroPython's json.dumps writes repr() for unknown objects (invalid JSON on flash), so
    check the types first: None, bool, int, float, str, list/tuple, dict with str keys."""
    if depth > 16:
        raise TypeError("store value nested deeper than 16 levels")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_jsonable(v, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError("store value: dict key {!r} is not a string".format(k))
            _check_jsonable(v, depth + 1)
        return
    raise TypeError("store value: {} is not JSON-serializable".format(type(value).__name__))


class Store:
    """Key -> JSON value, one file per key, atomic replace. `problems`: what was found damaged."""

    def __init__(self, root_dir):
        self.root = root_dir.rstrip("/") or "/"
        self.problems = []
        self.writes = 0  # files actually written: lets tests (and you) watch flash wear
        _mkdirs(self.root)
        for name in os.listdir(self.root):
            if name.endswith(_TMP):
                self._report("{}: left over from an interrupted write, removed".format(name))
                os.remove(self._path(name))

    def _path(self, name):
        return self.root + "/" + name

    def _report(self, text):
        self.problems.append(text)

    def _read_text(self, key):
        try:
            with open(self._path(key + _SUFFIX)) as f:
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
            self._report("{}{}: not valid JSON ({} bytes), moved to {}{}{}".format(
                key, _SUFFIX, len(text), key, _SUFFIX, _BAD))
            os.rename(self._path(key + _SUFFIX), self._path(key + _SUFFIX + _BAD))
            return default

    def put(self, key, value):
        """Store `value` (JSON-able) atomically; None deletes. Returns True if flash was
        written, False if the value was already there (or already absent)."""
        _check_key(key)
        path = self._path(key + _SUFFIX)
        if value is None:
            if not _exists(path):
                return False
            os.remove(path)
            self.writes += 1
            return True
        _check_jsonable(value)  # raises TypeError before anything is touched
        text = json.dumps(value)
        if self._read_text(key) == text:
            return False
        tmp = path + _TMP
        with open(tmp, "w") as f:
            f.write(text)
        self._rename(tmp, path)
        self.writes += 1
        return True

    def _rename(self, src, dst):
        os.rename(src, dst)  # replaces dst atomically on littlefs and POSIX

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
    and sequence numbers stay in RAM; messages are read from flash when asked for.
    """

    def __init__(self, store, limit=200):
        self.store = store
        self.limit = limit
        self._seq_of = {}  # msg_id -> seq
        self._order = []  # [(seq, msg_id)] ascending
        self.skipped = 0  # damaged entries ignored at load (details in store.problems)
        found = []
        for key in store.keys(OUTBOX_PREFIX):
            tail = key[len(OUTBOX_PREFIX):]
            entry = store.get(key)
            if not tail.isdigit() or not isinstance(entry, dict) or "id" not in entry \
                    or "msg" not in entry:
                if entry is not None:
                    store._report("{}: not an outbox entry, ignored".format(key))
                self.skipped += 1
                continue
            found.append((int(tail), entry["id"]))
        found.sort()
        for seq, msg_id in found:
            if msg_id in self._seq_of:  # a crash between add and ack of a re-add: keep first
                store._report("outbox.{}: duplicate id {!r}, removed".format(seq, msg_id))
                store.put(OUTBOX_PREFIX + str(seq), None)
                continue
            self._seq_of[msg_id] = seq
            self._order.append((seq, msg_id))
        self._next = found[-1][0] + 1 if found else 1

    def __len__(self):
        return len(self._order)

    def add(self, msg_id, msg):
        """Persist `msg` under `msg_id`; an id already waiting is kept once (returns False)."""
        if not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool):
            raise ValueError("outbox id {!r}: must be a string or integer".format(msg_id))
        if msg_id in self._seq_of:
            return False
        if len(self._order) >= self.limit:
            raise OutboxFull("outbox full ({} messages); {!r} not added"
                             .format(self.limit, msg_id))
        seq = self._next
        self.store.put(OUTBOX_PREFIX + str(seq), {"id": msg_id, "msg": msg})
        self._next = seq + 1
        self._seq_of[msg_id] = seq
        self._order.append((seq, msg_id))
        return True

    def ids(self):
        return [msg_id for _, msg_id in self._order]

    def first(self):
        """(msg_id, msg) of the oldest waiting message, or None; reads one file."""
        for seq, msg_id in self._order:
            entry = self.store.get(OUTBOX_PREFIX + str(seq))
            if entry is not None:
                return msg_id, entry["msg"]
        return None

    def pending(self):
        """[(msg_id, msg)] oldest first (reads every file: use first() in a loop)."""
        out = []
        for seq, msg_id in self._order:
            entry = self.store.get(OUTBOX_PREFIX + str(seq))
            if entry is not None:
                out.append((msg_id, entry["msg"]))
        return out

    def ack(self, msg_id):
        """The bridge confirmed `msg_id`: delete it. Unknown id -> False."""
        seq = self._seq_of.pop(msg_id, None)
        if seq is None:
            return False
        self._order.remove((seq, msg_id))
        self.store.put(OUTBOX_PREFIX + str(seq), None)
        return True
