"""Issue 16 item 6 with hypothesis (the config loader) and through the firmware process on both
interpreters (the size is checked before the file is read)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config import MAX_BYTES, MAX_DEPTH, ConfigError, load
from host_sim.runner import RunnerError, Simulation

BASE = {"cp_id": "cp1", "evses": [{"evse_id": "DE*AB7*E840*6487"}]}
keys = st.sampled_from(["cp_id", "evses", "reader", "type", "x", "evse_id", "a\"b", "ü"])


@settings(max_examples=300)
@given(st.dictionaries(keys, st.integers(0, 3), max_size=6), keys, st.integers(0, 6))
def test_a_key_twice_in_any_object_is_refused_naming_it(pairs, dup, at):
    """An object of `pairs` with `dup` written twice more: refused, its field names `dup`."""
    members = [json.dumps(k) + ": " + json.dumps(v) for k, v in pairs.items()]
    members.insert(at % (len(members) + 1), json.dumps(dup) + ": 1")
    members.append(json.dumps(dup) + ": 2")
    text = '{"cp_id": "cp1", "reader": {' + ", ".join(members) + "}}"
    with pytest.raises(ConfigError) as e:
        load(text)
    assert "same key twice" in e.value.rule and e.value.field == "reader." + dup, e.value


@settings(max_examples=200)
@given(st.integers(1, 3000), st.sampled_from("[{"))
def test_any_nesting_is_a_config_error_never_a_crash(depth, opener):
    member = '"k": ' if opener == "{" else ""
    close = "]" if opener == "[" else "}"
    text = '{"x": ' + (opener + member) * depth + "1" + close * depth + "}"
    with pytest.raises(ConfigError) as e:
        load(text)
    if depth + 1 > MAX_DEPTH:
        assert "nested deeper" in e.value.rule or "more than" in e.value.rule, e.value
    else:
        assert e.value.field == "x", e.value  # within the limit: just an unknown key


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_config_error(data):
    try:
        load(data)
    except ConfigError:
        return


@pytest.mark.slow
@pytest.mark.parametrize("interpreter", ("cpython", "micropython"))
def test_the_firmware_refuses_hostile_files_naming_the_rule(tmp_path, interpreter):
    good = json.dumps(dict(BASE, reader={"type": "pn532"}, meter={
        "type": "modbus", "model": "sdm120", "baud": 9600, "addresses": [1]}))
    table = (
        ("big", good[:-1] + ', "x": "' + "a" * 100000 + '"}', "more than %d" % MAX_BYTES),
        ("dup", good[:-1] + ', "cp_id": "cp2"}', "cp_id: the same key twice"),
        ("deep", good[:-1] + ', "x": ' + "[" * 3000 + "]" * 3000 + "}", "nested deeper"),
    )
    for name, text, words in table:
        path = tmp_path / (name + ".json")
        path.write_text(text)
        with pytest.raises(RunnerError) as e:
            with Simulation(interpreter=interpreter, config_file=str(path)):
                pass
        assert words in str(e.value), (name, str(e.value)[:300])
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + good.encode())
    with Simulation(interpreter=interpreter, config_file=str(path)) as sim:
        assert any(e.get("ev") == "ready" for e in sim.events)
