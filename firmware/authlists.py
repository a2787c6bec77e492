"""Local authorization list, cache of positive online answers, and the offline decision.

The local list is kept as ONE sorted bytes blob of fixed 11-byte records (length byte + UID
bytes padded to 10) and searched by bisection: 100 UIDs cost about 1.1 KB instead of a set of
100 string objects. Changing the list rebuilds the blob (rare: on a backend update).

The cache holds positive answers only, keyed by UID, timed with `ticks_ms` values and compared
with `ticks_diff`. On the ESP32 ticks wrap at 2**30 ms, so an age is only meaningful below
2**29 ms (~6.2 days): the TTL is clamped to that, and the owner should call `purge(now)` at
least once a day so an entry never sits untouched long enough to wrap around and look fresh.
"""

import binascii

from firmware.ids import normalize_uid
from hal.compat import const, ticks_diff

_REC = const(11)  # 1 length byte + up to 10 UID bytes
_CREC = const(19)  # cache record: a UID record + the 8-byte tick it was stored at
_GROW = const(16)  # cache records added at a time
_DROP = const(0xFF)  # length byte marking a record to drop (sorts after every real record)
MAX_TTL_MS = 1 << 29  # half the ESP32 tick period: larger ages alias under ticks_diff
DEFAULT_MAX_ENTRIES = 500  # bounded by the JSON message that carries a full list

POLICIES = ("deny", "local_only", "local_and_cache", "free_vend")


class VersionMismatch(ValueError):
    """A delta's base version is not ours (or does not move forward); nothing was changed."""


def _check_version(v, what):
    if type(v) is not int or v < 0:  # type, not isinstance: a bool is an int to isinstance
        raise ValueError("{} {!r}: must be an integer >= 0".format(what, v))


def _check_list(uids, what):
    if isinstance(uids, (str, bytes)) or not isinstance(uids, (list, tuple)):
        raise ValueError("{}: must be a list of UID strings".format(what))


def _put_record(buf, i, uid):
    """Write the record of `uid` (validated, any case) at slot i of buf; raises IdError."""
    raw = binascii.unhexlify(normalize_uid(uid))
    off = i * _REC
    buf[off] = len(raw)
    buf[off + 1:off + 1 + len(raw)] = raw
    for k in range(off + 1 + len(raw), off + _REC):
        buf[k] = 0  # the slot may be reused (removal scratch): keep the padding zero


def _cmp(a, ao, b, bo):
    """Compare the records at a[ao:] and b[bo:] byte by byte (no slices, no allocation)."""
    for k in range(_REC):
        x = a[ao + k]
        y = b[bo + k]
        if x != y:
            return -1 if x < y else 1
    return 0


def _swap(buf, i, j):
    i *= _REC
    j *= _REC
    for k in range(_REC):
        buf[i + k], buf[j + k] = buf[j + k], buf[i + k]


def _sift(buf, root, end):
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and _cmp(buf, child * _REC, buf, (child + 1) * _REC) < 0:
            child += 1
        if _cmp(buf, root * _REC, buf, child * _REC) >= 0:
            return
        _swap(buf, root, child)
        root = child


