"""Local list, auth cache and the offline decision (both interpreters)."""

import gc

from firmware.authlists import (
    MAX_TTL_MS,
    AuthCache,
    LocalList,
    VersionMismatch,
    offline_decision,
)
from firmware.ids import IdError
from hal.compat import MICROPYTHON, ticks_add

A, B, C, D = "04A1B2C3", "04A1B2C3D4E580", "0102030405060708090A", "DEADBEEF"


def _uids(n):
    return ["04{:012X}".format(i * 7919 + 1) for i in range(n)]


def _raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("{} not raised".format(exc.__name__))


def test_empty_list():
    lst = LocalList()
    assert lst.version == 0 and len(lst) == 0
    assert not lst.contains(A)
    assert lst.to_json() == {"version": 0, "uids": []}


def test_replace_and_contains_any_case():
    lst = LocalList()
    lst.replace(3, [A.lower(), B, C, A])
    assert lst.version == 3 and len(lst) == 3
    for uid in (A, A.lower(), B, C, C.lower()):
        assert lst.contains(uid), uid
    assert not lst.contains(D)
    assert not lst.contains("04A1B2C3D4E581")
    _raises(IdError, lst.contains, "XYZ")


def test_replace_with_a_bad_uid_changes_nothing():
    lst = LocalList()
    lst.replace(1, [A])
    for version, uids, exc in ((2, [B, "nothex!!"], IdError), (2, [B, "123"], IdError),
                               (-1, [B], ValueError), ("2", [B], ValueError),
                               (2, A, ValueError)):
        _raises(exc, lst.replace, version, uids)
        assert lst.version == 1 and lst.uids() == [A]


def test_replace_respects_max_entries():
    lst = LocalList(max_entries=2)
    e = _raises(ValueError, lst.replace, 1, [A, B, C])
    assert "limit of 2" in str(e) and lst.version == 0 and len(lst) == 0


def test_apply_delta():
    lst = LocalList()
    lst.replace(5, [A, B])
    lst.apply_delta(5, 6, add=[C], remove=[A.lower()])
    assert lst.version == 6 and sorted(lst.uids()) == sorted([B, C])
    lst.apply_delta(6, 9, remove=[D])  # removing an absent UID is harmless
    assert lst.version == 9 and len(lst) == 2


def test_apply_delta_rejections_leave_state_unchanged():
    lst = LocalList()
    lst.replace(5, [A, B])
    for kwargs, exc, fragment in (
        (dict(base_version=4, new_version=6, add=[C]), VersionMismatch, "we have 5"),
        (dict(base_version=5, new_version=5, add=[C]), VersionMismatch, "must be >"),
        (dict(base_version=5, new_version=4, add=[C]), VersionMismatch, "must be >"),
        (dict(base_version=5, new_version=6, add=[C, "zz"]), IdError, "UID"),
        (dict(base_version=5, new_version=6, remove=["zz"]), IdError, "UID"),
        (dict(base_version=5, new_version=6, add=[C], remove=[C]), ValueError, "both"),
    ):
        e = _raises(exc, lst.apply_delta, **kwargs)
        assert fragment in str(e), str(e)
        assert lst.version == 5 and sorted(lst.uids()) == sorted([A, B])


def test_json_roundtrip():
    lst = LocalList()
    lst.replace(7, [A, B, C])
    back = LocalList.from_json(lst.to_json())
    assert back.version == 7 and sorted(back.uids()) == sorted([A, B, C])
    for bad in ({}, {"version": 1}, {"version": 1, "uids": ["x"]}, [], None):
        _raises(ValueError, LocalList.from_json, bad)


def test_large_list_lookup():
    gc.collect()
    uids = _uids(300)
    lst = LocalList()
    lst.replace(1, uids)
    for u in uids:
        assert lst.contains(u)
    assert not lst.contains("04FFFFFFFFFFFF")


def test_cache_put_get_and_stop_ids():
    cache = AuthCache(size=3, ttl_ms=1000)
    cache.put(A.lower(), 100, stop_ids=[B])
    assert cache.get(A, 500) == (B,)
    cache.put(C, 100)
    assert cache.get(C, 500) == ()  # a hit without stop ids
    assert cache.get(B, 500) is None
    assert len(cache) == 2


