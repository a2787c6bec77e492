"""Atomic JSON persistence in one directory (littlefs on the ESP32, a folder on a PC), and the
durable outbox in a folder beneath it (`Outbox`: its docstring has the layout).

Store: each key is one file `<key>.json`. A write goes to `<key>.json.tmp`, is closed (littlefs
commits file data on close), then renamed over the old file: littlefs and POSIX rename atomically,
so a power cut leaves either the old or the new value, never half of one. A value equal to what
is on flash is not rewritten (flash wears). Damage found later (a leftover `.tmp`, a file that is
not JSON, e.g. from a FAT volume or an older firmware) is listed in `problems` and never stops
boot.
"""

import json
import os

_SUFFIX = ".json"
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
KEY_MAX = 64  # "bad.session.<36-char local id>" is 48; littlefs names allow 255
OUTBOX_PREFIX = "outbox."  # Store keys of the outbox before segments: migrated at boot
OUTBOX_DIR = "outbox"  # the outbox's folder under the Store root
SEGMENT = 64  # records per segment file (an ack is one byte: at most 255)
BUCKETS = 16  # files of the id index
LIMIT = 20000  # messages the outbox holds at most by default (less if the flash is smaller)
FLASH_PER_MSG = 512  # flash bytes per message for that limit: a record is ~400, index included
FLASH_KEEP = 65536  # flash bytes the limit leaves free for session records and the lists
MSG_MAX = 2048  # bytes of one record line (id and message; a CDR is ~700)
# bytes a line is read in (MicroPython's readline(n) allocates n up front): small pieces, because
# with TLS up a 128k heap had 23 KB free but no free 1 KB block at times (bench_uplink, mqtts)
_PIECE = 256
_ENTRY = 10  # bytes of an id index entry: id hash 3, segment 3, slot 1, offset 3
_TIX = 6  # bytes per slot of the last segment's id index in RAM: hash 3, offset 3 (bit 23:
# its entry is on flash; offsets stay below 255 records x MSG_MAX = 2^19)
LATE = 16  # acknowledgements held in RAM at most (ack(durable=False)) before they are written
_PROGRESS = "Progress"  # offer's first victims when full: the oldest Progress notification


class OutboxFull(Exception):
    """The outbox holds `limit` messages; nothing was added."""


try:
    _ilistdir = os.ilistdir  # MicroPython: one (name, type, inode[, size]) at a time
except AttributeError:  # CPython

    def _ilistdir(path):
        with os.scandir(path) as it:
            for entry in it:
                yield (entry.name,)


def _exists(path):
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def _valid_id(msg_id):
    return type(msg_id) in (str, int)  # type, not isinstance: a bool is an int to isinstance


def _hash(data):
    """24-bit hash of `data` (bytes), the same on every interpreter; stays a small int on a
    32-bit port (no long-int allocation per byte)."""
    h = 5381
    for c in data:
        h = (h * 33 ^ c) & 0xFFFFFF
    return h