def _sort_unique(buf, n):
    """Heapsort n records in place, then squeeze out duplicates and dropped ones -> count.

    Works inside the one buffer: a list of 500 small bytes objects would fragment a 128 KB
    heap badly enough that the next 4 KB allocation fails (measured on the unix port).
    """
    for root in range(n // 2 - 1, -1, -1):
        _sift(buf, root, n)
    for end in range(n - 1, 0, -1):
        _swap(buf, 0, end)
        _sift(buf, 0, end)
    m = 0
    for i in range(n):
        off = i * _REC
        if buf[off] == _DROP:
            break  # dropped records sort last
        if m and _cmp(buf, off, buf, (m - 1) * _REC) == 0:
            continue
        if m != i:
            buf[m * _REC:(m + 1) * _REC] = buf[off:off + _REC]
        m += 1
    return m


def _hex_at(blob, off):
    return binascii.hexlify(blob[off + 1:off + 1 + blob[off]]).decode().upper()


class LocalList:
    """UIDs that may charge without asking the backend; `version` 0 = empty / never loaded."""

    def __init__(self, max_entries=DEFAULT_MAX_ENTRIES):
        self.version = 0
        self.max_entries = max_entries
        self._blob = b""

    def __len__(self):
        return len(self._blob) // _REC

    def _commit(self, version, buf, n):
        m = _sort_unique(buf, n)
        if m > self.max_entries:
            raise ValueError("local list: {} UIDs, more than the limit of {}"
                             .format(m, self.max_entries))
        self._blob = bytes(memoryview(buf)[:m * _REC])
        self.version = version

    def replace(self, version, uids):
        """Full replace; every UID is validated before anything changes."""
        _check_version(version, "local list version")
        _check_list(uids, "local list uids")
        buf = bytearray(len(uids) * _REC)
        for i, u in enumerate(uids):
            _put_record(buf, i, u)
        self._commit(version, buf, len(uids))

    def apply_delta(self, base_version, new_version, add=(), remove=()):
        """Apply an update made against `base_version`; raise VersionMismatch (unchanged) if
        that is not our version or `new_version` does not move forward."""
        _check_version(base_version, "base_version")
        _check_version(new_version, "new_version")
        _check_list(add, "add")
        _check_list(remove, "remove")
        if base_version != self.version:
            raise VersionMismatch("local list delta: base_version {} but we have {}"
                                  .format(base_version, self.version))
        if new_version <= base_version:
            raise VersionMismatch("local list delta: new_version {} must be > base_version {}"
                                  .format(new_version, base_version))
        old = len(self)
        buf = bytearray((old + len(add)) * _REC + _REC)  # last slot: scratch for a removal key
        buf[:old * _REC] = self._blob
        for i, u in enumerate(add):
            _put_record(buf, old + i, u)
        scratch = old + len(add)
        for u in remove:
            _put_record(buf, scratch, u)
            for i in range(old, scratch):
                if _cmp(buf, i * _REC, buf, scratch * _REC) == 0:
                    raise ValueError("local list delta: UID {} is in both add and remove"
                                     .format(_hex_at(buf, i * _REC)))
            i = self._find(buf, scratch * _REC)
            if i >= 0:
                buf[i * _REC] = _DROP
        self._commit(new_version, buf, scratch)

    def _find(self, key, koff):
        """Slot of the record equal to key[koff:koff+11] in the blob, or -1 (bisection)."""
        b = self._blob
        lo, hi = 0, len(b) // _REC
        while lo < hi:
            mid = (lo + hi) // 2
            c = _cmp(b, mid * _REC, key, koff)
            if c == 0:
                return mid
            if c < 0:
                lo = mid + 1
            else:
                hi = mid
        return -1

    def contains(self, uid):
        """True if `uid` (any case) is on the list; raises IdError for a malformed UID."""
        key = bytearray(_REC)
        _put_record(key, 0, uid)
        return self._find(key, 0) >= 0

    def uids(self):
        """The UIDs in record order (4-byte ones first); allocates, for persistence and tests.
        The list is sized before the first string is made: grown by appends, its last doubling
        needs one free block of 8 bytes per UID after the strings and their garbage have
        scattered over the heap (that failed at -X heapsize=64k, measured)."""
        b = self._blob
        out = [None] * (len(b) // _REC)
        for i in range(len(out)):
            out[i] = _hex_at(b, i * _REC)
        return out

    def to_json(self):
        return {"version": self.version, "uids": self.uids()}

    @classmethod
    def from_json(cls, d, max_entries=DEFAULT_MAX_ENTRIES):
        """Rebuild from `to_json()` output; raises ValueError/IdError on anything malformed."""
        if not isinstance(d, dict) or "version" not in d or "uids" not in d:
            raise ValueError("local list: must be an object with 'version' and 'uids'")
        lst = cls(max_entries)
        lst.replace(d["version"], d["uids"])
        return lst


class AuthCache:
    """Bounded cache of POSITIVE online authorization results; the oldest entry is evicted.

    Like LocalList, entries are fixed 19-byte records in ONE bytearray (grown as needed):
    length byte + UID padded to 10 + the 8-byte tick it was stored at (length 0 = free slot).
    100 entries cost ~1.9 KB instead of ~12 KB of dict, strings and tuples. The rare stop ids
    live in a small dict keyed by UID. `size` 0 disables the cache. `ttl_ms` is clamped to
    MAX_TTL_MS (see module docstring). Size and TTL are validated by firmware.config.
    """

    def __init__(self, size=100, ttl_ms=86_400_000):
        self.size = size
        self.ttl_ms = min(ttl_ms, MAX_TTL_MS)
        self._buf = bytearray(0)  # grows by _GROW records up to size (no 1.9 KB block at boot)
        self._n = 0
        self._stops = {}  # uid -> tuple of stop ids, only for entries that have them

    def __len__(self):
        return self._n

    def _stored(self, off):
        return int.from_bytes(self._buf[off + _REC:off + _CREC], "big")

    def _expired(self, off, now):
        age = ticks_diff(now, self._stored(off))
        return age < 0 or age >= self.ttl_ms

    def _drop(self, off):
        buf = self._buf
        self._stops.pop(_hex_at(buf, off), None)
        buf[off] = 0
        self._n -= 1

    def _find(self, key):
        """Offset of the record holding key (an 11-byte record), or -1."""
        buf = self._buf
        for off in range(0, len(buf), _CREC):
            if buf[off] and _cmp(buf, off, key, 0) == 0:
                return off
        return -1

    def purge(self, now):
        """Drop every expired entry; returns how many were dropped."""
        gone = 0
        buf = self._buf
        for off in range(0, len(buf), _CREC):
            if buf[off] and self._expired(off, now):
                self._drop(off)
                gone += 1
        return gone

    def put(self, uid, now, stop_ids=None):
        """Remember a positive answer for `uid` at tick `now` (refreshes an existing one)."""
        key = bytearray(_REC)
        _put_record(key, 0, uid)
        if self.size == 0:
            return
        if stop_ids is not None and not isinstance(stop_ids, tuple):
            stop_ids = tuple(stop_ids)
        buf = self._buf
        off = self._find(key)
        if off < 0:
            if self._n >= self.size:
                self.purge(now)
            if self._n >= self.size:
                oldest_age = -1
                for o in range(0, len(buf), _CREC):
                    age = ticks_diff(now, self._stored(o))
                    if age > oldest_age:
                        off, oldest_age = o, age
                self._drop(off)
            else:
                off = 0
                while off < len(buf) and buf[off]:
                    off += _CREC
                if off == len(buf):
                    buf.extend(bytes(min(_GROW, self.size - self._n) * _CREC))
            self._n += 1
        buf[off:off + _REC] = key
        buf[off + _REC:off + _CREC] = now.to_bytes(_CREC - _REC, "big")
        u = _hex_at(key, 0)
        if stop_ids is None:
            self._stops.pop(u, None)
        else:
            self._stops[u] = stop_ids

    def get(self, uid, now):
        """The stop ids of a live entry for `uid` (a tuple, empty if none were given), or None
        if absent or expired (an expired one is dropped)."""
        key = bytearray(_REC)
        _put_record(key, 0, uid)
        off = self._find(key)
        if off < 0:
            return None
        if self._expired(off, now):
            self._drop(off)
            return None
        return self._stops.get(_hex_at(key, 0), ())

    def remove(self, uid):
        """Forget `uid` (e.g. after the backend refused it); True if it was cached."""
        key = bytearray(_REC)
        _put_record(key, 0, uid)
        off = self._find(key)
        if off < 0:
            return False
        self._drop(off)
        return True


def offline_decision(policy, uid, local_list, cache, now):
    """May `uid` charge while the backend is unreachable? -> (allowed, source).

    policy: "deny" | "local_only" | "local_and_cache" | "free_vend";
    source: "local" | "cache" | "free_vend" | "none". `uid` may be None only for free vend
    (nobody identified); `cache` may be None when the policy does not use it.
    """
    if policy == "free_vend":
        return True, "free_vend"
    if policy not in POLICIES:
        raise ValueError("offline policy {!r}: must be one of {}".format(policy, POLICIES))
    if policy == "deny" or uid is None:
        return False, "none"
    if local_list is not None and local_list.contains(uid):
        return True, "local"
    if policy == "local_and_cache" and cache is not None and cache.get(uid, now) is not None:
        return True, "cache"
    return False, "none"
