"""Any JSON thrown at config.load either loads or raises ConfigError, never anything else."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config import DEFAULTS, ConfigError, load

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 600) | st.floats(allow_nan=False)
    | st.sampled_from(["", "socket", "s0", "pn532", "DE*AB7*E1", "cp1", "../x"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(sorted(DEFAULTS) + ["evse_id", "type", "size", "coil", "x"]), inner,
        max_size=5),
    max_leaves=20,
)
BASE = {"cp_id": "cp1", "evses": [{"evse_id": "DE*AB7*E840*6487"}]}


@settings(max_examples=500)
@given(st.sampled_from(sorted(DEFAULTS)), json_values)
def test_one_field_replaced(key, value):
    src = dict(BASE)
    src[key] = value
    try:
        cfg = load(json.dumps(src))
    except ConfigError as e:
        assert e.field.split(".")[0].split("[")[0] in (key, "(file)"), (key, e.field)
        return
    assert set(cfg) == set(DEFAULTS)
    assert load(cfg) == cfg  # a loaded config is itself valid and a fixed point


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_arbitrary_text(text):
    try:
        load(text)
    except ConfigError:
        pass
