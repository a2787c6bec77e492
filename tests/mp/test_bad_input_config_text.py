"""Issue 16 item 6: hostile config.json text gets a ConfigError naming the field and the rule,
never a traceback; a UTF-8 BOM is accepted. Both interpreters (MicroPython at 128k heap)."""

from firmware.config import MAX_BYTES, MAX_DEPTH, ConfigError, load

BASE = '"cp_id": "cp1", "evses": [{"evse_id": "DE*AB7*E840*6487"}]'


def test_hostile_texts_table():
    table = (
        # (text, field, words of the rule)
        ('{"cp_id": "a", ' + BASE + '}', "cp_id", "the same key twice"),
        ('{' + BASE + ', "reader": {"type": "none", "type": "pn532"}}', "reader.type",
         "the same key twice"),
        ('{"cp_id": "cp1", "evses": [{"evse_id": "DE*AB7*E840*6487"}, {"cable": "socket", '
         '"cable": "tethered"}]}', "evses[1].cable", "the same key twice"),
        ('{' + BASE + ', "x": ' + "[" * 40 + "]" * 40 + "}", "(file)", "nested deeper"),
        ("[" * 4000, "(file)", "nested deeper"),
        ("{" * 4000, "(file)", "nested deeper"),
        (" " * (MAX_BYTES + 1), "(file)", "more than"),
        (b"\xff\xfe{}", "(file)", "not UTF-8"),
        ('{' + BASE, "(file)", "not valid JSON"),
        ("\ufeff\ufeff{" + BASE + "}", "(file)", "not valid JSON"),  # one BOM only
    )
    for text, field, words in table:
        try:
            load(text)
        except ConfigError as e:
            assert e.field == field and words in e.rule, (text[:40], e.field, e.rule)
            continue
        raise AssertionError("accepted %r" % text[:40])


def test_a_bom_is_accepted_as_text_and_as_bytes():
    good = load("{" + BASE + "}")
    assert load("\ufeff{" + BASE + "}") == good
    assert load(b"\xef\xbb\xbf{" + BASE.encode() + b"}") == good


def test_same_key_in_different_objects_and_keys_inside_strings_are_fine():
    text = ('{' + BASE + ', "reader": {"type": "none"}, "meter": {"type": "none"}, '
            '"uplink": {"user": "type\\": \\"x", "password": "p"}}')
    cfg = load(text)
    assert cfg["uplink"]["user"] == 'type": "x'


def test_depth_limit_leaves_room_for_every_real_config():
    assert MAX_DEPTH >= 4
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    try:
        load('{' + BASE + ', "x": ' + inner + '}')
    except ConfigError as e:
        assert e.field == "x", e  # the unknown key, not the depth