def test_cache_expiry_drops_entry():
    cache = AuthCache(size=3, ttl_ms=1000)
    cache.put(A, 100)
    assert cache.get(A, 1099) is not None
    assert cache.get(A, 1100) is None
    assert len(cache) == 0


def test_cache_evicts_oldest_and_refresh_counts_as_new():
    cache = AuthCache(size=2, ttl_ms=10_000)
    cache.put(A, 0)
    cache.put(B, 10)
    cache.put(A, 20)  # refresh: B is now the oldest
    cache.put(C, 30)
    assert cache.get(B, 40) is None
    assert cache.get(A, 40) is not None and cache.get(C, 40) is not None
    assert len(cache) == 2


def test_cache_full_of_expired_entries_purges_first():
    cache = AuthCache(size=2, ttl_ms=100)
    cache.put(A, 0)
    cache.put(B, 50)
    cache.put(C, 120)  # A expired: purged, B stays
    assert len(cache) == 2 and cache.get(B, 120) is not None


def test_cache_remove_size_zero_and_ttl_clamp():
    cache = AuthCache(size=2)
    cache.put(A, 0)
    assert cache.remove(A.lower()) and not cache.remove(A)
    off = AuthCache(size=0)
    off.put(A, 0)
    assert len(off) == 0 and off.get(A, 0) is None
    assert AuthCache(ttl_ms=10 ** 10).ttl_ms == MAX_TTL_MS == 1 << 29
    assert AuthCache().ttl_ms == 86_400_000
    _raises(IdError, cache.put, "bad", 0)


def test_cache_across_the_tick_wrap():
    if MICROPYTHON:
        return  # the unix port's tick period is 2**62; the ESP32 wrap is emulated on CPython
    wrap = 1 << 30
    t0 = wrap - 300
    cache = AuthCache(size=2, ttl_ms=1000)
    cache.put(A, t0)
    assert cache.get(A, ticks_add(t0, 999)) is not None  # 699 after the wrap
    assert cache.get(A, ticks_add(t0, 1000)) is None


def test_offline_decision_table():
    lst = LocalList()
    lst.replace(1, [A])
    cache = AuthCache(size=5, ttl_ms=1000)
    cache.put(B, 0)
    for policy, uid, want in (
        ("deny", A, (False, "none")),
        ("local_only", A, (True, "local")),
        ("local_only", B, (False, "none")),
        ("local_only", C, (False, "none")),
        ("local_and_cache", A, (True, "local")),
        ("local_and_cache", B, (True, "cache")),
        ("local_and_cache", C, (False, "none")),
        ("free_vend", C, (True, "free_vend")),
        ("free_vend", None, (True, "free_vend")),
        ("local_only", None, (False, "none")),
    ):
        assert offline_decision(policy, uid, lst, cache, 10) == want, (policy, uid)
    assert offline_decision("local_and_cache", B, lst, cache, 2000) == (False, "none")
    assert offline_decision("local_and_cache", A, lst, None, 0) == (True, "local")
    _raises(ValueError, offline_decision, "allow", A, lst, cache, 0)


def _heap_cost(build):
    gc.collect()
    before = gc.mem_alloc()
    obj = build()
    gc.collect()
    cost = gc.mem_alloc() - before
    assert obj is not None
    return cost


def test_memory_for_100_uids():
    if not MICROPYTHON:
        return  # gc.mem_alloc exists only on MicroPython
    uids = _uids(100)

    def local():
        lst = LocalList()
        lst.replace(1, uids)
        return lst

    def cache():
        c = AuthCache(size=100)
        for i, u in enumerate(uids):
            c.put(u, i)
        return c

    local_cost = _heap_cost(local)
    cache_cost = _heap_cost(cache)
    print("heap: LocalList(100) = {} B, AuthCache(100) = {} B".format(local_cost, cache_cost))
    assert local_cost < 2048, local_cost
    assert cache_cost < 3072, cache_cost  # fixed records: ~1.9 KB for 100
