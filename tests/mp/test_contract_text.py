"""contract.text_field / durable_topic_of: the topic of a stored durable message read from its
JSON text without decoding it (the uplink publishes the outbox's text as it is). Runs on both
interpreters (tests/mp_run.py)."""

import json

from firmware import contract as C

EVSES = ["DE*ABC*E1*1", "DE*ABC*E1*2"]


def test_fields_read_from_compact_and_spaced_json():
    msg = {"type": "evse_status", "id": "s-1", "EvseID": "DE*ABC*E1*2",
           "EvseStatus": "Occupied"}
    for text in (json.dumps(msg), json.dumps(msg, separators=(",", ":"))):
        data = text.encode()
        assert C.text_field(data, "type") == "evse_status"
        assert C.text_field(data, "EvseID") == "DE*ABC*E1*2"
        assert C.text_field(data, "missing") is None
        assert C.durable_topic_of("CP1", data, EVSES) == "mpevse/CP1/status/2"
    cdr = {"type": "cdr", "id": "cdr-x", "EvseID": "DE*ABC*E1*1",
           "Identification": {"RFIDMifareFamilyIdentification": {"UID": "04A1B2C3"}}}
    assert C.durable_topic_of("CP1", json.dumps(cdr).encode(), EVSES) == "mpevse/CP1/up/cdr"


def test_unusable_text_is_refused_not_guessed():
    for data in (b'{"type": 3}', b'{"type": "cd\\"r"}', b'{"type": "cdr', b"{}",
                 b'{"type": "evse_status", "EvseID": "DE*XYZ*E9*1"}'):
        try:
            C.durable_topic_of("CP1", data, EVSES)
        except ValueError:
            continue
        raise AssertionError("a topic for {!r}".format(data))
