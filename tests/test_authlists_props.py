"""LocalList and AuthCache behave like simple set/dict models (hypothesis, CPython)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.authlists import AuthCache, LocalList, VersionMismatch
from firmware.ids import IdError

HEX = "0123456789abcdefABCDEF"
uid_st = st.one_of(
    st.text(HEX, min_size=8, max_size=8),
    st.text(HEX, min_size=14, max_size=14),
    st.text(HEX, min_size=20, max_size=20),
    st.sampled_from(["04A1B2C3", "04a1b2c3", "00000000", "FFFFFFFF", "0000000000000000000A"]),
)
bad_uid_st = st.text("0123456789ABCDEFG: ", max_size=21).filter(
    lambda s: len(s) not in (8, 14, 20) or any(c not in HEX for c in s))

op_st = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 20), st.lists(uid_st, max_size=12)),
    st.tuples(st.just("delta"), st.integers(0, 20), st.integers(0, 25),
              st.lists(uid_st, max_size=6), st.lists(uid_st, max_size=6)),
    st.tuples(st.just("bad"), st.integers(0, 20), st.lists(uid_st, max_size=3), bad_uid_st),
)


@settings(max_examples=400)
@given(st.lists(op_st, max_size=12), st.lists(uid_st, max_size=8))
def test_local_list_matches_set_model(ops, probes):
    lst = LocalList()
    model, version = set(), 0
    for op in ops:
        if op[0] == "replace":
            lst.replace(op[1], op[2])
            model, version = {u.upper() for u in op[2]}, op[1]
        elif op[0] == "delta":
            _, base, new, add, remove = op
            add_u = {u.upper() for u in add}
            rem_u = {u.upper() for u in remove}
            try:
                lst.apply_delta(base, new, add, remove)
            except VersionMismatch:
                assert base != version or new <= base
            except ValueError as e:
                assert add_u & rem_u and "both" in str(e)
            else:
                assert base == version and new > base and not add_u & rem_u
                model, version = (model - rem_u) | add_u, new
        else:
            _, v, good, bad = op
            try:
                lst.replace(v, good + [bad])
            except IdError:
                pass
            else:
                raise AssertionError("bad uid accepted: {!r}".format(bad))
        assert lst.version == version
        assert len(lst) == len(model)
        assert set(lst.uids()) == model
        for u in model:
            assert lst.contains(u) and lst.contains(u.lower())
    for p in probes:
        assert lst.contains(p) == (p.upper() in model)
    back = LocalList.from_json(lst.to_json())
    assert back.version == version and set(back.uids()) == model


@settings(max_examples=300)
@given(st.integers(1, 5), st.integers(1, 500),
       st.lists(st.tuples(st.sampled_from(["put", "get", "remove"]),
                          st.sampled_from(["04A1B2C3", "DEADBEEF", "01020304", "0A0B0C0D",
                                           "0102030405060708090A", "11223344"]),
                          st.integers(0, 300)), max_size=40))
def test_cache_matches_dict_model(size, ttl, ops):
    cache = AuthCache(size=size, ttl_ms=ttl)
    model = {}  # uid -> stored time
    now = 0
    for kind, uid, dt in ops:
        now += dt
        if kind == "put":
            model = {u: t for u, t in model.items() if now - t < ttl} \
                if uid not in model and len(model) >= size else model
            if uid not in model and len(model) >= size:
                oldest = min(model, key=lambda u: model[u])
                del model[oldest]
            model[uid] = now
            cache.put(uid, now)
        elif kind == "get":
            e = cache.get(uid, now)
            live = uid in model and now - model[uid] < ttl
            assert (e is not None) == live, (uid, now, model)
            if not live:
                model.pop(uid, None)
        else:
            assert cache.remove(uid) == (uid in model)
            model.pop(uid, None)
        assert len(cache) == len(model) <= size