def _readline(f):
    """The next line of file `f` (bytes, with its LF, or without at the end of the file), read
    in pieces of _PIECE bytes. Of a line longer than MSG_MAX (damage) at most MSG_MAX bytes
    come back, without the LF, and the rest is skipped: one line is one record."""
    line = piece = f.readline(_PIECE)
    while piece and piece[-1] != 10:
        piece = f.readline(_PIECE)
        if len(line) + len(piece) <= MSG_MAX:
            line += piece
    return line


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

    def _holds(self, path, text):
        """True if the file at `path` holds exactly `text`. Read and compared 64 characters at
        a time: a session record is ~550 B, and a second copy of it next to the new text was
        the allocation that failed at 128k with TLS (tools/bench_uplink.py --only mqtts)."""
        try:
            with open(path) as f:
                i = 0
                while True:
                    part = f.read(64)
                    if not part:
                        return i == len(text)
                    if text[i:i + len(part)] != part:
                        return False
                    i += len(part)
        except OSError:  # absent (or unreadable: then it is rewritten)
            return False

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
            if self._holds(path, text):
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
    """Durable messages waiting for the bridge's acknowledgement, oldest first, on flash.

    Layout, in `<store root>/outbox/` (its own folder, so the Store's listing stays short):
      s<k>  segment k (k = 0, 1, 2, ..., never reused): up to `segment` records appended in
            order, one line each: `<id as JSON> TAB <message as JSON> LF`. Messages share files
            because littlefs gives every file longer than its cache (128 B on MicroPython) at
            least one 4 KB block: a file per message would fill an ESP32's ~2 MB with ~450.
      a<k>  the acknowledged records of segment k: one byte (the slot, 0..segment-1) per ack.
      h<b>  id index, b = hash(id) % BUCKETS: 10-byte entries (hash 3, segment 3, slot 1, byte
            offset 3), appended. An entry is a hint checked against the record it points at, so
            a stale one (from a cut, an ack, a retired segment) or a second one is harmless;
            the bucket is rewritten without stale ones when it has doubled since its last
            rewrite (or ends in a partial entry).
      bad   damaged records, moved aside; `<name>.bad`: a file that is no part of this layout.
    A segment that is full and entirely acknowledged, and not the last, is deleted: the last
    segment always exists once there was one, which keeps k growing across reboots.

    Flash writes (the rule; issue 11: <= 10 per session plus one per Progress interval):
    - A message costs one write: its record. Its index entry is not written then: the last
      segment's ids are indexed in RAM (_tix: hash and offset per slot, rebuilt from s<tail>
      after a boot), and when that segment is full the entries of its records that still wait
      are appended, one append per bucket concerned -- none online, where they were
      acknowledged meanwhile. (add(index=True) writes the entry at once.)
    - An acknowledgement with durable=False (the uplink's, offer's superseded statuses and
      drops) is held in RAM, at most LATE; they are written in one append per segment when
      LATE are held, when their segment rolls over (before its index entries), or by flush();
      a segment whose every record is acknowledged is deleted without them (removing s<k>
      commits them). A power cut loses at most the LATE - 1 held: those messages wait again
      and are sent again, which the contract makes harmless (ids are stable, receivers
      de-duplicate by id: firmware.contract). Nothing is ever lost: a record is on flash
      before add/offer returns, and only an ack on flash (or s<k> removed) ends its wait.
      ack(durable=True) writes at once.
    - Invariant after any cut: every record of a segment before the last that is not
      acknowledged on flash has an index entry on flash (so whatever a cut brings back can be
      acknowledged); bucket rewrites therefore count only the acks on flash.
    Per message online: 1 write, plus per segment (64 messages) the ack append and 2 removes,
    plus an ack append per LATE acks; offline: 1 write plus index appends at each roll (at
    most BUCKETS per segment).

    RAM: a few ints, a 320-byte buffer, the last segment's index (6 B a slot) and the held
    acks (4 B each), however long the backlog. Boot streams the folder (files per segment,
    not per message), reads the ack files of partly acknowledged segments and the last
    segment (where the next record goes): no message is parsed. `len()` is kept.
    `limit` (messages) is by default what the flash has room for at boot (FLASH_PER_MSG each,
    FLASH_KEEP left free), at most LIMIT: an ESP32's ~2 MB littlefs holds ~4 000.

    Write order; each step is one atomic file operation on littlefs (a torn append on POSIX is
    cut off at the next boot):
      add  1. when the last segment is full (a roll): its acks held in RAM to a<k>, then index
           entries for its waiting records without one  2. with index=True: the index entry
           3. the record (the commit point: until it lands, an entry points at nothing or at
           another id's record)  4. when a new segment begins and the one before is fully
           acknowledged: remove its s<k>, then its a<k>
      ack  1. slot byte to a<k> (the commit point; held in RAM: none, a cut undoes the ack)
           2. if that completes a segment that is not the last: remove s<k>, then a<k> (an
           a<k> left without its s<k> is removed at boot)
    So after a power cut a message is there or not, an ack done or not: never doubled or lost.
    The id lookup of add/ack looks at the last segment's index in RAM, then reads one bucket
    (1/16 of the index).
    """

    def __init__(self, store, limit=None, segment=SEGMENT):
        if not 1 <= segment <= 255:
            raise ValueError("outbox segment: 1-255 records, not {}".format(segment))
        self.store = store
        self.problems = store.problems  # what was found damaged, as text (the Store's list)
        self.cap = segment
        self.writes = 0  # flash operations: file writes and appends, renames, removes
        self.dir = store.root.rstrip("/") + "/" + OUTBOX_DIR
        self._buf = bytearray(_ENTRY * 32)  # id index reads
        self._lbuf = bytearray(_PIECE)  # _holds: is a record's line complete (no allocation)
        self._keep = [-1] * BUCKETS  # entries per bucket after its last rewrite (-1: not seen)
        self._epoch = 0  # counts acks: a running walk re-reads the ack file when it changed
        self._cursors = {}  # the drop rules' resume points: rule -> (k, slot, offset)
        self._late = bytearray(4 * LATE)  # acks not yet on flash: segment 3, slot 1 each
        self._nlate = 0
        self._tix = bytearray(_TIX * segment)  # the last segment's ids (see the docstring)
        self._tix_ok = False  # _tix matches s<tail>; built from it at the first lookup
        self._head = self._tail = 0  # segments: none below head; tail takes new records
        self._records = self._size = 0  # the tail's records and bytes
        self._count = 0
        self._status = {}  # EvseID -> id of its newest waiting status (see offer)
        self._torn = False  # an append to the tail failed: recount it before the next
        try:
            os.mkdir(self.dir)
        except OSError:  # already there; anything else fails in the listing below
            pass
        self._boot()
        self._migrate()
        if limit is None:  # what the free flash holds (less a reserve), at most LIMIT
            st = os.statvfs(self.dir)
            limit = len(self) + (st[4] * st[1] - FLASH_KEEP) // FLASH_PER_MSG
            limit = LIMIT if limit > LIMIT else len(self) if limit < len(self) else limit
        self.limit = limit  # messages; add() raises OutboxFull beyond (offer() decides)

    def __len__(self):
        return self._count if self._count > 0 else 0

    # -- the only operations that change flash (tests replace them to cut the power) -------
    def _write(self, path, mode, data):
        """Write `data` (bytes, or an iterable of bytes) to `path` opened with `mode`: "ab"
        appends, "wb" creates. littlefs commits the file on close."""
        with open(path, mode) as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                for chunk in data:
                    f.write(chunk)
        self.writes += 1

    def _rename(self, src, dst):
        os.rename(src, dst)
        self.writes += 1

    def _remove(self, path):
        os.remove(path)
        self.writes += 1

    # -- boot ---------------------------------------------------------------------------
    def _path(self, kind, n):
        return "{}/{}{}".format(self.dir, kind, n)

    def _boot(self):
        """Find the segments and count what waits; finish an interrupted retirement, remove
        leftovers of interrupted writes, move foreign files aside (each reported once)."""
        cap = self.cap
        more = True
        while more:  # a second pass only when more than 16 files needed fixing
            more = False
            nseg = acked = nidx = 0
            head = tail = -1
            fix = []
            for entry in _ilistdir(self.dir):  # read to the end: littlefs closes it there
                name = entry[0]
                kind = name[:1]
                k = int(name[1:]) if name[1:].isdigit() and len(name) < 10 else -1
                if kind == "s" and k >= 0:
                    nseg += 1
                    head = k if head < 0 or k < head else head
                    tail = k if k > tail else tail
                    continue
                if kind == "a" and k >= 0:
                    n = self._flags(k)[1] if _exists(self._path("s", k)) else -1
                    if 0 <= n < cap:
                        acked += n
                        continue
                    acked += n if n > 0 else 0  # all acknowledged: retire it unless the last
                elif kind == "h" and 0 <= k < BUCKETS:
                    nidx += 1
                    continue
                elif name == "bad" or name.endswith(".bad"):
                    continue
                if len(fix) < 16:
                    fix.append(name)
                else:
                    more = True
            for name in fix:
                path = self.dir + "/" + name
                if name.endswith(".tmp"):
                    self.problems.append(path + ": left over from an interrupted write, removed")
                    self._remove(path)
                elif name[:1] == "a" and name[1:].isdigit():
                    k = int(name[1:])
                    if not _exists(self._path("s", k)):  # its segment went first
                        self._remove(path)
                    elif k != tail:
                        self._retire(k)
                        nseg -= 1
                        acked -= cap
                else:
                    self.problems.append("{}: not part of the outbox, moved to {}.bad".format(
                        path, path))
                    self._rename(path, path + ".bad")
        if nseg == 0:
            if nidx:
                self.problems.append(self.dir + ": an id index without messages, removed")
                for b in range(BUCKETS):
                    if _exists(self._path("h", b)):
                        self._remove(self._path("h", b))
            head = tail = 0
        self._head = head
        self._tail = tail
        self._records = cap if nseg else 0  # the tail is counted as full until it is read
        self._count = nseg * cap - acked
        self._repair_tail()

    def _repair_tail(self):
        """Count the complete records of the last segment (at boot, after a failed append):
        bytes after the last complete line (a write cut short on POSIX) are cut off."""
        path = self._path("s", self._tail)
        lines = size = total = 0
        try:
            f = open(path, "rb")
        except OSError:  # not begun yet
            f = None
        if f is not None:
            with f:
                while True:
                    chunk = f.read(_PIECE)
                    if not chunk:
                        break
                    lines += chunk.count(b"\n")
                    end = chunk.rfind(b"\n")
                    if end >= 0:
                        size = total + end + 1
                    total += len(chunk)
        if total > size:
            self.problems.append("{}: {} bytes of an incomplete record (interrupted write), cut "
                                 "off".format(path, total - size))
            self._write(path + ".tmp", "wb", self._copy(path, size))
            self._rename(path + ".tmp", path)
        records = lines if lines < self.cap else self.cap
        flags = self._flags(self._tail)[0]
        was = self._records - sum(flags[:self._records])  # what the count holds for the tail
        if records < self.cap and any(flags[records:]):
            # acks past the last record (damage): no new record may take an acknowledged
            # slot, so the rest is acknowledged too and the segment is closed
            gap = bytes([s for s in range(records, self.cap) if not flags[s]])
            if gap:
                self._write(self._path("a", self._tail), "ab", gap)
            for s in gap:
                flags[s] = 1
            records = self.cap
        self._count += records - sum(flags[:records]) - was
        self._records = records
        self._size = size
        self._torn = False
        self._tix_ok = False  # rebuilt from the segment at the next lookup

    def _copy(self, path, n):
        """The first `n` bytes of `path`, in chunks of up to 512 (never a file's size in RAM)."""
        with open(path, "rb") as f:
            while n > 0:
                chunk = f.read(n if n < 512 else 512)
                if not chunk:
                    return
                n -= len(chunk)
                yield chunk

    def _migrate(self):
        """Messages of the layout before segments (`outbox.<seq>` Store keys, a file each) move
        here in their order; each file is deleted after its add (a cut repeats no message: add
        is idempotent)."""
        store = self.store
        keys = store.keys(OUTBOX_PREFIX)
        n = len(OUTBOX_PREFIX)
        keys.sort(key=lambda key: int(key[n:]) if key[n:].isdigit() else 1 << 60)
        for key in keys:
            entry = store.get(key)  # not JSON: reported and moved aside by get()
            if isinstance(entry, dict) and _valid_id(entry.get("id")) and "msg" in entry:
                self._add(entry["id"], entry["msg"], None)
                store.put(key, None)
            elif entry is not None:
                path = store.root + "/" + key + _SUFFIX
                self.problems.append("{}: not an outbox entry, moved to {}.bad".format(path, path))
                os.rename(path, path + ".bad")

    # -- segments -----------------------------------------------------------------------
    def _flags(self, k, late=True):
        """(flags, n): flags (bytearray of `cap`) has 1 at each acknowledged slot of segment
        k, n is how many; with `late`, the acks held in RAM count too (without: only what a
        reboot would see). A byte out of range or repeated (damage) counts never / once."""
        cap = self.cap
        flags = bytearray(cap)
        n = 0
        try:
            f = open(self._path("a", k), "rb")
        except OSError:  # nothing acknowledged on flash yet
            data = b""
        else:
            with f:
                data = f.read()
        for slot in data:
            if slot < cap and not flags[slot]:
                flags[slot] = 1
                n += 1
        if late:
            lt = self._late
            for i in range(0, 4 * self._nlate, 4):
                slot = lt[i + 3]
                if lt[i] << 16 | lt[i + 1] << 8 | lt[i + 2] == k and slot < cap \
                        and not flags[slot]:
                    flags[slot] = 1
                    n += 1
        return flags, n

    def _retire(self, k):
        """Segment k is full and entirely acknowledged (on flash or in RAM): its files go,
        the records first (removing s<k> commits the acks held in RAM too)."""
        path = self._path("s", k)
        if _exists(path):
            self._remove(path)
        path = self._path("a", k)
        if _exists(path):
            self._remove(path)
        self._take_late(k)

    def _ack_slot(self, k, slot, durable=True):
        if durable:
            self._write(self._path("a", k), "ab", bytes((slot,)))
        else:
            i = 4 * self._nlate
            self._late[i:i + 4] = bytes((k >> 16 & 255, k >> 8 & 255, k & 255, slot))
            self._nlate += 1
        self._count -= 1
        self._epoch += 1
        if k != self._tail and self._flags(k)[1] == self.cap:
            self._retire(k)
        if self._nlate >= LATE:
            self.flush()

    def _take_late(self, k):
        """Remove segment k's acks from those held in RAM -> their slots (bytes)."""
        lt = self._late
        out = bytearray()
        j = 0
        for i in range(0, 4 * self._nlate, 4):
            if lt[i] << 16 | lt[i + 1] << 8 | lt[i + 2] == k:
                out.append(lt[i + 3])
            else:
                lt[j:j + 4] = lt[i:i + 4]
                j += 4
        self._nlate = j // 4
        return bytes(out)

    def _flush_seg(self, k):
        """Write segment k's acks held in RAM to a<k> (one append); they leave RAM only once
        written (a failed append keeps them)."""
        lt = self._late
        slots = bytearray()
        for i in range(0, 4 * self._nlate, 4):
            if lt[i] << 16 | lt[i + 1] << 8 | lt[i + 2] == k:
                slots.append(lt[i + 3])
        if slots:
            self._write(self._path("a", k), "ab", bytes(slots))
            self._take_late(k)

    def flush(self):
        """Write the acknowledgements held in RAM (ack(durable=False)): one append per
        segment they belong to. Call it before a planned restart; a power cut instead only
        brings those messages back (sent again, de-duplicated by id by the receiver)."""
        lt = self._late
        while self._nlate:
            self._flush_seg(lt[0] << 16 | lt[1] << 8 | lt[2])

    def _walk(self, k, slot, off, raw=False):
        """(k, slot, end offset, msg_id, msg) of each waiting record from segment k's `slot`
        (at byte `off`) on, oldest first. The segment is opened for each record and closed
        before it is handed out: the caller may acknowledge (and so delete) meanwhile. With
        `raw`, msg is the record's JSON text as stored (bytes), not
        decoded (see walk)."""
        cap = self.cap
        while k <= self._tail:
            epoch = -1
            flags = None
            gone = False
            while True:
                last = self._records if k == self._tail else cap
                if slot >= last:
                    break
                if epoch != self._epoch:
                    flags = self._flags(k)[0]
                    epoch = self._epoch
                try:
                    f = open(self._path("s", k), "rb")
                except OSError:  # retired
                    gone = True
                    break
                line = None
                with f:
                    f.seek(off)
                    while slot < last:
                        line = _readline(f)
                        if not line:
                            break
                        off = f.tell()
                        slot += 1
                        if not flags[slot - 1]:
                            break
                        line = None
                if not line:
                    if slot < last:
                        self._lost(k, slot, last)
                    break
                msg_id, msg = self._parse(line, k, slot - 1, raw)
                if msg_id is not None:
                    yield k, slot - 1, off, msg_id, msg
            if gone and k == self._head and k < self._tail:
                self._head = k + 1
            k += 1
            slot = off = 0

    def _parse(self, line, k, slot, raw=False):
        """(msg_id, msg) of a record line; a damaged one is reported, copied to `bad` and
        acknowledged (so reported once) -> (None, None). With `raw`, msg is the stored JSON
        object as bytes (the line's body, without the LF), only checked to be one."""
        i = line.find(b"\t")
        msg_id = msg = None
        if i > 0 and line[-1] == 10:
            try:
                msg_id = json.loads(line[:i])
                if raw:
                    if line[i + 1] != 123 or line[-2] != 125:  # { ... }
                        raise ValueError("not a JSON object")
                    msg = line[i + 1:-1]
                else:
                    msg = json.loads(line[i + 1:])
            except (ValueError, IndexError):
                msg_id = None
        if _valid_id(msg_id):
            return msg_id, msg
        self.problems.append("{}/s{} record {}: damaged ({} bytes), moved to {}/bad".format(
            self.dir, k, slot, len(line), self.dir))
        self._write(self.dir + "/bad", "ab", line if line[-1] == 10 else line + b"\n")
        self._ack_slot(k, slot)
        return None, None

    def _lost(self, k, slot, last):
        """Segment k ends at record `slot` although it holds `last` (damage): the missing
        records are reported and count as acknowledged, with the slots after them (so nothing
        is appended behind the gap)."""
        flags = self._flags(k)[0]
        gap = bytes([s for s in range(slot, self.cap) if not flags[s]])
        lost = 0
        for s in gap:
            lost += s < last
        if lost:
            self.problems.append("{}/s{}: ends after {} records, {} lost".format(
                self.dir, k, slot, lost))
        if gap:
            self._write(self._path("a", k), "ab", gap)
            self._count -= lost
            self._epoch += 1
        if k == self._tail:
            self._records = self.cap  # the next record begins a new segment
        elif self._flags(k)[1] == self.cap:
            self._retire(k)

    # -- id index -------------------------------------------------------------------------
    def _scan(self, b, h, idj):
        """Look id `idj` (JSON bytes, hash h) up in bucket b -> ((k, slot) of its waiting
        record or None, entries read, whether the file ends in a partial entry)."""
        try:
            f = open(self._path("h", b), "rb")
        except OSError:  # no id in this bucket yet
            return None, 0, False
        buf = self._buf
        h0 = h >> 16
        h1 = h >> 8 & 255
        h2 = h & 255
        n = 0
        with f:
            while True:
                got = f.readinto(buf)
                if not got:
                    return None, n, False
                i = 0
                while i + _ENTRY <= got:
                    if buf[i] == h0 and buf[i + 1] == h1 and buf[i + 2] == h2:
                        k = buf[i + 3] << 16 | buf[i + 4] << 8 | buf[i + 5]
                        off = buf[i + 7] << 16 | buf[i + 8] << 8 | buf[i + 9]
                        if self._holds(k, buf[i + 6], off, idj):
                            return (k, buf[i + 6]), n, False
                    n += 1
                    i += _ENTRY
                if got < len(buf):
                    return None, n, i < got

    def _holds(self, k, slot, off, idj):
        """Whether record `slot` of segment k, at byte `off`, waits and has the id `idj`."""
        if k < self._head or k > self._tail \
                or slot >= (self._records if k == self._tail else self.cap) \
                or self._flags(k)[0][slot]:
            return False
        try:
            f = open(self._path("s", k), "rb")
        except OSError:  # retired
            return False
        with f:
            f.seek(off)
            head = idj + b"\t"
            if f.read(len(head)) != head:  # most hints point at another id: no line read
                return False
            # the line is whole if its LF is there: read into a kept buffer, not a new line
            # of up to MSG_MAX bytes per lookup (an ack of each of 50 waiting CDRs under TLS
            # failed a 583-byte allocation at 128k: tools/bench_uplink.py, mqtts drain)
            buf = self._lbuf
            left = MSG_MAX
            while left > 0:
                got = f.readinto(buf)
                if not got:
                    return False
                if buf.find(b"\n", 0, got) >= 0:
                    return True
                left -= got
        return False

    def _compact(self, b):
        """Rewrite bucket b without the entries that cannot point at a waiting record."""
        path = self._path("h", b)
        kept = [0]
        self._write(path + ".tmp", "wb", self._live_entries(path, kept))
        self._rename(path + ".tmp", path)
        self._keep[b] = kept[0]

    def _live_entries(self, path, kept):
        buf = self._buf
        seen = -1
        flags = None
        last = 0
        with open(path, "rb") as f:
            while True:
                got = f.readinto(buf)
                if not got:
                    return
                out = bytearray()
                i = 0
                while i + _ENTRY <= got:
                    k = buf[i + 3] << 16 | buf[i + 4] << 8 | buf[i + 5]
                    if k != seen:  # entries come in segment order: one look per segment
                        seen = k
                        flags = None
                        if self._head <= k <= self._tail and _exists(self._path("s", k)):
                            # acks held in RAM keep their entries: a power cut brings
                            # those records back, and they must stay findable
                            flags = self._flags(k, False)[0]
                        last = self._records if k == self._tail else self.cap
                    slot = buf[i + 6]
                    if flags is not None and slot < last and not flags[slot]:
                        out.extend(buf[i:i + _ENTRY])
                        kept[0] += 1
                    i += _ENTRY
                if out:
                    yield bytes(out)
                if got < len(buf):
                    return

    # -- the last segment's id index (RAM) ------------------------------------------------
    def _tail_index(self):
        """Fill _tix from s<tail> if it does not match it (after boot or a repair): each
        record's id hash and byte offset; "on flash" unknown (0: a second entry at the roll
        is harmless)."""
        if self._tix_ok:
            return
        tix = self._tix
        for i in range(len(tix)):
            tix[i] = 0
        try:
            f = open(self._path("s", self._tail), "rb")
        except OSError:  # not begun yet
            f = None
        if f is not None:
            with f:
                off = slot = 0
                while slot < self._records:
                    piece = f.readline(_PIECE)
                    if not piece:
                        break
                    start = off
                    h = 5381
                    in_id = True
                    while True:
                        if in_id:
                            t = piece.find(b"\t")
                            for c in (piece if t < 0 else piece[:t]):
                                h = (h * 33 ^ c) & 0xFFFFFF
                            in_id = t < 0
                        off += len(piece)
                        if piece[-1] == 10:
                            break
                        piece = f.readline(_PIECE)
                        if not piece:
                            break
                    self._tix_set(slot, h, start)
                    slot += 1
        self._tix_ok = True

    def _tix_set(self, slot, h, off):
        i = slot * _TIX
        self._tix[i:i + _TIX] = bytes((h >> 16, h >> 8 & 255, h & 255, off >> 16 & 255,
                                       off >> 8 & 255, off & 255))

    def _find(self, h, idj):
        """(k, slot) of the waiting record with id `idj` (JSON bytes, hash h), or None; then
        the entries read in bucket h % BUCKETS and whether it ends in a partial entry."""
        self._tail_index()
        tix = self._tix
        h0 = h >> 16
        h1 = h >> 8 & 255
        h2 = h & 255
        i = 0
        for slot in range(self._records):
            if tix[i] == h0 and tix[i + 1] == h1 and tix[i + 2] == h2 and self._holds(
                    self._tail, slot, (tix[i + 3] & 127) << 16 | tix[i + 4] << 8 | tix[i + 5],
                    idj):
                return (self._tail, slot), 0, False
            i += _TIX
        return self._scan(h % BUCKETS, h, idj)

    def _roll(self):
        """The last segment is full: the next record begins segment tail + 1. Before that,
        the segment's acks held in RAM are written (so what is not acknowledged on flash is
        what waits) and each waiting record without an index entry gets one (one append
        per bucket concerned; none when everything in it was acknowledged)."""
        k = self._tail
        self._flush_seg(k)
        flags = self._flags(k)[0]
        tix = self._tix
        for b in range(BUCKETS):
            out = bytearray()
            slots = []
            i = 0
            for slot in range(self._records):
                if not flags[slot] and not tix[i + 3] & 128 and \
                        (tix[i] << 16 | tix[i + 1] << 8 | tix[i + 2]) % BUCKETS == b:
                    out.extend(tix[i:i + 3])
                    out.extend(bytes((k >> 16 & 255, k >> 8 & 255, k & 255, slot)))
                    out.append(tix[i + 3] & 127)
                    out.extend(tix[i + 4:i + 6])
                    slots.append(slot)
                i += _TIX
            if slots:
                self._append_entries(b, bytes(out))
                for slot in slots:
                    tix[slot * _TIX + 3] |= 128
        self._tail = k + 1
        self._records = self._size = 0
        self._tix_ok = True  # an empty segment: nothing to read

    def _append_entries(self, b, data):
        """Append index entries to bucket b, rewriting it first when it ends in a partial
        entry (a torn append) or has doubled since its last rewrite."""
        path = self._path("h", b)
        try:
            size = os.stat(path)[6]
        except OSError:  # no entry in this bucket yet
            size = 0
        n = size // _ENTRY
        if self._keep[b] < 0:
            self._keep[b] = n
        if size % _ENTRY or n > 2 * self._keep[b] + self.cap:
            self._compact(b)
        self._write(path, "ab", data)

    # -- the interface ----------------------------------------------------------------------
    def offer(self, msg):
        """Add a durable message (a dict with "id" and "type") under the outbox's policy; ->
        a list of problems to report (empty when it simply went in). One flash write as a
        rule: the record (its index entry waits, see the docstring).
        - An EVSE status supersedes the one still waiting for the same EvseID (remembered
          since boot): the older is dropped, so at most one status per EVSE waits.
        - Full (`limit`): the oldest Progress notification is dropped (said); when none
          waits, the oldest message that is not a CDR; a CDR is never dropped: when only CDRs
          wait, the limit grows by one (said) -- flash holds more than the limit, which keeps
          FLASH_KEEP free.
        Drops and superseded statuses are acknowledgements held in RAM (ack(durable=False)):
        a power cut may bring one back, never lose one."""
        said = []
        msg_id = msg["id"]
        if msg.get("type") == "evse_status":
            ev = msg.get("EvseID")
            old = self._status.get(ev)
            if old is not None and old != msg_id:
                self.ack(old, False)  # superseded: the newer status says all the older did
            self._status[ev] = msg_id
        try:
            self._add(msg_id, msg, self.limit, False)
        except OutboxFull:
            while self._count >= self.limit:  # more than one after a cut undid held drops
                dropped = self._drop(_PROGRESS, False) or self._drop("!cdr", False)
                if dropped is None:
                    self.limit = self._count + 1
                    said.append("outbox full of CDRs: limit raised to {}".format(self.limit))
                    break
                m = dropped[1]
                kind = m.get("type") if isinstance(m, dict) else "?"
                if kind == "notification":
                    kind += " " + str(m.get("Type"))
                said.append("outbox full: dropped {} {} to make room".format(kind, dropped[0]))
            self._add(msg_id, msg, self.limit, False)
        return said

    def add(self, msg_id, msg, index=True):
        """Persist `msg` (JSON-able) under `msg_id` (str or int) after everything waiting.
        An id already waiting is kept once -> False. OutboxFull at `limit` messages;
        ValueError / TypeError for a bad id or message; nothing is written then. `index`:
        write its id index entry now (2 writes); False: when its segment is full, and only
        if it still waits then (1 write; offer() adds so)."""
        return self._add(msg_id, msg, self.limit, index)

    def _add(self, msg_id, msg, limit, index=True):
        if not _valid_id(msg_id):
            raise ValueError("outbox id {!r}: must be a str or int".format(msg_id))
        _check_jsonable(msg)
        idj = json.dumps(msg_id).encode()
        body = json.dumps(msg).encode()
        size = len(idj) + len(body) + 2
        if size > MSG_MAX:
            raise ValueError("outbox message {!r}: {} bytes, at most {}".format(
                msg_id, size, MSG_MAX))
        if self._torn:
            self._repair_tail()
        h = _hash(idj)
        b = h % BUCKETS
        hit, n, torn = self._find(h, idj)
        if hit is not None:
            return False
        if limit is not None and self._count >= limit:
            raise OutboxFull("outbox full ({}): {!r} not added".format(limit, msg_id))
        if self._records >= self.cap:  # the last segment is full: begin the next
            self._roll()
        k = self._tail
        slot = self._records
        off = self._size
        if index:
            if self._keep[b] < 0:
                self._keep[b] = n
            if torn or n > 2 * self._keep[b] + self.cap:
                self._compact(b)
            self._write(self._path("h", b), "ab", bytes((
                h >> 16, h >> 8 & 255, h & 255, k >> 16 & 255, k >> 8 & 255, k & 255,
                slot, off >> 16, off >> 8 & 255, off & 255)))
        self._torn = True  # until the record is known to be complete
        self._write(self._path("s", k), "ab", (idj, b"\t", body, b"\n"))  # one line
        self._torn = False
        self._tix_set(slot, h, off | (1 << 23 if index else 0))
        self._records = slot + 1
        self._size = off + size
        self._count += 1
        if slot == 0 and k > self._head and self._flags(k - 1)[1] == self.cap:
            self._retire(k - 1)
        return True

    def ack(self, msg_id, durable=True):
        """The bridge confirmed `msg_id`: it no longer waits (acks come in any order).
        An id that is not waiting -> False. `durable`: written now (1 append); False: held
        in RAM until LATE are held, its segment rolls over or retires, or flush() (a power
        cut before that brings the message back: sent again, de-duplicated by id)."""
        if not _valid_id(msg_id):
            return False
        idj = json.dumps(msg_id).encode()
        hit = self._find(_hash(idj), idj)[0]
        if hit is None:
            return False
        self._ack_slot(hit[0], hit[1], durable)
        return True

    def walk(self, pos=None, raw=False):
        """(pos, msg_id, msg) of each waiting message after position `pos` (None: from the
        oldest), oldest first, read from flash as consumed. `pos` of an item resumes right
        after it: a sender keeps the last one and walks on later, also after acks (a segment
        that was deleted meanwhile is skipped) and adds (they come after it). With `raw`, msg
        is the stored JSON text (bytes) instead of a decoded dict: the
        uplink publishes it as it is, without the dict and the re-encoded copy (~2 KB of
        garbage per CDR, which a heap near its end at 128k could not always give)."""
        k, slot, off = (self._head, 0, 0) if pos is None else pos
        for item in self._walk(k, slot, off, raw):
            yield (item[0], item[1] + 1, item[2]), item[3], item[4]

    def pending(self):
        """(msg_id, msg) of each waiting message, oldest first: a generator that reads flash
        as it is consumed, never the backlog into RAM."""
        for item in self._walk(self._head, 0, 0):
            yield item[3], item[4]

    def drop_oldest(self, keep_type, durable=True):
        """Acknowledge (drop) the oldest waiting message whose "type" is not `keep_type` ->
        its (msg_id, msg), or None when every waiting message is a `keep_type`."""
        return self._drop("!" + keep_type, durable)

    def _drop(self, rule, durable):
        """Acknowledge the oldest waiting message that `rule` picks ("!<type>": any whose
        "type" is not <type>; _PROGRESS: a Progress notification) -> (msg_id, msg) or None.
        Resumes where the rule's last call stopped (nothing before it matched, and new
        messages only come after), so a backlog is read once, not per call."""
        c = self._cursors.get(rule) or (self._head, 0, 0)
        for k, slot, end, msg_id, msg in self._walk(c[0], c[1], c[2]):
            d = msg if isinstance(msg, dict) else {}
            if rule == _PROGRESS:
                hit = d.get("type") == "notification" and d.get("Type") == _PROGRESS
            else:
                hit = d.get("type") != rule[1:]
            if not hit:
                self._cursors[rule] = (k, slot + 1, end)
                continue
            self._ack_slot(k, slot, durable)
            return msg_id, msg
        return None
